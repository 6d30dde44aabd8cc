"""The monthly close: freeze a month, then write every tenant's statement in one transaction.

`period_close(coalition, month)` closes one month, and first every earlier month of the
coalition that is still open (statements are balance-forward, so months close in order).
`periods_close_due(now)` is what the beat job runs: every month that has ended, in each
coalition's time zone, and is not closed yet — so a month missed while the workers or the broker
were down is closed when they return.

Idempotent and crash-safe: a closed month is a `Period` row, written in the same transaction as
its statements, so a month is either wholly closed or not at all; closing it again returns the
row. Two closes of one coalition never run at once: they take a database claim.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from coalition.claims import job_claim
from coalition.errors import InvalidRequest
from coalition.models import AccountKind, BreakagePolicy, Coalition, Journal, JournalKind
from coalition.models.ledger import TENANT_KINDS
from coalition.money import money_round, money_split
from coalition.rows import fetch_all
from coalition.services.ledger import ledger_freeze
from coalition.services.programme import add_months, local_date
from settlement.models import (
    LINE_SIGN,
    Dispute,
    LineKind,
    Payment,
    Period,
    Statement,
    StatementLine,
)
from settlement.services.movements import Movement
from settlement.services.reconciliation import (
    period_movements,
    reconciliation_run,
    reconciliation_verify_enqueue,
)
from tenants.models import Tenant

# Which statement line a journal makes on a tenant's account of each kind.
_LINE_OF_JOURNAL: dict[tuple[str, str], str] = {
    (AccountKind.TENANT_ISSUED, JournalKind.EARN): LineKind.ISSUED,
    (AccountKind.TENANT_ISSUED, JournalKind.EARN_REVERSAL): LineKind.ISSUED_REVERSED,
    (AccountKind.TENANT_ISSUED, JournalKind.OPENING): LineKind.OPENING,
    (AccountKind.TENANT_REDEEMED, JournalKind.BURN): LineKind.HONOURED,
    (AccountKind.TENANT_REDEEMED, JournalKind.BURN_REVERSAL): LineKind.HONOURED_REVERSED,
    (AccountKind.TENANT_CAMPAIGN, JournalKind.EARN): LineKind.CAMPAIGN,
    (AccountKind.TENANT_CAMPAIGN, JournalKind.EARN_REVERSAL): LineKind.CAMPAIGN_REVERSED,
}


class CloseInProgress(Exception):
    """Another process is closing this coalition's months right now."""


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_bounds(coalition: Coalition, month: date) -> tuple[datetime, datetime]:
    """The month as [start, end) instants in the coalition's time zone."""
    zone = ZoneInfo(coalition.time_zone)
    first = month_start(month)
    following = add_months(first, 1)
    return (
        datetime(first.year, first.month, 1, tzinfo=zone),
        datetime(following.year, following.month, 1, tzinfo=zone),
    )


def last_ended_month(coalition: Coalition, now: datetime) -> date:
    """The most recent month that has ended in the coalition's time zone."""
    return add_months(month_start(local_date(coalition, now)), -1)


def first_open_month(coalition: Coalition) -> date:
    """The month after the last closed one; for a coalition never closed, the month of its
    first journal (or of its creation, without any)."""
    last = Period.objects.filter(coalition=coalition).order_by("-month").first()
    if last is not None:
        return add_months(last.month, 1)
    first = Journal.objects.filter(coalition=coalition).order_by("posted_at").first()
    moment = first.posted_at if first is not None else coalition.created_at
    return month_start(local_date(coalition, moment))


def period_close(coalition: Coalition, month: date, *, now: datetime | None = None) -> Period:
    """Close `month` (and any earlier month still open); returns its period.

    Refuses a month that has not ended yet. Closing a closed month returns it unchanged.
    """
    now = now or timezone.now()
    month = month_start(month)
    if month > last_ended_month(coalition, now):
        raise InvalidRequest(f"{month:%B %Y} has not ended yet in {coalition.time_zone}.")
    existing = Period.objects.filter(coalition=coalition, month=month).first()
    if existing is not None:
        return existing
    with job_claim(f"period-close:{coalition.pk}") as held:
        if not held:
            raise CloseInProgress(f"{coalition.name}'s months are being closed right now.")
        existing = Period.objects.filter(coalition=coalition, month=month).first()
        if existing is not None:  # closed by the process that held the claim before us
            return existing
        current = first_open_month(coalition)
        if month < current:
            raise InvalidRequest(f"{month:%B %Y} is before the programme's first month.")
        while True:
            period = _close_one(coalition, current, now)
            if current == month:
                return period
            current = add_months(current, 1)


def periods_close_due(*, now: datetime | None = None) -> list[Period]:
    """Close, in every coalition, every month that has ended and is not closed (the beat job).

    A coalition whose months another process is closing is left to that process."""
    now = now or timezone.now()
    closed = []
    for coalition in Coalition.objects.order_by("pk"):
        due = last_ended_month(coalition, now)
        if first_open_month(coalition) > due:
            continue
        try:
            before = set(Period.objects.filter(coalition=coalition).values_list("pk", flat=True))
            period_close(coalition, due, now=now)
        except CloseInProgress:
            continue
        new = Period.objects.filter(coalition=coalition).exclude(pk__in=before)
        closed += list(new.order_by("month"))
    return closed


def _close_one(coalition: Coalition, month: date, now: datetime) -> Period:
    starts_at, ends_at = month_bounds(coalition, month)
    # The freeze: wait for every posting in flight to commit, and from then on post nothing
    # before `ends_at`. Its own transaction, held for an instant.
    ledger_freeze(coalition.pk, ends_at)
    with transaction.atomic():
        period = Period.objects.create(
            coalition=coalition,
            month=month,
            starts_at=starts_at,
            ends_at=ends_at,
            closed_at=now,
            journals=Journal.objects.filter(
                coalition=coalition, posted_at__gte=starts_at, posted_at__lt=ends_at
            ).count(),
        )
        # One pass over the month's entries feeds the statements and the reconciliation.
        scanned = period_movements(period)
        _statements_write(coalition, period, scanned[1])
        reconciliation = reconciliation_run(period, scanned)
        reconciliation_verify_enqueue(reconciliation.pk)
    return period


@dataclass
class _Line:
    kind: str
    rate: Decimal | None
    count: int
    points: int
    amount: Decimal
    disputes: list[int] = field(default_factory=list)  # an adjustment line's disputes


def _posting_lines(movements: list[Movement]) -> dict[int, list[_Line]]:
    """Every tenant's issued and honoured lines for the month, per journal kind and rate: the
    groups of the month's entries on tenant accounts."""
    lines: dict[int, list[_Line]] = defaultdict(list)
    for move in movements:
        if move.before_month or move.account_kind not in TENANT_KINDS or move.tenant_id is None:
            continue
        kind = _LINE_OF_JOURNAL.get((move.account_kind, move.journal_kind))
        if kind is None:
            raise ValueError(f"A {move.journal_kind} journal moved a tenant account.")
        lines[move.tenant_id].append(
            _Line(kind, move.rate, move.count, abs(move.points), money_round(abs(move.value)))
        )
    return lines


def _payment_lines(coalition: Coalition, period: Period) -> dict[int, list[_Line]]:
    rows = fetch_all(
        f"""
        SELECT p.tenant_id, p.direction, count(*), sum(p.amount)
        FROM {Payment._meta.db_table} p JOIN tenants_tenant t ON t.id = p.tenant_id
        WHERE t.coalition_id = %s AND p.posted_at >= %s AND p.posted_at < %s
        GROUP BY 1, 2 ORDER BY 1, 2
        """,  # noqa: S608 (a table name from model metadata)
        [coalition.pk, period.starts_at, period.ends_at],
    )
    lines: dict[int, list[_Line]] = defaultdict(list)
    for tenant_id, direction, count, amount in rows:
        kind = LineKind.PAYMENT if direction == Payment.Direction.RECEIVED else LineKind.PAYOUT
        lines[tenant_id].append(_Line(kind, None, int(count), 0, amount))
    return lines


def _adjustment_lines(coalition: Coalition, period: Period) -> dict[int, list[_Line]]:
    """Disputes accepted before the month's end and not yet on a statement, per tenant and
    direction; each line keeps the ids of its disputes, so exactly those are marked."""
    found = Dispute.objects.filter(
        statement__period__coalition=coalition,
        status=Dispute.Status.ACCEPTED,
        adjusted_on__isnull=True,
        resolved_at__lt=period.ends_at,
    ).values_list("pk", "statement__tenant_id", "direction", "amount")
    lines: dict[int, list[_Line]] = defaultdict(list)
    for pk, tenant_id, direction, amount in found.order_by("statement__tenant_id", "pk"):
        kind = (
            LineKind.ADJUSTMENT_CREDIT
            if direction == Dispute.Direction.CREDIT
            else LineKind.ADJUSTMENT_DEBIT
        )
        line = next((ln for ln in lines[tenant_id] if ln.kind == kind), None)
        if line is None:
            line = _Line(kind, None, 0, 0, Decimal("0.00"))
            lines[tenant_id].append(line)
        line.count += 1
        line.amount += amount
        line.disputes.append(pk)
    return lines


def _breakage_lines(coalition: Coalition, period: Period) -> dict[int, list[_Line]]:
    """Under the return-breakage policy: the value of the points each tenant funded that expired
    in the month, split to the paisa without losing one (`money_split`)."""
    if coalition.breakage_policy != BreakagePolicy.FUNDING_TENANTS:
        return {}
    rows = fetch_all(
        """
        SELECT l.funding_tenant_id, sum(c.points), sum(c.points * j.point_value)
        FROM coalition_journal j
        JOIN coalition_lotconsumption c ON c.journal_id = j.id
        JOIN coalition_lot l ON l.id = c.lot_id
        WHERE j.coalition_id = %s AND j.kind = %s AND j.posted_at >= %s AND j.posted_at < %s
            AND l.funding_tenant_id IS NOT NULL
        GROUP BY 1 HAVING sum(c.points) > 0
        """,
        [coalition.pk, JournalKind.EXPIRE, period.starts_at, period.ends_at],
    )
    points = {tenant_id: int(expired) for tenant_id, expired, _ in rows}
    returned = money_split({tenant_id: value for tenant_id, _, value in rows})
    return {
        tenant_id: [_Line(LineKind.BREAKAGE_RETURNED, None, 0, points[tenant_id], amount)]
        for tenant_id, amount in returned.items()
    }


def _statements_write(coalition: Coalition, period: Period, movements: list[Movement]) -> None:
    postings = _posting_lines(movements)
    payments = _payment_lines(coalition, period)
    adjustments = _adjustment_lines(coalition, period)
    breakage = _breakage_lines(coalition, period)
    previous = {
        statement.tenant_id: statement.net_amount
        for statement in Statement.objects.filter(
            period__coalition=coalition, period__month=add_months(period.month, -1)
        )
    }
    statement_date = period.ends_at.astimezone(ZoneInfo(coalition.time_zone)).date()
    due_on = statement_date + timedelta(days=coalition.payment_terms_days)
    fee_rate = coalition.programme_fee_percent / Decimal(100)
    following = add_months(period.month, 1)
    had_final = set(
        Statement.objects.filter(period__coalition=coalition, final=True).values_list(
            "tenant_id", flat=True
        )
    )
    # Every tenant in the programme during the month (created before its end, not out before
    # its start), and any other with lines or a balance still to settle.
    moving = [*postings, *payments, *adjustments, *breakage]
    owing = [tenant_id for tenant_id, balance in previous.items() if balance]
    tenants = Tenant.objects.filter(coalition=coalition).filter(
        Q(created_at__lt=period.ends_at, exit_on__isnull=True)
        | Q(created_at__lt=period.ends_at, exit_on__gt=period.month)
        | Q(pk__in=[*moving, *owing])
    )
    for tenant in tenants.order_by("pk"):
        lines = [
            *postings.get(tenant.pk, []),
            *payments.get(tenant.pk, []),
            *adjustments.get(tenant.pk, []),
            *breakage.get(tenant.pk, []),
        ]
        issued = _total(lines, LineKind.ISSUED) - _total(lines, LineKind.ISSUED_REVERSED)
        fee = money_round(issued * fee_rate) if issued > 0 else Decimal(0)
        if fee:
            lines.append(_Line(LineKind.FEE, coalition.programme_fee_percent, 0, 0, fee))
        opening = previous.get(tenant.pk, Decimal("0.00"))
        net = opening + sum(
            (LINE_SIGN[LineKind(line.kind)] * line.amount for line in lines), Decimal(0)
        )
        statement = Statement.objects.create(
            period=period,
            tenant=tenant,
            opening_balance=opening,
            issued_points=_points(lines, LineKind.ISSUED),
            issued_value=_total(lines, LineKind.ISSUED),
            honoured_points=_points(lines, LineKind.HONOURED),
            honoured_value=_total(lines, LineKind.HONOURED),
            reversed_value=_total(lines, LineKind.ISSUED_REVERSED)
            - _total(lines, LineKind.HONOURED_REVERSED),
            fee=fee,
            payments=_total(lines, LineKind.PAYMENT) - _total(lines, LineKind.PAYOUT),
            adjustments=_total(lines, LineKind.ADJUSTMENT_DEBIT)
            - _total(lines, LineKind.ADJUSTMENT_CREDIT),
            breakage_returned=_total(lines, LineKind.BREAKAGE_RETURNED),
            final=tenant.exit_on is not None
            and tenant.exit_on <= following
            and tenant.pk not in had_final,
            net_amount=net,
            statement_date=statement_date,
            due_on=due_on,
        )
        StatementLine.objects.bulk_create(
            StatementLine(
                statement=statement,
                kind=line.kind,
                rate=line.rate,
                count=line.count,
                points=line.points,
                amount=line.amount,
            )
            for line in lines
        )
        adjusted = [pk for line in adjustments.get(tenant.pk, []) for pk in line.disputes]
        if adjusted:
            Dispute.objects.filter(pk__in=adjusted).update(adjusted_on=statement)


def _total(lines: list[_Line], kind: str) -> Decimal:
    return sum((line.amount for line in lines if line.kind == kind), Decimal("0.00"))


def _points(lines: list[_Line], kind: str) -> int:
    return sum(line.points for line in lines if line.kind == kind)
