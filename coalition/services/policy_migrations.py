"""Applying an expiry policy to lots that already exist: explicit, audited, never silent.

A lot keeps the terms it was earned under (`lot_terms`), so changing the coalition's policy
changes new lots only. When staff decide existing lots must follow the new policy too, they
request an `ExpiryPolicyMigration` with a reason; a job then recomputes every open lot's last
day under the policy recorded on the request, member by member under the members' locks (a
burn or the sweep on the same member waits, and never sees half a member's lots moved).

A lot whose last day moves loses its notice: the sweep waits a full notice window after a
notice of the new date. So a migration to a shorter term never expires anything at once.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from coalition.claims import job_claim
from coalition.errors import InvalidRequest
from coalition.models import (
    Coalition,
    ExpiryPolicy,
    ExpiryPolicyMigration,
    Lot,
    MigrationStatus,
)
from coalition.rows import fetch_all
from coalition.services.ledger import MemberId, member_accounts_lock
from coalition.services.programme import LotTerms, local_date, lot_terms
from coalition.wake import worker_wake_on_commit

logger = logging.getLogger(__name__)
CHUNK = 1000
MIGRATIONS_TASK = "coalition.tasks.expiry_policy_migrations_task"


@dataclass(frozen=True)
class MigrationCounts:
    lots: int = 0
    earlier: int = 0
    points: int = 0

    def __add__(self, other: "MigrationCounts") -> "MigrationCounts":
        return MigrationCounts(
            self.lots + other.lots, self.earlier + other.earlier, self.points + other.points
        )


def _policy_of(source: Coalition | ExpiryPolicyMigration, coalition: Coalition) -> Coalition:
    """A stand-in coalition carrying the policy to apply (the one recorded on a request)."""
    return Coalition(
        pk=coalition.pk,
        time_zone=coalition.time_zone,
        expiry_policy=source.expiry_policy,
        expiry_months=source.expiry_months,
        expiry_sweep_month=source.expiry_sweep_month,
        expiry_sweep_day=source.expiry_sweep_day,
    )


def _new_terms(
    policy: Coalition, earned_at: datetime, last_activity_at: datetime | None, today: date
) -> LotTerms:
    if policy.expiry_policy == ExpiryPolicy.SLIDING:
        # Sliding counts from the member's last activity, as if the policy had always applied.
        since = local_date(policy, last_activity_at) if last_activity_at else today
        return lot_terms(policy, since)
    return lot_terms(policy, local_date(policy, earned_at))


def _changes(
    policy: Coalition, member_ids: list[MemberId], today: date, *, lock: bool
) -> Iterator[tuple[Lot, LotTerms]]:
    """The members' open lots whose terms differ from the policy's, with their new terms."""
    lots = Lot.objects.filter(member_id__in=member_ids, remaining__gt=0).select_related("member")
    if lock:
        lots = lots.select_for_update(of=("self",))
    for lot in lots.order_by("pk"):
        terms = _new_terms(policy, lot.earned_at, lot.member.last_activity_at, today)
        if (lot.expires_on, lot.slide_months) != (terms.expires_on, terms.slide_months):
            yield lot, terms


def _members_with_open_lots(coalition: Coalition) -> Iterator[list[MemberId]]:
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        rows = fetch_all(
            "SELECT DISTINCT member_id FROM coalition_lot WHERE coalition_id = %s "
            "AND remaining > 0 AND member_id > %s ORDER BY member_id LIMIT %s",
            [coalition.pk, after, CHUNK],
        )
        if not rows:
            return
        chunk: list[MemberId] = [row[0] for row in rows]
        yield chunk
        after = str(chunk[-1])


def _count(changes: Iterator[tuple[Lot, LotTerms]]) -> MigrationCounts:
    counts = MigrationCounts()
    for lot, terms in changes:
        earlier = terms.expires_on is not None and (
            lot.expires_on is None or terms.expires_on < lot.expires_on
        )
        counts += MigrationCounts(1, int(earlier), lot.remaining)
    return counts


def expiry_policy_migration_preview(
    *, coalition: Coalition, now: datetime | None = None
) -> MigrationCounts:
    """What applying the coalition's current policy to existing lots would change (no write)."""
    today = local_date(coalition, now or timezone.now())
    policy = _policy_of(coalition, coalition)
    counts = MigrationCounts()
    for chunk in _members_with_open_lots(coalition):
        counts += _count(_changes(policy, chunk, today, lock=False))
    return counts


@transaction.atomic
def expiry_policy_migration_request(
    *, coalition: Coalition, actor: Any, reason: str, now: datetime | None = None
) -> ExpiryPolicyMigration:
    """Record staff's decision to apply the coalition's current policy to its existing lots, and
    queue the job that does it."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Say why the existing lots must change.", field="reason")
    coalition = Coalition.objects.select_for_update().get(pk=coalition.pk)
    waiting = ExpiryPolicyMigration.objects.filter(
        coalition=coalition, status__in=(MigrationStatus.QUEUED, MigrationStatus.RUNNING)
    )
    if waiting.exists():
        raise InvalidRequest("A migration of this coalition's lots is already under way.")
    migration = ExpiryPolicyMigration.objects.create(
        coalition=coalition,
        requested_by=actor,
        requested_at=now or timezone.now(),
        reason=reason,
        expiry_policy=coalition.expiry_policy,
        expiry_months=coalition.expiry_months,
        expiry_sweep_month=coalition.expiry_sweep_month,
        expiry_sweep_day=coalition.expiry_sweep_day,
    )
    worker_wake_on_commit(MIGRATIONS_TASK, left_to="the expiry_policy_migrations beat job")
    return migration


def expiry_policy_migrations_run(*, now: datetime | None = None) -> int:
    """Run every queued (or interrupted) migration; returns how many finished. Safe to run twice
    or at once: a claim per coalition, and a rerun finds nothing left to change."""
    finished = 0
    pending = ExpiryPolicyMigration.objects.filter(
        status__in=(MigrationStatus.QUEUED, MigrationStatus.RUNNING)
    ).order_by("pk")
    for migration_id, coalition_id in pending.values_list("pk", "coalition_id"):
        with job_claim(f"expiry-policy-migration:{coalition_id}") as held:
            if not held:
                logger.info("lots of coalition %s are being migrated elsewhere", coalition_id)
                continue
            _run(migration_id, now or timezone.now())
            finished += 1
    return finished


def _run(migration_id: int, now: datetime) -> None:
    migration = ExpiryPolicyMigration.objects.select_related("coalition").get(pk=migration_id)
    if migration.status == MigrationStatus.DONE:
        return
    coalition = migration.coalition
    ExpiryPolicyMigration.objects.filter(pk=migration.pk).update(
        status=MigrationStatus.RUNNING,
        started_at=migration.started_at or now,
        members_done=0,
        members_total=Lot.objects.filter(coalition=coalition, remaining__gt=0)
        .values("member_id")
        .distinct()
        .count(),
    )
    policy, today = _policy_of(migration, coalition), local_date(coalition, now)
    if policy.expiry_policy == ExpiryPolicy.SLIDING:
        Coalition.objects.filter(pk=coalition.pk).update(sliding_lots=True)
    for chunk in _members_with_open_lots(coalition):
        _migrate_chunk(migration.pk, policy, chunk, today)
    ExpiryPolicyMigration.objects.filter(pk=migration.pk).update(
        status=MigrationStatus.DONE, finished_at=timezone.now()
    )
    logger.info("expiry policy migration %s done", migration.pk)


@transaction.atomic
def _migrate_chunk(
    migration_id: int, policy: Coalition, members: list[MemberId], today: date
) -> None:
    # The members' accounts first, as every posting and the sweep do: a burn or the sweep on
    # one of these members waits for this chunk and then sees its lots' new days.
    member_accounts_lock(*members)
    changed = list(_changes(policy, members, today, lock=True))
    counts = _count(iter(changed))
    for lot, terms in changed:
        lot.expires_on, lot.slide_months, lot.notice_id = terms.expires_on, terms.slide_months, None
    Lot.objects.bulk_update([lot for lot, _ in changed], ["expires_on", "slide_months", "notice"])
    ExpiryPolicyMigration.objects.filter(pk=migration_id).update(
        members_done=F("members_done") + len(members),
        lots_changed=F("lots_changed") + counts.lots,
        lots_earlier=F("lots_earlier") + counts.earlier,
        points_changed=F("points_changed") + counts.points,
    )
