"""Settlement in the back office: closed months with their reconciliation, statements, payments.

Periods, statements and reconciliations are written only by the close (read-only here); staff
close a month by hand with the "Close a month" action, re-run a reconciliation, and record
payments and arrears waivers, each through its service.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyAdmin, ReadOnlyTabularInline, admin_link
from coalition.errors import InvalidRequest
from settlement.models import (
    ArrearsWaiver,
    Payment,
    Period,
    Reconciliation,
    Statement,
    StatementLine,
)
from settlement.services import (
    arrears_waive,
    payment_record,
    reconciliation_run,
)
from tenants.models import Tenant


def _verdict(reconciliation: Reconciliation | None) -> SafeString | str:
    if reconciliation is None:
        return "—"
    if reconciliation.balanced:
        return format_html('<strong style="color:#1a7f37">{}</strong>', "Balanced")
    return format_html(
        '<strong style="color:#b42318">{} discrepancies</strong>',
        len(reconciliation.discrepancies),
    )


class StatementInline(ReadOnlyTabularInline):
    model = Statement
    fields = ("tenant_link", "opening_balance", "issued_value", "honoured_value", "fee",
              "payments", "net_amount", "due_on")  # fmt: skip

    @admin.display(description="Tenant")
    def tenant_link(self, obj: Statement) -> SafeString:
        return admin_link(obj, str(obj.tenant))


class ReconciliationInline(ReadOnlyTabularInline):
    model = Reconciliation
    fields = (
        "created_at",
        "verdict",
        "opening_points",
        "issued_points",
        "redeemed_points",
        "expired_points",
        "other_points",
        "closing_points",
        "pool_value",
        "findings",
    )

    @admin.display(description="Result")
    def verdict(self, obj: Reconciliation) -> SafeString | str:
        return _verdict(obj)

    @admin.display(description="Discrepancies")
    def findings(self, obj: Reconciliation) -> SafeString | str:
        if not obj.discrepancies:
            return "none"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", (
            (found,) for found in obj.discrepancies
        )))  # fmt: skip


@admin.register(Period)
class PeriodAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "coalition", "journals", "closed_at", "reconciled")
    list_filter = ("coalition",)
    ordering = ("-month",)
    inlines = (ReconciliationInline, StatementInline)
    actions = ("reconcile_again",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Period]:
        return super().get_queryset(request).select_related("coalition")

    @admin.display(description="Reconciliation")
    def reconciled(self, obj: Period) -> SafeString | str:
        return _verdict(obj.reconciliations.order_by("-created_at").first())

    @admin.action(description="Run the reconciliation again", permissions=["view"])
    def reconcile_again(self, request: HttpRequest, queryset: QuerySet[Period]) -> None:
        for period in queryset.select_related("coalition"):
            found = reconciliation_run(period)
            level = messages.SUCCESS if found.balanced else messages.ERROR
            self.message_user(request, f"{period}: {found}", level)


class StatementLineInline(ReadOnlyTabularInline):
    model = StatementLine
    fields = ("kind", "rate", "count", "points", "amount")


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "period", "opening_balance", "net_amount", "direction", "due_on")
    list_filter = ("period__coalition", "period__month")
    search_fields = ("tenant__name", "tenant__slug")
    inlines = (StatementLineInline,)

    def get_ordering(self, request: HttpRequest) -> Any:
        return ["-period__month", "tenant__name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Statement]:
        return super().get_queryset(request).select_related("tenant", "period")


class PaymentForm(forms.ModelForm):
    class Meta:
        model = Payment
        fields = ("tenant", "direction", "amount", "reference", "received_on", "statement")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    """Finance records a payment; it is never edited or deleted afterwards (a mistake is put
    right by a payment the other way, with its own reference)."""

    form = PaymentForm
    list_display = ("tenant", "direction", "amount", "reference", "received_on", "posted_at")
    list_filter = ("direction", "tenant__coalition")
    search_fields = ("reference", "tenant__name")
    autocomplete_fields = ()
    readonly_fields = ("posted_at", "recorded_by")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Payment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            created = payment_record(
                tenant=data["tenant"],
                direction=data["direction"],
                amount=data["amount"],
                reference=data["reference"],
                received_on=data["received_on"],
                statement=data.get("statement"),
                actor=request.user,
            )
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.detail) from exc
        obj.pk, obj.posted_at, obj.recorded_by = created.pk, created.posted_at, created.recorded_by
        obj._state.adding = False


class ArrearsWaiverForm(forms.ModelForm):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.exclude(arrears_since=None))

    class Meta:
        model = ArrearsWaiver
        fields = ("tenant", "reason")


@admin.register(ArrearsWaiver)
class ArrearsWaiverAdmin(admin.ModelAdmin):
    """Lifting a tenant's arrears: add a waiver (a tenant in arrears and the reason); it is kept
    as the record of who lifted what, and why."""

    list_display = ("statement", "reason", "waived_by", "created_at")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            return ArrearsWaiverForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("statement", "reason", "waived_by", "created_at") if obj else ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ArrearsWaiver, form: Any, change: bool) -> None:
        try:
            created = arrears_waive(
                tenant=form.cleaned_data["tenant"],
                reason=form.cleaned_data["reason"],
                actor=request.user,
            )
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.detail) from exc
        obj.pk, obj.statement_id = created.pk, created.statement_id
        obj._state.adding = False
