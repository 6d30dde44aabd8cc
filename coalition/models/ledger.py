"""The points ledger: accounts, journals of balanced entries, and the lots behind member balances.

Journals and entries are append-only; a database trigger rejects UPDATE and DELETE on them
(migration `0002_ledger_immutability`). Lots and their consumption records are derived working
state that the services keep in step with the entries and that `ledger_verify` checks.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class AccountKind(models.TextChoices):
    MEMBER_POINTS = "member_points", "Member: spendable points"
    MEMBER_PENDING = "member_pending", "Member: pending points (holdback)"
    TENANT_ISSUED = "tenant_issued", "Tenant: points issued"
    TENANT_REDEEMED = "tenant_redeemed", "Tenant: points honoured"
    TENANT_CAMPAIGN = "tenant_campaign", "Tenant: campaign points it funded"
    BREAKAGE = "breakage", "Coalition: expired points (breakage)"
    CAMPAIGN = "campaign", "Coalition: operator-funded campaign points"
    ADJUSTMENT = "adjustment", "Coalition: manual adjustments"
    FORFEIT = "forfeit", "Coalition: points forfeited on erasure"
    MARGIN = "margin", "Operator: margin on points sold above nominal"
    VARIANCE = "variance", "Operator: redemption variance"


MEMBER_KINDS = (AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING)
TENANT_KINDS = (AccountKind.TENANT_ISSUED, AccountKind.TENANT_REDEEMED, AccountKind.TENANT_CAMPAIGN)
MEMBER_KINDS_SET = frozenset(MEMBER_KINDS)


class Account(models.Model):
    """A ledger account. Only member accounts keep a cached balance (see `balance`).

    Tenant and coalition accounts are touched by many tills at once; caching their balance would
    make every earn in the mall queue on one row. Their balances are sums over entries.
    """

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    kind = models.CharField(max_length=20, choices=AccountKind.choices)
    member = models.ForeignKey(
        "members.Member", null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="accounts"
    )
    balance = models.BigIntegerField(
        default=0, help_text="Cached for member accounts only; always the sum of the entries."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member", "kind"],
                condition=Q(member__isnull=False),
                name="account_one_per_member_kind",
            ),
            models.UniqueConstraint(
                fields=["tenant", "kind"],
                condition=Q(tenant__isnull=False),
                name="account_one_per_tenant_kind",
            ),
            models.UniqueConstraint(
                fields=["coalition", "kind"],
                condition=Q(member__isnull=True, tenant__isnull=True),
                name="account_one_per_coalition_kind",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind__in=MEMBER_KINDS, member__isnull=False, tenant__isnull=True)
                    | Q(kind__in=TENANT_KINDS, member__isnull=True, tenant__isnull=False)
                    | (
                        ~Q(kind__in=MEMBER_KINDS + TENANT_KINDS)
                        & Q(member__isnull=True, tenant__isnull=True)
                    )
                ),
                name="account_owner_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=MEMBER_KINDS) | Q(balance=0),
                name="account_only_member_balances_cached",
            ),
        ]

    def __str__(self) -> str:
        owner = self.member_id or self.tenant_id or self.coalition_id
        return f"{self.get_kind_display()} #{owner}"


class JournalKind(models.TextChoices):
    EARN = "earn", "Earn"
    BURN = "burn", "Burn"
    EARN_REVERSAL = "earn_reversal", "Earn reversal"
    BURN_REVERSAL = "burn_reversal", "Burn reversal"
    RELEASE = "release", "Pending points released"
    EXPIRE = "expire", "Expiry"
    ADJUST = "adjust", "Manual adjustment"
    MERGE = "merge", "Member merge"
    FORFEIT = "forfeit", "Forfeit on erasure"
    OPENING = "opening", "Opening balance brought from a tenant's old programme"


class Journal(models.Model):
    """One change of points: a set of entries that sum to zero in points and in money.

    Every posting carries its points, their money value at posting time, the rates in force on
    its occurred date, its posting time (which settlement period it falls in) and its occurred
    time (when the purchase happened).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    kind = models.CharField(max_length=20, choices=JournalKind.choices)
    member = models.ForeignKey(
        "members.Member",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="journals",
        help_text="The member whose points changed (the merged-away member, for a merge).",
    )
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    store = models.ForeignKey(
        "tenants.Store", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    till = models.ForeignKey(
        "tenants.Till", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    receipt = models.CharField(max_length=64, blank=True, default="")
    points = models.BigIntegerField(help_text="Points moved (positive).")
    amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Earn: purchase amount. Earn reversal: amount refunded.",
    )
    bill_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    value = models.DecimalField(
        max_digits=18, decimal_places=2, help_text="Points at nominal value (burn: the discount)."
    )
    point_value = models.DecimalField(max_digits=10, decimal_places=4)
    earn_block = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Earn: the earn rule in force, so a later partial refund uses the same rule.",
    )
    points_per_block = models.PositiveIntegerField(null=True, blank=True)
    price_per_point = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    reimbursement_per_point = models.DecimalField(
        max_digits=10, decimal_places=4, null=True, blank=True
    )
    reverses = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals"
    )
    counterpart = models.ForeignKey(
        "members.Member",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Merge: the surviving member.",
    )
    reason = models.TextField(blank=True, default="")
    occurred_at = models.DateTimeField()
    posted_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        ordering = ["posted_at", "id"]
        indexes = [
            models.Index(fields=["coalition", "posted_at"]),
            models.Index(fields=["tenant", "posted_at", "id"]),
            models.Index(fields=["member", "posted_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "kind", "receipt"],
                condition=Q(kind__in=["earn", "burn"]) & ~Q(receipt=""),
                name="journal_receipt_unique_per_store_kind",
            ),
            models.CheckConstraint(condition=Q(points__gte=0), name="journal_points_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.points} pts ({self.public_id})"


class Entry(models.Model):
    """One side of a journal. `points` and `value` are signed; a journal's entries sum to zero.

    Member entries record the account's balance before and after (as pgledger does), so any
    drift is visible row by row. `digest` is set by the database on insert and lets
    `ledger_verify` prove that no entry was changed afterwards.
    """

    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    points = models.BigIntegerField()
    value = models.DecimalField(max_digits=18, decimal_places=4)
    balance_before = models.BigIntegerField(null=True, blank=True)
    balance_after = models.BigIntegerField(null=True, blank=True)
    digest = models.CharField(max_length=64, editable=False, default="")

    class Meta:
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "id"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(balance_before__isnull=True, balance_after__isnull=True)
                | Q(
                    balance_before__isnull=False,
                    balance_after__isnull=False,
                    balance_after=models.F("balance_before") + models.F("points"),
                ),
                name="entry_balance_after_follows",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} on {self.account_id} (journal {self.journal_id})"


class Lot(models.Model):
    """Points from one credit (an earn, an adjustment, a campaign), consumed oldest-expiry-first.

    A lot is pending while `pending_until` is set (holdback) and spendable once released.
    `remaining` is working state: points minus the sum of its consumption records.
    """

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="lots")
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="lots")
    funding_tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="funded_lots",
        help_text="Empty when the operator funded the points (campaign, adjustment).",
    )
    points = models.BigIntegerField()
    remaining = models.BigIntegerField()
    earned_at = models.DateTimeField()
    expires_on = models.DateField(null=True, blank=True)
    slide_months = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Sliding expiry: the member's activity moves this lot's last day to this many "
        "months on. Empty for lots earned under another policy: a change of policy applies to "
        "new lots only, unless staff migrate the existing ones.",
    )
    pending_until = models.DateTimeField(
        null=True, blank=True, help_text="Holdback: the moment these points become spendable."
    )
    notice = models.ForeignKey(
        "coalition.ExpiryNotice",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The expiry notice that covered this lot: the sweep waits the notice window "
        "from when it was recorded.",
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["member", "expires_on", "id"],
                condition=Q(remaining__gt=0),
                name="lot_open_by_member",
            ),
            models.Index(
                fields=["coalition", "expires_on"],
                condition=Q(remaining__gt=0, pending_until__isnull=True),
                name="lot_open_by_expiry",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("points")),
                name="lot_remaining_within_points",
            ),
            models.CheckConstraint(condition=Q(points__gt=0), name="lot_points_positive"),
        ]

    def __str__(self) -> str:
        return f"Lot {self.pk}: {self.remaining}/{self.points} pts, expires {self.expires_on}"


class LotConsumption(models.Model):
    """Points taken from a lot by a journal (positive), or given back to it (negative).

    Links each burn, expiry or reversal to the lots it used, so a burn reversal restores exactly
    the lots the burn took from.
    """

    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="consumptions")
    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="consumptions")
    points = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["journal"])]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="lot_consumption_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} from lot {self.lot_id} by journal {self.journal_id}"


class AdjustmentStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved and posted"
    REJECTED = "rejected", "Rejected"


class AdjustmentRequest(models.Model):
    """A staff adjustment above the coalition's threshold waits here for a second staff member."""

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+")
    points = models.BigIntegerField(help_text="Positive credits the member, negative debits.")
    reason = models.TextField()
    status = models.CharField(
        max_length=10, choices=AdjustmentStatus.choices, default=AdjustmentStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    journal = models.OneToOneField(
        Journal, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="adjustment_nonzero"),
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                name="adjustment_maker_is_not_checker",
            ),
        ]

    def __str__(self) -> str:
        return f"Adjustment {self.points:+d} for {self.member_id} ({self.status})"
