"""The dashboard's figures of each local day, computed from the ledger with set-based SQL.

Used twice, with the same SQL: `daily_figures_refresh` stores the days that have ended, and the
page computes live the days not stored yet (today, always). Days are **posting** dates in the
coalition's time zone, as the statements count them: a late posting lands on the day it was
posted, so an ended day's figures never change.

A *purchase* is an earn or a burn at a tenant; a *visit* is a member's purchases at one tenant
on one day (two receipts at one shop on one day are one visit).
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Min

from coalition.models import AccountKind, Coalition, DailyFigures, Journal, JournalKind
from coalition.rows import fetch_all
from coalition.services.programme import local_date
from members.models import Member

ACTIVE_DAYS = 30  # "active members": a purchase in the 30 days ending on the day
PURCHASE_KINDS = [JournalKind.EARN, JournalKind.BURN]


@dataclass
class DayFigures:
    """One day's figures; the same fields as `DailyFigures` (less its bookkeeping)."""

    day: date
    issued: int = 0
    issued_reversed: int = 0
    redeemed: int = 0
    redeemed_reversed: int = 0
    expired: int = 0
    member_net: int = 0
    purchases: int = 0
    visits: int = 0
    enrolled: int = 0
    active_30d: int = 0
    month_buyers: int = 0
    month_cross_shoppers: int = 0

    @classmethod
    def of(cls, row: DailyFigures) -> "DayFigures":
        return cls(**{name: getattr(row, name) for name in FIGURE_FIELDS})


FIGURE_FIELDS = tuple(f.name for f in fields(DayFigures))


@dataclass(frozen=True)
class FlowRow:
    day: date
    issuer_id: int | None  # None: operator-funded lots (campaigns, adjustments)
    redeemer_id: int
    points: int


def midnight(coalition: Coalition, day: date) -> datetime:
    return datetime.combine(day, time.min, ZoneInfo(coalition.time_zone))


def figures_start(coalition: Coalition) -> date | None:
    """The first day with anything to count: the first posting or enrolment (the coalition's
    creation at the latest). Every day before it has nothing, stored or not."""
    starts = [
        coalition.created_at,
        Journal.objects.filter(coalition=coalition).aggregate(m=Min("posted_at"))["m"],
        Member.objects.filter(coalition=coalition).aggregate(m=Min("enrolled_at"))["m"],
    ]
    known = [moment for moment in starts if moment is not None]
    return local_date(coalition, min(known)) if known else None


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# Sums of the day's journals, by kind.
_POSTINGS_SQL = """
    SELECT (posted_at AT TIME ZONE %(tz)s)::date,
        coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0),
        coalesce(sum(points) FILTER (WHERE kind = 'earn_reversal'), 0),
        coalesce(sum(points) FILTER (WHERE kind = 'burn'), 0),
        coalesce(sum(points) FILTER (WHERE kind = 'burn_reversal'), 0),
        coalesce(sum(points) FILTER (WHERE kind = 'expire'), 0),
        count(*) FILTER (WHERE kind = ANY(%(purchase)s) AND tenant_id IS NOT NULL)
    FROM coalition_journal
    WHERE coalition_id = %(c)s AND posted_at >= %(from)s AND posted_at < %(to)s
    GROUP BY 1
"""

# The day's net change of members' points: the liability's daily movement.
_MEMBER_NET_SQL = """
    SELECT (j.posted_at AT TIME ZONE %(tz)s)::date, sum(e.points)
    FROM coalition_journal j
    JOIN coalition_entry e ON e.journal_id = j.id
    JOIN coalition_account a ON a.id = e.account_id
    WHERE j.coalition_id = %(c)s AND j.posted_at >= %(from)s AND j.posted_at < %(to)s
        AND a.kind = ANY(%(member)s)
    GROUP BY 1
"""

_ENROLLED_SQL = """
    SELECT (enrolled_at AT TIME ZONE %(tz)s)::date, count(*)
    FROM members_member
    WHERE coalition_id = %(c)s AND enrolled_at >= %(from)s AND enrolled_at < %(to)s
    GROUP BY 1
"""

# Distinct-member counts as of the end of each day, from one scan of the purchases (starting
# 29 days before the first day, and at the first day's month start at the latest):
# - active: each purchase day covers itself and the 29 days after, until the member's next
#   purchase day; these spans do not overlap, so a running sum of +1 at each start and -1 at
#   each end counts the members active on every day;
# - month to date: a member counts from their first purchase day in the month, and as a
#   cross-shopper from their first purchase at a second tenant in the month.
_DISTINCT_SQL = """
    WITH visit AS (
        SELECT DISTINCT member_id, tenant_id, (posted_at AT TIME ZONE %(tz)s)::date AS day
        FROM coalition_journal
        WHERE coalition_id = %(c)s AND kind = ANY(%(purchase)s) AND tenant_id IS NOT NULL
            AND member_id IS NOT NULL AND posted_at >= %(scan_from)s AND posted_at < %(to)s
    ), member_day AS (
        SELECT DISTINCT member_id, day FROM visit
    ), span AS (
        SELECT day, least(lead(day) OVER (PARTITION BY member_id ORDER BY day),
            day + %(active_days)s) AS stop
        FROM member_day
    ), active_delta AS (
        SELECT day, sum(delta) AS delta FROM (
            SELECT day, 1 AS delta FROM span UNION ALL SELECT stop, -1 FROM span
        ) ends GROUP BY day
    ), first_at_tenant AS (
        SELECT member_id, min(day) AS day FROM visit
        GROUP BY member_id, tenant_id, date_trunc('month', day)
    ), ranked AS (
        SELECT day, row_number() OVER (
            PARTITION BY member_id, date_trunc('month', day) ORDER BY day) AS n
        FROM first_at_tenant
    ), month_delta AS (
        SELECT day, count(*) FILTER (WHERE n = 1) AS buyers,
            count(*) FILTER (WHERE n = 2) AS cross_shoppers
        FROM ranked GROUP BY day
    ), days AS (
        SELECT d::date AS day FROM generate_series(%(scan_first)s::date, %(last)s::date,
            interval '1 day') d
    ), series AS (
        SELECT days.day,
            sum(coalesce(a.delta, 0)) OVER (ORDER BY days.day) AS active,
            sum(coalesce(m.buyers, 0)) OVER month_so_far AS buyers,
            sum(coalesce(m.cross_shoppers, 0)) OVER month_so_far AS cross_shoppers
        FROM days
        LEFT JOIN active_delta a ON a.day = days.day
        LEFT JOIN month_delta m ON m.day = days.day
        WINDOW month_so_far AS (PARTITION BY date_trunc('month', days.day) ORDER BY days.day)
    ), day_visits AS (
        SELECT day, count(*) AS visits FROM visit WHERE day >= %(first)s GROUP BY day
    )
    SELECT s.day, s.active, s.buyers, s.cross_shoppers, coalesce(v.visits, 0)
    FROM series s LEFT JOIN day_visits v ON v.day = s.day
    WHERE s.day >= %(first)s
"""

# Points honoured at a tenant (the burn's, or the reversed burn's) from lots another funded:
# the burns' consumption records, net of what burn reversals gave back.
_FLOW_SQL = """
    SELECT (j.posted_at AT TIME ZONE %(tz)s)::date, l.funding_tenant_id,
        coalesce(o.tenant_id, j.tenant_id), sum(c.points)
    FROM coalition_journal j
    JOIN coalition_lotconsumption c ON c.journal_id = j.id
    JOIN coalition_lot l ON l.id = c.lot_id
    LEFT JOIN coalition_journal o ON o.id = j.reverses_id
    WHERE j.coalition_id = %(c)s AND j.kind = ANY(%(burns)s)
        AND j.posted_at >= %(from)s AND j.posted_at < %(to)s
    GROUP BY 1, 2, 3
    HAVING sum(c.points) <> 0
"""


def _params(coalition: Coalition, first: date, last: date) -> dict[str, object]:
    scan_first = min(first - timedelta(days=ACTIVE_DAYS - 1), first.replace(day=1))
    return {
        "c": coalition.pk,
        "tz": coalition.time_zone,
        "first": first,
        "last": last,
        "scan_first": scan_first,
        "from": midnight(coalition, first),
        "to": midnight(coalition, last + timedelta(days=1)),
        "scan_from": midnight(coalition, scan_first),
        "active_days": ACTIVE_DAYS,
        "purchase": PURCHASE_KINDS,
        "burns": [JournalKind.BURN, JournalKind.BURN_REVERSAL],
        "member": [AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING],
    }


@contextmanager
def report_queries() -> Iterator[None]:
    """For the few large reporting statements: sorts of tens of thousands of rows stay in
    memory, and no JIT compilation (it costs more than these statements run)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute("SET LOCAL jit = off")
        yield


def daily_figures_sums(coalition: Coalition, first: date, last: date) -> list[DayFigures]:
    """Each day's sums (postings, the members' net, enrolments), without the distinct counts."""
    params = _params(coalition, first, last)
    found = {day: DayFigures(day) for day in days_between(first, last)}
    for day, issued, issued_rev, redeemed, redeemed_rev, expired, purchases in fetch_all(
        _POSTINGS_SQL, params
    ):
        figures = found[day]
        figures.issued, figures.issued_reversed = int(issued), int(issued_rev)
        figures.redeemed, figures.redeemed_reversed = int(redeemed), int(redeemed_rev)
        figures.expired, figures.purchases = int(expired), int(purchases)
    for day, net in fetch_all(_MEMBER_NET_SQL, params):
        found[day].member_net = int(net)
    for day, count in fetch_all(_ENROLLED_SQL, params):
        found[day].enrolled = int(count)
    return [found[day] for day in sorted(found)]


def daily_figures_compute(coalition: Coalition, first: date, last: date) -> list[DayFigures]:
    """Every day's figures from `first` to `last` (local dates, inclusive), from the ledger.

    A day not ended yet counts what has been posted so far."""
    found = {figures.day: figures for figures in daily_figures_sums(coalition, first, last)}
    with report_queries():
        distinct = fetch_all(_DISTINCT_SQL, _params(coalition, first, last))
    for day, active, buyers, cross_shoppers, visits in distinct:
        figures = found[day]
        figures.active_30d, figures.visits = int(active), int(visits)
        figures.month_buyers, figures.month_cross_shoppers = int(buyers), int(cross_shoppers)
    return [found[day] for day in sorted(found)]


# The next day's distinct-member counts from the previous day's, looking only at the members
# who bought on that day or on the day that leaves the 30-day window (a few thousand at most),
# through the journals' (member, posted_at) index: the page's "today" without the 30-day scan.
_NEXT_SQL = """
    WITH who AS (
        SELECT DISTINCT member_id FROM coalition_journal
        WHERE coalition_id = %(c)s AND kind = ANY(%(purchase)s) AND tenant_id IS NOT NULL
            AND member_id IS NOT NULL
            AND ((posted_at >= %(from)s AND posted_at < %(to)s)
                OR (posted_at >= %(drop_from)s AND posted_at < %(drop_to)s))
    ), visit AS (
        SELECT DISTINCT j.member_id, j.tenant_id, (j.posted_at AT TIME ZONE %(tz)s)::date AS day
        FROM who JOIN coalition_journal j ON j.member_id = who.member_id
        WHERE j.coalition_id = %(c)s AND j.kind = ANY(%(purchase)s) AND j.tenant_id IS NOT NULL
            AND j.posted_at >= %(drop_from)s AND j.posted_at < %(to)s
    ), per_member AS (
        SELECT bool_or(day = %(first)s) AS today, bool_or(day = %(drop)s) AS on_drop,
            bool_or(day > %(drop)s AND day < %(first)s) AS inside,
            bool_or(day >= %(month)s AND day < %(first)s) AS month_before,
            count(DISTINCT tenant_id) FILTER (WHERE day >= %(month)s) AS tenants,
            count(DISTINCT tenant_id) FILTER (WHERE day >= %(month)s AND day < %(first)s)
                AS tenants_before
        FROM visit GROUP BY member_id
    )
    SELECT count(*) FILTER (WHERE today AND NOT inside AND NOT on_drop),
        count(*) FILTER (WHERE on_drop AND NOT inside AND NOT today),
        count(*) FILTER (WHERE today AND NOT month_before),
        count(*) FILTER (WHERE today AND tenants >= 2 AND tenants_before < 2),
        (SELECT count(*) FROM visit WHERE day = %(first)s)
    FROM per_member
"""


def day_figures_next(coalition: Coalition, previous: DayFigures, sums: DayFigures) -> DayFigures:
    """The figures of the day after `previous`: its sums (`sums`, from `daily_figures_sums`)
    and its distinct-member counts carried on from the previous day's (see `_NEXT_SQL`)."""
    day = previous.day + timedelta(days=1)
    assert sums.day == day
    drop = day - timedelta(days=ACTIVE_DAYS)
    params = {
        **_params(coalition, day, day),
        "drop": drop,
        "month": day.replace(day=1),
        "drop_from": midnight(coalition, drop),
        "drop_to": midnight(coalition, drop + timedelta(days=1)),
    }
    joined, left, new_buyers, new_cross, visits = fetch_all(_NEXT_SQL, params)[0]
    new_month = day.day == 1
    return replace(
        sums,
        active_30d=previous.active_30d + int(joined) - int(left),
        month_buyers=(0 if new_month else previous.month_buyers) + int(new_buyers),
        month_cross_shoppers=(0 if new_month else previous.month_cross_shoppers) + int(new_cross),
        visits=int(visits),
    )


def daily_flows_compute(coalition: Coalition, first: date, last: date) -> list[FlowRow]:
    """Points honoured by one tenant from lots another funded, per day from `first` to `last`."""
    return [
        FlowRow(day, issuer, redeemer, int(points))
        for day, issuer, redeemer, points in fetch_all(_FLOW_SQL, _params(coalition, first, last))
    ]


def contiguous(days: Iterable[date]) -> tuple[date, date] | None:
    """The smallest range covering `days` (None when there are none)."""
    ordered = sorted(days)
    return (ordered[0], ordered[-1]) if ordered else None
