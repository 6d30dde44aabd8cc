"""Expiry: what remains of lots past their last day goes to the breakage account.

The sweep is set-based, in chunks of members: for each chunk it locks the members' accounts
(the same lock every posting takes, so a burn racing the sweep on a lot waits for it or goes
first, never both take the same points) and then writes, in one statement, one expiry journal
per member, its two entries, the new balances, the spent lots and their consumption records.
A chunk is one short transaction, so no member's lock is held for long, and memory stays flat
in the number of lots.

Expiry is never silent: a lot expires only once its notice (`coalition.services.notices`) was
recorded at least the coalition's notice window ago; a lot due without one is postponed. The
sweep is idempotent and catches up: a run expires everything due as of `as_of`.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache, partial
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from coalition.models import AccountKind, Coalition, JournalKind
from coalition.retry import conflict_retry
from coalition.rows import fetch_all, fetch_one
from coalition.services.ledger import MemberId, coalition_account, member_accounts_lock
from coalition.services.programme import local_date

CHUNK = 1000


@cache
def _sweep_sql() -> str:
    """Expire the chunk's due lots: journals, entries, balances, lots and consumptions at once.

    The members' accounts are locked already (`member_accounts_lock`); the lots are read after
    that, so a burn that committed first has taken its share.
    """
    return """
        WITH cut AS (SELECT closed_through FROM coalition_coalition WHERE id = %(c)s),
        due AS (
            SELECT l.id, l.member_id, l.remaining
            FROM coalition_lot l JOIN coalition_expirynotice n ON n.id = l.notice_id
            WHERE l.member_id = ANY(%(members)s::uuid[]) AND l.remaining > 0
                AND l.pending_until IS NULL AND l.expires_on < %(today)s
                AND n.created_at <= %(noticed_by)s
        ),
        per_member AS (
            SELECT d.member_id, sum(d.remaining) AS points, a.id AS account_id, a.balance
            FROM due d JOIN coalition_account a
                ON a.member_id = d.member_id AND a.kind = %(points_kind)s
            GROUP BY d.member_id, a.id, a.balance
        ),
        j AS (
            INSERT INTO coalition_journal (public_id, coalition_id, kind, member_id, receipt,
                points, value, point_value, reason, occurred_at, posted_at)
            SELECT gen_random_uuid(), %(c)s, %(kind)s, p.member_id, '', p.points,
                round(p.points * %(nominal)s, 2), %(nominal)s, '', %(as_of)s,
                GREATEST(%(now)s::timestamptz, (SELECT closed_through FROM cut))
            FROM per_member p
            RETURNING id, member_id
        ),
        entries AS (
            INSERT INTO coalition_entry (journal_id, account_id, points, value, balance_before,
                balance_after, digest)
            SELECT j.id, p.account_id, -p.points, -p.points * %(nominal)s, p.balance,
                p.balance - p.points, ''
            FROM j JOIN per_member p ON p.member_id = j.member_id
            UNION ALL
            SELECT j.id, %(breakage)s, p.points, p.points * %(nominal)s, NULL, NULL, ''
            FROM j JOIN per_member p ON p.member_id = j.member_id
        ),
        balances AS (
            UPDATE coalition_account a SET balance = a.balance - p.points
            FROM per_member p WHERE a.id = p.account_id
        ),
        spent AS (
            UPDATE coalition_lot l SET remaining = 0 FROM due d WHERE l.id = d.id
        ),
        consumed AS (
            INSERT INTO coalition_lotconsumption (lot_id, journal_id, points)
            SELECT d.id, j.id, d.remaining FROM due d JOIN j ON j.member_id = d.member_id
        )
        SELECT count(*), coalesce(sum(points), 0) FROM per_member
    """


def lots_expire_members(
    *, coalition: Coalition, member_ids: list[MemberId], as_of: datetime
) -> int:
    """Expire the given members' due lots (one transaction); returns the points expired."""
    if not member_ids:
        return 0
    member_ids = [UUID(str(member_id)) for member_id in member_ids]
    with transaction.atomic():
        member_accounts_lock(*member_ids)
        row = fetch_one(
            _sweep_sql(),
            {
                "c": coalition.pk,
                "members": [str(member_id) for member_id in member_ids],
                "today": local_date(coalition, as_of),
                "noticed_by": as_of - timedelta(days=coalition.expiry_notice_days),
                "points_kind": AccountKind.MEMBER_POINTS,
                "kind": JournalKind.EXPIRE,
                "nominal": coalition.point_value,
                "as_of": as_of,
                "now": timezone.now(),
                "breakage": coalition_account(coalition.pk, AccountKind.BREAKAGE).pk,
            },
        )
    return int(row[1]) if row is not None else 0


def lots_expire_member(*, coalition: Coalition, member_id: MemberId, as_of: datetime) -> int:
    """Expire one member's due lots; returns the points expired."""
    return lots_expire_members(coalition=coalition, member_ids=[member_id], as_of=as_of)


def _members_due(coalition: Coalition, as_of: datetime) -> Iterator[list[MemberId]]:
    """Members with lots due and noticed long enough ago, in keyset-paginated chunks (no cursor
    held across commits)."""
    today = local_date(coalition, as_of)
    noticed_by = as_of - timedelta(days=coalition.expiry_notice_days)
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        rows = fetch_all(
            """
            SELECT DISTINCT l.member_id
            FROM coalition_lot l JOIN coalition_expirynotice n ON n.id = l.notice_id
            WHERE l.coalition_id = %s AND l.remaining > 0 AND l.pending_until IS NULL
                AND l.expires_on < %s AND n.created_at <= %s AND l.member_id > %s
            ORDER BY l.member_id LIMIT %s
            """,
            [coalition.pk, today, noticed_by, after, CHUNK],
        )
        if not rows:
            return
        chunk: list[MemberId] = [row[0] for row in rows]
        yield chunk
        after = str(chunk[-1])


def lots_expire(*, as_of: datetime | None = None, coalition: Coalition | None = None) -> int:
    """Expire everything due as of `as_of` (default now) in one or every coalition, lots whose
    notice is not old enough excepted (they wait). Returns the number of points expired.
    Running it again expires nothing more."""
    as_of = as_of or timezone.now()
    coalitions = [coalition] if coalition else list(Coalition.objects.order_by("pk"))
    total = 0
    for one in coalitions:
        for chunk in _members_due(one, as_of):
            # A chunk that lost a race (deadlock, serialization failure) simply runs again; one
            # that keeps losing is logged and stops the sweep, and the next run catches up.
            total += conflict_retry(
                partial(lots_expire_members, coalition=one, member_ids=chunk, as_of=as_of),
                what=f"expiry sweep of coalition {one.pk}",
            )
    return total
