"""Settlement between tenants and the pool: closed months, statements and their lines, payments.

A month is closed once per coalition (`Period`); the close writes one balance-forward
`Statement` per tenant with its `StatementLine`s, all in one transaction, so a statement is
either wholly there or not at all. Money is Decimal, rounded half-up to the paisa per line; a
statement's amounts are sums of its rounded lines (`domain.md`, rounding).
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q


class Period(models.Model):
    """A closed settlement month of one coalition: [starts_at, ends_at) in its time zone."""

    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.PROTECT, related_name="periods"
    )
    month = models.DateField(help_text="The first day of the month.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    closed_at = models.DateTimeField()
    journals = models.PositiveIntegerField(default=0, help_text="Journals posted in the month.")

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["coalition", "month"], name="period_once_per_month"),
            models.CheckConstraint(condition=Q(month__day=1), name="period_month_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%B %Y}"


class LineKind(models.TextChoices):
    ISSUED = "issued", "Points issued"
    ISSUED_REVERSED = "issued_reversed", "Points issued, reversed"
    HONOURED = "honoured", "Points honoured"
    HONOURED_REVERSED = "honoured_reversed", "Points honoured, reversed"
    CAMPAIGN = "campaign", "Campaign points it funded"
    CAMPAIGN_REVERSED = "campaign_reversed", "Campaign points it funded, reversed"
    OPENING = "opening", "Opening balances brought from its old programme"
    FEE = "fee", "Programme fee"
    PAYMENT = "payment", "Payments received"
    PAYOUT = "payout", "Payments made to the tenant"
    ADJUSTMENT_CREDIT = "adjustment_credit", "Adjustment in the tenant's favour"
    ADJUSTMENT_DEBIT = "adjustment_debit", "Adjustment charged to the tenant"
    BREAKAGE_RETURNED = "breakage_returned", "Breakage returned (points it funded that expired)"


# Each kind's sign in the net amount: + is owed by the tenant to the pool, - by the pool to it.
LINE_SIGN = {
    LineKind.ISSUED: 1,
    LineKind.ISSUED_REVERSED: -1,
    LineKind.HONOURED: -1,
    LineKind.HONOURED_REVERSED: 1,
    LineKind.CAMPAIGN: 1,
    LineKind.CAMPAIGN_REVERSED: -1,
    LineKind.OPENING: 1,
    LineKind.FEE: 1,
    LineKind.PAYMENT: -1,
    LineKind.PAYOUT: 1,
    LineKind.ADJUSTMENT_CREDIT: -1,
    LineKind.ADJUSTMENT_DEBIT: 1,
    LineKind.BREAKAGE_RETURNED: -1,
}


class Statement(models.Model):
    """One tenant's settlement for one closed month, balance-forward.

    `net_amount` = `opening_balance` + the signed lines: positive, the tenant pays the pool;
    negative, the pool pays the tenant. It is the next statement's opening balance.
    """

    period = models.ForeignKey(Period, on_delete=models.PROTECT, related_name="statements")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    opening_balance = models.DecimalField(max_digits=14, decimal_places=2)
    issued_points = models.BigIntegerField(default=0)
    issued_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    honoured_points = models.BigIntegerField(default=0)
    honoured_value = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    reversed_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Issued reversals (credited) less honoured reversals (charged).",
    )
    fee = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    payments = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, help_text="Received less paid out."
    )
    adjustments = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Resolved disputes: charged to the tenant less credited to it.",
    )
    breakage_returned = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Under the return-breakage policy: the expired value of points it funded.",
    )
    final = models.BooleanField(
        default=False, help_text="The tenant's last statement as a trading tenant (it exited)."
    )
    net_amount = models.DecimalField(max_digits=14, decimal_places=2)
    statement_date = models.DateField()
    due_on = models.DateField()

    class Meta:
        ordering = ["-period__month", "tenant__name"]
        constraints = [
            models.UniqueConstraint(fields=["period", "tenant"], name="statement_once_per_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.tenant} — {self.period}"

    @property
    def direction(self) -> str:
        if self.net_amount > 0:
            return "tenant pays the pool"
        if self.net_amount < 0:
            return "the pool pays the tenant"
        return "nothing to pay"


class StatementLine(models.Model):
    """A worked line: how many postings of one kind at one rate, their points and amount."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    rate = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True, help_text="Per point."
    )
    count = models.PositiveIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, help_text="Rounded half-up to the paisa; unsigned."
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.amount}"


class Payment(models.Model):
    """Money between a tenant and the pool, recorded by finance. It counts on the statement of
    the month it was posted in (`posted_at`, never inside a closed month), whatever the bank's
    date (`received_on`)."""

    class Direction(models.TextChoices):
        RECEIVED = "received", "Received from the tenant"
        PAID_OUT = "paid_out", "Paid out to the tenant"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    reference = models.CharField(max_length=100, help_text="The bank reference.")
    received_on = models.DateField(help_text="The date on the bank statement.")
    statement = models.ForeignKey(
        "Statement",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payments_against",
        help_text="The statement it pays, when finance names one (partial payments too).",
    )
    posted_at = models.DateTimeField()
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-posted_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive")
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.amount} ({self.reference})"


class ArrearsWaiver(models.Model):
    """Staff lifting a tenant's arrears on one overdue statement, with the reason."""

    statement = models.OneToOneField(Statement, on_delete=models.PROTECT, related_name="waiver")
    reason = models.TextField()
    waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Waiver on {self.statement}"


class Dispute(models.Model):
    """A tenant questioning one line of a statement, from the portal. Finance resolves it: an
    accepted dispute's amount becomes an adjustment line on the tenant's next statement (a
    closed month never changes); a rejected one says why."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted: adjusted on the next statement"
        REJECTED = "rejected", "Rejected"

    class Direction(models.TextChoices):
        CREDIT = "credit", "In the tenant's favour"
        DEBIT = "debit", "Charged to the tenant"

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="disputes")
    line = models.ForeignKey(StatementLine, on_delete=models.PROTECT, related_name="disputes")
    reason = models.TextField(help_text="What the tenant says is wrong.")
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    raised_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    resolution = models.TextField(blank=True, default="", help_text="Finance's answer.")
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, help_text="The adjustment, when accepted."
    )
    direction = models.CharField(max_length=10, choices=Direction.choices, blank=True, default="")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    adjusted_on = models.ForeignKey(
        Statement,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adjustments_from",
        help_text="The statement that carries the adjustment (set by the close).",
    )

    class Meta:
        ordering = ["-raised_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True, amount=0)
                | Q(status="rejected", resolved_at__isnull=False, amount=0)
                | Q(status="accepted", resolved_at__isnull=False, amount__gt=0)
                & Q(direction__in=["credit", "debit"]),
                name="dispute_resolution_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"Dispute on {self.statement}: {self.get_status_display()}"


class Reconciliation(models.Model):
    """The proof of one closed month: the liability rolled forward, the pool against the points
    outstanding, lots per funding tenant, and `ledger_verify`. A run never corrects anything: it
    records what it found. Staff can run it again; each run is kept."""

    period = models.ForeignKey(Period, on_delete=models.PROTECT, related_name="reconciliations")
    created_at = models.DateTimeField(auto_now_add=True)
    opening_points = models.BigIntegerField()
    issued_points = models.BigIntegerField(help_text="Earned, less earn reversals.")
    redeemed_points = models.BigIntegerField(help_text="Burned, less burn reversals.")
    expired_points = models.BigIntegerField()
    other_points = models.BigIntegerField(
        help_text="Adjustments, campaigns, forfeits on erasure (merges and releases net to 0)."
    )
    closing_points = models.BigIntegerField()
    point_value = models.DecimalField(max_digits=10, decimal_places=4)
    closing_value = models.DecimalField(
        max_digits=16, decimal_places=4, help_text="The liability: member entries in money."
    )
    pool_value = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        help_text="Funded, less paid out, breakage and the rest: every other account's entries.",
    )
    outstanding_points = models.BigIntegerField(
        help_text="Members' cached balances, less what was posted after the month."
    )
    by_tenant = models.JSONField(default=list, help_text="Lots per funding tenant, rolled forward.")
    # The operator's figures for the month (`domain.md`): + is the operator's gain.
    margin_value = models.DecimalField(
        max_digits=16, decimal_places=4, default=0, help_text="Issuers' price above nominal."
    )
    variance_value = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        default=0,
        help_text="Redemption variance: nominal less the redeemers' reimbursement.",
    )
    breakage_value = models.DecimalField(max_digits=16, decimal_places=4, default=0)
    campaign_value = models.DecimalField(
        max_digits=16, decimal_places=4, default=0, help_text="Operator-funded points (a cost)."
    )
    other_value = models.DecimalField(
        max_digits=16,
        decimal_places=4,
        default=0,
        help_text="Manual point adjustments and points forfeited on erasure.",
    )
    breakage_returned_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Breakage returned to funding tenants on their statements (a cost).",
    )
    fee_value = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, help_text="Programme fees billed."
    )
    statement_adjustment_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=0,
        help_text="Dispute adjustments on statements: charged less credited to tenants.",
    )
    discrepancies = models.JSONField(default=list)
    ledger_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When `ledger_verify` ran for this record."
    )
    balanced = models.BooleanField(
        null=True, help_text="Empty while the ledger check is still to run."
    )

    class Meta:
        ordering = ["-period__month", "-created_at"]

    def __str__(self) -> str:
        return f"{self.period}: {self.verdict}"

    @property
    def verdict(self) -> str:
        if self.balanced:
            return "balanced"
        if self.balanced is None:
            return "figures balance, ledger check pending"
        return "DISCREPANCIES"

    @property
    def operator_total(self) -> Decimal:
        return (
            self.margin_value
            + self.variance_value
            + self.breakage_value
            + self.breakage_returned_value
            + self.campaign_value
            + self.other_value
            + self.fee_value
            + self.statement_adjustment_value
        )
