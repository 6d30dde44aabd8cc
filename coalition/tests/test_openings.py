"""Opening balances: the points a member held in a tenant's old programme become a lot funded by
that tenant, through one balanced journal of kind `opening`, at most once per member and tenant.
"""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import AccountKind, Coalition, Entry, Journal, JournalKind, Lot
from coalition.services import points_burn
from coalition.services.ledger import journal_at_nominal
from coalition.services.openings import OpeningBalanceExists, points_open
from coalition.services.programme import add_months, local_date
from members.models import Member
from members.services import members_merge
from members.tests.factories import MemberFactory
from settlement import services as close_services
from settlement.models import LineKind, Statement
from settlement.services import month_bounds, period_close
from tenants.models import TenantRate, Till

NOW = timezone.now()


def open_(member: Member, till: Till, points: int, **kwargs: Any) -> Journal:
    kwargs.setdefault("occurred_at", NOW - timedelta(hours=1))
    kwargs.setdefault("reference", "test row 1")
    return points_open(member=member, tenant=till.tenant, points=points, **kwargs).journal


def test_an_opening_balance_is_a_lot_funded_by_the_old_programmes_tenant(
    coalition: Coalition, till_a: Till, member: Member, staff: Any, assert_ledger_clean: Any
) -> None:
    journal = open_(member, till_a, 250, user=staff)

    assert (journal.kind, journal.points, journal.value) == (
        JournalKind.OPENING,
        250,
        Decimal("250.00"),
    )
    assert (journal.tenant, journal.receipt, journal.created_by) == (
        till_a.tenant,
        "test row 1",
        staff,
    )
    assert journal.store_id is None and journal.till_id is None
    legs = sorted(
        (entry.account.kind, entry.points, entry.value)
        for entry in Entry.objects.filter(journal=journal).select_related("account")
    )
    assert legs == [
        (AccountKind.MEMBER_POINTS, 250, Decimal("250.0000")),
        (AccountKind.TENANT_ISSUED, -250, Decimal("-250.0000")),
    ]
    lot = Lot.objects.get(journal=journal)
    assert (lot.member_id, lot.funding_tenant, lot.points, lot.remaining) == (
        member.pk,
        till_a.tenant,
        250,
        250,
    )
    # The coalition's default term: 12 months from the day the balance was struck.
    opened_on = local_date(coalition, journal.occurred_at)
    assert lot.expires_on == add_months(opened_on, 12) - timedelta(days=1)
    assert member.accounts.get(kind=AccountKind.MEMBER_POINTS).balance == 250
    assert_ledger_clean(coalition)


def test_the_tenants_price_on_the_occurred_date_funds_it_and_the_margin_is_booked(
    coalition: Coalition, till_a: Till, member: Member, assert_ledger_clean: Any
) -> None:
    today = local_date(coalition, NOW)
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from=today - timedelta(days=30),
        price_per_point=Decimal("1.2500"),
        reimbursement_per_point=Decimal("1.0000"),
    )

    journal = open_(member, till_a, 100, occurred_at=NOW - timedelta(days=1))

    assert journal.price_per_point == Decimal("1.2500")
    legs = sorted(
        (entry.account.kind, entry.points, entry.value)
        for entry in Entry.objects.filter(journal=journal).select_related("account")
    )
    assert legs == [
        (AccountKind.MARGIN, 0, Decimal("25.0000")),
        (AccountKind.MEMBER_POINTS, 100, Decimal("100.0000")),
        (AccountKind.TENANT_ISSUED, -100, Decimal("-125.0000")),
    ]
    assert_ledger_clean(coalition)


def test_the_old_programmes_expiry_date_is_kept(
    coalition: Coalition, till_a: Till, member: Member
) -> None:
    last_day = local_date(coalition, NOW) + timedelta(days=45)

    journal = open_(member, till_a, 80, expires_on=last_day)

    assert Lot.objects.get(journal=journal).expires_on == last_day


def test_one_opening_balance_per_member_and_tenant(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Any
) -> None:
    open_(member, till_a, 100)

    with pytest.raises(OpeningBalanceExists):
        open_(member, till_a, 100, reference="another file row 9")
    open_(member, till_b, 30)  # another tenant's old programme is another balance

    assert member.accounts.get(kind=AccountKind.MEMBER_POINTS).balance == 130
    assert Journal.objects.filter(kind=JournalKind.OPENING).count() == 2
    assert_ledger_clean(coalition)


def test_a_merged_members_opening_counts_for_the_survivor(
    coalition: Coalition, till_a: Till, staff: Any
) -> None:
    survivor, merged = MemberFactory.create_batch(2, coalition=coalition)
    open_(merged, till_a, 100)
    members_merge(survivor=survivor, merged=merged, actor=staff, reason="One person")

    with pytest.raises(OpeningBalanceExists):
        open_(survivor, till_a, 100)


def test_the_database_refuses_a_second_opening_even_past_the_service(
    coalition: Coalition, till_a: Till, member: Member
) -> None:
    open_(member, till_a, 100)
    second = journal_at_nominal(
        coalition=coalition,
        kind=JournalKind.OPENING,
        points=1,
        at=NOW,
        member=member,
        tenant=till_a.tenant,
        receipt="bypass",
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()


@pytest.mark.parametrize(
    ("points", "extra", "message"),
    [
        (0, {}, "An opening balance is a whole number of points above zero."),
        (10, {"reference": " "}, "A reference of 1 to 64 characters is required."),
        (10, {"occurred_at": NOW + timedelta(days=1)}, "cannot be dated in the future"),
        (10, {"expires_on": date(2000, 1, 1)}, "These points expired on 2000-01-01"),
    ],
)
def test_refusals_write_nothing(
    coalition: Coalition, till_a: Till, member: Member, points: int, extra: Any, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        open_(member, till_a, points, **extra)

    assert not Journal.objects.filter(kind=JournalKind.OPENING).exists()
    assert not Lot.objects.exists()


def test_opened_points_are_spent_and_the_close_shows_an_opening_line(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Any
) -> None:
    start, _ = month_bounds(coalition, close_services.last_ended_month(coalition, NOW))
    at = start + timedelta(days=3)
    open_(member, till_a, 40, occurred_at=at, now=at)
    points_burn(
        till=till_b,
        member=member,
        points=40,
        bill_amount=Decimal("600.00"),
        receipt="F-77",
        occurred_at=at + timedelta(days=1),
        now=at + timedelta(days=1),
    )

    period = period_close(coalition, start.date(), now=NOW)

    apparel = Statement.objects.get(period=period, tenant=till_a.tenant)
    lines = [(ln.kind, ln.count, ln.points, ln.amount) for ln in apparel.lines.all()]
    assert lines == [(LineKind.OPENING, 1, 40, Decimal("40.00"))]
    assert apparel.net_amount == Decimal("40.00")
    food = Statement.objects.get(period=period, tenant=till_b.tenant)
    assert food.net_amount == Decimal("-40.00")
    assert member.accounts.get(kind=AccountKind.MEMBER_POINTS).balance == 0
    assert Lot.objects.get(member=member).remaining == 0
    assert_ledger_clean(coalition)
