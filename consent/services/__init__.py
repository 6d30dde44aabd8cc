"""Every write to consent: purposes and the append-only consent log. Shopper-rights requests
are in `consent.services.privacy`, erasure in `consent.services.erasure`."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import Coalition
from consent.models import (
    ConsentChannel,
    ConsentEvent,
    ConsentNotice,
    ConsentPurpose,
    DataAccess,
    PrivacyRequestKind,
    PrivacyRequestSource,
)
from members.models import Member

DEFAULT_PURPOSES = (
    (
        ConsentPurpose.PROGRAMME,
        "Membership of the programme",
        True,
        "I join the mall's loyalty programme: the operator keeps my identifiers and my purchases "
        "at its tenants to give and redeem points, and shares no personal data with tenants.",
    ),
    (
        ConsentPurpose.MARKETING_MALL,
        "Marketing by the mall",
        False,
        "The mall may send me offers and news about the mall and its events.",
    ),
    (
        ConsentPurpose.ANALYTICS,
        "Personalisation and analytics",
        False,
        "The operator may analyse my purchases to personalise offers and to give tenants "
        "aggregate figures (never about me alone).",
    ),
)


def consent_purposes_create_defaults(*, coalition: Coalition) -> None:
    for code, name, required, text in DEFAULT_PURPOSES:
        purpose, _ = ConsentPurpose.objects.get_or_create(
            coalition=coalition, code=code, defaults={"name": name, "required": required}
        )
        ConsentNotice.objects.get_or_create(
            purpose=purpose, version=purpose.notice_version, language="en", defaults={"text": text}
        )


@transaction.atomic
def consent_notice_publish(
    *, purpose: ConsentPurpose, version: str, texts: Mapping[str, str]
) -> ConsentPurpose:
    """Publish a new wording of a purpose's notice (English required, other languages optional)
    and make it the version in force: consents recorded from now on cite it."""
    version = version.strip()
    texts = {language.strip().lower(): text.strip() for language, text in texts.items()}
    if not version:
        raise InvalidRequest("Give the new version a name, e.g. v2.", field="version")
    if not texts.get("en"):
        raise InvalidRequest("Every version needs its English text.", field="text_en")
    if ConsentNotice.objects.filter(purpose=purpose, version=version).exists():
        raise InvalidRequest(f"Version {version} exists already: name a new one.", field="version")
    ConsentNotice.objects.bulk_create(
        ConsentNotice(purpose=purpose, version=version, language=language, text=text)
        for language, text in texts.items()
        if text
    )
    ConsentPurpose.objects.filter(pk=purpose.pk).update(notice_version=version)
    purpose.notice_version = version
    return purpose


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
        # Enrolment is consent to the programme; withdrawing it ends the membership and starts
        # erasure (DPDP s.8(7)), which a worker carries out once this commits.
        from consent.services.privacy import privacy_erasures_wake, privacy_request_open
        from members.services import member_withdraw  # members.services records consents

        if member_withdraw(member=member, now=at):
            privacy_request_open(
                member=member,
                kind=PrivacyRequestKind.ERASURE,
                source=PrivacyRequestSource.WITHDRAWAL,
                actor=by_user,
                due_in_days=0,
                now=at,
            )
            privacy_erasures_wake()
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


def data_access_record(
    *,
    user: Any,
    action: str,
    what: str,
    why: str,
    member: Member | None = None,
    at: datetime | None = None,
) -> DataAccess:
    """Record that a staff member saw a member's personal data (the audit trail of reads)."""
    if not why.strip():
        raise InvalidRequest("Say why you need to see the member's personal data.", field="why")
    return DataAccess.objects.create(
        at=at or timezone.now(),
        user=user,
        action=action,
        member=member,
        what=what,
        why=why.strip(),
    )
