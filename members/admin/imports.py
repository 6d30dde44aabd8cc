"""The member import in the admin: django-import-export's upload, preview and confirm pages, with
the programme (and the tenant whose old programme funds the opening balances) chosen on the
upload form and carried to the confirmation. The rows themselves are read by
`members.resources.MemberResource`, which enrols through `member_enrol` and opens balances
through `points_open`.

This is the immediate flow, for small files: the whole file is read in the request. A file of
more than `IMMEDIATE_MAX_ROWS` rows (`coalition.services.imports`) is refused here with a
pointer to the Imports page, which runs it in a background job with progress
(`coalition.admin.imports`).
"""

from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from coalition.admin.imports import (
    ProgrammeConfirmImportForm,
    ProgrammeImportForm,
    ProgrammeImportMixin,
)
from tenants.models import Tenant

LEDGER_POSTINGS = "coalition.import_transactions"  # also opening balances


class MemberImportForm(ProgrammeImportForm):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("name"),
        required=False,
        label="Old programme of",
        help_text="The tenant whose old programme the file comes from: it funds the opening "
        "balances (needed when the file has an opening_balance column).",
    )
    field_order = ["resource", "coalition", "tenant", "import_file", "format"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["coalition"].help_text = "The coalition the members in the file join."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        coalition, tenant = cleaned.get("coalition"), cleaned.get("tenant")
        if coalition is not None and tenant is not None and tenant.coalition_id != coalition.pk:
            self.add_error("tenant", "This tenant belongs to another programme.")
        return cleaned


class MemberConfirmImportForm(ProgrammeConfirmImportForm):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.all(), required=False, widget=forms.HiddenInput
    )


class MemberImportMixin(ProgrammeImportMixin):
    """The programme's import, with the tenant that funds opening balances."""

    import_form_class = MemberImportForm
    confirm_form_class = MemberConfirmImportForm

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        form = kwargs.get("form")
        cleaned = getattr(form, "cleaned_data", None) or {}
        # The opening journals' reference names the import, never the file (a name may carry
        # personal data, and journals outlive an erasure).
        return {
            "coalition": cleaned.get("coalition"),
            "tenant": cleaned.get("tenant") if request.user.has_perm(LEDGER_POSTINGS) else None,
            "source": f"admin import {timezone.now():%Y-%m-%d %H:%M}",
        }

    def create_import_form(self, request: HttpRequest) -> Any:
        form = super().create_import_form(request)
        if not request.user.has_perm(LEDGER_POSTINGS):
            # Opening balances are ledger postings a tenant pays for: only staff who may import
            # postings choose the tenant that funds them.
            form.fields.pop("tenant", None)
        return form

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            tenant = import_form.cleaned_data.get("tenant")
            initial["tenant"] = tenant.pk if tenant is not None else None
        return initial
