"""The worked example of domain.md, number for number."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from coalition.models import Account, AccountKind, Lot
from coalition.selectors import ledger_totals
from coalition.services import points_burn, points_earn
from members.selectors import member_balances


def test_worked_example(coalition, till_a, till_b, member, assert_ledger_clean):
    # Given a shopper who spends ₹4,000 at the apparel store
    start = timezone.now() - timedelta(days=14)
    earn = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("4000.00"),
        receipt="A-1001",
        currency="INR",
        occurred_at=start,
        now=start,
    )
    # Then they earn 40 points, funded by the apparel tenant at ₹40
    assert earn.journal.points == 40
    assert earn.balance == 40
    issued = Account.objects.get(tenant=till_a.tenant, kind=AccountKind.TENANT_ISSUED)
    assert [(e.points, e.value) for e in issued.entries.all()] == [(-40, Decimal("-40.0000"))]

    # When two weeks later they redeem 40 points against a ₹600 bill at the food court
    burn = points_burn(
        till=till_b, member=member, points=40, bill_amount=Decimal("600.00"), receipt="F-77"
    )
    # Then the food court gives a ₹40 discount and is owed ₹40 from the pool
    assert burn.journal.value == Decimal("40.00")
    assert burn.balance == 0
    redeemed = Account.objects.get(tenant=till_b.tenant, kind=AccountKind.TENANT_REDEEMED)
    assert [(e.points, e.value) for e in redeemed.entries.all()] == [(40, Decimal("40.0000"))]

    # And the pool holds ₹0 for this shopper, who holds 0 points
    totals = ledger_totals(coalition)
    assert totals["member_points"] == {"points": 0, "value": Decimal("0")}
    assert totals["tenant_issued"]["value"] == Decimal("-40")
    assert totals["tenant_redeemed"]["value"] == Decimal("40")
    assert member_balances(member).balance == 0
    assert Lot.objects.get(member=member).remaining == 0
    # The ₹560 the shopper paid is the cross-shop spend: bill less the discount
    assert burn.journal.bill_amount - burn.journal.value == Decimal("560.00")
    assert_ledger_clean(coalition)
