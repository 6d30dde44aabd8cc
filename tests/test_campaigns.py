"""Campaigns at earn time: tenant-funded multipliers, the mall's cross-shop bonus, caps, refunds,
and where their points land (the tenant's statement, the mall's campaign account)."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import (
    Account,
    AccountKind,
    Campaign,
    CampaignAward,
    CampaignKind,
    Coalition,
    Entry,
    Journal,
    Lot,
)
from coalition.services import points_earn, points_reverse
from coalition.services.campaigns import campaign_save, multiplier_points
from coalition.services.programme import local_date
from members.models import Member
from members.selectors import member_balances
from members.tests.factories import MemberFactory
from settlement.models import LineKind, Statement
from settlement.services import period_close
from tenants.models import Till
from tenants.tests.factories import TenantFactory, TillFactory
from tests.test_ledger_concurrency import fresh_member, fresh_till, ok, race

NOW = timezone.now()


def today(coalition: Coalition) -> date:
    return local_date(coalition, NOW)


def campaign(coalition: Coalition, **terms: Any) -> Campaign:
    day = today(coalition)
    terms.setdefault("starts_on", day - timedelta(days=1))
    terms.setdefault("ends_on", day + timedelta(days=1))
    terms.setdefault("name", f"{terms['kind']} {Campaign.objects.count() + 1}")
    return Campaign.objects.create(coalition=coalition, **terms)


def double_points(till: Till, **terms: Any) -> Campaign:
    return campaign(
        till.tenant.coalition,
        kind=CampaignKind.MULTIPLIER,
        tenant=till.tenant,
        multiplier=Decimal("2.00"),
        **terms,
    )


def cross_shop(coalition: Coalition, **terms: Any) -> Campaign:
    terms.setdefault("bonus_points", 50)
    return campaign(coalition, kind=CampaignKind.CROSS_SHOP, **terms)


def earn(till: Till, member: Member, amount: str, receipt: str, at: datetime | None = None):
    return points_earn(
        till=till,
        member=member,
        amount=Decimal(amount),
        receipt=receipt,
        occurred_at=at or NOW,
        now=at or NOW,
    )


def entries(journal: Journal, kind: AccountKind) -> int:
    total = Entry.objects.filter(journal=journal, account__kind=kind).aggregate(p=Sum("points"))
    return int(total["p"] or 0)


def awarded(campaign: Campaign, member: Member | None = None) -> int:
    awards = CampaignAward.objects.filter(campaign=campaign)
    if member is not None:
        awards = awards.filter(member=member)
    return int(awards.aggregate(p=Sum("points"))["p"] or 0)


# --- rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "multiplier", "extra"),
    [(40, "2.00", 40), (45, "1.50", 22), (1, "1.50", 0), (0, "3.00", 0), (7, "1.25", 1)],
)
def test_a_multiplier_adds_floor_of_base_times_m_minus_one(base, multiplier, extra):
    assert multiplier_points(base, Decimal(multiplier)) == extra


# --- tenant-funded multipliers --------------------------------------------------------------


def test_double_points_at_the_tenant_are_funded_by_the_tenant(
    till_a, till_b, member, assert_ledger_clean
):
    # Given double points at the apparel store today
    doubled = double_points(till_a)
    # When the shopper spends 4,000 there and 4,000 at the food court
    posted = earn(till_a, member, "4000.00", "A-1")
    elsewhere = earn(till_b, member, "4000.00", "F-1")
    # Then the apparel earn gives 40 + 40 and records the campaign's 40
    assert posted.journal.points == 80
    assert posted.balance == 80
    assert entries(posted.journal, AccountKind.TENANT_ISSUED) == -40
    assert entries(posted.journal, AccountKind.TENANT_CAMPAIGN) == -40
    award = CampaignAward.objects.get(journal=posted.journal)
    assert (award.campaign, award.points) == (doubled, 40)
    assert award.funding_tenant_id == till_a.tenant_id
    assert award.value == Decimal("40.0000")
    # And one lot funded by the tenant holds all 80
    lots = list(Lot.objects.filter(journal=posted.journal).values_list("points", "funding_tenant"))
    assert lots == [(80, till_a.tenant_id)]
    # And the food court's earn is untouched
    assert elsewhere.journal.points == 40
    assert not CampaignAward.objects.filter(journal=elsewhere.journal).exists()
    assert_ledger_clean(till_a.tenant.coalition)


def test_multipliers_add_up_and_do_not_compound(till_a, member):
    double_points(till_a)
    campaign(
        till_a.tenant.coalition,
        kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant,
        multiplier=Decimal("1.50"),
    )
    # 40 base + floor(40 x 1) + floor(40 x 0.5) = 100, not 40 x 2 x 1.5 = 120
    assert earn(till_a, member, "4000.00", "A-1").journal.points == 100


def test_a_multiplier_keeps_to_its_days_dates_and_pause(till_a, member):
    coalition = till_a.tenant.coalition
    day = today(coalition)
    other_days = [d for d in range(7) if d != day.weekday()]
    double_points(till_a, weekdays=other_days)
    double_points(till_a, starts_on=day + timedelta(days=1), ends_on=day + timedelta(days=9))
    double_points(till_a, starts_on=day - timedelta(days=9), ends_on=day - timedelta(days=1))
    double_points(till_a, paused=True)
    assert earn(till_a, member, "4000.00", "A-1").journal.points == 40
    assert not CampaignAward.objects.exists()


def test_the_multiplier_follows_the_purchase_date_not_the_posting_date(till_a, member):
    # A purchase made yesterday, before the campaign started, posted today earns no campaign
    coalition = till_a.tenant.coalition
    double_points(till_a, starts_on=today(coalition))
    at = NOW - timedelta(days=2)
    posted = points_earn(
        till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1", occurred_at=at
    )
    assert posted.journal.points == 40


def test_a_minimum_amount_keeps_small_purchases_out(till_a, member):
    double_points(till_a, min_amount=Decimal("1000.00"))
    assert earn(till_a, member, "999.99", "A-1").journal.points == 9
    assert earn(till_a, member, "1000.00", "A-2").journal.points == 20


# --- the mall's cross-shop bonus ------------------------------------------------------------


def test_the_cross_shop_bonus_is_paid_by_the_mall_once_a_day(
    coalition, till_a, till_b, member, assert_ledger_clean
):
    bonus = cross_shop(coalition)
    # A first purchase: one category, no bonus
    first = earn(till_a, member, "4000.00", "A-1")
    assert first.journal.points == 40
    # A second category the same day: the bonus, from the mall's campaign account
    second = earn(till_b, member, "600.00", "F-1")
    assert second.journal.points == 6 + 50
    assert entries(second.journal, AccountKind.TENANT_ISSUED) == -6
    assert entries(second.journal, AccountKind.CAMPAIGN) == -50
    assert entries(second.journal, AccountKind.TENANT_CAMPAIGN) == 0
    lots = dict(Lot.objects.filter(journal=second.journal).values_list("funding_tenant", "points"))
    assert lots == {till_b.tenant_id: 6, None: 50}
    # A third purchase, another store of a category already bought: no second bonus that day
    third_till = TillFactory.create(
        tenant=TenantFactory.create(coalition=coalition, slug="cafe", category="food")
    )
    assert earn(third_till, member, "900.00", "C-1").journal.points == 9
    assert awarded(bonus, member) == 50
    assert member_balances(member).balance == 40 + 56 + 9
    assert_ledger_clean(coalition)


def test_the_bonus_counts_categories_not_tenants(coalition, till_a, member):
    cross_shop(coalition)
    shoes = TillFactory.create(
        tenant=TenantFactory.create(coalition=coalition, slug="shoes2", category="apparel")
    )
    earn(till_a, member, "1000.00", "A-1")
    assert earn(shoes, member, "1000.00", "S-1").journal.points == 10


def test_purchases_below_the_minimum_or_refunded_do_not_qualify(coalition, till_a, till_b, member):
    bonus = cross_shop(coalition, min_amount=Decimal("500.00"))
    # A purchase below the minimum does not count as a category bought
    small = earn(till_a, member, "499.00", "A-1")
    assert small.journal.points == 4
    assert earn(till_b, member, "600.00", "F-1").journal.points == 6
    # A qualifying purchase wholly refunded does not count either
    other = MemberFactory.create(coalition=coalition)
    big = earn(till_a, other, "4000.00", "A-2").journal
    points_reverse(original=big, tenant=till_a.tenant, reason="returned")
    assert earn(till_b, other, "600.00", "F-2").journal.points == 6
    assert not CampaignAward.objects.filter(campaign=bonus).exists()


# --- caps -----------------------------------------------------------------------------------


def test_the_member_cap_clips_then_stops_the_bonus(coalition, till_a, till_b, member):
    bonus = cross_shop(coalition, member_cap=60, starts_on=today(coalition) - timedelta(days=5))
    for day in (3, 2, 1):
        at = NOW - timedelta(days=day)
        earn(till_a, member, "100.00", f"A-{day}", at)
        earn(till_b, member, "100.00", f"F-{day}", at)
    assert sorted(
        CampaignAward.objects.filter(campaign=bonus).values_list("points", flat=True)
    ) == [10, 50]
    assert awarded(bonus, member) == 60
    # Another member still gets the full bonus
    other = MemberFactory.create(coalition=coalition)
    earn(till_a, other, "100.00", "A-9")
    assert earn(till_b, other, "100.00", "F-9").journal.points == 51


@pytest.mark.django_db(transaction=True)
def test_the_total_cap_holds_when_tills_race(coalition, till_a):
    # Given double points capped at 100 points in all, and ten members at ten tills at once
    doubled = double_points(till_a, total_cap=100)
    members = [MemberFactory.create(coalition=coalition) for _ in range(10)]
    tills = [TillFactory.create(tenant=till_a.tenant, code=f"r{i}") for i in range(10)]

    def shop(i: int):
        def call():
            return points_earn(
                till=fresh_till(tills[i].pk),
                member=fresh_member(members[i].pk),
                amount=Decimal("4000.00"),
                receipt=f"R-{i}",
            )

        return call

    # When they all earn 40 (+40 campaign) together
    futures = race([shop(i) for i in range(10)])
    # Then every earn posted, and the campaign gave exactly its cap: 40 + 40 + 20, then nothing
    postings = ok(futures)
    assert len(postings) == 10
    assert awarded(doubled) == 100
    assert sorted(p.journal.points - 40 for p in postings) == [0] * 7 + [20, 40, 40]
    doubled.refresh_from_db()
    assert doubled.awarded == 100
    campaign_account = Account.objects.get(tenant=till_a.tenant, kind=AccountKind.TENANT_CAMPAIGN)
    assert Entry.objects.filter(account=campaign_account).aggregate(p=Sum("points"))["p"] == -100


# --- refunds --------------------------------------------------------------------------------


def test_a_partial_refund_keeps_what_the_rest_would_have_earned(
    till_a, member, assert_ledger_clean
):
    # 4,000 at 1.5x: 40 + 20 = 60
    deal = campaign(
        till_a.tenant.coalition,
        kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant,
        multiplier=Decimal("1.50"),
    )
    original = earn(till_a, member, "4000.00", "A-1").journal
    assert original.points == 60
    # Refund 1,500: the rest, 2,500, earns 25 + floor(12.5) = 37, so 23 come back
    refund = points_reverse(
        original=original, tenant=till_a.tenant, reason="part", amount=Decimal("1500.00")
    )
    assert refund.journal.points == 23
    assert entries(refund.journal, AccountKind.TENANT_ISSUED) == 15
    assert entries(refund.journal, AccountKind.TENANT_CAMPAIGN) == 8
    assert awarded(deal) == 12
    # And the rest refunded: everything is back, the campaign included
    rest = points_reverse(original=original, tenant=till_a.tenant, reason="rest")
    assert rest.journal.points == 37
    assert awarded(deal) == 0
    assert rest.balance == 0
    assert_ledger_clean(till_a.tenant.coalition)


def test_refunding_the_qualifying_purchase_takes_the_bonus_back(
    coalition, till_a, till_b, member, assert_ledger_clean
):
    bonus = cross_shop(coalition, total_cap=500)
    earn(till_a, member, "4000.00", "A-1")
    second = earn(till_b, member, "600.00", "F-1").journal
    bonus.refresh_from_db()
    assert bonus.awarded == 50
    # A partial refund that leaves a purchase keeps the bonus
    kept = points_reverse(
        original=second, tenant=till_b.tenant, reason="part", amount=Decimal("100.00")
    )
    assert kept.journal.points == 1
    # Refunding the rest takes the bonus back to the mall, and back into the cap
    gone = points_reverse(original=second, tenant=till_b.tenant, reason="rest")
    assert gone.journal.points == 5 + 50
    assert entries(gone.journal, AccountKind.CAMPAIGN) == 50
    assert awarded(bonus, member) == 0
    bonus.refresh_from_db()
    assert bonus.awarded == 0
    assert gone.balance == 40
    assert_ledger_clean(coalition)


def test_refunding_the_other_purchase_of_the_pair_takes_the_bonus_back_once(
    coalition, till_a, till_b, member, assert_ledger_clean
):
    # Given a pair of purchases: the bonus came with the second
    bonus = cross_shop(coalition)
    first = earn(till_a, member, "4000.00", "A-1").journal
    second = earn(till_b, member, "600.00", "F-1").journal
    assert second.points == 56
    # When the first is refunded, the day no longer spans two categories: the bonus goes back
    # with that refund (or buying twice and returning one would farm it)
    undone = points_reverse(original=first, tenant=till_a.tenant, reason="returned")
    assert undone.journal.points == 40 + 50
    assert entries(undone.journal, AccountKind.CAMPAIGN) == 50
    assert awarded(bonus, member) == 0
    assert undone.balance == 6
    # And refunding the second later takes only its own points: the bonus is gone already
    rest = points_reverse(original=second, tenant=till_b.tenant, reason="returned")
    assert rest.journal.points == 6
    assert rest.balance == 0
    assert awarded(bonus, member) == 0
    assert_ledger_clean(coalition)


def test_a_refund_after_the_bonus_was_spent_goes_negative_once(
    coalition, till_a, till_b, member, assert_ledger_clean
):
    from coalition.services import points_burn

    cross_shop(coalition)
    earn(till_a, member, "100.00", "A-1")
    second = earn(till_b, member, "100.00", "F-1").journal  # 1 + 50
    points_burn(till=till_b, member=member, points=52, bill_amount=Decimal("600"), receipt="B")
    after = points_reverse(original=second, tenant=till_b.tenant, reason="returned")
    assert after.journal.points == 51
    assert after.balance == -51
    assert_ledger_clean(coalition)


# --- settlement -----------------------------------------------------------------------------


def test_statements_show_tenant_campaign_points_and_never_the_mall_bonus(
    coalition, till_a, till_b, member
):
    from settlement.services import close as close_services

    start, _ = close_services.month_bounds(
        coalition, close_services.last_ended_month(coalition, NOW)
    )
    day = start + timedelta(days=3)
    double_points(till_a, starts_on=start.date(), ends_on=start.date() + timedelta(days=27))
    cross_shop(coalition, starts_on=start.date(), ends_on=start.date() + timedelta(days=27))
    earn(till_a, member, "4000.00", "A-1", day)  # 40 + 40 doubled
    earn(till_b, member, "600.00", "F-1", day)  # 6 + 50 bonus from the mall

    period = period_close(coalition, start.date(), now=NOW)

    apparel = Statement.objects.get(period=period, tenant=till_a.tenant)
    food = Statement.objects.get(period=period, tenant=till_b.tenant)
    lines = {ln.kind: (ln.points, ln.amount) for ln in apparel.lines.all()}
    assert lines[LineKind.ISSUED] == (40, Decimal("40.00"))
    assert lines[LineKind.CAMPAIGN] == (40, Decimal("40.00"))
    assert apparel.net_amount == Decimal("80.00")
    food_lines = {ln.kind: (ln.points, ln.amount) for ln in food.lines.all()}
    assert food_lines == {LineKind.ISSUED: (6, Decimal("6.00"))}
    assert food.net_amount == Decimal("6.00")
    # The mall's 50 are in the operator's figures, and the pool still balances
    reconciliation = period.reconciliations.get()
    assert abs(reconciliation.campaign_value) == Decimal("50.0000")
    assert reconciliation.issued_points == 136
    assert reconciliation.discrepancies == []


# --- the admin's rules ----------------------------------------------------------------------


def test_terms_are_fixed_once_a_campaign_gave_points(till_a, member, staff):
    doubled = double_points(till_a)
    earn(till_a, member, "4000.00", "A-1")
    doubled.multiplier = Decimal("3.00")
    with pytest.raises(InvalidRequest, match="terms can no longer change"):
        campaign_save(campaign=doubled, user=staff)
    # Ending it early or pausing it is fine
    doubled.refresh_from_db()
    doubled.ends_on = doubled.starts_on
    doubled.paused = True
    campaign_save(campaign=doubled, user=staff)
    assert Campaign.objects.get(pk=doubled.pk).paused


def test_till_api_earn_reports_the_campaign_points(api_a, till_a, member):
    from tests.test_till_api_contract import earn_body

    double_points(till_a)
    response = api_a.post("earn", earn_body(member, amount="4000.00"))
    assert response.status_code == 201, response.content
    assert response.json()["transaction"]["points"] == 80
    assert response.json()["balance"] == 80


def test_a_batch_file_line_gets_the_same_campaign_points(till_a, member):
    from coalition.models import Batch
    from coalition.services.batches import batch_create, batch_process

    double_points(till_a)
    email = member.identifiers.get(kind="email").value
    batch = batch_create(
        till=till_a,
        content=(
            "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"
            f"earn,B-1,,,,{email},4000.00,,\n"
        ).encode(),
    )
    batch_process(batch_id=batch.pk)
    assert Batch.objects.get(pk=batch.pk).lines.get().journal.points == 80
    assert member_balances(member).balance == 80
