"""Expiry notices: one per member and run, before any point expires (`domain.md`).

`expiry_notices_queue` (daily) records a notice for every member with lots that expire within
the coalition's notice window and no notice yet, and marks those lots with it: the sweep
(`lots_expire`) expires a lot only once its notice was recorded at least the window ago, so a
lot found late is postponed, never expired silently. A member without an address on any
channel gets its record at once, marked "no channel". `expiry_notices_send` delivers the
queued ones; both are idempotent, run in keyset-paginated chunks and take a claim per run.
"""

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from coalition.channels import Channel, ChannelError, channels_in_order
from coalition.claims import job_claim
from coalition.models import (
    Coalition,
    ExpiryNotice,
    Lot,
    NoticeChannel,
    NoticeStatus,
)
from coalition.rows import fetch_all
from coalition.services.programme import local_date
from members.models import Identifier, MemberStatus

logger = logging.getLogger(__name__)
CHUNK = 2000
MAX_ATTEMPTS = 5


def notice_window(coalition: Coalition) -> timedelta:
    return timedelta(days=coalition.expiry_notice_days)


def expiry_notices_queue(*, now: datetime | None = None, coalition: Coalition | None = None) -> int:
    """Record a notice for each member with lots expiring within the notice window that no
    notice covers yet; returns how many notices were recorded."""
    now = now or timezone.now()
    recorded = 0
    for one in [coalition] if coalition else list(Coalition.objects.order_by("pk")):
        with job_claim(f"expiry-notices:{one.pk}") as held:
            if not held:
                logger.info("expiry notices of coalition %s are being queued elsewhere", one.pk)
                continue
            horizon = local_date(one, now) + timedelta(days=one.expiry_notice_days)
            for chunk in _members_to_notify(one, horizon):
                recorded += _notices_record(one, chunk, horizon, now)
    return recorded


def _members_to_notify(coalition: Coalition, horizon: date) -> Iterator[list[str]]:
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        rows = fetch_all(
            """
            SELECT DISTINCT member_id FROM coalition_lot
            WHERE coalition_id = %s AND remaining > 0 AND pending_until IS NULL
                AND notice_id IS NULL AND expires_on < %s AND member_id > %s
            ORDER BY member_id LIMIT %s
            """,
            [coalition.pk, horizon, after, CHUNK],
        )
        if not rows:
            return
        chunk = [str(row[0]) for row in rows]
        yield chunk
        after = chunk[-1]


@transaction.atomic
def _notices_record(coalition: Coalition, members: list[str], horizon: date, now: datetime) -> int:
    lots = list(
        Lot.objects.select_for_update(skip_locked=True)
        .filter(
            member_id__in=members,
            remaining__gt=0,
            pending_until__isnull=True,
            notice__isnull=True,
            expires_on__lt=horizon,
            member__status=MemberStatus.ACTIVE,
        )
        .values_list("pk", "member_id", "expires_on", "remaining")
    )
    by_member: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    lot_ids: dict[str, list[int]] = defaultdict(list)
    for pk, member_id, expires_on, remaining in lots:
        if expires_on is not None:  # the filter guarantees it
            by_member[str(member_id)][expires_on] += remaining
            lot_ids[str(member_id)].append(pk)
    if not by_member:
        return 0
    addresses = _addresses(list(by_member))
    order = channels_in_order()
    notices = []
    for key, days in by_member.items():
        found = _channel_for(order, addresses.get(key, {}))
        notices.append(
            ExpiryNotice(
                coalition=coalition,
                member_id=key,
                created_at=now,
                points=sum(days.values()),
                first_expiry=min(days),
                lots=[{"expires_on": f"{day}", "points": days[day]} for day in sorted(days)],
                channel=found.name if found else NoticeChannel.NONE,
                status=NoticeStatus.QUEUED if found else NoticeStatus.NO_CHANNEL,
            )
        )
    ExpiryNotice.objects.bulk_create(notices)
    for notice in notices:
        Lot.objects.filter(pk__in=lot_ids[str(notice.member_id)]).update(notice=notice)
    return len(notices)


def _addresses(member_ids: list[str]) -> dict[str, dict[str, str]]:
    """Each member's current email and phone."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    rows = Identifier.objects.filter(member_id__in=member_ids, released_at__isnull=True)
    for member_id, kind, value in rows.values_list("member_id", "kind", "value"):
        found[str(member_id)].setdefault(kind, value)
    return found


def _channel_for(order: list[Channel], addresses: dict[str, str]) -> Channel | None:
    return next((one for one in order if addresses.get(one.address_kind)), None)


def expiry_notices_send(*, now: datetime | None = None) -> dict[str, int]:
    """Deliver every queued notice; a failure is retried on the next run, up to
    MAX_ATTEMPTS, then marked failed (its record still lets the sweep proceed)."""
    now = now or timezone.now()
    counts: dict[str, int] = defaultdict(int)
    with job_claim("expiry-notices-send") as held:
        if not held:
            return dict(counts)
        after = 0
        while True:
            batch = list(
                ExpiryNotice.objects.filter(status=NoticeStatus.QUEUED, pk__gt=after)
                .select_related("coalition")
                .order_by("pk")[:CHUNK]
            )
            if not batch:
                break
            addresses = _addresses([str(notice.member_id) for notice in batch])
            for notice in batch:
                counts[_deliver(notice, addresses.get(str(notice.member_id), {}), now)] += 1
            after = batch[-1].pk
    return dict(counts)


def _deliver(notice: ExpiryNotice, addresses: dict[str, str], now: datetime) -> str:
    from coalition.channels import channel

    sender = channel(notice.channel) if notice.channel != NoticeChannel.NONE else None
    recipient = addresses.get(sender.address_kind, "") if sender else ""
    if sender is None or not recipient:
        # The address went away since the notice was recorded (erasure, a changed identifier).
        ExpiryNotice.objects.filter(pk=notice.pk).update(
            status=NoticeStatus.NO_CHANNEL, channel=NoticeChannel.NONE
        )
        return NoticeStatus.NO_CHANNEL
    last_day = max(date.fromisoformat(row["expires_on"]) for row in notice.lots)
    if last_day < local_date(notice.coalition, now):
        # Every point it announces has passed its last day: sending it now would mislead.
        ExpiryNotice.objects.filter(pk=notice.pk).update(
            status=NoticeStatus.FAILED,
            error=f"Not sent: its last day ({last_day}) passed before it could be delivered.",
        )
        logger.warning("expiry notice %s went stale before delivery", notice.pk)
        return NoticeStatus.FAILED
    subject, body = notice_text(notice)
    try:
        sender.send(recipient, subject, body, notice)
    except ChannelError as exc:  # recorded on the notice and logged, retried next run
        attempts = notice.attempts + 1
        status = NoticeStatus.FAILED if attempts >= MAX_ATTEMPTS else NoticeStatus.QUEUED
        ExpiryNotice.objects.filter(pk=notice.pk).update(
            attempts=attempts, status=status, error=f"{type(exc).__name__}: {exc}"[:500]
        )
        logger.warning("expiry notice %s: %s (attempt %s)", notice.pk, exc, attempts)
        return "retry" if status == NoticeStatus.QUEUED else NoticeStatus.FAILED
    ExpiryNotice.objects.filter(pk=notice.pk).update(
        status=NoticeStatus.SENT, sent_at=now, attempts=notice.attempts + 1, error=""
    )
    return NoticeStatus.SENT


def notice_text(notice: ExpiryNotice) -> tuple[str, str]:
    """The notice's subject and body: the points and their last days, nothing else."""
    coalition = notice.coalition
    lines = [f"  {row['points']:,} points: last day {row['expires_on']}" for row in notice.lots]
    body = "\n".join(
        [
            f"Your {coalition.name} points are about to expire.",
            "",
            *lines,
            "",
            "Spend them at any shop of the mall before their last day to keep their value.",
        ]
    )
    return f"{notice.points:,} {coalition.name} points expire soon", body
