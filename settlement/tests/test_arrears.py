"""Payments, arrears and waivers: a tenant that does not pay may not redeem, until it pays."""

from datetime import timedelta
from decimal import Decimal

import pytest

from coalition.errors import InvalidRequest, TenantCannotRedeem
from settlement.models import LineKind, Payment, Period
from settlement.services import (
    arrears_apply,
    arrears_waive,
    payment_record,
    period_close,
)
from settlement.tests.test_close import NOW, _month, burn, earn, statement
from tenants.models import Tenant

RECEIVED = Payment.Direction.RECEIVED


@pytest.fixture
def owed(coalition, till_a, till_b, member):
    """Apparel owes ₹40 on last month's statement (it issued 40 points)."""
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    # the shopper also has points to spend at apparel later
    earn(till_b, member, "9000.00", "F-1", start + timedelta(days=3))
    period = period_close(coalition, start.date(), now=NOW)
    return statement(period, till_a)


def _tenant(till) -> Tenant:
    return Tenant.objects.get(pk=till.tenant_id)


def test_unpaid_past_due_blocks_redemption_and_payment_lifts_it(owed, till_a, member, staff):
    past_due = owed.due_on + timedelta(days=1)

    assert arrears_apply(today=owed.due_on) == {"entered": 0, "left": 0}  # due today: not yet
    assert arrears_apply(today=past_due)["entered"] == 2  # apparel owes 40, the food court 90
    apparel = _tenant(till_a)
    assert apparel.arrears_since == past_due
    till_a.tenant = apparel
    with pytest.raises(TenantCannotRedeem):
        burn(till_a, member, 10, "A-burn-1", None)

    # A partial payment is not enough...
    payment_record(
        tenant=apparel, direction=RECEIVED, amount=Decimal("25.00"), reference="UTR-1",
        received_on=past_due, statement=owed, actor=staff,
    )  # fmt: skip
    arrears_apply(today=past_due)
    assert _tenant(till_a).arrears_since == past_due
    # ...the rest is.
    payment_record(
        tenant=apparel, direction=RECEIVED, amount=Decimal("15.00"), reference="UTR-2",
        received_on=past_due, actor=staff,
    )  # fmt: skip
    till_a.tenant = _tenant(till_a)
    assert till_a.tenant.arrears_since is None
    assert burn(till_a, member, 10, "A-burn-2", None).points == 10


def test_staff_waive_arrears_with_a_reason(owed, till_a, staff):
    arrears_apply(today=owed.due_on + timedelta(days=3))
    apparel = _tenant(till_a)
    with pytest.raises(InvalidRequest):
        arrears_waive(tenant=apparel, reason="  ", actor=staff)

    waiver = arrears_waive(tenant=apparel, reason="Paid by cheque, clearing", actor=staff)

    assert waiver.statement == owed
    assert _tenant(till_a).arrears_since is None
    # and the daily job leaves a waived statement alone
    arrears_apply(today=owed.due_on + timedelta(days=4))
    assert _tenant(till_a).arrears_since is None


def test_payments_show_on_the_next_statement_and_never_in_a_closed_month(
    coalition, owed, till_a, staff
):
    period = owed.period
    # Recorded with a time inside the closed month: it counts in the open one.
    payment = payment_record(
        tenant=_tenant(till_a), direction=RECEIVED, amount=Decimal("40.00"), reference="UTR-9",
        received_on=period.ends_at.date(), actor=staff, now=period.ends_at - timedelta(days=1),
    )  # fmt: skip
    assert payment.posted_at == period.ends_at

    # When the open month is closed, the payment settles the balance carried forward.
    following = period_close(
        coalition, (period.ends_at + timedelta(days=1)).date(), now=NOW + timedelta(days=40)
    )
    found = statement(following, till_a)
    assert found.opening_balance == Decimal("40.00")
    assert [(ln.kind, ln.amount) for ln in found.lines.all()] == [
        (LineKind.PAYMENT, Decimal("40.00"))
    ]
    assert found.net_amount == Decimal("0.00")
    assert Period.objects.count() == 2


def test_a_payment_is_checked(owed, till_a, till_b, staff):
    apparel = _tenant(till_a)
    for bad in (
        {"amount": Decimal("0")},
        {"amount": Decimal("1.005")},
        {"reference": " "},
        {"direction": "gift"},
        {"statement": statement(owed.period, till_b)},
    ):
        fields = {
            "tenant": apparel,
            "direction": RECEIVED,
            "amount": Decimal("10.00"),
            "reference": "UTR",
            "received_on": owed.due_on,
            "actor": staff,
            **bad,
        }
        with pytest.raises(InvalidRequest):
            payment_record(**fields)
    assert not Payment.objects.exists()
