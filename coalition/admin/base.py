"""Building blocks shared by every app's admin: read-only ledger screens, creation through a
service, counts that stay fast on tables with millions of rows, and links to members."""

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from consent.audit import audit_why


class LargeTablePaginator(Paginator):
    """An unfiltered changelist of a big table is counted from PostgreSQL's statistics.

    `COUNT(*)` over millions of ledger rows takes seconds on every page view; the planner's
    estimate is good enough to page through, and any filter or search gets an exact count.
    """

    EXACT_BELOW = 100_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet) and not rows.query.where:
            with connections[rows.db].cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [rows.model._meta.db_table],
                )
                row = cursor.fetchone()
            estimate = int(row[0]) if row else -1
            if estimate >= self.EXACT_BELOW:
                return estimate
        return int(super().count)


class BigTableAdmin(admin.ModelAdmin):
    """A changelist over a table that grows with every posting: no full count, newest first."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice is a scan per choice
    paginator = LargeTablePaginator
    ordering = ("-id",)
    list_per_page = 50


class NoWritePermissions:
    """Add, change and delete are refused for everyone, superusers too; viewing stays."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(NoWritePermissions, BigTableAdmin):
    """Rows written only by services (the ledger, audit records): staff may look, never touch.

    The view permission stays; add, change and delete are refused for everyone, superusers too.
    """


class ReadOnlyTabularInline(NoWritePermissions, admin.TabularInline):
    extra = 0
    can_delete = False
    classes = ("readonly-inline",)  # back_office/admin.css: no per-row caption

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)


class ServiceCreateAdmin(admin.ModelAdmin):
    """Adding an object goes through its creation service (which writes what comes with it,
    e.g. ledger accounts); changing one saves the form as usual."""

    def create(self, request: HttpRequest, form: Any) -> Model:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = self.create(request, form)
        # The admin goes on with `obj` (log entry, redirect): make it the created row.
        for field in obj._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Rows the ledger points at are never deleted: a tenant exits, a coalition stays.
        return False


REASON_FIELD = "change_reason"


class ChangeReasonAdmin(admin.ModelAdmin):
    """Changing a row asks why: the reason is kept with the audit log's record of the change
    (`consent.audit.audit_why`), next to who changed what and when."""

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            base = kwargs.get("form", self.form)
            reason = forms.CharField(
                label="Why this change",
                max_length=300,
                help_text="Kept in the audit log with who changed what, and when.",
            )
            kwargs["form"] = type(f"{base.__name__}WithReason", (base,), {REASON_FIELD: reason})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None or REASON_FIELD in flatten_fieldsets(fieldsets):
            return fieldsets
        if not self.has_change_permission(request, obj):
            return fieldsets
        return [*fieldsets, ("Why", {"fields": [REASON_FIELD]})]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with audit_why(form.cleaned_data.get(REASON_FIELD, "")):
            super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with audit_why(form.cleaned_data.get(REASON_FIELD, "")):
            super().save_related(request, form, formsets, change)


def service_form_page(
    model_admin: "admin.ModelAdmin[Any]",
    request: HttpRequest,
    template: str,
    form: forms.Form,
    **context: Any,
) -> TemplateResponse:
    """A staff action as one form page (`admin/service_form.html` or a template extending it):
    the form laid out by its FIELDSETS, or all its fields in one block."""
    fieldsets = getattr(form, "FIELDSETS", [(None, {"fields": list(form.fields)})])
    return TemplateResponse(
        request,
        template,
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.opts,
            "adminform": helpers.AdminForm(form, fieldsets, {}),  # type: ignore[arg-type]
        }
        | context,
    )


def admin_link(obj: Model, text: str | None = None) -> SafeString:
    """A link to `obj`'s admin page (for read-only inlines, which hide Django's own)."""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj.pk))


def short_id(value: uuid.UUID | str | None) -> str:
    return str(value)[:8] if value else ""


def member_link(member_id: uuid.UUID | str | None) -> SafeString | str:
    """The member's short id, linked to their admin page (no query: the id is enough)."""
    if not member_id:
        return "—"
    url = reverse("admin:members_member_change", args=[member_id])
    return format_html('<a href="{}" title="{}">{}</a>', url, member_id, short_id(member_id))


def uuid_or_none(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None
