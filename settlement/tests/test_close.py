"""The monthly close: statements number for number, idempotent, in order, and frozen.

Every posting here is dated with `now=` inside the last month that has ended, so the close of
that month is due whatever day the suite runs.
"""

import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from coalition.models import Coalition, Journal
from coalition.services import points_burn, points_earn, points_reverse
from coalition.services.ledger import member_accounts_lock
from coalition.services.programme import add_months
from members.models import Member
from settlement import services as close_services
from settlement.models import LineKind, Period, Statement
from settlement.services import (
    month_bounds,
    period_close,
    periods_close_due,
)
from tenants.models import TenantRate, Till

NOW = timezone.now()


def _month(coalition: Coalition) -> tuple[datetime, datetime]:
    """The last month that has ended in the coalition's time zone, as [start, end)."""
    return month_bounds(coalition, close_services.last_ended_month(coalition, NOW))


def earn(till: Till, member: Member, amount: str, receipt: str, at: datetime) -> Journal:
    return points_earn(
        till=till, member=member, amount=Decimal(amount), receipt=receipt, occurred_at=at, now=at
    ).journal


def burn(till: Till, member: Member, points: int, receipt: str, at: datetime) -> Journal:
    return points_burn(
        till=till,
        member=member,
        points=points,
        bill_amount=Decimal("600.00"),
        receipt=receipt,
        occurred_at=at,
        now=at,
    ).journal


def statement(period: Period, till: Till) -> Statement:
    return Statement.objects.get(period=period, tenant=till.tenant)


def lines(found: Statement) -> list[tuple[str, Decimal | None, int, int, Decimal]]:
    return [(ln.kind, ln.rate, ln.count, ln.points, ln.amount) for ln in found.lines.all()]


def test_the_worked_example_closes_to_forty_each_way(coalition, till_a, till_b, member):
    start, end = _month(coalition)
    earn(till_a, member, "4000.00", "A-1001", start + timedelta(days=2))
    burn(till_b, member, 40, "F-77", start + timedelta(days=16))

    period = period_close(coalition, start.date(), now=NOW)

    apparel, food = statement(period, till_a), statement(period, till_b)
    assert apparel.net_amount == Decimal("40.00")
    assert apparel.direction == "tenant pays the pool"
    assert lines(apparel) == [(LineKind.ISSUED, Decimal("1.0000"), 1, 40, Decimal("40.00"))]
    assert food.net_amount == Decimal("-40.00")
    assert food.direction == "the pool pays the tenant"
    assert lines(food) == [(LineKind.HONOURED, Decimal("1.0000"), 1, 40, Decimal("40.00"))]
    # The pool holds ₹0 for this shopper: what the tenants owe and are owed cancels out.
    assert sum(s.net_amount for s in period.statements.all()) == Decimal("0.00")
    assert period.journals == 2
    assert (period.starts_at, period.ends_at) == (start, end)
    assert apparel.due_on == end.date() + timedelta(days=coalition.payment_terms_days)


def test_a_rate_change_mid_month_prices_each_side_of_it(coalition, till_a, member):
    start, _ = _month(coalition)
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from=(start + timedelta(days=10)).date(),
        price_per_point=Decimal("1.2500"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    earn(till_a, member, "1000.00", "A-1", start + timedelta(days=3))  # 10 pts at 1.00
    earn(till_a, member, "3000.00", "A-2", start + timedelta(days=12))  # 30 pts at 1.25
    earn(till_a, member, "1000.00", "A-3", start + timedelta(days=13))  # 10 pts at 1.25

    period = period_close(coalition, start.date(), now=NOW)

    found = statement(period, till_a)
    assert lines(found) == [
        (LineKind.ISSUED, Decimal("1.0000"), 1, 10, Decimal("10.00")),
        (LineKind.ISSUED, Decimal("1.2500"), 2, 40, Decimal("50.00")),
    ]
    assert found.issued_value == Decimal("60.00") == found.net_amount


def test_reversals_and_the_programme_fee(coalition, till_a, till_b, member):
    Coalition.objects.filter(pk=coalition.pk).update(programme_fee_percent=Decimal("2.5"))
    coalition.refresh_from_db()
    start, _ = _month(coalition)
    first = earn(till_a, member, "4000.00", "A-1", start + timedelta(days=1))
    earn(till_a, member, "2150.00", "A-2", start + timedelta(days=2))  # 21 pts
    points_reverse(
        original=first, tenant=till_a.tenant, till=till_a, reason="refund",
        now=start + timedelta(days=3),
    )  # fmt: skip

    period = period_close(coalition, start.date(), now=NOW)

    found = statement(period, till_a)
    # Issued 61 points (₹61), 40 reversed: fee 2.5% of ₹21 = ₹0.525 → ₹0.53 (half-up).
    assert found.issued_value == Decimal("61.00")
    assert found.reversed_value == Decimal("40.00")
    assert found.fee == Decimal("0.53")
    assert found.net_amount == Decimal("21.53")


def test_closing_twice_changes_nothing(coalition, till_a, member):
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    first = period_close(coalition, start.date(), now=NOW)
    before = list(Statement.objects.values_list("pk", "net_amount"))

    again = period_close(coalition, start.date(), now=NOW)

    assert again.pk == first.pk
    assert list(Statement.objects.values_list("pk", "net_amount")) == before


def test_a_month_not_ended_or_before_the_programme_is_refused(coalition):
    from coalition.errors import InvalidRequest

    this_month = timezone.localdate(NOW).replace(day=1)
    with pytest.raises(InvalidRequest, match="has not ended"):
        period_close(coalition, this_month, now=NOW)
    with pytest.raises(InvalidRequest, match="before the programme"):
        period_close(coalition, add_months(this_month, -1), now=NOW)
    assert not Period.objects.exists()


def test_a_late_posting_lands_in_the_open_month(coalition, till_a, member):
    start, end = _month(coalition)
    earn(till_a, member, "500.00", "A-1", start + timedelta(days=2))
    period_close(coalition, start.date(), now=NOW)

    late = earn(till_a, member, "500.00", "A-late", start + timedelta(days=20))

    # Dated inside the closed month, posted at the start of the open one.
    assert late.posted_at == end
    assert Journal.objects.get(pk=late.pk).posted_at == end
    assert late.occurred_at == start + timedelta(days=20)


def test_the_beat_job_catches_up_every_month_due_in_order(coalition, till_a, member):
    start, _ = _month(coalition)
    three_back = add_months(start.date(), -2)
    earn(till_a, member, "1000.00", "A-1", month_bounds(coalition, three_back)[0])
    earn(till_a, member, "2000.00", "A-2", start + timedelta(days=1))

    closed = periods_close_due(now=NOW)

    assert [p.month for p in closed] == [three_back, add_months(three_back, 1), start.date()]
    # Balance-forward: nobody paid, so each month carries the last one's balance.
    nets = [statement(p, till_a).net_amount for p in closed]
    assert nets == [Decimal("10.00"), Decimal("10.00"), Decimal("30.00")]
    assert [statement(p, till_a).opening_balance for p in closed] == [
        Decimal("0.00"),
        Decimal("10.00"),
        Decimal("10.00"),
    ]
    assert periods_close_due(now=NOW) == []


def test_a_crash_half_way_leaves_nothing_and_the_rerun_matches(
    coalition, till_a, till_b, member, monkeypatch
):
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    burn(till_b, member, 40, "F-1", start + timedelta(days=3))
    written = []
    real_create = Statement.objects.create

    def crash_after_the_first(**fields):
        if written:
            raise RuntimeError("worker killed")
        written.append(fields["tenant"])
        return real_create(**fields)

    monkeypatch.setattr(Statement.objects, "create", crash_after_the_first)
    with pytest.raises(RuntimeError):
        period_close(coalition, start.date(), now=NOW)
    assert len(written) == 1
    assert not Period.objects.exists()
    assert not Statement.objects.exists()

    monkeypatch.undo()
    period = period_close(coalition, start.date(), now=NOW)
    assert statement(period, till_a).net_amount == Decimal("40.00")
    assert statement(period, till_b).net_amount == Decimal("-40.00")


@pytest.mark.django_db(transaction=True)
def test_a_posting_running_as_the_close_begins_lands_wholly_in_the_old_month(
    coalition, till_a, member
):
    """The posting holds the period lock shared from its first statement; the close's freeze
    waits for it, so the statement includes it."""
    start, end = _month(coalition)
    earn(till_a, member, "1000.00", "A-early", start + timedelta(days=1))
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_earn() -> None:
        try:
            with transaction.atomic():
                member_accounts_lock(member.pk)  # the posting has begun: lock held shared
                locked.set()
                release.wait(10)
                earn(till_a, member, "4000.00", "A-slow", start + timedelta(days=27))
        except BaseException as exc:  # noqa: BLE001 (reported to the test below)
            errors.append(exc)
        finally:
            connection.close()

    poster = threading.Thread(target=slow_earn)
    poster.start()
    assert locked.wait(10)
    closer_done = threading.Event()
    closed: list[Period] = []

    def close() -> None:
        try:
            closed.append(period_close(coalition, start.date(), now=NOW))
        finally:
            connection.close()
            closer_done.set()

    closer = threading.Thread(target=close)
    closer.start()
    # The close is waiting for the posting in flight.
    assert not closer_done.wait(1.0)
    release.set()
    poster.join(10)
    closer.join(20)
    assert not errors
    assert statement(closed[0], till_a).net_amount == Decimal("50.00")
    # And from now on nothing is posted into the closed month.
    late = earn(till_a, member, "100.00", "A-after", start + timedelta(days=27))
    assert late.posted_at == end


def test_close_period_command_prints_each_statement(coalition, till_a, till_b, member):
    from io import StringIO

    from django.core.management import CommandError, call_command

    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    burn(till_b, member, 40, "F-1", start + timedelta(days=3))
    out = StringIO()

    call_command("close_period", "--month", f"{start:%Y-%m}", stdout=out)

    printed = out.getvalue()
    assert f"{start:%B %Y} closed (2 journals)" in printed
    assert "Apparel Co: 40.00 (tenant pays the pool)" in printed
    assert "Food Court: -40.00 (the pool pays the tenant)" in printed
    assert "Reconciliation: balanced" in printed
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("close_period", "--month", "October")
    with pytest.raises(CommandError, match="has not ended"):
        call_command("close_period", "--month", f"{NOW:%Y-%m}")


def test_the_close_is_scheduled_after_migrate(db):
    from django_celery_beat.models import PeriodicTask

    job = PeriodicTask.objects.select_related("crontab").get(
        task="settlement.tasks.periods_close_due_task"
    )
    assert job.enabled
    assert (job.crontab.minute, job.crontab.hour) == ("30", "*")


@pytest.mark.django_db(transaction=True)
def test_the_close_runs_on_a_real_worker_through_the_broker(coalition, till_a, member):
    import time

    from celery.contrib.testing.worker import start_worker

    from coalition.celery import app
    from settlement.tasks import periods_close_due_task

    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        periods_close_due_task.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not Period.objects.filter(month=start.date()):
            time.sleep(0.2)
    period = Period.objects.get(coalition=coalition, month=start.date())
    assert statement(period, till_a).net_amount == Decimal("40.00")


@pytest.mark.django_db(transaction=True)
def test_the_ledger_check_is_queued_at_the_close_and_run_by_a_worker(coalition, till_a, member):
    import time

    from celery.contrib.testing.worker import start_worker

    from coalition.celery import app
    from settlement.models import Reconciliation

    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    # Closed by the service alone: the check waits on the broker for a worker.
    period = period_close(coalition, start.date(), now=NOW)
    found = Reconciliation.objects.get(period=period)
    assert found.ledger_checked_at is None and found.balanced is None
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found.refresh_from_db()
            if found.ledger_checked_at is not None:
                break
            time.sleep(0.2)
    assert found.ledger_checked_at is not None
    assert found.balanced is True
