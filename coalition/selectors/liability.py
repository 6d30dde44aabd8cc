"""The points liability: what the programme owes its members, seen from every side finance asks.

Every figure is a set-based query over the lots (each holds its funding tenant, earn moment,
last day and what remains) and their consumption records, so the page costs a few GROUP BYs
whatever the number of members. Points are valued at the coalition's nominal point value: the
pool is kept at that value (`domain.md`), so outstanding points times the point value is the
liability.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from coalition.models import AccountKind, Coalition, JournalKind
from coalition.money import money_round
from coalition.rows import fetch_all
from coalition.services.programme import add_months, local_date

# Age of outstanding points, from their earn date: (label, from months, to months or None).
AGE_BANDS = (
    ("Under 3 months", 0, 3),
    ("3 to 6 months", 3, 6),
    ("6 to 12 months", 6, 12),
    ("12 to 24 months", 12, 24),
    ("24 months or more", 24, None),
)
OPERATOR = "The operator (campaigns, adjustments)"
OVERDUE = "Past their last day, waiting for the notice window"


@dataclass(frozen=True)
class Row:
    label: str
    points: int
    value: Decimal


RowMaker = Callable[[str, int], Row]


@dataclass(frozen=True)
class Cohort:
    """Points earned in one month (the coalition's time zone) and what became of them so far."""

    month: date
    issued: int
    redeemed: int
    refunded: int
    expired: int
    outstanding: int

    @property
    def other(self) -> int:
        """Adjustments, merges that fitted a negative balance, forfeits on erasure."""
        return self.issued - self.redeemed - self.refunded - self.expired - self.outstanding

    @property
    def redemption_rate(self) -> Decimal | None:
        """Share of the issued points redeemed so far (IFRS 15 / Ind AS 115 input)."""
        if not self.issued:
            return None
        return (Decimal(self.redeemed) / Decimal(self.issued)).quantize(Decimal("0.0001"))

    @property
    def redemption_percent(self) -> Decimal | None:
        rate = self.redemption_rate
        return None if rate is None else (rate * 100).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class Liability:
    coalition: Coalition
    as_of: datetime
    today: date
    point_value: Decimal
    spendable: Row
    pending: Row
    owed_by_members: Row  # negative balances: refunds after the points were spent
    net: Row
    overdue: Row  # past their last day, waiting for the notice window
    expiring: list[Row]  # the next 12 months, this one first
    never_expiring: Row
    breakage: Row
    breakage_returned: Decimal
    by_tenant: list[Row] = field(default_factory=list)
    by_age: list[Row] = field(default_factory=list)
    cohorts: list[Cohort] = field(default_factory=list)

    @property
    def lots_total(self) -> int:
        return self.spendable.points + self.pending.points


def _row(label: str, points: int, point_value: Decimal) -> Row:
    return Row(label, int(points), money_round(Decimal(points) * point_value))


def liability(coalition: Coalition, *, as_of: datetime | None = None) -> Liability:
    """The coalition's outstanding points now, split by funding tenant, age and expiry month,
    with breakage to date and the redemption rate of every earn-month cohort."""
    as_of = as_of or timezone.now()
    today = local_date(coalition, as_of)
    nominal = coalition.point_value

    def row(label: str, points: int) -> Row:
        return _row(label, points, nominal)

    balances = dict(
        fetch_all(
            """
            SELECT kind || CASE WHEN balance < 0 THEN '-' ELSE '+' END, sum(balance)
            FROM coalition_account
            WHERE coalition_id = %s AND kind = ANY(%s)
            GROUP BY 1
            """,
            [coalition.pk, [AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING]],
        )
    )
    spendable = int(balances.get(f"{AccountKind.MEMBER_POINTS}+", 0))
    pending = int(balances.get(f"{AccountKind.MEMBER_PENDING}+", 0)) + int(
        balances.get(f"{AccountKind.MEMBER_PENDING}-", 0)
    )
    owed = int(balances.get(f"{AccountKind.MEMBER_POINTS}-", 0))
    overdue, expiring, never_expiring = _expiry(coalition, today, row)
    return Liability(
        coalition=coalition,
        as_of=as_of,
        today=today,
        point_value=nominal,
        spendable=row("Spendable", spendable),
        pending=row("Pending (holdback)", pending),
        owed_by_members=row("Owed by members (refunds after spending)", owed),
        net=row("Net outstanding", spendable + pending + owed),
        by_tenant=[row(label, points) for label, points in _by_tenant(coalition)],
        by_age=[row(label, points) for label, points in _by_age(coalition, today)],
        overdue=overdue,
        expiring=expiring,
        never_expiring=never_expiring,
        breakage=row("Breakage to date", _breakage_points(coalition)),
        breakage_returned=_breakage_returned(coalition),
        cohorts=_cohorts(coalition),
    )


def _by_tenant(coalition: Coalition) -> list[tuple[str, int]]:
    rows = fetch_all(
        """
        SELECT t.name, sum(l.remaining)
        FROM coalition_lot l LEFT JOIN tenants_tenant t ON t.id = l.funding_tenant_id
        WHERE l.coalition_id = %s AND l.remaining > 0
        GROUP BY t.name ORDER BY sum(l.remaining) DESC, t.name
        """,
        [coalition.pk],
    )
    return [(name or OPERATOR, int(points)) for name, points in rows]


def _by_age(coalition: Coalition, today: date) -> list[tuple[str, int]]:
    zone = ZoneInfo(coalition.time_zone)

    def since(months: int) -> datetime:
        return datetime.combine(add_months(today, -months), time.min, zone)

    found = dict(
        fetch_all(
            """
            SELECT CASE
                WHEN earned_at >= %(b3)s THEN 0 WHEN earned_at >= %(b6)s THEN 1
                WHEN earned_at >= %(b12)s THEN 2 WHEN earned_at >= %(b24)s THEN 3 ELSE 4 END,
                sum(remaining)
            FROM coalition_lot WHERE coalition_id = %(c)s AND remaining > 0 GROUP BY 1
            """,
            {"c": coalition.pk, "b3": since(3), "b6": since(6), "b12": since(12), "b24": since(24)},
        )
    )
    return [(label, int(found.get(index, 0))) for index, (label, *_) in enumerate(AGE_BANDS)]


def _expiry(coalition: Coalition, today: date, row: RowMaker) -> tuple[Row, list[Row], Row]:
    first = today.replace(day=1)
    months = [add_months(first, n) for n in range(13)]
    found = dict(
        fetch_all(
            """
            SELECT CASE WHEN expires_on IS NULL THEN NULL
                WHEN expires_on < %(today)s THEN DATE '0001-01-01'
                ELSE date_trunc('month', expires_on)::date END,
                sum(remaining)
            FROM coalition_lot
            WHERE coalition_id = %(c)s AND remaining > 0
                AND (expires_on IS NULL OR expires_on < %(end)s)
            GROUP BY 1
            """,
            {"c": coalition.pk, "today": today, "end": months[-1]},
        )
    )
    return (
        row(OVERDUE, found.get(date.min, 0)),
        [row(f"{month:%b %Y}", found.get(month, 0)) for month in months[:-1]],
        row("No expiry date", found.get(None, 0)),
    )


def _breakage_points(coalition: Coalition) -> int:
    rows = fetch_all(
        "SELECT coalesce(sum(e.points), 0) FROM coalition_entry e "
        "JOIN coalition_account a ON a.id = e.account_id WHERE a.coalition_id = %s AND a.kind = %s",
        [coalition.pk, AccountKind.BREAKAGE],
    )
    return int(rows[0][0])


def _breakage_returned(coalition: Coalition) -> Decimal:
    """What closed months credited back to funding tenants (breakage policy "return")."""
    rows = fetch_all(
        """
        SELECT coalesce(sum(line.amount), 0)
        FROM settlement_statementline line
        JOIN settlement_statement s ON s.id = line.statement_id
        JOIN settlement_period p ON p.id = s.period_id
        WHERE p.coalition_id = %s AND line.kind = 'breakage_returned'
        """,
        [coalition.pk],
    )
    return money_round(Decimal(rows[0][0]))


def _cohorts(coalition: Coalition) -> list[Cohort]:
    """Issued points per earn month, and what redeemed, refunded and expired took of them."""
    month = "date_trunc('month', l.earned_at AT TIME ZONE %(tz)s)::date"
    params = {
        "c": coalition.pk,
        "tz": coalition.time_zone,
        "burn": JournalKind.BURN,
        "burn_reversal": JournalKind.BURN_REVERSAL,
        "earn_reversal": JournalKind.EARN_REVERSAL,
        "expire": JournalKind.EXPIRE,
    }
    issued = {
        cohort: (int(points), int(remaining))
        for cohort, points, remaining in fetch_all(
            f"SELECT {month}, sum(l.points), sum(l.remaining) FROM coalition_lot l "  # noqa: S608
            "WHERE l.coalition_id = %(c)s GROUP BY 1",
            params,
        )
    }
    used: dict[date, dict[str, int]] = {}
    for cohort, kind, points in fetch_all(
        f"""
        SELECT {month}, CASE j.kind
                WHEN %(burn)s THEN 'redeemed' WHEN %(burn_reversal)s THEN 'redeemed'
                WHEN %(earn_reversal)s THEN 'refunded' WHEN %(expire)s THEN 'expired'
                ELSE 'other' END,
            sum(c.points)
        FROM coalition_lotconsumption c
        JOIN coalition_lot l ON l.id = c.lot_id
        JOIN coalition_journal j ON j.id = c.journal_id
        WHERE l.coalition_id = %(c)s
        GROUP BY 1, 2
        """,  # noqa: S608 (the only interpolation is the fixed expression above)
        params,
    ):
        used.setdefault(cohort, {})[kind] = int(points)
    return [
        Cohort(
            month=cohort,
            issued=points,
            redeemed=used.get(cohort, {}).get("redeemed", 0),
            refunded=used.get(cohort, {}).get("refunded", 0),
            expired=used.get(cohort, {}).get("expired", 0),
            outstanding=remaining,
        )
        for cohort, (points, remaining) in sorted(issued.items(), reverse=True)
    ]
