"""One pass over a month's entries, shared by the statements and the reconciliation.

The close reads each entry of the month once: grouped by the account's kind and tenant, the
journal's kind and the rate the tenant's leg was priced at. The statements take the tenant
accounts' groups, the reconciliation the member accounts' (the liability) and the others' (the
pool, the operator's figures). Scanning the month once is what keeps the close near the cost of
one plain GROUP BY over the same entries (`bench/close.py`).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from coalition.models import AccountKind
from coalition.models.ledger import MEMBER_KINDS_SET
from coalition.rows import fetch_all

LEDGER_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Movement:
    """The entries of one group: on accounts of `account_kind` (and `tenant_id`, for a tenant's
    account), from journals of `journal_kind` whose tenant leg was priced at `rate`."""

    account_kind: str
    tenant_id: int | None
    journal_kind: str
    rate: Decimal | None
    before_month: bool  # posted before the month: only when the scan starts before it
    count: int  # entries; a journal has at most one leg on a tenant's account
    points: int
    value: Decimal

    @property
    def on_member(self) -> bool:
        return self.account_kind in MEMBER_KINDS_SET


def ledger_movements(
    coalition_id: int, *, start: datetime, end: datetime, since: datetime | None
) -> list[Movement]:
    """The entries posted in [since, end), grouped. `since` is the month's start when the
    opening figures come from last month's reconciliation, or None to read from the ledger's
    beginning (the first month closed); groups before `start` are marked `before_month`."""
    rows = fetch_all(
        """
        SELECT a.kind, a.tenant_id, j.kind,
            CASE a.kind WHEN %(issued)s THEN j.price_per_point
                WHEN %(campaign)s THEN j.price_per_point
                WHEN %(redeemed)s THEN j.reimbursement_per_point END,
            j.posted_at < %(start)s,
            count(*), sum(e.points), sum(e.value)
        FROM coalition_entry e
        JOIN coalition_journal j ON j.id = e.journal_id
        JOIN coalition_account a ON a.id = e.account_id
        WHERE j.coalition_id = %(c)s AND j.posted_at >= %(since)s AND j.posted_at < %(end)s
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5
        """,
        {
            "c": coalition_id,
            "since": since or LEDGER_BEGINNING,
            "start": start,
            "end": end,
            "issued": AccountKind.TENANT_ISSUED,
            "redeemed": AccountKind.TENANT_REDEEMED,
            "campaign": AccountKind.TENANT_CAMPAIGN,
        },
    )
    return [
        Movement(
            account_kind=account_kind,
            tenant_id=tenant_id,
            journal_kind=journal_kind,
            rate=rate,
            before_month=before,
            count=int(count),
            points=int(points),
            value=value,
        )
        for account_kind, tenant_id, journal_kind, rate, before, count, points, value in rows
    ]
