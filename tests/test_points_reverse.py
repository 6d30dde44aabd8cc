"""Reversals: refunds after spending, partial and over-reversal, repaying a negative balance."""

from decimal import Decimal

import pytest

from coalition.errors import AlreadyReversed, InsufficientPoints, NotReversible, TransactionNotFound
from coalition.models import JournalKind, Lot
from coalition.services import points_burn, points_earn, points_reverse
from members.selectors import member_balances


def earn(till, member, amount, receipt):
    return points_earn(till=till, member=member, amount=Decimal(amount), receipt=receipt)


def burn(till, member, points, receipt, bill="10000.00"):
    return points_burn(
        till=till, member=member, points=points, bill_amount=Decimal(bill), receipt=receipt
    )


def test_refund_after_burn_goes_negative_once(till_a, till_b, member, assert_ledger_clean):
    # Given 40 points earned and spent
    original = earn(till_a, member, "4000.00", "A-1").journal
    burn(till_b, member, 40, "F-1")
    # When the purchase is refunded in full
    result = points_reverse(original=original, tenant=till_a.tenant, reason="returned")
    # Then the balance goes negative by the reversed points, once
    assert result.journal.kind == JournalKind.EARN_REVERSAL
    assert result.journal.points == 40
    assert result.balance == -40
    # And a second full refund is refused: nothing is deducted twice
    with pytest.raises(AlreadyReversed) as refused:
        points_reverse(original=original, tenant=till_a.tenant, reason="again")
    assert refused.value.extra["remaining"] == "0.00"
    assert member_balances(member).balance == -40
    # And the member cannot burn while negative
    with pytest.raises(InsufficientPoints) as no_points:
        burn(till_b, member, 1, "F-2")
    assert no_points.value.extra["available"] == 0
    assert_ledger_clean(member.coalition)


def test_earn_onto_negative_balance_repays_first(till_a, till_b, member, assert_ledger_clean):
    original = earn(till_a, member, "4000.00", "A-1").journal
    burn(till_b, member, 40, "F-1")
    points_reverse(original=original, tenant=till_a.tenant, reason="returned")
    # When the member earns 50 points with a balance of -40
    result = earn(till_a, member, "5000.00", "A-2")
    # Then 40 repay the debt and only 10 become a new lot
    assert result.balance == 10
    new_lot = Lot.objects.get(journal=result.journal)
    assert (new_lot.points, new_lot.remaining) == (10, 10)
    assert_ledger_clean(member.coalition)


def test_reversal_takes_the_original_lot_first_then_others(till_a, member, assert_ledger_clean):
    first = earn(till_a, member, "4000.00", "A-1").journal
    second = earn(till_a, member, "10000.00", "A-2").journal
    points_reverse(original=second, tenant=till_a.tenant, reason="returned")
    assert Lot.objects.get(journal=second).remaining == 0
    assert Lot.objects.get(journal=first).remaining == 40
    assert member_balances(member).balance == 40
    assert_ledger_clean(member.coalition)


def test_partial_refund_reverses_points_the_remainder_would_not_earn(
    till_a, member, assert_ledger_clean
):
    original = earn(till_a, member, "4000.00", "A-1").journal
    # A refund of 1500 leaves 2500, worth 25 points: 15 are reversed
    first = points_reverse(
        original=original, tenant=till_a.tenant, reason="one item", amount=Decimal("1500.00")
    )
    assert first.journal.points == 15
    assert first.journal.amount == Decimal("1500.00")
    assert first.balance == 25
    # A refund of 50 more leaves 2450, worth 24: one more point
    second = points_reverse(
        original=original, tenant=till_a.tenant, reason="a sock", amount=Decimal("50.00")
    )
    assert second.journal.points == 1
    # Over-reversal: more than the 2450 unrefunded is refused, with what remains
    with pytest.raises(AlreadyReversed) as refused:
        points_reverse(
            original=original, tenant=till_a.tenant, reason="too much", amount=Decimal("2450.01")
        )
    assert refused.value.extra == {"remaining": "2450.00", "remaining_points": 24}
    # The rest, without an amount, reverses the whole remainder
    rest = points_reverse(original=original, tenant=till_a.tenant, reason="all")
    assert (rest.journal.points, rest.journal.amount, rest.balance) == (24, Decimal("2450.00"), 0)
    assert_ledger_clean(member.coalition)


def test_burn_reversal_restores_the_lots_it_used(till_a, till_b, member, assert_ledger_clean):
    lot_one = Lot.objects.get(journal=earn(till_a, member, "3000.00", "A-1").journal)
    lot_two = Lot.objects.get(journal=earn(till_a, member, "2000.00", "A-2").journal)
    spent = burn(till_b, member, 40, "F-1").journal
    lot_one.refresh_from_db()
    lot_two.refresh_from_db()
    assert (lot_one.remaining, lot_two.remaining) == (0, 10)
    # Partial reversal of 15 gives back to the latest-expiring lot first
    result = points_reverse(original=spent, tenant=till_b.tenant, reason="void", points=15)
    assert result.balance == 25
    lot_one.refresh_from_db()
    lot_two.refresh_from_db()
    assert (lot_one.remaining, lot_two.remaining) == (5, 20)
    with pytest.raises(AlreadyReversed) as refused:
        points_reverse(original=spent, tenant=till_b.tenant, reason="void", points=26)
    assert refused.value.extra["remaining"] == 25
    points_reverse(original=spent, tenant=till_b.tenant, reason="void rest")
    lot_one.refresh_from_db()
    assert lot_one.remaining == 30
    assert member_balances(member).balance == 50
    assert_ledger_clean(member.coalition)


def test_only_the_posting_tenant_may_reverse(till_a, till_b, member):
    original = earn(till_a, member, "4000.00", "A-1").journal
    with pytest.raises(TransactionNotFound):
        points_reverse(original=original, tenant=till_b.tenant, reason="not mine")


def test_a_reversal_cannot_be_reversed(till_a, member):
    original = earn(till_a, member, "4000.00", "A-1").journal
    reversal = points_reverse(original=original, tenant=till_a.tenant, reason="r").journal
    with pytest.raises(NotReversible):
        points_reverse(original=reversal, tenant=till_a.tenant, reason="again")


def test_partial_refund_uses_the_earn_rule_of_the_purchase(coalition, till_a, member):
    from coalition.models import Coalition

    original = earn(till_a, member, "4000.00", "A-1").journal
    # Staff change the earn rule after the purchase
    Coalition.objects.filter(pk=coalition.pk).update(earn_block=Decimal("200.00"))
    till_a.tenant.coalition.refresh_from_db()
    result = points_reverse(
        original=original, tenant=till_a.tenant, reason="one item", amount=Decimal("1000.00")
    )
    # The 3000 left would have earned 30 under the rule of the purchase: 10 are reversed
    assert (result.journal.points, result.balance) == (10, 30)
