"""Manual adjustments by staff, with maker-checker approval above the coalition's threshold."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from coalition.errors import (
    InsufficientPoints,
    InvalidRequest,
    MemberNotFound,
)
from coalition.models import (
    AccountKind,
    AdjustmentRequest,
    AdjustmentStatus,
    JournalKind,
)
from coalition.services.ledger import (
    Leg,
    Posting,
    coalition_account,
    journal_at_nominal,
    journal_post,
    lot_create,
    lot_new,
    lots_consume_fifo,
    member_lock_active,
)
from coalition.services.programme import (
    local_date,
    lot_terms,
)
from members.models import Member, MemberStatus


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


def _lock_for_decision(request: AdjustmentRequest, approver: Any, verb: str) -> AdjustmentRequest:
    """Lock a pending request for a checker's decision: staff, and not the maker."""
    # The row lock makes a double click (or two checkers at once) decide it only once.
    locked = AdjustmentRequest.objects.select_for_update().get(pk=request.pk)
    if locked.status != AdjustmentStatus.PENDING:
        raise InvalidRequest(f"This request is already {locked.get_status_display().lower()}.")
    if approver is None or not getattr(approver, "is_staff", False):
        raise InvalidRequest(f"Only staff can {verb} adjustments.")
    if approver.pk == locked.requested_by_id:
        raise InvalidRequest(f"The staff member who asked for an adjustment cannot {verb} it.")
    return locked


@transaction.atomic
def adjustment_approve(
    *, request: AdjustmentRequest, approver: Any, now: datetime | None = None
) -> Posting:
    """Maker-checker: a second staff member approves and the adjustment is posted."""
    locked = _lock_for_decision(request, approver, "approve")
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
    locked = _lock_for_decision(request, approver, "reject")
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
    accounts = member_lock_active(member)
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
            lot_new(
                journal=journal,
                member_id=member.pk,
                points=max(accounts.points.balance, 0) - max(before, 0),
                funding_tenant_id=None,
                terms=lot_terms(coalition, local_date(coalition, now)),
            )
        )
    else:
        lots_consume_fifo(member.pk, -points, journal)
    return Posting(journal, accounts.points.balance, accounts.pending.balance)
