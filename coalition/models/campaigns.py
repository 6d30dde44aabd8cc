"""Campaigns: rules staff configure that add points at earn time, and what each one awarded.

A campaign is priced in `coalition.services.campaigns`, the one place an earn's points are
computed, so the till API, batch files and imports all get the same points. Every point a
campaign gives (or a refund takes back) is a `CampaignAward` row beside the journal that posted
it: the caps, the statements and the dashboard read those rows.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

WEEKDAYS = (
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
)
ALL_WEEKDAYS = [day for day, _ in WEEKDAYS]


def all_weekdays() -> list[int]:
    return list(ALL_WEEKDAYS)


class CampaignKind(models.TextChoices):
    MULTIPLIER = "multiplier", "Points multiplier (funded by the tenant)"
    CROSS_SHOP = "cross_shop", "Cross-shop bonus (funded by the mall)"


class Campaign(models.Model):
    """A multiplier a tenant funds at its own tills, or a bonus the mall funds for shopping in
    several categories on one day. Applies to purchases by their occurred date."""

    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.PROTECT, related_name="campaigns"
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=12, choices=CampaignKind.choices)
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
        help_text="Multiplier: the tenant whose tills it applies at, and who pays for the extra "
        "points.",
    )
    starts_on = models.DateField(help_text="First day (the purchase's date, mall time).")
    ends_on = models.DateField(help_text="Last day, inclusive.")
    weekdays = ArrayField(
        models.PositiveSmallIntegerField(choices=WEEKDAYS),
        default=all_weekdays,
        help_text="Days of the week it applies on.",
    )
    multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Multiplier: e.g. 2.00 doubles the base points (adds floor(base * (m - 1))).",
    )
    bonus_points = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cross-shop bonus: the points given once per day."
    )
    min_categories = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(2)],
        help_text="Cross-shop bonus: purchases in at least this many tenant categories on one day.",
    )
    min_amount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=0,
        help_text="Only purchases of at least this amount count (0: any purchase that earns).",
    )
    member_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most points one member can get from it (empty: no cap)."
    )
    total_cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Most points it can give in all (empty: no cap)."
    )
    awarded = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Points given, net of refunds; kept only for a campaign with a total cap.",
    )
    paused = models.BooleanField(default=False, help_text="A paused campaign gives nothing.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_on", "name"]
        indexes = [models.Index(fields=["coalition", "ends_on"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=models.F("starts_on")), name="campaign_dates_ordered"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind="multiplier",
                        tenant__isnull=False,
                        multiplier__gt=1,
                        bonus_points__isnull=True,
                    )
                    | Q(
                        kind="cross_shop",
                        tenant__isnull=True,
                        multiplier__isnull=True,
                        bonus_points__gt=0,
                    )
                ),
                name="campaign_terms_match_kind",
                violation_error_message="A multiplier names a tenant and a multiplier above 1; "
                "a cross-shop bonus names points and no tenant.",
            ),
            models.CheckConstraint(
                condition=Q(total_cap__isnull=True) | Q(awarded__lte=models.F("total_cap")),
                name="campaign_within_total_cap",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignAward(models.Model):
    """Points a campaign gave with an earn (positive), or a refund took back (negative).

    `value` is what the funder pays for them: the tenant's price per point for a multiplier,
    the nominal point value for the mall's bonus.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="awards")
    journal = models.ForeignKey(
        "coalition.Journal", on_delete=models.PROTECT, related_name="campaign_awards"
    )
    member = models.ForeignKey("members.Member", on_delete=models.PROTECT, related_name="+")
    funding_tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty when the mall funded them.",
    )
    points = models.BigIntegerField()
    value = models.DecimalField(max_digits=18, decimal_places=4)
    occurred_on = models.DateField(help_text="The purchase's date (mall time).")
    posted_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["campaign", "member"]),
            models.Index(fields=["member", "occurred_on"]),
            models.Index(fields=["posted_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="campaign_award_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.points:+d} from {self.campaign_id} on journal {self.journal_id}"
