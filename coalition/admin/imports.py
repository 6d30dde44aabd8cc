"""Imports in the back office.

- `ProgrammeImportExportMixin`: django-import-export's Import and Export buttons for a list
  whose rows belong to a programme (tenants, stores, tills): CSV only, the programme chosen on
  the upload form, all or nothing, and at most `IMMEDIATE_MAX_ROWS` rows read in the request.
- `ImportJobAdmin` ("Imports"): any file, of any size, for any kind, run in the background
  (`coalition.services.imports`). Staff upload a file for a kind, read the dry run's report
  (counts and row errors), confirm, and watch the progress on a page that refreshes itself.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from import_export.admin import ExportMixin, ImportMixin
from import_export.formats.base_formats import CSV
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.results import Result

from coalition.errors import InvalidRequest
from coalition.models import Coalition
from coalition.models.imports import ImportJob, ImportKind, ImportStatus
from coalition.services.imports import (
    IMMEDIATE_MAX_ROWS,
    PERMISSIONS,
    csv_rows_count,
    import_job_cancel,
    import_job_confirm,
    import_job_create,
    import_kinds_for,
)
from tenants.models import Tenant

REFRESH_SECONDS = 3


def _only_coalition() -> int | None:
    coalitions = list(Coalition.objects.values_list("pk", flat=True)[:2])
    return coalitions[0] if len(coalitions) == 1 else None


def too_many_rows(upload: Any) -> str | None:
    rows = csv_rows_count(upload)
    if rows <= IMMEDIATE_MAX_ROWS:
        return None
    return (
        f"This file has {rows:,} rows: files of more than {IMMEDIATE_MAX_ROWS:,} rows are "
        "imported on the Imports page (Coalition, Imports), in the background with a dry run "
        "and progress."
    )


# --- the immediate flow for small files ---------------------------------------------------------


class ProgrammeImportForm(ImportForm):
    coalition = forms.ModelChoiceField(
        queryset=Coalition.objects.order_by("name"), label="Programme"
    )
    field_order = ["resource", "coalition", "import_file", "format"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["coalition"].initial = _only_coalition()

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        upload = cleaned.get("import_file")
        if upload is not None and (problem := too_many_rows(upload)):
            raise forms.ValidationError(problem)
        return cleaned


class ProgrammeConfirmImportForm(ConfirmImportForm):
    coalition = forms.ModelChoiceField(queryset=Coalition.objects.all(), widget=forms.HiddenInput)


class ProgrammeImportMixin(ImportMixin):
    """Import of a programme's rows as CSV, all or nothing; the resource takes `coalition=`."""

    import_form_class = ProgrammeImportForm
    confirm_form_class = ProgrammeConfirmImportForm
    import_formats = [CSV]

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
        cleaned = getattr(kwargs.get("form"), "cleaned_data", None) or {}
        return {"coalition": cleaned.get("coalition")}

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["coalition"] = import_form.cleaned_data["coalition"].pk
        return initial

    def get_import_data_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        # What was previewed is imported, or nothing (a row refused since rolls all back).
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
            else "a row was"
        )
        self.message_user(
            request,
            f"Nothing was imported: {what} refused since the preview. Upload the file again to "
            "see why.",
            messages.ERROR,
        )
        opts = self.model._meta
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))


class ProgrammeImportExportMixin(ProgrammeImportMixin, ExportMixin):
    """Import, and export as CSV, of a programme's rows (tenants, stores, tills)."""

    export_formats = [CSV]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return bool(self.has_view_permission(request))


# --- the background flow for any file -----------------------------------------------------------


class ImportJobForm(forms.Form):
    kind = forms.ChoiceField(label="What the file holds")
    coalition = forms.ModelChoiceField(
        queryset=Coalition.objects.order_by("name"), label="Programme"
    )
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("name"),
        required=False,
        label="Old programme of",
        help_text="Members: the tenant whose old programme the file comes from. It funds the "
        "opening balances (needed when the file has an opening_balance column).",
    )
    file = forms.FileField(label="CSV file", help_text="UTF-8, with a header row.")

    def __init__(self, *args: Any, kinds: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["kind"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(kind, ImportKind(kind).label) for kind in kinds]
        self.fields["coalition"].initial = _only_coalition()


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "file_name",
        "status",
        "phase",
        "rows_total",
        "rows_processed",
        "rows_created",
        "rows_skipped",
        "rows_errors",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "kind")
    list_select_related = ("created_by",)
    ordering = ("-created_at", "-id")

    # Who may import a kind is the permission to add what it creates (`PERMISSIONS`); the page
    # lists only the jobs of kinds the user may import.

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(import_kinds_for(request.user))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        kinds = import_kinds_for(request.user)
        return bool(kinds) and (obj is None or obj.kind in kinds)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(import_kinds_for(request.user))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportJob]:
        queryset = super().get_queryset(request)
        return queryset.filter(kind__in=import_kinds_for(request.user))

    @admin.display(description="Pass")
    def phase(self, job: ImportJob) -> str:
        return "dry run" if job.dry_run else "import"

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path("<int:job_id>/confirm/", wrap(self.confirm_view), name=f"{info}_confirm"),
            path("<int:job_id>/cancel/", wrap(self.cancel_view), name=f"{info}_cancel"),
            *super().get_urls(),
        ]

    def _job(self, request: HttpRequest, job_id: Any) -> ImportJob:
        job = get_object_or_404(self.get_queryset(request), pk=job_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return job

    def _job_url(self, job: ImportJob) -> str:
        return reverse("admin:coalition_importjob_change", args=[job.pk])

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        kinds = import_kinds_for(request.user)
        if not kinds:
            raise PermissionDenied
        form = ImportJobForm(request.POST or None, request.FILES or None, kinds=kinds)
        if request.method == "POST" and form.is_valid():
            try:
                job = import_job_create(
                    coalition=form.cleaned_data["coalition"],
                    kind=form.cleaned_data["kind"],
                    tenant=form.cleaned_data["tenant"],
                    upload=form.cleaned_data["file"],
                    user=request.user,
                )
            except InvalidRequest as exc:
                form.add_error("file" if exc.field == "file" else None, exc.detail)
            else:
                self.log_addition(request, job, "Uploaded for a dry run")
                return HttpResponseRedirect(self._job_url(job))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a file",
            "form": form,
            "formats": _formats(),
        }
        return TemplateResponse(request, "admin/imports/upload.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        job = self._job(request, object_id)
        active = job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": str(job),
            "job": job,
            "active": active,
            "refresh": REFRESH_SECONDS if active else None,
            "can_confirm": job.status == ImportStatus.PREVIEWED,
            "can_cancel": job.dry_run
            and job.status in (ImportStatus.PREVIEWED, ImportStatus.QUEUED, ImportStatus.FAILED),
            "errors_shown": len(job.errors),
        }
        return TemplateResponse(request, "admin/imports/job.html", context)

    def confirm_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._step(request, job_id, import_job_confirm, "Import confirmed: it runs now.")

    def cancel_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        return self._step(request, job_id, import_job_cancel, "Import cancelled; file deleted.")

    def _step(self, request: HttpRequest, job_id: int, service: Any, done: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job(request, job_id)
        try:
            service(job=job, user=request.user)
        except InvalidRequest as exc:
            self.message_user(request, exc.detail, messages.ERROR)
        else:
            self.log_change(request, job, done)
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self._job_url(job))


def _formats() -> list[tuple[str, str]]:
    """The header line of each kind, for the upload page."""
    from coalition.resources import TRANSACTION_COLUMNS
    from members.resources import COLUMNS, OPENING_COLUMNS
    from tenants.resources import STORE_COLUMNS, TENANT_COLUMNS, TILL_COLUMNS

    headers = {
        ImportKind.MEMBERS: (*COLUMNS, *OPENING_COLUMNS),
        ImportKind.TRANSACTIONS: TRANSACTION_COLUMNS,
        ImportKind.TENANTS: TENANT_COLUMNS,
        ImportKind.STORES: STORE_COLUMNS,
        ImportKind.TILLS: TILL_COLUMNS,
    }
    return [(ImportKind(kind).label, ",".join(headers[ImportKind(kind)])) for kind in PERMISSIONS]
