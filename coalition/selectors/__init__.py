"""Reads of the ledger. `ledger_verify` proves the ledger's invariants with set-based SQL;
the `*_for_tenant` selectors are the only way a till reads transactions and batches."""

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from coalition.errors import BatchNotFound, TransactionNotFound
from coalition.models import Batch, Coalition, Journal, JournalKind


@dataclass(frozen=True)
class Discrepancy:
    """One broken invariant: which check, about what, and the figures that disagree."""

    check: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.detail}"


# Each check is one query returning (subject, detail) rows; an empty result means it holds.
CHECKS: dict[str, str] = {
    # Every journal sums to zero, in points and in money.
    "journal_unbalanced": """
        SELECT 'journal ' || j.id,
               'points sum to ' || SUM(e.points) || ', value sums to ' || SUM(e.value)
        FROM coalition_journal j JOIN coalition_entry e ON e.journal_id = j.id
        WHERE j.coalition_id = %(c)s
        GROUP BY j.id HAVING SUM(e.points) <> 0 OR SUM(e.value) <> 0
    """,
    # No entry was changed after it was written (the digest the database set on insert).
    "entry_changed": """
        SELECT 'entry ' || e.id, 'digest does not match the row''s contents'
        FROM coalition_entry e JOIN coalition_account a ON a.id = e.account_id
        WHERE a.coalition_id = %(c)s
          AND e.digest <> ledger_entry_digest(e.id, e.journal_id, e.account_id, e.points,
                                              e.value, e.balance_before, e.balance_after)
    """,
    # Every cached balance equals the sum of its entries and the after-balance of its last one.
    "balance_cache": """
        SELECT 'account ' || a.id,
               'cached ' || a.balance || ', entries sum to ' || COALESCE(s.total, 0)
               || ', last entry ends at ' || COALESCE(s.last_after::text, 'none')
        FROM coalition_account a
        LEFT JOIN LATERAL (
            SELECT SUM(e.points) AS total,
                   (SELECT e2.balance_after FROM coalition_entry e2
                    WHERE e2.account_id = a.id ORDER BY e2.id DESC LIMIT 1) AS last_after
            FROM coalition_entry e WHERE e.account_id = a.id
        ) s ON TRUE
        WHERE a.coalition_id = %(c)s AND a.kind IN ('member_points', 'member_pending')
          AND (a.balance <> COALESCE(s.total, 0)
               OR a.balance <> COALESCE(s.last_after, 0))
    """,
    # Each member entry starts where the previous one on its account ended.
    "balance_chain": """
        SELECT 'entry ' || id, 'starts at ' || balance_before || ', previous ended at '
               || COALESCE(prev_after, 0)
        FROM (
            SELECT e.id, e.balance_before,
                   LAG(e.balance_after) OVER (PARTITION BY e.account_id ORDER BY e.id)
                       AS prev_after
            FROM coalition_entry e JOIN coalition_account a ON a.id = e.account_id
            WHERE a.coalition_id = %(c)s AND a.kind IN ('member_points', 'member_pending')
        ) chain
        WHERE balance_before <> COALESCE(prev_after, 0)
    """,
    # A lot's remaining points are its points less everything its consumption records took.
    "lot_remaining": """
        SELECT 'lot ' || l.id, 'remaining ' || l.remaining || ', points ' || l.points
               || ' less consumed ' || COALESCE(SUM(c.points), 0)
        FROM coalition_lot l LEFT JOIN coalition_lotconsumption c ON c.lot_id = l.id
        WHERE l.coalition_id = %(c)s
        GROUP BY l.id HAVING l.remaining <> l.points - COALESCE(SUM(c.points), 0)
    """,
    # Spendable lots add up to the member's positive balance; pending lots to the pending one.
    "lots_vs_balance": """
        SELECT 'member ' || a.member_id,
               a.kind || ' balance ' || a.balance || ' but lots hold ' || COALESCE(l.total, 0)
        FROM coalition_account a
        LEFT JOIN LATERAL (
            SELECT SUM(remaining) AS total FROM coalition_lot l
            WHERE l.member_id = a.member_id AND l.remaining > 0
              AND (l.pending_until IS NULL) = (a.kind = 'member_points')
        ) l ON TRUE
        WHERE a.coalition_id = %(c)s AND a.kind IN ('member_points', 'member_pending')
          AND GREATEST(a.balance, 0) <> COALESCE(l.total, 0)
    """,
    # Per member: earned = active + pending + spent + expired + otherwise used (by the entries).
    "member_flow": """
        WITH flows AS (
            SELECT a.member_id,
                   SUM(CASE WHEN j.kind IN ('earn', 'opening', 'adjust', 'burn_reversal', 'merge')
                             AND e.points > 0 THEN e.points ELSE 0 END) AS earned,
                   SUM(CASE WHEN j.kind = 'burn' THEN -e.points ELSE 0 END) AS spent,
                   SUM(CASE WHEN j.kind = 'expire' THEN -e.points ELSE 0 END) AS expired,
                   SUM(CASE WHEN j.kind IN ('earn_reversal', 'adjust', 'merge', 'forfeit')
                             AND e.points < 0 THEN -e.points ELSE 0 END) AS other
            FROM coalition_entry e
            JOIN coalition_account a ON a.id = e.account_id
            JOIN coalition_journal j ON j.id = e.journal_id
            WHERE a.coalition_id = %(c)s AND a.kind IN ('member_points', 'member_pending')
            GROUP BY a.member_id
        ), balances AS (
            SELECT member_id,
                   SUM(balance) FILTER (WHERE kind = 'member_points') AS active,
                   SUM(balance) FILTER (WHERE kind = 'member_pending') AS pending
            FROM coalition_account
            WHERE coalition_id = %(c)s AND kind IN ('member_points', 'member_pending')
            GROUP BY member_id
        )
        SELECT 'member ' || f.member_id,
               'earned ' || f.earned || ' <> active ' || b.active || ' + pending ' || b.pending
               || ' + spent ' || f.spent || ' + expired ' || f.expired || ' + other ' || f.other
        FROM flows f JOIN balances b USING (member_id)
        WHERE f.earned <> b.active + b.pending + f.spent + f.expired + f.other
    """,
    # A journal's header tells the truth about its entries: the points its counter account
    # moved (tenant issued or honoured, breakage, adjustment...) and their value at nominal.
    "journal_header": """
        SELECT 'journal ' || j.id,
               j.kind || ' of ' || j.points || ' points worth ' || j.value || ', but its '
               || array_to_string(c.counters, ' and ') || ' entries move ' || COALESCE(m.moved, 0)
        FROM coalition_journal j
        CROSS JOIN LATERAL (
            -- An earn's points are funded by its tenant, the tenant's campaigns and the mall's.
            SELECT CASE j.kind
                       WHEN 'earn' THEN '{tenant_issued,tenant_campaign,campaign}'::text[]
                       WHEN 'earn_reversal'
                           THEN '{tenant_issued,tenant_campaign,campaign}'::text[]
                       WHEN 'opening' THEN '{tenant_issued}'
                       WHEN 'burn' THEN '{tenant_redeemed}'
                       WHEN 'burn_reversal' THEN '{tenant_redeemed}'
                       WHEN 'expire' THEN '{breakage}' WHEN 'adjust' THEN '{adjustment}'
                       WHEN 'release' THEN '{member_pending}' WHEN 'forfeit' THEN '{forfeit}'
                   END AS counters,
                   CASE j.kind
                       WHEN 'earn' THEN -1 WHEN 'earn_reversal' THEN 1 WHEN 'burn' THEN 1
                       WHEN 'burn_reversal' THEN -1 WHEN 'expire' THEN 1 WHEN 'release' THEN -1
                       WHEN 'forfeit' THEN 1 WHEN 'opening' THEN -1
                   END AS sign
        ) c
        LEFT JOIN LATERAL (
            SELECT SUM(e.points) AS moved
            FROM coalition_entry e JOIN coalition_account a ON a.id = e.account_id
            WHERE e.journal_id = j.id AND a.kind = ANY(c.counters)
        ) m ON TRUE
        WHERE j.coalition_id = %(c)s
          AND (j.value <> ROUND(j.points * j.point_value, 2)
               OR (c.counters IS NOT NULL AND c.sign IS NOT NULL
                   AND j.points * c.sign <> COALESCE(m.moved, 0))
               OR (j.kind = 'adjust' AND j.points <> ABS(COALESCE(m.moved, 0))))
    """,
    # Each leg is valued at its rate: members, breakage and operator-funded accounts at the
    # journal's nominal value, tenants at the rate recorded on the journal; money-only legs
    # (no points) are the operator's margin and redemption variance, nothing else.
    "entry_value": """
        SELECT 'entry ' || id, kind || ' leg of ' || points || ' points valued ' || value
               || COALESCE(', expected ' || expected, ', expected no points')
        FROM (
            SELECT e.id, e.points, e.value, a.kind,
                   CASE
                       WHEN a.kind IN ('tenant_issued', 'tenant_campaign')
                           THEN e.points * COALESCE(j.price_per_point, j.point_value)
                       WHEN a.kind = 'tenant_redeemed'
                           THEN e.points * COALESCE(j.reimbursement_per_point, j.point_value)
                       WHEN a.kind IN ('margin', 'variance') THEN NULL
                       ELSE e.points * j.point_value
                   END AS expected
            FROM coalition_entry e
            JOIN coalition_account a ON a.id = e.account_id
            JOIN coalition_journal j ON j.id = e.journal_id
            WHERE a.coalition_id = %(c)s
        ) legs
        WHERE (kind IN ('margin', 'variance') AND points <> 0)
           OR (kind NOT IN ('margin', 'variance') AND value <> expected)
    """,
    # A burn and an expiry take exactly their points from lots.
    "lot_consumption": """
        SELECT 'journal ' || j.id,
               j.kind || ' of ' || j.points || ' points took ' || COALESCE(SUM(c.points), 0)
               || ' from lots'
        FROM coalition_journal j LEFT JOIN coalition_lotconsumption c ON c.journal_id = j.id
        WHERE j.coalition_id = %(c)s AND j.kind IN ('burn', 'expire')
        GROUP BY j.id HAVING j.points <> COALESCE(SUM(c.points), 0)
    """,
    # The liability, in money at nominal value: what members' entries are worth equals the
    # points they hold times the point's value (domain.md: funded - redeemed - expired
    # +/- adjustments = outstanding points x point value).
    "liability": """
        SELECT 'coalition ' || co.id,
               'member entries are worth ' || COALESCE(v.worth, 0) || ' but '
               || COALESCE(b.held, 0) || ' points held are worth '
               || COALESCE(b.held, 0) * co.point_value
        FROM coalition_coalition co
        LEFT JOIN LATERAL (
            SELECT SUM(e.value) AS worth
            FROM coalition_entry e JOIN coalition_account a ON a.id = e.account_id
            WHERE a.coalition_id = co.id AND a.kind IN ('member_points', 'member_pending')
        ) v ON TRUE
        LEFT JOIN LATERAL (
            SELECT SUM(balance) AS held FROM coalition_account
            WHERE coalition_id = co.id AND kind IN ('member_points', 'member_pending')
        ) b ON TRUE
        WHERE co.id = %(c)s AND COALESCE(v.worth, 0) <> COALESCE(b.held, 0) * co.point_value
    """,
}


def ledger_verify(coalition: Coalition) -> list[Discrepancy]:
    """Every broken ledger invariant of `coalition`; an empty list means the ledger is sound.

    Checks: every journal sums to zero in points and money; no entry changed since it was
    written; every cached balance equals the sum of its entries and its last after-balance;
    each member entry continues the previous one's balance; each lot's remaining equals its
    points less its consumptions; spendable lots equal the positive balance and pending lots
    the pending balance; per member, earned = active + pending + spent + expired + other; each
    journal's header matches its entries; each leg is valued at its rate; burns and expiries
    take exactly their points from lots; and the liability in money equals the points held
    times the point's value.
    """
    found: list[Discrepancy] = []
    with connection.cursor() as cursor:
        for check, sql in CHECKS.items():
            cursor.execute(sql, {"c": coalition.pk})
            found.extend(Discrepancy(check, subject, detail) for subject, detail in cursor)
    return found


def ledger_totals(coalition: Coalition) -> dict[str, Any]:
    """Points per account kind (sum of entries), for staff screens and the reconciliation."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.kind, COALESCE(SUM(e.points), 0), COALESCE(SUM(e.value), 0)
            FROM coalition_account a LEFT JOIN coalition_entry e ON e.account_id = a.id
            WHERE a.coalition_id = %s GROUP BY a.kind ORDER BY a.kind
            """,
            [coalition.pk],
        )
        return {kind: {"points": int(points), "value": value} for kind, points, value in cursor}


# What a tenant's tills may read: always filtered by the tenant, so another tenant's transaction
# is simply not found (404), never "forbidden" (which would confirm it exists).

TILL_KINDS = (
    JournalKind.EARN,
    JournalKind.BURN,
    JournalKind.EARN_REVERSAL,
    JournalKind.BURN_REVERSAL,
)


def transactions_for_tenant(tenant_id: int) -> QuerySet[Journal]:
    return Journal.objects.filter(tenant_id=tenant_id, kind__in=TILL_KINDS).select_related(
        "tenant", "till", "reverses"
    )


def transaction_get_for_tenant(tenant_id: int, public_id: str) -> Journal:
    try:
        wanted = uuid.UUID(str(public_id))
    except ValueError as exc:
        raise TransactionNotFound("No such transaction for this tenant.") from exc
    journal = transactions_for_tenant(tenant_id).filter(public_id=wanted).first()
    if journal is None:
        raise TransactionNotFound("No such transaction for this tenant.")
    return journal


def batch_get_for_till_tenant(tenant_id: int, public_id: str) -> Batch:
    """A batch sent by any till of the tenant."""
    try:
        wanted = uuid.UUID(str(public_id))
    except ValueError as exc:
        raise BatchNotFound("No such batch for this tenant.") from exc
    batch = Batch.objects.filter(till__tenant_id=tenant_id, public_id=wanted).first()
    if batch is None:
        raise BatchNotFound("No such batch for this tenant.")
    return batch
