# The dashboard's pre-aggregated daily rows (issue 7).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("coalition", "0011_campaigns"),
        ("tenants", "0005_tenant_exit_on"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyFigures",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "day",
                    models.DateField(
                        help_text="The local posting date (the coalition's time zone)."
                    ),
                ),
                ("issued", models.BigIntegerField(default=0, help_text="Points of earn journals.")),
                (
                    "issued_reversed",
                    models.BigIntegerField(default=0, help_text="Points of earn reversals."),
                ),
                (
                    "redeemed",
                    models.BigIntegerField(default=0, help_text="Points of burn journals."),
                ),
                (
                    "redeemed_reversed",
                    models.BigIntegerField(default=0, help_text="Points of burn reversals."),
                ),
                ("expired", models.BigIntegerField(default=0)),
                (
                    "member_net",
                    models.BigIntegerField(
                        default=0,
                        help_text="Net change of members' points (spendable and pending) from "
                        "every journal: the day's change in the liability, in points.",
                    ),
                ),
                (
                    "purchases",
                    models.PositiveIntegerField(default=0, help_text="Earn and burn journals."),
                ),
                (
                    "visits",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Distinct (member, tenant) pairs with a purchase that day.",
                    ),
                ),
                (
                    "enrolled",
                    models.PositiveIntegerField(default=0, help_text="Members enrolled that day."),
                ),
                (
                    "active_30d",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Members with a purchase in the 30 days ending this day.",
                    ),
                ),
                (
                    "month_buyers",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Members with a purchase from the 1st of the month to this day.",
                    ),
                ),
                (
                    "month_cross_shoppers",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Of `month_buyers`, those who bought at two or more tenants.",
                    ),
                ),
                ("computed_at", models.DateTimeField()),
                (
                    "coalition",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="daily_figures",
                        to="coalition.coalition",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "daily figures",
                "ordering": ["coalition", "day"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("coalition", "day"), name="daily_figures_once_a_day"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="DailyFlow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("points", models.BigIntegerField()),
                (
                    "coalition",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="coalition.coalition",
                    ),
                ),
                (
                    "issuer",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
                (
                    "redeemer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["coalition", "day"], name="daily_flow_by_day")],
            },
        ),
    ]
