"""Expiry at volume: `lots_expire` over 1,000,000 lots, against the same writes done by hand.

    .venv/bin/python bench/expiry.py [--lots 1000000] [--members 200000] [--due-fraction 1/3]
        [--tenants 20] [--runs 3] [--memory-check | --no-memory-check] [--memory-divisor 4]

What one run does, start to end (about 10 minutes with the defaults on 2 cores):

1. with `--memory-check` (the default), first a smaller run: a fresh database
   `coalition_bench_<pid>_quarter`, migrated and built as in step 3 with `--lots /
   --memory-divisor` lots over `--members / --memory-divisor` members (a quarter by default);
   `lots_expire` once under `tracemalloc` (its Python peak) with the process's resident memory
   before, at its peak (the kernel's high-water mark, reset just before the call) and after; a
   check that it expired every due point; the database dropped. Not checked with
   `ledger_verify` (the full-size run is);
2. creates a fresh database `coalition_bench_<pid>` (`--database` to name it) and migrates it;
3. builds the ledger: the coalition and `--tenants` tenants, with a store and a till each,
   through the services (`coalition_create`, `tenant_create`, `till_create`), then in bulk SQL
   (`INSERT ... SELECT` over `generate_series`; posting through the services would take hours):
   `--members` members with their two accounts; `--lots` lots, each credited by its own earn
   journal of two entries (the member's leg at the point's value, the funding tenant's
   `tenant_issued` leg at its price; every tenant at the default rates), each lot given to a
   member by a hash (so `--lots / --members` lots a member on average) and to a tenant by
   another; `--due-fraction` of the lots (exactly: lot k is due when k * 1,000,003 mod lots is
   below the count) earned 12 to 13 months ago, so past their last day (the fixed 12-month
   term) and not yet swept, the rest earned in the last 12 months; none ends the day before
   today, today or the day after (Asia/Kolkata; checked), so a run over midnight changes
   nothing; one member in two made one burn an hour after its oldest earn, taking part or all
   of that lot (a due lot a burn emptied is not due), with its consumption record. Journals are
   numbered in time order, so each member's entries carry the running balance before and
   after; each entry's digest is the database's own `ledger_entry_digest`. Every member with
   due points then has one expiry notice recorded 40 days ago (sent by email, its points and
   days listed), which every one of its due lots points to, so the sweep may expire them (the
   window is 30 days); lots not due have no notice. A superuser loads without per-row
   foreign-key checks and triggers (`session_replication_role = replica`: every id comes from
   a join to the row it names); anyone else loads with them, more slowly. Then VACUUM ANALYZE;
4. runs `ledger_verify` over the built ledger, timing each of its checks, and stops if it finds
   anything;
5. times the floor, the same writes done by hand, best of `--runs` after a warm-up run, each in
   a transaction rolled back: three statements on Django's connection, with the triggers and
   foreign-key checks the sweep has too (the entry digest is set by its trigger; Django's
   foreign keys are deferred to the commit, which a transaction rolled back never reaches, so
   the floor sets them IMMEDIATE): (1) one expiry journal per member with due lots and its two
   entries, the member's and breakage's (the journals in a CTE of the entries' INSERT); (2) the
   due lots set to 0 and one consumption record per lot (the UPDATE in a CTE of the records'
   INSERT); (3) the members' balances. Due means what the sweep reads: points left, spendable,
   last day before today, notice recorded at least the notice window ago. The five tables
   written are vacuumed before each run (no run pays for the rows the last one rolled back);
   after the last, VACUUM ANALYZE;
6. copies the database (`CREATE DATABASE ... TEMPLATE`) for step 8;
7. runs `lots_expire(as_of=now, coalition=...)` once, committed, on Django's connection
   (`DEBUG=False`), with the process's resident memory before, at its peak and after; checks
   that it returned the due points, left no due lot with points, wrote one journal per member
   with due lots, changed no lot that was not due; times `ledger_verify` over the result (must
   be clean) and a second run (must expire nothing);
8. runs `lots_expire` on the copy under `tracemalloc` (kept out of step 7's timing: tracing
   slows every allocation) for the Python peak at full size, then drops the copy;
9. prints the figures, sweep ÷ floor against the target (3x) and the full-size peak ÷ the
   quarter-size peak against "flat" (1.5x), replaces the expiry section of docs/benchmarks.md
   (`--no-docs` to leave it), and drops the database (`--keep-db` keeps every database).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import sys
import time
import tracemalloc
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import report
from close import (
    BALANCES_SQL,
    ENTRIES_SQL,
    JOURNALS_SQL,
    MEMBERS_SQL,
    SETTINGS,
    django_setup,
    migrate,
    postgres_describe,
)
from common import (
    JSON_HELP,
    BenchError,
    Figure,
    Server,
    bulk_load,
    execute,
    figures_write,
    run_reported,
    say,
    scalar,
    tenant_table_create,
    tenants_create,
    timed,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN_MARK = "<!-- expiry:begin (written by bench/expiry.py; edits inside are replaced) -->"
END_MARK = "<!-- expiry:end -->"
TARGET_RATIO = 3.0  # the sweep within 3x of the same writes by hand
FLAT_RATIO = 1.5  # the peak at full size within 1.5x of the peak at the smaller size
SLUG = "expiry-bench"
DUE_PRIME = 1_000_003  # lot k is due when k * DUE_PRIME mod lots < due lots: exactly that many
MAX_EARN_POINTS = 60  # earns of 1-60 points
BURN_ONE_IN = 2  # one member in two made a burn
NOTICE_AGE = timedelta(days=40)  # notices recorded this long ago (the window is 30 days)
MARGIN = timedelta(days=3)  # no lot ends within this of today, so a run over midnight is safe
MIB = 1024 * 1024


# --- building the ledger ------------------------------------------------------------------------


@dataclass
class Volume:
    database: str
    coalition_id: int
    today: date
    tenants: int
    members: int
    members_with_lots: int
    lots: int
    journals: int
    entries: int
    burns: int
    notices: int
    due_lots: int  # lots the sweep must expire: points left, past their last day, noticed
    due_members: int
    due_points: int
    seconds: float


# Lot k: its member and tenant by hashes, its points, whether it is due, and when it was earned
# (due lots 12 to 13 months ago, the others in the last 12 months), its last day as the fixed
# policy sets it (`lot_expiry`: the earn's local date plus the term, less a day).
LOTS_PLAN_SQL = """
    CREATE TEMP TABLE bench_lot AS
    SELECT k, mi, ti, points, due, earned_at,
        ((earned_at AT TIME ZONE %(tz)s)::date + make_interval(months => %(expiry)s::int))::date
            - 1 AS expires_on
    FROM (
        SELECT k, mi, ti, points, due,
            CASE WHEN due
                THEN %(due_from)s::timestamptz
                    + (%(due_to)s::timestamptz - %(due_from)s::timestamptz) * u
                ELSE %(open_from)s::timestamptz
                    + (%(open_to)s::timestamptz - %(open_from)s::timestamptz) * u
            END AS earned_at
        FROM (
            SELECT k, mod(abs(hashint8(k)::bigint), %(M)s) AS mi,
                mod(abs(hashint8(k + %(L)s)::bigint), %(T)s) AS ti,
                1 + mod(abs(hashint8(k + 2 * %(L)s)::bigint), %(most)s) AS points,
                mod(k * %(prime)s, %(L)s) < %(D)s AS due,
                mod(abs(hashint8(k + 3 * %(L)s)::bigint), 1000000)::float8 / 1000000 AS u
            FROM generate_series(0::bigint, %(L)s - 1) k
        ) drawn
    ) dated;
    CREATE UNIQUE INDEX ON bench_lot (k);
    ANALYZE bench_lot
"""

# One member in BURN_ONE_IN burns part or all of its oldest lot an hour after earning it: the
# oldest lot is the first to expire then, so the burn takes from it alone (oldest expiry first).
BURNS_SQL = """
    CREATE TEMP TABLE bench_burn AS
    SELECT mi, k AS lot_k, mod(abs(hashint8(mi + 6 * %(L)s)::bigint), %(T)s) AS ti,
        1 + mod(abs(hashint8(mi + 5 * %(L)s)::bigint), points) AS points,
        earned_at + interval '1 hour' AS at
    FROM (SELECT DISTINCT ON (mi) mi, k, points, earned_at FROM bench_lot ORDER BY mi, earned_at, k)
        oldest
    WHERE mod(abs(hashint8(mi + 4 * %(L)s)::bigint), %(burn_one_in)s) = 0
"""

# Every journal, earns and burns, numbered in time order (k): the shape close.py's journal,
# entry and balance statements read, so they are reused as they are.
PLAN_SQL = """
    CREATE TEMP TABLE bench_plan AS
    SELECT (row_number() OVER (ORDER BY at, earn DESC, lot_k) - 1)::bigint AS k, mi, ti, earn,
        points, CASE WHEN earn THEN points ELSE -points END AS delta, at, lot_k
    FROM (
        SELECT mi, ti, true AS earn, points, earned_at AS at, k AS lot_k FROM bench_lot
        UNION ALL
        SELECT mi, ti, false, points, at, lot_k FROM bench_burn
    ) journals;
    CREATE UNIQUE INDEX ON bench_plan (k);
    CREATE INDEX ON bench_plan (lot_k);
    ANALYZE bench_plan
"""

# Each lot with what its burn left, the journal that credited it and the burn that took from it.
LOT_STATE_SQL = """
    CREATE TEMP TABLE bench_lot_state AS
    SELECT l.k, l.mi, l.ti, l.points, l.points - coalesce(b.points, 0) AS remaining, l.due,
        l.earned_at, l.expires_on, e.k AS earn_k, b.k AS burn_k
    FROM bench_lot l
    JOIN bench_plan e ON e.lot_k = l.k AND e.earn
    LEFT JOIN bench_plan b ON b.lot_k = l.k AND NOT b.earn;
    ANALYZE bench_lot_state
"""

# One notice per member with due points, recorded NOTICE_AGE ago: its points per last day.
NOTICES_SQL = """
    INSERT INTO coalition_expirynotice (coalition_id, member_id, created_at, points,
        first_expiry, lots, channel, status, attempts, sent_at, error)
    SELECT %(c)s, m.id, %(noticed)s, sum(d.points), min(d.expires_on),
        jsonb_agg(jsonb_build_object('expires_on', d.expires_on, 'points', d.points)
            ORDER BY d.expires_on),
        'email', 'sent', 1, %(noticed)s, ''
    FROM (
        SELECT mi, expires_on, sum(remaining) AS points FROM bench_lot_state
        WHERE due AND remaining > 0 GROUP BY 1, 2
    ) d
    JOIN bench_member m ON m.i = d.mi
    GROUP BY m.i, m.id
    ORDER BY m.i
"""

LOTS_SQL = """
    INSERT INTO coalition_lot (coalition_id, member_id, journal_id, funding_tenant_id, points,
        remaining, earned_at, expires_on, pending_until, notice_id)
    SELECT %(c)s, m.id, %(jbase)s + l.earn_k + 1, t.tenant_id, l.points, l.remaining,
        l.earned_at, l.expires_on, NULL, n.id
    FROM bench_lot_state l
    JOIN bench_member m ON m.i = l.mi
    JOIN bench_tenant t ON t.t = l.ti
    LEFT JOIN coalition_expirynotice n ON n.member_id = m.id AND l.due AND l.remaining > 0
    ORDER BY l.earn_k
"""

CONSUMPTIONS_SQL = """
    INSERT INTO coalition_lotconsumption (lot_id, journal_id, points)
    SELECT lot.id, %(jbase)s + l.burn_k + 1, l.points - l.remaining
    FROM bench_lot_state l JOIN coalition_lot lot ON lot.journal_id = %(jbase)s + l.earn_k + 1
    WHERE l.burn_k IS NOT NULL
    ORDER BY l.burn_k
"""

# What the sweep expires: lots with points left, spendable, past their last day, whose notice
# was recorded at least the notice window ago.
DUE_LOTS = """
    coalition_lot l JOIN coalition_expirynotice n ON n.id = l.notice_id
    WHERE l.coalition_id = %(c)s AND l.remaining > 0 AND l.pending_until IS NULL
        AND l.expires_on < %(today)s AND n.created_at <= %(noticed_by)s
"""

DUE_FIGURES_SQL = f"""
    SELECT count(*), count(DISTINCT l.member_id), coalesce(sum(l.remaining), 0) FROM {DUE_LOTS}
"""

# Lots not due: their count, points left and a checksum of which lot holds them.
NOT_DUE_SQL = """
    SELECT count(*), coalesce(sum(remaining), 0), coalesce(sum(remaining::numeric * id), 0),
        count(notice_id)
    FROM coalition_lot WHERE coalition_id = %(c)s AND expires_on >= %(today)s
"""


def build(args: argparse.Namespace, database: str, lots: int, members: int) -> Volume:
    """The coalition, its tenants, `members` members and `lots` lots (see the module's doc)."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from coalition.services import coalition_create
    from coalition.services.programme import add_months, local_date

    started = time.monotonic()
    coalition = coalition_create(slug=SLUG, name="Expiry bench mall")
    defaults = (coalition.default_price_per_point, coalition.default_reimbursement_per_point)
    if coalition.points_per_block != 1 or any(rate != coalition.point_value for rate in defaults):
        raise BenchError("the build assumes 1 point per block and every rate at nominal")
    if coalition.expiry_policy != "fixed" or coalition.expiry_notice_days >= NOTICE_AGE.days:
        raise BenchError("the build assumes a fixed expiry term and a notice window under 40 days")
    tenant_rows = tenants_create(coalition, args.tenants)
    now = timezone.now()
    today = local_date(coalition, now)
    zone = ZoneInfo(coalition.time_zone)
    term_ago = add_months(today, -coalition.expiry_months)  # earned before it: due today

    def midnight(day: date) -> datetime:
        return datetime.combine(day, clock_time(), zone)

    due = round(lots * args.due_fraction)
    params: dict[str, Any] = {
        "c": coalition.pk,
        "L": lots,
        "M": members,
        "D": due,
        "T": args.tenants,
        "prime": DUE_PRIME,
        "most": MAX_EARN_POINTS,
        "burn_one_in": BURN_ONE_IN,
        "tz": coalition.time_zone,
        "expiry": coalition.expiry_months,
        "due_from": midnight(add_months(today, -coalition.expiry_months - 1)),
        "due_to": midnight(term_ago - MARGIN),
        "open_from": midnight(term_ago + MARGIN),
        "open_to": now - timedelta(hours=1),
        "noticed": now - NOTICE_AGE,
        "enrolled": midnight(add_months(today, -coalition.expiry_months - 2)),
        "end": now,
        "pv": coalition.point_value,
        "price": coalition.default_price_per_point,
        "reimbursement": coalition.default_reimbursement_per_point,
        "block": coalition.earn_block,
        "per_block": coalition.points_per_block,
        "jbase": scalar("SELECT coalesce(max(id), 0) FROM coalition_journal"),
        "ebase": scalar("SELECT coalesce(max(id), 0) FROM coalition_entry"),
    }

    def step(label: str, sql: str) -> None:
        began = time.monotonic()
        execute(sql, params)
        say(f"  {label} ({time.monotonic() - began:.1f} s)")

    say(
        f"Building {lots:,} lots over {members:,} members ({due:,} due), "
        f"{args.tenants} tenants, in {database}"
    )
    tenant_table_create(tenant_rows)
    step("the plan: lots, burns, journals in time order", LOTS_PLAN_SQL)
    execute(BURNS_SQL, params)
    execute(PLAN_SQL, params)
    execute(LOT_STATE_SQL, params)
    with bulk_load():
        step(
            "members and their accounts",
            MEMBERS_SQL.replace("'Close bench shopper '", "'Expiry bench member '"),
        )
        step("journals", JOURNALS_SQL)
        step("entries", ENTRIES_SQL)
        step("cached balances", BALANCES_SQL)
        step("expiry notices", NOTICES_SQL)
        step("lots", LOTS_SQL)
        step("lot consumptions", CONSUMPTIONS_SQL)
    for table in ("coalition_journal", "coalition_entry"):
        execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    began = time.monotonic()
    execute("VACUUM ANALYZE")
    say(f"  VACUUM ANALYZE ({time.monotonic() - began:.1f} s)")

    def count(sql: str) -> int:
        return int(scalar(sql, {"c": coalition.pk, "today": today}) or 0)

    ending_near = count(
        "SELECT count(*) FROM coalition_lot WHERE coalition_id = %(c)s "
        "AND expires_on BETWEEN %(today)s::date - 1 AND %(today)s::date + 1"
    )
    past = count(
        "SELECT count(*) FROM coalition_lot WHERE coalition_id = %(c)s AND expires_on < %(today)s"
    )
    if ending_near or past != due:
        raise BenchError(
            f"the build's dates are off: {past:,} lots past their last day (expected {due:,}), "
            f"{ending_near:,} ending within a day of today"
        )
    due_lots, due_members, due_points = due_figures(coalition.pk, now)
    volume = Volume(
        database=database,
        coalition_id=coalition.pk,
        today=today,
        tenants=args.tenants,
        members=count("SELECT count(*) FROM members_member WHERE coalition_id = %(c)s"),
        members_with_lots=count(
            "SELECT count(DISTINCT member_id) FROM coalition_lot WHERE coalition_id = %(c)s"
        ),
        lots=count("SELECT count(*) FROM coalition_lot WHERE coalition_id = %(c)s"),
        journals=count("SELECT count(*) FROM coalition_journal WHERE coalition_id = %(c)s"),
        entries=count(
            "SELECT count(*) FROM coalition_entry e JOIN coalition_account a "
            "ON a.id = e.account_id WHERE a.coalition_id = %(c)s"
        ),
        burns=count("SELECT count(*) FROM bench_burn"),
        notices=count("SELECT count(*) FROM coalition_expirynotice WHERE coalition_id = %(c)s"),
        due_lots=due_lots,
        due_members=due_members,
        due_points=due_points,
        seconds=time.monotonic() - started,
    )
    open_due = count("SELECT count(*) FROM bench_lot_state WHERE due AND remaining > 0")
    execute(
        "DROP TABLE bench_lot_state, bench_plan, bench_burn, bench_lot, bench_member, bench_tenant"
    )
    if volume.lots != lots or due_lots != open_due or volume.notices != due_members:
        raise BenchError(
            f"built {volume.lots:,} lots ({due_lots:,} due, {volume.notices:,} notices), "
            f"expected {lots:,} ({open_due:,} due with points left, one notice per member)"
        )
    say(
        f"Built {volume.lots:,} lots, {volume.entries:,} entries, {volume.notices:,} notices in "
        f"{volume.seconds:.0f} s: {due_lots:,} lots due ({due_points:,} points, "
        f"{due_members:,} members)"
    )
    return volume


def due_params(coalition_id: int, as_of: datetime) -> dict[str, Any]:
    """The coalition, today and the notice cut as the sweep computes them for `as_of`."""
    from coalition.models import Coalition
    from coalition.services.programme import local_date

    coalition = Coalition.objects.get(pk=coalition_id)
    return {
        "c": coalition_id,
        "today": local_date(coalition, as_of),
        "noticed_by": as_of - timedelta(days=coalition.expiry_notice_days),
    }


def due_figures(coalition_id: int, as_of: datetime) -> tuple[int, int, int]:
    """(lots, members, points) due as of `as_of`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(DUE_FIGURES_SQL, due_params(coalition_id, as_of))
        lots, members, points = cursor.fetchone()
    return int(lots), int(members), int(points)


# --- measuring ----------------------------------------------------------------------------------

# The floor: the sweep's writes by hand, three statements. (1) one expiry journal per member with
# due lots and its two entries (member and breakage), the journals in a CTE; (2) the due lots to
# 0, with one consumption record each, the UPDATE in a CTE (its FROM row is the lot as it was);
# (3) the member balances, from the journals of (1).
FLOOR_ENTRIES_SQL = f"""
    WITH due AS (
        SELECT l.member_id, sum(l.remaining) AS points FROM {DUE_LOTS} GROUP BY l.member_id
    ),
    j AS (
        INSERT INTO coalition_journal (public_id, coalition_id, kind, member_id, receipt, points,
            value, point_value, reason, occurred_at, posted_at)
        SELECT gen_random_uuid(), %(c)s, 'expire', member_id, '', points,
            round(points * %(pv)s, 2), %(pv)s, '', %(as_of)s, %(now)s
        FROM due
        RETURNING id, member_id, points
    )
    INSERT INTO coalition_entry (journal_id, account_id, points, value, balance_before,
        balance_after, digest)
    SELECT j.id, a.id, -j.points, -j.points * %(pv)s, a.balance, a.balance - j.points, ''
    FROM j JOIN coalition_account a ON a.member_id = j.member_id AND a.kind = 'member_points'
    UNION ALL
    SELECT j.id, %(breakage)s, j.points, j.points * %(pv)s, NULL, NULL, '' FROM j
"""

FLOOR_LOTS_SQL = f"""
    WITH spent AS (
        UPDATE coalition_lot s SET remaining = 0
        FROM {DUE_LOTS} AND s.id = l.id
        RETURNING s.id, s.member_id, l.remaining
    )
    INSERT INTO coalition_lotconsumption (lot_id, journal_id, points)
    SELECT s.id, j.id, s.remaining
    FROM spent s JOIN coalition_journal j ON j.member_id = s.member_id
        AND j.coalition_id = %(c)s AND j.kind = 'expire' AND j.posted_at = %(now)s
"""

FLOOR_BALANCES_SQL = """
    UPDATE coalition_account a SET balance = a.balance - j.points
    FROM coalition_journal j
    WHERE j.coalition_id = %(c)s AND j.kind = 'expire' AND j.posted_at = %(now)s
        AND a.member_id = j.member_id AND a.kind = 'member_points'
"""

FLOOR_TABLES = (
    "coalition_journal",
    "coalition_entry",
    "coalition_lot",
    "coalition_lotconsumption",
    "coalition_account",
)

FLOOR_STATEMENTS = (
    ("journals and entries", FLOOR_ENTRIES_SQL),
    ("lots and consumptions", FLOOR_LOTS_SQL),
    ("member balances", FLOOR_BALANCES_SQL),
)


@dataclass
class SweepRun:
    lots: int
    members: int
    due_lots: int
    seconds: float
    points: int
    traced: bool
    python_peak: int | None  # tracemalloc's peak during the call, bytes
    rss_before: int  # bytes
    rss_peak: int  # the resident high-water mark during the call (or the process's, see below)
    rss_after: int
    peak_reset: bool  # False: rss_peak is the process's lifetime peak (getrusage)


@dataclass
class Timings:
    verify_built: float = 0.0
    checks: list[tuple[str, float]] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    floor_parts: list[tuple[float, ...]] = field(default_factory=list)
    sweep: SweepRun | None = None
    verify_after: float = 0.0
    checks_after: list[tuple[str, float]] = field(default_factory=list)
    second: float = 0.0
    traced: SweepRun | None = None  # the full-size sweep again, on the copy, traced
    smaller: SweepRun | None = None  # the smaller run's traced sweep


def verify(coalition_id: int, checks: list[tuple[str, float]]) -> float:
    """`ledger_verify` must find nothing; each of its checks timed into `checks`."""
    from django.db import connection

    from coalition.models import Coalition
    from coalition.selectors import CHECKS, ledger_verify

    names = {sql: name for name, sql in CHECKS.items()}

    def clock(execute: Any, sql: str, *rest: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *rest)
        finally:
            if sql in names:
                checks.append((names[sql], time.perf_counter() - began))

    coalition = Coalition.objects.get(pk=coalition_id)
    with connection.execute_wrapper(clock):
        seconds, found = timed(partial(ledger_verify, coalition))
    if found:
        shown = "\n".join(f"  {problem}" for problem in found[:20])
        raise BenchError(f"the ledger does not verify ({len(found):,} problems):\n{shown}")
    return seconds


def floor(volume: Volume, runs: int, timings: Timings) -> None:
    """The same writes by hand, `runs` times after a warm-up, each in a transaction rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from coalition.models import AccountKind, Coalition
    from coalition.services.ledger import coalition_account

    coalition = Coalition.objects.get(pk=volume.coalition_id)
    breakage = coalition_account(coalition.pk, AccountKind.BREAKAGE).pk
    expected = (2 * volume.due_members, volume.due_lots, volume.due_members)
    for run in range(runs + 1):  # the first warms up and is not counted
        # Each run starts from the same tables: without the rows the last one rolled back.
        execute(f"VACUUM {', '.join(FLOOR_TABLES)}")
        as_of = timezone.now()
        params = {
            **due_params(coalition.pk, as_of),
            "pv": coalition.point_value,
            "as_of": as_of,
            "now": as_of,
            "breakage": breakage,
        }
        parts, written = [], []
        with transaction.atomic(), connection.cursor() as cursor:
            # Django's foreign keys are deferred to the commit, which the sweep pays and a
            # transaction rolled back never reaches: checked in each statement instead.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for _, sql in FLOOR_STATEMENTS:
                began = time.perf_counter()
                cursor.execute(sql, params)
                parts.append(time.perf_counter() - began)
                written.append(cursor.rowcount)
            cursor.execute(
                "SELECT count(*), coalesce(sum(points), 0) FROM coalition_journal "
                "WHERE coalition_id = %(c)s AND kind = 'expire' AND posted_at = %(now)s",
                params,
            )
            journals, points = cursor.fetchone()
            transaction.set_rollback(True)
        if tuple(written) != expected or (journals, points) != (
            volume.due_members,
            volume.due_points,
        ):
            raise BenchError(
                f"the floor wrote {written} rows and {journals:,} journals of {points:,} points; "
                f"expected {list(expected)} and {volume.due_members:,} of {volume.due_points:,}"
            )
        if run:
            timings.floor.append(sum(parts))
            timings.floor_parts.append(tuple(parts))
    shown = ", ".join(f"{seconds:.2f}" for seconds in timings.floor)
    say(f"floor: best {min(timings.floor):.2f} s of {shown}")


def memory_status() -> tuple[int, int]:
    """This process's resident memory now and its high-water mark, in bytes (from /proc)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    with suppress(OSError):
        status = Path("/proc/self/status").read_text()
        for name in found:
            match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                found[name] = int(match.group(1)) * 1024
    if not found["VmHWM"]:  # no /proc: the lifetime peak (kB on Linux)
        found["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return found["VmRSS"], found["VmHWM"]


def memory_peak_reset() -> bool:
    """Reset the kernel's resident high-water mark of this process (Linux 4.0 and later)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def sweep(volume: Volume, *, trace: bool) -> SweepRun:
    """`lots_expire` once, committed, with its memory; checks it expired every due point."""
    from django.utils import timezone

    from coalition.models import Coalition
    from coalition.services import lots_expire

    coalition = Coalition.objects.get(pk=volume.coalition_id)
    gc.collect()
    reset = memory_peak_reset()
    before, _ = memory_status()
    if trace:
        tracemalloc.start()
    as_of = timezone.now()
    try:
        seconds, points = timed(partial(lots_expire, as_of=as_of, coalition=coalition))
        python_peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    after, peak = memory_status()
    run = SweepRun(
        lots=volume.lots,
        members=volume.members,
        due_lots=volume.due_lots,
        seconds=seconds,
        points=int(points),
        traced=trace,
        python_peak=python_peak,
        rss_before=before,
        rss_peak=peak,
        rss_after=after,
        peak_reset=reset,
    )
    traced = f", Python peak {python_peak / MIB:.1f} MiB (traced)" if python_peak else ""
    say(
        f"lots_expire at {volume.lots:,} lots: {seconds:.2f} s, {run.points:,} points{traced}; "
        f"RSS {before / MIB:.0f} MiB before, {peak / MIB:.0f} at peak, {after / MIB:.0f} after"
    )
    if run.points != volume.due_points:
        raise BenchError(
            f"lots_expire returned {run.points:,} points; {volume.due_points:,} were due"
        )
    return run


def sweep_checked(volume: Volume, timings: Timings) -> None:
    """The timed sweep, then: what it wrote, what it left alone, the ledger, a second run."""
    from django.db import connection
    from django.utils import timezone

    from coalition.models import Coalition
    from coalition.services import lots_expire

    params = due_params(volume.coalition_id, timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(NOT_DUE_SQL, params)
        not_due_before = cursor.fetchone()
    timings.sweep = sweep(volume, trace=False)
    with connection.cursor() as cursor:
        cursor.execute(NOT_DUE_SQL, params)
        not_due_after = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FILTER (WHERE remaining > 0), coalesce(sum(remaining), 0) "
            "FROM coalition_lot WHERE coalition_id = %(c)s AND expires_on < %(today)s",
            params,
        )
        left, left_points = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), coalesce(sum(points), 0), count(DISTINCT member_id) "
            "FROM coalition_journal WHERE coalition_id = %(c)s AND kind = 'expire'",
            params,
        )
        journals, journal_points, journal_members = cursor.fetchone()
    if left:
        raise BenchError(f"{left:,} lots past their last day still hold {left_points:,} points")
    if (journals, journal_points, journal_members) != (
        volume.due_members,
        volume.due_points,
        volume.due_members,
    ):
        raise BenchError(
            f"the sweep wrote {journals:,} expiry journals of {journal_points:,} points for "
            f"{journal_members:,} members; expected one per member with due lots "
            f"({volume.due_members:,}), {volume.due_points:,} points"
        )
    if not_due_after[:3] != not_due_before[:3]:
        raise BenchError(
            f"lots not due changed: (count, points, checksum) {not_due_before[:3]} before, "
            f"{not_due_after[:3]} after"
        )
    if not_due_after[3] != not_due_before[3]:
        gave = not_due_after[3] - not_due_before[3]
        say(f"  note: the sweep gave {gave:,} lots not due a notice")
    say("  checked: every due lot at 0, one journal per member, lots not due unchanged")
    timings.verify_after = verify(volume.coalition_id, timings.checks_after)
    say(f"ledger_verify after the sweep: clean ({timings.verify_after:.2f} s)")
    coalition = Coalition.objects.get(pk=volume.coalition_id)
    timings.second, again = timed(partial(lots_expire, as_of=timezone.now(), coalition=coalition))
    if again:
        raise BenchError(f"a second run expired {again:,} more points")
    say(f"second run: nothing more ({timings.second:.2f} s)")


# --- databases ----------------------------------------------------------------------------------


def with_database(args: argparse.Namespace, name: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "database": name})


def use_database(server: Server, args: argparse.Namespace, name: str) -> None:
    """Point Django's connection at database `name`, setting Django up the first time."""
    if "django" in sys.modules:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
            connections["default"].settings_dict["NAME"] = name
            return
    django_setup(server, with_database(args, name))


def database_new(server: Server, args: argparse.Namespace, name: str) -> None:
    say(f"Database {name}: create, migrate")
    server.recreate(name)
    migrate(server, with_database(args, name))
    use_database(server, args, name)


def database_copy(server: Server, source: str, target: str) -> float:
    """`target` as a copy of `source` (no one may be connected to `source` meanwhile)."""
    from django.db import connections

    connections.close_all()
    began = time.monotonic()
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    return time.monotonic() - began


# --- the report ---------------------------------------------------------------------------------


def mib(size: int | None) -> str:
    return "—" if size is None else f"{size / MIB:,.1f}"


@dataclass
class Report:
    args: argparse.Namespace
    volume: Volume
    timings: Timings
    postgres: dict[str, str]
    elapsed: float

    @property
    def floor(self) -> float:
        return min(self.timings.floor)

    @property
    def sweep(self) -> SweepRun:
        assert self.timings.sweep is not None
        return self.timings.sweep

    @property
    def ratio(self) -> float:
        return self.sweep.seconds / self.floor

    def met(self) -> bool:
        return self.ratio <= TARGET_RATIO

    def memory_ratio(self) -> float | None:
        big, small = self.timings.traced, self.timings.smaller
        if big is None or small is None or not big.python_peak or not small.python_peak:
            return None
        return big.python_peak / small.python_peak

    def flat(self) -> bool | None:
        ratio = self.memory_ratio()
        return None if ratio is None else ratio <= FLAT_RATIO

    def rows(self) -> list[list[str]]:
        t, runs = self.timings, self.args.runs
        best = min(t.floor_parts, key=sum)

        def row(name: str, seconds: float, how: str) -> list[str]:
            return [name, f"{seconds:.2f}", f"{seconds / self.floor:.1f}", how]

        rows = [
            row(
                "floor: the same writes by hand",
                self.floor,
                f"3 statements, best of {runs} after a warm-up, rolled back",
            )
        ]
        rows += [
            row(f"- {name}", seconds, f"statement {index} of the best run")
            for index, ((name, _), seconds) in enumerate(
                zip(FLOOR_STATEMENTS, best, strict=True), 1
            )
        ]
        rows += [
            row("`lots_expire`", self.sweep.seconds, "once, committed"),
            row("then: `ledger_verify`", t.verify_after, "over the whole ledger, once"),
            row("then: `lots_expire` again", t.second, "expires nothing"),
        ]
        return rows

    def memory_rows(self) -> list[list[str]]:
        runs = [
            (run, how)
            for run, how in (
                (self.timings.smaller, "own database, traced"),
                (self.timings.traced, "on a copy, traced"),
                (self.timings.sweep, "the timed run, not traced"),
            )
            if run is not None
        ]
        return [
            [
                f"{run.lots:,}",
                f"{run.due_lots:,}",
                f"{run.seconds:.2f}",
                mib(run.python_peak),
                mib(run.rss_before),
                mib(run.rss_peak) + ("" if run.peak_reset else " (lifetime)"),
                mib(run.rss_after),
                how,
            ]
            for run, how in runs
        ]

    MEMORY_HEADER = (
        "lots",
        "due lots",
        "seconds",
        "Python peak (MiB)",
        "RSS before (MiB)",
        "RSS peak (MiB)",
        "RSS after (MiB)",
        "run",
    )

    def tracing_cost(self) -> str:
        """`(here 1.6x as long)`: how much slower the traced full-size run was."""
        traced = self.timings.traced
        if traced is None:
            return ""
        return f" (here {traced.seconds / self.sweep.seconds:.1f}x as long)"

    def verdict(self) -> str:
        return f"sweep ÷ floor = {self.ratio:.1f}x; target <= {TARGET_RATIO:.0f}x: " + (
            "met" if self.met() else "NOT met"
        )

    def memory_verdict(self) -> str:
        ratio, big, small = self.memory_ratio(), self.timings.traced, self.timings.smaller
        if ratio is None or big is None or small is None:
            return "memory: not compared (--no-memory-check)"
        return (
            f"Python peak at {big.lots:,} lots ÷ at {small.lots:,} = {ratio:.2f}x; flat "
            f"(<= {FLAT_RATIO}x): " + ("met" if self.flat() else "NOT met")
        )

    def check_lines(self, checks: list[tuple[str, float]]) -> list[str]:
        slowest = sorted(checks, key=lambda item: -item[1])
        return [f"{name} {seconds:.2f} s" for name, seconds in slowest]

    def volume_line(self) -> str:
        v = self.volume
        return (
            f"{v.lots:,} lots over {v.members:,} members ({v.members_with_lots:,} with lots), "
            f"{v.tenants} tenants; {v.due_lots:,} lots due ({v.due_points:,} points) of "
            f"{v.due_members:,} members; {v.journals:,} journals, {v.entries:,} entries"
        )

    def table(self) -> str:
        def lay(header: list[str], body: list[list[str]]) -> list[str]:
            rows = [header, *body]
            widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
            lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)) for row in rows]
            lines.insert(1, "  ".join("-" * w for w in widths))
            return lines

        return "\n".join(
            [
                self.volume_line(),
                "",
                *lay(["", "seconds", "÷ floor", ""], self.rows()),
                "",
                self.verdict(),
                "",
                *lay(list(self.MEMORY_HEADER), self.memory_rows()),
                "",
                self.memory_verdict(),
                "ledger_verify after the sweep, slowest first: "
                + ", ".join(self.check_lines(self.timings.checks_after)),
            ]
        )

    def figures(self) -> list[Figure]:
        figures = [
            Figure(
                "lots_expire",
                self.sweep.seconds,
                "s",
                self.floor * TARGET_RATIO,
                False,
                f"floor {self.floor:.2f} s (the same writes by hand) x {TARGET_RATIO:.0f}; "
                f"{self.sweep.due_lots:,} due lots of {self.sweep.lots:,}",
            ),
            Figure("floor: the same writes by hand", self.floor, "s", None, False),
            Figure(
                "ledger_verify after the sweep",
                self.timings.verify_after,
                "s",
                None,
                False,
                f"{self.volume.entries:,} entries before the sweep",
            ),
        ]
        big, small, ratio = self.timings.traced, self.timings.smaller, self.memory_ratio()
        if ratio is not None and big is not None and small is not None:
            figures.append(
                Figure(
                    "Python peak, full size ÷ smaller",
                    ratio,
                    "x",
                    FLAT_RATIO,
                    False,
                    f"{big.lots:,} lots against {small.lots:,}: flat",
                )
            )
        return figures

    def command(self) -> str:
        a = self.args
        parts = [".venv/bin/python bench/expiry.py", f"--lots {a.lots}", f"--members {a.members}"]
        parts += [f"--due-fraction {a.due_fraction}", f"--tenants {a.tenants}", f"--runs {a.runs}"]
        parts.append(
            f"--memory-divisor {a.memory_divisor}" if a.memory_check else "--no-memory-check"
        )
        return " ".join(parts)

    def markdown(self) -> str:
        v, pg = self.volume, self.postgres
        header = ["", "seconds", "÷ floor", "how"]
        table = report.markdown_table(header, self.rows())
        memory_table = report.markdown_table(list(self.MEMORY_HEADER), self.memory_rows())
        settings = ", ".join(f"`{name}={pg[name]}`" for name in SETTINGS)
        floor_sql = [" ".join(sql.split()) for _, sql in FLOOR_STATEMENTS]
        return "\n".join(
            [
                BEGIN_MARK,
                *report.run_heading(
                    ROOT,
                    self.elapsed,
                    self.command(),
                    table,
                    f" ({v.seconds:.0f} s of it building the full-size ledger)",
                ),
                f"**{self.verdict()}.**",
                "",
                memory_table,
                "",
                f"**{self.memory_verdict()}.**",
                "",
                f"- **Volume**: {v.lots:,} lots over {v.members:,} members "
                f"({v.members_with_lots:,} with lots, {v.lots / v.members:.0f} each on average), "
                f"{v.tenants} tenants at the default rates; each lot credited by its own earn,",
                f"  {v.burns:,} burns (one member in {BURN_ONE_IN}, part or all of its oldest "
                f"lot): {v.journals:,} journals, {v.entries:,} entries "
                f"(`coalition_entry` {pg['entry_size']}, `coalition_lot` {pg['lot_size']} "
                "with their indexes).",
                f"  Due: {v.due_lots:,} lots ({v.due_points:,} points) of {v.due_members:,} "
                "members, earned 12 to 13 months ago (the fixed 12-month term), each covered by "
                f"its member's expiry notice recorded {NOTICE_AGE.days} days ago (the window is "
                "30 days); the other lots end in the coming 12 months and have no notice.",
                "- **Floor**: the writes the sweep makes, by hand, three statements in a "
                "transaction rolled back, with the triggers (the entry digest) and foreign-key "
                "checks the sweep has too (`SET CONSTRAINTS ALL IMMEDIATE`: Django's are "
                "deferred to a commit the floor never makes), the tables vacuumed before each "
                "run: one expiry",
                "  journal per member with due lots and its two entries (member, breakage), the "
                "journals in a CTE; the due lots to 0 with one consumption record each, the "
                "UPDATE in a CTE; the member balances:",
                *(
                    f"  `{sql}`" + (";" if n < len(floor_sql) else ".")
                    for n, sql in enumerate(floor_sql, 1)
                ),
                "- **Sweep**: `lots_expire(as_of=now, coalition=...)` as the beat job calls it, "
                "once, committed, on Django's connection (`DEBUG=False`), after VACUUM ANALYZE; "
                "then checked: it returned the due points, every due lot is at 0, one journal per "
                "member, lots not due unchanged, `ledger_verify` clean, a second run expires "
                "nothing.",
                "- **Memory**: the Python peak is `tracemalloc`'s peak during the call, in "
                "a run of its own (on a copy of the database at full size) since tracing slows "
                f"the sweep{self.tracing_cost()}; RSS peak is the kernel's high-water mark, reset "
                "just before the call; what libpq holds (query results) counts in RSS only.",
                "- **`ledger_verify`'s checks** after the sweep, slowest first: "
                + ", ".join(self.check_lines(self.timings.checks_after))
                + ".",
                *report.machine_lines(pg["version"], settings),
                END_MARK,
            ]
        )

    def write_docs(self, path: Path) -> None:
        introduction = (
            "## Expiry at volume (`bench/expiry.py`)\n\n"
            "`lots_expire` over 1,000,000 lots of 200,000 members, a third of them due, against\n"
            "the same writes done by hand in plain SQL (the floor). Targets: the sweep within 3x\n"
            "of the floor, and its memory flat in the number of lots."
        )
        report.section_write(path, BEGIN_MARK, END_MARK, self.markdown(), introduction)


# --- the run ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, server: Server, started: float, made: list[str]) -> int:
    timings = Timings()
    if args.memory_check:
        smaller = f"{args.database}_quarter"
        made.append(smaller)
        database_new(server, args, smaller)
        volume = build(
            args, smaller, args.lots // args.memory_divisor, args.members // args.memory_divisor
        )
        timings.smaller = sweep(volume, trace=True)
        if not args.keep_db:
            from django.db import connections

            connections.close_all()
            server.drop(smaller)
    made.append(args.database)
    database_new(server, args, args.database)
    volume = build(args, args.database, args.lots, args.members)
    timings.verify_built = verify(volume.coalition_id, timings.checks)
    say(f"ledger_verify: clean ({timings.verify_built:.2f} s)")
    floor(volume, args.runs, timings)
    began = time.monotonic()
    execute("VACUUM ANALYZE")
    say(f"VACUUM ANALYZE after the floor ({time.monotonic() - began:.1f} s)")
    copy = f"{args.database}_traced"
    made.append(copy)
    say(f"Copied to {copy} ({database_copy(server, args.database, copy):.1f} s)")
    use_database(server, args, args.database)
    sweep_checked(volume, timings)
    postgres = postgres_describe()
    postgres["lot_size"] = str(
        scalar("SELECT pg_size_pretty(pg_total_relation_size('coalition_lot'))")
    )
    use_database(server, args, copy)
    timings.traced = sweep(volume, trace=True)
    if not args.keep_db:
        from django.db import connections

        connections.close_all()
        server.drop(copy)
    use_database(server, args, args.database)
    result = Report(args, volume, timings, postgres, time.monotonic() - started)
    print()
    print(result.table())
    if not args.no_docs:
        result.write_docs(DOCS)
        say(f"Wrote the expiry section of {DOCS.relative_to(ROOT)}")
    if args.json:
        figures_write(args.json, "expiry", result.command(), result.figures())
    return 0 if result.met() and result.flat() is not False else 2


def fraction_arg(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise argparse.ArgumentTypeError("a fraction is like 1/3 or 0.25") from exc
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("the fraction must be between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--lots", type=int, default=1_000_000, help="Lots, one earn journal each (1000000).")
    add("--members", type=int, default=200_000, help="Members the lots are spread over (200000).")
    add(
        "--due-fraction",
        type=fraction_arg,
        default=Fraction(1, 3),
        help="Share of the lots past their last day, e.g. 1/3 (1/3).",
    )
    add("--tenants", type=int, default=20, help="Tenants funding the lots (20).")
    add("--runs", type=int, default=3, help="Timed runs of the floor, after a warm-up (3).")
    add(
        "--memory-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="First build and sweep a smaller ledger in a database of its own, to compare the "
        "sweep's memory peaks (on).",
    )
    add(
        "--memory-divisor",
        type=int,
        default=4,
        help="The smaller ledger has --lots / this lots over --members / this members (4).",
    )
    add(
        "--server",
        default=report.default_server(),
        help=report.SERVER_HELP,
    )
    add(
        "--database",
        help="Database to create (dropped first if it exists; coalition_bench_<pid>, so that "
        "two runs on one server never drop each other's). The smaller run and the copy use it "
        "with _quarter and _traced after it.",
    )
    add(
        "--settings",
        default="coalition.settings.base",
        help="Django settings module for the app (%(default)s).",
    )
    add("--keep-db", action="store_true", help="Keep the databases afterwards.")
    add("--no-docs", action="store_true", help="Leave docs/benchmarks.md as it is.")
    add("--json", metavar="PATH", help=JSON_HELP)
    args = parser.parse_args(argv)

    if min(args.lots, args.members, args.tenants, args.runs) <= 0:
        parser.error("--lots, --members, --tenants and --runs must be positive")
    if args.lots % DUE_PRIME == 0:
        parser.error(f"--lots must not be a multiple of {DUE_PRIME}")
    if args.memory_check and (
        args.memory_divisor < 2
        or args.members // args.memory_divisor == 0
        or (args.lots // args.memory_divisor) % DUE_PRIME == 0
    ):
        parser.error("--memory-divisor must be at least 2 and leave members and lots to build")
    args.database = args.database or f"coalition_bench_{os.getpid()}"
    if not args.database.startswith("coalition_bench"):
        parser.error("--database must start with coalition_bench (it is dropped and recreated)")

    server = Server(args.server.rstrip("/"))
    started = time.monotonic()
    made: list[str] = []
    try:
        return run_reported("expiry", lambda: bench(args, server, started, made))
    finally:
        report.databases_release(server, made, "expiry", keep=args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
