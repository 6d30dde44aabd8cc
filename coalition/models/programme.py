"""The programme: one points currency shared by the tenants of a mall."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class ExpiryPolicy(models.TextChoices):
    NONE = "none", "Points never expire"
    FIXED = "fixed", "Fixed term from the earn date"
    CALENDAR = "calendar", "Yearly sweep of points older than N months"
    SLIDING = "sliding", "All points expire after N months without activity"


class BreakagePolicy(models.TextChoices):
    OPERATOR = "operator", "Breakage goes to the operator"
    FUNDING_TENANTS = "funding_tenants", "Breakage is returned to the funding tenants pro rata"


class Coalition(models.Model):
    """A programme run by one operator at one mall. Everything else belongs to one coalition."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="INR")
    time_zone = models.CharField(max_length=64, default="Asia/Kolkata")
    phone_region = models.CharField(
        max_length=2, default="IN", help_text="Region assumed for phone numbers without +country."
    )

    # Earn rule: floor(amount / earn_block) * points_per_block.
    earn_block = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("100.00"))
    points_per_block = models.PositiveIntegerField(default=1)
    point_value = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("1.0000"),
        help_text="Nominal value of one point on redemption; the pool is kept at this value.",
    )
    receipt_ceiling = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("1000000.00"),
        help_text="Largest purchase amount accepted on one receipt.",
    )
    default_price_per_point = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("1.0000"),
        help_text="What a new tenant pays the pool per point it issues.",
    )
    default_reimbursement_per_point = models.DecimalField(
        max_digits=10,
        decimal_places=4,
        default=Decimal("1.0000"),
        help_text="What a new tenant is paid per point it honours.",
    )

    expiry_policy = models.CharField(
        max_length=16, choices=ExpiryPolicy.choices, default=ExpiryPolicy.FIXED
    )
    expiry_months = models.PositiveIntegerField(default=12)
    expiry_sweep_month = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(12)],
        help_text="Calendar policy: month of the yearly sweep.",
    )
    expiry_sweep_day = models.PositiveSmallIntegerField(
        default=31,
        validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Calendar policy: day of the yearly sweep (clamped to the month's length).",
    )
    expiry_notice_days = models.PositiveIntegerField(default=30)
    sliding_lots = models.BooleanField(
        default=False,
        editable=False,
        help_text="Some lots were earned under a sliding policy and move with activity (the "
        "earn and burn paths skip that step when no lot can slide).",
    )
    holdback_days = models.PositiveIntegerField(
        default=0, help_text="Days newly earned points stay pending before they can be spent."
    )

    small_group_k = models.PositiveIntegerField(
        default=10, help_text="No aggregate figure is shown to a tenant from fewer members."
    )
    dominance_n = models.PositiveSmallIntegerField(default=2)
    dominance_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("85.00")
    )
    programme_fee_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("0.00")
    )
    payment_terms_days = models.PositiveIntegerField(default=15)
    breakage_policy = models.CharField(
        max_length=20, choices=BreakagePolicy.choices, default=BreakagePolicy.OPERATOR
    )
    adjustment_approval_threshold = models.PositiveIntegerField(
        default=1000,
        help_text="Manual adjustments of more points than this wait for a second staff member.",
    )
    # Privacy (issue 6): the shopper-rights deadline and how long an inactive member is kept.
    privacy_request_days = models.PositiveIntegerField(
        default=30, help_text="Days to answer an access or erasure request."
    )
    retention_years = models.PositiveIntegerField(
        default=3,
        help_text="A member with no activity for this many years is warned, then erased.",
    )
    retention_warning_days = models.PositiveIntegerField(
        default=30,
        help_text="Days between the retention warning and the erasure; activity in between "
        "keeps the member.",
    )

    closed_through = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="End of the last closed settlement month: nothing is posted before it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [("view_liability", "Can see the points liability and export it (CSV)")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(earn_block__gt=0), name="coalition_earn_block_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(point_value__gt=0), name="coalition_point_value_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MigrationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"


class ExpiryPolicyMigration(models.Model):
    """Staff's explicit, audited decision to apply an expiry policy to lots that already exist.

    A change of `Coalition.expiry_policy` applies to new lots only; this record is the only way
    existing lots get new last days. It keeps the policy it applies (a later change of the
    coalition's settings does not alter a queued run), who asked and why, and what it changed.
    """

    coalition = models.ForeignKey(Coalition, on_delete=models.PROTECT)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()
    reason = models.TextField()
    expiry_policy = models.CharField(max_length=16, choices=ExpiryPolicy.choices)
    expiry_months = models.PositiveIntegerField()
    expiry_sweep_month = models.PositiveSmallIntegerField()
    expiry_sweep_day = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=10, choices=MigrationStatus.choices, default=MigrationStatus.QUEUED
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    members_total = models.PositiveIntegerField(default=0)
    members_done = models.PositiveIntegerField(default=0)
    lots_changed = models.PositiveBigIntegerField(default=0)
    lots_earlier = models.PositiveBigIntegerField(
        default=0, help_text="Lots whose last day moved earlier (each waits for a fresh notice)."
    )
    points_changed = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "expiry policy migration"
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        policy = self.get_expiry_policy_display()
        return f"{policy} applied to existing lots ({self.requested_at:%Y-%m-%d})"
