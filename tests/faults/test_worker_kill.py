"""A worker SIGKILLed in the middle of the monthly close, the expiry sweep and a batch file.

Each test builds its scenario, then:
- runs the job once, undisturbed, in this process inside a transaction: it records the rows the
  job wrote (and checks the ledger) and rolls back, so the database is as the scenario left it
  (the same comparison as against a `CREATE DATABASE ... TEMPLATE` copy, without the two
  checkpoints that creating and dropping a database cost);
- then a real worker, whose database connection goes through the fault proxy with a delay so the
  job is slow, takes the job from the broker; the test polls the database until the job is
  part-way (some of its work committed, not all, and its claim held) and SIGKILLs the worker's
  whole process group. A new worker and a real beat rerun it the way the product does (beat's
  catch-up of a missed run; for a batch file, the resume job).
The rows must then be the same as the undisturbed run's (compared without surrogate ids and
timestamps, which legitimately differ), and `ledger_verify` clean.
"""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from coalition.models import Batch, BatchLine, BatchStatus, Coalition, LineStatus
from coalition.selectors import ledger_verify
from coalition.services import points_burn, points_earn
from coalition.services.batches import batch_create
from coalition.services.notices import expiry_notices_queue
from coalition.services.programme import add_months
from coalition.services.schedule import beat_schedule_sync
from coalition.tests.factories import CoalitionFactory
from members.models import Member
from members.selectors import member_card
from members.tests.factories import MemberFactory
from settlement.models import Period
from settlement.services.close import last_ended_month, month_bounds
from tenants.models import Till
from tenants.tests.factories import TenantFactory, TillFactory
from tests.faults.proxy import FaultProxy
from tests.faults.workers import (
    CeleryProcess,
    beat_start,
    broker_flush,
    database_url,
    processes,
    sql,
    wait_until,
    worker_start,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Every chunk to and from the database waits this long: a job of a few hundred queries then
# takes seconds, and the test sees it part-way.
SLOW = 0.04

# The rows a job writes, without surrogate ids and timestamps. A journal is named by what it is
# (coalition, kind, member, store, receipt, points), and rows pointing at journals use that name.
_JOURNAL_KEY = """
    SELECT id, concat_ws('|', coalition_id, kind, member_id, store_id, receipt, points) AS k
    FROM coalition_journal
"""
CANONICAL = {
    "journals": f"""
        WITH jk AS ({_JOURNAL_KEY})
        SELECT jk.k, j.amount, j.bill_amount, j.value, j.point_value, j.reason, rk.k
        FROM coalition_journal j JOIN jk ON jk.id = j.id LEFT JOIN jk rk ON rk.id = j.reverses_id
    """,
    "entries": f"""
        WITH jk AS ({_JOURNAL_KEY})
        SELECT jk.k, a.coalition_id, a.kind, a.member_id, a.tenant_id, e.points, e.value,
            e.balance_before, e.balance_after
        FROM coalition_entry e JOIN jk ON jk.id = e.journal_id
        JOIN coalition_account a ON a.id = e.account_id
    """,
    "accounts": """
        SELECT coalition_id, kind, member_id, tenant_id, balance FROM coalition_account
    """,
    "lots": f"""
        WITH jk AS ({_JOURNAL_KEY})
        SELECT jk.k, l.member_id, l.funding_tenant_id, l.points, l.remaining, l.expires_on,
            l.pending_until IS NULL, l.notice_id IS NULL
        FROM coalition_lot l JOIN jk ON jk.id = l.journal_id
    """,
    "consumptions": f"""
        WITH jk AS ({_JOURNAL_KEY})
        SELECT lk.k, jk.k, c.points
        FROM coalition_lotconsumption c JOIN coalition_lot l ON l.id = c.lot_id
        JOIN jk lk ON lk.id = l.journal_id JOIN jk ON jk.id = c.journal_id
    """,
    "coalitions": "SELECT id, closed_through FROM coalition_coalition",
    "periods": "SELECT coalition_id, month, starts_at, ends_at, journals FROM settlement_period",
    "statements": """
        SELECT p.coalition_id, p.month, s.tenant_id, s.opening_balance, s.issued_points,
            s.issued_value, s.honoured_points, s.honoured_value, s.reversed_value, s.fee,
            s.payments, s.adjustments, s.breakage_returned, s.final, s.net_amount,
            s.statement_date, s.due_on
        FROM settlement_statement s JOIN settlement_period p ON p.id = s.period_id
    """,
    "statement_lines": """
        SELECT p.coalition_id, p.month, s.tenant_id, l.kind, l.rate, l.count, l.points, l.amount
        FROM settlement_statementline l JOIN settlement_statement s ON s.id = l.statement_id
        JOIN settlement_period p ON p.id = s.period_id
    """,
    "reconciliations": """
        SELECT p.coalition_id, p.month,
            (to_jsonb(r) - 'id' - 'period_id' - 'created_at' - 'ledger_checked_at')::text
        FROM settlement_reconciliation r JOIN settlement_period p ON p.id = r.period_id
    """,
    "batches": """
        SELECT public_id, status, lines_total, lines_accepted, lines_rejected
        FROM coalition_batch
    """,
    "batch_lines": f"""
        WITH jk AS ({_JOURNAL_KEY})
        SELECT b.public_id, l.line, l.status, l.problem, l.detail, jk.k
        FROM coalition_batchline l JOIN coalition_batch b ON b.id = l.batch_id
        LEFT JOIN jk ON jk.id = l.journal_id
    """,
    "members": "SELECT id, coalition_id, status FROM members_member",
}


def canonical() -> dict[str, list[tuple[Any, ...]]]:
    """Every table above as a sorted list of rows, read on Django's connection."""
    found = {}
    with connection.cursor() as cursor:
        for name, query in CANONICAL.items():
            cursor.execute(query)
            found[name] = sorted(cursor.fetchall(), key=repr)  # repr: NULLs sort with the rest
    return found


class _RollBack(Exception):
    pass


def undisturbed(run: Callable[[], object]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows `run` leaves when nothing disturbs it; the database is left as it was."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with transaction.atomic():
            run()
            found.update(canonical())
            for coalition in Coalition.objects.all():
                assert ledger_verify(coalition) == [], coalition
            raise _RollBack
    except _RollBack:
        pass
    return found


@pytest.fixture(autouse=True)
def broker_empty() -> Iterator[None]:
    broker_flush()
    yield
    broker_flush()


@pytest.fixture
def db_proxy() -> Iterator[FaultProxy]:
    conf = connection.settings_dict
    with FaultProxy(conf.get("HOST") or "127.0.0.1", int(conf.get("PORT") or 5432)) as proxy:
        yield proxy


def db_name() -> str:
    return str(connection.settings_dict["NAME"])


def claims_held() -> int:
    """Session-level advisory locks (the jobs' claims) held in the test database."""
    return int(
        sql(
            db_name(),
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )[0][0]
    )


def slow_worker(proxy: FaultProxy, started: list[CeleryProcess]) -> CeleryProcess:
    proxy.delay(SLOW)
    worker = worker_start(db_url=database_url(port=proxy.port))
    started.append(worker)
    return worker


def kill_part_way(worker: CeleryProcess, part_way: Callable[[], bool]) -> None:
    """Wait until the job is part-way with its claim held, then SIGKILL the worker's group."""
    wait_until(lambda: part_way() and claims_held() > 0, seconds=90, every=0.02)
    worker.kill()
    # The killed worker's database sessions end (rolling back what they had not committed) and
    # take its claims with them: nothing is left held for the rerun.
    wait_until(lambda: claims_held() == 0, seconds=30)


def beat_catches_up(task: str, started: list[CeleryProcess]) -> None:
    """Start a fresh worker, and a beat that finds `task`'s last run long past: the run it missed
    while the worker was dead is due now (the other periodic tasks are switched off)."""
    beat_schedule_sync()  # the schedule `migrate` leaves (a flush between tests removes it)
    PeriodicTask.objects.exclude(task=task).update(enabled=False)
    # django-celery-beat only loads crontab jobs whose hour is within two hours of now, so the
    # daily 00:15 sweep would be missed at most hours of the day: the job keeps its minute and
    # runs every hour here, which beat always loads.
    every_hour, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="*", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone=settings.CELERY_TIMEZONE,
    )  # fmt: skip
    PeriodicTask.objects.filter(task=task, crontab__hour__regex=r"^\d+$").update(crontab=every_hour)
    PeriodicTask.objects.filter(task=task).update(
        enabled=True, last_run_at=timezone.now() - timedelta(days=2)
    )
    # Both start at once (each takes seconds to import the project); beat sends the missed run as
    # soon as it is up, and the message waits on the broker for the worker.
    worker, beat = worker_start(wait=False), beat_start(wait=False)
    started += [worker, beat]
    worker.wait_for_log("ready.")
    beat.wait_for_log("beat: Starting")


def assert_same_as(expected: dict[str, list[tuple[Any, ...]]]) -> None:
    found = canonical()
    for table in CANONICAL:
        assert found[table] == expected[table], table
    for coalition in Coalition.objects.all():
        assert ledger_verify(coalition) == [], coalition


# --- the monthly close ------------------------------------------------------------------------


def _close_scenario(coalition: Coalition) -> tuple[list[datetime], int]:
    """Three ended months, never closed, with earns and burns of four tenants in each."""
    tills = [
        TillFactory.create(tenant=TenantFactory.create(coalition=coalition), code=f"t{n}")
        for n in range(4)
    ]
    members = MemberFactory.create_batch(3, coalition=coalition)
    last = last_ended_month(coalition, timezone.now())
    months = [month_bounds(coalition, add_months(last, -back))[0] for back in (2, 1, 0)]
    for m, start in enumerate(months):
        for t, till in enumerate(tills):
            for member in members:
                at = start + timedelta(days=2 + t, hours=m)
                points_earn(
                    till=till,
                    member=member,
                    amount=Decimal("1500.00"),
                    receipt=f"E{m}{t}{member.pk.hex[:6]}",
                    occurred_at=at,
                    now=at,
                )
            at = start + timedelta(days=20 + t)
            points_burn(
                till=till,
                member=members[t % 3],
                points=5,
                bill_amount=Decimal("300.00"),
                receipt=f"B{m}{t}",
                occurred_at=at,
                now=at,
            )
    return months, len(months)


def test_a_close_killed_part_way_is_rerun_by_beat_and_matches_an_undisturbed_one(
    coalition, db_proxy
):
    from settlement.tasks import periods_close_due_task

    # Given three ended months nobody closed yet, and what an undisturbed close makes of them
    _, due = _close_scenario(coalition)
    expected = undisturbed(periods_close_due_task)
    assert len(expected["periods"]) == due
    with processes() as started:
        # When a slow worker closes them and is killed after the first month, inside the rest
        worker = slow_worker(db_proxy, started)
        periods_close_due_task.delay()
        kill_part_way(worker, lambda: 0 < Period.objects.filter(coalition=coalition).count() < due)
        left = Period.objects.filter(coalition=coalition).count()
        assert 0 < left < due  # what it committed stayed; the month it was inside left nothing
        # And the hourly close's missed run is caught up by beat, on a new worker
        beat_catches_up("settlement.tasks.periods_close_due_task", started)
        wait_until(lambda: Period.objects.filter(coalition=coalition).count() == due, 90, 0.2)
        wait_until(
            lambda: not Period.objects.filter(reconciliations__balanced__isnull=True).exists(),
            60,
            0.2,
        )
    # Then every month is closed once, exactly as an undisturbed close closes them
    assert_same_as(expected)


# --- the expiry sweep -------------------------------------------------------------------------


def _expiry_scenario() -> list[Coalition]:
    """Four coalitions (the sweep takes one after another, each in its own transactions), each
    with members holding lots past their last day whose notice went out long ago."""
    now = timezone.now()
    earned = now - timedelta(days=400)
    coalitions = []
    for n in range(4):
        coalition = CoalitionFactory.create()
        till = TillFactory.create(tenant=TenantFactory.create(coalition=coalition), code="x")
        for member in MemberFactory.create_batch(3, coalition=coalition):
            for k in range(2):
                points_earn(
                    till=till,
                    member=member,
                    amount=Decimal("2000.00"),
                    receipt=f"X{n}{k}{member.pk.hex[:8]}",
                    occurred_at=earned + timedelta(days=k),
                    now=earned + timedelta(days=k),
                )
        coalitions.append(coalition)
    # The daily notices ran while the lots were about to expire, more than a window ago.
    expiry_notices_queue(now=earned + timedelta(days=340))
    return coalitions


def _expired_in(coalition: Coalition) -> int:
    return int(
        sql(
            db_name(),
            "SELECT count(*) FROM coalition_journal WHERE coalition_id = %s AND kind = 'expire'",
            [coalition.pk],
        )[0][0]
    )


def test_a_sweep_killed_part_way_is_rerun_by_beat_and_matches_an_undisturbed_one(
    db_proxy,
):
    from coalition.tasks import lots_expire_task

    # Given four coalitions with lots due, and what an undisturbed sweep makes of them
    coalitions = _expiry_scenario()
    expected = undisturbed(lots_expire_task)
    with processes() as started:
        # When a slow worker sweeps and is killed after the first coalition, before the last
        worker = slow_worker(db_proxy, started)
        lots_expire_task.delay()
        kill_part_way(
            worker, lambda: _expired_in(coalitions[0]) > 0 and _expired_in(coalitions[-1]) == 0
        )
        assert _expired_in(coalitions[-1]) == 0
        # And the daily sweep's missed run is caught up by beat, on a new worker
        beat_catches_up("coalition.tasks.lots_expire_task", started)
        wait_until(lambda: _expired_in(coalitions[-1]) == 3, 90, 0.2)
    # Then every due lot expired once (one journal per member), as in an undisturbed sweep
    assert len([j for j in expected["journals"] if "|expire|" in j[0]]) == 12
    assert_same_as(expected)


# --- a till's batch file ----------------------------------------------------------------------

HEADER = "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"


def _batch_scenario(till: Till, members: list[Member]) -> Batch:
    rows = []
    for n in range(12):
        card = member_card(members[n % len(members)])
        rows.append(f"earn,K-{n},,{card},,,{1000 + n}.00,,")
        if n % 4 == 3:
            rows.append(f"burn,KB-{n},,{card},,,,5,200.00")
    rows.append(f"earn,K-1,,{member_card(members[0])},,,999.00,,")  # a clashing receipt
    return batch_create(till=till, content=(HEADER + "\n".join(rows) + "\n").encode())


def _lines_done(batch: Batch) -> int:
    return BatchLine.objects.filter(batch=batch, status=LineStatus.ACCEPTED).count()


def test_a_batch_killed_part_way_is_resumed_and_matches_an_undisturbed_one(till_a, db_proxy):
    from coalition.tasks import batch_process_task

    # Given a batch file recorded (its message is on the broker), and what an undisturbed worker
    # makes of it
    members = MemberFactory.create_batch(3, coalition=till_a.tenant.coalition)
    batch = _batch_scenario(till_a, members)
    total = batch.lines_total
    expected = undisturbed(lambda: batch_process_task(batch.pk))
    with processes() as started:
        # When a slow worker posts it and is killed part-way through its lines
        worker = slow_worker(db_proxy, started)
        kill_part_way(worker, lambda: 2 <= _lines_done(batch) < total - 4)
        batch.refresh_from_db()
        assert batch.status == BatchStatus.PROCESSING
        assert 2 <= _lines_done(batch) < total - 4
        # And the batch is older than the resume job's patience (time passes; we do not wait)
        Batch.objects.filter(pk=batch.pk).update(started_at=timezone.now() - timedelta(hours=1))
        beat_catches_up("coalition.tasks.batches_resume_task", started)
        wait_until(lambda: Batch.objects.get(pk=batch.pk).status == BatchStatus.DONE, 90, 0.2)
    # Then each line was posted once, as an undisturbed worker posts them
    assert_same_as(expected)
    batch.refresh_from_db()
    assert (batch.lines_accepted, batch.lines_rejected) == (total - 1, 1)
