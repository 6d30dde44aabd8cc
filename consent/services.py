"""Every write to consent: purposes and the append-only consent log."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import Coalition
from consent.models import ConsentChannel, ConsentEvent, ConsentPurpose
from members.models import Member

DEFAULT_PURPOSES = (
    (ConsentPurpose.PROGRAMME, "Membership of the programme", True),
    (ConsentPurpose.MARKETING_MALL, "Marketing by the mall", False),
    (ConsentPurpose.ANALYTICS, "Personalisation and analytics", False),
)


def consent_purposes_create_defaults(*, coalition: Coalition) -> None:
    for code, name, required in DEFAULT_PURPOSES:
        ConsentPurpose.objects.get_or_create(
            coalition=coalition, code=code, defaults={"name": name, "required": required}
        )


@transaction.atomic
def consents_record(
    *,
    member: Member,
    consents: Mapping[str, bool],
    channel: str = ConsentChannel.STAFF,
    by_user: Any = None,
    by_till: Any = None,
    at: datetime | None = None,
) -> list[ConsentEvent]:
    """Append one event per purpose, against the notice version now in force."""
    purposes = {
        purpose.code: purpose
        for purpose in ConsentPurpose.objects.filter(
            coalition_id=member.coalition_id, code__in=list(consents)
        )
    }
    unknown = sorted(set(consents) - set(purposes))
    if unknown:
        raise InvalidRequest(f"Unknown consent purpose: {', '.join(unknown)}.", field="consents")
    at = at or timezone.now()
    if consents.get(ConsentPurpose.PROGRAMME) is False:
        # Enrolment is consent to the programme; withdrawing it ends the membership.
        from members.services import member_withdraw  # members.services records consents

        member_withdraw(member=member, now=at)
    return ConsentEvent.objects.bulk_create(
        ConsentEvent(
            member=member,
            purpose=purposes[code],
            given=bool(given),
            at=at,
            channel=channel,
            notice_version=purposes[code].notice_version,
            by_user=by_user,
            by_till=by_till,
        )
        for code, given in consents.items()
    )
