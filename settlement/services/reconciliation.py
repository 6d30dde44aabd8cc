"""The pool reconciliation: the proof written after every close (`reconciliation_run`)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from coalition.models import AccountKind, Coalition, JournalKind
from coalition.rows import fetch_all
from coalition.selectors import ledger_verify
from coalition.services.programme import add_months
from settlement.models import (
    Period,
    Reconciliation,
)

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
