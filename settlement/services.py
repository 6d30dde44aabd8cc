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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from coalition.claims import PERIOD_LOCK_CLASS, job_claim
from coalition.errors import InvalidRequest
from coalition.models import AccountKind, Coalition, Journal, JournalKind
from coalition.rows import fetch_all
from coalition.selectors import ledger_verify
from coalition.services.ledger import ledger_freeze
from coalition.services.programme import add_months, local_date
from settlement.models import (
    LINE_SIGN,
    ArrearsWaiver,
    LineKind,
    Payment,
    Period,
    Reconciliation,
    Statement,
    StatementLine,
)
from tenants.models import Tenant

PAISA = Decimal("0.01")

# Which statement line a journal on a tenant's account makes.
_LINE_OF_JOURNAL = {
    JournalKind.EARN: LineKind.ISSUED,
    JournalKind.EARN_REVERSAL: LineKind.ISSUED_REVERSED,
    JournalKind.BURN: LineKind.HONOURED,
    JournalKind.BURN_REVERSAL: LineKind.HONOURED_REVERSED,
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
        _statements_write(coalition, period)
        reconciliation_run(period)
    return period


@dataclass
class _Line:
    kind: str
    rate: Decimal | None
    count: int
    points: int
    amount: Decimal


def _posting_lines(coalition: Coalition, period: Period) -> dict[int, list[_Line]]:
    """Every tenant's issued and honoured lines for the month, per journal kind and rate, from
    one aggregate over the entries on tenant accounts."""
    rows = fetch_all(
        """
        SELECT a.tenant_id, j.kind,
            CASE WHEN a.kind = %s THEN j.price_per_point ELSE j.reimbursement_per_point END,
            count(DISTINCT j.id), abs(sum(e.points)), abs(sum(e.value))
        FROM coalition_journal j
        JOIN coalition_entry e ON e.journal_id = j.id
        JOIN coalition_account a ON a.id = e.account_id
        WHERE j.coalition_id = %s AND j.posted_at >= %s AND j.posted_at < %s
            AND a.kind IN (%s, %s)
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        """,
        [
            AccountKind.TENANT_ISSUED,
            coalition.pk,
            period.starts_at,
            period.ends_at,
            AccountKind.TENANT_ISSUED,
            AccountKind.TENANT_REDEEMED,
        ],
    )
    lines: dict[int, list[_Line]] = defaultdict(list)
    for tenant_id, journal_kind, rate, count, points, value in rows:
        kind = _LINE_OF_JOURNAL.get(journal_kind)
        if kind is None:
            raise ValueError(f"A {journal_kind} journal moved a tenant account.")
        lines[tenant_id].append(
            _Line(kind, rate, int(count), int(points), value.quantize(PAISA, ROUND_HALF_UP))
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


def _statements_write(coalition: Coalition, period: Period) -> None:
    postings = _posting_lines(coalition, period)
    payments = _payment_lines(coalition, period)
    previous = {
        statement.tenant_id: statement.net_amount
        for statement in Statement.objects.filter(
            period__coalition=coalition, period__month=add_months(period.month, -1)
        )
    }
    statement_date = period.ends_at.astimezone(ZoneInfo(coalition.time_zone)).date()
    due_on = statement_date + timedelta(days=coalition.payment_terms_days)
    fee_rate = coalition.programme_fee_percent / Decimal(100)
    # Every tenant that existed by the month's end, and any other with lines or a balance.
    tenants = Tenant.objects.filter(coalition=coalition).filter(
        Q(created_at__lt=period.ends_at) | Q(pk__in=[*postings, *payments, *previous])
    )
    for tenant in tenants.order_by("pk"):
        lines = [*postings.get(tenant.pk, []), *payments.get(tenant.pk, [])]
        issued = _total(lines, LineKind.ISSUED) - _total(lines, LineKind.ISSUED_REVERSED)
        fee = (issued * fee_rate).quantize(PAISA, ROUND_HALF_UP) if issued > 0 else Decimal(0)
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


def _total(lines: list[_Line], kind: str) -> Decimal:
    return sum((line.amount for line in lines if line.kind == kind), Decimal("0.00"))


def _points(lines: list[_Line], kind: str) -> int:
    return sum(line.points for line in lines if line.kind == kind)


# --- payments and arrears -------------------------------------------------------------------


def _posting_time(coalition_id: int, now: datetime) -> datetime:
    """`now`, or the end of the last closed month if `now` falls inside it, read under the
    coalition's period lock taken shared, as a ledger posting does (`ledger_freeze`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s)", [PERIOD_LOCK_CLASS, coalition_id]
        )
    # A statement of its own, after the lock: its snapshot includes a freeze it waited for.
    closed_through = Coalition.objects.values_list("closed_through", flat=True).get(pk=coalition_id)
    return max(now, closed_through) if closed_through is not None else now


@transaction.atomic
def payment_record(
    *,
    tenant: Tenant,
    direction: str,
    amount: Decimal,
    reference: str,
    received_on: date,
    statement: Statement | None = None,
    actor: Any = None,
    now: datetime | None = None,
) -> Payment:
    """Record money received from a tenant or paid out to it; it shows on the statement of the
    open month, and a payment that settles what was overdue lifts the arrears at once."""
    if direction not in Payment.Direction.values:
        raise InvalidRequest(f"Unknown direction {direction!r}.", field="direction")
    if amount <= 0 or amount != amount.quantize(PAISA):
        raise InvalidRequest("The amount is more than zero, in rupees and paise.", field="amount")
    reference = reference.strip()
    if not reference:
        raise InvalidRequest("The bank reference is required.", field="reference")
    if statement is not None and statement.tenant_id != tenant.pk:
        raise InvalidRequest("That statement is another tenant's.", field="statement")
    payment = Payment.objects.create(
        tenant=tenant,
        direction=direction,
        amount=amount,
        reference=reference,
        received_on=received_on,
        statement=statement,
        posted_at=_posting_time(tenant.coalition_id, now or timezone.now()),
        recorded_by=actor,
    )
    arrears_apply(tenants=[tenant], today=local_date(tenant.coalition, now or timezone.now()))
    return payment


def tenant_overdue_statement(tenant: Tenant, today: date) -> Statement | None:
    """The tenant's latest statement when it owes money on it, unpaid past its due date and not
    waived: payments posted since the statement count towards it, payouts against it."""
    latest = (
        Statement.objects.filter(tenant=tenant)
        .select_related("period")
        .order_by("-period__month")
        .first()
    )
    if latest is None or latest.net_amount <= 0 or latest.due_on >= today:
        return None
    if ArrearsWaiver.objects.filter(statement=latest).exists():
        return None
    paid = Decimal(0)
    for direction, amount in Payment.objects.filter(
        tenant=tenant, posted_at__gte=latest.period.ends_at
    ).values_list("direction", "amount"):
        paid += amount if direction == Payment.Direction.RECEIVED else -amount
    return latest if paid < latest.net_amount else None


def arrears_apply(
    *, tenants: Iterable[Tenant] | None = None, today: date | None = None
) -> dict[str, int]:
    """Put tenants with an overdue statement into arrears (their tills may not redeem) and take
    the others out. The daily job runs it for every tenant; a payment or a waiver, for one."""
    entered = left = 0
    chosen = list(tenants) if tenants is not None else Tenant.objects.select_related("coalition")
    for tenant in chosen:
        day = today or local_date(tenant.coalition, timezone.now())
        overdue = tenant_overdue_statement(tenant, day)
        since = overdue.due_on + timedelta(days=1) if overdue is not None else None
        current = Tenant.objects.values_list("arrears_since", flat=True).get(pk=tenant.pk)
        if (since is None) != (current is None):
            Tenant.objects.filter(pk=tenant.pk).update(arrears_since=since)
            entered += since is not None
            left += since is None
        tenant.arrears_since = since if (since is None) != (current is None) else current
    return {"entered": entered, "left": left}


@transaction.atomic
def arrears_waive(*, tenant: Tenant, reason: str, actor: Any) -> ArrearsWaiver:
    """Lift a tenant's arrears on its overdue statement, with a reason (recorded)."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Say why the arrears are lifted.", field="reason")
    overdue = tenant_overdue_statement(tenant, local_date(tenant.coalition, timezone.now()))
    if overdue is None:
        raise InvalidRequest(f"{tenant.name} has no overdue statement to waive.")
    waiver = ArrearsWaiver.objects.create(statement=overdue, reason=reason, waived_by=actor)
    arrears_apply(tenants=[tenant])
    return waiver


# --- the pool reconciliation -----------------------------------------------------------------

# How a journal kind moves the liability (member accounts), for the roll-forward.
_ROLL_FORWARD = {
    JournalKind.EARN: "issued",
    JournalKind.EARN_REVERSAL: "issued",
    JournalKind.BURN: "redeemed",
    JournalKind.BURN_REVERSAL: "redeemed",
    JournalKind.EXPIRE: "expired",
}
_MEMBER_KINDS = [AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING]


def reconciliation_run(period: Period) -> Reconciliation:
    """Prove `period`: opening + issued - redeemed - expired ± other = closing liability; the
    pool (every non-member account, at nominal) equals the points outstanding x the point's
    value; each funding tenant's lots roll forward to what they hold; and `ledger_verify`.

    Reports every difference it finds, with the figures; corrects nothing.
    """
    coalition = period.coalition
    start, end = period.starts_at, period.ends_at
    movements = fetch_all(
        """
        SELECT j.kind, j.posted_at < %s, j.posted_at >= %s, sum(e.points), sum(e.value)
        FROM coalition_entry e
        JOIN coalition_account a ON a.id = e.account_id
        JOIN coalition_journal j ON j.id = e.journal_id
        WHERE a.coalition_id = %s AND a.kind = ANY(%s)
        GROUP BY 1, 2, 3
        """,
        [start, end, coalition.pk, _MEMBER_KINDS],
    )
    opening = issued = redeemed = expired = other = after = 0
    closing_value = Decimal(0)
    for kind, before_month, after_month, points, value in movements:
        points = int(points)
        if after_month:
            after += points
            continue
        closing_value += value
        if before_month:
            opening += points
            continue
        line = _ROLL_FORWARD.get(kind, "other")
        if line == "issued":
            issued += points
        elif line == "redeemed":
            redeemed -= points
        elif line == "expired":
            expired -= points
        else:
            other += points
    closing = opening + issued - redeemed - expired + other
    pool = fetch_all(
        """
        SELECT coalesce(-sum(e.value), 0)
        FROM coalition_entry e
        JOIN coalition_account a ON a.id = e.account_id
        JOIN coalition_journal j ON j.id = e.journal_id
        WHERE a.coalition_id = %s AND NOT a.kind = ANY(%s) AND j.posted_at < %s
        """,
        [coalition.pk, _MEMBER_KINDS, end],
    )[0][0]
    cached = fetch_all(
        "SELECT coalesce(sum(balance), 0) FROM coalition_account "
        "WHERE coalition_id = %s AND kind = ANY(%s)",
        [coalition.pk, _MEMBER_KINDS],
    )[0][0]
    outstanding = int(cached) - after
    nominal = coalition.point_value
    problems: list[str] = []
    if closing != outstanding:
        problems.append(
            f"Liability in points: the entries roll forward to {closing:,}, the members' "
            f"balances hold {outstanding:,} (difference {outstanding - closing:+,})."
        )
    if closing_value != closing * nominal:
        problems.append(
            f"Liability in money: member entries are worth {closing_value:,.4f}, the points "
            f"at {nominal} are worth {closing * nominal:,.4f} "
            f"(difference {closing_value - closing * nominal:+,.4f})."
        )
    if pool != outstanding * nominal:
        problems.append(
            f"Pool: funded less paid out, breakage and the rest is {pool:,.4f}; the points "
            f"outstanding are worth {outstanding * nominal:,.4f} "
            f"(difference {pool - outstanding * nominal:+,.4f})."
        )
    previous = (
        Reconciliation.objects.filter(
            period__coalition=coalition, period__month=add_months(period.month, -1)
        )
        .order_by("-created_at")
        .first()
    )
    if previous is not None and previous.closing_points != opening:
        problems.append(
            f"Opening: {opening:,} points, but last month closed at {previous.closing_points:,}."
        )
    by_tenant, tenant_problems = _lots_by_funding_tenant(coalition, start, end)
    problems += tenant_problems
    problems += [str(found) for found in ledger_verify(coalition)]
    return Reconciliation.objects.create(
        period=period,
        opening_points=opening,
        issued_points=issued,
        redeemed_points=redeemed,
        expired_points=expired,
        other_points=other,
        closing_points=closing,
        point_value=nominal,
        closing_value=closing_value,
        pool_value=pool,
        outstanding_points=outstanding,
        by_tenant=by_tenant,
        discrepancies=problems,
        balanced=not problems,
    )


def _lots_by_funding_tenant(
    coalition: Coalition, start: datetime, end: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each funding tenant's lots rolled forward over the month (points credited, less points
    taken), against what its lots hold now less what moved after the month."""
    rows = fetch_all(
        """
        WITH credited AS (
            SELECT l.funding_tenant_id AS tenant_id,
                sum(l.points) FILTER (WHERE j.posted_at < %(start)s) AS opening,
                sum(l.points) FILTER (WHERE j.posted_at >= %(start)s AND j.posted_at < %(end)s)
                    AS credited,
                sum(l.points) FILTER (WHERE j.posted_at >= %(end)s) AS credited_after,
                sum(l.remaining) AS remaining
            FROM coalition_lot l JOIN coalition_journal j ON j.id = l.journal_id
            WHERE l.coalition_id = %(c)s GROUP BY 1
        ),
        taken AS (
            SELECT l.funding_tenant_id AS tenant_id,
                sum(c.points) FILTER (WHERE j.posted_at < %(start)s) AS before,
                sum(c.points) FILTER (WHERE j.posted_at >= %(start)s AND j.posted_at < %(end)s)
                    AS taken,
                sum(c.points) FILTER (WHERE j.posted_at >= %(end)s) AS taken_after
            FROM coalition_lotconsumption c
            JOIN coalition_lot l ON l.id = c.lot_id
            JOIN coalition_journal j ON j.id = c.journal_id
            WHERE l.coalition_id = %(c)s GROUP BY 1
        )
        SELECT cr.tenant_id, coalesce(t.slug, 'operator'),
            coalesce(cr.opening, 0) - coalesce(tk.before, 0), coalesce(cr.credited, 0),
            coalesce(tk.taken, 0), coalesce(cr.remaining, 0), coalesce(cr.credited_after, 0),
            coalesce(tk.taken_after, 0)
        FROM credited cr
        LEFT JOIN taken tk ON tk.tenant_id IS NOT DISTINCT FROM cr.tenant_id
        LEFT JOIN tenants_tenant t ON t.id = cr.tenant_id
        ORDER BY 2
        """,
        {"c": coalition.pk, "start": start, "end": end},
    )
    summary, problems = [], []
    for _, slug, opening, credited, taken, remaining, credited_after, taken_after in rows:
        closing = int(opening) + int(credited) - int(taken)
        held = int(remaining) - int(credited_after) + int(taken_after)
        summary.append(
            {
                "tenant": slug,
                "opening": int(opening),
                "credited": int(credited),
                "taken": int(taken),
                "closing": closing,
            }
        )
        if closing != held:
            problems.append(
                f"Lots funded by {slug}: they roll forward to {closing:,} points, they hold "
                f"{held:,} (difference {held - closing:+,})."
            )
    return summary, problems
