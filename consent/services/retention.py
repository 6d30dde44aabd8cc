"""Retention: a member with no activity for `retention_years` is warned, then erased.

`retention_warn` (daily, by beat) opens a retention erasure request for each active member whose
latest earn or burn at a till (or enrolment, if none) is older than the coalition's retention
period, and sends the member one warning through its channel. The request is the marker: a
member with an open erasure request is never warned again, so the job is safe to run twice.
`privacy_erasures_run` carries the request out once the warning window has run out, or cancels
it if the member shopped in between (`last_activity_at` moves only on an earn or a burn at a
till, `coalition.services.points._touch`; a staff view of the member is no activity).

The selection is one SQL query per chunk, keyset-paginated by member id, and each chunk is its
own transaction, so a million inactive members are warned in flat memory.
"""

import logging
from collections.abc import Iterator
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from coalition.channels import Channel, ChannelError, channel
from coalition.claims import job_claim
from coalition.models import Coalition, NoticeChannel
from coalition.services.programme import add_months
from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestSource
from consent.services.privacy import OPEN, privacy_request_open
from members.models import Identifier, IdentifierKind, Member, MemberStatus

logger = logging.getLogger(__name__)
CHUNK = 1000
FIRST_ID = UUID(int=0)


def retention_cutoff(coalition: Coalition, now: datetime) -> datetime:
    """The moment `retention_years` calendar years before `now`, on the coalition's local clock:
    a member whose latest activity is before it is past the retention period."""
    local = now.astimezone(ZoneInfo(coalition.time_zone))
    day = add_months(local.date(), -12 * coalition.retention_years)
    return datetime.combine(day, local.timetz())


def _inactive(coalition: Coalition, cutoff: datetime) -> "QuerySet[Member]":
    """Active members of the coalition inactive since before `cutoff` with no open erasure
    request (a retention request already warned them; any other one will erase them)."""
    open_erasure = PrivacyRequest.objects.filter(
        member=OuterRef("pk"), kind=PrivacyRequestKind.ERASURE, status__in=OPEN
    )
    return (
        Member.objects.filter(coalition=coalition, status=MemberStatus.ACTIVE)
        .alias(latest=Coalesce("last_activity_at", "enrolled_at"))
        .filter(latest__lt=cutoff)
        .exclude(Exists(open_erasure))
    )


def _chunks(coalition: Coalition, cutoff: datetime) -> Iterator[list[UUID]]:
    after = FIRST_ID
    while True:
        chunk = list(
            _inactive(coalition, cutoff)
            .filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:CHUNK]
        )
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


def retention_warn(*, now: datetime | None = None, coalition: Coalition | None = None) -> int:
    """Warn every member past its coalition's retention period, and open the erasure request
    that follows the warning. Returns how many members were warned: a member with neither a
    phone nor an email gets its request (the retention period binds all the same) but no
    message, and counts too."""
    now = now or timezone.now()
    warned = 0
    for one in [coalition] if coalition else list(Coalition.objects.order_by("pk")):
        with job_claim(f"retention-warn:{one.pk}") as held:
            if not held:
                logger.info("retention warnings of coalition %s are being sent elsewhere", one.pk)
                continue
            cutoff = retention_cutoff(one, now)
            for chunk in _chunks(one, cutoff):
                warned += _chunk_warn(one, chunk, cutoff, now)
    return warned


@transaction.atomic
def _chunk_warn(
    coalition: Coalition, member_ids: list[UUID], cutoff: datetime, now: datetime
) -> int:
    # Locked and checked again: a member who shops (or withdraws, or is erased) between the
    # selection and here is left alone; one a till holds right now is active anyway.
    members = list(
        _inactive(coalition, cutoff)
        .filter(pk__in=member_ids)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
    )
    addresses = _addresses([member.pk for member in members])
    warned = 0
    for member in members:
        member.coalition = coalition  # one coalition row for the chunk, not one query each
        if _member_warn(member, addresses.get(member.pk, {}), now):
            warned += 1
    return warned


def _member_warn(member: Member, addresses: dict[str, str], now: datetime) -> bool:
    found = _channel_for(addresses)
    try:
        with transaction.atomic():  # a savepoint: a failed send leaves no request behind
            request = privacy_request_open(
                member=member,
                kind=PrivacyRequestKind.ERASURE,
                source=PrivacyRequestSource.RETENTION,
                due_in_days=member.coalition.retention_warning_days,
                note=_note(found),
                now=now,
            )
            if request.source != PrivacyRequestSource.RETENTION or request.received_at != now:
                return False  # a request opened meanwhile by someone else will erase it
            if found is not None:
                sender, recipient = found
                subject, body = retention_warning_text(member.coalition, request.due_on)
                # Positional None: adapters written before notices other than expiry existed.
                sender.send(recipient, subject, body, None)
    except ChannelError as exc:
        # No warning, no request: tomorrow's run tries again, so nobody is erased unwarned.
        logger.warning("retention warning to member %s not sent: %s", member.pk, exc)
        return False
    return True


def _addresses(member_ids: list[UUID]) -> dict[UUID, dict[str, str]]:
    """Each member's current phone and email."""
    found: dict[UUID, dict[str, str]] = {}
    rows = Identifier.objects.filter(
        member_id__in=member_ids,
        released_at__isnull=True,
        kind__in=[IdentifierKind.PHONE, IdentifierKind.EMAIL],
    ).order_by("pk")
    for member_id, kind, value in rows.values_list("member_id", "kind", "value"):
        found.setdefault(member_id, {}).setdefault(kind, value)
    return found


def _channel_for(addresses: dict[str, str]) -> tuple[Channel, str] | None:
    """SMS to the phone, else email: the member's channel and address, or None if it has
    neither (a card only)."""
    for name in (NoticeChannel.SMS, NoticeChannel.EMAIL):
        sender = channel(name)
        if addresses.get(sender.address_kind):
            return sender, addresses[sender.address_kind]
    return None


def _note(found: tuple[Channel, str] | None) -> str:
    """The request's note says how the member was warned, never where (no personal data)."""
    why = "No activity for longer than the retention period."
    if found is None:
        return f"{why} No phone or email on file: no warning could be sent."
    return f"{why} Warned by {found[0].name}."


def retention_warning_text(coalition: Coalition, due_on: date) -> tuple[str, str]:
    """The warning's subject and body."""
    day = f"{due_on.day} {due_on:%B %Y}"
    body = "\n".join(
        [
            f"You have not shopped with {coalition.name} for a long time.",
            "",
            f"Your membership and points will be erased on {day} unless you shop with the "
            "programme before then: earn or spend points at any shop of the mall to keep them.",
        ]
    )
    return f"Your {coalition.name} membership ends on {day}", body
