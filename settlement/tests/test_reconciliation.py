"""The pool reconciliation: balanced on a sound ledger, and the exact discrepancy when not."""

from datetime import timedelta
from decimal import Decimal

from django.db import connection

from coalition.models import AccountKind, Entry
from coalition.services import lots_expire
from coalition.services.notices import expiry_notices_queue
from settlement.models import Reconciliation
from settlement.services import (
    period_close,
    reconciliation_run,
    reconciliation_verify,
    reconciliations_verify_pending,
)
from settlement.tests.test_close import NOW, _month, burn, earn


def _sound_month(coalition, till_a, till_b, member):
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))  # 40
    earn(till_b, member, "2500.00", "F-1", start + timedelta(days=3))  # 25
    burn(till_b, member, 30, "F-2", start + timedelta(days=4))
    return period_close(coalition, start.date(), now=NOW)


def test_a_sound_month_is_balanced_and_rolls_forward(coalition, till_a, till_b, member):
    period = _sound_month(coalition, till_a, till_b, member)

    found = period.reconciliations.get()
    # The figures balance at once; the check of every entry ever written comes second.
    assert found.balanced is None and found.ledger_checked_at is None
    assert found.discrepancies == []
    assert reconciliation_verify(found.pk) is True
    found.refresh_from_db()
    assert found.balanced is True and found.ledger_checked_at is not None
    assert (found.opening_points, found.issued_points, found.redeemed_points) == (0, 65, 30)
    assert (found.expired_points, found.other_points, found.closing_points) == (0, 0, 35)
    assert found.outstanding_points == 35
    assert found.closing_value == found.pool_value == Decimal("35.0000")
    # Burns take the oldest lots first: the 30 points came out of apparel's lot.
    apparel, food = till_a.tenant_id, till_b.tenant_id
    assert found.by_tenant == [
        {"tenant_id": apparel, "tenant": "apparel", "opening": 0, "credited": 40, "taken": 30,
         "closing": 10},
        {"tenant_id": food, "tenant": "food-court", "opening": 0, "credited": 25, "taken": 0,
         "closing": 25},
    ]  # fmt: skip


def test_later_postings_do_not_upset_a_closed_month(coalition, till_a, till_b, member):
    period = _sound_month(coalition, till_a, till_b, member)
    earn(till_a, member, "1000.00", "A-later", NOW)
    burn(till_b, member, 20, "F-later", NOW)

    again = reconciliation_run(period)
    reconciliation_verify(again.pk)
    again.refresh_from_db()

    assert again.balanced, again.discrepancies
    assert again.closing_points == 35
    assert Reconciliation.objects.filter(period=period).count() == 2  # each run is kept


def test_a_changed_entry_is_reported_exactly_and_not_corrected(coalition, till_a, till_b, member):
    period = _sound_month(coalition, till_a, till_b, member)
    entry = Entry.objects.get(
        account__tenant=till_a.tenant, account__kind=AccountKind.TENANT_ISSUED
    )
    # A superuser session switches the immutability triggers off and changes one entry.
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE coalition_entry SET value = value - 7 WHERE id = %s", [entry.pk])
        cursor.execute("SET session_replication_role = origin")

    found = reconciliation_run(period)

    # The figures disagree at once; the ledger check adds what it finds.
    assert found.balanced is False
    assert reconciliation_verify(found.pk) is False
    found.refresh_from_db()
    assert found.pool_value == Decimal("42.0000")
    assert (
        "Pool: funded less paid out, breakage and the rest is 42.0000; the points outstanding "
        "are worth 35.0000 (difference +7.0000)." in found.discrepancies
    )
    assert f"[entry_changed] entry {entry.pk}: digest does not match the row's contents" in (
        found.discrepancies
    )
    assert any(
        d.startswith(f"[journal_unbalanced] journal {entry.journal_id}")
        for d in (found.discrepancies)
    )
    # Reported, never corrected: the entry still says what it was changed to.
    assert Entry.objects.get(pk=entry.pk).value == entry.value - 7


def test_months_chain_and_expiry_rolls_forward(coalition, till_a, member):
    from django.utils import timezone

    from coalition.models import Coalition
    from settlement.models import Period
    from settlement.services import month_bounds

    Coalition.objects.filter(pk=coalition.pk).update(expiry_months=1)
    coalition.refresh_from_db()
    start, _ = _month(coalition)
    two_back = start - timedelta(days=40)
    earn(till_a, member, "1000.00", "A-1", two_back)  # 10 points, last day within 1 month
    last = period_close(coalition, start.date(), now=NOW)  # closes two months, in order
    closings = [r.closing_points for r in Reconciliation.objects.order_by("period__month")]
    assert closings == [10] * Period.objects.count() and len(closings) >= 2

    # The sweep posts now, in the open month; reconcile that month as it stands.
    expiry_notices_queue(now=timezone.now() - timedelta(days=30), coalition=coalition)
    assert lots_expire(as_of=timezone.now(), coalition=coalition) == 10
    this_start, this_end = month_bounds(coalition, timezone.localdate(NOW))
    current = Period.objects.create(
        coalition=coalition,
        month=this_start.date(),
        starts_at=this_start,
        ends_at=this_end,
        closed_at=timezone.now(),
    )
    found = reconciliation_run(current)
    reconciliation_verify(found.pk)
    found.refresh_from_db()

    assert found.balanced, found.discrepancies
    assert last.reconciliations.get().closing_points == found.opening_points == 10
    assert (found.expired_points, found.closing_points, found.pool_value) == (10, 0, 0)
    assert found.by_tenant == [
        {"tenant_id": till_a.tenant_id, "tenant": "apparel", "opening": 10, "credited": 0,
         "taken": 10, "closing": 0}
    ]  # fmt: skip


def test_a_change_in_an_earlier_month_is_caught_by_the_ledger_check(
    coalition, till_a, till_b, member
):
    """A month's figures start from last month's closing ones, so an entry changed in an
    earlier month after it was reconciled does not move this month's roll-forward: the ledger
    check, which reads every entry ever written, is what reports it."""
    start, _ = _month(coalition)
    earlier = start - timedelta(days=20)
    first = earn(till_a, member, "4000.00", "A-0", earlier)
    earn(till_b, member, "2500.00", "F-1", start + timedelta(days=3))
    period = period_close(coalition, start.date(), now=NOW)  # closes the earlier month too
    assert reconciliations_verify_pending() == 1
    found = period.reconciliations.get()
    assert found.balanced, found.discrepancies
    assert found.opening_points == 40  # last month's closing, carried
    changed = Entry.objects.get(journal=first, account__kind=AccountKind.TENANT_ISSUED)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE coalition_entry SET value = value - 7 WHERE id = %s", [changed.pk])
        cursor.execute("SET session_replication_role = origin")

    again = reconciliation_run(period)

    assert again.balanced is None  # the month's own figures still roll forward
    reconciliation_verify(again.pk)
    again.refresh_from_db()
    assert again.balanced is False
    assert f"[entry_changed] entry {changed.pk}: digest does not match the row's contents" in (
        again.discrepancies
    )


def test_the_operator_figures_of_a_month(coalition, till_a, till_b, member):
    from coalition.models import Coalition
    from tenants.models import TenantRate

    Coalition.objects.filter(pk=coalition.pk).update(programme_fee_percent=Decimal("2"))
    coalition.refresh_from_db()
    start, _ = _month(coalition)
    day = (start - timedelta(days=40)).date()
    TenantRate.objects.create(
        tenant=till_a.tenant, effective_from=day, price_per_point=Decimal("1.1000"),
        reimbursement_per_point=Decimal("1.0000"),
    )  # fmt: skip
    TenantRate.objects.create(
        tenant=till_b.tenant, effective_from=day, price_per_point=Decimal("1.0000"),
        reimbursement_per_point=Decimal("0.9000"),
    )  # fmt: skip
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))  # 40 at 1.10
    burn(till_b, member, 30, "F-2", start + timedelta(days=4))  # 30 at 0.90

    period = period_close(coalition, start.date(), now=NOW)

    found = period.reconciliations.get()
    assert found.margin_value == Decimal("4.0000")  # 40 x (1.10 - 1.00)
    assert found.variance_value == Decimal("3.0000")  # 30 x (1.00 - 0.90)
    assert found.fee_value == Decimal("0.88")  # 2% of the 44.00 apparel was billed
    assert (found.breakage_value, found.campaign_value, found.other_value) == (0, 0, 0)
    assert found.operator_total == Decimal("7.88")
