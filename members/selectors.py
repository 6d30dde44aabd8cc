"""Reads about members: finding one by an identifier, balances, points expiring soon."""

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from coalition.errors import InvalidRequest, MemberNotFound
from coalition.models import Account, AccountKind, Coalition, Lot
from coalition.rows import fetch_one, instance, select_list
from coalition.services.programme import local_date
from members.identifiers import identifier_normalise
from members.models import Identifier, IdentifierKind, Member, MemberStatus


@dataclass(frozen=True)
class MemberRef:
    """A member as a till names it (`card`, `phone`, `email` or `id`), resolved only once the
    service has checked everything that comes before it in the contract's order."""

    kind: str
    value: str


def member_ref_check(coalition: Coalition, member: "Member | MemberRef") -> "Member | MemberRef":
    """A reference with its value normalised (InvalidRequest if it cannot be: a 422, which the
    contract checks before the tenant); a member is returned as it is."""
    if not isinstance(member, MemberRef):
        return member
    try:
        if member.kind == "id":
            return MemberRef("id", _uuid_or_none(member.value))
        value = identifier_normalise(member.kind, member.value, coalition.phone_region)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.detail, field=f"member.{member.kind}") from exc
    return MemberRef(member.kind, value)


def member_resolve(coalition: Coalition, member: "Member | MemberRef") -> Member:
    """The member itself, or the active member a reference names; MemberNotFound otherwise."""
    if isinstance(member, MemberRef):  # normalised by `member_ref_check`
        return _member_by(coalition, member.kind, member.value)
    if member.coalition_id != coalition.pk:
        raise MemberNotFound("This member is not enrolled.")
    return member


def member_find(coalition: Coalition, *, kind: str, value: str) -> Member:
    """The active member known by an identifier (`card`, `phone`, `email`) or by `id`.

    Erased, merged-away or withdrawn members are unknown here, to tills and staff lookups alike.
    """
    if kind == "id":
        return _member_by(coalition, kind, _uuid_or_none(value))
    return _member_by(coalition, kind, identifier_normalise(kind, value, coalition.phone_region))


def _member_by(coalition: Coalition, kind: str, value: str) -> Member:
    """`member_find` for a value already normalised (or a member id already checked)."""
    # Written out (`coalition.rows`): every till request that names a member runs this.
    if kind == "id":
        row = fetch_one(
            f"SELECT {select_list(Member, 'm')} FROM members_member m "  # noqa: S608
            "WHERE m.coalition_id = %s AND m.id = %s AND m.status = %s",
            [coalition.pk, value, MemberStatus.ACTIVE],
        )
    else:
        row = fetch_one(
            f"SELECT {select_list(Member, 'm')} FROM members_member m "  # noqa: S608
            "JOIN members_identifier i ON i.member_id = m.id "
            "WHERE m.coalition_id = %s AND m.status = %s AND i.coalition_id = %s "
            "AND i.kind = %s AND i.value = %s AND i.released_at IS NULL LIMIT 1",
            [coalition.pk, MemberStatus.ACTIVE, coalition.pk, kind, value],
        )
    if row is None:
        raise MemberNotFound("No member with that identifier.")
    member = instance(Member, row)
    member.coalition = coalition
    return member


def _uuid_or_none(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError as exc:
        raise InvalidRequest("Not a member id.", field="id") from exc


@dataclass(frozen=True)
class Balances:
    balance: int
    pending: int


def member_balances(member: Member) -> Balances:
    rows = dict(Account.objects.filter(member=member).values_list("kind", "balance"))
    return Balances(
        balance=rows.get(AccountKind.MEMBER_POINTS, 0),
        pending=rows.get(AccountKind.MEMBER_PENDING, 0),
    )


def member_expiring(
    member: Member, *, within_days: int = 30, now: datetime | None = None
) -> list[tuple[int, date]]:
    """(points, last day) of spendable points expiring in the next `within_days` days."""
    today = local_date(member.coalition, now or timezone.now())
    rows = (
        Lot.objects.filter(
            member=member,
            remaining__gt=0,
            pending_until__isnull=True,
            expires_on__isnull=False,
            expires_on__lte=today + timedelta(days=within_days),
        )
        .values("expires_on")
        .annotate(points=Sum("remaining"))
        .order_by("expires_on")
    )
    return [(int(row["points"]), row["expires_on"]) for row in rows if row["expires_on"]]


def member_card(member: Member) -> str | None:
    return (
        Identifier.objects.filter(member=member, kind=IdentifierKind.CARD)
        .order_by("created_at", "id")
        .values_list("value", flat=True)
        .first()
    )


def member_reference_for_tenant(tenant_id: int, member_id: uuid.UUID | str | None) -> str:
    """How a tenant sees a member on its own transactions: a keyed hash, stable for that tenant
    and different at every other, so tenants cannot link a shopper across the mall."""
    if member_id is None:
        return "—"
    message = f"member-ref:{tenant_id}:{member_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest().upper()
    return f"M-{digest[:4]}-{digest[4:8]}"


def member_history_ids(member: Member) -> list[uuid.UUID]:
    """The member and every member merged into it, directly or through earlier merges."""
    ids, frontier = [member.pk], [member.pk]
    while frontier:
        frontier = list(
            Member.objects.filter(merged_into__in=frontier).values_list("pk", flat=True)
        )
        ids.extend(frontier)
    return ids
