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
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from import_export.admin import ImportMixin
from import_export.formats.base_formats import CSV
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.results import Result

from coalition.admin.imports import too_many_rows
from coalition.models import Coalition
from tenants.models import Tenant

LEDGER_POSTINGS = "coalition.import_transactions"  # also opening balances


class MemberImportForm(ImportForm):
    coalition = forms.ModelChoiceField(
        queryset=Coalition.objects.order_by("name"),
        label="Programme",
        help_text="The coalition the members in the file join.",
    )
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
        coalitions = list(Coalition.objects.values_list("pk", flat=True)[:2])
        if len(coalitions) == 1:
            self.fields["coalition"].initial = coalitions[0]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        upload = cleaned.get("import_file")
        if upload is not None:
            problem = too_many_rows(upload)
            if problem:
                raise forms.ValidationError(problem)
        coalition, tenant = cleaned.get("coalition"), cleaned.get("tenant")
        if coalition is not None and tenant is not None and tenant.coalition_id != coalition.pk:
            self.add_error("tenant", "This tenant belongs to another programme.")
        return cleaned


class MemberConfirmImportForm(ConfirmImportForm):
    coalition = forms.ModelChoiceField(queryset=Coalition.objects.all(), widget=forms.HiddenInput)
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.all(), required=False, widget=forms.HiddenInput
    )


class MemberImportMixin(ImportMixin):
    """ImportMixin for members: CSV only, the programme from the form, all or nothing."""

    import_form_class = MemberImportForm
    confirm_form_class = MemberConfirmImportForm
    import_formats = [CSV]

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
            initial["coalition"] = import_form.cleaned_data["coalition"].pk
            tenant = import_form.cleaned_data.get("tenant")
            initial["tenant"] = tenant.pk if tenant is not None else None
        return initial

    def get_import_data_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        # A row refused at confirmation (something changed since the preview) rolls back the
        # whole file, so the import is exactly the previewed one or nothing.
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    def process_result(self, result: Result, request: HttpRequest) -> HttpResponse:
        if not (result.has_errors() or result.has_validation_errors()):
            response: HttpResponse = super().process_result(result, request)
            return response
        refused = [row.number for row in result.invalid_rows] + [
            number for number, _ in result.row_errors()
        ]
        what = (
            f"row{'s' if len(refused) > 1 else ''} {', '.join(map(str, refused))} "
            f"{'were' if len(refused) > 1 else 'was'}"
            if refused
            else "the file was"
        )
        self.message_user(
            request,
            f"Nothing was imported: {what} refused since the preview. Upload the file again to "
            "see why.",
            messages.ERROR,
        )
        opts = self.model._meta
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))
