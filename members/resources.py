"""Bulk enrolment of members from a tenant's old programme: the Import button on Members.

The file is CSV whose header row names exactly these columns, in any order and any case:

    phone,email,card,name,adult,marketing_mall,analytics

- `phone`, `email`, `card`: the member's identifiers (at least one); a phone without a country
  code takes the programme's region; a blank card gets a generated card number.
- `adult`: yes/no (or true/false, 1/0). A minor needs a guardian's consent recorded by staff at
  the desk, so a `no` row is refused.
- `marketing_mall`, `analytics`: the consent the old programme recorded, yes/no; a blank cell
  records nothing (consent never given is not a refusal).

Consent to the programme is implied by being in the file: the person's enrolment in the
tenant's old programme is that consent, and the uploaded file, whose header row names these
columns, is the record of it. Every row is enrolled by `member_enrol` with the `import` consent
channel and the importing staff user; this module only reads and checks the file.

A row whose phone, email or card already belongs to a member is skipped, so importing the same
file twice enrols nobody twice. Each row runs in its own savepoint inside one transaction for
the whole file (django-import-export's `use_transactions`); `member_enrol` is atomic itself, so
a refused row never leaves half a member. Members are never exported through this resource.
"""

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from import_export import fields, resources, widgets
from import_export.results import Result
from tablib import Dataset

from coalition.errors import DomainError, InvalidRequest, MemberNotFound
from coalition.models import Coalition
from consent.models import ConsentChannel, ConsentPurpose
from members.identifiers import identifier_normalise
from members.models import Member
from members.selectors import member_find
from members.services import member_enrol

IDENTIFIER_COLUMNS = ("phone", "email", "card")  # IdentifierKind values
CONSENT_COLUMNS = (ConsentPurpose.MARKETING_MALL, ConsentPurpose.ANALYTICS)
COLUMNS = (*IDENTIFIER_COLUMNS, "name", "adult", *CONSENT_COLUMNS)
YES = frozenset({"yes", "true", "1"})
NO = frozenset({"no", "false", "0"})


class TextWidget(widgets.Widget):
    """A cell as stripped text; a missing cell is blank."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> str:
        return "" if value is None else str(value).strip()

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "" if value is None else str(value)


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


def _column(name: str, widget: widgets.Widget) -> fields.Field:
    # The parsed cell is kept on the unsaved Member under the column's name, which is what
    # import-export shows in its preview; only `name` is also a Member field.
    return fields.Field(attribute=name, column_name=name, widget=widget)


class MemberResource(resources.ModelResource):
    """One row, one enrolment through `member_enrol`, into the coalition chosen on the import
    form (`MemberResource(coalition=...)`)."""

    phone = _column("phone", TextWidget())
    email = _column("email", TextWidget())
    card = _column("card", TextWidget())
    name = _column("name", TextWidget())
    adult = _column("adult", YesNoWidget())
    marketing_mall = _column("marketing_mall", YesNoWidget())
    analytics = _column("analytics", YesNoWidget())

    class Meta:
        model = Member
        fields = COLUMNS
        import_order = COLUMNS
        # Every row is a new enrolment: nothing is looked up by id, nothing is ever updated.
        force_init_instance = True
        use_transactions = True
        report_skipped = True

    def __init__(self, *, coalition: Coalition | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coalition = coalition

    @classmethod
    def get_display_name(cls) -> str:
        return "Members (enrolment from a tenant's old programme)"

    # -- the file as a whole -----------------------------------------------------------------

    def import_data(self, dataset: Dataset, **kwargs: Any) -> Result:
        dataset.headers = [str(header or "").strip().lower() for header in dataset.headers or []]
        refusal = self._file_refusal(list(dataset.headers or []))
        if refusal is None:
            return super().import_data(dataset, **kwargs)
        # Refused before any row is read: one error for the file, not one per row.
        result = self.get_result_class()()
        result.total_rows = len(dataset)
        self.handle_import_error(result, InvalidRequest(refusal), kwargs.get("raise_errors"))
        return result

    def _file_refusal(self, headers: list[str]) -> str | None:
        if self.coalition is None:
            return "Choose the programme the members join."
        missing = [column for column in COLUMNS if column not in headers]
        unknown = [header for header in headers if header not in COLUMNS]
        duplicated = sorted({header for header in headers if headers.count(header) > 1})
        problems = [
            f"{label}: {', '.join(columns)}"
            for label, columns in (
                ("missing columns", missing),
                ("unknown columns", unknown),
                ("repeated columns", duplicated),
            )
            if columns
        ]
        if not problems:
            return None
        return (
            f"The header row must name exactly the columns {', '.join(COLUMNS)} "
            f"({'; '.join(problems)})."
        )

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
        if errors:
            raise ValidationError(errors)

    def skip_row(
        self,
        instance: Member,
        original: Any,
        row: Any,
        import_validation_errors: Any = None,
    ) -> bool:
        """Skip a person already enrolled: any identifier of the row belongs to a member."""
        if import_validation_errors:
            return False
        return any(self._enrolled(kind, getattr(instance, kind, "")) for kind in IDENTIFIER_COLUMNS)

    def _enrolled(self, kind: str, value: str) -> bool:
        assert self.coalition is not None
        if not value:
            return False
        try:
            member_find(self.coalition, kind=kind, value=value)
        except MemberNotFound:
            return False
        return True

    def save_instance(self, instance: Member, is_create: bool, row: Any, **kwargs: Any) -> None:
        """Enrol through member_enrol; its refusals become this row's errors in the preview.

        On a dry run this runs too, inside the transaction import-export rolls back, so the
        preview shows every refusal the confirmed import would meet.
        """
        assert self.coalition is not None
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        consents: dict[str, bool] = {ConsentPurpose.PROGRAMME: True}
        for purpose in CONSENT_COLUMNS:
            given = getattr(instance, purpose, None)
            if given is not None:
                consents[purpose] = given
        try:
            member = member_enrol(
                coalition=self.coalition,
                consents=consents,
                phone=getattr(instance, "phone", "") or None,
                email=getattr(instance, "email", "") or None,
                card=getattr(instance, "card", "") or None,
                name=instance.name,
                adult=bool(getattr(instance, "adult", False)),
                channel=ConsentChannel.IMPORT,
                user=kwargs.get("user"),
            )
        except DomainError as exc:
            # MemberExists here means another enrolment took an identifier since skip_row.
            field = getattr(exc, "field", NON_FIELD_ERRORS)
            raise ValidationError(
                {field if field in COLUMNS else NON_FIELD_ERRORS: [exc.detail]}
            ) from exc
        # import-export keeps the instance it initialised (for the admin log and the result):
        # give it the enrolled member's row.
        for model_field in Member._meta.concrete_fields:
            setattr(instance, model_field.attname, getattr(member, model_field.attname))
        instance._state.adding = False

    # -- no export -----------------------------------------------------------------------------

    def export(self, *args: Any, **kwargs: Any) -> Dataset:
        """Exports of personal data are a privacy matter (`consent.services.privacy`)."""
        raise NotImplementedError("Members are not exported through the import resource.")
