"""An earn whose database connection dies: the till gets a clean 503 and a retry posts once.

The app's `default` connection runs through a `FaultProxy` (`db_proxy`) to the real PostgreSQL,
and the proxy cuts it at a chosen point of the earn's wire traffic:
- (a) just before COMMIT reaches the server: nothing was committed;
- (b) just after COMMIT was forwarded, before its reply: the server committed, the app can't know;
- (c) in the middle of the posting: the journal's INSERT reached the server, the entries did not.

Warm-up earns run first on the same connection, so the earn's statements are already prepared
(psycopg's `prepare_threshold`): their SQL text is no longer on the wire, only Bind messages
with the parameters. So the cut matches what every execution sends: COMMIT is always a simple
query, and the receipt is a parameter of the journal INSERT (the first statement that carries
it, `points_earn` runs no query on the receipt before it).
"""

import time
from typing import Any

import pytest
from django.db import connection

from coalition.models import Coalition, IdempotencyRecord, Journal
from members.models import Member
from members.selectors import member_balances
from tests.faults.proxy import FaultProxy, Trigger
from tests.test_till_api_contract import earn_body, ok
from tests.till_api import PROBLEM, TillClient, problem_name

WARM_UPS = 3  # earns before the fault: more than psycopg's prepare_threshold (2)
POINTS = 40  # an earn of 4000.00 at the default rule of 1 point per 100.00


def assert_try_again(response: Any) -> None:
    """A clean, retryable refusal: 503 problem+json `try-again` with a Retry-After."""
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == PROBLEM
    assert problem_name(response) == "try-again"
    assert int(response["Retry-After"]) >= 1
    assert response.json()["status"] == 503


def warm_up(api: TillClient, member: Member) -> None:
    for n in range(WARM_UPS):
        ok(api.post("earn", earn_body(member, receipt=f"WARM-{n}")), 201)


def backend_pid() -> int:
    """The server process behind Django's connection (the one the till's requests use)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def cut_backend_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until the server side of the cut connection (`pid`) has ended: it commits a COMMIT
    it had read, or rolls back, when it reads the end-of-file; only then is the outcome final.
    Other sessions (a worker, another test's threads) are none of its business."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        if row is not None and row[0] == 0:
            return
        assert time.monotonic() < deadline, "the cut connection's backend is still there"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("where", "arm", "committed"),
    [
        pytest.param(
            "before-commit", lambda p, r: p.cut_on(b"COMMIT"), False, id="a-before-commit"
        ),
        pytest.param(
            "after-commit",
            lambda p, r: p.cut_on(b"COMMIT", forward=True),
            True,
            id="b-after-commit-before-reply",
        ),
        pytest.param(
            "mid-posting",
            lambda p, r: p.cut_on(r.encode(), forward=True),
            False,
            id="c-mid-posting",
        ),
    ],
)
def test_an_earn_cut_off_from_the_database_is_a_503_and_its_retry_posts_once(
    db_proxy: FaultProxy,
    api_a: TillClient,
    member: Member,
    coalition: Coalition,
    assert_ledger_clean: Any,
    where: str,
    arm: Any,
    committed: bool,
) -> None:
    # Given a till whose earn statements are already prepared on its database connection
    warm_up(api_a, member)
    pid = backend_pid()
    receipt = f"CUT-{where}"
    body = earn_body(member, receipt=receipt)
    key = f"fault-{where}"

    # When the connection is cut at that point of the earn
    trigger: Trigger = arm(db_proxy, receipt)
    first = api_a.post("earn", body, key=key)

    # Then the till gets a clean 503 it may retry, not a 500
    assert trigger.wait(0), "the fault did not fire"
    assert_try_again(first)
    cut_backend_gone(pid)
    # ... and the database holds the earn only if COMMIT reached the server
    assert Journal.objects.filter(receipt=receipt).count() == (1 if committed else 0)
    assert IdempotencyRecord.objects.filter(key=key).exists() == committed

    # When the till retries with the same Idempotency-Key
    retried = api_a.post("earn", body, key=key)

    # Then there is exactly one posting, and a committed earn's stored answer is replayed
    posted = ok(retried, 201)
    journal = Journal.objects.get(receipt=receipt)
    assert posted["transaction"]["id"] == str(journal.public_id)
    assert (retried.get("Idempotent-Replayed") == "true") == committed
    assert member_balances(member).balance == POINTS * (WARM_UPS + 1)
    assert posted["balance"] == POINTS * (WARM_UPS + 1)
    # ... and a third try is the same answer again
    again = ok(api_a.post("earn", body, key=key), 201)
    assert again["transaction"]["id"] == str(journal.public_id)
    assert Journal.objects.filter(receipt=receipt).count() == 1
    assert_ledger_clean(coalition)
