"""Opening balances: the points a member held in a tenant's old programme, brought into the
coalition's ledger when that programme is imported.

An opening balance is a purchase that happened elsewhere: the tenant that ran the old programme
funds the points at its price in force on the day the balance was struck, exactly as it would
fund an earn, and the points become one lot funded by that tenant. The monthly close shows the
journal on the tenant's statement as its own line (`LineKind.OPENING`).
"""

from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from coalition.errors import DuplicateReceipt, InvalidRequest
from coalition.models import AccountKind, Journal, JournalKind
from coalition.money import money_round
from coalition.services.ledger import Leg, Posting, journal_post, lot_new, posting_lock
from coalition.services.programme import LotTerms, local_date, lot_terms
from members.models import Member
from members.selectors import member_history_ids
from tenants.models import Tenant, TenantStatus

REFERENCE_MAX = 64  # Journal.receipt


class OpeningBalanceExists(DuplicateReceipt):
    """The member already holds an opening balance from this tenant's old programme."""

    problem = "opening-balance-exists"
    title = "An opening balance from this tenant was already brought in"


@transaction.atomic
def points_open(
    *,
    member: Member,
    tenant: Tenant,
    points: int,
    occurred_at: datetime,
    reference: str,
    user: Any = None,
    expires_on: date | None = None,
    now: datetime | None = None,
) -> Posting:
    """Credit `member` with the `points` they held in `tenant`'s old programme on `occurred_at`.

    One journal of kind `opening`: the member's points +N at the coalition's nominal value, the
    tenant's issued account -N at its price in force on the occurred date, and the operator's
    margin for the difference (as `points_earn` books it). The lot is funded by `tenant` and
    takes the coalition's lot terms for that date, or `expires_on` when the old programme gave
    the points a last day of their own.

    A member gets at most one opening balance per tenant: checked under the member's lock (over
    the members merged into it too), and guaranteed by a unique index on the journal (migration
    `0013_import_jobs`). `reference` (no personal data: the journal is immutable and outlives an
    erasure) is kept in the journal's receipt field to trace the import that brought it.
    """
    coalition = tenant.coalition
    now = now or timezone.now()
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidRequest("An opening balance is a whole number of points above zero.")
    if timezone.is_naive(occurred_at):
        raise InvalidRequest("occurred_at must carry a time-zone offset.", field="occurred_at")
    if occurred_at > now:
        raise InvalidRequest("An opening balance cannot be dated in the future.")
    reference = reference.strip()
    if not reference or len(reference) > REFERENCE_MAX:
        raise InvalidRequest(f"A reference of 1 to {REFERENCE_MAX} characters is required.")
    if member.coalition_id != tenant.coalition_id:
        raise InvalidRequest("The member and the tenant belong to different programmes.")
    # A tenant still onboarding brings its old programme in before its tills go live; one that
    # has left funds nothing more.
    if tenant.status == TenantStatus.EXITED:
        raise InvalidRequest(f"{tenant.name} has left the programme.")
    if expires_on is not None and expires_on < local_date(coalition, now):
        raise InvalidRequest(
            f"These points expired on {expires_on}: there is nothing to bring in.",
            field="opening_expires_on",
        )
    occurred_on = local_date(coalition, occurred_at)
    # The member's lock first: two imports of one file racing on one member queue here, and the
    # second sees the first's journal below (the unique index is the guarantee behind this).
    locked = posting_lock(
        member,
        tenant,
        day=occurred_on,
        tenant_kind=AccountKind.TENANT_ISSUED,
        house_kind=AccountKind.MARGIN,
    )
    opened = Journal.objects.filter(
        kind=JournalKind.OPENING, tenant=tenant, member_id__in=member_history_ids(member)
    )
    if opened.exists():
        raise OpeningBalanceExists(
            f"This member already has an opening balance from {tenant.name}."
        )
    accounts, price = locked.accounts, locked.price
    nominal = coalition.point_value
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.OPENING,
        member=member,
        tenant=tenant,
        receipt=reference,
        points=points,
        value=money_round(points * nominal),
        point_value=nominal,
        price_per_point=price,
        occurred_at=occurred_at,
        posted_at=now,
        created_by=user,
    )
    before = accounts.points.balance
    legs = [
        Leg(accounts.points, points, points * nominal),
        Leg(locked.tenant_account, -points, -points * price),
    ]
    if price != nominal:
        legs.append(Leg(locked.house_account, 0, points * (price - nominal)))
    terms = lot_terms(coalition, occurred_on)
    if expires_on is not None:
        terms = LotTerms(expires_on, terms.slide_months)
    # A negative balance (a refund after spending) is repaid first; only the rest is a new lot.
    lot = lot_new(
        journal=journal,
        member_id=member.pk,
        points=max(before + points, 0) - max(before, 0),
        funding_tenant_id=tenant.pk,
        terms=terms,
    )
    journal_post(journal, legs, lot)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)
