"""The liability page and its CSV: every figure checked on crafted data, and who may see it."""

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from coalition.models import Coalition
from coalition.selectors.liability import OPERATOR, liability
from coalition.services import lots_expire, points_adjust, points_burn, points_earn, points_reverse
from coalition.services.notices import expiry_notices_queue
from coalition.services.staff import FINANCE, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import client_for, staff_user
from members.tests.factories import MemberFactory

IST = ZoneInfo("Asia/Kolkata")
AS_OF = datetime(2026, 2, 15, 12, tzinfo=IST)


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, tzinfo=IST)


def earn(till, member, amount: str, when: datetime, receipt: str):
    return points_earn(
        till=till,
        member=member,
        amount=Decimal(amount),
        receipt=receipt,
        occurred_at=when,
        now=when,
    )


@pytest.fixture
def crafted(coalition, till_a, till_b, staff):
    """Two members, two funding tenants, a burn, a refund, an expiry, a staff adjustment.

    m1: 40 at Apparel (Jan 2025), 30 of them redeemed at Food Court (Jul 2025), the other 10
        expire after 9 Jan 2026; 25 at Food Court (Jun 2025).
    m2: 10 at Apparel (Jun 2025), 5 refunded; 20 at Food Court (Jan 2026); 7 from staff.
    """
    m1, m2 = MemberFactory.create(coalition=coalition), MemberFactory.create(coalition=coalition)
    earn(till_a, m1, "4000.00", at(2025, 1, 10), "m1-1")
    earn(till_b, m1, "2500.00", at(2025, 6, 15), "m1-2")
    points_burn(
        till=till_b,
        member=m1,
        points=30,
        bill_amount=Decimal("500"),
        receipt="m1-3",
        occurred_at=at(2025, 7, 1),
        now=at(2025, 7, 1),
    )
    refunded = earn(till_a, m2, "1000.00", at(2025, 6, 20), "m2-1")
    points_reverse(
        original=refunded.journal,
        tenant=till_a.tenant,
        reason="return",
        amount=Decimal("500.00"),
        now=at(2025, 6, 21),
    )
    earn(till_b, m2, "2000.00", at(2026, 1, 20), "m2-2")
    points_adjust(member=m2, points=7, reason="goodwill", actor=staff, now=at(2026, 2, 1))
    expiry_notices_queue(now=at(2025, 12, 11))
    assert lots_expire(as_of=at(2026, 1, 11)) == 10
    return m1, m2


def test_outstanding_split_by_tenant_age_and_expiry(coalition, crafted):
    figures = liability(coalition, as_of=AS_OF)
    # 25 (m1) + 5 + 20 + 7 (m2): nothing pending, nobody below zero
    assert (figures.spendable.points, figures.pending.points) == (57, 0)
    assert figures.owed_by_members.points == 0
    assert (figures.net.points, figures.net.value) == (57, Decimal("57.00"))
    assert [(row.label, row.points) for row in figures.by_tenant] == [
        ("Food Court", 45),
        (OPERATOR, 7),
        ("Apparel Co", 5),
    ]
    assert sum(row.points for row in figures.by_tenant) == figures.lots_total == 57
    assert {row.label: row.points for row in figures.by_age} == {
        "Under 3 months": 27,  # 20 earned 20 Jan 2026, 7 adjusted 1 Feb 2026
        "3 to 6 months": 0,
        "6 to 12 months": 30,  # 25 from 15 Jun 2025, 5 from 20 Jun 2025
        "12 to 24 months": 0,
        "24 months or more": 0,
    }
    # Twelve months from this one; a fixed 12-month term gives last days a year on, less a day
    assert [row.label for row in figures.expiring][:2] == ["Feb 2026", "Mar 2026"]
    assert len(figures.expiring) == 12
    expiring = {row.label: row.points for row in figures.expiring if row.points}
    # 20 earned 20 Jan 2026 last until 19 Jan 2027; the adjustment of 1 Feb until 31 Jan 2027
    assert expiring == {"Jun 2026": 30, "Jan 2027": 27}
    assert sum(row.points for row in figures.expiring) == 57
    assert (figures.overdue.points, figures.never_expiring.points) == (0, 0)
    assert (figures.breakage.points, figures.breakage.value) == (10, Decimal("10.00"))
    assert figures.breakage_returned == Decimal("0.00")


def test_cohorts_show_the_share_redeemed_so_far(coalition, crafted):
    cohorts = {cohort.month: cohort for cohort in liability(coalition, as_of=AS_OF).cohorts}
    assert list(cohorts) == [date(2026, 2, 1), date(2026, 1, 1), date(2025, 6, 1), date(2025, 1, 1)]
    january = cohorts[date(2025, 1, 1)]
    assert (january.issued, january.redeemed, january.expired, january.outstanding) == (
        40,
        30,
        10,
        0,
    )
    assert (january.redemption_rate, january.redemption_percent) == (
        Decimal("0.7500"),
        Decimal("75.0"),
    )
    june = cohorts[date(2025, 6, 1)]
    assert (june.issued, june.redeemed, june.refunded, june.outstanding, june.other) == (
        35,
        0,
        5,
        30,
        0,
    )
    assert june.redemption_rate == Decimal("0.0000")
    assert cohorts[date(2026, 2, 1)].issued == 7  # the staff adjustment's lot


def test_a_voided_burn_counts_back_out_of_redeemed(coalition, till_a, till_b, member):
    earned = earn(till_a, member, "4000.00", at(2025, 3, 1), "e")
    burnt = points_burn(
        till=till_b,
        member=member,
        points=12,
        bill_amount=Decimal("100"),
        receipt="b",
        occurred_at=at(2025, 3, 2),
        now=at(2025, 3, 2),
    )
    points_reverse(
        original=burnt.journal, tenant=till_b.tenant, reason="void", points=4, now=at(2025, 3, 3)
    )
    (cohort,) = liability(coalition, as_of=at(2025, 4, 1)).cohorts
    assert earned.journal.points == 40
    assert (cohort.issued, cohort.redeemed, cohort.outstanding) == (40, 8, 32)
    assert cohort.redemption_rate == Decimal("0.2000")


def test_pending_points_and_negative_balances(coalition, till_a, till_b, member):
    Coalition.objects.filter(pk=coalition.pk).update(holdback_days=7)
    till_a.tenant.coalition.refresh_from_db()
    till_b.tenant.coalition.refresh_from_db()
    # Given 40 points earned and released, all spent, then the purchase refunded: -40
    earned = earn(till_a, member, "4000.00", at(2025, 3, 1), "1")
    from coalition.services import points_release

    assert points_release(as_of=at(2025, 3, 9)) == 1
    points_burn(
        till=till_b,
        member=member,
        points=40,
        bill_amount=Decimal("400"),
        receipt="2",
        occurred_at=at(2025, 3, 10),
        now=at(2025, 3, 10),
    )
    points_reverse(original=earned.journal, tenant=till_a.tenant, reason="r", now=at(2025, 3, 11))
    # And 15 points earned yesterday, still pending
    other = MemberFactory.create(coalition=coalition)
    earn(till_a, other, "1500.00", at(2025, 3, 20), "3")
    figures = liability(coalition, as_of=at(2025, 3, 21))
    assert (figures.spendable.points, figures.pending.points) == (0, 15)
    assert figures.owed_by_members.points == -40
    assert figures.net.points == -25
    assert [(row.label, row.points) for row in figures.by_tenant] == [("Apparel Co", 15)]


@pytest.fixture
def finance(db):
    return staff_user("fin", FINANCE)


def test_the_page_draws_twelve_months_and_the_tables(coalition, crafted, finance):
    url = reverse("admin:coalition_coalition_liability", args=[coalition.pk])
    response = client_for(finance).get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<g class="bar"') == 12
    figures = liability(coalition)
    for row in figures.expiring:
        assert f'data-value="{row.points}"' in page
    assert 'id="by-tenant"' in page and "Food Court" in page
    assert "Earn-month cohorts" in page and "75.0" in page
    assert "cdn" not in page.lower() and '<script src="http' not in page


def test_the_csv_has_the_same_figures(coalition, crafted, finance, till_a):
    # A tenant name a spreadsheet would run as a formula is quoted
    till_a.tenant.name = '=HYPERLINK("http://x")'
    till_a.tenant.save(update_fields=["name"])
    url = reverse("admin:coalition_coalition_liability_csv", args=[coalition.pk])
    response = client_for(finance).get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    figures = liability(coalition)
    assert ["Net outstanding", str(figures.net.points), str(figures.net.value)] in rows
    assert ["Food Court", "45", "45.00"] in rows
    assert ['\'=HYPERLINK("http://x")', "5", "5.00"] in rows
    assert ["Breakage to date", "10", "10.00"] in rows
    assert ["2025-01", "40", "30", "0", "10", "0", "0", "0.7500"] in rows
    months = [row for row in rows if row and row[0] in {r.label for r in figures.expiring}]
    assert len(months) == 12


@pytest.mark.parametrize(
    ("group", "allowed"), [(PROGRAMME_MANAGER, True), (FINANCE, True), (SUPPORT, False)]
)
def test_who_may_see_the_liability(coalition, group, allowed):
    client = client_for(staff_user("someone", group))
    for name in ("admin:coalition_coalition_liability", "admin:coalition_coalition_liability_csv"):
        response = client.get(reverse(name, args=[coalition.pk]))
        assert response.status_code == (200 if allowed else 403)


def test_an_unknown_coalition_is_404(finance):
    url = reverse("admin:coalition_coalition_liability", args=[999999])
    assert client_for(finance).get(url).status_code == 404


def test_expiring_buckets_start_today_not_at_the_month_start(coalition, till_a, member):
    # A lot whose last day was yesterday is overdue (waiting for its notice), not "this month"
    earn(till_a, member, "1000.00", at(2025, 2, 14), "1")
    figures = liability(coalition, as_of=at(2026, 2, 14) + timedelta(hours=1))
    assert figures.overdue.points == 10
    assert figures.expiring[0].points == 0
