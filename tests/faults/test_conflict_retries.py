"""Serialization failures and deadlocks are retried a bounded number of times, then reported.

The errors are PostgreSQL's own: a PL/pgSQL trigger installed by the test on the journal table
raises SQLSTATE 40001 (or 40P01) for the first N journal inserts, counted in a sequence (a
sequence, unlike a table, keeps counting when the failed transaction rolls back). And one real
deadlock between two connections, each locking two rows in the opposite order.

The till API runs in the test's own transaction here only where the test needs nothing
committed; where it matters (the API, the deadlock) the tests commit (`transaction=True`) so
that each attempt is a whole transaction, as in production. Inside an enclosing transaction
`conflict_retry` retries a savepoint the same way.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import DataError, OperationalError, connection, transaction

from coalition.models import (
    Batch,
    BatchLine,
    BatchStatus,
    Coalition,
    IdempotencyRecord,
    Journal,
    JournalKind,
    LineStatus,
)
from coalition.retry import ATTEMPTS, conflict_retry, sqlstate
from coalition.services import lots_expire, points_earn
from coalition.services.batches import batch_create, batch_process
from coalition.services.notices import expiry_notices_queue
from members.models import Member
from members.selectors import member_balances, member_card
from tenants.models import Tenant, Till
from tests.test_till_api_contract import earn_body, ok
from tests.till_api import PROBLEM, TillClient, problem_name

IST = ZoneInfo("Asia/Kolkata")
RETRY_LOGGER = "coalition.retry"
BATCH_HEADER = "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"

Inject = Callable[[str, int], None]


@pytest.fixture
def inject_conflicts(db: Any) -> Iterator[Inject]:
    """`inject(sqlstate, n)`: the next `n` journal inserts fail with `sqlstate`, then all pass."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE fault_conflict_seq")
        cursor.execute(
            """
            CREATE FUNCTION fault_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('fault_conflict_seq') <= TG_ARGV[1]::int THEN
                    RAISE EXCEPTION 'injected % by a fault test', TG_ARGV[0]
                        USING ERRCODE = TG_ARGV[0];
                END IF;
                RETURN NEW;
            END $$
            """
        )

    def inject(state: str, n: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS fault_conflict ON coalition_journal")
            cursor.execute("ALTER SEQUENCE fault_conflict_seq RESTART")
            cursor.execute(
                "CREATE TRIGGER fault_conflict BEFORE INSERT ON coalition_journal FOR EACH ROW "
                f"EXECUTE FUNCTION fault_conflict('{state}', '{int(n)}')"
            )

    try:
        yield inject
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS fault_conflict ON coalition_journal")
            cursor.execute("DROP FUNCTION IF EXISTS fault_conflict()")
            cursor.execute("DROP SEQUENCE IF EXISTS fault_conflict_seq")


def inserts_tried() -> int:
    """Journal inserts the trigger saw since the last `inject` (failed and passed alike)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fault_conflict_seq"
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def retries_logged(caplog: pytest.LogCaptureFixture, state: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == RETRY_LOGGER and r.levelno == logging.INFO and f"sqlstate {state}" in r.message
    )


def gave_up_logged(caplog: pytest.LogCaptureFixture, state: str) -> bool:
    return any(
        r.name == RETRY_LOGGER
        and r.levelno == logging.WARNING
        and f"gave up after {ATTEMPTS} attempts (sqlstate {state})" in r.message
        for r in caplog.records
    )


# --- the till API --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("state", ["40001", "40P01"])
def test_an_earn_that_loses_races_is_retried_then_refused_with_nothing_applied(
    inject_conflicts: Inject,
    api_a: TillClient,
    member: Member,
    coalition: Coalition,
    assert_ledger_clean: Any,
    caplog: pytest.LogCaptureFixture,
    state: str,
) -> None:
    caplog.set_level(logging.INFO, logger=RETRY_LOGGER)
    # Given an earn whose journal insert fails with `state` one time fewer than the bound
    inject_conflicts(state, ATTEMPTS - 1)
    # When the till posts it
    first = ok(api_a.post("earn", earn_body(member, receipt="R-1"), key="k-1"), 201)
    # Then it was posted once, on the last attempt, and each retry was logged
    assert inserts_tried() == ATTEMPTS
    assert retries_logged(caplog, state) == ATTEMPTS - 1
    assert Journal.objects.filter(receipt="R-1").count() == 1
    assert first["balance"] == 40

    # Given an earn whose insert fails as many times as the bound
    caplog.clear()
    inject_conflicts(state, ATTEMPTS)
    # When the till posts it
    refused = api_a.post("earn", earn_body(member, receipt="R-2"), key="k-2")
    # Then it is a 503 try-again after exactly the bound of attempts, logged with its sqlstate
    assert refused.status_code == 503, refused.content
    assert refused["Content-Type"] == PROBLEM
    assert problem_name(refused) == "try-again"
    assert int(refused["Retry-After"]) >= 1
    assert inserts_tried() == ATTEMPTS
    assert gave_up_logged(caplog, state)
    # ... and nothing was applied, nor stored under the key
    assert not Journal.objects.filter(receipt="R-2").exists()
    assert not IdempotencyRecord.objects.filter(key="k-2").exists()
    assert member_balances(member).balance == 40

    # When the till retries the same key once the contention is over, it posts once
    retried = ok(api_a.post("earn", earn_body(member, receipt="R-2"), key="k-2"), 201)
    assert retried["balance"] == 80
    assert Journal.objects.filter(receipt="R-2").count() == 1
    assert_ledger_clean(coalition)


# --- a real deadlock -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_deadlock_between_two_connections_is_retried(
    till_a: Till, till_b: Till, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RETRY_LOGGER)
    # Given two transactions on two connections that lock the same two rows in opposite order,
    # each holding its first lock until the other has taken its own
    first_locks = threading.Barrier(2, timeout=30)
    runs: list[str] = []

    def lock_both(name: str, order: tuple[int, int]) -> str:
        def run() -> str:
            runs.append(name)
            with transaction.atomic():
                list(Tenant.objects.select_for_update().filter(pk=order[0]))
                if runs.count(name) == 1:  # the first attempt waits for the other's first lock
                    first_locks.wait()
                list(Tenant.objects.select_for_update().filter(pk=order[1]))
                Tenant.objects.filter(pk=order[1]).update(name=f"{name} was here")
            return name

        try:
            return conflict_retry(run, what=f"deadlock test {name}")
        finally:
            connection.close()  # this thread's own connection

    a, b = till_a.tenant_id, till_b.tenant_id
    # When both run at once
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = [pool.submit(lock_both, "one", (a, b)), pool.submit(lock_both, "two", (b, a))]
        results = [future.result(timeout=60) for future in done]

    # Then PostgreSQL broke the deadlock by failing one of them, which ran again and succeeded
    assert results == ["one", "two"]
    assert sorted(runs) in (["one", "one", "two"], ["one", "two", "two"])
    assert retries_logged(caplog, "40P01") == 1
    assert Tenant.objects.filter(name__endswith="was here").count() == 2


def test_a_conflict_that_is_not_retried_is_raised_at_once(db: Any) -> None:
    calls = []

    def run() -> None:
        calls.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")

    with pytest.raises(DataError) as raised:
        conflict_retry(run, what="a bug")
    assert sqlstate(raised.value) == "22012" and len(calls) == 1


# --- background jobs -----------------------------------------------------------------------


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, tzinfo=IST)


def test_the_expiry_sweep_retries_a_conflict_then_reports_it(
    inject_conflicts: Inject,
    till_a: Till,
    member: Member,
    coalition: Coalition,
    assert_ledger_clean: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=RETRY_LOGGER)
    # Given points earned long ago, noticed, and due to expire
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1000.00"),
        receipt="OLD",
        occurred_at=at(2024, 1, 1),
        now=at(2024, 1, 1),
    )
    as_of = at(2025, 6, 1)
    expiry_notices_queue(now=as_of - timedelta(days=30))

    # When the sweep's expiry journal fails as many times as the bound
    inject_conflicts("40P01", ATTEMPTS)
    # Then the sweep stops with the error after exactly the bound, logged with its sqlstate
    with pytest.raises(OperationalError) as raised:
        lots_expire(as_of=as_of)
    assert sqlstate(raised.value) == "40P01"
    assert inserts_tried() == ATTEMPTS
    assert gave_up_logged(caplog, "40P01")
    # ... having expired nothing
    assert member_balances(member).balance == 10
    assert not Journal.objects.filter(kind=JournalKind.EXPIRE).exists()

    # When the next run meets one conflict fewer than the bound
    inject_conflicts("40001", ATTEMPTS - 1)
    # Then it retries and expires the points once
    assert lots_expire(as_of=as_of) == 10
    assert inserts_tried() == ATTEMPTS
    assert retries_logged(caplog, "40001") == ATTEMPTS - 1
    assert member_balances(member).balance == 0
    assert Journal.objects.filter(kind=JournalKind.EXPIRE).count() == 1
    assert_ledger_clean(coalition)


def test_batch_processing_retries_a_conflict_then_reports_it_on_the_line(
    inject_conflicts: Inject,
    till_a: Till,
    member: Member,
    coalition: Coalition,
    assert_ledger_clean: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    card = member_card(member)
    content = BATCH_HEADER + f"earn,B-1,,{card},,,1000.00,,\nearn,B-2,,{card},,,2000.00,,\n"
    batch = batch_create(till=till_a, content=content.encode())

    # When its first line's journal insert fails as many times as the bound
    inject_conflicts("40001", ATTEMPTS)
    stopped = batch_process(batch_id=batch.pk)
    # Then processing stops there after exactly the bound, reported in the log and on the line
    assert stopped is not None and stopped.status == BatchStatus.PROCESSING
    assert inserts_tried() == ATTEMPTS
    assert gave_up_logged(caplog, "40001")
    assert any(
        r.levelno == logging.ERROR and "sqlstate 40001" in r.getMessage() for r in caplog.records
    )
    first, second = BatchLine.objects.filter(batch=batch).order_by("line")
    assert (first.status, first.problem) == (LineStatus.QUEUED, "try-again")
    assert "40001" in first.detail
    assert (second.status, second.problem) == (LineStatus.QUEUED, "")
    assert not Journal.objects.filter(receipt__in=["B-1", "B-2"]).exists()

    # When it is processed again and the first line meets one conflict fewer than the bound
    caplog.clear()
    inject_conflicts("40P01", ATTEMPTS - 1)
    done = batch_process(batch_id=batch.pk)
    # Then every line is posted once and the batch is done, the old note cleared
    assert done is not None and done.status == BatchStatus.DONE
    assert retries_logged(caplog, "40P01") == ATTEMPTS - 1
    assert done.lines_accepted == 2
    assert set(BatchLine.objects.filter(batch=batch).values_list("status", "problem")) == {
        (LineStatus.ACCEPTED, "")
    }
    assert Journal.objects.filter(receipt__in=["B-1", "B-2"]).count() == 2
    assert member_balances(member).balance == 30
    assert_ledger_clean(coalition)
    assert Batch.objects.get(pk=batch.pk).finished_at is not None
