"""Earn, burn, reverse, adjust and release: every change of a member's points.

Each service runs in one transaction, locks the member's accounts first (in primary-key order,
see `member_accounts_lock`), checks, posts one balanced journal, and keeps the member's lots in
step. Refusals are domain errors; nothing is written when one is raised.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from coalition.errors import (
    AlreadyReversed,
    DuplicateReceipt,
    InsufficientPoints,
    InvalidRequest,
    LedgerConflict,
    MemberNotFound,
    NotReversible,
    TenantCannotIssue,
    TenantCannotRedeem,
    TransactionNotFound,
)
from coalition.models import (
    AccountKind,
    AdjustmentRequest,
    AdjustmentStatus,
    Entry,
    ExpiryPolicy,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.money import money_round
from coalition.services.ledger import (
    Leg,
    MemberAccounts,
    MemberId,
    coalition_account,
    consumed_by,
    journal_at_nominal,
    journal_post,
    lot_create,
    lots_consume,
    lots_fit,
    member_accounts_lock,
    open_lots,
    tenant_account,
)
from coalition.services.programme import (
    add_months,
    earn_points,
    earn_points_by_rule,
    local_date,
    lot_expiry,
)
from members.models import Member, MemberStatus
from tenants.models import Tenant, Till
from tenants.selectors import tenant_can_issue, tenant_can_redeem, tenant_rates_on

RECEIPT_CONSTRAINT = "journal_receipt_unique_per_store_kind"
MAX_FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Posting:
    """What a points service returns: the journal and the member's balances after it."""

    journal: Journal
    balance: int
    pending: int


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


def _lock_points_holder(member: Member) -> tuple[Member, MemberAccounts]:
    """Lock the accounts of the member that now holds `member`'s points, following merges.

    Only the holder is ever locked, so the fixed lock order of every other service holds. The
    holder is found without locks, locked inside a savepoint, and its status read again: if a
    merge moved the points on meanwhile, rolling back to the savepoint releases that lock
    before the next holder is tried (holding it while locking the next would be chain order,
    not key order, and could deadlock with a merge of the same two members).
    """
    for _ in range(50):
        holder = member
        while holder.status == MemberStatus.MERGED and holder.merged_into_id is not None:
            holder = Member.objects.get(pk=holder.merged_into_id)
        savepoint = transaction.savepoint()
        accounts = member_accounts_lock(holder.pk)[holder.pk]
        current = Member.objects.get(pk=holder.pk)
        if current.status != MemberStatus.MERGED:
            transaction.savepoint_commit(savepoint)
            return current, accounts
        transaction.savepoint_rollback(savepoint)
        member = current
    raise LedgerConflict("The member was merged too many times to follow.")


def _lock_active_member(member: Member) -> MemberAccounts:
    accounts = member_accounts_lock(member.pk)[member.pk]
    # Re-read the status under the lock, in its own statement: a merge or an erasure may have
    # committed while we waited, and a status joined into the locking query would be the
    # version from before the wait (PostgreSQL re-fetches only the rows it locks).
    status = Member.objects.filter(pk=member.pk).values_list("status", flat=True).first()
    if status != MemberStatus.ACTIVE:
        raise MemberNotFound("This member is not enrolled.")
    return accounts


def _save_receipt_journal(journal: Journal, legs: list[Leg]) -> None:
    """Post, turning a lost race on the receipt's unique index into DuplicateReceipt."""
    try:
        with transaction.atomic():
            journal_post(journal, legs)
    except IntegrityError as exc:
        if RECEIPT_CONSTRAINT in str(exc):
            raise DuplicateReceipt(
                f"Receipt {journal.receipt!r} was already posted as {journal.kind} by this store."
            ) from exc
        raise


def _check_receipt(till: Till, kind: str, receipt: str) -> None:
    receipt = receipt.strip()
    if not receipt:
        raise InvalidRequest("A receipt number is required.", field="receipt")
    if Journal.objects.filter(store_id=till.store_id, kind=kind, receipt=receipt).exists():
        raise DuplicateReceipt(f"Receipt {receipt!r} was already posted as {kind} by this store.")


def _lots_slide(member: Member, coalition: Any, today: Any) -> None:
    """Sliding expiry: any activity moves every open lot's expiry N months from today."""
    if coalition.expiry_policy == ExpiryPolicy.SLIDING:
        new_date = add_months(today, coalition.expiry_months) - timedelta(days=1)
        Lot.objects.filter(member=member, remaining__gt=0).update(expires_on=new_date)


def _touch(member: Member, now: datetime) -> None:
    Member.objects.filter(pk=member.pk).update(last_activity_at=now)


@transaction.atomic
def points_earn(
    *,
    till: Till,
    member: Member,
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
    if not tenant_can_issue(tenant):
        raise TenantCannotIssue(f"{tenant.name} may not issue points now.")
    if member.coalition_id != coalition.pk:
        raise MemberNotFound("This member is not enrolled.")
    accounts = _lock_active_member(member)
    _check_receipt(till, JournalKind.EARN, receipt)

    points = earn_points(coalition, amount)
    occurred_on = local_date(coalition, occurred_at)
    price, reimbursement = tenant_rates_on(tenant, occurred_on)
    nominal = coalition.point_value
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.EARN,
        member=member,
        tenant=tenant,
        store_id=till.store_id,
        till=till,
        receipt=receipt.strip(),
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
    legs = [
        Leg(target, points, points * nominal),
        Leg(
            tenant_account(coalition.pk, tenant.pk, AccountKind.TENANT_ISSUED),
            -points,
            -points * price,
        ),
    ]
    if price != nominal:
        legs.append(
            Leg(coalition_account(coalition.pk, AccountKind.MARGIN), 0, points * (price - nominal))
        )
    _save_receipt_journal(journal, legs)

    # A negative balance (a refund after spending) is repaid first; only the rest is a new lot.
    lot_points = points if held else max(accounts.points.balance, 0) - max(before, 0)
    lot_create(
        journal=journal,
        member_id=member.pk,
        points=lot_points,
        funding_tenant_id=tenant.pk,
        expires_on=lot_expiry(coalition, occurred_on),
        pending_until=now + timedelta(days=coalition.holdback_days) if held else None,
    )
    _lots_slide(member, coalition, local_date(coalition, now))
    _touch(member, now)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


@transaction.atomic
def points_burn(
    *,
    till: Till,
    member: Member,
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
    if not tenant_can_redeem(tenant):
        raise TenantCannotRedeem(f"{tenant.name} may not redeem points now.")
    if member.coalition_id != coalition.pk:
        raise MemberNotFound("This member is not enrolled.")
    # The lock is what makes fifty concurrent burns safe: each waits here, then sees the
    # balance the previous one left, so none can spend points another already took.
    accounts = _lock_active_member(member)
    _check_receipt(till, JournalKind.BURN, receipt)
    if accounts.points.balance < points:
        raise InsufficientPoints(
            f"The member has {max(accounts.points.balance, 0)} spendable points.",
            available=max(accounts.points.balance, 0),
        )
    _, reimbursement = tenant_rates_on(tenant, local_date(coalition, occurred_at))
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.BURN,
        member=member,
        tenant=tenant,
        store_id=till.store_id,
        till=till,
        receipt=receipt.strip(),
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
        Leg(
            tenant_account(coalition.pk, tenant.pk, AccountKind.TENANT_REDEEMED),
            points,
            points * reimbursement,
        ),
    ]
    if reimbursement != nominal:
        legs.append(
            Leg(
                coalition_account(coalition.pk, AccountKind.VARIANCE),
                0,
                points * (nominal - reimbursement),
            )
        )
    _save_receipt_journal(journal, legs)
    lots_consume(open_lots(member.pk), points, journal)
    _lots_slide(member, coalition, local_date(coalition, now))
    _touch(member, now)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


def _reversed_so_far(original: Journal) -> tuple[int, Decimal]:
    totals = original.reversals.aggregate(points=Sum("points"), amount=Sum("amount"))
    return int(totals["points"] or 0), totals["amount"] or Decimal("0.00")


@transaction.atomic
def points_reverse(
    *,
    original: Journal,
    tenant: Tenant,
    reason: str,
    amount: Decimal | None = None,
    points: int | None = None,
    till: Till | None = None,
    user: Any = None,
    now: datetime | None = None,
) -> Posting:
    """Reverse an earn (a refund, in money) or a burn (in points), fully or partly.

    A refund after the points were spent takes the balance negative, once: the reversal takes
    what it can from the member's lots and the rest becomes a negative balance that later
    credits repay first.
    """
    if original.tenant_id != tenant.pk:
        raise TransactionNotFound("No such transaction for this tenant.")
    if original.kind not in (JournalKind.EARN, JournalKind.BURN):
        raise NotReversible(f"A {original.get_kind_display().lower()} cannot be reversed.")
    if not reason or not reason.strip():
        raise InvalidRequest("A reason is required.", field="reason")
    now = now or timezone.now()
    if original.member is None:
        raise NotReversible("This transaction has no member to reverse.")
    # Lock first, then read what was already reversed: two refunds of one receipt queue here.
    member, accounts = _lock_points_holder(original.member)
    done_points, done_amount = _reversed_so_far(original)
    if original.kind == JournalKind.EARN:
        posting = _earn_reverse(
            original, member, accounts, reason, amount, done_points, done_amount, till, user, now
        )
    else:
        posting = _burn_reverse_checked(
            original, member, accounts, reason, amount, points, done_points, till, user, now
        )
    # A return at a till is activity: under sliding expiry it moves every open lot, restored
    # ones included (a burn reversal refills lots that may carry an old date).
    _lots_slide(member, member.coalition, local_date(member.coalition, now))
    return posting


def _burn_reverse_checked(
    original: Journal,
    member: Member,
    accounts: MemberAccounts,
    reason: str,
    amount: Decimal | None,
    points: int | None,
    done_points: int,
    till: Any,
    user: Any,
    now: datetime,
) -> Posting:
    if amount is not None:
        raise InvalidRequest("A burn is reversed in points, not an amount.", field="amount")
    remaining = original.points - done_points
    wanted = remaining if points is None else points
    if points is not None and points <= 0:
        raise InvalidRequest("Points must be more than zero.", field="points")
    if remaining <= 0 or wanted > remaining:
        raise AlreadyReversed(
            f"Only {remaining} points of this burn remain unreversed.", remaining=remaining
        )
    return _burn_reverse(original, member, accounts, reason, wanted, till, user, now)


def _reversal_journal(
    original: Journal,
    member: Member,
    kind: str,
    points: int,
    reason: str,
    till: Any,
    user: Any,
    now: datetime,
    amount: Decimal | None = None,
) -> Journal:
    return Journal(
        coalition_id=original.coalition_id,
        kind=kind,
        member=member,
        tenant_id=original.tenant_id,
        store_id=till.store_id if till else original.store_id,
        till=till,
        receipt=original.receipt,
        points=points,
        amount=amount,
        value=money_round(points * original.point_value),
        point_value=original.point_value,
        price_per_point=original.price_per_point,
        reimbursement_per_point=original.reimbursement_per_point,
        reverses=original,
        reason=reason.strip(),
        occurred_at=now,
        posted_at=now,
        created_by=user,
    )


def _earn_reverse(
    original: Journal,
    member: Member,
    accounts: MemberAccounts,
    reason: str,
    amount: Decimal | None,
    done_points: int,
    done_amount: Decimal,
    till: Any,
    user: Any,
    now: datetime,
) -> Posting:
    coalition = original.coalition
    assert original.amount is not None
    unrefunded = original.amount - done_amount
    refund = unrefunded if amount is None else amount
    if amount is not None and amount <= 0:
        raise InvalidRequest("The amount must be more than zero.", field="amount")
    if unrefunded <= 0 or refund > unrefunded:
        raise AlreadyReversed(
            f"Only {unrefunded} of this purchase remains unrefunded.",
            remaining=str(unrefunded),
            remaining_points=original.points - done_points,
        )
    # The points reversed are the original points minus what the unrefunded rest would earn,
    # under the earn rule the purchase was posted with (not one staff changed since).
    keep = earn_points_by_rule(
        original.amount - done_amount - refund,
        block=original.earn_block or coalition.earn_block,
        per_block=original.points_per_block or coalition.points_per_block,
    )
    points = max(original.points - keep - done_points, 0)
    journal = _reversal_journal(
        original, member, JournalKind.EARN_REVERSAL, points, reason, till, user, now, refund
    )
    price = original.price_per_point or original.point_value
    nominal = original.point_value
    # Points still held back from this earn are cancelled from pending before anything else.
    pending_lot = Lot.objects.filter(journal=original, pending_until__isnull=False).first()
    from_pending = min(points, pending_lot.remaining) if pending_lot else 0
    own = list(Lot.objects.filter(journal=original, pending_until__isnull=True, remaining__gt=0))
    from_own = min(points - from_pending, sum(lot.remaining for lot in own))
    # Points of this earn that already expired went to breakage: the refund takes them back
    # from there rather than a second time from the member.
    from_breakage = min(points - from_pending - from_own, _expired_not_returned(original))
    from_points = points - from_pending - from_breakage
    legs = [
        Leg(accounts.pending, -from_pending, -from_pending * nominal),
        Leg(accounts.points, -from_points, -from_points * nominal),
        Leg(
            coalition_account(coalition.pk, AccountKind.BREAKAGE),
            -from_breakage,
            -from_breakage * nominal,
        ),
        Leg(
            tenant_account(coalition.pk, original.tenant_id, AccountKind.TENANT_ISSUED),  # type: ignore[arg-type]
            points,
            points * price,
        ),
    ]
    if price != nominal:
        legs.append(
            Leg(coalition_account(coalition.pk, AccountKind.MARGIN), 0, -points * (price - nominal))
        )
    journal_post(journal, legs)
    if pending_lot and from_pending:
        lots_consume([pending_lot], from_pending, journal)
    if from_points:
        # The original lot first, then the oldest others; what no lot covers goes negative.
        others = [lot for lot in open_lots(member.pk) if lot.journal_id != original.pk]
        lots_consume(own + others, from_points, journal)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


def _expired_not_returned(original: Journal) -> int:
    """Points of an earn's lot that expired, less what earlier refunds took back from breakage."""
    expired = LotConsumption.objects.filter(
        lot__journal=original, journal__kind=JournalKind.EXPIRE
    ).aggregate(total=Sum("points"))["total"]
    returned = Entry.objects.filter(
        journal__reverses=original, account__kind=AccountKind.BREAKAGE
    ).aggregate(total=Sum("points"))["total"]
    return max(int(expired or 0) + int(returned or 0), 0)


def _burn_reverse(
    original: Journal,
    member: Member,
    accounts: MemberAccounts,
    reason: str,
    points: int,
    till: Any,
    user: Any,
    now: datetime,
) -> Posting:
    coalition_id = original.coalition_id
    nominal = original.point_value
    reimbursement = original.reimbursement_per_point or nominal
    journal = _reversal_journal(
        original, member, JournalKind.BURN_REVERSAL, points, reason, till, user, now
    )
    before = accounts.points.balance
    legs = [
        Leg(accounts.points, points, points * nominal),
        Leg(
            tenant_account(coalition_id, original.tenant_id, AccountKind.TENANT_REDEEMED),  # type: ignore[arg-type]
            -points,
            -points * reimbursement,
        ),
    ]
    if reimbursement != nominal:
        legs.append(
            Leg(
                coalition_account(coalition_id, AccountKind.VARIANCE),
                0,
                -points * (nominal - reimbursement),
            )
        )
    journal_post(journal, legs)
    # Give the points back to the lots the burn took them from, latest expiry first; a negative
    # balance is repaid before any lot is restored.
    restore = max(accounts.points.balance, 0) - max(before, 0)
    owed = consumed_by(original)
    lots = sorted(
        Lot.objects.filter(pk__in=owed.keys()),
        key=lambda lot: (lot.expires_on is not None, lot.expires_on, lot.pk),
        reverse=True,
    )
    for lot in lots:
        if restore <= 0:
            break
        give = min(owed[lot.pk], restore)
        lot.remaining += give
        restore -= give
        if lot.member_id != member.pk:
            lot.member_id = member.pk  # a lot of a member merged since the burn
        lot.save(update_fields=["remaining", "member"])
        lot.consumptions.create(journal=journal, points=-give)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)


@transaction.atomic
def points_adjust(
    *, member: Member, points: int, reason: str, actor: Any, now: datetime | None = None
) -> Posting | AdjustmentRequest:
    """A manual adjustment by staff. Above the coalition's threshold it waits for approval."""
    if not reason or not reason.strip():
        raise InvalidRequest("A reason is required for a manual adjustment.", field="reason")
    if points == 0:
        raise InvalidRequest("An adjustment must move at least one point.", field="points")
    if actor is None or not getattr(actor, "is_staff", False):
        raise InvalidRequest("Only staff can adjust points.")
    coalition = member.coalition
    if abs(points) > coalition.adjustment_approval_threshold:
        # Refuse now rather than at approval: a merged or erased member cannot be adjusted.
        if Member.objects.filter(pk=member.pk).values_list("status", flat=True).first() != (
            MemberStatus.ACTIVE
        ):
            raise MemberNotFound("This member is not enrolled.")
        return AdjustmentRequest.objects.create(
            coalition=coalition,
            member=member,
            points=points,
            reason=reason.strip(),
            requested_by=actor,
        )
    return _adjust_post(member=member, points=points, reason=reason, actor=actor, now=now)


@transaction.atomic
def adjustment_approve(
    *, request: AdjustmentRequest, approver: Any, now: datetime | None = None
) -> Posting:
    """Maker-checker: a second staff member approves and the adjustment is posted."""
    locked = AdjustmentRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status != AdjustmentStatus.PENDING:
        raise InvalidRequest(f"This request is already {locked.get_status_display().lower()}.")
    if approver is None or not getattr(approver, "is_staff", False):
        raise InvalidRequest("Only staff can approve adjustments.")
    if approver.pk == locked.requested_by_id:
        raise InvalidRequest("The staff member who asked for an adjustment cannot approve it.")
    posting = _adjust_post(
        member=locked.member, points=locked.points, reason=locked.reason, actor=approver, now=now
    )
    locked.status = AdjustmentStatus.APPROVED
    locked.decided_by = approver
    locked.decided_at = now or timezone.now()
    locked.journal = posting.journal
    locked.save(update_fields=["status", "decided_by", "decided_at", "journal"])
    return posting


@transaction.atomic
def adjustment_reject(*, request: AdjustmentRequest, approver: Any) -> AdjustmentRequest:
    locked = AdjustmentRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status != AdjustmentStatus.PENDING:
        raise InvalidRequest(f"This request is already {locked.get_status_display().lower()}.")
    if approver is None or not getattr(approver, "is_staff", False):
        raise InvalidRequest("Only staff can reject adjustments.")
    if approver.pk == locked.requested_by_id:
        raise InvalidRequest("The staff member who asked for an adjustment cannot decide it.")
    locked.status = AdjustmentStatus.REJECTED
    locked.decided_by = approver
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_by", "decided_at"])
    return locked


def _adjust_post(
    *, member: Member, points: int, reason: str, actor: Any, now: datetime | None
) -> Posting:
    now = now or timezone.now()
    coalition = member.coalition
    accounts = _lock_active_member(member)
    if points < 0 and accounts.points.balance < -points:
        raise InsufficientPoints(
            f"The member has {max(accounts.points.balance, 0)} spendable points.",
            available=max(accounts.points.balance, 0),
        )
    nominal = coalition.point_value
    journal = journal_at_nominal(
        coalition=coalition,
        kind=JournalKind.ADJUST,
        points=abs(points),
        at=now,
        member=member,
        reason=reason.strip(),
        created_by=actor,
    )
    before = accounts.points.balance
    journal_post(
        journal,
        [
            Leg(accounts.points, points, points * nominal),
            Leg(
                coalition_account(coalition.pk, AccountKind.ADJUSTMENT), -points, -points * nominal
            ),
        ],
    )
    if points > 0:
        lot_create(
            journal=journal,
            member_id=member.pk,
            points=max(accounts.points.balance, 0) - max(before, 0),
            funding_tenant_id=None,
            expires_on=lot_expiry(coalition, local_date(coalition, now)),
        )
    else:
        lots_consume(open_lots(member.pk), -points, journal)
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
        points = sum(lot.remaining for lot in due)
        if not due:
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
        Lot.objects.filter(pk__in=[lot.pk for lot in due]).update(pending_until=None)
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
