"""Every write to members: enrolment and merging two records of one person."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from coalition.errors import InvalidRequest, MemberExists, MemberNotFound
from coalition.models import Account, AccountKind, Coalition, JournalKind, Lot
from coalition.services.ledger import (
    Leg,
    journal_at_nominal,
    journal_post,
    lots_fit,
    member_accounts_lock,
)
from consent.models import ConsentChannel, ConsentPurpose
from consent.services import consents_record
from members.identifiers import card_generate, identifier_normalise
from members.models import Identifier, IdentifierKind, Member, MemberStatus, MergeRecord

IDENTIFIER_CONSTRAINT = "identifier_unique_per_coalition"
CARD_ATTEMPTS = 5


@transaction.atomic
def member_enrol(
    *,
    coalition: Coalition,
    consents: Mapping[str, bool],
    phone: str | None = None,
    email: str | None = None,
    card: str | None = None,
    name: str = "",
    adult: bool = False,
    guardian_name: str = "",
    guardian_consent: bool = False,
    channel: str = ConsentChannel.STAFF,
    till: Any = None,
    user: Any = None,
    now: datetime | None = None,
) -> Member:
    """Enrol a member. Enrolment is consent to the programme; a minor needs a guardian's
    consent, which only staff record. A card number is generated when none is given."""
    now = now or timezone.now()
    if not any((phone, email, card)):
        raise InvalidRequest("Give at least one of phone, email or card.", field="phone")
    if not consents.get(ConsentPurpose.PROGRAMME):
        raise InvalidRequest("Enrolment needs consent to the programme.", field="consents")
    if not adult and (till is not None or not (guardian_consent and guardian_name.strip())):
        raise InvalidRequest(
            "A member under 18 is enrolled by staff with a guardian's consent.", field="adult"
        )
    wanted = [
        (kind, identifier_normalise(kind, raw, coalition.phone_region))
        for kind, raw in (
            (IdentifierKind.PHONE, phone),
            (IdentifierKind.EMAIL, email),
            (IdentifierKind.CARD, card),
        )
        if raw
    ]
    _refuse_taken(coalition, wanted)
    member = Member.objects.create(
        coalition=coalition,
        name=name.strip(),
        adult_declared=adult,
        guardian_name="" if adult else guardian_name.strip(),
        guardian_consent_at=None if adult else now,
        enrolled_at=now,
        enrolled_via=channel,
        enrolled_by_till=till,
        enrolled_by_user=user,
        last_activity_at=now,
    )
    Account.objects.bulk_create(
        [
            Account(coalition=coalition, member=member, kind=AccountKind.MEMBER_POINTS),
            Account(coalition=coalition, member=member, kind=AccountKind.MEMBER_PENDING),
        ]
    )
    try:
        with transaction.atomic():
            Identifier.objects.bulk_create(
                Identifier(coalition=coalition, member=member, kind=kind, value=value)
                for kind, value in wanted
            )
    except IntegrityError as exc:
        if IDENTIFIER_CONSTRAINT in str(exc):  # lost a race with another enrolment
            raise MemberExists("An identifier is already enrolled.") from exc
        raise
    if card is None:
        _card_assign(coalition, member)
    consents_record(
        member=member, consents=consents, channel=channel, by_user=user, by_till=till, at=now
    )
    return member


def _refuse_taken(coalition: Coalition, wanted: Sequence[tuple[str, str]]) -> None:
    for kind, value in wanted:
        taken = Identifier.objects.filter(
            coalition=coalition, kind=kind, value=value, released_at__isnull=True
        )
        if taken.exists():
            # Name no other personal data: only that this identifier is taken.
            raise MemberExists(f"This {IdentifierKind(kind).label.lower()} is already enrolled.")


def _card_assign(coalition: Coalition, member: Member) -> Identifier:
    for _ in range(CARD_ATTEMPTS):
        try:
            with transaction.atomic():
                return Identifier.objects.create(
                    coalition=coalition,
                    member=member,
                    kind=IdentifierKind.CARD,
                    value=card_generate(),
                )
        except IntegrityError:
            continue  # a random collision: draw again
    raise InvalidRequest("Could not generate a unique card number; try again.")


@transaction.atomic
def members_merge(
    *, survivor: Member, merged: Member, actor: Any, reason: str, now: datetime | None = None
) -> MergeRecord:
    """Merge two records of one person. The merged member's balance moves to the survivor by a
    ledger journal, its lots and identifiers follow, its history stays under its own id."""
    now = now or timezone.now()
    if survivor.pk == merged.pk:
        raise InvalidRequest("A member cannot be merged into itself.")
    if survivor.coalition_id != merged.coalition_id:
        raise InvalidRequest("Members of different programmes cannot be merged.")
    if not reason or not reason.strip():
        raise InvalidRequest("A reason is required for a merge.", field="reason")
    # Both members' accounts in one pk-ordered lock: a burn on either waits, no deadlock.
    accounts = member_accounts_lock(survivor.pk, merged.pk)
    statuses = dict(
        Member.objects.filter(pk__in=[survivor.pk, merged.pk]).values_list("pk", "status")
    )
    if any(status != MemberStatus.ACTIVE for status in statuses.values()):
        raise MemberNotFound("Both members must be active to merge them.")
    coalition = survivor.coalition
    nominal = coalition.point_value
    gone, kept = accounts[merged.pk], accounts[survivor.pk]
    points, pending = gone.points.balance, gone.pending.balance
    journal = journal_at_nominal(
        coalition=coalition,
        kind=JournalKind.MERGE,
        points=abs(points) + abs(pending),
        at=now,
        member=merged,
        counterpart=survivor,
        reason=reason.strip(),
        created_by=actor,
    )
    journal_post(
        journal,
        [
            Leg(gone.points, -points, -points * nominal),
            Leg(kept.points, points, points * nominal),
            Leg(gone.pending, -pending, -pending * nominal),
            Leg(kept.pending, pending, pending * nominal),
        ],
    )
    lots_moved = Lot.objects.filter(member=merged).update(member=survivor)
    # The combined balance may be lower than the combined lots (one side was negative).
    lots_fit(survivor.pk, kept.points.balance, journal)
    identifiers_moved = Identifier.objects.filter(member=merged).update(member=survivor)
    Member.objects.filter(pk=merged.pk).update(status=MemberStatus.MERGED, merged_into=survivor)
    merged.status, merged.merged_into = MemberStatus.MERGED, survivor
    return MergeRecord.objects.create(
        coalition=coalition,
        survivor=survivor,
        merged=merged,
        journal=journal,
        points_moved=points,
        pending_moved=pending,
        lots_moved=lots_moved,
        identifiers_moved=identifiers_moved,
        reason=reason.strip(),
        merged_by=actor,
        merged_at=now,
    )


@transaction.atomic
def member_withdraw(*, member: Member, now: datetime | None = None) -> bool:
    """End a membership because programme consent was withdrawn: the member is unknown to tills
    from now on and their identifiers are free to enrol again. Returns whether this call ended
    it (False: it had ended already). The points and the history stay under the member's opaque
    id until the erasure that follows (`consent.services.erasure`).
    """
    now = now or timezone.now()
    # Under the member's account lock, so no posting runs half on each side of the withdrawal.
    member_accounts_lock(member.pk)
    updated = Member.objects.filter(pk=member.pk, status=MemberStatus.ACTIVE).update(
        status=MemberStatus.WITHDRAWN
    )
    if updated:
        Identifier.objects.filter(member=member, released_at__isnull=True).update(released_at=now)
        member.status = MemberStatus.WITHDRAWN
    return bool(updated)
