"""The till API under real concurrency: real HTTP against a live server, real threads.

pytest-django's `live_server` runs Django's threaded WSGI server in this process: one thread
and one database connection per request, closed when the request ends, against the same
PostgreSQL test database. Every client thread opens its own connection (`http.client`, or a
raw socket for a till that drops the line), and the threads of a race are released together
by a `threading.Barrier`. Set-up is committed (`transaction=True`) so the server can see it.

Where an interleaving must not be left to chance, the test itself holds the member's account
rows locked from its own connection, exactly as a long burn on the same member would: the
request that claimed the Idempotency-Key waits inside its transaction while the others arrive.
No application code is patched.
"""

import http.client
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from pytest_django.live_server_helper import LiveServer

from coalition.models import Account, Coalition, IdempotencyRecord, Journal, JournalKind
from coalition.services import points_earn
from members.models import Identifier, IdentifierKind, Member
from members.selectors import member_balances
from members.tests.factories import MemberFactory
from tenants.models import Till
from tenants.services import till_key_issue

pytestmark = pytest.mark.django_db(transaction=True)

RACE_TIMEOUT = 30.0  # seconds; a request still unanswered after this is stuck
SETTLE_TIMEOUT = 10.0  # seconds to wait for the server to finish a request nobody listens to
PROBLEM = "application/problem+json"
BACKLOG = 128  # connections the live server queues before resetting more
LOCK_TIMEOUT_MS = 20_000  # how long a request may wait for a member's lock

LedgerCheck = Callable[[Coalition], None]


# --- the server ----------------------------------------------------------------------------


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """pytest-django's live server, made to take a crowd. Django's `WSGIServer` listens with a
    backlog of 10 (`request_queue_size`); when fifty tills connect at once, Linux resets the
    connections beyond it instead of queueing them (a production server listens with a
    backlog in the thousands). Calling `listen` again on the bound socket only raises its
    backlog."""
    live_server.thread.httpd.socket.listen(BACKLOG)
    return live_server


@pytest.fixture(autouse=True)
def patient_locks(settings: Any) -> None:
    """Fifty burns of one member queue on its row lock, in one process whose threads share a
    GIL: the last waits about 2 s here, and a slow CI machine could reach the API's 5 s lock
    timeout and get the designed 503. These tests are about what is posted, not how fast, so
    requests may wait longer (still well inside `RACE_TIMEOUT`)."""
    settings.API_LOCK_TIMEOUT_MS = LOCK_TIMEOUT_MS


# --- a till speaking HTTP ------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes  # the raw bytes, so replays can be compared byte for byte

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"

    @property
    def problem(self) -> str:
        """The problem's name: the last segment of its `type` URI."""
        assert self.headers.get("content-type") == PROBLEM, self
        return str(self.json()["type"]).rsplit("/", 1)[-1]

    @property
    def transaction_id(self) -> str:
        return str(self.json()["transaction"]["id"])


@dataclass(frozen=True)
class TillHTTP:
    """One till with its own key, talking to the live server; every request on a new
    connection, so threads never share one."""

    host: str
    port: int
    api_key: str

    def headers(self, key: str, length: int) -> dict[str, str]:
        return {
            "Host": f"{self.host}:{self.port}",
            "Authorization": f"Api-Key {self.api_key}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
            "Content-Length": str(length),
            "Connection": "close",
        }

    def post(self, path: str, body: bytes, *, key: str) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=RACE_TIMEOUT)
        try:
            conn.request("POST", f"/api/v1/{path}", body=body, headers=self.headers(key, len(body)))
            response = conn.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return Reply(response.status, headers, response.read())
        finally:
            conn.close()

    def post_and_hang_up(self, path: str, body: bytes, *, key: str) -> None:
        """Send a complete POST, then close the socket without reading a byte of the answer:
        a till whose line dropped after it sent the request."""
        head = "".join(
            f"{name}: {value}\r\n" for name, value in self.headers(key, len(body)).items()
        )
        request = f"POST /api/v1/{path} HTTP/1.1\r\n{head}\r\n".encode("ascii") + body
        with socket.create_connection((self.host, self.port), timeout=RACE_TIMEOUT) as sock:
            sock.sendall(request)


def speak_as(server: LiveServer, till: Till) -> TillHTTP:
    _, raw_key = till_key_issue(till=till)
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    return TillHTTP(url.hostname, url.port, raw_key)


def body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def earn_body(member: Member, receipt: str, amount: str = "4000.00") -> bytes:
    return body(
        {"member": {"id": str(member.pk)}, "amount": amount, "currency": "INR", "receipt": receipt}
    )


# --- racing --------------------------------------------------------------------------------


def start_race(
    pool: ThreadPoolExecutor, calls: Sequence[Callable[[], Reply]]
) -> list[Future[Reply]]:
    """Submit every call to its own thread; all are released at once by a barrier."""
    barrier = threading.Barrier(len(calls))

    def together(call: Callable[[], Reply]) -> Callable[[], Reply]:
        def run() -> Reply:
            barrier.wait(timeout=RACE_TIMEOUT)
            return call()

        return run

    return [pool.submit(together(call)) for call in calls]


def race(calls: Sequence[Callable[[], Reply]]) -> list[Reply]:
    """Run the calls together, one thread and one connection each; their replies in order.
    Fails if any request is still unanswered after `RACE_TIMEOUT` or could not be made."""
    pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="till")
    futures = start_race(pool, calls)
    return finish(pool, futures)


def finish(pool: ThreadPoolExecutor, futures: Sequence[Future[Reply]]) -> list[Reply]:
    _, not_done = wait(futures, timeout=RACE_TIMEOUT)
    pool.shutdown(wait=not not_done, cancel_futures=True)
    assert not not_done, f"{len(not_done)} of {len(futures)} requests got no answer"
    return [future.result() for future in futures]


def no_server_errors(replies: Sequence[Reply]) -> None:
    errors = [reply for reply in replies if reply.status >= 500]
    assert not errors, f"{len(errors)} server errors, e.g. {errors[0]!r}"


# --- waiting on the server -----------------------------------------------------------------


def eventually(condition: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def key_answered(till: Till, key: str) -> bool:
    """The request under `key` has committed its answer (the record and the posting together)."""
    return IdempotencyRecord.objects.filter(till=till, key=key).exists()


def request_threads() -> frozenset[threading.Thread]:
    """The live server's request threads now running (`ThreadingMixIn` names each thread after
    its target). A request whose client hung up is only seen finishing here."""
    return frozenset(
        thread
        for thread in threading.enumerate()
        if thread.name.endswith("(process_request_thread)")
    )


def wait_until_served(others: frozenset[threading.Thread]) -> None:
    """Until every request made since `others` was taken has finished (connections another
    test left open keep their threads; those are not waited for)."""
    eventually(lambda: request_threads() <= others, "the server to finish")


def backends_waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps showing its first snapshot of the activity
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def member_busy(member: Member) -> Iterator[None]:
    """Hold the member's account rows locked from this test's own connection, as a long burn
    on the same member would: any posting for the member waits until the block ends (or until
    `API_LOCK_TIMEOUT_MS`, when it gives up with a 503)."""
    with transaction.atomic():
        list(Account.objects.select_for_update().filter(member=member))
        yield


# --- 1. many burns on one member -----------------------------------------------------------


def test_fifty_concurrent_burns_spend_each_point_once(
    server: LiveServer,
    till_a: Till,
    till_b: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    # Given a member with 1,000 points
    points_earn(till=till_a, member=member, amount=Decimal("100000.00"), receipt="A-1")
    assert member_balances(member).balance == 1000
    food_court = speak_as(server, till_b)

    # When 50 burns of 30 points each (1,500 in all), each with its own receipt and key,
    # arrive at once
    def burn(n: int) -> Callable[[], Reply]:
        data = {
            "member": {"id": str(member.pk)},
            "points": 30,
            "bill_amount": "600.00",
            "receipt": f"F-{n}",
        }
        return lambda: food_court.post("burn", body(data), key=uuid.uuid4().hex)

    replies = race([burn(n) for n in range(50)])

    # Then exactly as many as the balance covers succeed, the rest are refused, none crash
    no_server_errors(replies)
    assert Counter(reply.status for reply in replies) == {201: 33, 409: 17}
    taken = 33 * 30
    spent = [reply for reply in replies if reply.status == 201]
    refused = [reply for reply in replies if reply.status == 409]
    assert {reply.problem for reply in refused} == {"insufficient-points"}
    # Each burn saw the balance the previous one left: the balances answered are every step
    # from 970 down to 10, once each, and never below zero
    assert sorted(reply.json()["balance"] for reply in spent) == list(range(10, 1000, 30))
    assert all(reply.json()["available"] == 1000 - taken for reply in refused)
    assert all(not reply.replayed for reply in replies)

    # And the ledger agrees: what the burns took is what the balance lost
    assert member_balances(member).balance == 1000 - taken
    burns = Journal.objects.filter(member=member, kind=JournalKind.BURN)
    assert burns.count() == 33
    assert burns.aggregate(total=Sum("points"))["total"] == taken
    assert {str(j) for j in burns.values_list("public_id", flat=True)} == {
        reply.transaction_id for reply in spent
    }
    # Refusals are answers too: every one of the 50 keys has its stored response
    assert IdempotencyRecord.objects.filter(till=till_b).count() == 50
    assert_ledger_clean(member.coalition)


# --- 2. one Idempotency-Key, many copies of the request ------------------------------------


def assert_exactly_once(replies: Sequence[Reply], till: Till, receipt: str) -> Reply:
    """The invariants of one key sent many times at once, however the requests interleaved.
    Returns the original (not replayed) answer."""
    no_server_errors(replies)
    answered = [reply for reply in replies if 200 <= reply.status < 300]
    others = [reply for reply in replies if not 200 <= reply.status < 300]
    assert {reply.status for reply in answered} == {201}
    originals = [reply for reply in answered if not reply.replayed]
    assert len(originals) == 1, f"{len(originals)} requests answered as the first"
    assert {reply.body for reply in answered} == {originals[0].body}, "a replay differs"
    assert {(reply.status, reply.problem) for reply in others} <= {(409, "request-in-progress")}
    earns = Journal.objects.filter(till=till, kind=JournalKind.EARN, receipt=receipt)
    assert [str(public_id) for public_id in earns.values_list("public_id", flat=True)] == [
        originals[0].transaction_id
    ]
    return originals[0]


def test_one_key_sent_twenty_times_at_once_posts_once(
    server: LiveServer,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    apparel = speak_as(server, till_a)
    # Three rounds, each a fresh key: overlap is likely, but whether a copy lands while the
    # first is running (409) or after it committed (a replay) is up to the scheduler, so only
    # what holds either way is asserted
    for round_ in range(3):
        key, receipt = f"race-{round_}-{uuid.uuid4().hex}", f"A-{round_}"
        request = earn_body(member, receipt)

        replies = race([partial(apparel.post, "earn", request, key=key)] * 20)

        assert_exactly_once(replies, till_a, receipt)
    assert member_balances(member).balance == 3 * 40
    assert_ledger_clean(member.coalition)


def test_copies_arriving_while_the_first_runs_are_request_in_progress(
    server: LiveServer,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    # Given a member whose accounts another posting holds: the copy that claims the key first
    # will wait inside its transaction, still holding the key
    apparel = speak_as(server, till_a)
    key, request = uuid.uuid4().hex, earn_body(member, "A-1")
    pool = ThreadPoolExecutor(max_workers=20, thread_name_prefix="till")
    with member_busy(member):
        # When 20 copies of one request arrive together
        futures = start_race(pool, [partial(apparel.post, "earn", request, key=key)] * 20)
        # Then the 19 that found the key claimed are answered at once, without waiting
        answered_early = []
        try:
            for future in as_completed(futures, timeout=SETTLE_TIMEOUT):
                answered_early.append(future.result())
                if len(answered_early) == 19:
                    break
        except TimeoutError:
            pass
        assert len(answered_early) == 19, f"only {len(answered_early)} answered while busy"
        assert {(r.status, r.problem) for r in answered_early} == {(409, "request-in-progress")}
    # And once the member is free, the first completes; nothing was stored for the 409s, so a
    # retry of any of them now gets the first one's answer
    replies = finish(pool, futures)
    first = assert_exactly_once(replies, till_a, "A-1")
    retry = apparel.post("earn", request, key=key)
    assert (retry.status, retry.replayed, retry.body) == (201, True, first.body)
    assert_ledger_clean(member.coalition)


def test_one_key_used_by_two_tills_at_once_is_two_requests(
    server: LiveServer,
    till_a: Till,
    till_b: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    # Keys are scoped to the till: two tills that happen to pick the same key at the same
    # moment are two purchases, neither waits for nor replays the other
    apparel, food_court = speak_as(server, till_a), speak_as(server, till_b)
    for round_ in range(5):
        key, request = f"shared-{round_}", earn_body(member, f"R-{round_}")

        replies = race(
            [partial(till.post, "earn", request, key=key) for till in (apparel, food_court)]
        )

        assert [(reply.status, reply.replayed) for reply in replies] == [(201, False)] * 2
        assert [reply.json()["transaction"]["tenant"] for reply in replies] == [
            "apparel",
            "food-court",
        ]
    assert Journal.objects.filter(kind=JournalKind.EARN).count() == 10
    assert_ledger_clean(member.coalition)


def test_one_receipt_posted_for_two_members_at_once_is_a_duplicate(
    server: LiveServer,
    coalition: Coalition,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    # Two members' postings do not wait for each other's locks, so both pass the receipt
    # check; the receipt's unique index decides, and the loser is a 409, not a 5xx
    other = MemberFactory.create(coalition=coalition)
    apparel = speak_as(server, till_a)
    for round_ in range(5):
        receipt = f"A-{round_}"
        replies = race(
            [
                partial(apparel.post, "earn", earn_body(shopper, receipt), key=uuid.uuid4().hex)
                for shopper in (member, other)
            ]
        )

        no_server_errors(replies)
        assert sorted(reply.status for reply in replies) == [201, 409]
        (refused,) = (reply for reply in replies if reply.status == 409)
        assert refused.problem == "duplicate-receipt"
        assert Journal.objects.filter(kind=JournalKind.EARN, receipt=receipt).count() == 1
    assert member_balances(member).balance + member_balances(other).balance == 5 * 40
    assert_ledger_clean(coalition)


# --- 3. a till that hung up, then retried --------------------------------------------------


def test_retry_after_a_dropped_connection_replays_the_posting(
    server: LiveServer,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    # Given a till that sent an earn and lost the line before reading the answer
    others = request_threads()
    apparel = speak_as(server, till_a)
    key, request = uuid.uuid4().hex, earn_body(member, "A-1")
    apparel.post_and_hang_up("earn", request, key=key)
    eventually(lambda: key_answered(till_a, key), "the dropped request to commit")
    journal = Journal.objects.get(till=till_a, kind=JournalKind.EARN, receipt="A-1")

    # When it retries the same request with the same key
    retry = apparel.post("earn", request, key=key)

    # Then it gets the answer it missed, and nothing is posted twice
    assert (retry.status, retry.replayed) == (201, True)
    assert retry.transaction_id == str(journal.public_id)
    assert retry.json()["balance"] == 40
    assert Journal.objects.filter(till=till_a, kind=JournalKind.EARN).count() == 1
    assert member_balances(member).balance == 40
    wait_until_served(others)
    assert_ledger_clean(member.coalition)


def test_retry_racing_a_dropped_request_posts_nothing_twice(
    server: LiveServer,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    others = request_threads()
    apparel = speak_as(server, till_a)
    outcomes: Counter[str] = Counter()
    for round_ in range(5):
        # Given a till that hung up after sending, and at once sends the request again
        key, receipt = uuid.uuid4().hex, f"A-{round_}"
        request = earn_body(member, receipt)
        apparel.post_and_hang_up("earn", request, key=key)
        retry = apparel.post("earn", request, key=key)

        # Then the retry is told to wait, or gets the one answer (first or replayed)
        if retry.status == 409:
            assert retry.problem == "request-in-progress"
            outcomes["in progress"] += 1
        else:
            assert retry.status == 201
            outcomes["replayed" if retry.replayed else "first"] += 1
        # And a later retry gets the posting, which exists once
        eventually(partial(key_answered, till_a, key), "the key to be answered")
        again = apparel.post("earn", request, key=key)
        assert (again.status, again.replayed) == (201, True)
        if retry.status == 201:
            assert again.body == retry.body
        earns = Journal.objects.filter(till=till_a, kind=JournalKind.EARN, receipt=receipt)
        assert [str(j) for j in earns.values_list("public_id", flat=True)] == [again.transaction_id]
        wait_until_served(others)
    assert sum(outcomes.values()) == 5
    assert member_balances(member).balance == 5 * 40
    assert_ledger_clean(member.coalition)


def test_retry_while_the_dropped_request_still_runs_is_request_in_progress(
    server: LiveServer,
    till_a: Till,
    member: Member,
    assert_ledger_clean: LedgerCheck,
) -> None:
    others = request_threads()
    apparel = speak_as(server, till_a)
    key, request = uuid.uuid4().hex, earn_body(member, "A-1")
    with member_busy(member):
        # Given a dropped request that has claimed its key and is waiting for the member
        apparel.post_and_hang_up("earn", request, key=key)
        eventually(lambda: backends_waiting_on_locks() >= 1, "the request to wait")

        # When the till retries meanwhile
        retry = apparel.post("earn", request, key=key)

        # Then it is told the request is still running, and nothing is stored for that
        assert (retry.status, retry.problem, retry.replayed) == (409, "request-in-progress", False)
        assert not IdempotencyRecord.objects.filter(till=till_a, key=key).exists()

    # And once the first finishes, the retry gets its answer: one posting
    eventually(lambda: key_answered(till_a, key), "the dropped request to commit")
    again = apparel.post("earn", request, key=key)
    assert (again.status, again.replayed) == (201, True)
    journal = Journal.objects.get(till=till_a, kind=JournalKind.EARN, receipt="A-1")
    assert again.transaction_id == str(journal.public_id)
    wait_until_served(others)
    assert_ledger_clean(member.coalition)


# --- 4. two tills enrol one phone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling_a", "spelling_b"),
    [
        pytest.param("+91981234560{}", "+91981234560{}", id="same-spelling"),
        pytest.param("+91 98123 4560{}", "0981234560{}", id="e164-and-national"),
    ],
)
def test_one_phone_enrolled_at_two_tills_at_once_makes_one_member(
    server: LiveServer,
    coalition: Coalition,
    till_a: Till,
    till_b: Till,
    assert_ledger_clean: LedgerCheck,
    spelling_a: str,
    spelling_b: str,
) -> None:
    apparel, food_court = speak_as(server, till_a), speak_as(server, till_b)

    def enrol(till: TillHTTP, phone: str) -> Callable[[], Reply]:
        data = {"phone": phone, "adult": True, "consents": {"programme": True}}
        return partial(till.post, "members", body(data), key=uuid.uuid4().hex)

    for round_ in range(5):
        # When two tills of two tenants enrol the same phone at the same moment, each with its
        # own Idempotency-Key
        replies = race(
            [
                enrol(apparel, spelling_a.format(round_)),
                enrol(food_court, spelling_b.format(round_)),
            ]
        )

        # Then one enrols the member and the other is told it exists, naming nothing else
        no_server_errors(replies)
        assert sorted(reply.status for reply in replies) == [201, 409]
        (enrolled,) = (reply for reply in replies if reply.status == 201)
        (refused,) = (reply for reply in replies if reply.status == 409)
        assert refused.problem == "member-exists"
        assert b"98123" not in refused.body and enrolled.json()["id"].encode() not in refused.body
        phone = Identifier.objects.get(kind=IdentifierKind.PHONE, value=f"+91981234560{round_}")
        assert str(phone.member_id) == enrolled.json()["id"]

    # And there is one member per phone, with no half-enrolled loser left behind
    assert Member.objects.filter(coalition=coalition).count() == 5
    assert Identifier.objects.filter(kind=IdentifierKind.PHONE).count() == 5
    assert_ledger_clean(coalition)
