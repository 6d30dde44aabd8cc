"""Soak: mixed till traffic from all trading tenants' tills, a close and a sweep in the middle.

    .venv/bin/python bench/soak.py [--minutes 30] [--tills 16] [--members 1000] [--workers 4]
        [--no-docs] [--keep-db] [--json PATH]

What one run does, start to end:

1. creates a fresh database `coalition_soak_<pid>` on the server (`--database` to name it) and
   migrates it;
2. seeds it through the services, dated in the past so that the previous month is still open:
   the demo mall (`demo_load` with 20 members, its month of history ending a day before the
   seed; the months before are closed by it); then, on one day of the previous month (or 35
   days ago, whichever is earlier, so the expiry notices below are old enough), `--members`
   shoppers enrolled and funded with 5,000 points each (burns never run dry by design), a burn
   by every fifth and a part refund of the funding by every tenth, all with explicit
   `now`/`occurred_at`; and `--members / 10` (at least 10) lapsed shoppers whose single
   purchase was made a year and some days before, so their lot ended before today, with the
   expiry notice recorded that day (more than the 30-day window ago): the sweep must expire
   them. Then campaigns on every earn and one key per till of every tenant that may trade
   (till_load.py's own steps for those);
3. starts a Celery worker (`celery -A coalition worker`, 2 processes) on a queue of this run's
   own on the broker (`--broker`, else `CELERY_BROKER_URL`, else Redis db 0 on 127.0.0.1), so
   two runs sharing a broker never take each other's messages, and gunicorn (DEBUG off,
   persistent connections, rate limit off), each in its own process group;
4. runs `--tills` simulated tills for `--minutes` (threads, one connection each), every one
   cycling through its share of the till keys (so every till of every trading tenant posts),
   each request with its own Idempotency-Key: lookups, earns (campaigns running), burns,
   reversals (whole or part) of this till's earlier earns and burns, enrolments, transaction
   listings, and every `--batch-every` seconds a batch file of 20 lines. A 503 is retried
   with the same key after its Retry-After (at most 2 s), as a till must, and counted; any
   other unexpected status, or no answer, is an error;
5. half way through, queues `periods_close_due_task` and `lots_expire_task` through the broker
   while the tills go on; when both are done, queues each once more (the second run must find
   nothing to do), and the times the worker reports are the close's and the sweep's durations;
6. after the traffic: waits for the batches (every line must be accepted) and for the
   reconciliation's ledger check (queued by the close), stops gunicorn and the worker, and
   checks the database: `ledger_verify` clean; the closed month has its period, statements and
   a balanced reconciliation; each lapsed lot expired exactly once, by one expiry journal per
   shopper, and nothing else expired; the journals written since the seed are exactly the
   transactions the tills were answered with (live and batch lines) plus those expiry journals:
   nothing lost, nothing doubled, nothing unexplained;
7. prints throughput overall and per operation, p50/p99 per operation, errors, retries, the
   close's and the sweep's durations and the checks; writes `--json PATH` (the benches'
   figures convention); replaces the soak section of docs/benchmarks.md (`--no-docs` to leave
   it); drops the database (`--keep-db` keeps it).

Exit status: 0 when there were no errors and every check passed, 2 when not, 1 when a step
failed. Nothing is left running: every child runs in a process group of its own, killed on the
way out whatever happened. Latencies are what a till sees: from sending a request to its final
answer, retries included.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import report
import till_load
from common import BenchError, exit_on_signals, run_reported, say
from till_load import Children, Server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
BEGIN_MARK = "<!-- soak:begin (written by bench/soak.py; edits inside are replaced) -->"
END_MARK = "<!-- soak:end -->"
P99_TARGET_MS = 50.0  # the contract's target for an earn
EXPIRING_BASE = "79997"  # lapsed shoppers' cards (not in the tills' list)
ENROL_BASE = "79996"  # cards enrolled at the tills during the run
FUND_AMOUNT = "500000.00"  # 5,000 points per shopper
LAPSED_AMOUNT = "1234.00"  # 12 points per lapsed shopper
BATCH_LINES = 20
RETRY_CAP = 2.0  # seconds: a 503's Retry-After is honoured up to this
MAX_ATTEMPTS = 6
TASK_CLOSE = "settlement.tasks.periods_close_due_task"
TASK_SWEEP = "coalition.tasks.lots_expire_task"
# Operation: (weight per request, the status that means success)
MIX = {
    "lookup": (30, 200),
    "earn": (33, 201),
    "burn": (15, 201),
    "reverse": (5, 201),
    "enrol": (3, 201),
    "list": (14, 200),
}
OPERATIONS = (*MIX, "batch")
POSTING_OPERATIONS = ("earn", "burn", "reverse")


def python() -> str:
    return str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable)


# --- seeding (child processes with Django set up) -------------------------------------------------


def prepare_ledger(
    members: int, lapsed: int, enrol_cards: int, cards_file: str, keys_file: str
) -> None:
    """The demo mall, the shoppers and the lapsed shoppers, dated in the past; then
    till_load's campaigns and till keys (child process). Prints one JSON line: the tills, and
    what the checks at the end need."""
    import io
    from contextlib import redirect_stdout

    import django

    django.setup()
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from django.db import transaction
    from django.utils import timezone

    from coalition.demo import demo_load
    from coalition.models import Journal, Lot
    from coalition.services import Posting, points_burn, points_earn, points_reverse
    from coalition.services.notices import expiry_notices_queue
    from coalition.services.programme import add_months, local_date, lot_expiry
    from consent.models import ConsentChannel, ConsentPurpose
    from members.identifiers import luhn_check_digit
    from members.models import Member
    from members.services import member_enrol
    from tenants.models import TenantStatus, Till
    from tenants.selectors import tenant_can_issue, tenant_can_redeem

    def card(base: str, index: int) -> str:
        body = f"{base}{index:010d}"
        return body + luhn_check_digit(body)

    real_now = timezone.now()
    zone = ZoneInfo("Asia/Kolkata")  # the demo mall's (coalition default)
    local = real_now.astimezone(zone)
    this_month = datetime(local.year, local.month, 1, tzinfo=zone)
    previous = add_months(this_month.date(), -1)
    previous_start = datetime(previous.year, previous.month, 1, tzinfo=zone)
    # The seed's day: early in the previous month, and at least 35 days ago so that notices
    # recorded then are past the 30-day window when the sweep runs.
    seeded_at = min(previous_start + timedelta(days=2, hours=10), real_now - timedelta(days=35))
    result = demo_load(members=20, months=1, workers=1, now=seeded_at - timedelta(days=1))
    if result.problems:
        raise SystemExit(f"the demo ledger does not verify: {result.problems[:5]}")
    coalition = result.coalition
    tills = [
        till
        for till in Till.objects.select_related("tenant__coalition", "store")
        .filter(tenant__coalition=coalition, tenant__status=TenantStatus.ACTIVE)
        .order_by("pk")
        if tenant_can_issue(till.tenant) and tenant_can_redeem(till.tenant)
    ]
    consents = {ConsentPurpose.PROGRAMME: True}
    moment = itertools.count()

    def tick() -> datetime:  # postings one millisecond apart, in order
        return seeded_at + timedelta(milliseconds=next(moment))

    def enrol_earn(
        till: Till, card: str, name: str, amount: str, receipt: str, bought: datetime | None
    ) -> tuple[Member, Posting]:
        """A shopper enrolled at the next tick, with one purchase posted then, made at `bought`
        (then too when None)."""
        at = tick()
        member = member_enrol(
            coalition=coalition,
            consents=consents,
            card=card,
            name=name,
            adult=True,
            channel=ConsentChannel.STAFF,
            now=at,
        )
        posting = points_earn(
            till=till,
            member=member,
            amount=Decimal(amount),
            receipt=receipt,
            occurred_at=bought or at,
            now=at,
        )
        return member, posting

    for start in range(0, members, 100):
        with transaction.atomic():
            for index in range(start, min(start + 100, members)):
                till = tills[index % len(tills)]
                name, receipt = f"Soak shopper {index}", f"soak-fund-{index}"
                card_number = till_load.card_number(index)
                member, funded = enrol_earn(till, card_number, name, FUND_AMOUNT, receipt, None)
                if index % 5 == 0:
                    at = tick() + timedelta(hours=1)
                    points_burn(
                        till=till,
                        member=member,
                        points=100,
                        bill_amount=Decimal("1000.00"),
                        receipt=f"soak-burn-{index}",
                        occurred_at=at,
                        now=at,
                    )
                if index % 10 == 0:
                    points_reverse(
                        original=funded.journal,
                        tenant=till.tenant,
                        reason="part of the purchase returned",
                        amount=Decimal("50000.00"),
                        till=till,
                        now=tick() + timedelta(hours=2),
                    )
    # Lapsed shoppers: one purchase a year and ten days before the seed's day, posted (late) on
    # it, so the lot's last day has passed; noticed an hour later, as the daily job would.
    noticed_at = seeded_at + timedelta(hours=3)
    bought_on = add_months(local_date(coalition, seeded_at), -12) + timedelta(days=10)
    bought_at = datetime(bought_on.year, bought_on.month, bought_on.day, 12, tzinfo=zone)
    last_day = lot_expiry(coalition, bought_on)
    horizon = local_date(coalition, noticed_at) + timedelta(days=coalition.expiry_notice_days)
    if last_day is None or not last_day < min(horizon, local_date(coalition, real_now)):
        raise SystemExit(f"a lot bought on {bought_on} ends on {last_day}: not due by today")
    lapsed_journals = []
    with transaction.atomic():
        for index in range(lapsed):
            till = tills[index % len(tills)]
            receipt = f"soak-lapsed-{index}"
            _, posting = enrol_earn(
                till, card(EXPIRING_BASE, index), "", LAPSED_AMOUNT, receipt, bought_at
            )
            lapsed_journals.append(posting.journal.pk)
    noticed = expiry_notices_queue(now=noticed_at, coalition=coalition)
    lots = list(Lot.objects.filter(journal_id__in=lapsed_journals).values_list("pk", "remaining"))
    if noticed != lapsed or len(lots) != lapsed:
        raise SystemExit(f"{lapsed} lapsed shoppers: {len(lots)} lots, {noticed} notices")
    Path(cards_file).write_text(
        "".join(f"{card(ENROL_BASE, index)}\n" for index in range(enrol_cards))
    )
    with redirect_stdout(io.StringIO()) as printed:
        till_load.prepare_campaigns()
        till_load.prepare_keys(keys_file)
    keys = json.loads(printed.getvalue().strip().splitlines()[-1])
    last = Journal.objects.order_by("-pk").first()
    print(
        json.dumps(
            {
                "coalition": coalition.pk,
                "seeded_at": seeded_at.isoformat(),
                "previous_month": previous.isoformat(),
                "journals": Journal.objects.filter(coalition=coalition).count(),
                "last_journal": last.pk if last else 0,
                "lapsed_lots": {str(pk): remaining for pk, remaining in lots},
                "keys": keys,
            }
        )
    )


def check_ledger(state_file: str) -> None:
    """The checks at the end (child process): reads the run's state, prints one JSON line."""
    import django

    django.setup()
    from django.db.models import Count, Sum

    from coalition.models import Coalition, Journal, JournalKind, Lot, LotConsumption
    from coalition.selectors import ledger_verify
    from settlement.models import Period, Reconciliation, Statement

    state = json.loads(Path(state_file).read_text())
    seed = state["seed"]
    coalition = Coalition.objects.get(pk=seed["coalition"])
    waiting = Reconciliation.objects.filter(
        period__coalition=coalition, ledger_checked_at__isnull=True
    )
    deadline = time.monotonic() + state["wait"]
    while waiting.exists() and time.monotonic() < deadline:  # the worker's check, queued
        time.sleep(0.5)  # by the close, is still to run
    started = datetime.fromisoformat(state["traffic_started"])
    problems = [str(problem) for problem in ledger_verify(coalition)]

    closed = Period.objects.filter(coalition=coalition, closed_at__gte=started).order_by("month")
    months = [period.month.isoformat() for period in closed]
    previous = closed.filter(month=seed["previous_month"]).first()
    statements = Statement.objects.filter(period=previous).count() if previous else 0
    reconciliation = (
        Reconciliation.objects.filter(period=previous).order_by("-pk").first() if previous else None
    )

    lapsed = {int(pk): points for pk, points in seed["lapsed_lots"].items()}
    new = Journal.objects.filter(coalition=coalition, pk__gt=seed["last_journal"])
    expiries = new.filter(kind=JournalKind.EXPIRE)
    taken = (
        LotConsumption.objects.filter(journal__in=expiries)
        .order_by()
        .values("lot_id")
        .annotate(times=Count("pk"), points=Sum("points"))
    )
    taken_by_lot = {row["lot_id"]: (row["times"], row["points"]) for row in taken}
    left = Lot.objects.filter(pk__in=lapsed, remaining__gt=0).count()
    expired_once = (
        set(taken_by_lot) == set(lapsed)
        and all(taken_by_lot[pk] == (1, points) for pk, points in lapsed.items())
        and left == 0
        and expiries.count() == len(lapsed)  # one per lapsed shopper, each with one lot
    )

    seen = set(state["transactions"])
    till_kinds = (
        JournalKind.EARN,
        JournalKind.BURN,
        JournalKind.EARN_REVERSAL,
        JournalKind.BURN_REVERSAL,
    )
    posted = {
        str(public_id)
        for public_id in new.filter(kind__in=till_kinds).values_list("public_id", flat=True)
    }
    other = dict(
        new.exclude(kind__in=(*till_kinds, JournalKind.EXPIRE))
        .order_by()
        .values("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    journals = Journal.objects.filter(coalition=coalition).count()
    print(
        json.dumps(
            {
                "problems": problems,
                "closed_months": months,
                "statements": statements,
                "reconciliation": None
                if reconciliation is None
                else {
                    "balanced": reconciliation.balanced,
                    "discrepancies": reconciliation.discrepancies[:5],
                },
                "lapsed_lots": len(lapsed),
                "expiry_journals": expiries.count(),
                "expired_points": sum(points for _, points in taken_by_lot.values()),
                "lapsed_points": sum(lapsed.values()),
                "lapsed_left": left,
                "expired_once": expired_once,
                "journals_before": seed["journals"],
                "journals_after": journals,
                "client_postings": len(seen),
                "missing": sorted(seen - posted)[:5],
                "missing_count": len(seen - posted),
                "unexplained": sorted(posted - seen)[:5],
                "unexplained_count": len(posted - seen),
                "other_journals": other,
            }
        )
    )


# --- the tills ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One operation's outcomes, for one thread (merged at the end)."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    ok: int = 0
    errors: int = 0
    retries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None

    def merge(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.ok += other.ok
        self.errors += other.errors
        self.retries += other.retries
        self.statuses.update(other.statuses)
        self.first_error = self.first_error or other.first_error


@dataclass
class Answer:
    status: int
    body: Any
    replayed: bool


class Traffic:
    """The simulated tills and what they saw."""

    def __init__(self, port: int, keys: list[str], cards: list[str], enrol: list[str], run: str):
        self.port, self.keys, self.cards, self.run = port, keys, cards, run
        self.enrol_cards = iter(enrol)
        self.enrol_lock = threading.Lock()
        self.stopping = threading.Event()
        self.tallies: list[dict[str, Tally]] = []
        self.transactions: set[str] = set()
        self.lock = threading.Lock()
        self.batches: list[tuple[str, str]] = []  # (till key, batch id)

    # One request as a till sends it: retried on a 503 with the same key.
    def send(
        self,
        conn: http.client.HTTPConnection,
        tally: Tally,
        method: str,
        path: str,
        key: str,
        expect: int,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer | None:
        headers = {"Authorization": f"Api-Key {key}"}
        if method == "POST":
            headers["Idempotency-Key"] = uuid.uuid4().hex
            headers["Content-Type"] = content_type
        started = time.monotonic()
        for attempt in range(MAX_ATTEMPTS):
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._error(tally, "socket", f"{method} {path}: {exc!r}")
                time.sleep(0.2)
                continue  # a till retries with the same key; the error is counted
            if response.status == 503 and attempt + 1 < MAX_ATTEMPTS:
                tally.retries += 1
                tally.statuses["503"] += 1
                retry_after = response.getheader("Retry-After") or "1"
                with suppress(ValueError):
                    time.sleep(min(float(retry_after), RETRY_CAP))
                continue
            tally.statuses[str(response.status)] += 1
            if response.status != expect:
                self._error(tally, str(response.status), f"{method} {path}: {raw[:300]!r}")
                return None
            tally.ok += 1
            tally.latencies.append(time.monotonic() - started)
            replayed = response.getheader("Idempotent-Replayed") == "true"
            return Answer(response.status, json.loads(raw) if raw else None, replayed)
        return None

    @staticmethod
    def _error(tally: Tally, status: str, detail: str) -> None:
        tally.errors += 1
        if status == "socket":
            tally.statuses["socket"] += 1
        tally.first_error = tally.first_error or f"{status} {detail}"

    def till(self, number: int, count: int) -> None:
        """One simulated till: its share of the keys, a random operation at a time."""
        rng = random.Random(f"{self.run}-{number}")
        mine = self.keys[number::count] or [self.keys[number % len(self.keys)]]
        tallies = {name: Tally() for name in OPERATIONS}
        with self.lock:
            self.tallies.append(tallies)
        history: dict[str, list[tuple[str, str, int]]] = {key: [] for key in mine}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        names, weights = list(MIX), [weight for weight, _ in MIX.values()]
        receipts = itertools.count()
        rotation = itertools.cycle(mine)
        try:
            while not self.stopping.is_set():
                key = next(rotation)
                operation = rng.choices(names, weights)[0]
                receipt = f"{self.run}-{number}-{next(receipts)}"
                self.one(conn, tallies, operation, key, receipt, rng, history[key])
        finally:
            conn.close()

    def one(
        self,
        conn: http.client.HTTPConnection,
        tallies: dict[str, Tally],
        operation: str,
        key: str,
        receipt: str,
        rng: random.Random,
        history: list[tuple[str, str, int]],
    ) -> None:
        card = rng.choice(self.cards)
        if operation == "reverse" and not history:
            operation = "earn"
        if operation == "enrol":
            with self.enrol_lock:
                new_card = next(self.enrol_cards, None)
            if new_card is None:
                operation = "lookup"
        tally = tallies[operation]
        expect = MIX[operation][1]
        if operation == "lookup":
            self.send(conn, tally, "GET", f"/api/v1/members/lookup?card={card}", key, expect)
        elif operation == "list":
            since = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
            query = urlencode({"since": since})
            self.send(conn, tally, "GET", f"/api/v1/transactions?{query}", key, expect)
        elif operation == "enrol":
            enrolment = {"card": new_card, "adult": True, "consents": {"programme": True}}
            self.send(conn, tally, "POST", "/api/v1/members", key, expect, _json(enrolment))
        elif operation == "earn":
            amount = rng.randrange(100, 9000)
            body = {
                "member": {"card": card},
                "amount": f"{amount}.00",
                "currency": "INR",
                "receipt": f"E{receipt}",
            }
            answer = self.send(conn, tally, "POST", "/api/v1/earn", key, expect, _json(body))
            self._posted(answer, history, "earn", amount)
        elif operation == "burn":
            points = rng.randrange(5, 31)
            burn = {
                "member": {"card": card},
                "points": points,
                "bill_amount": "600.00",
                "receipt": f"B{receipt}",
            }
            answer = self.send(conn, tally, "POST", "/api/v1/burn", key, expect, _json(burn))
            self._posted(answer, history, "burn", points)
        else:  # reverse an earlier earn or burn of this till, whole or in part, once
            kind, original, size = history.pop(rng.randrange(len(history)))
            reversal: dict[str, Any] = {"reason": "soak: returned"}
            if rng.random() < 0.5 and size > 1:  # a part: half the money, or half the points
                if kind == "earn":
                    reversal["amount"] = f"{size // 2}.00"
                else:
                    reversal["points"] = size // 2
            path = f"/api/v1/transactions/{original}/reverse"
            answer = self.send(conn, tally, "POST", path, key, expect, _json(reversal))
            self._posted(answer, None, kind, size)

    def _posted(
        self,
        answer: Answer | None,
        history: list[tuple[str, str, int]] | None,
        kind: str,
        size: int,
    ) -> None:
        if answer is None:
            return
        transaction_id = str(answer.body["transaction"]["id"])
        with self.lock:
            self.transactions.add(transaction_id)
        if history is not None:
            history.append((kind, transaction_id, size))
            if len(history) > 200:
                del history[:100]

    def batch_upload(self, tally: Tally, number: int) -> None:
        """A till that was offline sends its file: 15 earns and 5 burns."""
        rng = random.Random(f"{self.run}-batch-{number}")
        key = self.keys[number % len(self.keys)]
        occurred = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        lines = ["kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount"]
        for index in range(BATCH_LINES):
            card = rng.choice(self.cards)
            receipt = f"F{self.run}-{number}-{index}"
            if index % 4 == 3:
                lines.append(f"burn,{receipt},{occurred},{card},,,,{rng.randrange(5, 31)},600.00")
            else:
                lines.append(f"earn,{receipt},{occurred},{card},,,{rng.randrange(100, 9000)}.00,,")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            body = ("\n".join(lines) + "\n").encode()
            answer = self.send(conn, tally, "POST", "/api/v1/batches", key, 202, body, "text/csv")
        finally:
            conn.close()
        if answer is not None:
            with self.lock:
                self.batches.append((key, str(answer.body["id"])))

    def batches_collect(self, tally: Tally, timeout: float) -> int:
        """Wait for every batch to be processed; every line must be accepted. Returns the lines
        accepted; a rejected line or a batch not done in time is an error."""
        deadline = time.monotonic() + timeout
        accepted = 0
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            for key, batch_id in self.batches:
                while True:
                    conn.request("GET", f"/api/v1/batches/{batch_id}", headers=_auth(key))
                    response = conn.getresponse()
                    data = json.loads(response.read())
                    if response.status != 200:
                        self._error(tally, str(response.status), f"batch {batch_id}: {data}")
                        break
                    if data["status"] == "done":
                        break
                    if time.monotonic() > deadline:
                        self._error(tally, "timeout", f"batch {batch_id} still {data['status']}")
                        break
                    time.sleep(0.5)
                for line in data.get("lines", []):
                    if line["status"] == "accepted":
                        accepted += 1
                        with self.lock:
                            self.transactions.add(str(line["transaction"]))
                    elif data["status"] == "done":
                        self._error(tally, "rejected", f"batch {batch_id} line {line}")
        finally:
            conn.close()
        return accepted

    def totals(self) -> dict[str, Tally]:
        merged = {name: Tally() for name in OPERATIONS}
        for tallies in self.tallies:
            for name, tally in tallies.items():
                merged[name].merge(tally)
        return merged


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Api-Key {key}"}


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(math.ceil(share * len(ordered)) - 1, 0))]


# --- the worker's jobs ----------------------------------------------------------------------------


@dataclass
class Job:
    name: str
    task: str
    task_id: str = ""
    queued_at: float = 0.0
    seconds: float | None = None  # as the worker reports the task's run
    finished_at: float | None = None  # when this script saw it done (monotonic)
    result: str | None = None
    failed: str | None = None


class Worker:
    """The Celery worker's log, read for the jobs' outcomes; tasks queued by name."""

    def __init__(self, broker: str, queue: str, log: Path) -> None:
        from celery import Celery

        self.queue, self.log = queue, log
        self.app = Celery("soak", broker=broker, set_as_current=False)
        self.app.conf.update(
            task_default_queue=queue,
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
        )

    def queue_job(self, job: Job) -> None:
        job.task_id = str(uuid.uuid4())
        job.queued_at = time.monotonic()
        self.app.send_task(job.task, task_id=job.task_id, queue=self.queue)

    def read(self, job: Job) -> bool:
        """Whether the job has finished (its outcome filled in)."""
        text = self.log.read_text(errors="replace")
        match = re.search(
            rf"\[{re.escape(job.task_id)}\] succeeded in ([\d.]+)s: (.*)", text, re.MULTILINE
        )
        if match:
            job.seconds, job.result = float(match.group(1)), match.group(2).strip()
        failed = re.search(rf"\[{re.escape(job.task_id)}\] (raised|retry)[^\n]*", text)
        if failed:
            job.failed = failed.group(0)
        if match or failed:
            job.finished_at = time.monotonic()
            return True
        return False

    def ready(self) -> bool:
        return " ready." in self.log.read_text(errors="replace")


def queue_forget(broker: str, queue: str) -> None:
    """The run's queue and its binding, off the broker (a Redis one): nothing left behind."""
    if not broker.startswith("redis"):
        return
    import redis

    with suppress(redis.RedisError):
        client = redis.Redis.from_url(broker)
        names = [queue, *client.scan_iter(match=f"_kombu.binding*.{queue}")]
        client.delete(*names)
        client.close()


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    setup: dict[str, Any]
    seconds: float
    totals: dict[str, Tally]
    jobs: dict[str, list[Job]]
    checks: dict[str, Any]
    batch_lines: int
    elapsed: float
    postgres: dict[str, str]
    traffic_ended: float  # monotonic

    @property
    def errors(self) -> int:
        return sum(tally.errors for tally in self.totals.values())

    @property
    def retries(self) -> int:
        return sum(tally.retries for tally in self.totals.values())

    @property
    def requests(self) -> int:
        return sum(tally.ok for tally in self.totals.values())

    def rps(self, name: str | None = None) -> float:
        count = self.totals[name].ok if name else self.requests
        return count / max(self.seconds, 1e-9)

    def job_ok(self, name: str) -> bool:
        first = self.jobs[name][0] if self.jobs[name] else None
        return first is not None and first.seconds is not None and first.failed is None

    def verdicts(self) -> dict[str, bool]:
        c = self.checks
        first_close, again_close = (self.jobs["close"] + [Job("", ""), Job("", "")])[:2]
        first_sweep, again_sweep = (self.jobs["sweep"] + [Job("", ""), Job("", "")])[:2]
        reconciliation = c.get("reconciliation") or {}
        return {
            "no errors": self.errors == 0,
            "ledger_verify clean": not c["problems"],
            "close ran in the middle": self.job_ok("close")
            and c["previous_month"] in c["closed_months"]
            and first_close.result not in (None, "0"),
            "the closed month has its statements": c["statements"] > 0,
            "its reconciliation balanced": reconciliation.get("balanced") is True,
            "the close again closed nothing": again_close.result == "0",
            "sweep ran in the middle": self.job_ok("sweep")
            and first_sweep.result == str(c["lapsed_points"]),
            "each lapsed lot expired exactly once": bool(c["expired_once"]),
            "the sweep again expired nothing": again_sweep.result == "0",
            "journals = postings the tills saw + expiries": c["missing_count"] == 0
            and c["unexplained_count"] == 0
            and not c["other_journals"]
            and c["journals_after"]
            == c["journals_before"] + c["client_postings"] + c["expiry_journals"],
        }

    def passed(self) -> bool:
        return all(self.verdicts().values())

    def operation_rows(self) -> list[list[str]]:
        rows = []
        for name in OPERATIONS:
            tally = self.totals[name]
            errors = f"{tally.errors:,}"
            if tally.errors:
                wrong = (f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
                errors += " (" + ", ".join(wrong) + ")"
            rows.append(
                [
                    name,
                    f"{tally.ok:,}",
                    f"{self.rps(name):,.1f}",
                    f"{percentile(tally.latencies, 0.50) * 1000:.1f}",
                    f"{percentile(tally.latencies, 0.99) * 1000:.1f}",
                    errors,
                    f"{tally.retries:,}",
                ]
            )
        rows.append(
            [
                "all",
                f"{self.requests:,}",
                f"{self.rps():,.1f}",
                f"{percentile(self._all_latencies(), 0.50) * 1000:.1f}",
                f"{percentile(self._all_latencies(), 0.99) * 1000:.1f}",
                f"{self.errors:,}",
                f"{self.retries:,}",
            ]
        )
        return rows

    def _all_latencies(self) -> list[float]:
        return [value for tally in self.totals.values() for value in tally.latencies]

    HEADER = ("operation", "answered", "req/s", "p50 ms", "p99 ms", "errors", "503 retried")

    def job_lines(self) -> list[str]:
        lines = []
        for name, label in (("close", "close (periods_close_due_task)"), ("sweep", "sweep")):
            for number, job in enumerate(self.jobs[name], 1):
                outcome = (
                    f"failed: {job.failed}"
                    if job.failed
                    else "not finished"
                    if job.seconds is None
                    else f"{job.seconds:.2f} s, returned {job.result}"
                )
                if job.finished_at is not None:
                    during = job.finished_at <= self.traffic_ended
                    outcome += ", the tills trading" if during else ", after the traffic"
                lines.append(f"{label} run {number}: {outcome}")
        c = self.checks
        lines.append(
            f"closed months: {', '.join(c['closed_months']) or 'none'}; statements of "
            f"{c['previous_month']}: {c['statements']}; reconciliation: "
            f"{(c.get('reconciliation') or {}).get('balanced')}"
        )
        lines.append(
            f"lapsed lots: {c['lapsed_lots']} ({c['lapsed_points']:,} points), expiry journals: "
            f"{c['expiry_journals']}, points expired: {c['expired_points']:,}, "
            f"left unexpired: {c['lapsed_left']}"
        )
        lines.append(
            f"journals: {c['journals_before']:,} seeded + {c['client_postings']:,} the tills "
            f"were answered with ({self.batch_lines:,} of them batch lines) + "
            f"{c['expiry_journals']} expiries = {c['journals_after']:,} in the database "
            f"(missing {c['missing_count']}, unexplained {c['unexplained_count']}, other "
            f"{c['other_journals'] or 'none'})"
        )
        lines.append(f"ledger_verify: {len(c['problems'])} problems")
        return lines

    def table(self) -> str:
        rows = [list(self.HEADER), *self.operation_rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        earn_p99 = percentile(self.totals["earn"].latencies, 0.99) * 1000
        lines += [
            "",
            f"earn p99 {earn_p99:.1f} ms against the contract's {P99_TARGET_MS:.0f} ms: "
            f"{earn_p99 / P99_TARGET_MS:.2f}x",
            *self.job_lines(),
            "",
            *(f"[{'ok' if good else 'FAILED'}] {name}" for name, good in self.verdicts().items()),
        ]
        for name, tally in self.totals.items():
            if tally.first_error:
                lines.append(f"first {name} error: {tally.first_error}")
        for problem in self.checks["problems"][:10]:
            lines.append(f"ledger_verify: {problem}")
        return "\n".join(lines)

    def command(self) -> str:
        a = self.args
        parts = [".venv/bin/python bench/soak.py", f"--minutes {a.minutes:g}"]
        parts += [f"--tills {a.tills}", f"--members {a.members}", f"--workers {a.workers}"]
        return " ".join(parts)

    def figures(self) -> list[dict[str, Any]]:
        earn_p99 = percentile(self.totals["earn"].latencies, 0.99) * 1000
        figures: list[dict[str, Any]] = [
            _figure("errors", self.errors, "requests", 0, False, "must be 0"),
            _figure(
                "ledger_verify problems",
                len(self.checks["problems"]),
                "problems",
                0,
                False,
                "must be 0 (clean)",
            ),
            _figure(
                "checks failed",
                sum(1 for good in self.verdicts().values() if not good),
                "checks",
                0,
                False,
                "close, sweep, statements, reconciliation, journals = postings",
            ),
            _figure("throughput", round(self.rps(), 1), "req/s", None, True, "all operations"),
            _figure(
                "earn p99",
                round(earn_p99, 1),
                "ms",
                P99_TARGET_MS,
                False,
                f"the contract's target; {earn_p99 / P99_TARGET_MS:.2f}x of it",
            ),
            _figure("503 retries", self.retries, "requests", None, False, "retried, same key"),
        ]
        for name in OPERATIONS:
            tally = self.totals[name]
            figures.append(
                _figure(f"{name} throughput", round(self.rps(name), 2), "req/s", None, True)
            )
            figures.append(
                _figure(f"{name} p50", round(percentile(tally.latencies, 0.5) * 1000, 1), "ms")
            )
            figures.append(
                _figure(f"{name} p99", round(percentile(tally.latencies, 0.99) * 1000, 1), "ms")
            )
        for name in ("close", "sweep"):
            job = self.jobs[name][0] if self.jobs[name] else None
            seconds = job.seconds if job is not None else None
            figures.append(
                _figure(
                    f"{name} duration",
                    seconds,
                    "s",
                    None,
                    False,
                    f"returned {job.result}" if job is not None else "not run",
                )
            )
        return figures

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": "soak",
            "command": self.command(),
            "figures": self.figures(),
            "checks": self.verdicts(),
            "details": {
                "setup": self.setup,
                "traffic_seconds": round(self.seconds, 1),
                "jobs": {
                    name: [
                        {"seconds": j.seconds, "result": j.result, "failed": j.failed} for j in jobs
                    ]
                    for name, jobs in self.jobs.items()
                },
                "ledger": {k: v for k, v in self.checks.items() if k != "problems"},
                "problems": self.checks["problems"][:20],
            },
        }

    def markdown(self) -> str:
        a, setup = self.args, self.setup
        header = list(self.HEADER)
        table = report.markdown_table(header, self.operation_rows())
        verdicts = "\n".join(
            f"  - {'ok' if good else '**FAILED**'}: {name}"
            for name, good in self.verdicts().items()
        )
        jobs = "\n".join(f"  - {line}" for line in self.job_lines())
        earn_p99 = percentile(self.totals["earn"].latencies, 0.99) * 1000
        version = self.postgres["version"].split(" on ")[0]
        return "\n".join(
            [
                BEGIN_MARK,
                *report.run_heading(ROOT, self.elapsed, self.command(), table),
                f"- **Verdict**: {'passed' if self.passed() else '**FAILED**'}; earn p99 "
                f"{earn_p99:.1f} ms against the contract's {P99_TARGET_MS:.0f} ms "
                f"({earn_p99 / P99_TARGET_MS:.2f}x).",
                verdicts,
                "- **In the middle** (a Celery worker on the broker, the tills going on):",
                jobs,
                f"- **Load**: {a.tills} simulated tills for {self.seconds:.0f} s, each cycling "
                f"through its share of {setup['tills']} till keys ({setup['tenants']} tenants), "
                f"over {setup['cards']:,} funded members;",
                "  mix per request: "
                + ", ".join(f"{name} {weight}%" for name, (weight, _) in MIX.items())
                + f", and a batch file of {BATCH_LINES} lines every {a.batch_every:g} s. "
                "Campaigns on every earn. Latency is what a till sees, 503 retries included.",
                f"- **App**: gunicorn, {a.workers} sync workers, `DEBUG=False`, "
                "`CONN_MAX_AGE=600`, `TILL_RATE_LIMIT=0`; Celery worker, 2 processes.",
                f"- **Machine**: {report.machine()}; {version},",
                f"  `synchronous_commit={self.postgres['synchronous_commit']}`; app, worker, "
                "PostgreSQL and the tills share the machine.",
                END_MARK,
            ]
        )

    def write_docs(self, path: Path) -> None:
        introduction = (
            "## Soak (`bench/soak.py`)\n\n"
            "Mixed till traffic from every trading tenant's tills for 30 minutes, with the\n"
            "monthly close and the expiry sweep run by a Celery worker in the middle. Must: no\n"
            "errors, `ledger_verify` clean, the month closed and the lapsed lots expired once,\n"
            "and as many journals as postings the tills were answered with. Target: earn p99\n"
            "under 50 ms."
        )
        report.section_write(path, BEGIN_MARK, END_MARK, self.markdown(), introduction)


def _figure(
    name: str,
    value: float | None,
    unit: str,
    floor: float | None = None,
    higher_is_better: bool = False,
    note: str = "",
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "floor": floor,
        "higher_is_better": higher_is_better,
        "note": note,
    }


def child_json(children: Children, argv: Sequence[str], env: dict[str, str]) -> Any:
    output, _ = till_load.run_to_end(children, argv, env=env)
    return json.loads(output.strip().splitlines()[-1])


def bench(args: argparse.Namespace, children: Children, server: Server, scratch: Path) -> int:
    started = time.monotonic()

    def step(message: str) -> None:
        say(f"{message} [{time.monotonic() - started:.0f} s]")

    queue = args.queue
    settings = scratch / "soak_settings.py"
    settings.write_text(
        f"from {args.settings} import *  # noqa: F403\n"
        f"CELERY_TASK_DEFAULT_QUEUE = {queue!r}  # this run's own queue on a shared broker\n"
    )
    django_args = argparse.Namespace(**vars(args))
    django_args.settings = "soak_settings"  # the module written above, on PYTHONPATH
    env = till_load.django_env(server, django_args)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), env["PYTHONPATH"]])
    env["CELERY_BROKER_URL"] = args.broker
    me = str(Path(__file__).resolve())
    manage = [python(), str(ROOT / "manage.py")]

    step(f"Database {args.database}: create, migrate")
    server.recreate(args.database)
    till_load.run_to_end(children, [*manage, "migrate", "--noinput", "-v0"], env=env)
    lapsed = max(10, args.members // 10)
    enrol_file = scratch / "enrol.txt"
    enrol_cards = max(500, int(args.minutes * 60 * 20))
    step(f"Seed: the demo mall, {args.members:,} funded members, {lapsed} lapsed (previous month)")
    data_file = scratch / "tills.txt"
    sizes = (args.members, lapsed, enrol_cards, enrol_file, data_file)
    seed = child_json(children, [python(), me, "--prepare-ledger", *map(str, sizes)], env)
    setup = seed["keys"]
    with server.connect(args.database) as conn:
        conn.execute("VACUUM ANALYZE")
    keys: list[str] = []
    cards: list[str] = []
    for line in data_file.read_text().splitlines():
        what, value = line.split(" ", 1)
        (keys if what == "key" else cards).append(value)
    step(
        f"{setup['tills']} tills of {setup['tenants']} tenants, {setup['cards']:,} members; "
        f"{seed['journals']:,} journals seeded (set up in {time.monotonic() - started:.0f} s)"
    )

    worker_log = scratch / "worker.log"
    worker = Worker(args.broker, queue, worker_log)
    worker_env = dict(env, LOG_LEVEL="INFO")
    celery = [python(), "-m", "celery", "-A", "coalition", "worker", "-Q", queue, "-c", "2"]
    celery += ["-l", "info", "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    with open(worker_log, "w") as out:
        worker_proc = children.start(
            celery, env=worker_env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    port = till_load.free_port()
    url = f"http://127.0.0.1:{port}"
    gunicorn_log = scratch / "gunicorn.log"
    # --preload: the app is imported once and forked, not once per worker (a shared machine).
    workers = ["--workers", str(args.workers), "--preload"]
    web = till_load.gunicorn_start(children, python(), port, workers, env, gunicorn_log)
    deadline = time.monotonic() + 60
    while not worker.ready():
        if worker_proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the Celery worker did not start:\n{worker_log.read_text()[-3000:]}")
        time.sleep(0.3)
    step(f"gunicorn ({args.workers} workers) on {url}; Celery worker on queue {queue}")

    run_id = uuid.uuid4().hex[:8]
    enrol = enrol_file.read_text().split()
    traffic = Traffic(port, keys, cards, enrol, run_id)
    duration = args.minutes * 60
    traffic_started = datetime.now(UTC)
    step(
        f"Traffic: {args.tills} tills for {duration:.0f} s; close and sweep at {duration / 2:.0f} s"
    )
    threads = [
        threading.Thread(target=traffic.till, args=(number, args.tills), daemon=True)
        for number in range(args.tills)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    batch_tally = Tally()
    jobs: dict[str, list[Job]] = {"close": [], "sweep": []}
    batches = itertools.count()
    next_batch = began + min(args.batch_every, duration / 3)
    midway = began + duration / 2
    end = began + duration
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_batch:
            traffic.batch_upload(batch_tally, next(batches))
            next_batch += args.batch_every
        if now >= midway and not jobs["close"]:
            step("Midway: queueing the close and the sweep")
            for name, task in (("close", TASK_CLOSE), ("sweep", TASK_SWEEP)):
                jobs[name].append(Job(name, task))
                worker.queue_job(jobs[name][-1])
        jobs_again(worker, jobs)
        time.sleep(0.2)
    traffic.stopping.set()
    for thread in threads:
        thread.join(timeout=120)
    seconds = time.monotonic() - began
    step(f"Traffic stopped after {seconds:.0f} s; waiting for the jobs and the batches")
    deadline = time.monotonic() + args.job_timeout
    while not jobs_again(worker, jobs) and time.monotonic() < deadline:
        time.sleep(0.3)
    batch_lines = traffic.batches_collect(batch_tally, timeout=args.job_timeout)
    traffic.tallies.append({"batch": batch_tally})
    state = scratch / "state.json"
    state.write_text(
        json.dumps(
            {
                "seed": seed,
                "traffic_started": traffic_started.isoformat(),
                "transactions": sorted(traffic.transactions),
                "wait": max(deadline - time.monotonic(), 10.0),
            }
        )
    )
    # The worker still runs: the reconciliation's ledger check, queued by the close, may be due.
    step("Checking the ledger")
    checks = child_json(children, [python(), me, "--check", str(state)], env)
    children.stop(web)
    children.stop(worker_proc)
    checks["previous_month"] = seed["previous_month"]
    run = Run(
        args=args,
        setup=setup,
        seconds=seconds,
        totals=traffic.totals(),
        jobs=jobs,
        checks=checks,
        batch_lines=batch_lines,
        elapsed=time.monotonic() - started,
        postgres=server.describe(),
        traffic_ended=began + seconds,
    )
    print()
    print(run.table())
    logged = [ln for ln in gunicorn_log.read_text().splitlines() if "Unauthorized" not in ln]
    if logged:
        print("\ngunicorn logged (last lines):\n" + "\n".join(logged[-10:]))
    if args.json:
        Path(args.json).write_text(json.dumps(run.as_json(), indent=2) + "\n")
        step(f"Wrote {args.json}")
    if not args.no_docs:
        run.write_docs(DOCS)
        step(f"Wrote the soak section of {DOCS.relative_to(ROOT)}")
    return 0 if run.passed() else 2


def jobs_again(worker: Worker, jobs: dict[str, list[Job]]) -> bool:
    """Read the jobs' outcomes; queue each job's second run once its first has finished.
    Whether every job queued has run twice and finished."""
    done = True
    for name, runs in jobs.items():
        if not runs:
            return False
        for job in runs:
            if job.seconds is None and job.failed is None and not worker.read(job):
                done = False
        if len(runs) == 1:
            done = False
            if runs[0].seconds is not None or runs[0].failed is not None:
                runs.append(Job(name, runs[0].task))
                worker.queue_job(runs[-1])
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--minutes", type=float, default=30, help="Minutes of traffic (30; CI uses 0.5).")
    add("--tills", type=int, default=16, help="Simulated tills sending at once (16).")
    add("--members", type=int, default=1000, help="Funded members the tills draw from (1000).")
    add("--workers", type=int, default=4, help="gunicorn sync workers (4).")
    add("--batch-every", type=float, default=30, help="Seconds between batch files (30).")
    add(
        "--job-timeout",
        type=float,
        default=300,
        help="Seconds to wait after the traffic for the jobs and the batches (300).",
    )
    add("--server", default=report.default_server(), help=report.SERVER_HELP)
    add(
        "--broker",
        default=os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0",
        help="Celery broker (CELERY_BROKER_URL, else %(default)s); the run uses a queue of "
        "its own on it.",
    )
    add(
        "--database",
        help="Database to create (dropped first if it exists; coalition_soak_<pid> by default).",
    )
    add("--settings", default="coalition.settings.base", help="Django settings (%(default)s).")
    add("--keep-db", action="store_true", help="Keep the database afterwards.")
    add("--no-docs", action="store_true", help="Leave docs/benchmarks.md as it is.")
    add("--json", metavar="PATH", help="Write the figures as JSON to PATH.")
    # Internal: steps run in child processes that set up Django.
    add("--prepare-ledger", nargs=5, metavar="N", help=argparse.SUPPRESS)
    add("--check", metavar="STATE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.prepare_ledger:
        members, lapsed, enrol, cards_file, keys_file = args.prepare_ledger
        prepare_ledger(int(members), int(lapsed), int(enrol), cards_file, keys_file)
        return 0
    if args.check:
        check_ledger(args.check)
        return 0
    args.database = args.database or f"coalition_soak_{os.getpid()}"
    args.queue = f"soak-{args.database}"
    if not args.database.startswith("coalition_soak"):
        parser.error("--database must start with coalition_soak (it is dropped and recreated)")
    if args.minutes <= 0 or args.tills < 1 or args.members < 1:
        parser.error("--minutes, --tills and --members must be positive")

    exit_on_signals()
    children = Children()
    server = Server(args.server.rstrip("/"))

    def measure() -> int:
        with tempfile.TemporaryDirectory(prefix="soak_") as scratch:
            return bench(args, children, server, Path(scratch))

    try:
        return run_reported("soak", measure)
    finally:
        children.stop_all()
        queue_forget(args.broker, args.queue)
        report.databases_release(server, [args.database], "soak", keep=args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
