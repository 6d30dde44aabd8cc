"""PostgreSQL goes away for two seconds under load, and the app rides it out without a restart.

The app is a real gunicorn (two workers, four threads each) whose `DATABASE_URL` points at a
`FaultProxy` in front of the test database, so its persistent connections (`CONN_MAX_AGE`) are
the ones the outage cuts. Client threads post earns and burns and look members up, each
request under a fresh Idempotency-Key, over plain HTTP with a timeout. In the middle the proxy
goes down — every connection cut, new ones reset at once, as while a server restarts — and
comes back. Every answer must be a 2xx or a 503 `try-again` with Retry-After; a 503 is retried
under the same key until it is a 2xx; and in the end each key has exactly one posting and the
ledger verifies. The test's own connection goes straight to PostgreSQL.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from coalition.models import Coalition, IdempotencyRecord, Journal, JournalKind
from coalition.services import points_earn
from members.models import Member
from members.selectors import member_balances
from members.tests.factories import MemberFactory
from tenants.models import Till
from tenants.services import till_key_issue
from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 6
CLIENT_TIMEOUT = 20.0  # seconds: an answer later than this is a hang
OUTAGE = 2.0  # seconds the database is away
OPS_BEFORE = 3  # operations each client completes before the outage
OPS_AFTER = 3  # ... and after it, every one on a fresh key
START_TIMEOUT = 60.0  # seconds for gunicorn to answer (slow, shared CI machines)
MAX_ATTEMPTS = 30  # a 503 retried this often without a 2xx means the app did not recover
PROBLEM = "application/problem+json"
SEED_POINTS = 1000
EARN_POINTS = 5  # 500.00 at 1 point per 100.00
BURN_POINTS = 1


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Gunicorn:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_answers(host: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=2)
        conn.request("GET", "/api/v1/members/lookup")
        return conn.getresponse().status == 401  # no key: answered without the database
    except OSError:
        return False


@pytest.fixture
def db_outage_proxy(transactional_db: Any) -> Iterator[FaultProxy]:
    """A proxy for the app's connections only; the test's own stay direct."""
    db = connection.settings_dict
    with FaultProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as proxy:
        yield proxy
    assert proxy.threads_alive() == [], "the proxy left threads running"


@pytest.fixture
def app(db_outage_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gunicorn]:
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    url = f"postgres://{user}{password}@{db_outage_proxy.host}:{db_outage_proxy.port}/{db['NAME']}"
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "coalition.settings.test",
        "DATABASE_URL": url,
        "API_LOCK_TIMEOUT_MS": str(settings.API_LOCK_TIMEOUT_MS),
        "TILL_RATE_LIMIT": "0",
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "coalition.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        "--workers=2",
        "--threads=4",
        "--timeout=60",
        "--graceful-timeout=5",
        "--error-logfile=-",
        "--preload",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not app_answers("127.0.0.1", port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gunicorn did not start\n" + log.read_text()
            time.sleep(0.2)
        yield Gunicorn("127.0.0.1", port, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- a till speaking HTTP ------------------------------------------------------------------


@dataclass
class TillHTTP:
    host: str
    port: int
    api_key: str

    def request(self, method: str, path: str, body: bytes = b"", key: str = "") -> Reply:
        headers = {"Authorization": f"Api-Key {self.api_key}", "Connection": "close"}
        if key:
            headers |= {"Idempotency-Key": key, "Content-Type": "application/json"}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT)
        try:
            conn.request(method, f"/api/v1/{path}", body=body or None, headers=headers)
            response = conn.getresponse()
            headers_in = {name.lower(): value for name, value in response.getheaders()}
            return Reply(response.status, headers_in, response.read())
        finally:
            conn.close()


@dataclass
class Client:
    """One till posting for one member, retrying every 503 under the same key."""

    http: TillHTTP
    member: Member
    name: str
    replies: list[Reply] = field(default_factory=list)
    posted: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # key → op, body
    retried: set[str] = field(default_factory=set)
    done_before: int = 0
    done_after: int = 0

    def until_answered(self, method: str, path: str, body: bytes = b"", key: str = "") -> Reply:
        for _ in range(MAX_ATTEMPTS):
            reply = self.http.request(method, path, body, key)
            self.replies.append(reply)
            if reply.status != 503:
                return reply
            self.retried.add(key or path)
            time.sleep(int(reply.headers.get("retry-after", "1")))
        raise AssertionError(f"{method} {path} {key}: still 503 after {MAX_ATTEMPTS} attempts")

    def operate(self, n: int) -> None:
        op = ("earn", "burn", "lookup")[n % 3]
        who = {"id": str(self.member.pk)}
        if op == "lookup":
            reply = self.until_answered("GET", f"members/lookup?id={self.member.pk}")
            assert reply.status == 200, reply
            return
        receipt = f"{self.name}-{n}"
        data: dict[str, Any]
        if op == "earn":
            data = {"member": who, "amount": "500.00", "currency": "INR", "receipt": receipt}
        else:
            data = {
                "member": who,
                "points": BURN_POINTS,
                "bill_amount": "50.00",
                "receipt": receipt,
            }
        key = uuid.uuid4().hex
        self.posted[key] = (op, data)
        reply = self.until_answered("POST", op, json.dumps(data).encode(), key)
        assert reply.status == 201, reply

    def run(self, outage_over: threading.Event, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set() or self.done_after < OPS_AFTER:
            after = outage_over.is_set()
            self.operate(n)
            n += 1
            if after:
                self.done_after += 1
            else:
                self.done_before += 1


def test_the_app_rides_out_a_database_restart_under_load(
    app: Gunicorn,
    db_outage_proxy: FaultProxy,
    coalition: Coalition,
    till_a: Till,
    till_b: Till,
    assert_ledger_clean: Any,
) -> None:
    # Given tills of two tenants, each client with its own member holding points to burn
    clients = []
    for n in range(CLIENTS):
        till = (till_a, till_b)[n % 2]
        member = MemberFactory.create(coalition=coalition)
        points_earn(
            till=till_a, member=member, amount=Decimal(SEED_POINTS * 100), receipt=f"SEED-{n}"
        )
        _, api_key = till_key_issue(till=till)
        http = TillHTTP(app.host, app.port, api_key)
        clients.append(Client(http, member, f"C{n}"))
    outage_over, stop = threading.Event(), threading.Event()
    pool = ThreadPoolExecutor(max_workers=CLIENTS, thread_name_prefix="till")
    runs = [pool.submit(client.run, outage_over, stop) for client in clients]

    # When, with requests flowing, the database goes away for two seconds and comes back
    wait_for(
        lambda: all(c.done_before >= OPS_BEFORE for c in clients) or any(r.done() for r in runs)
    )
    connections_before = db_outage_proxy.connections_seen
    cut = db_outage_proxy.down()
    time.sleep(OUTAGE)
    db_outage_proxy.up()
    outage_over.set()
    stop.set()
    _, hung = wait(runs, timeout=MAX_ATTEMPTS * (CLIENT_TIMEOUT + 1))
    pool.shutdown(wait=not hung, cancel_futures=True)
    assert not hung, "a client hung"
    for run in runs:
        run.result()  # a client's failed assertion or a timed-out request fails the test

    # Then the outage was real: the app's open connections were cut and requests refused
    assert cut > 0
    assert db_outage_proxy.connections_refused > 0
    replies = [reply for c in clients for reply in c.replies]
    refused = [reply for reply in replies if reply.status == 503]
    assert refused, "no request met the outage"
    # ... every answer was a success or a clean, retryable 503 (never a 500)
    for reply in replies:
        assert reply.status in (200, 201, 503), reply
        if reply.status == 503:
            assert reply.headers["content-type"] == PROBLEM, reply
            assert reply.json()["type"].endswith("/try-again"), reply
            assert int(reply.headers["retry-after"]) >= 1, reply
    log = app.log.read_text()
    assert "Traceback" not in log, log
    # ... the same processes served requests after it, on new database connections
    assert app.process.poll() is None
    assert all(c.done_after >= OPS_AFTER for c in clients)
    assert db_outage_proxy.connections_seen > connections_before
    # ... and each key posted exactly once, whatever its retries met
    for client in clients:
        for key, (op, data) in client.posted.items():
            journals = Journal.objects.filter(receipt=data["receipt"], member=client.member)
            assert journals.count() == 1, (key, op, data)
            record = IdempotencyRecord.objects.get(key=key)
            assert json.loads(bytes(record.body))["transaction"]["id"] == str(
                journals.get().public_id
            )
        earns = sum(1 for op, _ in client.posted.values() if op == "earn")
        burns = sum(1 for op, _ in client.posted.values() if op == "burn")
        assert Journal.objects.filter(member=client.member, kind=JournalKind.BURN).count() == burns
        expected = SEED_POINTS + earns * EARN_POINTS - burns * BURN_POINTS
        assert member_balances(client.member).balance == expected
    assert any(c.retried & set(c.posted) for c in clients), "no POST was retried"
    assert_ledger_clean(coalition)


def wait_for(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
