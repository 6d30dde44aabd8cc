"""Campaigns in the back office: staff configure multipliers and cross-shop bonuses without code.

The form shows the fields of the kind chosen and says plainly what is wrong; saving goes through
`campaign_save`, which refuses to change the terms of a campaign that has given points (refunds
are priced with them). Each campaign's page shows what it gave so far, by funder.
"""

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet, Sum
from django.http import HttpRequest
from django.utils.html import format_html

from coalition.admin.base import REASON_FIELD, ChangeReasonAdmin
from coalition.models import Campaign, CampaignAward, CampaignKind
from coalition.models.campaigns import ALL_WEEKDAYS, WEEKDAYS
from coalition.services.campaigns import TERMS, campaign_save, campaign_status
from consent.audit import audit_why


class CampaignForm(forms.ModelForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        initial=ALL_WEEKDAYS,
        help_text="The days of the week it applies on (the purchase's day, mall time).",
    )

    class Meta:
        model = Campaign
        fields = (
            "coalition",
            "name",
            "kind",
            "paused",
            "starts_on",
            "ends_on",
            "weekdays",
            "tenant",
            "multiplier",
            "bonus_points",
            "min_categories",
            "min_amount",
            "member_cap",
            "total_cap",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Without the kind in the form, the terms are read-only (it gave points): nothing to check.
        kind = data.get("kind") if "kind" in self.fields else None
        if kind == CampaignKind.MULTIPLIER:
            if not data.get("tenant"):
                self.add_error("tenant", "A multiplier runs at one tenant, who pays for it.")
            multiplier = data.get("multiplier")
            if multiplier is None or multiplier <= 1:
                self.add_error("multiplier", "Give a multiplier above 1, e.g. 2.00 for double.")
            data["bonus_points"] = None
        elif kind == CampaignKind.CROSS_SHOP:
            if data.get("tenant"):
                self.add_error("tenant", "The mall pays a cross-shop bonus: leave the tenant out.")
            if not data.get("bonus_points"):
                self.add_error("bonus_points", "Give the bonus in points, e.g. 50.")
            data["multiplier"] = None
        tenant, coalition = data.get("tenant"), data.get("coalition")
        if tenant is not None and coalition is not None and tenant.coalition_id != coalition.pk:
            self.add_error("tenant", f"{tenant} is not a tenant of {coalition}.")
        if self.instance.pk and CampaignAward.objects.filter(campaign=self.instance).exists():
            # It gave points since this form was opened (its terms were editable then).
            stored = Campaign.objects.get(pk=self.instance.pk)
            for name in TERMS:
                if name in self.fields and data.get(name) != getattr(stored, name):
                    self.add_error(name, "It has given points since: its terms are fixed now.")
        return data


@admin.register(Campaign)
class CampaignAdmin(ChangeReasonAdmin):
    form = CampaignForm
    list_display = (
        "name",
        "kind_short",
        "tenant",
        "dates",
        "days",
        "status",
        "points_given",
        "cost",
    )
    list_filter = ("kind", "paused", "coalition")
    search_fields = ("name", "tenant__name")
    fieldsets = (
        (None, {"fields": ("coalition", "name", "kind", "paused")}),
        ("When", {"fields": ("starts_on", "ends_on", "weekdays")}),
        (
            "Points multiplier (the tenant pays for the extra points)",
            {"fields": ("tenant", "multiplier")},
        ),
        (
            "Cross-shop bonus (the mall pays)",
            {"fields": ("bonus_points", "min_categories")},
        ),
        (
            "Limits, so a loophole cannot be farmed",
            {"fields": ("min_amount", "member_cap", "total_cap")},
        ),
        ("Given so far", {"fields": ("given_summary",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return (
            super()
            .get_queryset(request)
            .select_related("tenant", "coalition")
            .annotate(_given=Sum("awards__points"), _cost=Sum("awards__value"))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        fixed: tuple[str, ...] = ("given_summary",)
        if obj is not None and CampaignAward.objects.filter(campaign=obj).exists():
            # Refunds are priced with these terms, and statements already show what they gave.
            fixed += ("coalition", *TERMS)
        return fixed

    @admin.display(description="Kind", ordering="kind")
    def kind_short(self, obj: Campaign) -> str:
        return "Multiplier" if obj.kind == CampaignKind.MULTIPLIER else "Cross-shop bonus"

    @admin.display(description="Dates", ordering="starts_on")
    def dates(self, obj: Campaign) -> str:
        return f"{obj.starts_on:%d %b} to {obj.ends_on:%d %b %Y}"

    @admin.display(description="Days")
    def days(self, obj: Campaign) -> str:
        if sorted(obj.weekdays) == ALL_WEEKDAYS:
            return "Every day"
        names = dict(WEEKDAYS)
        return ", ".join(names[day][:3] for day in sorted(obj.weekdays))

    @admin.display(description="Status")
    def status(self, obj: Campaign) -> str:
        return campaign_status(obj)

    @admin.display(description="Points given", ordering="_given")
    def points_given(self, obj: Campaign) -> str:
        return f"{int(getattr(obj, '_given', 0) or 0):,}"

    @admin.display(description="Cost")
    def cost(self, obj: Campaign) -> str:
        cost = getattr(obj, "_cost", None) or Decimal(0)
        payer = obj.tenant.name if obj.tenant else "the mall"
        return f"{obj.coalition.currency} {cost:,.2f}, {payer}"

    @admin.display(description="Given so far")
    def given_summary(self, obj: Campaign) -> str:
        if obj.pk is None:
            return "Nothing yet."
        totals = CampaignAward.objects.filter(campaign=obj).aggregate(
            points=Sum("points"), value=Sum("value"), members=Count("member", distinct=True)
        )
        points = int(totals["points"] or 0)
        if not points and not totals["members"]:
            return "Nothing yet."
        cap = f" of a total cap of {obj.total_cap:,}" if obj.total_cap else ""
        return format_html(
            "{} points{} to {} members, costing {} {} (net of refunds).",
            f"{points:,}",
            cap,
            f"{totals['members']:,}",
            obj.coalition.currency,
            f"{totals['value'] or 0:,.2f}",
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The reason (`ChangeReasonAdmin`) goes with the service's save into the audit log.
        with audit_why(form.cleaned_data.get(REASON_FIELD, "")):
            campaign_save(campaign=obj, user=request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Awards point at campaigns; a campaign ends (or is paused), it is never deleted.
        return False
