"""Manual adjustments: a reason always, a second staff member above the threshold."""

from decimal import Decimal

import pytest

from coalition.errors import InsufficientPoints, InvalidRequest, MemberNotFound
from coalition.models import AdjustmentRequest, AdjustmentStatus, JournalKind, Lot
from coalition.services import (
    Posting,
    adjustment_approve,
    adjustment_reject,
    points_adjust,
    points_earn,
)
from members.selectors import member_balances


def test_small_adjustment_posts_at_once_with_an_operator_funded_lot(
    member, staff, assert_ledger_clean
):
    result = points_adjust(member=member, points=25, reason="goodwill", actor=staff)
    assert isinstance(result, Posting)
    assert result.journal.kind == JournalKind.ADJUST
    assert result.journal.created_by == staff
    assert result.balance == 25
    lot = Lot.objects.get(member=member)
    assert lot.funding_tenant is None
    debit = points_adjust(member=member, points=-5, reason="correction", actor=staff)
    assert isinstance(debit, Posting)
    assert debit.balance == 20
    with pytest.raises(InsufficientPoints):
        points_adjust(member=member, points=-21, reason="too much", actor=staff)
    assert_ledger_clean(member.coalition)


def test_adjustment_needs_a_reason_and_staff(member, staff):
    with pytest.raises(InvalidRequest):
        points_adjust(member=member, points=5, reason="  ", actor=staff)
    staff.is_staff = False
    with pytest.raises(InvalidRequest):
        points_adjust(member=member, points=5, reason="why", actor=staff)


def test_large_adjustment_waits_for_a_second_staff_member(
    member, staff, checker, assert_ledger_clean
):
    threshold = member.coalition.adjustment_approval_threshold
    request = points_adjust(member=member, points=threshold + 1, reason="migration", actor=staff)
    assert isinstance(request, AdjustmentRequest)
    assert request.status == AdjustmentStatus.PENDING
    assert member_balances(member).balance == 0
    # The maker cannot be the checker
    with pytest.raises(InvalidRequest):
        adjustment_approve(request=request, approver=staff)
    posting = adjustment_approve(request=request, approver=checker)
    assert posting.balance == threshold + 1
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.journal) == (
        AdjustmentStatus.APPROVED,
        checker,
        posting.journal,
    )
    # Approving twice posts nothing twice
    with pytest.raises(InvalidRequest):
        adjustment_approve(request=request, approver=checker)
    assert member_balances(member).balance == threshold + 1
    assert_ledger_clean(member.coalition)


def test_rejected_adjustment_posts_nothing(member, staff, checker, till_a):
    points_earn(till=till_a, member=member, amount=Decimal("100.00"), receipt="1")
    request = points_adjust(member=member, points=-5000, reason="fraud", actor=staff)
    assert isinstance(request, AdjustmentRequest)
    adjustment_reject(request=request, approver=checker)
    request.refresh_from_db()
    assert request.status == AdjustmentStatus.REJECTED
    assert member_balances(member).balance == 1


def test_large_adjustment_of_a_merged_member_is_refused_at_once(coalition, member, staff):
    from members.services import member_enrol, members_merge

    survivor = member_enrol(
        coalition=coalition, card="S1", adult=True, consents={"programme": True}
    )
    members_merge(survivor=survivor, merged=member, actor=staff, reason="same person")
    with pytest.raises(MemberNotFound):
        points_adjust(member=member, points=5000, reason="late", actor=staff)
    assert not AdjustmentRequest.objects.exists()
