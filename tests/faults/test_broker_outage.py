"""The broker is unreachable: the till API goes on serving, and nothing is lost.

The app in this process publishes through the fault proxy in front of the real Redis (its broker
setting overridden; its Redis timeouts are the product's, `coalition/celery.py`); `proxy.down()`
makes the broker refuse every connection, and `proxy.delay()` makes it a silent one. Counting
the connections the proxy saw shows which requests touch the broker at all. When the broker
returns, a real worker and a real beat (processes of their own, talking to Redis directly) pick
up the lost work.
"""

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kombu import pools

from coalition.celery import app
from coalition.models import Batch, BatchStatus, Journal
from coalition.services import points_earn
from coalition.services.schedule import beat_schedule_sync
from members.selectors import member_card
from settlement.models import Period
from settlement.services.close import last_ended_month, month_bounds
from tests.faults.proxy import FaultProxy
from tests.faults.workers import (
    beat_start,
    broker_flush,
    broker_url,
    processes,
    wait_until,
    worker_start,
)

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"
RESUME = "coalition.tasks.batches_resume_task"
CLOSE = "settlement.tasks.periods_close_due_task"


def _app_broker(url: str) -> None:
    """Point this process's Celery app at `url`, dropping the connections it holds."""
    pools.reset()  # kombu's shared connection and producer pools, keyed by broker
    app._pool = None  # type: ignore[attr-defined]  # rebuilt from the new URL on next use
    app.amqp._producer_pool = None  # type: ignore[attr-defined]
    app.conf["broker_url"] = url  # the transport options (timeouts) are the app's own


@pytest.fixture
def redis_url() -> str:
    """Redis itself: where worker and beat processes connect."""
    return broker_url()


@pytest.fixture
def broker_proxy(
    settings: Any, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> Iterator[FaultProxy]:
    """The app's broker behind the fault proxy (Redis itself keeps running for everyone)."""
    original = redis_url
    broker_flush(original)
    host, port = "127.0.0.1", int(original.rsplit(":", 1)[1].split("/")[0])
    with FaultProxy(host, port) as proxy:
        settings.CELERY_BROKER_URL = proxy.url_for(original)
        # Celery reads the environment variable before its own setting.
        monkeypatch.setenv("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)
        _app_broker(settings.CELERY_BROKER_URL)
        try:
            yield proxy
        finally:
            monkeypatch.setenv("CELERY_BROKER_URL", original)
            _app_broker(original)
    broker_flush(original)


def broker_contacts(proxy: FaultProxy) -> int:
    return proxy.connections_seen + proxy.connections_refused


def within(seconds: float, call: Any) -> Any:
    """`call()` in a thread; fails if it has not returned after `seconds` (a hang, not a slow
    answer: the bound is far above any normal request)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"no answer within {seconds} s: the request blocks on the broker"
    return result[0]


def test_the_till_api_serves_while_the_broker_is_unreachable(api_a, api_b, broker_proxy):
    # Given a broker that refuses every connection
    broker_proxy.down()
    # When tills enrol, earn, burn, reverse and look up
    enrolled = within(
        30,
        lambda: api_a.post(
            "members",
            {"phone": "+919800000001", "adult": True, "consents": {"programme": True}},
        ),
    )
    assert enrolled.status_code == 201, enrolled.content
    card = enrolled.json()["card"]
    earned = within(
        30,
        lambda: api_a.post(
            "earn",
            {"member": {"card": card}, "amount": "4000.00", "currency": "INR", "receipt": "O-1"},
        ),
    )
    assert earned.status_code == 201, earned.content
    burned = within(
        30,
        lambda: api_b.post(
            "burn",
            {
                "member": {"card": card},
                "points": 10,
                "bill_amount": "600.00",
                "receipt": "O-2",
            },
        ),
    )
    assert burned.status_code == 201, burned.content
    earn_id = earned.json()["transaction"]["id"]
    reversed_ = within(
        30,
        lambda: api_a.post(
            f"transactions/{earn_id}/reverse", {"reason": "refund", "amount": "1000.00"}
        ),
    )
    assert reversed_.status_code == 201, reversed_.content
    looked_up = within(30, lambda: api_a.get("members/lookup", card=card))
    assert looked_up.status_code == 200, looked_up.content
    assert looked_up.json()["balance"] == 40 - 10 - 10
    # Then every answer came without the broker: nothing in these requests connected to it
    assert broker_contacts(broker_proxy) == 0


def test_a_batch_upload_does_not_hang_on_a_silent_broker(api_a, member, broker_proxy):
    # Given a broker that accepts connections and never answers (a dead host behind a NAT)
    broker_proxy.delay(3600)
    # When a till uploads a batch file
    content = HEADER + f"earn,S-1,,{member_card(member)},,,1000.00,,\n"
    response = within(30, lambda: api_a.post("batches", raw=content, content_type="text/csv"))
    # Then the upload is answered (the broker's socket timeouts give up) and the batch waits as a
    # row for the resume job
    assert response.status_code == 202, response.content
    assert Batch.objects.get(public_id=response.json()["id"]).status == BatchStatus.QUEUED
    assert broker_proxy.connections_seen >= 1


def _close_due(coalition: Any, till: Any, member: Any) -> None:
    """A month that ended with an earn in it and was never closed."""
    start, _ = month_bounds(coalition, last_ended_month(coalition, timezone.now()))
    at = start + timedelta(days=3)
    points_earn(
        till=till, member=member, amount=Decimal("2000.00"), receipt="M-1", occurred_at=at, now=at
    )


def test_work_queued_during_an_outage_is_picked_up_when_the_broker_returns(
    api_a, member, broker_proxy, redis_url
):
    coalition = member.coalition
    _close_due(coalition, api_a.till, member)
    card = member_card(member)
    # Given the broker is down
    broker_proxy.down()
    # When a till uploads a batch file
    content = HEADER + f"earn,Q-1,,{card},,,1000.00,,\nearn,Q-2,,{card},,,3000.00,,\n"
    response = within(30, lambda: api_a.post("batches", raw=content, content_type="text/csv"))
    # Then it is accepted and recorded, queued as a row; the app tried the broker, a bounded
    # number of times (the publish retry policy), and gave up
    assert response.status_code == 202, response.content
    lost = Batch.objects.get(public_id=response.json()["id"])
    assert lost.status == BatchStatus.QUEUED
    assert 1 <= broker_proxy.connections_refused <= 2  # kombu's default policy tries 4 times
    # And while it is down the hourly close falls due (its run is missed)
    beat_schedule_sync()
    PeriodicTask.objects.exclude(task__in=[RESUME, CLOSE]).update(enabled=False)
    long_ago = timezone.now() - timedelta(hours=2)
    PeriodicTask.objects.filter(task__in=[RESUME, CLOSE]).update(enabled=True, last_run_at=long_ago)
    # The outage outlasts the resume job's patience (we age the row rather than wait)
    Batch.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert not Period.objects.filter(coalition=coalition).exists()

    # When the broker returns, with a worker and beat running
    broker_proxy.up()
    with processes() as started:
        worker, beat = (
            worker_start(broker=redis_url, wait=False),
            beat_start(broker=redis_url, wait=False),
        )
        started += [worker, beat]
        worker.wait_for_log("ready.")
        beat.wait_for_log("beat: Starting")
        # And the till uploads another file: this one's message gets through at once
        fresh = api_a.post(
            "batches",
            raw=HEADER + f"earn,Q-3,,{card},,,500.00,,\n",
            content_type="text/csv",
        )
        assert fresh.status_code == 202
        fresh_batch = Batch.objects.get(public_id=fresh.json()["id"])
        # Then the resume job re-sends the lost batch and a worker posts it; the new one is
        # posted from its own message; the missed close catches up the month
        done = [lost.pk, fresh_batch.pk]
        wait_until(
            lambda: Batch.objects.filter(pk__in=done, status=BatchStatus.DONE).count() == 2,
            90,
            0.2,
        )
        wait_until(lambda: Period.objects.filter(coalition=coalition).exists(), 60, 0.2)
        assert f"({CLOSE})" in beat.output()  # beat sent the run it had missed
    assert Journal.objects.filter(receipt__in=["Q-1", "Q-2", "Q-3"]).count() == 3
    lost.refresh_from_db()
    assert (lost.lines_accepted, lost.lines_rejected) == (2, 0)
