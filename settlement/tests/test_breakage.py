"""Breakage returned to the funding tenants: pro rata, to the paisa, losing none."""

from datetime import timedelta
from decimal import Decimal

from coalition.models import BreakagePolicy, Coalition
from coalition.money import money_split
from coalition.services import lots_expire
from coalition.services.notices import expiry_notices_queue
from coalition.services.programme import local_date
from settlement.models import LineKind
from settlement.services import period_close
from settlement.tests.test_close import NOW, earn, lines, statement

D = Decimal


def test_the_remainder_rule_loses_no_paisa():
    # Rounded down to the paisa, then the missing paise to the largest remainders.
    assert money_split({1: D("0.335"), 2: D("0.670")}) == {1: D("0.34"), 2: D("0.67")}
    # Equal remainders: the smaller key first.
    thirds = {3: D(1) / 3, 1: D(1) / 3, 2: D(1) / 3}
    assert money_split(thirds) == {1: D("0.34"), 2: D("0.33"), 3: D("0.33")}
    # Whatever the shares, they add up to their total rounded half-up.
    shares = {n: D(n) * D("0.0137") for n in range(1, 40)}
    split = money_split(shares)
    assert sum(split.values()) == sum(shares.values()).quantize(D("0.01"), "ROUND_HALF_UP")
    assert all(abs(split[n] - shares[n]) < D("0.01") for n in shares)


def test_expired_points_are_returned_pro_rata_to_two_funding_tenants(
    coalition, till_a, till_b, member
):
    Coalition.objects.filter(pk=coalition.pk).update(
        breakage_policy=BreakagePolicy.FUNDING_TENANTS, point_value=D("0.3350")
    )
    coalition.refresh_from_db()
    long_ago = NOW - timedelta(days=420)
    earn(till_a, member, "100.00", "A-1", long_ago)  # 1 point, funded by apparel
    earn(till_b, member, "200.00", "F-1", long_ago)  # 2 points, funded by the food court
    expiry_notices_queue(now=NOW - timedelta(days=31), coalition=coalition)
    assert lots_expire(as_of=NOW, coalition=coalition) == 3

    # The sweep posts now: this month's close (closed here as if the month had ended).
    period = period_close(coalition, local_date(coalition, NOW), now=NOW + timedelta(days=40))

    # Exactly 1.005 expired (3 x 0.335): 1.01 returned, 0.34 and 0.67.
    apparel, food = statement(period, till_a), statement(period, till_b)
    assert lines(apparel) == [(LineKind.BREAKAGE_RETURNED, None, 0, 1, D("0.34"))]
    assert lines(food) == [(LineKind.BREAKAGE_RETURNED, None, 0, 2, D("0.67"))]
    assert (apparel.breakage_returned, food.breakage_returned) == (D("0.34"), D("0.67"))
    # Credited: the pool owes them, less what they owed before.
    assert apparel.net_amount == apparel.opening_balance - D("0.34")
    found = period.reconciliations.get()
    assert found.breakage_value == D("1.0050")  # the operator's breakage...
    assert found.breakage_returned_value == D("-1.01")  # ...given back, to the paisa


def test_under_the_default_policy_breakage_stays_with_the_operator(coalition, till_a, member):
    long_ago = NOW - timedelta(days=420)
    earn(till_a, member, "4000.00", "A-1", long_ago)
    expiry_notices_queue(now=NOW - timedelta(days=31), coalition=coalition)
    assert lots_expire(as_of=NOW, coalition=coalition) == 40

    period = period_close(coalition, local_date(coalition, NOW), now=NOW + timedelta(days=40))

    assert not statement(period, till_a).lines.filter(kind=LineKind.BREAKAGE_RETURNED).exists()
    found = period.reconciliations.get()
    assert (found.breakage_value, found.breakage_returned_value) == (D("40.0000"), 0)
