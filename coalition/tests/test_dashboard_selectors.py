"""The dashboard's figures on crafted data: every figure exact, live and from stored rows alike.

Given three tenants (apparel A, food court B, cinema C) and three members posting through the
ledger services at chosen times (IST), when the dashboard is asked for January and for
February 2026, then each figure is the one worked out by hand below.
"""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from coalition.models import Campaign, CampaignAward, CampaignKind, Journal, Lot
from coalition.selectors.dashboard import OPERATOR, dashboard, expiring_points
from coalition.selectors.dashboard.campaigns import MALL, campaign_rows, cross_shop_lift
from coalition.selectors.dashboard.daily import (
    daily_figures_compute,
    daily_figures_sums,
    day_figures_next,
)
from coalition.services import points_burn, points_earn, points_reverse
from coalition.services.figures import daily_figures_refresh
from members.tests.factories import MemberFactory
from tenants.tests.factories import TenantFactory, TillFactory

IST = ZoneInfo("Asia/Kolkata")
FEB_15 = datetime(2026, 2, 15, 12, tzinfo=IST)


def at(month: int, day: int, hour: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=IST)


def earn(till, member, amount: str, when: datetime, receipt: str, occurred=None) -> Journal:
    return points_earn(
        till=till,
        member=member,
        amount=Decimal(amount),
        receipt=receipt,
        occurred_at=occurred or when,
        now=when,
    ).journal


def burn(till, member, points: int, when: datetime, receipt: str) -> Journal:
    return points_burn(
        till=till,
        member=member,
        points=points,
        bill_amount=Decimal("1000"),
        receipt=receipt,
        occurred_at=when,
        now=when,
    ).journal


@pytest.fixture
def till_c(coalition):
    tenant = TenantFactory.create(
        coalition=coalition, slug="cinema", name="Cinema", category="entertainment"
    )
    return TillFactory.create(tenant=tenant, code="c1")


@pytest.fixture
def crafted(coalition, till_a, till_b, till_c):
    """January: m1 earns 40 at A and 25 at B on the 5th, redeems 30 at B on the 20th (taken
    from the A lot: A -> B 30); m2 earns 10 and 20 at A on the 10th (one visit), 5 of the first
    refunded on the 12th; m3 enrolled, no purchase.
    February to the 15th: m2 redeems 20 at C on the 3rd (A -> C), 8 of it reversed on the 4th;
    m1's purchase of 28 January at A (7 points) is posted late, on 10 February; m3 earns 15 at
    C and 10 at B on the 14th."""
    m1 = MemberFactory.create(coalition=coalition, now=at(1, 1))
    m2 = MemberFactory.create(coalition=coalition, now=at(1, 1))
    m3 = MemberFactory.create(coalition=coalition, now=at(1, 2))
    earn(till_a, m1, "4000.00", at(1, 5), "m1-1")
    earn(till_b, m1, "2500.00", at(1, 5, 15), "m1-2")
    refunded = earn(till_a, m2, "1000.00", at(1, 10), "m2-1")
    earn(till_a, m2, "2000.00", at(1, 10, 18), "m2-2")
    points_reverse(
        original=refunded, tenant=till_a.tenant, reason="return", amount=Decimal("500.00"),
        now=at(1, 12),
    )  # fmt: skip
    burn(till_b, m1, 30, at(1, 20), "m1-3")
    redeemed = burn(till_c, m2, 20, at(2, 3), "m2-3")
    points_reverse(original=redeemed, tenant=till_c.tenant, reason="void", points=8, now=at(2, 4))
    earn(till_a, m1, "700.00", at(2, 10), "m1-4", occurred=at(1, 28))
    earn(till_c, m3, "1500.00", at(2, 14), "m3-1")
    earn(till_b, m3, "1000.00", at(2, 14, 13), "m3-2")
    return m1, m2, m3


def test_january_figures(coalition, crafted):
    figures = dashboard(coalition, date(2026, 1, 1), now=FEB_15)
    assert (figures.first, figures.last, figures.current) == (
        date(2026, 1, 1),
        date(2026, 1, 31),
        False,
    )
    assert figures.members == 3
    # Purchases 2 Jan to 31 Jan: m1 (the 5th, the 20th) and m2 (the 10th).
    assert figures.active_30d == 2
    assert (figures.buyers, figures.cross_shoppers, figures.cross_shop_rate) == (
        2,
        1,
        Decimal("50.0"),
    )
    # m1: A and B on the 5th, B on the 20th; m2: A on the 10th (two receipts, one visit).
    assert (figures.visits, figures.purchases, figures.visits_per_member) == (
        4,
        5,
        Decimal("2.00"),
    )
    assert (figures.issued, figures.issued_reversed, figures.issued_net) == (95, 5, 90)
    assert (figures.redeemed, figures.redeemed_reversed, figures.redeemed_net) == (30, 0, 30)
    assert figures.expired == 0
    assert (figures.liability, figures.liability_value) == (60, Decimal("60.00"))
    assert figures.tenant_flow.issuers == ["Apparel Co"]
    assert figures.tenant_flow.redeemers == ["Food Court"]
    assert figures.tenant_flow.cells == [[30]]
    assert figures.category_flow.cell("Apparel", "Food court & restaurants") == 30


def test_february_so_far(coalition, crafted):
    figures = dashboard(coalition, now=FEB_15)
    assert (figures.month, figures.last, figures.current) == (
        date(2026, 2, 1),
        date(2026, 2, 15),
        True,
    )
    # 17 Jan to 15 Feb: m1 (20 Jan, and the late posting of 10 Feb), m2 (3 Feb), m3 (14 Feb).
    assert figures.active_30d == 3
    # The late posting counts on its posting date: m1 bought in February, at A only.
    assert (figures.buyers, figures.cross_shoppers, figures.cross_shop_rate) == (
        3,
        1,
        Decimal("33.3"),
    )
    assert (figures.visits, figures.visits_per_member) == (4, Decimal("1.33"))
    assert (figures.issued_net, figures.redeemed, figures.redeemed_reversed) == (32, 20, 8)
    assert figures.liability == 80  # m1 42, m2 13, m3 25
    assert figures.tenant_flow.cells == [[12]]  # 20 from A's lots at C, 8 given back
    assert [(m.month, m.issued, m.redeemed, m.liability) for m in figures.months[-3:]] == [
        (date(2025, 12, 1), 0, 0, 0),
        (date(2026, 1, 1), 90, 30, 60),
        (date(2026, 2, 1), 32, 12, 80),
    ]
    assert [m.cross_shop_rate for m in figures.months[-3:]] == [
        None,
        Decimal("50.0"),
        Decimal("33.3"),
    ]
    assert len(figures.months) == 12


def test_stored_rows_give_the_same_figures(coalition, crafted):
    live = dashboard(coalition, date(2026, 1, 1), now=FEB_15)
    assert daily_figures_refresh(coalition=coalition, now=FEB_15) > 0
    stored = dashboard(coalition, date(2026, 1, 1), now=FEB_15)
    assert stored.live_days == [FEB_15.date()]  # only today is computed live now
    for name in ("members", "active_30d", "buyers", "cross_shoppers", "visits", "issued"):
        assert getattr(stored, name) == getattr(live, name), name
    assert (stored.liability, stored.months, stored.tenant_flow) == (
        live.liability,
        live.months,
        live.tenant_flow,
    )


def test_operator_funded_points_flow_from_the_operator(coalition, crafted, till_b, staff):
    from coalition.services import points_adjust

    m1, _, _ = crafted
    points_adjust(member=m1, points=5, reason="goodwill", actor=staff, now=at(2, 11))
    Lot.objects.filter(member=m1).exclude(funding_tenant=None).update(
        expires_on=date(2027, 12, 31)
    )  # so that the burn takes the adjustment's lot first
    burn(till_b, m1, 5, at(2, 12), "m1-5")
    figures = dashboard(coalition, now=FEB_15)
    assert figures.tenant_flow.cell(OPERATOR, "Food Court") == 5


def test_expiring_in_the_next_30_days(coalition, crafted):
    m1, m2, _ = crafted
    # The next 30 days from 15 February, today included, end on 16 March.
    Lot.objects.filter(member=m1).update(expires_on=date(2026, 3, 17))
    Lot.objects.filter(member=m2).update(expires_on=date(2026, 3, 16))
    assert expiring_points(coalition, FEB_15.date()) == 13


@pytest.fixture
def campaigns(coalition, crafted, till_a):
    """A tenant-funded multiplier and the mall's cross-shop bonus, with a refund's award."""
    m1, m2, _ = crafted
    double = Campaign.objects.create(
        coalition=coalition, name="Double at Apparel", kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant, multiplier=Decimal("2.00"), starts_on=date(2026, 1, 1),
        ends_on=date(2026, 1, 31), paused=True,
    )  # fmt: skip
    bonus = Campaign.objects.create(
        coalition=coalition, name="Shop two, get 50", kind=CampaignKind.CROSS_SHOP,
        bonus_points=50, starts_on=date(2026, 1, 1), ends_on=date(2026, 2, 28), paused=True,
    )  # fmt: skip
    journals = {j.receipt: j for j in Journal.objects.filter(coalition=coalition)}

    def award(campaign, receipt, member, points, tenant, when):
        CampaignAward.objects.create(
            campaign=campaign, journal=journals[receipt], member=member, points=points,
            value=Decimal(points) * Decimal("1.25" if tenant else "1"), funding_tenant=tenant,
            occurred_on=when.date(), posted_at=when,
        )  # fmt: skip

    award(double, "m1-1", m1, 40, till_a.tenant, at(1, 5))
    award(double, "m2-2", m2, 20, till_a.tenant, at(1, 10, 18))
    award(bonus, "m1-2", m1, 50, None, at(1, 5, 15))
    award(bonus, "m1-2", m1, -10, None, at(1, 31, 23))  # a refund's award, still January
    award(bonus, "m2-3", m2, 50, None, at(2, 1, 0))  # 1 February, 00:00 IST: February
    return double, bonus


def test_campaign_points_and_cost_by_funder(coalition, campaigns):
    rows = campaign_rows(coalition, date(2026, 1, 1), date(2026, 1, 31))
    assert [(r.name, r.funder, r.points, r.members, r.cost) for r in rows] == [
        ("Double at Apparel", "Apparel Co", 60, 2, Decimal("75.0000")),
        ("Shop two, get 50", MALL, 40, 1, Decimal("40.0000")),
    ]
    figures = dashboard(coalition, date(2026, 1, 1), now=FEB_15)
    assert (figures.campaign_points, figures.campaign_cost) == (100, Decimal("115.0000"))


@pytest.fixture
def lift_data(coalition, till_a, till_b, till_c):
    """January 2026, seen on 15 March (every January anchor's 30 days after have ended).

    r1: bonus on 10 Jan; before: A (20 Dec); after: A (15 Jan), B (20 Jan)  -> after only
    r2: bonus on 20 Jan; before: A (1 Jan), B (2 Jan); after: A (25 Jan)    -> before only
    r3: bonus on 25 Jan; before: nothing; after: A (1 Feb), C (3 Feb)       -> after only
    r0: first bonus in December, buys in January: in neither group
    n1: first January purchase 5 Jan (A); after: A (7 Jan), C (8 Jan)       -> after only
    n2: first January purchase 3 Jan (A), nothing else                      -> neither
    w1: first bonus on 20 Feb: waiting, for February seen on 15 March.
    """
    bonus = Campaign.objects.create(
        coalition=coalition, name="Cross-shop", kind=CampaignKind.CROSS_SHOP, bonus_points=50,
        starts_on=date(2025, 12, 1), ends_on=date(2026, 2, 28), paused=True,
    )  # fmt: skip
    tills = {"A": till_a, "B": till_b, "C": till_c}
    made: dict[str, object] = {}

    def member(name):
        if name not in made:
            made[name] = MemberFactory.create(coalition=coalition, now=at(11, 1, year=2025))
        return made[name]

    def buy(name, shop, when, bonus_points=0):
        journal = earn(tills[shop], member(name), "1000.00", when, f"{name}-{when:%m%d}-{shop}")
        if bonus_points:
            CampaignAward.objects.create(
                campaign=bonus, journal=journal, member=member(name), points=bonus_points,
                value=Decimal(bonus_points), occurred_on=when.date(), posted_at=when,
            )  # fmt: skip

    buy("r1", "A", at(12, 20, year=2025))
    buy("r1", "C", at(1, 10), bonus_points=50)
    buy("r1", "A", at(1, 15))
    buy("r1", "B", at(1, 20))
    buy("r2", "A", at(1, 1))
    buy("r2", "B", at(1, 2))
    buy("r2", "C", at(1, 20), bonus_points=50)
    buy("r2", "A", at(1, 25))
    buy("r3", "B", at(1, 25), bonus_points=50)
    buy("r3", "A", at(2, 1))
    buy("r3", "C", at(2, 3))
    buy("r0", "A", at(12, 10, year=2025), bonus_points=50)
    buy("r0", "B", at(1, 12))
    buy("n1", "A", at(1, 5))
    buy("n1", "A", at(1, 7))
    buy("n1", "C", at(1, 8))
    buy("n2", "A", at(1, 3))
    buy("w1", "A", at(2, 20), bonus_points=50)
    return bonus


def test_cross_shop_lift(coalition, lift_data):
    lift = cross_shop_lift(coalition, date(2026, 1, 1), date(2026, 1, 31), date(2026, 3, 15))
    r, o = lift.recipients, lift.others
    assert (r.members, r.before, r.after) == (3, 1, 2)
    assert (r.before_rate, r.after_rate, r.lift) == (
        Decimal("33.3"),
        Decimal("66.7"),
        Decimal("33.4"),
    )
    assert (o.members, o.before, o.after) == (2, 0, 1)
    assert (o.before_rate, o.after_rate, o.lift) == (Decimal("0.0"), Decimal("50.0"), 50)
    assert lift.difference == Decimal("-16.6")
    assert lift.waiting == 0


def test_lift_waits_for_the_30_days_after(coalition, lift_data):
    # On 20 February the 30 days after 20 January have just ended (r1, r2 count); r3 waits.
    early = cross_shop_lift(coalition, date(2026, 1, 1), date(2026, 1, 31), date(2026, 2, 20))
    assert (early.recipients.members, early.waiting) == (2, 1)
    february = cross_shop_lift(coalition, date(2026, 2, 1), date(2026, 2, 28), date(2026, 3, 15))
    assert (february.recipients.members, february.waiting) == (0, 1)
    assert february.recipients.lift is None


def test_a_day_ends_at_midnight_in_the_coalitions_time_zone(coalition, till_a):
    m = MemberFactory.create(coalition=coalition, now=at(1, 1))
    # 31 Jan 23:30 IST is 18:00 UTC on 31 Jan; 1 Feb 00:30 IST is 19:00 UTC on 31 Jan.
    earn(till_a, m, "1000.00", at(1, 31, 23) + timedelta(minutes=30), "late-jan")
    earn(till_a, m, "2000.00", at(2, 1, 0) + timedelta(minutes=30), "early-feb")
    january = dashboard(coalition, date(2026, 1, 1), now=FEB_15)
    february = dashboard(coalition, date(2026, 2, 1), now=FEB_15)
    assert (january.issued, february.issued) == (10, 20)


def test_carrying_a_day_on_equals_computing_it(coalition, crafted, till_a):
    # m4 buys on 2 January only: active until 31 January, gone on 1 February (a new month too).
    m4 = MemberFactory.create(coalition=coalition, now=at(1, 1))
    earn(till_a, m4, "1000.00", at(1, 2), "m4-1")
    full = daily_figures_compute(coalition, date(2026, 1, 1), date(2026, 2, 15))
    sums = daily_figures_sums(coalition, date(2026, 1, 1), date(2026, 2, 15))
    carried = [
        day_figures_next(coalition, previous, day_sums)
        for previous, day_sums in zip(full, sums[1:], strict=False)
    ]
    assert carried == full[1:]
    assert [f.active_30d for f in full if f.day in (date(2026, 1, 31), date(2026, 2, 1))] == [3, 2]
