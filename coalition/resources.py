"""Historical transactions from a tenant's old systems: one earn or burn per row, posted by
`points_earn` / `points_burn` exactly as a till's would be (so the earn rule and campaigns price
them unchanged), plus what every import resource of this project shares.

The CSV's header row names these columns, in any order and any case:

    kind,tenant,till,card,phone,email,amount,points,bill_amount,receipt,occurred_at

- `kind`: `earn` or `burn`; `tenant`: the tenant's slug; `till`: the till's code at that tenant.
- `card`, `phone`, `email`: the member, by exactly one of them.
- `amount`: an earn's purchase amount; `points` and `bill_amount`: a burn's points and its bill.
- `receipt`: the receipt number, unique per store and kind; `occurred_at`: ISO 8601
  (`2024-03-01T14:05:00+05:30`); a time without an offset is in the programme's time zone.

A row whose receipt that store already posted as that kind is skipped (the same file twice posts
nothing twice) — unless the posted one differs (another member, amount, points or bill), which
is an error for staff to look at rather than a silent skip. Each row is one transaction of the
posting service.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.dateparse import parse_datetime
from import_export import fields, resources, widgets
from import_export.results import Result
from tablib import Dataset

from coalition.csvsafe import csv_cell, csv_uncell
from coalition.errors import DomainError, InvalidRequest
from coalition.models import Coalition, Journal, JournalKind
from coalition.services.points import points_burn, points_earn
from members.selectors import MemberRef, member_ref_check
from tenants.models import Till

MEMBER_COLUMNS = ("card", "phone", "email")
TRANSACTION_COLUMNS = (
    "kind",
    "tenant",
    "till",
    *MEMBER_COLUMNS,
    "amount",
    "points",
    "bill_amount",
    "receipt",
    "occurred_at",
)


# --- shared by the project's import resources ---------------------------------------------------


class TextWidget(widgets.Widget):
    """A cell as stripped text; a missing cell is blank. The apostrophe an export put before a
    formula-looking text (`coalition.csvsafe`) is dropped, so an export reads back unchanged."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> str:
        return "" if value is None else csv_uncell(str(value).strip())

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else str(value)


def column(name: str, widget: widgets.Widget | None = None, attribute: str = "") -> fields.Field:
    """A column read into `attribute` (its own name by default) of the unsaved instance, which
    is what import-export's preview shows."""
    return fields.Field(
        attribute=attribute or name, column_name=name, widget=widget or TextWidget()
    )


def headers_normalise(dataset: Dataset) -> list[str]:
    dataset.headers = [str(header or "").strip().lower() for header in dataset.headers or []]
    return list(dataset.headers)


def columns_refusal(
    headers: Sequence[str], required: Sequence[str], optional: Iterable[str] = ()
) -> str | None:
    """Why a header row is refused (missing, unknown or repeated columns), or None."""
    allowed = set(required) | set(optional)
    missing = [name for name in required if name not in headers]
    unknown = [header for header in headers if header not in allowed]
    repeated = sorted({header for header in headers if headers.count(header) > 1})
    problems = [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("missing columns", missing),
            ("unknown columns", unknown),
            ("repeated columns", repeated),
        )
        if names
    ]
    if not problems:
        return None
    return (
        f"The header row must name exactly the columns {', '.join(required)} "
        f"({'; '.join(problems)})."
    )


class FileCheckedResource(resources.ModelResource):
    """A resource whose file is refused as a whole (one error, no rows read) when its header
    row is wrong. Subclasses say why in `header_refusal`; the import job asks it at upload."""

    def header_refusal(self, headers: list[str]) -> str | None:
        raise NotImplementedError

    def import_data(self, dataset: Dataset, **kwargs: Any) -> Result:
        refusal = self.header_refusal(headers_normalise(dataset))
        if refusal is None:
            return super().import_data(dataset, **kwargs)
        result = self.get_result_class()()
        result.total_rows = len(dataset)
        self.handle_import_error(result, InvalidRequest(refusal), kwargs.get("raise_errors"))
        return result

    def export_field(self, field: fields.Field, instance: Any, **kwargs: Any) -> Any:
        """Every exported cell, dehydrated ones included, is one no spreadsheet runs."""
        return csv_cell(super().export_field(field, instance, **kwargs))

    def after_import(self, dataset: Dataset, result: Result, **kwargs: Any) -> None:
        """Nothing: ModelResource resets the table's id sequence to its largest id here, which
        is for files that carry ids. These never do, and resetting a sequence that tills are
        drawing from at the same moment could hand out an id twice."""


def refusal(exc: DomainError, columns: Sequence[str]) -> ValidationError:
    """A service's refusal as the row's error, under its column when it names one of the file's."""
    field = getattr(exc, "field", NON_FIELD_ERRORS)
    field = field.removeprefix("member.")
    return ValidationError({field if field in columns else NON_FIELD_ERRORS: [exc.detail]})


# --- historical transactions -------------------------------------------------------------------


class DecimalText(widgets.Widget):
    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Decimal | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation as exc:
            raise ValueError(f"Not an amount: {text!r}.") from exc
        try:
            # An exponent like 1e999999 is a Decimal no context can quantize: a row error too.
            exact = number.is_finite() and number == number.quantize(Decimal("0.01"))
        except InvalidOperation:
            exact = False
        if not exact:
            raise ValueError(f"An amount has at most two decimal places, not {text!r}.")
        return number


class WholeNumber(widgets.Widget):
    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> int | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if not text.lstrip("-").isdigit():
            raise ValueError(f"A whole number, not {text!r}.")
        return int(text)


class TransactionResource(FileCheckedResource):
    """One row, one earn or burn through the posting services, in the programme chosen for the
    import (`TransactionResource(coalition=...)`)."""

    kind = column("kind")
    tenant = column("tenant", attribute="tenant_slug")
    till = column("till", attribute="till_code")
    card = column("card")
    phone = column("phone")
    email = column("email")
    amount = column("amount", DecimalText())
    points = column("points", WholeNumber())
    bill_amount = column("bill_amount", DecimalText())
    receipt = column("receipt")
    occurred_at = column("occurred_at")

    class Meta:
        model = Journal
        fields = TRANSACTION_COLUMNS
        import_order = TRANSACTION_COLUMNS
        force_init_instance = True  # every row is a new posting; nothing is updated
        use_transactions = True
        report_skipped = True

    def __init__(self, *, coalition: Coalition | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coalition = coalition
        self._tills: dict[tuple[str, str], Till | None] = {}

    @classmethod
    def get_display_name(cls) -> str:
        return "Historical transactions (earn and burn)"

    def header_refusal(self, headers: list[str]) -> str | None:
        if self.coalition is None:
            return "Choose the programme the transactions belong to."
        return columns_refusal(headers, TRANSACTION_COLUMNS)

    def _till(self, tenant_slug: str, till_code: str) -> Till | None:
        """Tills by slug and code, looked up once per file (a file has a handful of them)."""
        key = (tenant_slug, till_code)
        if key not in self._tills:
            self._tills[key] = (
                Till.objects.select_related("tenant__coalition", "store")
                .filter(tenant__coalition=self.coalition, tenant__slug=tenant_slug, code=till_code)
                .first()
            )
        return self._tills[key]

    def import_instance(self, instance: Journal, row: Any, **kwargs: Any) -> None:
        assert self.coalition is not None  # import_data refuses a file without one
        errors: dict[str, list[str]] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = {key: list(messages) for key, messages in exc.message_dict.items()}

        def refuse(column_name: str, message: str) -> None:
            errors.setdefault(column_name, []).append(message)

        kind = instance.kind.lower()
        instance.kind = kind
        if kind not in (JournalKind.EARN, JournalKind.BURN):
            refuse("kind", "Write earn or burn.")
        till = self._till(instance.tenant_slug, instance.till_code)  # type: ignore[attr-defined]
        if till is None:
            refuse("till", "No till with this code at a tenant with this slug.")
        instance.file_till = till  # type: ignore[attr-defined]
        named = [name for name in MEMBER_COLUMNS if getattr(instance, name)]
        if len(named) != 1:
            refuse(NON_FIELD_ERRORS, "Name the member by exactly one of card, phone or email.")
        else:
            try:
                ref = member_ref_check(
                    self.coalition, MemberRef(named[0], getattr(instance, named[0]))
                )
            except InvalidRequest as exc:
                refuse(named[0], exc.detail)
            else:
                assert isinstance(ref, MemberRef)
                instance.member_ref = ref  # type: ignore[attr-defined]
                setattr(instance, named[0], ref.value)
        if kind == JournalKind.EARN and instance.amount is None:
            refuse("amount", "An earn needs the purchase amount.")
        if kind == JournalKind.BURN and (instance.points is None or instance.bill_amount is None):
            refuse("points", "A burn needs its points and the bill amount.")
        if not instance.receipt:
            refuse("receipt", "A receipt number is required.")
        try:
            instance.occurred_at = self._moment(str(instance.occurred_at or ""))
        except ValueError as exc:
            refuse("occurred_at", str(exc))
        if errors:
            raise ValidationError(errors)

    def _moment(self, text: str) -> datetime:
        assert self.coalition is not None
        moment = parse_datetime(text.strip()) if text.strip() else None
        if moment is None:
            raise ValueError("A date and time, as 2024-03-01T14:05:00+05:30.")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(self.coalition.time_zone))
        return moment

    def _posted(self, instance: Journal) -> Journal | None:
        till: Till = instance.file_till  # type: ignore[attr-defined]
        return Journal.objects.filter(
            store_id=till.store_id, kind=instance.kind, receipt=instance.receipt
        ).first()

    def skip_row(
        self, instance: Journal, original: Any, row: Any, import_validation_errors: Any = None
    ) -> bool:
        """Skip a receipt this store already posted as this kind, when it is this very row."""
        if import_validation_errors:
            return False
        posted = self._posted(instance)
        if posted is None:
            return False
        if not self._same(posted, instance):
            raise ValidationError(
                {"receipt": ["This receipt was already posted with other details."]}
            )
        return True

    def _same(self, posted: Journal, instance: Journal) -> bool:
        from members.selectors import member_resolve

        try:
            member = member_resolve(self.coalition, instance.member_ref)  # type: ignore[arg-type, attr-defined]
        except DomainError:
            return False
        if posted.member_id != member.pk:
            return False
        if instance.kind == JournalKind.EARN:
            return posted.amount == instance.amount
        return (posted.points, posted.bill_amount) == (instance.points, instance.bill_amount)

    def save_instance(self, instance: Journal, is_create: bool, row: Any, **kwargs: Any) -> None:
        """Post through the services; their refusals become the row's errors."""
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        till: Till = instance.file_till  # type: ignore[attr-defined]
        ref: MemberRef = instance.member_ref  # type: ignore[attr-defined]
        try:
            if instance.kind == JournalKind.EARN:
                assert instance.amount is not None
                posting = points_earn(
                    till=till,
                    member=ref,
                    amount=instance.amount,
                    receipt=instance.receipt,
                    occurred_at=instance.occurred_at,
                )
            else:
                assert instance.points is not None and instance.bill_amount is not None
                posting = points_burn(
                    till=till,
                    member=ref,
                    points=instance.points,
                    bill_amount=instance.bill_amount,
                    receipt=instance.receipt,
                    occurred_at=instance.occurred_at,
                )
        except DomainError as exc:
            raise refusal(exc, TRANSACTION_COLUMNS) from exc
        instance.pk = posting.journal.pk
        instance.public_id = posting.journal.public_id
        instance.points = posting.journal.points
        instance._state.adding = False

    def export(self, *args: Any, **kwargs: Any) -> Dataset:
        """The ledger is read in the admin and on statements, not exported as an import file."""
        raise NotImplementedError("Transactions are not exported through the import resource.")
