"""Expiry policies against the services' own clocks: time-machine travels to each side of a
boundary and the daily jobs run there as beat runs them, with no `now=`/`occurred_at=`/`as_of=`.

The notice job is taken to run at local midnight: points whose last day ends at `boundary` come
into the 30-day window at `boundary - WINDOW`, not a minute earlier, so their notice is exactly a
window old when they start to expire."""

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Sum

from coalition.errors import InsufficientPoints
from coalition.models import (
    Account,
    AccountKind,
    Coalition,
    ExpiryNotice,
    ExpiryPolicy,
    JournalKind,
    Lot,
)
from coalition.services import lots_expire, points_burn, points_earn, points_release, points_reverse
from coalition.services.notices import expiry_notices_queue
from coalition.services.programme import lot_expiry
from members.models import Member
from members.selectors import Balances, member_balances
from tenants.models import Till

IST = ZoneInfo("Asia/Kolkata")
MINUTE = timedelta(minutes=1)
WINDOW = timedelta(days=30)  # the default `expiry_notice_days`
Check = Callable[[Coalition], None]
PAYBACK = {
    "expiry_policy": ExpiryPolicy.CALENDAR,
    "expiry_months": 36,
    "expiry_sweep_month": 3,
    "expiry_sweep_day": 31,
}
SLIDING_6 = {"expiry_policy": ExpiryPolicy.SLIDING, "expiry_months": 6}


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=IST)


def midnight_after(last_day: date) -> datetime:
    """The local moment points whose last spendable day is `last_day` start to expire."""
    return datetime.combine(last_day + timedelta(days=1), time(), tzinfo=IST)


def coalition_set(coalition: Coalition, member: Member, *tills: Till, **fields: Any) -> None:
    Coalition.objects.filter(pk=coalition.pk).update(**fields)
    for one in (coalition, member.coalition, *(till.tenant.coalition for till in tills)):
        one.refresh_from_db()


def earn(till: Till, member: Member, points: int, receipt: str) -> Lot:
    """Earn `points` (a purchase of 100 times as many rupees); returns their lot."""
    amount = Decimal(points * 100)
    posting = points_earn(till=till, member=member, amount=amount, receipt=receipt)
    return Lot.objects.get(journal=posting.journal)


def burn(till: Till, member: Member, points: int, receipt: str) -> int:
    """Spend `points`; returns the balance left."""
    return points_burn(
        till=till, member=member, points=points, bill_amount=Decimal("5000.00"), receipt=receipt
    ).balance


def notices_at(moment: datetime) -> int:
    with time_machine.travel(moment, tick=False):
        return expiry_notices_queue()


def sweep_at(moment: datetime) -> int:
    with time_machine.travel(moment, tick=False):
        return lots_expire()


def daily_jobs_at(moment: datetime) -> int:
    """Beat's expiry jobs at `moment`: record the notices due, then sweep. Points expired."""
    with time_machine.travel(moment, tick=False):
        expiry_notices_queue()
        return lots_expire()


def expire_straddling(last_day: date) -> tuple[int, int]:
    """Points expired by sweeps a minute before and a minute after `last_day` ends, with the
    notice recorded the moment the window opened (and not a minute before)."""
    boundary = midnight_after(last_day)
    assert notices_at(boundary - WINDOW - MINUTE) == 0
    assert notices_at(boundary - WINDOW) == 1
    return sweep_at(boundary - MINUTE), sweep_at(boundary + MINUTE)


def remaining(lot: Lot) -> int:
    return Lot.objects.get(pk=lot.pk).remaining


def breakage(coalition: Coalition) -> int:
    account = Account.objects.get(coalition=coalition, kind=AccountKind.BREAKAGE)
    return account.entries.aggregate(total=Sum("points"))["total"] or 0


def test_no_expiry_keeps_points_earned_years_ago(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Check
) -> None:
    # Given a programme whose points never expire, and 40 points earned in 2015
    coalition_set(coalition, member, till_a, till_b, expiry_policy=ExpiryPolicy.NONE)
    with time_machine.travel(at(2015, 6, 1), tick=False):
        lot = earn(till_a, member, 40, "1")
    assert lot.expires_on is None
    # When the daily jobs run a year later (when a 12-month term would end) and years after
    for moment in (midnight_after(date(2016, 5, 31)) + MINUTE, at(2020, 1, 1), at(2025, 6, 2)):
        with time_machine.travel(moment, tick=False):
            # Then no notice is recorded and nothing expires
            assert (expiry_notices_queue(), lots_expire()) == (0, 0)
    assert not ExpiryNotice.objects.exists()
    # And the points are still there to spend
    with time_machine.travel(at(2025, 6, 3), tick=False):
        assert burn(till_b, member, 10, "2") == 30
    assert (remaining(lot), breakage(coalition)) == (30, 0)
    assert_ledger_clean(coalition)


@pytest.mark.parametrize(
    ("months", "earned_at", "last_day"),
    [
        # 00:30 in Kolkata is still 14 April in UTC: the local date is the earn date
        pytest.param(12, at(2025, 4, 15, 0, 30), date(2026, 4, 14), id="12-months"),
        pytest.param(1, at(2025, 3, 10), date(2025, 4, 9), id="1-month"),
        # One month from 31 January is clamped to 28 February: the last day is the 27th
        pytest.param(1, at(2025, 1, 31, 23, 45), date(2025, 2, 27), id="1-month-from-31-jan"),
    ],
)
@pytest.mark.parametrize("window_later", [30, 1], ids=["window-30", "window-then-1"])
def test_fixed_term_points_last_through_their_last_day(
    coalition: Coalition,
    till_a: Till,
    till_b: Till,
    member: Member,
    assert_ledger_clean: Check,
    months: int,
    earned_at: datetime,
    last_day: date,
    window_later: int,
) -> None:
    # Given a fixed term of `months`, and 40 points earned at `earned_at`
    coalition_set(coalition, member, till_a, till_b, expiry_months=months)
    assert lot_expiry(coalition, earned_at.date()) == last_day
    with time_machine.travel(earned_at, tick=False):
        lot = earn(till_a, member, 40, "1")
    assert (lot.expires_on, lot.journal.posted_at) == (last_day, earned_at)
    # And the notice recorded the moment the window opened, not a minute before
    boundary = midnight_after(last_day)
    assert notices_at(boundary - WINDOW - MINUTE) == 0
    assert notices_at(boundary - WINDOW) == 1
    # (With the window shortened to a day afterwards, the notice is no longer what holds the
    # points back at 23:59: only their last day is.)
    coalition_set(coalition, member, till_a, till_b, expiry_notice_days=window_later)

    # When the sweep runs at 23:59 local on the last day
    with time_machine.travel(boundary - MINUTE, tick=False):
        assert lots_expire() == 0
        # Then nothing expires and the points can still be spent
        assert burn(till_b, member, 10, "2") == 30

    # When it runs at 00:01 the next day
    assert sweep_at(boundary + MINUTE) == 30
    # Then what was left expires to breakage, stamped with the sweep's own clock, once
    assert (remaining(lot), member_balances(member).balance, breakage(coalition)) == (0, 0, 30)
    [expired] = member.journals.filter(kind=JournalKind.EXPIRE)
    assert (expired.points, expired.occurred_at) == (30, boundary + MINUTE)
    assert daily_jobs_at(boundary + timedelta(days=1)) == 0
    assert_ledger_clean(coalition)


def test_calendar_sweep_takes_points_that_turned_n_months_by_its_date(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Check
) -> None:
    # Given PAYBACK's rule: points older than 36 months go at the sweep on 31 March
    coalition_set(coalition, member, till_a, till_b, **PAYBACK)
    # And lots that turn 36 months the day before the sweep date, on it, and the day after
    lots = []
    for receipt, (moment, points) in enumerate(
        [(at(2025, 3, 30), 10), (at(2025, 3, 31), 20), (at(2025, 4, 1), 40)]
    ):
        with time_machine.travel(moment, tick=False):
            lots.append(earn(till_a, member, points, f"{receipt}"))
    before, on_the_day, after = lots
    assert [lot.expires_on for lot in lots] == [date(2028, 3, 31)] * 2 + [date(2029, 3, 31)]

    # When the 2028 sweep runs at 23:59 on 31 March and at 00:01 on 1 April
    # Then the two lots that had turned 36 months go at 00:01, and only they
    assert expire_straddling(date(2028, 3, 31)) == (0, 30)
    assert [remaining(lot) for lot in lots] == [0, 0, 40]
    assert member_balances(member).balance == 40
    # And the lot a day too young survives the year, spendable, until the 2029 sweep
    assert daily_jobs_at(at(2028, 12, 31)) == 0
    with time_machine.travel(at(2029, 1, 15), tick=False):
        assert burn(till_b, member, 5, "burn") == 35
    assert expire_straddling(date(2029, 3, 31)) == (0, 35)
    assert (remaining(after), member_balances(member).balance, breakage(coalition)) == (0, 0, 65)
    assert (remaining(before), remaining(on_the_day)) == (0, 0)
    assert_ledger_clean(coalition)


@pytest.mark.parametrize(("activity", "expiring"), [("burn", 30), ("earn", 50)])
def test_sliding_activity_moves_every_open_lot_and_a_fresh_notice_precedes_expiry(
    coalition: Coalition,
    till_a: Till,
    till_b: Till,
    member: Member,
    assert_ledger_clean: Check,
    activity: str,
    expiring: int,
) -> None:
    # Given sliding expiry after 6 months, 40 points earned on 10 January (last day 9 July)
    coalition_set(coalition, member, till_a, till_b, **SLIDING_6)
    with time_machine.travel(at(2025, 1, 10), tick=False):
        first = earn(till_a, member, 40, "1")
    original = midnight_after(date(2025, 7, 9))
    assert first.expires_on == date(2025, 7, 9)
    # And its notice recorded as the window opened
    assert notices_at(original - WINDOW) == 1

    # When the member burns 10 points, or earns 10 more, on 20 June
    with time_machine.travel(at(2025, 6, 20), tick=False):
        if activity == "burn":
            burn(till_b, member, 10, "2")
        else:
            earn(till_a, member, 10, "2")

    # Then every open lot's last day moves to 6 months on, and the notice of the old date is
    # no longer theirs
    new_last_day = date(2025, 12, 19)
    assert set(member.lots.values_list("expires_on", "notice")) == {(new_last_day, None)}
    # And past the original last day, with the daily jobs run as beat would, nothing expires
    for moment in (original - MINUTE, original + MINUTE, at(2025, 9, 1)):
        assert daily_jobs_at(moment) == 0
    assert member_balances(member).balance == expiring
    # And the points go a minute after the new last day, told by a notice of the new date
    assert expire_straddling(new_last_day) == (0, expiring)
    fresh = ExpiryNotice.objects.latest("created_at")
    assert (fresh.points, fresh.first_expiry) == (expiring, new_last_day)
    assert (member_balances(member).balance, breakage(coalition)) == (0, expiring)
    assert_ledger_clean(coalition)


def test_sliding_a_notice_of_the_old_date_does_not_let_the_slid_points_expire(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Check
) -> None:
    # Given sliding expiry after 6 months, a lot noticed for its last day of 9 July
    coalition_set(coalition, member, till_a, till_b, **SLIDING_6)
    with time_machine.travel(at(2025, 1, 10), tick=False):
        lot = earn(till_a, member, 40, "1")
    assert notices_at(midnight_after(date(2025, 7, 9)) - WINDOW) == 1
    # And a burn on 20 June that moved its last day to 19 December
    with time_machine.travel(at(2025, 6, 20), tick=False):
        burn(till_b, member, 10, "2")

    # When the sweep runs after 19 December with no notice recorded since the slide
    new_boundary = midnight_after(date(2025, 12, 19))
    # Then the June notice (about 9 July) does not count: nothing expires
    assert sweep_at(new_boundary + MINUTE) == 0
    assert (remaining(lot), member_balances(member).balance) == (30, 30)
    # And a notice of the new date, recorded now, lets the points go a full window later
    noticed = new_boundary + 2 * MINUTE
    assert notices_at(noticed) == 1
    assert sweep_at(noticed + WINDOW - MINUTE) == 0
    assert sweep_at(noticed + WINDOW) == 30
    assert (remaining(lot), member_balances(member).balance, breakage(coalition)) == (0, 0, 30)
    assert_ledger_clean(coalition)


def test_pending_points_are_released_after_the_holdback_not_a_minute_before(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Check
) -> None:
    # Given a 7-day holdback and 40 points earned at 18:30 on 1 March
    coalition_set(coalition, member, till_a, till_b, holdback_days=7)
    earned_at = at(2025, 3, 1, 18, 30)
    with time_machine.travel(earned_at, tick=False):
        lot = earn(till_a, member, 40, "1")
    assert member_balances(member) == Balances(balance=0, pending=40)

    # When the release job runs a minute before 7 days are up
    with time_machine.travel(earned_at + timedelta(days=7) - MINUTE, tick=False):
        # Then nothing is released and the points cannot be spent
        assert points_release() == 0
        with pytest.raises(InsufficientPoints):
            burn(till_b, member, 10, "2")
    assert member_balances(member) == Balances(balance=0, pending=40)

    # When it runs at 7 days
    with time_machine.travel(earned_at + timedelta(days=7), tick=False):
        assert points_release() == 1
        # Then the points are released and can be spent
        assert burn(till_b, member, 10, "2") == 30
    [release] = member.journals.filter(kind=JournalKind.RELEASE)
    assert (release.points, release.occurred_at) == (40, earned_at + timedelta(days=7))
    lot.refresh_from_db()
    assert (lot.pending_until, lot.remaining) == (None, 30)
    assert member_balances(member) == Balances(balance=30, pending=0)
    assert_ledger_clean(coalition)


def test_a_return_inside_the_holdback_cancels_pending_points_so_none_are_released(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member, assert_ledger_clean: Check
) -> None:
    # Given a 7-day holdback and 40 points earned, pending
    coalition_set(coalition, member, till_a, till_b, holdback_days=7)
    earned_at = at(2025, 3, 1, 18, 30)
    with time_machine.travel(earned_at, tick=False):
        lot = earn(till_a, member, 40, "1")

    # When the purchase is returned on day 3
    with time_machine.travel(earned_at + timedelta(days=3), tick=False):
        refund = points_reverse(original=lot.journal, tenant=till_a.tenant, reason="returned")
    assert (refund.balance, refund.pending) == (0, 0)

    # Then the release job at 7 days releases nothing for them
    with time_machine.travel(earned_at + timedelta(days=7), tick=False):
        assert points_release() == 0
        with pytest.raises(InsufficientPoints):
            burn(till_b, member, 1, "2")
    assert not member.journals.filter(kind=JournalKind.RELEASE).exists()
    assert (remaining(lot), member_balances(member)) == (0, Balances(balance=0, pending=0))
    assert_ledger_clean(coalition)


@pytest.mark.parametrize(
    ("change", "new_last_day"),
    [
        pytest.param(
            {"expiry_policy": ExpiryPolicy.CALENDAR, "expiry_months": 36},
            date(2029, 3, 31),  # 36 months from 10 May 2025, at the next 31 March sweep
            id="fixed-to-calendar",
        ),
        pytest.param({"expiry_months": 3}, date(2025, 8, 9), id="fixed-12-to-fixed-3"),
    ],
)
def test_a_policy_change_dates_new_lots_only(
    coalition: Coalition,
    till_a: Till,
    till_b: Till,
    member: Member,
    assert_ledger_clean: Check,
    change: dict[str, Any],
    new_last_day: date,
) -> None:
    # Given 40 points earned under the default 12-month term
    with time_machine.travel(at(2025, 4, 15), tick=False):
        old = earn(till_a, member, 40, "1")
    assert old.expires_on == date(2026, 4, 14)

    # When staff change the policy and the member earns 10 more points
    coalition_set(coalition, member, till_a, till_b, **change)
    assert lot_expiry(coalition, date(2025, 5, 10)) == new_last_day
    with time_machine.travel(at(2025, 5, 10), tick=False):
        new = earn(till_a, member, 10, "2")

    # Then the old lot keeps its date and the new one has the new policy's
    old.refresh_from_db()
    assert (old.expires_on, new.expires_on) == (date(2026, 4, 14), new_last_day)
    # And each expires on its own date: the first due goes alone, the other stays whole
    first, later = (old, new) if date(2026, 4, 14) < new_last_day else (new, old)
    assert expire_straddling(min(date(2026, 4, 14), new_last_day)) == (0, first.points)
    assert (remaining(first), remaining(later)) == (0, later.points)
    assert member_balances(member).balance == later.points
    assert_ledger_clean(coalition)
