"""Expiry: FIFO lots, part-consumed lots, idempotent catch-up, breakage."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from coalition.models import Account, AccountKind, Coalition, ExpiryPolicy, JournalKind, Lot
from coalition.services import lots_expire, points_burn, points_earn, points_reverse
from coalition.services.notices import expiry_notices_queue
from coalition.services.programme import lot_expiry
from members.selectors import member_balances, member_expiring

IST = ZoneInfo("Asia/Kolkata")


def sweep(as_of: datetime) -> int:
    """The daily jobs as they would have run: the notice recorded a window before the sweep."""
    expiry_notices_queue(now=as_of - timedelta(days=30))
    return lots_expire(as_of=as_of)


def at(year, month, day, hour=12):
    return datetime(year, month, day, hour, tzinfo=IST)


def test_expiry_of_part_consumed_lots(till_a, till_b, member, assert_ledger_clean):
    # Given lots earned in January and March of one year, partly spent FIFO
    jan = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("4000.00"),
        receipt="1",
        occurred_at=at(2025, 1, 10),
        now=at(2025, 1, 10),
    )
    mar = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("3000.00"),
        receipt="2",
        occurred_at=at(2025, 3, 5),
        now=at(2025, 3, 5),
    )
    points_burn(
        till=till_b,
        member=member,
        points=50,
        bill_amount=Decimal("500"),
        receipt="3",
        occurred_at=at(2025, 6, 1),
        now=at(2025, 6, 1),
    )
    jan_lot, mar_lot = Lot.objects.get(journal=jan.journal), Lot.objects.get(journal=mar.journal)
    assert jan_lot.expires_on == date(2026, 1, 9)
    assert (jan_lot.remaining, Lot.objects.get(pk=mar_lot.pk).remaining) == (0, 20)
    # The January lot is spent; nothing is due on its last day
    assert sweep(as_of=at(2026, 1, 9, 23)) == 0
    # When the sweep runs after the March lot's last day
    assert sweep(as_of=at(2026, 3, 5, 0)) == 20
    # Then only what remained of it expires, to the breakage account
    assert member_balances(member).balance == 0
    breakage = Account.objects.get(coalition=member.coalition, kind=AccountKind.BREAKAGE)
    assert [(e.points, e.journal.kind) for e in breakage.entries.all()] == [
        (20, JournalKind.EXPIRE)
    ]
    # And a rerun expires nothing more
    assert sweep(as_of=at(2026, 4, 1)) == 0
    assert_ledger_clean(member.coalition)


def test_sweep_catches_up_on_everything_due(till_a, member, assert_ledger_clean):
    for month in (1, 2, 3):
        points_earn(
            till=till_a,
            member=member,
            amount=Decimal("1000.00"),
            receipt=f"{month}",
            occurred_at=at(2024, month, 1),
            now=at(2024, month, 1),
        )
    assert sweep(as_of=at(2025, 6, 1)) == 30
    assert_ledger_clean(member.coalition)


def test_expiring_points_for_lookup(till_a, member):
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1000.00"),
        receipt="1",
        occurred_at=at(2025, 1, 20),
        now=at(2025, 1, 20),
    )
    assert member_expiring(member, now=at(2025, 12, 1)) == []
    assert member_expiring(member, now=at(2026, 1, 1)) == [(10, date(2026, 1, 19))]


def test_expiry_policies(coalition):
    day = date(2025, 4, 15)
    assert lot_expiry(coalition, day) == date(2026, 4, 14)
    coalition.expiry_policy = ExpiryPolicy.NONE
    assert lot_expiry(coalition, day) is None
    coalition.expiry_policy = ExpiryPolicy.CALENDAR
    coalition.expiry_months, coalition.expiry_sweep_month, coalition.expiry_sweep_day = 36, 3, 31
    assert lot_expiry(coalition, day) == date(2029, 3, 31)
    assert lot_expiry(coalition, date(2025, 2, 1)) == date(2028, 3, 31)


def test_sliding_expiry_moves_with_activity(coalition, till_a, member):
    Coalition.objects.filter(pk=coalition.pk).update(
        expiry_policy=ExpiryPolicy.SLIDING, expiry_months=6
    )
    till_a.tenant.coalition.refresh_from_db()
    first = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1000.00"),
        receipt="1",
        occurred_at=at(2025, 1, 1),
        now=at(2025, 1, 1),
    )
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1000.00"),
        receipt="2",
        occurred_at=at(2025, 5, 1),
        now=at(2025, 5, 1),
    )
    assert Lot.objects.get(journal=first.journal).expires_on == date(2025, 10, 31)
    assert sweep(as_of=at(2025, 9, 1)) == 0
    assert sweep(as_of=at(2025, 11, 2)) == 20


def test_refund_after_expiry_takes_the_points_back_from_breakage(
    till_a, till_b, member, assert_ledger_clean
):
    # Given 40 points earned, 10 spent and 30 expired
    earned = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("4000.00"),
        receipt="1",
        occurred_at=at(2025, 1, 10),
        now=at(2025, 1, 10),
    )
    points_burn(
        till=till_b,
        member=member,
        points=10,
        bill_amount=Decimal("500"),
        receipt="2",
        occurred_at=at(2025, 2, 1),
        now=at(2025, 2, 1),
    )
    assert sweep(as_of=at(2026, 2, 1)) == 30
    # When the purchase is refunded in two parts
    first = points_reverse(
        original=earned.journal,
        tenant=till_a.tenant,
        reason="late return",
        amount=Decimal("2500.00"),
        now=at(2026, 2, 2),
    )
    # Then the 25 points come out of breakage: the member does not lose them a second time
    assert (first.journal.points, first.balance) == (25, 0)
    rest = points_reverse(
        original=earned.journal, tenant=till_a.tenant, reason="rest", now=at(2026, 2, 3)
    )
    # And of the last 15, only 5 were still in breakage: the 10 spent ones go negative, once
    assert (rest.journal.points, rest.balance) == (15, -10)
    breakage = Account.objects.get(coalition=member.coalition, kind=AccountKind.BREAKAGE)
    assert sum(e.points for e in breakage.entries.all()) == 0
    assert_ledger_clean(member.coalition)


def test_a_voided_burn_under_sliding_expiry_gets_a_fresh_date(coalition, till_a, till_b, member):
    Coalition.objects.filter(pk=coalition.pk).update(
        expiry_policy=ExpiryPolicy.SLIDING, expiry_months=6
    )
    for till in (till_a, till_b):
        till.tenant.coalition.refresh_from_db()
    first = points_earn(
        till=till_a,
        member=member,
        amount=Decimal("10000.00"),
        receipt="1",
        occurred_at=at(2025, 1, 10),
        now=at(2025, 1, 10),
    )
    spent = points_burn(
        till=till_b,
        member=member,
        points=100,
        bill_amount=Decimal("500"),
        receipt="2",
        occurred_at=at(2025, 2, 1),
        now=at(2025, 2, 1),
    )
    # The emptied lot kept its old date; voiding the burn months later is activity
    points_reverse(original=spent.journal, tenant=till_b.tenant, reason="void", now=at(2025, 12, 5))
    lot = Lot.objects.get(journal=first.journal)
    assert (lot.remaining, lot.expires_on) == (100, date(2026, 6, 4))
    assert sweep(as_of=at(2025, 12, 6)) == 0
    assert member_balances(member).balance == 100
