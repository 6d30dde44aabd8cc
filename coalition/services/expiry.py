"""Expiry: what remains of lots past their last day goes to the breakage account.

The sweep works one member at a time, each in its own short transaction under the member's
lock, so it never holds a lock for long and a burn racing it on the same lot waits rather than
double-spends. It is idempotent and catches up: a run expires everything due as of `as_of`.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from coalition.models import AccountKind, Coalition, JournalKind, Lot
from coalition.services.ledger import (
    Leg,
    MemberId,
    coalition_account,
    journal_at_nominal,
    journal_post,
    lots_consume,
    member_accounts_lock,
)
from coalition.services.programme import local_date

CHUNK = 500


def lots_expire_member(*, coalition: Coalition, member_id: MemberId, as_of: datetime) -> int:
    """Expire a member's spendable lots whose last day is before `as_of`; returns points."""
    today = local_date(coalition, as_of)
    with transaction.atomic():
        accounts = member_accounts_lock(member_id)[member_id]
        # Read the lots under the member's lock: a burn that committed first has taken its share.
        due = list(
            Lot.objects.filter(
                member_id=member_id,
                remaining__gt=0,
                pending_until__isnull=True,
                expires_on__lt=today,
            ).order_by("expires_on", "id")
        )
        points = sum(lot.remaining for lot in due)
        if points <= 0:
            return 0
        nominal = coalition.point_value
        journal = journal_at_nominal(
            coalition=coalition,
            kind=JournalKind.EXPIRE,
            points=points,
            at=as_of,
            member_id=member_id,
            posted_at=timezone.now(),
        )
        journal_post(
            journal,
            [
                Leg(accounts.points, -points, -points * nominal),
                Leg(
                    coalition_account(coalition.pk, AccountKind.BREAKAGE), points, points * nominal
                ),
            ],
        )
        lots_consume(due, points, journal)
        return points


def _members_due(coalition: Coalition, as_of: datetime) -> Iterator[list[MemberId]]:
    """Members with lots due, in keyset-paginated chunks (no cursor held across commits)."""
    # A day of slack on the UTC date: the per-member step re-checks in the coalition's zone.
    horizon = as_of.date() + timedelta(days=1)
    due = Lot.objects.filter(
        coalition=coalition, remaining__gt=0, pending_until__isnull=True, expires_on__lt=horizon
    )
    after = None
    while True:
        page = due.filter(member_id__gt=after) if after is not None else due
        chunk: list[MemberId] = list(
            page.values_list("member_id", flat=True).distinct().order_by("member_id")[:CHUNK]
        )
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


def lots_expire(*, as_of: datetime | None = None, coalition: Coalition | None = None) -> int:
    """Expire everything due as of `as_of` (default now) in one or every coalition.

    Returns the number of points expired. Running it again expires nothing more.
    """
    as_of = as_of or timezone.now()
    coalitions = [coalition] if coalition else list(Coalition.objects.all())
    total = 0
    for one in coalitions:
        for chunk in _members_due(one, as_of):
            for member_id in chunk:
                total += lots_expire_member(coalition=one, member_id=member_id, as_of=as_of)
    return total
