"""Batch files through the real broker and a real worker: recorded first, processed once,
picked up again when the message was lost or the worker died."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from coalition.celery import app
from coalition.models import Batch, BatchLine, BatchStatus, IdempotencyRecord, Journal, LineStatus
from coalition.services import points_earn
from coalition.services.batches import batch_create, batch_line_post, batch_process
from coalition.services.idempotency import idempotency_records_purge
from coalition.tasks import batches_resume_task
from members.selectors import member_balances, member_card

HEADER = "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"


def wait_for_done(batch: Batch, seconds: float = 30) -> Batch:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if batch.status == BatchStatus.DONE:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch still {batch.status} after {seconds} s")


@pytest.mark.django_db(transaction=True)
def test_an_uploaded_batch_is_processed_by_a_worker(api_a, member):
    card = member_card(member)
    content = HEADER + f"earn,B-1,,{card},,,4000.00,,\nburn,B-2,,{card},,,,30,600.00\n"
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        response = api_a.post("batches", raw=content, content_type="text/csv")
        assert response.status_code == 202
        batch = wait_for_done(Batch.objects.get(public_id=response.json()["id"]))
    assert (batch.lines_accepted, batch.lines_rejected) == (2, 0)
    assert member_balances(member).balance == 10
    body = api_a.get(f"batches/{batch.public_id}").json()
    assert body["status"] == "done"
    assert [line["status"] for line in body["lines"]] == ["accepted", "accepted"]


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_message_was_lost_is_resumed(till_a, member):
    # Given a batch recorded while its message never reached a worker
    content = (HEADER + f"earn,B-1,,{member_card(member)},,,1000.00,,\n").encode()
    batch = batch_create(till=till_a, content=content)
    app.control.purge()
    Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    # When the periodic resume job runs with a worker up
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        batches_resume_task.delay()
        batch = wait_for_done(batch)
    # Then the line was posted once
    assert batch.lines_accepted == 1
    assert Journal.objects.filter(receipt="B-1").count() == 1


def test_a_rerun_after_a_crash_posts_only_the_lines_left(till_a, member):
    # Given a batch whose worker died after posting its first line
    card = member_card(member)
    content = (HEADER + f"earn,B-1,,{card},,,1000.00,,\nearn,B-2,,{card},,,2000.00,,\n").encode()
    batch = batch_create(till=till_a, content=content)
    first = BatchLine.objects.get(batch=batch, line=2)
    batch_line_post(till=till_a, line=first)
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.PROCESSING)
    # When it is processed again, twice
    batch_process(batch_id=batch.pk)
    batch_process(batch_id=batch.pk)
    # Then each receipt was posted exactly once and the batch is done
    batch.refresh_from_db()
    assert (batch.status, batch.lines_accepted) == (BatchStatus.DONE, 2)
    assert Journal.objects.filter(receipt__in=["B-1", "B-2"]).count() == 2
    assert member_balances(member).balance == 30


def test_a_line_is_checked_at_processing_time(till_a, member):
    # Given an offline burn recorded while the member had enough points
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="E-1")
    content = (HEADER + f"burn,B-1,,{member_card(member)},,,,40,600.00\n").encode()
    batch = batch_create(till=till_a, content=content)
    # When the points are spent live before the worker gets to the line
    from coalition.services import points_burn

    points_burn(till=till_a, member=member, points=20, bill_amount=Decimal("100.00"), receipt="L-1")
    batch_process(batch_id=batch.pk)
    # Then the line is rejected, nothing half-posted
    line = BatchLine.objects.get(batch=batch)
    assert (line.status, line.problem) == (LineStatus.REJECTED, "insufficient-points")
    assert member_balances(member).balance == 20


def test_the_resume_and_purge_jobs_are_scheduled_after_migrate(db):
    tasks = {task.task: task for task in PeriodicTask.objects.select_related("crontab")}
    resume = tasks["coalition.tasks.batches_resume_task"]
    assert resume.enabled and resume.crontab.minute == "*/5"
    purge = tasks["coalition.tasks.idempotency_records_purge_task"]
    assert purge.enabled and purge.expire_seconds


def test_idempotency_records_are_kept_at_least_seven_days(api_a, member, settings):
    # Given two stored responses, 6 and 8 days old, and a retention set below the contract's floor
    settings.IDEMPOTENCY_RETENTION_DAYS = 1
    for receipt in ("R-1", "R-2"):
        api_a.post(
            "earn",
            {
                "member": {"id": str(member.pk)},
                "amount": "100.00",
                "currency": "INR",
                "receipt": receipt,
            },
        )
    assert IdempotencyRecord.objects.count() == 2
    now = timezone.now()
    young, old = IdempotencyRecord.objects.order_by("pk")
    IdempotencyRecord.objects.filter(pk=young.pk).update(created_at=now - timedelta(days=6))
    IdempotencyRecord.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=8))
    # When the purge runs
    assert idempotency_records_purge(now=now) == 1
    # Then only the one past 7 days is gone
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [young.pk]
