"""Refreshing the dashboard's daily rows (`DailyFigures`, `DailyFlow`).

Rows are by posting date, so once a day has ended its figures are final: a late posting is
posted today (in the open period) and lands on today's row. Two things can still make a stored
row wrong, and the refresh covers both:
- a transaction that began before midnight and committed after it, with a posting time before
  midnight: a row computed within `SETTLE` of its day's end is computed again on the next run;
- a day never computed (the worker was down, a new coalition, a first deployment): every day
  from the coalition's first posting (or enrolment) without a row is computed.
So the refresh is idempotent, catches up by design, and past rows do not change once settled.
Today is never stored: the page computes it live.
"""

from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from coalition.models import Coalition, DailyFigures, DailyFlow
from coalition.selectors.dashboard.campaigns import cross_shop_lift_cached
from coalition.selectors.dashboard.daily import (
    FIGURE_FIELDS,
    contiguous,
    daily_figures_compute,
    daily_flows_compute,
    days_between,
    figures_start,
    midnight,
)
from coalition.services.programme import add_months, local_date

SETTLE = timedelta(minutes=30)  # longer than any posting transaction runs
CHUNK_DAYS = 92  # a backfill computes a quarter at a time (bounded memory and transactions)


def _days_due(coalition: Coalition, first: date, last: date) -> list[date]:
    """Days without a row, or whose row was computed before its day had settled."""
    settled = {
        day
        for day, computed_at in DailyFigures.objects.filter(
            coalition=coalition, day__gte=first, day__lte=last
        ).values_list("day", "computed_at")
        if computed_at >= midnight(coalition, day + timedelta(days=1)) + SETTLE
    }
    return [day for day in days_between(first, last) if day not in settled]


@transaction.atomic
def _store(coalition: Coalition, first: date, last: date, now: datetime) -> int:
    figures = daily_figures_compute(coalition, first, last)
    flows = daily_flows_compute(coalition, first, last)
    DailyFigures.objects.bulk_create(
        [
            DailyFigures(
                coalition=coalition,
                computed_at=now,
                **{name: getattr(day, name) for name in FIGURE_FIELDS},
            )
            for day in figures
        ],
        update_conflicts=True,
        unique_fields=["coalition", "day"],
        update_fields=[*(name for name in FIGURE_FIELDS if name != "day"), "computed_at"],
    )
    DailyFlow.objects.filter(coalition=coalition, day__gte=first, day__lte=last).delete()
    DailyFlow.objects.bulk_create(
        DailyFlow(
            coalition=coalition,
            day=flow.day,
            issuer_id=flow.issuer_id,
            redeemer_id=flow.redeemer_id,
            points=flow.points,
        )
        for flow in flows
    )
    return len(figures)


def daily_figures_refresh(
    *, coalition: Coalition, since: date | None = None, now: datetime | None = None
) -> int:
    """Store the figures of every ended day that is due (see the module's doc); with `since`,
    compute every day from `since` again (a backfill). Returns the number of days written."""
    now = now or timezone.now()
    last = local_date(coalition, now) - timedelta(days=1)
    first = since or figures_start(coalition)
    if first is None or first > last:
        return 0
    due = days_between(first, last) if since else _days_due(coalition, first, last)
    written = 0
    # The due days are usually yesterday alone; after an outage or for a backfill they are
    # computed in chunks of a quarter, each chunk one transaction (a chunk covers every day
    # between its first and last due day: recomputing a settled day changes nothing).
    while due:
        span = contiguous(due[:1] + [d for d in due if d < due[0] + timedelta(days=CHUNK_DAYS)])
        assert span is not None
        written += _store(coalition, span[0], span[1], now)
        due = [day for day in due if day > span[1]]
    return written


def daily_figures_refresh_all(*, now: datetime | None = None) -> dict[str, int]:
    """Refresh every coalition's daily rows; the days written, by coalition slug. Then warm
    the cross-shop lift of this month and last (the dashboard's largest query) for today."""
    now = now or timezone.now()
    written = {}
    for coalition in Coalition.objects.order_by("pk"):
        written[coalition.slug] = daily_figures_refresh(coalition=coalition, now=now)
        today = local_date(coalition, now)
        for month in (add_months(today.replace(day=1), -1), today.replace(day=1)):
            last = min(add_months(month, 1) - timedelta(days=1), today)
            cross_shop_lift_cached(coalition, month, last, today)
    return written
