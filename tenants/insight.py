"""Reads for the portal's "Your shoppers" page: aggregates about a tenant's shoppers, already
through disclosure control (`tenants.suppression`). Every selector takes the tenant and returns
counts and labels only: no member id, name or identifier leaves the SQL, and a hidden figure
is `None` here, so its value never reaches a template.

Only members who consent to analytics now count: the latest consent event per member for the
`analytics` purpose decides (DISTINCT ON, in SQL). A merged-away member's history counts as the
surviving member's, under the survivor's consent.

The period is the last 3, 6 or 12 whole months in the coalition's time zone (the month under way
is left out, so a figure does not change from one day to the next). The points-flow tables of
the three periods are suppressed together, as one table with the three periods' totals, so that
comparing the 3-month and the 12-month page gives nothing back that either hides.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from django.utils import timezone

from coalition.models import JournalKind
from coalition.rows import fetch_all
from coalition.services.programme import add_months, local_date
from consent.models import ConsentPurpose
from tenants.models import Tenant, TenantCategory
from tenants.suppression import TOTAL, Cell, Relation, Rules, suppress, two_way

PERIODS: Final = (3, 6, 12)
DEFAULT_PERIOD: Final = 12

VISIT_BANDS: Final = (
    ("1", "1 visit"),
    ("2-3", "2\N{EN DASH}3 visits"),
    ("4-6", "4\N{EN DASH}6 visits"),
    ("7+", "7 or more visits"),
)
NEW, RETURNING = "new", "returning"
VISIT_COLUMNS: Final = ((NEW, "New"), (RETURNING, "Returning"))

# A visit: a day (in the coalition's time zone) with an earn or a burn at the tenant's tills.
VISIT_KINDS: Final = (JournalKind.EARN.value, JournalKind.BURN.value)

# Members who consent to analytics now, and every member id whose history is theirs: the
# member itself and, through `merged_into`, the members merged into it (at any depth).
_SHOPPERS = """
    latest AS (
        SELECT DISTINCT ON (e.member_id) e.member_id, e.given
        FROM consent_consentevent e
        WHERE e.purpose_id = %(purpose)s
        ORDER BY e.member_id, e.at DESC, e.id DESC
    ),
    shopper (member_id, person_id) AS (
        SELECT m.id, m.id
        FROM latest JOIN members_member m ON m.id = latest.member_id
        WHERE latest.given AND m.status = 'active' AND m.coalition_id = %(coalition)s
        UNION ALL
        SELECT m.id, s.person_id
        FROM members_member m JOIN shopper s ON m.merged_into_id = s.member_id
    )
"""


def _with_shoppers(query: str) -> str:
    """`query`'s CTEs after those of the consenting shoppers (`_SHOPPERS`)."""
    return "WITH RECURSIVE" + _SHOPPERS + "," + query


_VISITS_SQL = _with_shoppers(
    """
    visit AS (
        SELECT s.person_id,
               count(DISTINCT (j.occurred_at AT TIME ZONE %(zone)s)::date) AS days
        FROM coalition_journal j JOIN shopper s ON s.member_id = j.member_id
        WHERE j.tenant_id = %(tenant)s AND j.kind = ANY(%(kinds)s)
          AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
        GROUP BY s.person_id
    ),
    earlier AS (
        SELECT DISTINCT s.person_id
        FROM coalition_journal j JOIN shopper s ON s.member_id = j.member_id
        WHERE j.tenant_id = %(tenant)s AND j.kind = ANY(%(kinds)s)
          AND j.occurred_at < %(start)s
    )
    SELECT CASE WHEN v.days = 1 THEN '1' WHEN v.days <= 3 THEN '2-3'
                WHEN v.days <= 6 THEN '4-6' ELSE '7+' END,
           CASE WHEN e.person_id IS NULL THEN 'new' ELSE 'returning' END,
           count(*)
    FROM visit v LEFT JOIN earlier e ON e.person_id = v.person_id
    GROUP BY 1, 2
"""
)

_ALSO_SHOP_SQL = _with_shoppers(
    """
    mine AS (
        SELECT DISTINCT s.person_id
        FROM coalition_journal j JOIN shopper s ON s.member_id = j.member_id
        WHERE j.tenant_id = %(tenant)s AND j.kind = ANY(%(kinds)s)
          AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
    ),
    elsewhere AS (
        SELECT t.category, t.id AS party, s.person_id
        FROM coalition_journal j
        JOIN shopper s ON s.member_id = j.member_id
        JOIN mine ON mine.person_id = s.person_id
        JOIN tenants_tenant t ON t.id = j.tenant_id
        WHERE j.coalition_id = %(coalition)s AND j.tenant_id <> %(tenant)s
          AND j.kind = ANY(%(kinds)s)
          AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
    )
    SELECT GROUPING(party), category, count(DISTINCT person_id), count(*)
    FROM elsewhere
    GROUP BY GROUPING SETS ((category, party), (category))
"""
)


def _flow_sql(mine: str, theirs: str) -> str:
    return _with_shoppers(
        f"""
        flow AS (
            SELECT t.category, t.id AS party, s.person_id, c.points,
                   date_trunc('month', j.occurred_at AT TIME ZONE %(zone)s)::date AS month
            FROM coalition_lotconsumption c
            JOIN coalition_lot l ON l.id = c.lot_id
            JOIN coalition_journal j ON j.id = c.journal_id
            JOIN shopper s ON s.member_id = j.member_id
            JOIN tenants_tenant t ON t.id = {theirs}
            WHERE {mine} = %(tenant)s AND {theirs} <> %(tenant)s AND j.kind = %(burn)s
              AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
        )
        SELECT GROUPING(category, month, party), category, month, party, sum(points),
               count(DISTINCT person_id),
               count(DISTINCT person_id) FILTER (WHERE month >= %(from6)s),
               count(DISTINCT person_id) FILTER (WHERE month >= %(from3)s)
        FROM flow
        GROUP BY GROUPING SETS ((category, month, party), (category, month), (category),
                                (month), ())
        """  # noqa: S608 (two fixed column names, no input)
    )


# Points this tenant funded, honoured elsewhere; points honoured here that others funded.
_ISSUED_HERE_SQL = _flow_sql("l.funding_tenant_id", "j.tenant_id")
_HONOURED_HERE_SQL = _flow_sql("j.tenant_id", "l.funding_tenant_id")


@dataclass(frozen=True)
class GridRow:
    label: str
    cells: tuple[int | None, ...]  # None: hidden
    total: int | None


@dataclass(frozen=True)
class Grid:
    """A table with row and column totals; every figure `None` is hidden."""

    columns: tuple[str, ...]
    rows: tuple[GridRow, ...]
    column_totals: tuple[int | None, ...]
    total: int | None


@dataclass(frozen=True)
class CategoryShare:
    category: str
    members: int | None  # your shoppers who also shopped in the category; None: hidden
    percent: Decimal | None  # of your shoppers


@dataclass(frozen=True)
class ShopperInsight:
    months: int
    first_day: date
    last_day: date
    k: int
    dominance_n: int
    dominance_percent: Decimal
    shoppers: int | None  # consenting members who visited in the period
    visits: Grid  # visit band x new / returning
    also_shop: tuple[CategoryShare, ...]
    redeemed_at: Grid  # points this tenant issued, honoured at other tenants: category x month
    came_from: Grid  # points this tenant honoured, issued by other tenants: category x month


def rules_for(tenant: Tenant) -> Rules:
    coalition = tenant.coalition
    return Rules(
        k=coalition.small_group_k,
        dominance_n=coalition.dominance_n,
        dominance_percent=Decimal(coalition.dominance_percent),
    )


def shopper_insight(
    tenant: Tenant, *, months: int = DEFAULT_PERIOD, now: datetime | None = None
) -> ShopperInsight:
    """The "Your shoppers" page of `tenant`, over its last `months` whole months."""
    if months not in PERIODS:
        raise ValueError(f"The period is one of {PERIODS} months.")
    coalition = tenant.coalition
    zone = ZoneInfo(coalition.time_zone)
    this_month = local_date(coalition, now or timezone.now()).replace(day=1)
    all_months = [add_months(this_month, -n) for n in range(max(PERIODS), 0, -1)]
    shown = all_months[-months:]
    end = _instant(this_month, zone)
    params: dict[str, Any] = {
        "purpose": ConsentPurpose.objects.filter(
            coalition_id=coalition.pk, code=ConsentPurpose.ANALYTICS
        )
        .values_list("pk", flat=True)
        .first(),
        "coalition": coalition.pk,
        "tenant": tenant.pk,
        "zone": coalition.time_zone,
        "kinds": list(VISIT_KINDS),
        "start": _instant(shown[0], zone),
        "end": end,
    }
    rules = rules_for(tenant)
    visits = _visits(params, rules)
    shoppers = visits.total
    also_shop = _also_shop(params, rules, shoppers)
    flow_params = {**params, "start": _instant(all_months[0], zone)}
    return ShopperInsight(
        months=months,
        first_day=shown[0],
        last_day=this_month - timedelta(days=1),
        k=rules.k,
        dominance_n=rules.dominance_n,
        dominance_percent=rules.dominance_percent,
        shoppers=shoppers,
        visits=visits,
        also_shop=also_shop,
        redeemed_at=_flows(flow_params, rules, all_months, months, issued_here=True),
        came_from=_flows(flow_params, rules, all_months, months, issued_here=False),
    )


def _instant(month: date, zone: ZoneInfo) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=zone)


def _visits(params: dict[str, Any], rules: Rules) -> Grid:
    """Consenting members who visited in the period, by number of visit days and by whether
    they had visited before the period (returning) or not (new)."""
    rows = fetch_all(_VISITS_SQL, params)
    counts = {(band, column): int(n) for band, column, n in rows}
    bands = [band for band, _ in VISIT_BANDS]
    columns = [column for column, _ in VISIT_COLUMNS]
    cells: dict[tuple[str, str], Cell] = {}
    # Every member is in exactly one band and one column, so the totals are sums of members.
    for band in bands:
        for column in columns:
            n = counts.get((band, column), 0)
            cells[band, column] = Cell(n, n)
    for band in bands:
        n = sum(counts.get((band, column), 0) for column in columns)
        cells[band, TOTAL] = Cell(n, n)
    for column in columns:
        n = sum(counts.get((band, column), 0) for band in bands)
        cells[TOTAL, column] = Cell(n, n)
    grand = sum(counts.values())
    cells[TOTAL, TOTAL] = Cell(grand, grand)
    hidden = suppress(cells, two_way(bands, columns), rules)

    def shown(key: tuple[str, str]) -> int | None:
        return None if key in hidden else cells[key].value

    return Grid(
        columns=tuple(label for _, label in VISIT_COLUMNS),
        rows=tuple(
            GridRow(
                label=label,
                cells=tuple(shown((band, column)) for column in columns),
                total=shown((band, TOTAL)),
            )
            for band, label in VISIT_BANDS
        ),
        column_totals=tuple(shown((TOTAL, column)) for column in columns),
        total=shown((TOTAL, TOTAL)),
    )


def _also_shop(
    params: dict[str, Any], rules: Rules, shoppers: int | None
) -> tuple[CategoryShare, ...]:
    """Of the tenant's consenting shoppers in the period, how many also shopped at another
    tenant of each category. No totals are published (a shopper counts in every category they
    visit), so only the primary rules apply; each other tenant's transactions are its
    contribution for the dominance rule."""
    rows = fetch_all(_ALSO_SHOP_SQL, params)
    members: dict[str, int] = {}
    parties: dict[str, list[int]] = defaultdict(list)
    for grouped, category, persons, transactions in rows:
        if grouped:
            members[category] = int(persons)
        else:
            parties[category].append(int(transactions))
    cells = {
        category: Cell(
            value=sum(parties[category]),
            members=members[category],
            parties=tuple(parties[category]),
        )
        for category in sorted(members)
    }
    # Members are the figure shown; the transactions behind it decide dominance.
    hidden = suppress(cells, [], rules)
    shares = []
    for category in sorted(members, key=lambda c: (-members[c], c)):
        count = members[category]
        if category in hidden or shoppers is None:
            # Without the shopper count, a share would give back the hidden count.
            shares.append(CategoryShare(_label(category), None, None))
        else:
            percent = (Decimal(100 * count) / shoppers).quantize(Decimal("0.1"))
            shares.append(CategoryShare(_label(category), count, percent))
    return tuple(shares)


def _flows(
    params: dict[str, Any],
    rules: Rules,
    all_months: list[date],
    months: int,
    *,
    issued_here: bool,
) -> Grid:
    """Burns by consenting members that took points from lots this tenant funded, honoured at
    another tenant (`issued_here`, by the honouring tenant's category), or burns at this
    tenant's tills that took points another tenant funded (by the funding tenant's category);
    points by category and month of the burn.

    The grid is suppressed once over all twelve months with the totals of every period the
    page offers, then cut to the `months` asked for."""
    windows = {period: all_months[-period:][0] for period in PERIODS}
    sql = _ISSUED_HERE_SQL if issued_here else _HONOURED_HERE_SQL
    params = {**params, "burn": JournalKind.BURN.value, "from6": windows[6], "from3": windows[3]}
    rows = fetch_all(sql, params)
    return _flow_grid(rows, rules, all_months, windows, months)


def _flow_grid(
    rows: list[tuple[Any, ...]],
    rules: Rules,
    all_months: list[date],
    windows: dict[int, date],
    months: int,
) -> Grid:
    month_keys = [month.isoformat() for month in all_months]
    points: dict[tuple[str, str], int] = defaultdict(int)
    by_party: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    members: dict[tuple[str, str], int] = {}
    categories: set[str] = set()
    # GROUPING(category, month, party): a bit set for each column rolled up (4, 2, 1).
    for grouping, category, month, party, total, persons, persons6, persons3 in rows:
        cat: str = TOTAL if grouping & 4 else category
        if grouping == 0:  # one other tenant's points in a category and month
            categories.add(category)
            keys = [(category, month.isoformat()), (TOTAL, month.isoformat())]
            for period, first in windows.items():
                if month >= first:
                    keys += [(category, _window(period)), (TOTAL, _window(period))]
            for key in keys:
                by_party[key][party] += int(total)
        elif not grouping & 2:  # a month of one category, or of all of them
            points[cat, month.isoformat()] = int(total)
            members[cat, month.isoformat()] = int(persons)
        else:  # one category, or all of them, over each period
            for period, count in ((12, persons), (6, persons6), (3, persons3)):
                members[cat, _window(period)] = int(count)
    rows_keys = sorted(categories)
    cells: dict[tuple[str, str], Cell] = {}
    for cat in [*rows_keys, TOTAL]:
        for mon in month_keys:
            cells[cat, mon] = _cell(points.get((cat, mon), 0), members, by_party, (cat, mon))
        for period in PERIODS:
            window = _window(period)
            value = sum(points.get((cat, mon), 0) for mon in month_keys[-period:])
            cells[cat, window] = _cell(value, members, by_party, (cat, window))
    hidden = suppress(cells, _flow_relations(rows_keys, month_keys), rules)

    def shown(key: tuple[str, str]) -> int | None:
        return None if key in hidden else cells[key].value

    window, columns = _window(months), month_keys[-months:]
    return Grid(
        columns=tuple(date.fromisoformat(mon).strftime("%b %Y") for mon in columns),
        rows=tuple(
            GridRow(
                label=_label(cat),
                cells=tuple(shown((cat, mon)) for mon in columns),
                total=shown((cat, window)),
            )
            for cat in rows_keys
            # A row of zeros is left out; one with anything hidden stays, or its absence
            # would tell that what it hides is zero.
            if cells[cat, window].value
            or any(key in hidden for key in [(cat, window), *((cat, mon) for mon in columns)])
        ),
        column_totals=tuple(shown((TOTAL, mon)) for mon in columns),
        total=shown((TOTAL, window)),
    )


def _cell(
    value: int,
    members: dict[tuple[str, str], int],
    by_party: dict[tuple[str, str], dict[int, int]],
    key: tuple[str, str],
) -> Cell:
    return Cell(value, members.get(key, 0), tuple(by_party[key].values()) if value else ())


def _flow_relations(
    categories: list[str], month_keys: list[str]
) -> list[Relation[tuple[str, str]]]:
    """Each category's and the grand total of each period is the sum of its months; each
    month's total and each period's grand total is the sum over the categories."""
    relations: list[Relation[tuple[str, str]]] = []
    for cat in [*categories, TOTAL]:
        for period in PERIODS:
            parts = tuple((cat, mon) for mon in month_keys[-period:])
            relations.append(Relation((cat, _window(period)), parts))
    for column in [*month_keys, *(_window(period) for period in PERIODS)]:
        relations.append(Relation((TOTAL, column), tuple((cat, column) for cat in categories)))
    return relations


def _window(period: int) -> str:
    return f"last-{period}"


def _label(category: str) -> str:
    try:
        return str(TenantCategory(category).label)
    except ValueError:
        return category
