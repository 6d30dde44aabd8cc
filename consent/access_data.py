"""Everything held about one member, as plain data: the read behind an access request's file
(`consent.services.access.member_access_export`).

The result is JSON-ready: ids and Decimals are strings, datetimes ISO 8601 with the coalition's
offset, dates ISO. It covers the member's own record and every record merged into it (the same
person), and says who received which data: the operator, the tenants whose tills the member used,
and the processors that carried the member's notices.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from coalition.channels import DEFAULT_ADAPTERS
from coalition.models import (
    AccountKind,
    ExpiryNotice,
    Journal,
    Lot,
    NoticeChannel,
    NoticeStatus,
    OutboxMessage,
)
from coalition.models.ledger import Entry
from consent.models import ConsentEvent, ConsentNotice, PrivacyRequest
from consent.selectors import consent_overview
from members.models import Identifier, IdentifierKind, Member
from members.selectors import member_balances, member_history_ids, member_reference_for_tenant

Moment = Callable[[datetime | None], str | None]  # a datetime as ISO 8601 in the mall's zone


@dataclass(frozen=True)
class Processor:
    """A processor that carries one notice channel for the operator, and what it receives."""

    channel: str
    role: str
    receives: str
    address_kind: str
    configured_by: str


PROCESSORS: tuple[Processor, ...] = (
    Processor(
        channel=NoticeChannel.EMAIL,
        role="Email delivery service that carries the programme's emails",
        receives="Your email address and the text of the notice (points expiring and their "
        "last days).",
        address_kind=IdentifierKind.EMAIL,
        configured_by="EMAIL_URL",
    ),
    Processor(
        channel=NoticeChannel.SMS,
        role="SMS gateway that carries the programme's text messages",
        receives="Your phone number and the text of the notice (points expiring and their "
        "last days).",
        address_kind=IdentifierKind.PHONE,
        configured_by="NOTICE_ADAPTERS",
    ),
    Processor(
        channel=NoticeChannel.WHATSAPP,
        role="WhatsApp messaging provider that carries the programme's WhatsApp messages",
        receives="Your phone number and the text of the notice (points expiring and their "
        "last days).",
        address_kind=IdentifierKind.PHONE,
        configured_by="NOTICE_ADAPTERS",
    ),
)
"""The processors a member's data can reach, one per notice channel (`coalition.channels`).

Which company stands behind each is a deployment's choice (the email backend in `EMAIL_URL`, the
SMS and WhatsApp adapters in `NOTICE_ADAPTERS`), so no vendor is named here: the file names the
adapter in use. Add a processor here when the programme starts sending a member's data anywhere
new; an access file must list every recipient.
"""

TILL_RECEIVES = (
    "Its tills sent us the purchases and redemptions listed, and in answer to each lookup, earn "
    "or burn received your member id, card number, points balance, pending points and points "
    "expiring soon; never your name, phone or email. Its staff portal lists these transactions "
    "under the masked reference shown, without your name, phone or email."
)
ENROLMENT_RECEIVES = (
    "You enrolled at its till: the till collected the identifiers and name you gave at enrolment."
)
OPERATOR_ROLE = (
    "The operator of the programme (data fiduciary / controller): it holds everything in this file."
)


def member_access_data(
    member: Member, *, request: PrivacyRequest | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Everything held about `member` (and the records merged into it), JSON-ready."""
    coalition = member.coalition
    zone = ZoneInfo(coalition.time_zone)
    ids = member_history_ids(member)

    def moment(value: datetime | None) -> str | None:
        return value.astimezone(zone).isoformat() if value is not None else None

    journals = list(
        Journal.objects.filter(member_id__in=ids)
        .select_related("tenant", "store", "till")
        .order_by("occurred_at", "id")
    )
    notices = list(ExpiryNotice.objects.filter(member_id__in=ids).order_by("created_at", "id"))
    return {
        "coalition": {"name": coalition.name, "currency": coalition.currency},
        "generated_at": moment(now or timezone.now()),
        "privacy_request": _request(request, moment),
        "member": _member(member, ids, moment),
        "identifiers": [
            {
                "kind": identifier.kind,
                "kind_label": identifier.get_kind_display(),
                "value": identifier.value,
                "created_at": moment(identifier.created_at),
                "released_at": moment(identifier.released_at),
                "member_id": str(identifier.member_id),
            }
            for identifier in Identifier.objects.filter(member_id__in=ids).order_by(
                "created_at", "id"
            )
        ],
        "consents": _consents(member, ids, moment),
        "balances": _balances(member, moment),
        "transactions": _transactions(journals, ids, moment),
        "notices_sent": [
            {
                "id": notice.pk,
                "created_at": moment(notice.created_at),
                "points": notice.points,
                "first_expiry": notice.first_expiry.isoformat(),
                "lots": notice.lots,
                "channel": notice.channel,
                "channel_label": notice.get_channel_display(),
                "status": notice.status,
                "status_label": notice.get_status_display(),
                "sent_at": moment(notice.sent_at),
            }
            for notice in notices
        ],
        "privacy_requests": [
            {
                "id": one.pk,
                "kind": one.kind,
                "kind_label": one.get_kind_display(),
                "source": one.source,
                "source_label": one.get_source_display(),
                "status": one.status,
                "status_label": one.get_status_display(),
                "received_at": moment(one.received_at),
                "due_on": one.due_on.isoformat(),
                "done_at": moment(one.done_at),
                "note": one.note,
            }
            for one in PrivacyRequest.objects.filter(member_id__in=ids).order_by(
                "received_at", "id"
            )
        ],
        "recipients": _recipients(member, ids, journals, notices),
    }


def _request(request: PrivacyRequest | None, moment: Moment) -> dict[str, Any] | None:
    if request is None:
        return None
    return {
        "id": request.pk,
        "kind": request.kind,
        "received_at": moment(request.received_at),
        "verified_at": moment(request.verified_at),
        "due_on": request.due_on.isoformat(),
    }


def _member(member: Member, ids: list[UUID], moment: Moment) -> dict[str, Any]:
    till = member.enrolled_by_till
    return {
        "id": str(member.pk),
        "short_id": str(member.pk)[:8],
        "name": member.name,
        "status": member.status,
        "status_label": member.get_status_display(),
        "enrolled_at": moment(member.enrolled_at),
        "enrolled_via": member.enrolled_via,
        "enrolling_till": (
            {"tenant": till.tenant.name, "store": till.store.name, "till": till.code}
            if till is not None
            else None
        ),
        "adult_declared": member.adult_declared,
        "guardian_name": member.guardian_name,
        "guardian_consent_at": moment(member.guardian_consent_at),
        "last_activity_at": moment(member.last_activity_at),
        "merged_records": [str(pk) for pk in ids[1:]],
    }


def _consents(member: Member, ids: list[UUID], moment: Moment) -> dict[str, Any]:
    events = list(
        ConsentEvent.objects.filter(member_id__in=ids)
        .select_related("purpose")
        .order_by("at", "id")
    )
    cited = {(event.purpose_id, event.notice_version) for event in events}
    texts = ConsentNotice.objects.filter(
        purpose_id__in={purpose for purpose, _ in cited}, language="en"
    ).select_related("purpose")
    return {
        "current": [
            {
                "purpose": state.purpose.code,
                "name": state.purpose.name,
                "tenant": state.purpose.tenant.name if state.purpose.tenant else None,
                "required": state.purpose.required,
                "given": state.given,
                "at": moment(state.at),
                "notice_version": state.version,
                "notice_version_in_force": state.purpose.notice_version,
            }
            for state in consent_overview(member)
        ],
        "history": [
            {
                "purpose": event.purpose.code,
                "name": event.purpose.name,
                "given": event.given,
                "at": moment(event.at),
                "channel": event.channel,
                "channel_label": event.get_channel_display(),
                "notice_version": event.notice_version,
                "member_id": str(event.member_id),
            }
            for event in events
        ],
        "notices": [
            {
                "purpose": notice.purpose.code,
                "name": notice.purpose.name,
                "version": notice.version,
                "language": notice.language,
                "published_at": moment(notice.published_at),
                "text": notice.text,
            }
            for notice in sorted(texts, key=lambda one: (one.purpose.code, one.published_at))
            if (notice.purpose_id, notice.version) in cited
        ],
    }


def _balances(member: Member, moment: Moment) -> dict[str, Any]:
    balances = member_balances(member)
    lots = (
        Lot.objects.filter(member=member, remaining__gt=0)
        .select_related("funding_tenant")
        .order_by("expires_on", "id")
    )
    return {
        "points": balances.balance,
        "pending": balances.pending,
        "open_lots": [
            {
                "points": lot.points,
                "remaining": lot.remaining,
                "earned_at": moment(lot.earned_at),
                "expires_on": _day(lot.expires_on),
                "pending_until": moment(lot.pending_until),
                "funded_by": (
                    lot.funding_tenant.name
                    if lot.funding_tenant
                    else f"{member.coalition.name} (the operator)"
                ),
            }
            for lot in lots
        ],
    }


def _transactions(journals: list[Journal], ids: list[UUID], moment: Moment) -> list[dict[str, Any]]:
    """Each journal with what it did to the member's own accounts (signed)."""
    changes: dict[tuple[int, str], int] = defaultdict(int)
    for journal_id, kind, points in (
        Entry.objects.filter(
            journal_id__in=[journal.pk for journal in journals], account__member_id__in=ids
        )
        .values_list("journal_id", "account__kind")
        .annotate(total=Sum("points"))
    ):
        changes[journal_id, kind] += int(points)
    return [
        {
            "id": str(journal.public_id),
            "kind": journal.kind,
            "kind_label": journal.get_kind_display(),
            "tenant": journal.tenant.name if journal.tenant else None,
            "store": journal.store.name if journal.store else None,
            "till": journal.till.code if journal.till else None,
            "receipt": journal.receipt,
            "points": journal.points,
            "points_change": changes[journal.pk, AccountKind.MEMBER_POINTS],
            "pending_change": changes[journal.pk, AccountKind.MEMBER_PENDING],
            "amount": _money(journal.amount),
            "bill_amount": _money(journal.bill_amount),
            "value": _money(journal.value),
            "reason": journal.reason,
            "occurred_at": moment(journal.occurred_at),
            "posted_at": moment(journal.posted_at),
            "member_id": str(journal.member_id),
        }
        for journal in journals
    ]


def _recipients(
    member: Member, ids: list[UUID], journals: list[Journal], notices: list[ExpiryNotice]
) -> dict[str, Any]:
    tenants: dict[int, dict[str, Any]] = {}

    def tenant_row(tenant: Any) -> dict[str, Any]:
        return tenants.setdefault(
            tenant.pk,
            {
                "tenant": tenant.name,
                "transactions": 0,
                "masked_references": [],
                "received": [],
            },
        )

    till = member.enrolled_by_till
    if till is not None:
        tenant_row(till.tenant)["received"].append(ENROLMENT_RECEIVES)
    for journal in journals:
        if journal.tenant is None or journal.till_id is None:
            continue  # posted by the operator (expiry, adjustment, merge): no tenant saw it
        row = tenant_row(journal.tenant)
        row["transactions"] += 1
        reference = member_reference_for_tenant(journal.tenant.pk, journal.member_id)
        if reference not in row["masked_references"]:
            row["masked_references"].append(reference)
    for row in tenants.values():
        if row["transactions"]:
            row["received"].append(TILL_RECEIVES)
    return {
        "operator": {"name": member.coalition.name, "role": OPERATOR_ROLE},
        "tenants": sorted(tenants.values(), key=lambda row: row["tenant"]),
        "processors": _processors(ids, notices),
    }


def _processors(ids: list[UUID], notices: list[ExpiryNotice]) -> list[dict[str, Any]]:
    """The processors that carried at least one of the member's notices, with the address each
    received: the one the outbox recorded, else the member's current address of that kind (the
    one the sender picks)."""
    delivered = [
        notice for notice in notices if notice.status == NoticeStatus.SENT or notice.attempts > 0
    ]
    adapters = {**DEFAULT_ADAPTERS, **getattr(settings, "NOTICE_ADAPTERS", {})}
    recorded: dict[str, set[str]] = defaultdict(set)
    for channel, recipient in OutboxMessage.objects.filter(
        notice__in=[notice.pk for notice in delivered]
    ).values_list("channel", "recipient"):
        recorded[channel].add(recipient)
    current: dict[str, str] = {}
    for kind, value in Identifier.objects.filter(
        member_id__in=ids, released_at__isnull=True
    ).values_list("kind", "value"):
        current.setdefault(kind, value)
    rows = []
    for processor in PROCESSORS:
        used = [notice for notice in delivered if notice.channel == processor.channel]
        if not used:
            continue
        addresses = recorded.get(processor.channel) or (
            {current[processor.address_kind]} if processor.address_kind in current else set()
        )
        rows.append(
            {
                "channel": processor.channel,
                "role": processor.role,
                "adapter": adapters.get(processor.channel, ""),
                "configured_by": processor.configured_by,
                "notices": len(used),
                "identifier_kind": processor.address_kind,
                "identifiers": sorted(addresses),
                "received": processor.receives,
            }
        )
    return rows


def _money(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None
