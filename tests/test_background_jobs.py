"""Background jobs through the real broker and a real worker; the schedule after migrate."""

import time
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django_celery_beat.models import PeriodicTask

from coalition.celery import app
from coalition.claims import job_claim
from coalition.models import Journal, JournalKind
from coalition.services import points_earn
from coalition.services.notices import expiry_notices_queue
from coalition.tasks import lots_expire_task
from members.selectors import member_balances


def test_schedule_exists_after_migrate(db):
    jobs = {task.task: task for task in PeriodicTask.objects.select_related("crontab")}
    assert set(jobs) >= {"coalition.tasks.lots_expire_task", "coalition.tasks.points_release_task"}
    sweep = jobs["coalition.tasks.lots_expire_task"]
    assert sweep.enabled
    assert sweep.expire_seconds and sweep.expire_seconds > 0
    assert (sweep.crontab.hour, sweep.crontab.minute) == ("0", "15")


@pytest.mark.django_db(transaction=True)
def test_expiry_runs_on_a_real_worker_through_the_broker(till_a, member):
    # Given a lot whose last day has passed
    long_ago = datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(days=500)
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1200.00"),
        receipt="1",
        occurred_at=long_ago,
        now=long_ago,
    )
    # Its expiry notice was recorded more than the notice window (30 days) ago.
    expiry_notices_queue(now=datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(days=31))
    # When the task is queued on the broker and a worker picks it up
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        lots_expire_task.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Journal.objects.filter(kind=JournalKind.EXPIRE).exists():
                break
            time.sleep(0.2)
    # Then the points expired exactly once
    assert Journal.objects.filter(kind=JournalKind.EXPIRE).count() == 1
    assert member_balances(member).balance == 0


@pytest.mark.django_db(transaction=True)
def test_overlapping_run_is_skipped_by_the_claim(till_a, member):
    import threading

    long_ago = datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(days=500)
    points_earn(
        till=till_a,
        member=member,
        amount=Decimal("1200.00"),
        receipt="1",
        occurred_at=long_ago,
        now=long_ago,
    )
    # Its expiry notice was recorded more than the notice window (30 days) ago.
    expiry_notices_queue(now=datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(days=31))
    results: list[int] = []

    def second_run() -> None:
        # Another connection, as another worker would have.
        results.append(lots_expire_task.apply().get())
        connection.close()

    with job_claim("lots_expire") as held:
        assert held
        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
    assert results == [0]
    assert not Journal.objects.filter(kind=JournalKind.EXPIRE).exists()
    # Once the claim is free the job runs
    assert lots_expire_task.apply().get() == 12
