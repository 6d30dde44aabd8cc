"""The portal's "Your shoppers" page: aggregates of consenting shoppers only, small groups and
dominated figures hidden, nothing personal, and each tenant only ever its own figures.

Crafted data goes through the real services (enrolment with consents, earn, burn), dated in the
last month that has ended, which every period of the page covers. Tenant A is the apparel
store, tenant B the food court; C and D are two more food tenants and E the cinema, so that the
food category can be made to sit on either side of the dominance rule.
"""

import dataclasses
from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from coalition.services.programme import add_months
from consent.services import consents_record
from members.tests.factories import MemberFactory
from settlement.tests.test_close import _month, burn, earn
from tenants.insight import Grid, shopper_insight
from tenants.models import PortalRole
from tenants.services import tenant_user_create
from tenants.suppression import Relation, two_way
from tenants.tests.factories import TenantFactory, TillFactory
from tenants.tests.test_suppression import ranges

PASSWORD = "correct horse battery"
receipts = count(1)


def _login(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def _receipt() -> str:
    return f"R-{next(receipts)}"


@pytest.fixture
def mall(coalition, till_a, till_b):
    tills = {"a": till_a, "b": till_b}
    for slug, category in (("c", "food"), ("d", "food"), ("e", "entertainment")):
        tenant = TenantFactory.create(
            coalition=coalition, slug=f"tenant-{slug}", name=f"Tenant {slug}", category=category
        )
        tills[slug] = TillFactory.create(tenant=tenant, code=f"{slug}1")
    for username, till, role in (
        ("a-manager", till_a, PortalRole.MANAGER),
        ("a-finance", till_a, PortalRole.FINANCE),
        ("a-viewer", till_a, PortalRole.VIEWER),
        ("b-manager", till_b, PortalRole.MANAGER),
    ):
        tenant_user_create(tenant=till.tenant, username=username, role=role, password=PASSWORD)
    start, _ = _month(coalition)
    return {"coalition": coalition, "tills": tills, "start": start}


def shoppers(mall, n, *, analytics=True):
    consents = {"programme": True, "analytics": analytics}
    return [MemberFactory.create(coalition=mall["coalition"], consents=consents) for _ in range(n)]


def visit(mall, till, members, *, day=1, amount="1000.00"):
    for member in members:
        earn(till, member, amount, _receipt(), mall["start"] + timedelta(days=day))


def page(username, **query):
    response = _login(username).get(reverse("portal:shoppers"), query)
    assert response.status_code == 200
    return response


def figures(grid: Grid) -> dict:
    """The grid as published: `None` for a hidden figure."""
    shown = {}
    for row in grid.rows:
        for column, value in zip(grid.columns, row.cells, strict=True):
            shown[row.label, column] = value
    return shown


def last_month(grid: Grid) -> str:
    return grid.columns[-1]


# --- who counts -----------------------------------------------------------------------------


@pytest.mark.parametrize(("visitors", "shown"), [(9, None), (10, 10), (11, 11)])
def test_shoppers_just_below_at_and_above_k(mall, visitors, shown):
    visit(mall, mall["tills"]["a"], shoppers(mall, visitors))

    insight = page("a-manager").context["insight"]

    assert insight.shoppers == shown
    assert figures(insight.visits)["1 visit", "New"] == shown


def test_a_member_without_analytics_consent_is_not_counted(mall):
    visit(mall, mall["tills"]["a"], shoppers(mall, 10))
    visit(mall, mall["tills"]["a"], shoppers(mall, 3, analytics=False))

    assert page("a-manager").context["insight"].shoppers == 10


def test_withdrawn_consent_stops_counting(mall):
    members = shoppers(mall, 11)
    visit(mall, mall["tills"]["a"], members)
    assert page("a-manager").context["insight"].shoppers == 11

    consents_record(member=members[0], consents={"analytics": False})
    assert page("a-manager").context["insight"].shoppers == 10

    consents_record(member=members[1], consents={"analytics": False})
    assert page("a-manager").context["insight"].shoppers is None  # 9: fewer than k

    consents_record(member=members[1], consents={"analytics": True})  # given again
    assert page("a-manager").context["insight"].shoppers == 10


def test_k_is_the_coalitions(mall):
    visit(mall, mall["tills"]["a"], shoppers(mall, 4))
    assert page("a-manager").context["insight"].shoppers is None
    mall["coalition"].small_group_k = 4
    mall["coalition"].save(update_fields=["small_group_k"])
    assert page("a-manager").context["insight"].shoppers == 4


# --- the tables -----------------------------------------------------------------------------


def test_the_visits_table_hides_a_small_cell_so_the_totals_cannot_give_it_back(mall):
    """Row and column totals, one cell below k (4 new shoppers with 2-3 visits): every hidden
    figure's range, solved from what the page shows, is at least k wide."""
    till = mall["tills"]["a"]
    earlier = mall["start"] - timedelta(days=400)  # before any period the page offers
    groups = {
        ("1 visit", "New"): 12,
        ("1 visit", "Returning"): 11,
        ("2\N{EN DASH}3 visits", "New"): 4,
        ("2\N{EN DASH}3 visits", "Returning"): 15,
    }
    for (band, column), n in groups.items():
        members = shoppers(mall, n)
        if column == "Returning":
            for member in members:
                earn(till, member, "1000.00", _receipt(), earlier)
        visit(mall, till, members, day=1)
        if band != "1 visit":
            visit(mall, till, members, day=3)

    grid = page("a-viewer").context["insight"].visits

    shown = figures(grid)
    assert shown["2\N{EN DASH}3 visits", "New"] is None
    # Check it as an intruder would: published figures fixed, totals as equations.
    rows = [row.label for row in grid.rows]
    truth = {key: groups.get(key, 0) for key in shown}
    for row in rows:
        truth[row, "Σ"] = sum(truth[row, column] for column in grid.columns)
    for column in grid.columns:
        truth["Σ", column] = sum(truth[row, column] for row in rows)
    truth["Σ", "Σ"] = sum(groups.values())
    published = dict(shown)
    for row in grid.rows:
        published[row.label, "Σ"] = row.total
    for column, total in zip(grid.columns, grid.column_totals, strict=True):
        published["Σ", column] = total
    published["Σ", "Σ"] = grid.total
    for key, value in published.items():
        assert value is None or value == truth[key], key
    relations = [
        Relation(_sigma(rel.total), tuple(_sigma(p) for p in rel.parts))
        for rel in two_way(rows, list(grid.columns))
    ]
    hidden = {key for key, value in published.items() if value is None}
    for key, (low, high) in ranges(truth, relations, hidden).items():
        assert high - low >= 10 - 1e-6, f"{key} is pinned to [{low}, {high}]"


def _sigma(key):
    return tuple("Σ" if part == "__total__" else part for part in key)


def test_where_else_shoppers_shop_counts_members_and_shares(mall):
    tills = mall["tills"]
    members = shoppers(mall, 20)
    visit(mall, tills["a"], members)
    # Food: 12 of A's shoppers, spread over three food tenants (none dominates).
    visit(mall, tills["b"], members[:4], day=2)
    visit(mall, tills["c"], members[4:8], day=2)
    visit(mall, tills["d"], members[8:12], day=2)
    # Cinema: 15 shoppers, but one tenant is all of it (dominance).
    visit(mall, tills["e"], members[:15], day=2)

    insight = page("a-manager").context["insight"]

    rows = {row.category: (row.members, row.percent) for row in insight.also_shop}
    assert rows["Food court & restaurants"] == (12, Decimal("60.0"))
    assert rows["Entertainment"] == (None, None)


def test_where_else_shoppers_shop_just_below_k(mall):
    tills = mall["tills"]
    members = shoppers(mall, 20)
    visit(mall, tills["a"], members)
    for till, group in zip("bcd", (members[:3], members[3:6], members[6:9]), strict=True):
        visit(mall, tills[till], group, day=2)

    rows = {row.category: row.members for row in page("a-manager").context["insight"].also_shop}

    assert rows["Food court & restaurants"] is None  # 9 shoppers


def _redeem_food(mall, shares: dict[str, list[int]]):
    """Ten consenting shoppers earn 100 points each at A and redeem them at the food tenants:
    `shares[till]` is the points each shopper redeems there, shopper by shopper."""
    members = shoppers(mall, 10)
    visit(mall, mall["tills"]["a"], members, amount="10000.00")
    for till, points in shares.items():
        for member, n in zip(members, points, strict=False):
            if n:
                burn(mall["tills"][till], member, n, _receipt(), mall["start"] + timedelta(days=5))
    return members


@pytest.mark.parametrize(
    ("c_points", "shown"),
    [
        # B 500, C 350, D 150 of 1000: the two largest are exactly 85%.
        ([0] * 5 + [100, 100, 100, 50, 0], None),
        # B 500, C 349, D 151: 84.9%.
        ([0] * 5 + [100, 100, 100, 49, 0], 1000),
    ],
)
def test_redemptions_just_at_and_below_dominance(mall, c_points, shown):
    d_points = [0] * 8 + [100 - c_points[8], 100]
    _redeem_food(mall, {"b": [100] * 5, "c": c_points, "d": d_points})

    grid = page("a-manager").context["insight"].redeemed_at

    food = figures(grid)["Food court & restaurants", last_month(grid)]
    assert food == shown
    assert grid.total == shown


def test_redemptions_from_fewer_than_k_shoppers_are_hidden_and_do_not_leak(mall):
    members = shoppers(mall, 9)
    visit(mall, mall["tills"]["a"], members, amount="10000.00")
    # 437 points from nine shoppers across the three food tenants.
    points = (50, 50, 50, 50, 50, 50, 50, 50, 37)
    for till, member, n in zip("bcdbcdbcd", members, points, strict=True):
        burn(mall["tills"][till], member, n, _receipt(), mall["start"] + timedelta(days=5))

    response = page("a-manager")
    grid = response.context["insight"].redeemed_at

    assert figures(grid)["Food court & restaurants", last_month(grid)] is None
    assert grid.total is None
    assert b"437" not in response.content
    assert b"<!--" not in response.content
    assert "fewer than 10 shoppers, or mostly one or two other tenants" in response.content.decode()


def test_points_honoured_by_where_they_came_from(mall):
    """B honours 1000 points from ten shoppers, issued by three apparel tenants (A 400, F 300,
    G 300): B sees them under apparel. On A's page its 400 were all redeemed at B, one
    tenant: hidden."""
    coalition, tills = mall["coalition"], mall["tills"]
    for slug in ("f", "g"):
        tenant = TenantFactory.create(coalition=coalition, slug=f"tenant-{slug}", name=slug)
        tills[slug] = TillFactory.create(tenant=tenant, code=f"{slug}1")
    members = shoppers(mall, 10)
    for till, group in (("a", members[:4]), ("f", members[4:7]), ("g", members[7:])):
        visit(mall, tills[till], group, amount="10000.00")
    for member in members:
        burn(tills["b"], member, 100, _receipt(), mall["start"] + timedelta(days=5))

    b_grid = page("b-manager").context["insight"].came_from
    a_insight = page("a-manager").context["insight"]

    assert figures(b_grid)["Apparel", last_month(b_grid)] == 1000
    assert b_grid.total == 1000
    assert a_insight.came_from.rows == ()
    assert figures(a_insight.redeemed_at)["Food court & restaurants", last_month(b_grid)] is None


def test_the_three_periods_together_give_no_hidden_figure_back(mall):
    """Redemptions in three months, one cell below k (books, last month: 4 shoppers). Taking
    every figure the 3-, 6- and 12-month pages publish together, each hidden figure's range is
    still at least k wide: a month hidden on one page is hidden on all of them, and the
    periods' own totals were part of the suppression."""
    coalition, tills = mall["coalition"], mall["tills"]
    for slug in ("f", "g", "h"):
        tenant = TenantFactory.create(
            coalition=coalition, slug=f"tenant-{slug}", name=slug, category="books"
        )
        tills[slug] = TillFactory.create(tenant=tenant, code=f"{slug}1")
    crafted = {("food", 0): 12, ("food", 1): 11, ("food", 4): 10}
    crafted |= {("books", 0): 4, ("books", 1): 12, ("books", 4): 11}
    categories = {"food": "Food court & restaurants", "books": "Books, toys & gifts"}
    truth: dict = defaultdict(int)
    for (category, back), n in crafted.items():
        month = add_months(mall["start"].date(), -back)
        at = datetime.combine(month, time(12), tzinfo=mall["start"].tzinfo) + timedelta(days=4)
        spread = "bcd" if category == "food" else "fgh"
        for i, member in enumerate(shoppers(mall, n)):
            earn(tills["a"], member, "10000.00", _receipt(), at - timedelta(hours=1))
            burn(tills[spread[i % 3]], member, 20 + i, _receipt(), at)
            truth[categories[category], month.strftime("%b %Y")] += 20 + i

    published: dict = {}
    rows: set = set()
    months: list = []
    for period in (3, 6, 12):
        grid = page("a-manager", months=str(period)).context["insight"].redeemed_at
        window = f"last {period}"
        months = list(grid.columns) if period == 12 else months
        shown = {row.label: row for row in grid.rows}
        for label in categories.values():
            row = shown.get(label)
            rows.add(label)
            cells = row.cells if row else (0,) * len(grid.columns)
            published |= {(label, m): v for m, v in zip(grid.columns, cells, strict=True)}
            published[label, window] = row.total if row else 0
        published |= {("Σ", m): v for m, v in zip(grid.columns, grid.column_totals, strict=True)}
        published["Σ", window] = grid.total
    windows = {f"last {p}": months[-p:] for p in (3, 6, 12)}
    for label in [*rows, "Σ"]:
        for m in months:
            if label != "Σ":
                truth["Σ", m] += truth[label, m]
        for window, span in windows.items():
            truth[label, window] = sum(truth[label, m] for m in span)
    for key, value in published.items():
        assert value is None or value == truth[key], key
    assert published[categories["books"], months[-1]] is None
    relations = [
        Relation((label, window), tuple((label, m) for m in span))
        for label in [*rows, "Σ"]
        for window, span in windows.items()
    ]
    relations += [
        Relation(("Σ", column), tuple((label, column) for label in rows))
        for column in [*months, *windows]
    ]
    values = {key: truth[key] for key in published}
    hidden = {key for key, value in published.items() if value is None}
    for key, (low, high) in ranges(values, relations, hidden).items():
        assert high - low >= 10 - 1e-6, f"{key} is pinned to [{low}, {high}]"


def test_the_period_is_picked_and_defaults_to_twelve_months(mall):
    visit(mall, mall["tills"]["a"], shoppers(mall, 10))

    assert page("a-manager").context["insight"].months == 12
    three = page("a-manager", months="3").context["insight"]
    assert three.months == 3
    assert len(three.redeemed_at.columns) == 3
    assert three.shoppers == 10
    assert page("a-manager", months="7").context["insight"].months == 12  # not offered


# --- access and privacy ---------------------------------------------------------------------


def test_every_portal_role_sees_the_page(mall):
    for username in ("a-manager", "a-finance", "a-viewer"):
        assert b"Your shoppers" in page(username).content


def test_the_page_needs_a_portal_login(mall):
    anonymous = Client().get(reverse("portal:shoppers"))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("portal:login"))
    staff = Client()
    staff.force_login(User.objects.create_user("staff9", password="x", is_staff=True))
    assert staff.get(reverse("portal:shoppers")).status_code == 403


def test_tenant_b_sees_only_its_own_figures(mall):
    visit(mall, mall["tills"]["a"], shoppers(mall, 10))
    visit(mall, mall["tills"]["b"], shoppers(mall, 12))

    a_page = page("a-manager")
    b_page = page("b-manager", tenant=str(mall["tills"]["a"].tenant_id))  # no such parameter

    assert a_page.context["insight"].shoppers == 10
    assert b_page.context["insight"].shoppers == 12
    assert b_page.context["insight"] == shopper_insight(mall["tills"]["b"].tenant)
    assert b_page.context["request"].tenant_user.tenant == mall["tills"]["b"].tenant


def test_nothing_personal_reaches_the_page(mall):
    members = shoppers(mall, 12)
    visit(mall, mall["tills"]["a"], members)
    visit(mall, mall["tills"]["b"], members, day=2)

    response = page("a-manager")

    personal = []
    for member in members:
        personal += [member.name, str(member.pk), str(member.pk)[:8]]
        personal += list(member.identifiers.values_list("value", flat=True))
    content = response.content.decode()
    for value in personal:
        assert value not in content
    # The selector's result holds counts, shares and labels, nothing else.
    for value in _leaves(dataclasses.asdict(response.context["insight"])):
        assert value is None or isinstance(value, int | str | Decimal | type(mall["start"].date()))
        assert str(value) not in personal


def _leaves(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
