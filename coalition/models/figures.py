"""Pre-aggregated daily figures behind the staff dashboard.

One row per coalition and local day (the coalition's time zone), by **posting date**, as the
statements and the reconciliation count: a late batch line is posted in the open period with
an old occurred date, so it lands on the day it was posted and a past day's row never changes.
`coalition.services.figures.daily_figures_refresh` writes them once a day has ended; the page
reads them and computes the days not stored yet (today, always) live with the same SQL.
"""

from django.db import models


class DailyFigures(models.Model):
    """What was posted on one day, and the distinct-member counts as of the end of that day."""

    coalition = models.ForeignKey(
        "coalition.Coalition", on_delete=models.CASCADE, related_name="daily_figures"
    )
    day = models.DateField(help_text="The local posting date (the coalition's time zone).")
    issued = models.BigIntegerField(default=0, help_text="Points of earn journals.")
    issued_reversed = models.BigIntegerField(default=0, help_text="Points of earn reversals.")
    redeemed = models.BigIntegerField(default=0, help_text="Points of burn journals.")
    redeemed_reversed = models.BigIntegerField(default=0, help_text="Points of burn reversals.")
    expired = models.BigIntegerField(default=0)
    member_net = models.BigIntegerField(
        default=0,
        help_text="Net change of members' points (spendable and pending) from every journal: "
        "the day's change in the liability, in points.",
    )
    purchases = models.PositiveIntegerField(default=0, help_text="Earn and burn journals.")
    visits = models.PositiveIntegerField(
        default=0, help_text="Distinct (member, tenant) pairs with a purchase that day."
    )
    enrolled = models.PositiveIntegerField(default=0, help_text="Members enrolled that day.")
    active_30d = models.PositiveIntegerField(
        default=0, help_text="Members with a purchase in the 30 days ending this day."
    )
    month_buyers = models.PositiveIntegerField(
        default=0, help_text="Members with a purchase from the 1st of the month to this day."
    )
    month_cross_shoppers = models.PositiveIntegerField(
        default=0, help_text="Of `month_buyers`, those who bought at two or more tenants."
    )
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "daily figures"
        ordering = ["coalition", "day"]
        constraints = [
            models.UniqueConstraint(fields=["coalition", "day"], name="daily_figures_once_a_day"),
        ]

    def __str__(self) -> str:
        return f"{self.coalition_id} {self.day}"


class DailyFlow(models.Model):
    """Points one tenant funded (the lot's funding tenant) honoured at another on one day:
    burn consumptions, net of burn reversals. `issuer` is empty for operator-funded lots."""

    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    issuer = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    redeemer = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    points = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["coalition", "day"], name="daily_flow_by_day")]

    def __str__(self) -> str:
        return f"{self.day}: {self.points:+d} from {self.issuer_id} at {self.redeemer_id}"
