"""Reversals: refunds of earns (in money) and voids of burns (in points), full or partial."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from coalition.errors import (
    AlreadyReversed,
    InvalidRequest,
    LedgerConflict,
    NotReversible,
    TransactionNotFound,
)
from coalition.models import (
    AccountKind,
    Entry,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.money import money_round
from coalition.services.campaigns import (
    clawback_record,
    refund_clawback,
)
from coalition.services.ledger import (
    Leg,
    MemberAccounts,
    Posting,
    coalition_account,
    consumed_by,
    journal_post,
    lots_consume,
    lots_slide,
    member_accounts_lock,
    open_lots,
    tenant_account,
)
from coalition.services.programme import earn_points_by_rule, local_date
from members.models import Member, MemberStatus
from tenants.models import Tenant, Till


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
        if points is not None:
            raise InvalidRequest(
                "An earn is reversed in money: give the refunded amount, not points.",
                field="points",
            )
        posting = _earn_reverse(
            original, member, accounts, reason, amount, done_points, done_amount, till, user, now
        )
    else:
        posting = _burn_reverse_checked(
            original, member, accounts, reason, amount, points, done_points, till, user, now
        )
    # A return at a till is activity: under sliding expiry it moves every open lot, restored
    # ones included (a burn reversal refills lots that may carry an old date).
    lots_slide(member, member.coalition, local_date(member.coalition, now))
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
    # under the earn rule the purchase was posted with (not one staff changed since), and under
    # the campaigns it was priced with (`campaigns.refund_clawback`).
    kept_amount = original.amount - done_amount - refund
    kept_base = earn_points_by_rule(
        kept_amount,
        block=original.earn_block or coalition.earn_block,
        per_block=original.points_per_block or coalition.points_per_block,
    )
    clawback = refund_clawback(original, base_kept=kept_base, amount_kept=kept_amount)
    base_done = done_points - (clawback.given - clawback.left)
    base = max(original.points - clawback.given - kept_base - base_done, 0)
    points = base + clawback.tenant_funded + clawback.mall_funded
    journal = _reversal_journal(
        original, member, JournalKind.EARN_REVERSAL, points, reason, till, user, now, refund
    )
    price = original.price_per_point or original.point_value
    nominal = original.point_value
    # Points still held back from this earn are cancelled from pending before anything else.
    pending_lots = list(Lot.objects.filter(journal=original, pending_until__isnull=False))
    from_pending = min(points, sum(lot.remaining for lot in pending_lots))
    own = list(Lot.objects.filter(journal=original, pending_until__isnull=True, remaining__gt=0))
    from_own = min(points - from_pending, sum(lot.remaining for lot in own))
    # Points of this earn that already expired went to breakage: the refund takes them back
    # from there rather than a second time from the member.
    from_breakage = min(points - from_pending - from_own, _expired_not_returned(original))
    from_points = points - from_pending - from_breakage
    tenant_id = original.tenant_id
    assert tenant_id is not None
    tenant_paid = base + clawback.tenant_funded
    legs = [
        Leg(accounts.pending, -from_pending, -from_pending * nominal),
        Leg(accounts.points, -from_points, -from_points * nominal),
        Leg(
            coalition_account(coalition.pk, AccountKind.BREAKAGE),
            -from_breakage,
            -from_breakage * nominal,
        ),
        Leg(tenant_account(coalition.pk, tenant_id, AccountKind.TENANT_ISSUED), base, base * price),
    ]
    if clawback.tenant_funded:
        legs.append(
            Leg(
                tenant_account(coalition.pk, tenant_id, AccountKind.TENANT_CAMPAIGN),
                clawback.tenant_funded,
                clawback.tenant_funded * price,
            )
        )
    if clawback.mall_funded:
        legs.append(
            Leg(
                coalition_account(coalition.pk, AccountKind.CAMPAIGN),
                clawback.mall_funded,
                clawback.mall_funded * nominal,
            )
        )
    if price != nominal:
        legs.append(
            Leg(
                coalition_account(coalition.pk, AccountKind.MARGIN),
                0,
                -tenant_paid * (price - nominal),
            )
        )
    journal_post(journal, legs)
    # Awards are dated by the purchase (a day's bonus is netted by that day).
    clawback_record(
        journal, member.pk, clawback, price, local_date(coalition, original.occurred_at)
    )
    if from_pending:
        lots_consume(pending_lots, from_pending, journal)
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
