"""The admin's first page is the programme dashboard: who sees what, the charts, the controls."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coalition.services import points_burn, points_earn
from coalition.services.figures import daily_figures_refresh
from coalition.services.staff import FINANCE, SUPPORT
from coalition.tests.admin_client import client_for, staff_user
from coalition.tests.factories import CoalitionFactory
from members.tests.factories import MemberFactory
from settlement.models import Period, Reconciliation

IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 2, 15, 12, tzinfo=IST)


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=IST)


@pytest.fixture
def shopped(coalition, till_a, till_b):
    """January: 4,000 points at Apparel, 1,234 of them redeemed at the Food Court, a big earn."""
    member = MemberFactory.create(coalition=coalition, now=at(1, 1))
    points_earn(
        till=till_a, member=member, amount=Decimal("400000.00"), receipt="e1",
        occurred_at=at(1, 5), now=at(1, 5),
    )  # fmt: skip
    points_burn(
        till=till_b, member=member, points=1234, bill_amount=Decimal("5000"), receipt="b1",
        occurred_at=at(1, 6), now=at(1, 6),
    )  # fmt: skip
    return member


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def get(user: User, **params: str):
    return client_for(user).get(reverse("admin:index"), params)


def test_the_admin_index_is_the_dashboard_with_the_app_list(frozen, shopped, coalition):
    response = get(staff_user("support", SUPPORT), month="2026-01")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="dashboard"' in page and 'data-month="2026-01"' in page
    assert 'id="fig-issued"><span class="figure">4,000</span>' in page
    assert 'id="fig-redeemed"><span class="figure">1,234</span>' in page
    assert 'id="fig-cross-shop"><span class="figure">100.0%</span>' in page  # A and B
    # The app list is still there (below the dashboard) for the models this user may see.
    assert 'id="all-sections"' in page and 'class="app-coalition module' in page
    # The charts are server-drawn SVG: the month bars, the cross-shop line, the flow matrix.
    assert page.count('<svg class="month-chart') == 2  # no liability chart without the right
    assert 'data-label="Jan 26"' in page and 'data-value="4000"' in page
    assert 'id="flow-tenants"' in page and 'data-points="1234"' in page
    assert "<script" not in page.split('id="dashboard"')[1].split('id="all-sections"')[0]


def test_money_figures_need_the_liability_permission(frozen, shopped, coalition):
    support = get(staff_user("support", SUPPORT), month="2026-01").content.decode()
    finance = get(staff_user("finance", FINANCE), month="2026-01").content.decode()
    for marker in ('id="fig-liability"', 'id="chart-liability"', 'id="fig-arrears"', "₹"):
        assert marker not in support, marker
        assert marker in finance, marker
    assert "₹2,766.00" in finance  # 4,000 - 1,234 points at ₹1


def test_reconciliation_and_arrears_link_to_their_pages(frozen, shopped, coalition, till_b):
    period = Period.objects.create(
        coalition=coalition, month=datetime(2026, 1, 1).date(), starts_at=at(1, 1),
        ends_at=at(2, 1), closed_at=at(2, 1),
    )  # fmt: skip
    Reconciliation.objects.create(
        period=period, opening_points=0, issued_points=4000, redeemed_points=1234,
        expired_points=0, other_points=0, closing_points=2766, point_value=Decimal(1),
        closing_value=Decimal(2766), pool_value=Decimal(2766), outstanding_points=2766,
        balanced=False,
    )  # fmt: skip
    till_b.tenant.__class__.objects.filter(pk=till_b.tenant_id).update(
        arrears_since=datetime(2026, 2, 10).date()
    )
    page = get(staff_user("finance", FINANCE)).content.decode()
    assert reverse("admin:settlement_period_change", args=[period.pk]) in page
    assert "DISCREPANCIES" in page
    assert reverse("admin:tenants_tenant_change", args=[till_b.tenant_id]) in page


def test_choosing_the_coalition_and_month(frozen, shopped, coalition):
    other = CoalitionFactory.create(slug="orion", name="Orion Mall")
    user = staff_user("support", SUPPORT)
    page = get(user).content.decode()
    assert 'name="coalition"' in page  # a selector: there are two coalitions
    assert 'data-coalition="orion"' in page  # the first by name; February, the current month
    assert 'data-month="2026-02"' in page
    page = get(user, coalition=str(coalition.pk), month="2026-01").content.decode()
    assert 'data-coalition="phoenix"' in page and 'data-month="2026-01"' in page
    # A month in the future, or nonsense, shows the current month.
    assert (
        'data-month="2026-02"'
        in get(user, coalition=str(other.pk), month="2031-07").content.decode()
    )
    assert 'data-month="2026-02"' in get(user, month="bad").content.decode()


def test_not_for_anonymous_visitors(db):
    response = Client().get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_queries_stay_few_once_the_rows_are_stored(frozen, shopped, coalition):
    daily_figures_refresh(coalition=coalition, now=NOW)
    client = client_for(staff_user("finance", FINANCE))
    client.get(reverse("admin:index"))  # warm: content types, permissions
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("admin:index")).status_code == 200
    assert len(queries) <= 30, [q["sql"][:120] for q in queries]


def test_month_charts_are_drawn_to_scale():
    from coalition.charts import grouped_bar_chart, line_chart

    bars = grouped_bar_chart(
        "Points", ["Jan", "Feb"], [("Issued", [100, 50]), ("Redeemed", [0, 25])]
    )
    assert [tick.text for tick in bars.axes.ticks] == ["0", "50", "100"]
    plot = bars.axes.baseline - bars.axes.plot_top  # 204 px for 100 points
    assert [[bar.height for bar in group.bars] for group in bars.groups] == [
        [plot, 0.0],
        [plot / 2, plot / 4],
    ]
    assert [item.name for item in bars.axes.legend] == ["Issued", "Redeemed"]
    lines = line_chart("Rate", ["Jan", "Feb", "Mar"], [("Rate", [Decimal("50.0"), None, 25])])
    (line,) = lines.lines
    assert [point.label for point in line.points] == ["Jan", "Mar"]  # no figure, no point
    assert line.path.startswith("M") and line.path.count("L") == 1
