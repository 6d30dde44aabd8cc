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
    Dispute,
    Payment,
    Period,
    Reconciliation,
    Statement,
    StatementLine,
)
from settlement.services import (
    arrears_waive,
    dispute_resolve,
    payment_record,
    reconciliation_run,
    reconciliation_verify,
)
from tenants.models import Tenant


def _verdict(reconciliation: Reconciliation | None) -> SafeString | str:
    if reconciliation is None:
        return "—"
    if reconciliation.balanced:
        return format_html('<strong class="balance-ok">{}</strong>', "Balanced")
    if reconciliation.balanced is None:
        return format_html(
            '<strong class="balance-pending">{}</strong>', "Figures balance; ledger check pending"
        )
    return format_html(
        '<strong class="balance-bad">{} discrepancies</strong>',
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
        "ledger_checked_at",
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


# The operator's figures of a month (`domain.md`): + is the operator's gain, - its cost.
OPERATOR_FIGURES = (
    ("margin_value", "Margin: issuers' price above the point's value"),
    ("variance_value", "Redemption variance: the point's value above reimbursements"),
    ("fee_value", "Programme fees billed"),
    ("breakage_value", "Breakage: points expired"),
    ("breakage_returned_value", "Breakage returned to the funding tenants"),
    ("campaign_value", "Campaign points the operator funded"),
    ("other_value", "Manual point adjustments and forfeits"),
    ("statement_adjustment_value", "Dispute adjustments on statements"),
)


@admin.register(Period)
class PeriodAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "coalition", "journals", "closed_at", "reconciled", "operator")
    list_filter = ("coalition",)
    ordering = ("-month",)
    fields = (
        "coalition", "month", "starts_at", "ends_at", "closed_at", "journals", "operator_figures"
    )  # fmt: skip
    readonly_fields = ("operator_figures",)
    inlines = (ReconciliationInline, StatementInline)
    actions = ("reconcile_again",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Period]:
        return super().get_queryset(request).select_related("coalition")

    @admin.display(description="Reconciliation")
    def reconciled(self, obj: Period) -> SafeString | str:
        return _verdict(obj.reconciliations.order_by("-created_at").first())

    @admin.display(description="Operator's result")
    def operator(self, obj: Period) -> str:
        found = obj.reconciliations.order_by("-created_at").first()
        return "—" if found is None else f"{found.operator_total:,.2f}"

    @admin.display(description="The operator's figures")
    def operator_figures(self, obj: Period) -> SafeString | str:
        found = obj.reconciliations.order_by("-created_at").first()
        if found is None:
            return "—"
        rows = [(label, f"{getattr(found, name):,.2f}") for name, label in OPERATOR_FIGURES]
        rows.append(("The operator's result for the month", f"{found.operator_total:,.2f}"))
        return format_html(
            '<table class="operator-figures">{}</table>'
            '<p class="help">In {}: + is the operator\'s gain, - its cost. The pool itself is '
            "kept at the point's value and is not the operator's.</p>",
            format_html_join("", '<tr><td>{}</td><td class="num">{}</td></tr>', rows),
            obj.coalition.currency,
        )

    @admin.action(description="Run the reconciliation again", permissions=["view"])
    def reconcile_again(self, request: HttpRequest, queryset: QuerySet[Period]) -> None:
        for period in queryset.select_related("coalition"):
            found = reconciliation_run(period)
            reconciliation_verify(found.pk)
            found.refresh_from_db()
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


class DisputeResolveForm(forms.ModelForm):
    decision = forms.ChoiceField(
        choices=(("accept", "Accept: adjust on the next statement"), ("reject", "Reject")),
        widget=forms.RadioSelect,
    )

    class Meta:
        model = Dispute
        fields = ("decision", "amount", "direction", "resolution")
        help_texts = {
            "amount": "For an accepted dispute: the amount to adjust, in rupees and paise.",
            "resolution": "The answer the tenant reads in its portal.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, required in (("resolution", True), ("amount", False), ("direction", False)):
            # Absent when the page is read only (staff who may view disputes, not answer them).
            if name in self.fields:
                self.fields[name].required = required

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("decision") == "accept":
            if not data.get("amount"):
                self.add_error("amount", "An accepted dispute needs the amount to adjust.")
            if not data.get("direction"):
                self.add_error("direction", "Say whether the tenant is credited or charged.")
        return data


@admin.register(Dispute)
class DisputeAdmin(admin.ModelAdmin):
    """Tenants raise disputes from the portal; finance answers each one here, once."""

    form = DisputeResolveForm
    list_display = ("statement", "line", "status", "raised_at", "amount", "adjusted_on")
    list_filter = ("status", "statement__period__coalition")
    search_fields = ("statement__tenant__name", "reason")
    list_select_related = ("statement__tenant", "statement__period", "line", "adjusted_on")
    fixed = ("statement", "line", "reason", "raised_by", "raised_at")
    answered = ("status", "amount", "direction", "resolution", "resolved_by", "resolved_at",
                "adjusted_on")  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        open_or_list = obj is None or obj.status == Dispute.Status.OPEN
        return open_or_list and super().has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status == Dispute.Status.OPEN:
            return (*self.fixed, "decision", "amount", "direction", "resolution")
        return (*self.fixed, *self.answered)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status == Dispute.Status.OPEN:
            return self.fixed
        return (*self.fixed, *self.answered)

    def save_model(self, request: HttpRequest, obj: Dispute, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            answered = dispute_resolve(
                dispute=obj,
                accept=data["decision"] == "accept",
                resolution=data["resolution"],
                amount=data.get("amount"),
                direction=data.get("direction") or "",
                actor=request.user,
            )
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.detail) from exc
        for name in ("status", "amount", "direction", "resolution", "resolved_at"):
            setattr(obj, name, getattr(answered, name))
