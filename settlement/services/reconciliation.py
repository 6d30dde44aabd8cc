"""The pool reconciliation: the proof written after every close (`reconciliation_run`)."""

import logging
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from coalition.claims import job_claim
from coalition.models import AccountKind, JournalKind
from coalition.rows import fetch_all
from coalition.selectors import ledger_verify
from coalition.services.programme import add_months
from coalition.wake import worker_wake_on_commit
from settlement.models import Period, Reconciliation, Statement
from settlement.services.movements import LEDGER_BEGINNING, Movement, ledger_movements

logger = logging.getLogger(__name__)
VERIFY_TASK = "settlement.tasks.reconciliation_verify_task"

# How a journal kind moves the liability (member accounts), for the roll-forward.
_ROLL_FORWARD: dict[str, str] = {
    JournalKind.EARN: "issued",
    JournalKind.EARN_REVERSAL: "issued",
    JournalKind.OPENING: "issued",
    JournalKind.BURN: "redeemed",
    JournalKind.BURN_REVERSAL: "redeemed",
    JournalKind.EXPIRE: "expired",
}
_MEMBER_KINDS = [AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING]
# The operator's accounts, and which of its figures each feeds.
_OPERATOR_FIGURE: dict[str, str] = {
    AccountKind.MARGIN: "margin",
    AccountKind.VARIANCE: "variance",
    AccountKind.BREAKAGE: "breakage",
    AccountKind.CAMPAIGN: "campaign",
    AccountKind.ADJUSTMENT: "other",
    AccountKind.FORFEIT: "other",
}


def period_movements(period: Period) -> tuple[Reconciliation | None, list[Movement]]:
    """Last month's reconciliation (None for the first month closed) and the entries the
    reconciliation of `period` must read: the month's alone when last month's closing figures
    are its opening, else every entry up to the month's end."""
    previous = (
        Reconciliation.objects.filter(
            period__coalition_id=period.coalition_id, period__month=add_months(period.month, -1)
        )
        .order_by("-created_at")
        .first()
    )
    movements = ledger_movements(
        period.coalition_id,
        start=period.starts_at,
        end=period.ends_at,
        since=period.starts_at if previous is not None else None,
    )
    return previous, movements


def reconciliation_run(
    period: Period, scanned: tuple[Reconciliation | None, list[Movement]] | None = None
) -> Reconciliation:
    """Prove `period`'s figures: opening + issued - redeemed - expired ± other = closing
    liability; the pool (every non-member account, at nominal) equals the points outstanding x
    the point's value; each funding tenant's lots roll forward to what they hold. Records the
    operator's figures for the month. `scanned` is `period_movements(period)`, when the close
    has it already.

    The opening figures are last month's closing ones (the first month reads the ledger from
    its beginning), so the work grows with the month, not with the ledger's history. The check
    of every entry ever written (`ledger_verify`) is the second step, `reconciliation_verify`:
    until it has run the record's `balanced` is empty, unless the figures already disagree.

    Reports every difference it finds, with the figures; corrects nothing.
    """
    coalition = period.coalition
    previous, movements = scanned if scanned is not None else period_movements(period)
    opening = issued = redeemed = expired = other = 0
    closing_value = pool = Decimal(0)
    operator: dict[str, Decimal] = defaultdict(Decimal)
    if previous is not None:
        opening, closing_value, pool = (
            previous.closing_points,
            previous.closing_value,
            previous.pool_value,
        )
    for move in movements:
        if not move.on_member:
            pool -= move.value
            if not move.before_month and move.account_kind in _OPERATOR_FIGURE:
                operator[_OPERATOR_FIGURE[move.account_kind]] += move.value
            continue
        closing_value += move.value
        if move.before_month:
            opening += move.points
            continue
        line = _ROLL_FORWARD.get(move.journal_kind, "other")
        if line == "issued":
            issued += move.points
        elif line == "redeemed":
            redeemed -= move.points
        elif line == "expired":
            expired -= move.points
        else:
            other += move.points
    closing = opening + issued - redeemed - expired + other
    cached, after = fetch_all(
        """
        SELECT
            (SELECT coalesce(sum(balance), 0) FROM coalition_account
                WHERE coalition_id = %(c)s AND kind = ANY(%(member)s)),
            (SELECT coalesce(sum(e.points), 0) FROM coalition_journal j
                JOIN coalition_entry e ON e.journal_id = j.id
                JOIN coalition_account a ON a.id = e.account_id
                WHERE j.coalition_id = %(c)s AND j.posted_at >= %(end)s
                    AND a.kind = ANY(%(member)s))
        """,
        {"c": coalition.pk, "member": _MEMBER_KINDS, "end": period.ends_at},
    )[0]
    outstanding = int(cached) - int(after)
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
    by_tenant, tenant_problems = _lots_by_funding_tenant(period, previous)
    problems += tenant_problems
    billed = Statement.objects.filter(period=period).aggregate(
        fees=Sum("fee", default=Decimal(0)),
        adjustments=Sum("adjustments", default=Decimal(0)),
        returned=Sum("breakage_returned", default=Decimal(0)),
    )
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
        margin_value=operator["margin"],
        variance_value=operator["variance"],
        breakage_value=operator["breakage"],
        campaign_value=operator["campaign"],
        other_value=operator["other"],
        fee_value=billed["fees"],
        breakage_returned_value=-billed["returned"],
        statement_adjustment_value=billed["adjustments"],
        discrepancies=problems,
        balanced=False if problems else None,
    )


def reconciliation_verify(reconciliation_id: int, *, now: datetime | None = None) -> bool | None:
    """The reconciliation's second step: `ledger_verify` over the coalition's whole ledger, its
    findings added to the discrepancies of this record and of every other record of the
    coalition still waiting for the check (one run serves them all). Safe to run twice or at
    once (a claim per coalition; a record already checked is left alone). Returns this record's
    verdict, or None when another process holds the claim."""
    coalition_id = (
        Reconciliation.objects.filter(pk=reconciliation_id)
        .values_list("period__coalition_id", flat=True)
        .first()
    )
    if coalition_id is None:  # a message about a record that no longer exists
        logger.warning("no reconciliation %s to check", reconciliation_id)
        return None
    with job_claim(f"ledger-verify:{coalition_id}") as held:
        if not held:
            return None
        pending = list(
            Reconciliation.objects.filter(
                period__coalition_id=coalition_id, ledger_checked_at__isnull=True
            ).select_related("period__coalition")
        )
        if pending:
            findings = [str(d) for d in ledger_verify(pending[0].period.coalition)]
            checked_at = now or timezone.now()
            for found in pending:
                problems = [*found.discrepancies, *findings]
                Reconciliation.objects.filter(pk=found.pk, ledger_checked_at__isnull=True).update(
                    discrepancies=problems, balanced=not problems, ledger_checked_at=checked_at
                )
        return Reconciliation.objects.values_list("balanced", flat=True).get(pk=reconciliation_id)


def reconciliations_verify_pending() -> int:
    """Run the ledger check for every coalition with a reconciliation still waiting for it (the
    hourly job's catch-up for a message the broker lost); returns how many coalitions."""
    waiting = Reconciliation.objects.filter(ledger_checked_at__isnull=True)
    checked = 0
    for coalition_id in sorted(set(waiting.values_list("period__coalition_id", flat=True))):
        first = waiting.filter(period__coalition_id=coalition_id).order_by("pk").first()
        if first is not None and reconciliation_verify(first.pk) is not None:
            checked += 1
    return checked


def reconciliation_verify_enqueue(reconciliation_id: int) -> None:
    """After commit, wake a worker to run the ledger check. If the broker is down the record
    still says the check is due; `reconciliations_verify_pending` finds it."""
    worker_wake_on_commit(
        VERIFY_TASK, [reconciliation_id], left_to="reconciliations_verify_pending"
    )


def _lots_by_funding_tenant(
    period: Period, previous: Reconciliation | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each funding tenant's lots rolled forward over the month (opening, points credited, less
    points taken), against what its lots hold now less what moved after the month. The opening
    is last month's closing, or (first month) everything before the month."""
    carried = {
        row.get("tenant_id"): row["closing"] for row in (previous.by_tenant if previous else [])
    }
    rows = fetch_all(
        """
        WITH credited AS (
            SELECT l.funding_tenant_id AS tenant_id,
                sum(l.points) FILTER (WHERE j.posted_at < %(start)s) AS opening,
                sum(l.points) FILTER (WHERE j.posted_at >= %(start)s AND j.posted_at < %(end)s)
                    AS credited,
                sum(l.points) FILTER (WHERE j.posted_at >= %(end)s) AS credited_after
            FROM coalition_lot l JOIN coalition_journal j ON j.id = l.journal_id
            WHERE j.coalition_id = %(c)s AND j.posted_at >= %(since)s GROUP BY 1
        ),
        taken AS (
            SELECT l.funding_tenant_id AS tenant_id,
                sum(c.points) FILTER (WHERE j.posted_at < %(start)s) AS before,
                sum(c.points) FILTER (WHERE j.posted_at >= %(start)s AND j.posted_at < %(end)s)
                    AS taken,
                sum(c.points) FILTER (WHERE j.posted_at >= %(end)s) AS taken_after
            FROM coalition_lotconsumption c
            JOIN coalition_journal j ON j.id = c.journal_id
            JOIN coalition_lot l ON l.id = c.lot_id
            WHERE j.coalition_id = %(c)s AND j.posted_at >= %(since)s GROUP BY 1
        ),
        held AS (
            SELECT funding_tenant_id AS tenant_id, sum(remaining) AS remaining
            FROM coalition_lot WHERE coalition_id = %(c)s AND remaining > 0 GROUP BY 1
        ),
        tenants AS (
            SELECT tenant_id FROM credited UNION SELECT tenant_id FROM taken
            UNION SELECT tenant_id FROM held
            UNION SELECT unnest(%(known)s::bigint[])
        )
        SELECT x.tenant_id, coalesce(t.slug, 'operator'),
            coalesce(cr.opening, 0) - coalesce(tk.before, 0), coalesce(cr.credited, 0),
            coalesce(tk.taken, 0), coalesce(h.remaining, 0), coalesce(cr.credited_after, 0),
            coalesce(tk.taken_after, 0)
        FROM tenants x
        LEFT JOIN credited cr ON cr.tenant_id IS NOT DISTINCT FROM x.tenant_id
        LEFT JOIN taken tk ON tk.tenant_id IS NOT DISTINCT FROM x.tenant_id
        LEFT JOIN held h ON h.tenant_id IS NOT DISTINCT FROM x.tenant_id
        LEFT JOIN tenants_tenant t ON t.id = x.tenant_id
        ORDER BY 2
        """,
        {
            "c": period.coalition_id,
            "since": period.starts_at if previous is not None else LEDGER_BEGINNING,
            "start": period.starts_at,
            "end": period.ends_at,
            "known": list(carried),
        },
    )
    summary, problems = [], []
    for tenant_id, slug, before, credited, taken, remaining, credited_after, taken_after in rows:
        opening = carried.get(tenant_id, 0) + int(before)
        closing = opening + int(credited) - int(taken)
        held = int(remaining) - int(credited_after) + int(taken_after)
        if not (opening or credited or taken or closing or held):
            continue
        summary.append(
            {
                "tenant_id": tenant_id,
                "tenant": slug,
                "opening": opening,
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
