"""Bulk enrolment of members from a tenant's old programme: the Import button on Members, and
the `members` kind of the background import job (`coalition.services.imports`).

The file is CSV whose header row names these columns, in any order and any case:

    phone,email,card,name,adult,marketing_mall,analytics[,opening_balance,opening_expires_on]

- `phone`, `email`, `card`: the member's identifiers (at least one); a phone without a country
  code takes the programme's region; a blank card gets a generated card number.
- `adult`: yes/no (or true/false, 1/0). A minor needs a guardian's consent recorded by staff at
  the desk, so a `no` row is refused.
- `marketing_mall`, `analytics`, and the code of any other consent purpose of the programme
  (marketing by a named tenant, say) as an extra column: the consent the old programme
  recorded, yes/no; a blank cell records nothing (consent never given is not a refusal).
- `opening_balance` (optional column): the points the member held in the old programme, a
  whole number (blank or 0: none); they become a lot funded by the tenant chosen for the import
  (`coalition.services.openings.points_open`). `opening_expires_on` (optional, YYYY-MM-DD): the
  last day the old programme gave them; blank takes the programme's expiry rule.

Consent to the programme is implied by being in the file: the person's enrolment in the
tenant's old programme is that consent, and the uploaded file, whose header row names these
columns, is the record of it. Every row is enrolled by `member_enrol` with the `import` consent
channel and the importing staff user; this module only reads and checks the file.

A row whose phone, email or card already belongs to a member enrols nobody: it is skipped, or,
when it carries an opening balance from a tenant that member has none from yet, it brings only
that balance to the member (shown as an update). So the same file twice enrols nobody twice and
opens no balance twice. A row's enrolment, consents and opening balance are one transaction:
a refused row never leaves half a member. Members are never exported through this resource.
"""

from datetime import date, datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date
from import_export import widgets
from import_export.results import RowResult
from tablib import Dataset

from coalition.errors import DomainError, InvalidRequest
from coalition.models import Coalition, Journal, JournalKind
from coalition.resources import FileCheckedResource, column, columns_refusal, refusal
from coalition.services.openings import points_open
from consent.models import ConsentChannel, ConsentPurpose
from members.identifiers import identifier_normalise
from members.models import Identifier, Member, MemberStatus
from members.selectors import member_history_ids
from members.services import member_enrol
from tenants.models import Tenant

IDENTIFIER_COLUMNS = ("phone", "email", "card")  # IdentifierKind values
CONSENT_COLUMNS = (ConsentPurpose.MARKETING_MALL, ConsentPurpose.ANALYTICS)
OPENING_COLUMNS = ("opening_balance", "opening_expires_on")
COLUMNS = (*IDENTIFIER_COLUMNS, "name", "adult", *CONSENT_COLUMNS)
YES = frozenset({"yes", "true", "1"})
NO = frozenset({"no", "false", "0"})

ENROL, OPEN, SKIP = "enrol", "open", "skip"


class YesNoWidget(widgets.Widget):
    """yes/no, true/false or 1/0 in any case; a blank cell is None. Anything else is refused
    rather than read as "no" (import-export's BooleanWidget reads `y` as False)."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> bool | None:
        text = "" if value is None else str(value).strip().lower()
        if not text:
            return None
        if text in YES:
            return True
        if text in NO:
            return False
        raise ValueError(f"Write yes or no, not {str(value).strip()!r}.")

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else ("yes" if value else "no")


class PointsWidget(widgets.Widget):
    """A whole number of points, zero or more; blank is 0."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> int:
        text = "" if value is None else str(value).strip().replace(",", "")
        if not text:
            return 0
        if not text.isdigit():
            raise ValueError(f"A whole number of points (0 or more), not {text!r}.")
        return int(text)


class DayWidget(widgets.Widget):
    """A date as YYYY-MM-DD; blank is None."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> date | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        try:
            day = parse_date(text)
        except ValueError:
            day = None
        if day is None:
            raise ValueError(f"A date as YYYY-MM-DD, not {text!r}.")
        return day


class MemberResource(FileCheckedResource):
    """One row, one enrolment through `member_enrol` (and its opening balance through
    `points_open`), into the coalition chosen on the import form
    (`MemberResource(coalition=..., tenant=...)`)."""

    phone = column("phone")
    email = column("email")
    card = column("card")
    name = column("name")
    adult = column("adult", YesNoWidget())
    marketing_mall = column("marketing_mall", YesNoWidget())
    analytics = column("analytics", YesNoWidget())
    opening_balance = column("opening_balance", PointsWidget())
    opening_expires_on = column("opening_expires_on", DayWidget())

    class Meta:
        model = Member
        fields = (*COLUMNS, *OPENING_COLUMNS)
        import_order = (*COLUMNS, *OPENING_COLUMNS)
        # Every row is a new enrolment: nothing is looked up by id, nothing is ever updated.
        force_init_instance = True
        use_transactions = True
        report_skipped = True

    def __init__(
        self,
        *,
        coalition: Coalition | None = None,
        tenant: Tenant | None = None,
        opened_at: datetime | None = None,
        source: str = "admin",
        **kwargs: Any,
    ) -> None:
        """`tenant` ran the old programme and funds its opening balances, struck on
        `opened_at` (the upload's moment); `source` names the import in each opening's
        reference (`job-12`), with the row's number."""
        super().__init__(**kwargs)
        self.coalition = coalition
        self.tenant = tenant
        self.opened_at = opened_at or timezone.now()
        self.source = source
        self.row_offset = 0  # rows of the file before this dataset (the job reads chunks)
        self.purposes: tuple[str, ...] = ()
        self._mode = SKIP  # what skip_row decided for the row being imported
        self._owner: Member | None = None  # and the member it found (mode OPEN)

    @classmethod
    def get_display_name(cls) -> str:
        return "Members (enrolment from a tenant's old programme)"

    # -- the file as a whole -----------------------------------------------------------------

    def header_refusal(self, headers: list[str]) -> str | None:
        if self.coalition is None:
            return "Choose the programme the members join."
        if self.tenant is not None and self.tenant.coalition_id != self.coalition.pk:
            return "The tenant belongs to another programme."
        codes = set(
            ConsentPurpose.objects.filter(coalition=self.coalition)
            .exclude(code__in=[ConsentPurpose.PROGRAMME, *CONSENT_COLUMNS])
            .values_list("code", flat=True)
        )
        self.purposes = tuple(header for header in headers if header in codes)
        return columns_refusal(headers, COLUMNS, (*OPENING_COLUMNS, *self.purposes))

    # -- one row -----------------------------------------------------------------------------

    def import_instance(self, instance: Member, row: Any, **kwargs: Any) -> None:
        """Read the cells and normalise the identifiers, so the preview shows what will be
        stored and the skip below compares like with like. Rules are member_enrol's."""
        assert self.coalition is not None  # import_data refuses a file without one
        errors: dict[str, list[str]] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = {key: list(messages) for key, messages in exc.message_dict.items()}
        for kind in IDENTIFIER_COLUMNS:
            raw = getattr(instance, kind, "")
            if raw and kind not in errors:
                try:
                    value = identifier_normalise(kind, raw, self.coalition.phone_region)
                except InvalidRequest as exc:
                    errors[kind] = [exc.detail]
                else:
                    setattr(instance, kind, value)
        if getattr(instance, "adult", None) is None and "adult" not in errors:
            errors["adult"] = ["Write yes or no: is the member 18 or over?"]
        consents: dict[str, bool] = {}
        for purpose in self.purposes:
            try:
                given = YesNoWidget().clean(row.get(purpose))
            except ValueError as exc:
                errors[purpose] = [str(exc)]
            else:
                if given is not None:
                    consents[purpose] = given
        instance.file_consents = consents  # type: ignore[attr-defined]
        if getattr(instance, "opening_balance", 0) and self.tenant is None:
            errors["opening_balance"] = [
                "Opening balances need the tenant whose old programme the file comes from "
                "(it funds them), chosen by staff who may import ledger postings."
            ]
        if errors:
            raise ValidationError(errors)

    def skip_row(
        self,
        instance: Member,
        original: Any,
        row: Any,
        import_validation_errors: Any = None,
    ) -> bool:
        """Skip a person already enrolled (any identifier of the row belongs to a member),
        unless the row brings them an opening balance from a tenant they have none from."""
        if import_validation_errors:
            return False
        assert self.coalition is not None
        wanted = [
            (kind, getattr(instance, kind))
            for kind in IDENTIFIER_COLUMNS
            if getattr(instance, kind)
        ]
        if not wanted:
            self._mode = ENROL
            return False  # member_enrol refuses it, with its own words
        owners = self._owners(wanted)
        if not owners:
            self._mode = ENROL
            return False
        if len(owners) > 1:
            raise ValidationError(
                {NON_FIELD_ERRORS: ["The identifiers in this row belong to different members."]}
            )
        owner = owners[0]
        if not getattr(instance, "opening_balance", 0) or owner is None:
            return True  # enrolled already; or its owner left and the identifier is not free
        assert self.tenant is not None  # import_instance refused an opening without one
        opened = Journal.objects.filter(
            kind=JournalKind.OPENING, tenant=self.tenant, member_id__in=member_history_ids(owner)
        )
        if opened.exists():
            return True
        self._mode = OPEN
        self._owner = owner  # only for the rows that bring an opening balance alone
        return False

    def _owners(self, wanted: list[tuple[str, str]]) -> list[Member | None]:
        """The members holding these identifiers (None for one who is not active)."""
        assert self.coalition is not None
        found = Identifier.objects.filter(coalition=self.coalition, released_at__isnull=True)
        matches = None
        for kind, value in wanted:
            match = found.filter(kind=kind, value=value)
            matches = match if matches is None else matches | match
        assert matches is not None
        owners: dict[Any, Member | None] = {}
        for identifier in matches.select_related("member"):
            member = identifier.member
            owners[member.pk] = member if member.status == MemberStatus.ACTIVE else None
        return list(owners.values())

    def save_instance(self, instance: Member, is_create: bool, row: Any, **kwargs: Any) -> None:
        """Enrol through member_enrol and open the balance through points_open, in one
        transaction; their refusals become this row's errors in the preview.

        On a dry run this runs too, inside the transaction import-export rolls back, so the
        preview shows every refusal the confirmed import would meet.
        """
        assert self.coalition is not None
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        user = kwargs.get("user")
        try:
            # One transaction for the row: import-export's own savepoint per row is released,
            # not rolled back, when the row fails, so the enrolment must not outlive a refused
            # opening balance by itself.
            with transaction.atomic():
                member = self._owner if self._owner is not None else self._enrol(instance, user)
                points = getattr(instance, "opening_balance", 0)
                if points:
                    assert self.tenant is not None
                    number = self.row_offset + int(kwargs.get("row_number") or 0)
                    points_open(
                        member=member,
                        tenant=self.tenant,
                        points=points,
                        occurred_at=self.opened_at,
                        expires_on=getattr(instance, "opening_expires_on", None),
                        reference=f"{self.source} row {number}"[:64],
                        user=user,
                    )
        except DomainError as exc:
            # MemberExists here means another enrolment took an identifier since skip_row.
            raise refusal(exc, (*COLUMNS, *OPENING_COLUMNS)) from exc
        # import-export keeps the instance it initialised (for the admin log and the result):
        # give it the enrolled member's row.
        for model_field in Member._meta.concrete_fields:
            setattr(instance, model_field.attname, getattr(member, model_field.attname))
        instance._state.adding = False

    def _enrol(self, instance: Member, user: Any) -> Member:
        assert self.coalition is not None
        consents: dict[str, bool] = {ConsentPurpose.PROGRAMME: True}
        for purpose in CONSENT_COLUMNS:
            given = getattr(instance, purpose, None)
            if given is not None:
                consents[purpose] = given
        consents.update(getattr(instance, "file_consents", {}))
        return member_enrol(
            coalition=self.coalition,
            consents=consents,
            phone=getattr(instance, "phone", "") or None,
            email=getattr(instance, "email", "") or None,
            card=getattr(instance, "card", "") or None,
            name=instance.name,
            adult=bool(getattr(instance, "adult", False)),
            channel=ConsentChannel.IMPORT,
            user=user,
        )

    def before_import_row(self, row: Any, **kwargs: Any) -> None:
        self._mode, self._owner = SKIP, None

    def after_import_row(self, row: Any, row_result: RowResult, **kwargs: Any) -> None:
        # A row that only brought an opening balance to a member already enrolled.
        if self._mode == OPEN and row_result.import_type == RowResult.IMPORT_TYPE_NEW:
            row_result.import_type = RowResult.IMPORT_TYPE_UPDATE

    # -- no export -----------------------------------------------------------------------------

    def export(self, *args: Any, **kwargs: Any) -> Dataset:
        """Exports of personal data are a privacy matter (`consent.services.privacy`)."""
        raise NotImplementedError("Members are not exported through the import resource.")
