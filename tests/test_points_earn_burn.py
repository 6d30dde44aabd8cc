"""Earn and burn: the earn rule, rates in force, refusals, duplicate receipts, holdback."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from coalition.errors import (
    DuplicateReceipt,
    InsufficientPoints,
    InvalidRequest,
    MemberNotFound,
    TenantCannotIssue,
    TenantCannotRedeem,
)
from coalition.models import Account, AccountKind, Coalition, Entry, Journal, Lot
from coalition.services import points_burn, points_earn, points_release, points_reverse
from members.selectors import member_balances
from tenants.models import TenantRate, TenantStatus
from tenants.services import till_create


def test_earn_rounds_down_per_block_and_records_a_zero_point_visit(till_a, member):
    assert (
        points_earn(
            till=till_a, member=member, amount=Decimal("199.99"), receipt="1"
        ).journal.points
        == 1
    )
    visit = points_earn(till=till_a, member=member, amount=Decimal("99.99"), receipt="2")
    assert visit.journal.points == 0
    assert visit.journal.entries.count() == 0
    assert member_balances(member).balance == 1


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [
        ("0.00", "INR", "amount"),
        ("-5.00", "INR", "amount"),
        ("1000000.01", "INR", "amount"),
        ("100.00", "USD", "currency"),
    ],
)
def test_earn_refuses_bad_amounts(till_a, member, amount, currency, field):
    with pytest.raises(InvalidRequest) as refused:
        points_earn(
            till=till_a, member=member, amount=Decimal(amount), currency=currency, receipt="1"
        )
    assert refused.value.field == field
    assert not Journal.objects.exists()


def test_occurred_at_in_the_future_is_refused(till_a, member):
    with pytest.raises(InvalidRequest) as refused:
        points_earn(
            till=till_a,
            member=member,
            amount=Decimal("100.00"),
            receipt="1",
            occurred_at=timezone.now() + timedelta(minutes=6),
        )
    assert refused.value.field == "occurred_at"


def test_duplicate_receipt_per_store_and_kind(till_a, till_b, member):
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="R-1")
    # Another till of the same store: still a duplicate
    other_till = till_create(tenant=till_a.tenant, store_code="main", till_code="a2")
    with pytest.raises(DuplicateReceipt):
        points_earn(till=other_till, member=member, amount=Decimal("10.00"), receipt="R-1")
    # A burn may share the receipt of an earn, and another tenant may reuse the number
    points_burn(till=till_a, member=member, points=10, bill_amount=Decimal("100"), receipt="R-1")
    points_earn(till=till_b, member=member, amount=Decimal("100.00"), receipt="R-1")
    assert Journal.objects.filter(receipt="R-1").count() == 3


def test_burn_refusals(till_a, till_b, member):
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1")
    with pytest.raises(InsufficientPoints) as short:
        points_burn(till=till_b, member=member, points=41, bill_amount=Decimal("600"), receipt="1")
    assert short.value.extra == {"available": 40}
    with pytest.raises(InvalidRequest):
        points_burn(
            till=till_b, member=member, points=40, bill_amount=Decimal("39.99"), receipt="2"
        )
    with pytest.raises(InvalidRequest):
        points_burn(till=till_b, member=member, points=0, bill_amount=Decimal("10"), receipt="3")
    till_b.tenant.status = TenantStatus.SUSPENDED
    till_b.tenant.save()
    with pytest.raises(TenantCannotRedeem):
        points_burn(till=till_b, member=member, points=10, bill_amount=Decimal("600"), receipt="4")
    till_a.tenant.may_issue = False
    till_a.tenant.redeem_only_allowed = True
    till_a.tenant.save()
    with pytest.raises(TenantCannotIssue):
        points_earn(till=till_a, member=member, amount=Decimal("100.00"), receipt="5")
    assert member_balances(member).balance == 40


def test_member_of_another_coalition_is_unknown(till_a, db):
    from members.tests.factories import MemberFactory

    stranger = MemberFactory.create()
    with pytest.raises(MemberNotFound):
        points_earn(till=till_a, member=stranger, amount=Decimal("100.00"), receipt="1")


def test_rates_in_force_on_the_occurred_date_are_recorded(coalition, till_a, till_b, member):
    today = timezone.localdate()
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from=today - timedelta(days=30),
        price_per_point=Decimal("1.1000"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from=today - timedelta(days=5),
        price_per_point=Decimal("1.2500"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    TenantRate.objects.create(
        tenant=till_b.tenant,
        effective_from=date(2020, 1, 1),
        price_per_point=Decimal("1.0000"),
        reimbursement_per_point=Decimal("0.9000"),
    )
    ten_days_ago = timezone.now() - timedelta(days=10)
    old = points_earn(
        till=till_a, member=member, amount=Decimal("1000.00"), receipt="1", occurred_at=ten_days_ago
    )
    new = points_earn(till=till_a, member=member, amount=Decimal("1000.00"), receipt="2")
    assert (old.journal.price_per_point, new.journal.price_per_point) == (
        Decimal("1.1000"),
        Decimal("1.2500"),
    )
    # The issuer's price above nominal is the operator's margin; the pool stays at nominal
    margin = Account.objects.get(coalition=coalition, kind=AccountKind.MARGIN)
    assert sum(e.value for e in margin.entries.all()) == Decimal("3.5000")
    burn = points_burn(
        till=till_b, member=member, points=20, bill_amount=Decimal("50"), receipt="3"
    )
    variance = Account.objects.get(coalition=coalition, kind=AccountKind.VARIANCE)
    assert [e.value for e in variance.entries.all()] == [Decimal("2.0000")]
    assert burn.journal.reimbursement_per_point == Decimal("0.9000")
    # A later rate never rewrites history
    TenantRate.objects.filter(tenant=till_a.tenant).update(price_per_point=Decimal("2.0000"))
    old.journal.refresh_from_db()
    assert old.journal.price_per_point == Decimal("1.1000")


def test_holdback_keeps_points_pending_until_released(coalition, till_a, till_b, member):
    Coalition.objects.filter(pk=coalition.pk).update(holdback_days=7)
    member.coalition.refresh_from_db()
    till_a.tenant.coalition.refresh_from_db()
    till_b.tenant.coalition.refresh_from_db()
    earned = points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="1")
    assert (earned.balance, earned.pending) == (0, 40)
    with pytest.raises(InsufficientPoints):
        points_burn(till=till_b, member=member, points=10, bill_amount=Decimal("50"), receipt="2")
    # A return inside the window cancels pending points before they can be spent
    refund = points_reverse(
        original=earned.journal, tenant=till_a.tenant, reason="r", amount=Decimal("1000.00")
    )
    assert (refund.balance, refund.pending) == (0, 30)
    assert points_release(as_of=timezone.now() + timedelta(days=3)) == 0
    assert points_release(as_of=timezone.now() + timedelta(days=8)) == 1
    balances = member_balances(member)
    assert (balances.balance, balances.pending) == (30, 0)
    assert Lot.objects.get(member=member).pending_until is None
    # Idempotent: a second run releases nothing more
    assert points_release(as_of=timezone.now() + timedelta(days=8)) == 0


def test_every_member_entry_records_balances_before_and_after(till_a, till_b, member):
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="1")
    points_burn(till=till_b, member=member, points=15, bill_amount=Decimal("50"), receipt="2")
    rows = list(
        Entry.objects.filter(account__member=member, account__kind=AccountKind.MEMBER_POINTS)
        .order_by("id")
        .values_list("balance_before", "points", "balance_after")
    )
    assert rows == [(0, 40, 40), (40, -15, 25)]
    tenant_rows = Entry.objects.filter(account__tenant__isnull=False)
    assert set(tenant_rows.values_list("balance_before", "balance_after")) == {(None, None)}


def test_holdback_lasts_whole_days_not_until_midnight(coalition, till_a, member):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    Coalition.objects.filter(pk=coalition.pk).update(holdback_days=1)
    till_a.tenant.coalition.refresh_from_db()
    late = datetime(2025, 3, 1, 23, 59, tzinfo=ZoneInfo("Asia/Kolkata"))
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1000.00"),
        receipt="1",
        occurred_at=late,
        now=late,
    )
    # Six minutes later it is another day, but not a day later: still pending
    assert points_release(as_of=late + timedelta(minutes=6)) == 0
    assert member_balances(member).pending == 10
    assert points_release(as_of=late + timedelta(days=1)) == 1
    assert member_balances(member).balance == 10
