"""Earn, burn and release: the till-facing changes of a member's points.

Reversals are in `reversals.py`, staff adjustments in `adjustments.py`.

Each service runs in one transaction, locks the member's accounts first (in primary-key order,
see `member_accounts_lock`), checks, posts one balanced journal, and keeps the member's lots in
step. Refusals are domain errors; nothing is written when one is raised.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from coalition.errors import (
    DuplicateReceipt,
    InsufficientPoints,
    InvalidRequest,
    TenantCannotIssue,
    TenantCannotRedeem,
)
from coalition.models import (
    AccountKind,
    Journal,
    JournalKind,
    Lot,
)
from coalition.money import money_round
from coalition.services.campaigns import awards_record, earn_price
from coalition.services.ledger import (
    Leg,
    MemberId,
    Posting,
    coalition_account,
    journal_at_nominal,
    journal_post,
    lot_create,
    lot_new,
    lots_consume_fifo,
    lots_fit,
    lots_slide,
    member_accounts_lock,
    posting_lock,
    tenant_account,
)
from coalition.services.programme import (
    earn_points,
    local_date,
    lot_terms,
)
from members.models import Member
from members.selectors import MemberRef, member_ref_check, member_resolve
from tenants.models import Tenant, Till
from tenants.selectors import tenant_can_issue, tenant_can_redeem

MAX_FUTURE_SKEW = timedelta(minutes=5)
ACTIVITY_RESOLUTION = timedelta(hours=1)


def _resolve_times(occurred_at: datetime | None, now: datetime | None) -> tuple[datetime, datetime]:
    now = now or timezone.now()
    occurred_at = occurred_at or now
    if timezone.is_naive(occurred_at):
        raise InvalidRequest("occurred_at must carry a time-zone offset.", field="occurred_at")
    if occurred_at > now + MAX_FUTURE_SKEW:
        raise InvalidRequest(
            "occurred_at is more than 5 minutes in the future.", field="occurred_at"
        )
    return occurred_at, now


def _require_receipt(receipt: str) -> str:
    receipt = receipt.strip()
    if not receipt:
        raise InvalidRequest("A receipt number is required.", field="receipt")
    return receipt


def _touch(member: Member, now: datetime) -> None:
    """Record activity, to the hour: a write per posting on the member row buys nothing (the
    retention clock counts years), and it only ever moves forward (late batch lines)."""
    last = member.last_activity_at
    if last is None or now - last >= ACTIVITY_RESOLUTION:
        Member.objects.filter(pk=member.pk).update(last_activity_at=now)


@transaction.atomic
def points_earn(
    *,
    till: Till,
    member: Member | MemberRef,
    amount: Decimal,
    receipt: str,
    currency: str | None = None,
    occurred_at: datetime | None = None,
    now: datetime | None = None,
) -> Posting:
    """Credit a member for a purchase at `till`. The till's tenant funds the points."""
    tenant: Tenant = till.tenant
    coalition = tenant.coalition
    occurred_at, now = _resolve_times(occurred_at, now)
    if currency is not None and currency != coalition.currency:
        raise InvalidRequest(f"This programme runs in {coalition.currency}.", field="currency")
    if amount <= 0:
        raise InvalidRequest("The amount must be more than zero.", field="amount")
    if amount > coalition.receipt_ceiling:
        raise InvalidRequest(
            f"The amount is above the per-receipt ceiling of {coalition.receipt_ceiling}.",
            field="amount",
        )
    receipt = _require_receipt(receipt)
    member = member_ref_check(coalition, member)
    if not tenant_can_issue(tenant):
        raise TenantCannotIssue(f"{tenant.name} may not issue points now.")
    member = member_resolve(coalition, member)
    occurred_on = local_date(coalition, occurred_at)
    # Nothing after the receipt is refused for an earn, so the receipt's unique index alone
    # decides a duplicate (`journal_post`): no query before it.
    locked = posting_lock(
        member,
        tenant,
        day=occurred_on,
        tenant_kind=AccountKind.TENANT_ISSUED,
        house_kind=AccountKind.MARGIN,
    )
    accounts, price, reimbursement = locked.accounts, locked.price, locked.reimbursement

    priced = earn_price(
        coalition=coalition,
        tenant=tenant,
        member_id=member.pk,
        amount=amount,
        base=earn_points(coalition, amount),
        occurred_on=occurred_on,
        campaigns=locked.campaigns,
    )
    points = priced.points
    nominal = coalition.point_value
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.EARN,
        member=member,
        tenant=tenant,
        store_id=till.store_id,
        till=till,
        receipt=receipt,
        points=points,
        amount=amount,
        value=money_round(points * nominal),
        point_value=nominal,
        earn_block=coalition.earn_block,
        points_per_block=coalition.points_per_block,
        price_per_point=price,
        reimbursement_per_point=reimbursement,
        occurred_at=occurred_at,
        posted_at=now,
    )
    held = coalition.holdback_days > 0
    target = accounts.pending if held else accounts.points
    before = accounts.points.balance
    # The tenant pays for its points and for its own campaigns' (at its price, on a separate
    # account so its statement shows them apart); the mall's bonus comes from the campaign
    # account at nominal value, and never reaches a tenant's bill.
    tenant_funded = priced.base + priced.tenant_funded
    legs = [
        Leg(target, points, points * nominal),
        Leg(locked.tenant_account, -priced.base, -priced.base * price),
    ]
    tenant_pays, mall_pays = locked.campaign_accounts
    if priced.tenant_funded:
        tenant_pays = tenant_pays or tenant_account(
            coalition.pk, tenant.pk, AccountKind.TENANT_CAMPAIGN
        )
        legs.append(Leg(tenant_pays, -priced.tenant_funded, -priced.tenant_funded * price))
    if priced.mall_funded:
        mall_pays = mall_pays or coalition_account(coalition.pk, AccountKind.CAMPAIGN)
        legs.append(Leg(mall_pays, -priced.mall_funded, -priced.mall_funded * nominal))
    if price != nominal:
        legs.append(Leg(locked.house_account, 0, tenant_funded * (price - nominal)))
    # A negative balance (a refund after spending) is repaid first; only the rest is a new lot,
    # the tenant's points before the mall's.
    lot_points = points if held else max(before + points, 0) - max(before, 0)
    terms = lot_terms(coalition, occurred_on)
    pending_until = now + timedelta(days=coalition.holdback_days) if held else None
    lot = lot_new(
        journal=journal,
        member_id=member.pk,
        points=min(lot_points, tenant_funded),
        funding_tenant_id=tenant.pk,
        terms=terms,
        pending_until=pending_until,
    )
    journal_post(journal, legs, lot)
    if priced.awards:
        lot_create(
            lot_new(
                journal=journal,
                member_id=member.pk,
                points=lot_points - min(lot_points, tenant_funded),
                funding_tenant_id=None,
                terms=terms,
                pending_until=pending_until,
            )
        )
        awards_record(journal, member.pk, priced.awards, price, occurred_on)
    lots_slide(member, coalition, local_date(coalition, now))
    _touch(member, now)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


@transaction.atomic
def points_burn(
    *,
    till: Till,
    member: Member | MemberRef,
    points: int,
    bill_amount: Decimal,
    receipt: str,
    occurred_at: datetime | None = None,
    now: datetime | None = None,
) -> Posting:
    """Redeem points against a bill at `till`; the till's tenant is reimbursed from the pool."""
    tenant: Tenant = till.tenant
    coalition = tenant.coalition
    occurred_at, now = _resolve_times(occurred_at, now)
    if points <= 0:
        raise InvalidRequest("Points must be more than zero.", field="points")
    nominal = coalition.point_value
    value = money_round(points * nominal)
    if bill_amount <= 0:
        raise InvalidRequest("The bill amount must be more than zero.", field="bill_amount")
    if value > bill_amount:
        raise InvalidRequest(
            f"The points are worth {value}, more than the bill of {bill_amount}.", field="points"
        )
    receipt = _require_receipt(receipt)
    member = member_ref_check(coalition, member)
    if not tenant_can_redeem(tenant):
        raise TenantCannotRedeem(f"{tenant.name} may not redeem points now.")
    member = member_resolve(coalition, member)
    # The lock is what makes fifty concurrent burns safe: each waits here, then sees the
    # balance the previous one left, so none can spend points another already took.
    locked = posting_lock(
        member,
        tenant,
        day=local_date(coalition, occurred_at),
        tenant_kind=AccountKind.TENANT_REDEEMED,
        house_kind=AccountKind.VARIANCE,
        receipt=(till.store_id, JournalKind.BURN, receipt),
    )
    # A receipt already posted is refused before the balance, in the contract's order; the
    # receipt's unique index stays the guarantee (`journal_post`).
    if locked.receipt_posted:
        raise DuplicateReceipt(f"Receipt {receipt!r} was already posted as burn by this store.")
    accounts, reimbursement = locked.accounts, locked.reimbursement
    if accounts.points.balance < points:
        raise InsufficientPoints(
            f"The member has {max(accounts.points.balance, 0)} spendable points.",
            available=max(accounts.points.balance, 0),
        )
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.BURN,
        member=member,
        tenant=tenant,
        store_id=till.store_id,
        till=till,
        receipt=receipt,
        points=points,
        bill_amount=bill_amount,
        value=value,
        point_value=nominal,
        reimbursement_per_point=reimbursement,
        occurred_at=occurred_at,
        posted_at=now,
    )
    legs = [
        Leg(accounts.points, -points, -points * nominal),
        Leg(locked.tenant_account, points, points * reimbursement),
    ]
    if reimbursement != nominal:
        legs.append(Leg(locked.house_account, 0, points * (nominal - reimbursement)))
    journal_post(journal, legs)
    lots_consume_fifo(member.pk, points, journal)
    lots_slide(member, coalition, local_date(coalition, now))
    _touch(member, now)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


def points_release_member(*, member_id: MemberId, as_of: datetime) -> Journal | None:
    """Release a member's pending points whose holdback ended on or before `as_of`."""
    with transaction.atomic():
        accounts = member_accounts_lock(member_id)[member_id]
        member = Member.objects.select_related("coalition").get(pk=member_id)
        coalition = member.coalition
        due = list(
            Lot.objects.filter(
                member_id=member_id,
                pending_until__isnull=False,
                pending_until__lte=as_of,
            )
        )
        Lot.objects.filter(pk__in=[lot.pk for lot in due]).update(pending_until=None)
        points = sum(lot.remaining for lot in due)
        if not points:
            # Nothing due, or only lots a return emptied inside the window: they are closed,
            # and no journal of zero points goes into the member's history.
            return None
        nominal = coalition.point_value
        journal = journal_at_nominal(
            coalition=coalition, kind=JournalKind.RELEASE, points=points, at=as_of, member=member
        )
        journal_post(
            journal,
            [
                Leg(accounts.pending, -points, -points * nominal),
                Leg(accounts.points, points, points * nominal),
            ],
        )
        # Released points repay a negative balance first.
        lots_fit(member_id, accounts.points.balance, journal)
        return journal


def points_release(*, as_of: datetime | None = None, coalition_id: int | None = None) -> int:
    """Release every pending lot due as of `as_of`, one member per transaction. Idempotent."""
    as_of = as_of or timezone.now()
    lots = Lot.objects.filter(pending_until__isnull=False, pending_until__lte=as_of)
    if coalition_id is not None:
        lots = lots.filter(coalition_id=coalition_id)
    released = 0
    for member_id in lots.values_list("member_id", flat=True).distinct():
        if points_release_member(member_id=member_id, as_of=as_of):
            released += 1
    return released
