"""The programme's settings: created through `coalition_create`, then tuned by staff."""

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from coalition.admin.base import ServiceCreateAdmin
from coalition.errors import InvalidRequest
from coalition.models import Coalition, Journal
from coalition.services import coalition_create

CREATE_FIELDS = ("name", "slug", "currency", "time_zone")


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
class CoalitionAdmin(ServiceCreateAdmin):
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
        "created_at",
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

    actions = ("close_ended_months",)

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

    @admin.display(description="Earn rule")
    def earn_rule(self, obj: Coalition) -> str:
        return f"{obj.points_per_block} pt per {obj.earn_block} {obj.currency}"

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else self.fieldsets

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

    def create(self, request: HttpRequest, form: Any) -> Coalition:
        data = form.cleaned_data
        return coalition_create(
            slug=data["slug"],
            name=data["name"],
            currency=data["currency"],
            time_zone=data["time_zone"],
        )
