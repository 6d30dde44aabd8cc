"""The programme's settings: created through `coalition_create`, then tuned by staff."""

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from coalition.admin.base import REASON_FIELD, ChangeReasonAdmin, ServiceCreateAdmin
from coalition.charts import bar_chart
from coalition.documents import liability_csv
from coalition.errors import InvalidRequest
from coalition.models import Coalition, ExpiryPolicyMigration, Journal
from coalition.selectors.liability import Row, liability
from coalition.services import coalition_create
from coalition.services.policy_migrations import (
    expiry_policy_migration_preview,
    expiry_policy_migration_request,
)
from coalition.services.programme import coalition_settings_save
from consent.audit import audit_why

CREATE_FIELDS = ("name", "slug", "currency", "time_zone")


class PolicyMigrationForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why existing lots must follow the new policy: it is kept with the record.",
    )


class CoalitionForm(forms.ModelForm):
    class Meta:
        model = Coalition
        fields = (
            "name",
            "slug",
            "currency",
            "time_zone",
            "phone_region",
            "earn_block",
            "points_per_block",
            "point_value",
            "receipt_ceiling",
            "default_price_per_point",
            "default_reimbursement_per_point",
            "expiry_policy",
            "expiry_months",
            "expiry_sweep_month",
            "expiry_sweep_day",
            "expiry_notice_days",
            "holdback_days",
            "small_group_k",
            "dominance_n",
            "dominance_percent",
            "programme_fee_percent",
            "payment_terms_days",
            "breakage_policy",
            "adjustment_approval_threshold",
        )

    def clean_time_zone(self) -> str:
        value: str = self.cleaned_data["time_zone"].strip()
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise forms.ValidationError("Not a time zone name, e.g. Asia/Kolkata.") from exc
        return value

    def clean_currency(self) -> str:
        value: str = self.cleaned_data["currency"].strip().upper()
        if len(value) != 3 or not value.isalpha():
            raise forms.ValidationError("An ISO 4217 code of three letters, e.g. INR.")
        return value

    def clean_phone_region(self) -> str:
        value: str = self.cleaned_data["phone_region"].strip().upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise forms.ValidationError("A two-letter region phonenumbers knows, e.g. IN.")
        return value


@admin.register(Coalition)
class CoalitionAdmin(ChangeReasonAdmin, ServiceCreateAdmin):
    form = CoalitionForm
    list_display = (
        "name",
        "slug",
        "currency",
        "time_zone",
        "earn_rule",
        "expiry_policy",
        "holdback_days",
        "adjustment_approval_threshold",
        "liability_link",
    )
    list_filter = ("expiry_policy", "breakage_policy")
    search_fields = ("name", "slug")
    fieldsets = (
        (None, {"fields": ("name", "slug", "currency", "time_zone", "phone_region")}),
        (
            "Earn rule",
            {
                "fields": (
                    ("earn_block", "points_per_block"),
                    "point_value",
                    "receipt_ceiling",
                    ("default_price_per_point", "default_reimbursement_per_point"),
                ),
                "description": "A purchase earns the points per block for each full earn block.",
            },
        ),
        (
            "Expiry",
            {
                "fields": (
                    "expiry_policy",
                    "expiry_months",
                    ("expiry_sweep_month", "expiry_sweep_day"),
                    "expiry_notice_days",
                )
            },
        ),
        ("Holdback", {"fields": ("holdback_days",)}),
        (
            "Privacy thresholds",
            {
                "fields": ("small_group_k", ("dominance_n", "dominance_percent")),
                "description": "Aggregates shown to tenants suppress small and dominated groups.",
            },
        ),
        (
            "Settlement",
            {"fields": ("programme_fee_percent", "payment_terms_days", "breakage_policy")},
        ),
        ("Manual adjustments", {"fields": ("adjustment_approval_threshold",)}),
        ("Record", {"fields": ("created_at", "closed_through")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "fields": CREATE_FIELDS,
                "description": (
                    "The programme starts with the default rules (1 point per 100.00 spent, "
                    "a point worth 1.00, 12-month expiry); set them on its page once created."
                ),
            },
        ),
    )

    actions = ("close_ended_months", "migrate_existing_lots")

    @admin.action(description="Apply the expiry policy to existing lots…", permissions=["change"])
    def migrate_existing_lots(self, request: HttpRequest, queryset: QuerySet[Coalition]) -> Any:
        coalitions = list(queryset[:2])
        if len(coalitions) != 1:
            self.message_user(request, "Select one coalition.", messages.ERROR)
            return None
        coalition = coalitions[0]
        applying = "apply" in request.POST
        form = PolicyMigrationForm(request.POST if applying else None)
        if applying and form.is_valid():
            try:
                migration = expiry_policy_migration_request(
                    coalition=coalition, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except InvalidRequest as exc:
                form.add_error("reason" if exc.field == "reason" else None, exc.detail)
            else:
                self.log_change(
                    request, coalition, f"Expiry policy migration {migration.pk} requested."
                )
                self.message_user(
                    request,
                    f"{coalition}: existing lots are being moved to {migration}. Its record, "
                    "with progress, is under Expiry policy migrations.",
                    messages.SUCCESS,
                )
                return None
        adminform = helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {})  # type: ignore[arg-type]
        return TemplateResponse(
            request,
            "admin/coalition/coalition/migrate_lots.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "adminform": adminform,
                "title": f"Apply the expiry policy of {coalition} to existing lots",
                "submit_label": "Move the existing lots",
                "cancel_url": request.get_full_path(),
                "coalition": coalition,
                "original": coalition,
                "preview": expiry_policy_migration_preview(coalition=coalition),
                "action": "migrate_existing_lots",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.action(
        description="Close every ended month not closed yet (statements, reconciliation)",
        permissions=["change"],
    )
    def close_ended_months(self, request: HttpRequest, queryset: QuerySet[Coalition]) -> None:
        from settlement.services import CloseInProgress, last_ended_month, period_close

        for coalition in queryset:
            try:
                period = period_close(coalition, last_ended_month(coalition, timezone.now()))
            except (InvalidRequest, CloseInProgress) as exc:
                self.message_user(request, f"{coalition}: {exc}", messages.WARNING)
                continue
            self.message_user(request, f"{coalition}: {period} is closed.", messages.SUCCESS)

    # -- the liability page and its CSV --------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<path:object_id>/liability/",
                self.admin_site.admin_view(self.liability_view),
                name="coalition_coalition_liability",
            ),
            path(
                "<path:object_id>/liability.csv",
                self.admin_site.admin_view(self.liability_csv_view),
                name="coalition_coalition_liability_csv",
            ),
        ]
        return custom + super().get_urls()  # before the catch-all "<path:object_id>/"

    def _liability_coalition(self, request: HttpRequest, object_id: str) -> Coalition:
        if not request.user.has_perm("coalition.view_liability"):
            raise PermissionDenied
        coalition = Coalition.objects.filter(pk=unquote(object_id)).first()
        if coalition is None:
            raise Http404("No such coalition.")
        return coalition

    def liability_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        coalition = self._liability_coalition(request, object_id)
        figures = liability(coalition)
        chart = bar_chart(
            "Points expiring in each of the next 12 months",
            [(f"{row.label[:3]} {row.label[-2:]}", row.points) for row in figures.expiring],
        )
        return TemplateResponse(
            request,
            "admin/coalition/coalition/liability.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": coalition,
                "title": f"Points liability of {coalition}",
                "figures": figures,
                "tables": {
                    "outstanding": [figures.spendable, figures.pending, figures.owed_by_members],
                    "lots_total": Row(
                        "Held in lots",
                        figures.lots_total,
                        figures.spendable.value + figures.pending.value,
                    ),
                    "expiry": [figures.overdue, *figures.expiring, figures.never_expiring],
                },
                "chart": chart,
                "csv_url": reverse("admin:coalition_coalition_liability_csv", args=[coalition.pk]),
            },
        )

    def liability_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        coalition = self._liability_coalition(request, object_id)
        figures = liability(coalition)
        response = HttpResponse(liability_csv(figures), content_type="text/csv; charset=utf-8")
        name = f"liability-{coalition.slug}-{figures.today:%Y-%m-%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.display(description="Liability")
    def liability_link(self, obj: Coalition) -> str:
        url = reverse("admin:coalition_coalition_liability", args=[obj.pk])
        return format_html('<a href="{}">Points liability</a>', url)

    @admin.display(description="Earn rule")
    def earn_rule(self, obj: Coalition) -> str:
        return f"{obj.points_per_block} pt per {obj.earn_block} {obj.currency}"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        fixed = ["slug", "currency", "created_at", "closed_through"]
        # Postings record the point value they were made at; changing it now would revalue the
        # outstanding liability without a journal, so it is fixed once anything was posted.
        if Journal.objects.filter(coalition=obj).exists():
            fixed.append("point_value")
        return fixed

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return {"slug": ("name",)} if obj is None else {}

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            with audit_why(form.cleaned_data.get(REASON_FIELD, "")):
                coalition_settings_save(coalition=obj)
        else:
            super().save_model(request, obj, form, change)

    def create(self, request: HttpRequest, form: Any) -> Coalition:
        data = form.cleaned_data
        return coalition_create(
            slug=data["slug"],
            name=data["name"],
            currency=data["currency"],
            time_zone=data["time_zone"],
        )


@admin.register(ExpiryPolicyMigration)
class ExpiryPolicyMigrationAdmin(admin.ModelAdmin):
    """The audit trail of policy migrations: read only, written by the service."""

    list_display = (
        "requested_at",
        "coalition",
        "expiry_policy",
        "expiry_months",
        "requested_by",
        "status",
        "progress",
        "lots_changed",
        "lots_earlier",
        "points_changed",
    )
    list_filter = ("coalition", "status")
    readonly_fields = [field.name for field in ExpiryPolicyMigration._meta.fields] + ["progress"]

    @admin.display(description="Members done")
    def progress(self, obj: ExpiryPolicyMigration) -> str:
        return f"{obj.members_done} of {obj.members_total}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
