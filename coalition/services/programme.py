"""The programme's rules: creating a coalition, the earn rule, expiry dates, local dates."""

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction

from coalition.models import AccountKind, Coalition, ExpiryPolicy
from coalition.models.ledger import Account

COALITION_ACCOUNT_KINDS = (
    AccountKind.BREAKAGE,
    AccountKind.CAMPAIGN,
    AccountKind.ADJUSTMENT,
    AccountKind.FORFEIT,
    AccountKind.MARGIN,
    AccountKind.VARIANCE,
)


@transaction.atomic
def coalition_create(
    *, slug: str, name: str, currency: str = "INR", time_zone: str = "Asia/Kolkata"
) -> Coalition:
    """A coalition with the defaults of domain.md: 1 point per 100.00, a point worth 1.00."""
    from consent.services import consent_purposes_create_defaults

    ZoneInfo(time_zone)  # raises for an unknown zone before anything is written
    coalition = Coalition.objects.create(
        slug=slug, name=name, currency=currency.upper(), time_zone=time_zone
    )
    Account.objects.bulk_create(
        Account(coalition=coalition, kind=kind) for kind in COALITION_ACCOUNT_KINDS
    )
    consent_purposes_create_defaults(coalition=coalition)
    return coalition


@transaction.atomic
def coalition_settings_save(*, coalition: Coalition) -> Coalition:
    """Save staff's changes to the programme's rules. A change of expiry policy applies to lots
    earned from now on (`lot_terms`); once any policy was sliding, activity may move lots."""
    if coalition.expiry_policy == ExpiryPolicy.SLIDING:
        coalition.sliding_lots = True
    coalition.save()
    return coalition


def local_date(coalition: Coalition, moment: datetime) -> date:
    """The calendar date of `moment` in the coalition's time zone."""
    return moment.astimezone(ZoneInfo(coalition.time_zone)).date()


def earn_points(coalition: Coalition, amount: Decimal) -> int:
    """Base points under the coalition's current earn rule."""
    return earn_points_by_rule(
        amount, block=coalition.earn_block, per_block=coalition.points_per_block
    )


def earn_points_by_rule(amount: Decimal, *, block: Decimal, per_block: int) -> int:
    """Base points: floor(amount / earn block) * points per block."""
    if amount <= 0:
        return 0
    return int(amount // block) * per_block


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def lot_expiry(coalition: Coalition, earned_on: date) -> date | None:
    """The last day points earned on `earned_on` can be spent, under the coalition's policy.

    Sliding expiry starts from the earn too; every later activity pushes all the member's open
    lots forward (`lots_slide`).
    """
    policy = coalition.expiry_policy
    if policy == ExpiryPolicy.NONE:
        return None
    due = add_months(earned_on, coalition.expiry_months)
    if policy == ExpiryPolicy.CALENDAR:
        # Points older than N months go at the first yearly sweep on or after they turn N months.
        for year in (due.year, due.year + 1):
            last_day = calendar.monthrange(year, coalition.expiry_sweep_month)[1]
            sweep = date(
                year, coalition.expiry_sweep_month, min(coalition.expiry_sweep_day, last_day)
            )
            if sweep >= due:
                return sweep
    return due - timedelta(days=1)


@dataclass(frozen=True)
class LotTerms:
    """What a new lot carries of the policy in force when it was earned."""

    expires_on: date | None
    slide_months: int | None


def lot_terms(coalition: Coalition, earned_on: date) -> LotTerms:
    """The expiry terms of a lot earned on `earned_on`: they stay with the lot when the
    coalition's policy changes later (`expiry_policy_migration_run` is the explicit exception)."""
    sliding = coalition.expiry_policy == ExpiryPolicy.SLIDING
    return LotTerms(lot_expiry(coalition, earned_on), coalition.expiry_months if sliding else None)
