"""The programme dashboard: the figures of one coalition for one month, and the 12 months to it.

Additive figures and the distinct-member counts of each day come from the stored daily rows
(`DailyFigures`, `DailyFlow`, refreshed nightly) for the days that have them, and from the same
SQL run live for the others (today, always; any day the refresh has not reached yet), so the
page is never stale and never slower than its live part. Everything is by posting date, in the
coalition's time zone, as the statements count.

Definitions (the page states them too):
- members: enrolled by the end of the period and still in the programme today;
- active members: members with a purchase (an earn or a burn at a tenant) in the 30 days ending
  on the period's last day (today, for the current month);
- cross-shop rate: of the members who bought in the period, the share who bought at two or more
  tenants in it;
- visits per member: visits (a member's purchases at one tenant on one day) in the period, per
  member who bought in it;
- issued, redeemed: earns less earn reversals, burns less burn reversals (as the monthly
  reconciliation counts them); expired: the sweep's expiries;
- liability: the members' points (spendable, pending, less what refunds left them owing) at the
  end of the period, at the point's nominal value: the sum of every day's net change up to then
  (or, while some day is not stored, today's cached balances less what was posted since).
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, OuterRef, Subquery, Sum
from django.utils import timezone

from coalition.models import AccountKind, Coalition, DailyFigures, DailyFlow, Lot
from coalition.models.ledger import Account
from coalition.money import money_round
from coalition.selectors.dashboard.campaigns import (
    CampaignRow,
    Lift,
    campaign_rows,
    cross_shop_lift_cached,
    percent,
)
from coalition.selectors.dashboard.daily import (
    DayFigures,
    FlowRow,
    contiguous,
    daily_figures_compute,
    daily_figures_sums,
    daily_flows_compute,
    day_figures_next,
    days_between,
    figures_start,
    midnight,
)
from coalition.services.programme import add_months, local_date
from members.models import Member, MemberStatus
from settlement.models import Reconciliation, Statement
from tenants.models import Tenant, TenantCategory

CHART_MONTHS = 12
EXPIRING_DAYS = 30
FLOW_TENANTS = 10  # the matrix shows the busiest tenants; the rest are one "other" row/column
OPERATOR = "Operator-funded"
OTHERS = "Other tenants"


@dataclass(frozen=True)
class MonthFigures:
    month: date
    issued: int
    redeemed: int
    expired: int
    liability: int  # points at the end of the month (or now)
    buyers: int
    cross_shoppers: int

    @property
    def cross_shop_rate(self) -> Decimal | None:
        return percent(self.cross_shoppers, self.buyers)


@dataclass(frozen=True)
class FlowMatrix:
    """Points funded by each row (issuer) and honoured at each column (redeemer)."""

    issuers: list[str]
    redeemers: list[str]
    cells: list[list[int]]  # [issuer][redeemer]

    @property
    def row_totals(self) -> list[int]:
        return [sum(row) for row in self.cells]

    @property
    def column_totals(self) -> list[int]:
        return [sum(column) for column in zip(*self.cells, strict=True)] if self.cells else []

    @property
    def total(self) -> int:
        return sum(self.row_totals)

    def cell(self, issuer: str, redeemer: str) -> int:
        return self.cells[self.issuers.index(issuer)][self.redeemers.index(redeemer)]


@dataclass(frozen=True)
class ArrearsRow:
    tenant: Tenant
    since: date
    owed: Decimal | None  # the balance of its last statement


@dataclass
class Dashboard:
    coalition: Coalition
    month: date
    first: date
    last: date  # the period's last day, or today for the current month
    today: date
    as_of: datetime
    members: int
    active_30d: int
    buyers: int
    cross_shoppers: int
    visits: int
    purchases: int
    issued: int
    issued_reversed: int
    redeemed: int
    redeemed_reversed: int
    expired: int
    liability: int
    expiring: int
    reconciliation: Reconciliation | None
    arrears: list[ArrearsRow]
    months: list[MonthFigures]
    tenant_flow: FlowMatrix
    category_flow: FlowMatrix
    campaigns: list[CampaignRow]
    lift: Lift
    live_days: list[date] = field(default_factory=list)

    @property
    def current(self) -> bool:
        return self.last == self.today

    @property
    def cross_shop_rate(self) -> Decimal | None:
        return percent(self.cross_shoppers, self.buyers)

    @property
    def visits_per_member(self) -> Decimal | None:
        if not self.buyers:
            return None
        return (Decimal(self.visits) / self.buyers).quantize(Decimal("0.01"))

    @property
    def issued_net(self) -> int:
        return self.issued - self.issued_reversed

    @property
    def redeemed_net(self) -> int:
        return self.redeemed - self.redeemed_reversed

    @property
    def liability_value(self) -> Decimal:
        return money_round(Decimal(self.liability) * self.coalition.point_value)

    @property
    def campaign_points(self) -> int:
        return sum(row.points for row in self.campaigns)

    @property
    def campaign_cost(self) -> Decimal:
        return sum((row.cost for row in self.campaigns), Decimal(0))


CARRY_DAYS = 3  # at most this many unstored last days are carried on from the day before


def days_figures(
    coalition: Coalition, first: date, today: date
) -> tuple[dict[date, DayFigures], list[date]]:
    """Each day's figures from `first` to `today`: stored rows where there are, the rest live.
    Also returns the days computed live."""
    found = {
        row.day: DayFigures.of(row)
        for row in DailyFigures.objects.filter(coalition=coalition, day__gte=first, day__lt=today)
    }
    start = figures_start(coalition) or today
    missing = [day for day in days_between(max(first, start), today) if day not in found]
    for day in days_between(first, min(start - timedelta(days=1), today)):
        found[day] = DayFigures(day)  # before anything happened: nothing to count
    span = contiguous(missing)
    if span is None:
        return found, missing
    before = span[0] - timedelta(days=1)
    if len(missing) <= CARRY_DAYS and missing == days_between(*span) and before in found:
        # The usual case: every day is stored but today (and yesterday, just after midnight):
        # carry the distinct counts on from the day before instead of scanning 30 days.
        for sums in daily_figures_sums(coalition, *span):
            found[sums.day] = day_figures_next(coalition, found[before], sums)
            before = sums.day
    else:
        for figures in daily_figures_compute(coalition, *span):
            found.setdefault(figures.day, figures)
    return found, missing


def flows(coalition: Coalition, first: date, last: date, live: Iterable[date]) -> list[FlowRow]:
    """Flow rows of [first, last]: stored, and live for the days in `live`."""
    live_days = sorted(day for day in live if first <= day <= last)
    rows = [
        FlowRow(day, issuer, redeemer, points)
        for day, issuer, redeemer, points in DailyFlow.objects.filter(
            coalition=coalition, day__gte=first, day__lte=last
        )
        .exclude(day__in=live_days)
        .values_list("day", "issuer_id", "redeemer_id", "points")
    ]
    span = contiguous(live_days)
    if span is not None:
        rows += [row for row in daily_flows_compute(coalition, *span) if row.day in live_days]
    return rows


def flow_matrices(coalition: Coalition, rows: list[FlowRow]) -> tuple[FlowMatrix, FlowMatrix]:
    """The tenant-to-tenant matrix (the busiest tenants, the rest as one) and the category one."""
    tenants = {t.pk: t for t in Tenant.objects.filter(coalition=coalition).only("name", "category")}
    volume: dict[int, int] = defaultdict(int)
    for row in rows:
        if row.issuer_id is not None:
            volume[row.issuer_id] += abs(row.points)
        volume[row.redeemer_id] += abs(row.points)
    shown = set(sorted(volume, key=lambda pk: (-volume[pk], pk))[:FLOW_TENANTS])

    def tenant_label(pk: int | None) -> str:
        if pk is None:
            return OPERATOR
        return tenants[pk].name if pk in shown else OTHERS

    def category_label(pk: int | None) -> str:
        if pk is None:
            return OPERATOR
        return TenantCategory(tenants[pk].category).label

    return _matrix(rows, tenant_label), _matrix(rows, category_label)


def _matrix(rows: list[FlowRow], label: Callable[[int | None], str]) -> FlowMatrix:
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        sums[label(row.issuer_id), label(row.redeemer_id)] += row.points
    totals: dict[str, int] = defaultdict(int)
    for (issuer, redeemer), points in sums.items():
        totals[issuer] += points
        totals[redeemer] += points

    def order(names: set[str]) -> list[str]:
        # Busiest first; "other" and the operator last, as they are not one tenant.
        last = {OTHERS: 1, OPERATOR: 2}
        return sorted(names, key=lambda name: (last.get(name, 0), -totals[name], name))

    issuers = order({issuer for issuer, _ in sums})
    redeemers = order({redeemer for _, redeemer in sums})
    cells = [[sums.get((i, r), 0) for r in redeemers] for i in issuers]
    return FlowMatrix(issuers, redeemers, cells)


def outstanding_points(coalition: Coalition) -> int:
    """Members' points now: the cached balances (spendable, pending, negative ones too)."""
    found = Account.objects.filter(
        coalition=coalition, kind__in=[AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING]
    ).aggregate(total=Sum("balance"))["total"]
    return int(found or 0)


def _outstanding(coalition: Coalition, first: date, days: dict[date, DayFigures]) -> int:
    """Members' points now, as the sum of every day's net change when every day before `first`
    is stored (a few hundred rows), else from the balances (a scan of every member account)."""
    start = figures_start(coalition)
    expected = (first - start).days if start is not None and start < first else 0
    earlier = DailyFigures.objects.filter(coalition=coalition, day__lt=first).aggregate(
        stored=Count("pk"), net=Sum("member_net")
    )
    if earlier["stored"] != expected:
        return outstanding_points(coalition)
    return int(earlier["net"] or 0) + sum(figures.member_net for figures in days.values())


def _members(coalition: Coalition, last: date, today: date) -> int:
    members = Member.objects.filter(coalition=coalition, status=MemberStatus.ACTIVE)
    if last < today:  # for the current month every member counts: no date to check
        members = members.filter(enrolled_at__lt=midnight(coalition, last + timedelta(days=1)))
    return members.count()


def expiring_points(coalition: Coalition, today: date) -> int:
    """Spendable points whose last day is in the next 30 days, today included."""
    found = Lot.objects.filter(
        coalition=coalition,
        remaining__gt=0,
        pending_until__isnull=True,
        expires_on__gte=today,
        expires_on__lt=today + timedelta(days=EXPIRING_DAYS),
    ).aggregate(total=Sum("remaining"))["total"]
    return int(found or 0)


def arrears(coalition: Coalition) -> list[ArrearsRow]:
    last_net = Statement.objects.filter(tenant=OuterRef("pk")).order_by("-period__month")
    return [
        ArrearsRow(tenant, tenant.arrears_since, owed)
        for tenant, owed in (
            (t, t.owed)
            for t in Tenant.objects.filter(coalition=coalition, arrears_since__isnull=False)
            .annotate(owed=Subquery(last_net.values("net_amount")[:1]))
            .order_by("arrears_since", "name")
        )
        if tenant.arrears_since is not None
    ]


def last_reconciliation(coalition: Coalition) -> Reconciliation | None:
    return (
        Reconciliation.objects.filter(period__coalition=coalition)
        .select_related("period")
        .order_by("-period__month", "-created_at")
        .first()
    )


def month_choices(coalition: Coalition, now: datetime | None = None) -> date:
    """The latest month the dashboard offers: the current one, in the coalition's time zone."""
    return local_date(coalition, now or timezone.now()).replace(day=1)


def dashboard(
    coalition: Coalition, month: date | None = None, *, now: datetime | None = None
) -> Dashboard:
    """The dashboard of `coalition` for the month of `month` (the current month by default)."""
    now = now or timezone.now()
    today = local_date(coalition, now)
    first = min(month or today, today).replace(day=1)
    last = min(add_months(first, 1) - timedelta(days=1), today)
    chart_first = add_months(first, -(CHART_MONTHS - 1))
    days, live = days_figures(coalition, chart_first, today)
    outstanding = _outstanding(coalition, chart_first, days)

    def liability_at(day: date) -> int:
        # Today's balances less what was posted after `day`.
        return outstanding - sum(days[d].member_net for d in days if d > day)

    months = []
    for n in range(CHART_MONTHS):
        start = add_months(chart_first, n)
        end = min(add_months(start, 1) - timedelta(days=1), today)
        inside = [days[d] for d in days_between(start, end)]
        months.append(
            MonthFigures(
                month=start,
                issued=sum(f.issued - f.issued_reversed for f in inside),
                redeemed=sum(f.redeemed - f.redeemed_reversed for f in inside),
                expired=sum(f.expired for f in inside),
                liability=liability_at(end),
                buyers=days[end].month_buyers,
                cross_shoppers=days[end].month_cross_shoppers,
            )
        )
    period = [days[d] for d in days_between(first, last)]
    tenant_flow, category_flow = flow_matrices(coalition, flows(coalition, first, last, live))
    return Dashboard(
        coalition=coalition,
        month=first,
        first=first,
        last=last,
        today=today,
        as_of=now,
        members=_members(coalition, last, today),
        active_30d=days[last].active_30d,
        buyers=days[last].month_buyers,
        cross_shoppers=days[last].month_cross_shoppers,
        visits=sum(f.visits for f in period),
        purchases=sum(f.purchases for f in period),
        issued=sum(f.issued for f in period),
        issued_reversed=sum(f.issued_reversed for f in period),
        redeemed=sum(f.redeemed for f in period),
        redeemed_reversed=sum(f.redeemed_reversed for f in period),
        expired=sum(f.expired for f in period),
        liability=liability_at(last),
        expiring=expiring_points(coalition, today),
        reconciliation=last_reconciliation(coalition),
        arrears=arrears(coalition),
        months=months,
        tenant_flow=tenant_flow,
        category_flow=category_flow,
        campaigns=campaign_rows(coalition, first, last),
        lift=cross_shop_lift_cached(coalition, first, last, today),
        live_days=live,
    )
