"""The liability page at volume: its selector, its queries and the admin page over 1,000,000 lots.

    .venv/bin/python bench/liability.py [--lots 1000000] [--members 200000] [--tenants 40]
        [--months 24] [--runs 3] [--server URL] [--database NAME] [--keep-db | --reuse-db]

What one run does, start to end (about 5 minutes with the defaults on 2 cores):

1. creates a fresh database `coalition_bench_<pid>` (`--database` to name it, or a database in
   the `--server` URL) and migrates it; with `--reuse-db`, uses one a `--keep-db` run left
   instead and skips to step 4;
2. builds the mall: the coalition (a 14-day holdback, the default fixed 12-month term) and
   `--tenants` tenants with a store and a till each, through the services, then in bulk SQL
   (`INSERT ... SELECT` over `generate_series`, as bench/expiry.py builds; posting through the
   services would take hours): `--members` members with their two accounts and `--lots` lots,
   each credited by its own earn journal, given to a member by a hash and to a funding tenant by
   another, skewed so that a few anchor tenants fund most points (tenant i funds about
   (2i + 1) / tenants^2 of them); earn moments spread evenly over the last `--months` months.
   What became of each lot, drawn by hashes, each step a journal of its own with its
   consumption record: 3% refunded within a month of the earn (two in three wholly; an
   `earn_reversal`), a third burnt within 60 days of it (two in five wholly; a `burn` at a
   tenant drawn at random), and what was left of a lot whose last day was more than 7 days ago
   expired the day after it (one `expire` journal per member and day, one consumption record
   per lot); lots whose last day was in the last 7 days are past it and not yet swept (the
   page's "overdue" line). Lots earned in the last 14 days are pending (the holdback, turned on
   14 days ago, so no release journal exists yet). Journals are numbered in time order; each
   has its two entries (the member's leg with its running balance; the tenant's, or
   breakage's for an expiry) without the entry digest (this benchmark only reads); the cached
   balances are what the lots hold. No expiry notices, no closed months. A superuser loads
   without per-row foreign-key checks and triggers (`session_replication_role = replica`).
   Then VACUUM ANALYZE;
3. checks the built ledger with four of `ledger_verify`'s own checks, the ones about lots:
   `lot_remaining` (each lot's remaining is its points less its consumptions),
   `lot_consumption` (burns and expiries take exactly their points from lots),
   `lots_vs_balance` (lots add up to the cached balances) and `liability` (the member entries
   are worth the points held); the others (the digests, the chains, the headers) are not run;
4. times `liability(coalition)` on Django's connection (`DEBUG=False`): one warm-up call, then
   `--runs` calls, each of its statements timed as it runs (Django's execute wrapper), named
   after the selector function that ran it; checks the figures add up (net = the points the
   lots hold, every cohort's issued = redeemed + refunded + expired + outstanding);
5. times the admin page `GET /admin/coalition/coalition/<id>/liability/` and its CSV
   (`.../liability.csv`) through Django's test `Client`, in this process, logged in as a
   superuser (`force_login`): one warm-up request each, then `--runs` requests, with the time
   spent in SQL inside each;
6. runs `EXPLAIN (ANALYZE, BUFFERS)` on the slowest statement (by median) with the parameters
   it ran with, and prints its plan's first lines and its timing lines;
7. prints the figures, replaces the liability section of docs/benchmarks.md (`--no-docs` to
   leave it), and drops the database (`--keep-db` keeps it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import report
from close import MEMBERS_SQL, SETTINGS, postgres_describe
from common import (
    JSON_HELP,
    BenchError,
    Figure,
    Server,
    admin_client,
    bulk_load,
    execute,
    figures_write,
    run_reported,
    say,
    scalar,
    tenant_table_create,
    tenants_create,
)
from expiry import database_new, use_database

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN_MARK = "<!-- liability:begin (written by bench/liability.py; edits inside are replaced) -->"
END_MARK = "<!-- liability:end -->"
REFERENCE_SECONDS = 1.0  # issue 7: the dashboard in under a second on a million entries
SLUG = "liability-bench"
MAX_EARN_POINTS = 60  # earns of 1-60 points
REFUND_SHARE = 0.03  # lots refunded (an earn reversal)
FULL_REFUND = 2 / 3  # of the refunds, the share that takes the whole lot
BURN_SHARE = 1 / 3  # lots burnt, in part or wholly
FULL_BURN = 0.4  # of the burns, the share that takes all the lot has left
USED_WITHIN = timedelta(days=60)  # burns within 60 days of the earn, refunds within 30
HOLDBACK_DAYS = 14  # lots earned in the last 14 days are pending
UNSWEPT_DAYS = 7  # lots whose last day was in the last 7 days are past it, not yet expired
PLAN_LINES = 15  # lines of the slowest statement's plan printed and written
SELECTOR = os.path.join("coalition", "selectors", "liability.py")

# What each statement of `liability()` computes, by the selector function that runs it (the
# n-th statement of a function that runs several gets " #n").
STATEMENTS = {
    "liability": "balances: the member accounts' sums",
    "_expiry": "points by last day",
    "_by_tenant": "points by funding tenant",
    "_by_age": "points by age",
    "_breakage_points": "breakage to date",
    "_breakage_returned": "breakage returned on statements",
    "_cohorts": "cohorts: issued per earn month",
    "_cohorts #2": "cohorts: consumed per earn month and kind",
}


# --- building the mall --------------------------------------------------------------------------

# Lot k: its member and tenants (the funding one skewed: the square of an even draw), points,
# earn moment, last day (the fixed term, as `lot_expiry` sets it), and what became of it.
LOTS_PLAN_SQL = """
    CREATE TEMP TABLE bench_lot AS
    WITH drawn AS (
        SELECT k, mod(abs(hashint8(k)::bigint), %(M)s) AS mi,
            least(floor(%(T)s * power(
                mod(abs(hashint8(k + %(L)s)::bigint), 1000000)::float8 / 1000000, 2))::int,
                %(T)s - 1) AS ti,
            mod(abs(hashint8(k + 2 * %(L)s)::bigint), %(T)s) AS burn_ti,
            1 + mod(abs(hashint8(k + 3 * %(L)s)::bigint), %(most)s) AS points,
            %(first)s::timestamptz + (%(last)s::timestamptz - %(first)s::timestamptz)
                * (mod(abs(hashint8(k + 4 * %(L)s)::bigint), 1000000)::float8 / 1000000)
                AS earned_at,
            mod(abs(hashint8(k + 5 * %(L)s)::bigint), 1000000)::float8 / 1000000 AS u_refund,
            mod(abs(hashint8(k + 6 * %(L)s)::bigint), 1000000)::float8 / 1000000 AS u_burn,
            mod(abs(hashint8(k + 7 * %(L)s)::bigint), 1000000)::float8 / 1000000 AS u_when,
            abs(hashint8(k + 8 * %(L)s)::bigint) AS h_refund,
            abs(hashint8(k + 9 * %(L)s)::bigint) AS h_burn
        FROM generate_series(0::bigint, %(L)s - 1) k
    ), dated AS (
        SELECT *,
            ((earned_at AT TIME ZONE %(tz)s)::date + make_interval(months => %(expiry)s::int))::date
                - 1 AS expires_on,
            earned_at > %(pending_from)s::timestamptz AS pending,
            least(%(used_within)s::interval * u_when, (%(now)s::timestamptz - earned_at) * 0.9)
                AS used_after
        FROM drawn
    ), refunded AS (
        SELECT *, CASE WHEN pending OR u_refund >= %(refund_share)s THEN 0
            WHEN u_refund < %(refund_share)s * %(full_refund)s THEN points
            ELSE 1 + mod(h_refund, points) END AS refund
        FROM dated
    ), burnt AS (
        SELECT *, CASE WHEN pending OR u_burn >= %(burn_share)s OR refund = points THEN 0
            WHEN u_burn < %(burn_share)s * %(full_burn)s THEN points - refund
            ELSE 1 + mod(h_burn, points - refund) END AS burn
        FROM refunded
    )
    SELECT k, mi, ti, burn_ti, points, earned_at, expires_on, pending, refund, burn,
        earned_at + used_after / 2 AS refund_at, earned_at + used_after AS burn_at,
        CASE WHEN expires_on < %(swept_before)s::date THEN points - refund - burn ELSE 0 END
            AS expire,
        row_number() OVER (ORDER BY earned_at, k) AS lid
    FROM burnt;
    CREATE UNIQUE INDEX ON bench_lot (k);
    ANALYZE bench_lot
"""

# Every journal in time order (j): the earns, refunds and burns, one per lot each; the expiries,
# one per member and last day, the morning after it (as the nightly sweep posts them).
JOURNAL_PLAN_SQL = """
    CREATE TEMP TABLE bench_journal AS
    SELECT (row_number() OVER (ORDER BY at, ord, ref) - 1)::bigint AS j, ord, ref, mi, ti,
        points, at, pending, expires_on
    FROM (
        SELECT 0 AS ord, k AS ref, mi, ti, points, earned_at AS at, pending,
            NULL::date AS expires_on
        FROM bench_lot
        UNION ALL
        SELECT 1, k, mi, ti, refund, refund_at, false, NULL FROM bench_lot WHERE refund > 0
        UNION ALL
        SELECT 2, k, mi, burn_ti, burn, burn_at, false, NULL FROM bench_lot WHERE burn > 0
        UNION ALL
        SELECT 3, mi, mi, NULL, sum(expire),
            ((expires_on + 1)::timestamp + interval '2 hours') AT TIME ZONE %(tz)s, false,
            expires_on
        FROM bench_lot WHERE expire > 0 GROUP BY mi, expires_on
    ) journals;
    CREATE UNIQUE INDEX ON bench_journal (j);
    CREATE INDEX ON bench_journal (ord, ref);
    ANALYZE bench_journal
"""

KINDS = "(ARRAY['earn', 'earn_reversal', 'burn', 'expire'])[p.ord + 1]"

JOURNALS_SQL = f"""
    INSERT INTO coalition_journal (id, public_id, coalition_id, kind, member_id, tenant_id,
        store_id, till_id, receipt, points, amount, bill_amount, value, point_value, earn_block,
        points_per_block, price_per_point, reimbursement_per_point, reverses_id, reason,
        occurred_at, posted_at)
    SELECT %(jbase)s + p.j + 1, gen_random_uuid(), %(c)s, {KINDS}, m.id, t.tenant_id,
        t.store_id, t.till_id, CASE WHEN p.ord IN (0, 2) THEN 'liability-' || p.j ELSE '' END,
        p.points,
        CASE p.ord
            WHEN 0 THEN p.points * %(block)s
                + mod(abs(hashint8(p.j)::bigint), 100 * %(block)s::bigint) / 100.0
            WHEN 1 THEN p.points * %(block)s
        END,
        CASE WHEN p.ord = 2
            THEN p.points * %(pv)s + mod(abs(hashint8(p.j)::bigint), 300000) / 100.0
        END,
        round(p.points * %(pv)s, 2), %(pv)s,
        CASE WHEN p.ord = 0 THEN %(block)s END, CASE WHEN p.ord = 0 THEN %(per_block)s END,
        CASE WHEN p.ord = 0 THEN %(price)s END,
        CASE WHEN p.ord IN (0, 2) THEN %(reimbursement)s END,
        %(jbase)s + e.j + 1, CASE WHEN p.ord = 1 THEN 'Goods returned' ELSE '' END, p.at, p.at
    FROM bench_journal p
    JOIN bench_member m ON m.i = p.mi
    LEFT JOIN bench_tenant t ON t.t = p.ti
    LEFT JOIN bench_journal e ON p.ord = 1 AND e.ord = 0 AND e.ref = p.ref
    ORDER BY p.j
"""

# The member's leg (on the pending account for a pending earn) with its running balance; the
# other leg on the tenant's issued account (earn, refund), its redeemed one (burn) or breakage.
ENTRIES_SQL = """
    INSERT INTO coalition_entry (id, journal_id, account_id, points, value, balance_before,
        balance_after, digest)
    SELECT id, journal_id, account_id, points, value, after - points, after, ''
    FROM (
        SELECT %(ebase)s + 2 * p.j + 1 AS id, %(jbase)s + p.j + 1 AS journal_id,
            CASE WHEN p.pending THEN m.pending_account ELSE m.points_account END AS account_id,
            p.delta AS points, (p.delta * %(pv)s)::numeric(18, 4) AS value,
            (sum(p.delta) OVER (PARTITION BY p.mi, p.pending ORDER BY p.j))::bigint AS after
        FROM (
            SELECT *, CASE WHEN ord = 0 THEN points ELSE -points END AS delta FROM bench_journal
        ) p
        JOIN bench_member m ON m.i = p.mi
        UNION ALL
        SELECT %(ebase)s + 2 * p.j + 2, %(jbase)s + p.j + 1,
            CASE WHEN p.ord IN (0, 1) THEN t.issued_account WHEN p.ord = 2 THEN t.redeemed_account
                ELSE %(breakage)s END,
            CASE WHEN p.ord = 0 THEN -p.points ELSE p.points END,
            (CASE WHEN p.ord = 0 THEN -p.points ELSE p.points END
                * CASE WHEN p.ord IN (0, 1) THEN %(price)s WHEN p.ord = 2 THEN %(reimbursement)s
                    ELSE %(pv)s END)::numeric(18, 4),
            NULL
        FROM bench_journal p LEFT JOIN bench_tenant t ON t.t = p.ti
    ) legs
    ORDER BY id
"""

BALANCES_SQL = """
    UPDATE coalition_account a SET balance = s.total
    FROM (
        SELECT CASE WHEN l.pending THEN m.pending_account ELSE m.points_account END AS account,
            sum(l.points - l.refund - l.burn - l.expire) AS total
        FROM bench_lot l JOIN bench_member m ON m.i = l.mi GROUP BY 1
    ) s
    WHERE a.id = s.account
"""

LOTS_SQL = """
    INSERT INTO coalition_lot (id, coalition_id, member_id, journal_id, funding_tenant_id, points,
        remaining, earned_at, expires_on, slide_months, pending_until, notice_id)
    SELECT %(lbase)s + l.lid, %(c)s, m.id, %(jbase)s + e.j + 1, t.tenant_id, l.points,
        l.points - l.refund - l.burn - l.expire, l.earned_at, l.expires_on, NULL,
        CASE WHEN l.pending THEN l.earned_at + %(holdback)s::interval END, NULL
    FROM bench_lot l
    JOIN bench_member m ON m.i = l.mi
    JOIN bench_tenant t ON t.t = l.ti
    JOIN bench_journal e ON e.ord = 0 AND e.ref = l.k
    ORDER BY l.lid
"""

CONSUMPTIONS_SQL = """
    INSERT INTO coalition_lotconsumption (lot_id, journal_id, points)
    SELECT lot_id, journal_id, points
    FROM (
        SELECT %(lbase)s + l.lid AS lot_id, %(jbase)s + p.j + 1 AS journal_id, p.points
        FROM bench_journal p JOIN bench_lot l ON l.k = p.ref
        WHERE p.ord IN (1, 2)
        UNION ALL
        SELECT %(lbase)s + l.lid, %(jbase)s + p.j + 1, l.expire
        FROM bench_lot l
        JOIN bench_journal p ON p.ord = 3 AND p.mi = l.mi AND p.expires_on = l.expires_on
        WHERE l.expire > 0
    ) taken
    ORDER BY journal_id, lot_id
"""

# The checks of `ledger_verify` this build must pass: the ones about lots and balances.
CHECKED = ("lot_remaining", "lot_consumption", "lots_vs_balance", "liability")


def build(args: argparse.Namespace) -> None:
    """The coalition, its tenants, members, lots and what became of them (see the module doc)."""
    from zoneinfo import ZoneInfo

    from django.utils import timezone

    from coalition.models import AccountKind
    from coalition.services import coalition_create
    from coalition.services.ledger import coalition_account
    from coalition.services.programme import add_months, coalition_settings_save, local_date

    started = time.monotonic()
    coalition = coalition_create(slug=SLUG, name="Liability bench mall")
    defaults = (coalition.default_price_per_point, coalition.default_reimbursement_per_point)
    if coalition.points_per_block != 1 or any(rate != coalition.point_value for rate in defaults):
        raise BenchError("the build assumes 1 point per block and every rate at nominal")
    if coalition.expiry_policy != "fixed":
        raise BenchError("the build assumes the fixed expiry policy")
    coalition.holdback_days = HOLDBACK_DAYS
    coalition_settings_save(coalition=coalition)
    tenant_rows = tenants_create(coalition, args.tenants)
    now = timezone.now()
    today = local_date(coalition, now)
    zone = ZoneInfo(coalition.time_zone)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, clock_time(), zone)

    params: dict[str, Any] = {
        "c": coalition.pk,
        "L": args.lots,
        "M": args.members,
        "T": args.tenants,
        "most": MAX_EARN_POINTS,
        "tz": coalition.time_zone,
        "expiry": coalition.expiry_months,
        "first": midnight(add_months(today, -args.months)),
        "last": now - timedelta(hours=1),
        "now": now,
        "pending_from": now - timedelta(days=HOLDBACK_DAYS),
        "holdback": timedelta(days=HOLDBACK_DAYS),
        "used_within": USED_WITHIN,
        "swept_before": today - timedelta(days=UNSWEPT_DAYS),
        "refund_share": REFUND_SHARE,
        "full_refund": FULL_REFUND,
        "burn_share": BURN_SHARE,
        "full_burn": FULL_BURN,
        "enrolled": midnight(add_months(today, -args.months - 1)),
        "end": now,
        "pv": coalition.point_value,
        "price": coalition.default_price_per_point,
        "reimbursement": coalition.default_reimbursement_per_point,
        "block": coalition.earn_block,
        "per_block": coalition.points_per_block,
        "breakage": coalition_account(coalition.pk, AccountKind.BREAKAGE).pk,
        "jbase": scalar("SELECT coalesce(max(id), 0) FROM coalition_journal"),
        "ebase": scalar("SELECT coalesce(max(id), 0) FROM coalition_entry"),
        "lbase": scalar("SELECT coalesce(max(id), 0) FROM coalition_lot"),
    }

    def step(label: str, sql: str) -> None:
        began = time.monotonic()
        execute(sql, params)
        say(f"  {label} ({time.monotonic() - began:.1f} s)")

    say(
        f"Building {args.lots:,} lots over {args.members:,} members and {args.months} months, "
        f"{args.tenants} tenants, in {args.database}"
    )
    tenant_table_create(tenant_rows)
    step("the plan: lots and what became of them", LOTS_PLAN_SQL)
    step("the plan: journals in time order", JOURNAL_PLAN_SQL)
    with bulk_load():
        execute("SET work_mem = '256MB'")  # the entries' running balances sort in memory
        step(
            "members and their accounts",
            MEMBERS_SQL.replace("'Close bench shopper '", "'Liability bench member '"),
        )
        step("journals", JOURNALS_SQL)
        step("entries", ENTRIES_SQL)
        step("cached balances", BALANCES_SQL)
        step("lots", LOTS_SQL)
        step("lot consumptions", CONSUMPTIONS_SQL)
        execute("RESET work_mem")
    for table in ("coalition_journal", "coalition_entry", "coalition_lot"):
        execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    execute("DROP TABLE bench_journal, bench_lot, bench_member, bench_tenant")
    began = time.monotonic()
    execute("VACUUM ANALYZE")
    say(f"  VACUUM ANALYZE ({time.monotonic() - began:.1f} s)")
    say(f"Built in {time.monotonic() - started:.0f} s")


def check(coalition_id: int) -> float:
    """The lot and balance checks of `ledger_verify` must find nothing."""
    from django.db import connection

    from coalition.selectors import CHECKS

    began = time.monotonic()
    with connection.cursor() as cursor:
        for name in CHECKED:
            cursor.execute(CHECKS[name], {"c": coalition_id})
            found = cursor.fetchmany(5)
            if found:
                shown = "\n".join(f"  {subject}: {detail}" for subject, detail in found)
                raise BenchError(f"the built ledger fails {name}:\n{shown}")
    seconds = time.monotonic() - began
    say(f"Checked: {', '.join(CHECKED)} clean ({seconds:.1f} s)")
    return seconds


@dataclass
class Volume:
    lots: int
    members: int
    members_with_lots: int
    tenants: int
    pending_lots: int
    first_earn: datetime
    last_earn: datetime
    points: int
    remaining: int
    journals: dict[str, int]
    consumed: dict[str, tuple[int, int, int]]  # kind: (lots, records, points)
    entries: int
    sizes: dict[str, str]

    def taken_by(self, kind: str) -> tuple[int, int, int]:
        """(lots, consumption records, points) of the journals of `kind`."""
        return self.consumed.get(kind, (0, 0, 0))

    def lines(self) -> list[str]:
        burnt, refunded, expired = (self.taken_by(k) for k in ("burn", "earn_reversal", "expire"))
        journals = ", ".join(f"{n:,} {kind}" for kind, n in sorted(self.journals.items()))
        return [
            f"{self.lots:,} lots over {self.members:,} members ({self.members_with_lots:,} with "
            f"lots), funded by {self.tenants} tenants, earned {self.first_earn:%Y-%m-%d} to "
            f"{self.last_earn:%Y-%m-%d}; {self.pending_lots:,} pending;",
            f"{burnt[0]:,} lots burnt ({burnt[2]:,} points), {refunded[0]:,} refunded "
            f"({refunded[2]:,} points), {expired[0]:,} expired ({expired[2]:,} points); "
            f"{sum(c[1] for c in self.consumed.values()):,} consumption records;",
            f"{self.points:,} points issued, {self.remaining:,} outstanding; journals: "
            f"{journals}; {self.entries:,} entries",
        ]


def volume_read(coalition_id: int) -> Volume:
    """What the database holds for the coalition (a reused database was built elsewhere)."""
    from django.db import connection

    params = {"c": coalition_id}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT member_id), count(DISTINCT funding_tenant_id), "
            "count(*) FILTER (WHERE pending_until IS NOT NULL), min(earned_at), max(earned_at), "
            "sum(points), sum(remaining) FROM coalition_lot WHERE coalition_id = %(c)s",
            params,
        )
        lots, holders, tenants, pending, first, last, points, remaining = cursor.fetchone()
        cursor.execute(
            "SELECT kind, count(*) FROM coalition_journal WHERE coalition_id = %(c)s GROUP BY 1",
            params,
        )
        journals = {kind: int(count) for kind, count in cursor.fetchall()}
        cursor.execute(
            "SELECT j.kind, count(DISTINCT c.lot_id), count(*), sum(c.points) "
            "FROM coalition_lotconsumption c JOIN coalition_journal j ON j.id = c.journal_id "
            "WHERE j.coalition_id = %(c)s GROUP BY 1",
            params,
        )
        consumed = {kind: (int(a), int(b), int(c)) for kind, a, b, c in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FROM coalition_entry e JOIN coalition_account a "
            "ON a.id = e.account_id WHERE a.coalition_id = %(c)s",
            params,
        )
        entries = int(cursor.fetchone()[0])
        cursor.execute("SELECT count(*) FROM members_member WHERE coalition_id = %(c)s", params)
        members = int(cursor.fetchone()[0])
        sizes = {}
        for table in ("coalition_lot", "coalition_lotconsumption", "coalition_journal"):
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size(%s))", [table])
            sizes[table] = str(cursor.fetchone()[0])
    return Volume(
        lots=int(lots),
        members=members,
        members_with_lots=int(holders),
        tenants=int(tenants),
        pending_lots=int(pending),
        first_earn=first,
        last_earn=last,
        points=int(points or 0),
        remaining=int(remaining or 0),
        journals=journals,
        consumed=consumed,
        entries=entries,
        sizes=sizes,
    )


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Statement:
    label: str
    sql: str
    params: Any
    seconds: float


@dataclass
class Recorder:
    """Times every statement run on Django's connection, named after the selector function of
    coalition/selectors/liability.py that ran it (or "other": the admin's own queries)."""

    statements: list[Statement] = field(default_factory=list)

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, *rest: Any) -> Any:
        label = self.label()
        began = time.perf_counter()
        try:
            return execute(sql, params, *rest)
        finally:
            self.statements.append(Statement(label, sql, params, time.perf_counter() - began))

    def label(self) -> str:
        frame: FrameType | None = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename.endswith(SELECTOR):
                name = frame.f_code.co_name
                seen = sum(1 for s in self.statements if s.label.split(" #")[0] == name)
                return name if not seen else f"{name} #{seen + 1}"
            frame = frame.f_back
        return "other"

    def sql_seconds(self) -> float:
        return sum(s.seconds for s in self.statements)


@contextmanager
def recording() -> Iterator[Recorder]:
    from django.db import connection

    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        yield recorder


@dataclass
class Requests:
    """The timed GETs of one URL: each whole request and the SQL inside it."""

    seconds: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    statements: int = 0  # in the warm-up request
    warm_up: float = 0.0


@dataclass
class Timings:
    checks: float = 0.0
    selector: list[float] = field(default_factory=list)
    selector_warm_up: float = 0.0
    statements: dict[str, list[float]] = field(default_factory=dict)
    sql_of: dict[str, Statement] = field(default_factory=dict)
    page: Requests = field(default_factory=lambda: Requests())
    csv: Requests = field(default_factory=lambda: Requests())
    plan: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)  # the 1-minute load average before and after


def selector_measure(coalition_id: int, runs: int, timings: Timings) -> Any:
    """`liability(coalition)` once to warm up, then `runs` times, each statement timed."""
    from coalition.models import Coalition
    from coalition.selectors.liability import liability

    coalition = Coalition.objects.get(pk=coalition_id)
    figures = None
    for run in range(runs + 1):
        with recording() as recorder:
            began = time.perf_counter()
            figures = liability(coalition)
            seconds = time.perf_counter() - began
        if not run:
            timings.selector_warm_up = seconds
            continue
        timings.selector.append(seconds)
        for statement in recorder.statements:
            timings.statements.setdefault(statement.label, []).append(statement.seconds)
            timings.sql_of[statement.label] = statement
    say(f"liability(): median {median(timings.selector):.2f} s, best {min(timings.selector):.2f}")
    return figures


def figures_check(figures: Any, volume: Volume) -> None:
    """The selector's figures add up to what the lots hold."""
    held = figures.spendable.points + figures.pending.points + figures.owed_by_members.points
    if figures.net.points != volume.remaining or held != volume.remaining:
        raise BenchError(f"net {figures.net.points:,} points, the lots hold {volume.remaining:,}")
    for name in ("by_tenant", "by_age"):
        if sum(row.points for row in getattr(figures, name)) != volume.remaining:
            raise BenchError(f"{name} does not add up to the {volume.remaining:,} points held")
    # The expiry lines cover the next 12 months: points earned since this day a year ago end
    # after them.
    expiring = figures.overdue.points + figures.never_expiring.points
    if expiring + sum(row.points for row in figures.expiring) > volume.remaining:
        raise BenchError("the expiry lines add up to more than the points held")
    odd = [cohort.month for cohort in figures.cohorts if cohort.other]
    issued = sum(cohort.issued for cohort in figures.cohorts)
    if odd or issued != volume.points:
        raise BenchError(f"cohorts: {issued:,} issued of {volume.points:,}; odd months {odd}")


def pages_measure(coalition_id: int, runs: int, timings: Timings) -> None:
    """The admin page and its CSV through the test client, as a logged-in superuser."""
    from django.urls import reverse

    client = admin_client("liability-bench")
    for request, view, expected in (
        (timings.page, "liability", "text/html"),
        (timings.csv, "liability_csv", "text/csv"),
    ):
        url = reverse(f"admin:coalition_coalition_{view}", args=[coalition_id])
        for run in range(runs + 1):
            with recording() as recorder:
                began = time.perf_counter()
                response = client.get(url)
                seconds = time.perf_counter() - began
            if response.status_code != 200 or not response["Content-Type"].startswith(expected):
                raise BenchError(f"GET {url}: {response.status_code} {response['Content-Type']}")
            if not run:
                request.warm_up, request.statements = seconds, len(recorder.statements)
                continue
            request.seconds.append(seconds)
            request.sql.append(recorder.sql_seconds())
        say(f"GET {url}: median {median(request.seconds):.2f} s, best {min(request.seconds):.2f}")


def explain(statement: Statement) -> list[str]:
    """`EXPLAIN (ANALYZE, BUFFERS)` of a statement with its parameters: the plan's first lines,
    then its JIT and timing lines."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql, statement.params)
        lines = [str(row[0]) for row in cursor.fetchall()]
    tail_from = next(
        (i for i, line in enumerate(lines) if line.startswith(("Planning", "JIT:"))), len(lines)
    )
    head = lines[: min(PLAN_LINES, tail_from)]
    if tail_from > PLAN_LINES:
        head.append(f"  ... ({tail_from - PLAN_LINES} more lines)")
    return head + lines[tail_from:]


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Report:
    args: argparse.Namespace
    volume: Volume
    timings: Timings
    postgres: dict[str, str]
    build_seconds: float | None
    elapsed: float

    def ordered_statements(self) -> list[str]:
        order = list(STATEMENTS)
        return sorted(
            self.timings.statements,
            key=lambda label: order.index(label) if label in order else len(order),
        )

    def slowest(self) -> tuple[str, float]:
        statements = self.timings.statements
        label = max(statements, key=lambda name: median(statements[name]))
        return label, median(statements[label]) / median(self.timings.selector)

    def rows(self) -> list[list[str]]:
        t, runs = self.timings, self.args.runs

        def row(name: str, values: list[float], how: str) -> list[str]:
            return [name, f"{median(values):.3f}", f"{min(values):.3f}", how]

        rows = [row("`liability(coalition)`", t.selector, f"{runs} calls after a warm-up")]
        for label in self.ordered_statements():
            function = label.partition(" #")[0]
            what = STATEMENTS.get(label, label)
            rows.append(row(f"- {what} (`{function}`)", t.statements[label], "its statement"))
        for name, request in (
            ("page: `GET .../liability/`", t.page),
            ("CSV: `GET .../liability.csv`", t.csv),
        ):
            how = (
                f"{runs} requests after a warm-up; {request.statements} statements, "
                f"{median(request.sql):.3f} s of SQL (median)"
            )
            rows.append(row(name, request.seconds, how))
        return rows

    def figures(self) -> list[Figure]:
        t = self.timings
        reference = f"no target; the dashboard's {REFERENCE_SECONDS:.0f} s for reference"
        return [
            Figure("liability(coalition), median", median(t.selector), "s", None, False),
            Figure(
                "page GET .../liability/, median",
                median(t.page.seconds),
                "s",
                REFERENCE_SECONDS,
                False,
                reference,
            ),
            Figure(
                "CSV GET .../liability.csv, median",
                median(t.csv.seconds),
                "s",
                REFERENCE_SECONDS,
                False,
                reference,
            ),
        ]

    def verdict(self) -> str:
        page = median(self.timings.page.seconds)
        met = "meets" if page < REFERENCE_SECONDS else "does NOT meet"
        return (
            "No target; for reference, issue 7 asks the dashboard to render in under a second "
            f"on a million entries: the page's median, {page:.2f} s, {met} that"
        )

    def slowest_line(self) -> str:
        label, share = self.slowest()
        what = STATEMENTS.get(label, label)
        dominates = "dominates" if share >= 0.5 else "is the largest share"
        function = label.split(" #")[0]
        return (
            f"slowest statement: {what} (`{function}`), {share:.0%} of `liability()`: "
            f"it {dominates}"
        )

    def load_line(self) -> str:
        before, after = self.timings.load
        return (
            f"1-minute load average {before:.2f} before the measurements, {after:.2f} after, "
            f"on {os.cpu_count()} CPUs"
        )

    def table(self) -> str:
        rows = [["", "median s", "best s", ""], *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(
            [
                *self.volume.lines(),
                "",
                *lines,
                "",
                self.verdict() + ".",
                self.load_line() + ".",
                self.slowest_line() + ";",
                "its plan (EXPLAIN (ANALYZE, BUFFERS), the first lines):",
                *(f"    {line}" for line in self.timings.plan),
            ]
        )

    def command(self) -> str:
        a = self.args
        return " ".join(
            [
                ".venv/bin/python bench/liability.py",
                f"--lots {a.lots}",
                f"--members {a.members}",
                f"--tenants {a.tenants}",
                f"--months {a.months}",
                f"--runs {a.runs}",
                f"--server {a.server_shown}",
            ]
        )

    def markdown(self) -> str:
        v, t, pg = self.volume, self.timings, self.postgres
        header = ["", "median s", "best s", "how"]
        table = report.markdown_table(header, self.rows())
        settings = ", ".join(f"`{name}={pg[name]}`" for name in SETTINGS)
        built = (
            f" ({self.build_seconds:.0f} s of it building the mall)"
            if self.build_seconds is not None
            else " (on a database a `--keep-db` run built)"
        )
        burnt, refunded, expired = (v.taken_by(k) for k in ("burn", "earn_reversal", "expire"))
        journals = ", ".join(f"{count:,} {kind}" for kind, count in sorted(v.journals.items()))
        return "\n".join(
            [
                BEGIN_MARK,
                *report.run_heading(ROOT, self.elapsed, self.command(), table, built),
                f"**{self.verdict()}.**",
                "",
                f"The {self.slowest_line()}. Its plan (`EXPLAIN (ANALYZE, BUFFERS)` with the "
                "parameters it ran with, run once after the measurements; the first lines and "
                "the timing, which the per-node clocks of ANALYZE inflate):",
                "",
                "```",
                *t.plan,
                "```",
                "",
                f"- **Volume**: {v.lots:,} lots over {v.members:,} members "
                f"({v.members_with_lots:,} with lots), funded by {v.tenants} tenants (skewed: "
                "a few anchors fund most), earned evenly over "
                f"{v.first_earn:%Y-%m-%d} to {v.last_earn:%Y-%m-%d} under the fixed 12-month "
                f"term; {v.pending_lots:,} lots pending (a {HOLDBACK_DAYS}-day holdback).",
                f"  {burnt[0]:,} lots burnt in part or wholly ({burnt[2]:,} points), "
                f"{refunded[0]:,} refunded ({refunded[2]:,} points), {expired[0]:,} expired "
                f"({expired[2]:,} points; lots past their last day by up to {UNSWEPT_DAYS} days "
                f"are left for the sweep); {sum(c[1] for c in v.consumed.values()):,} "
                f"consumption records. {v.points:,} points issued, {v.remaining:,} outstanding.",
                f"  Journals: {journals}; {v.entries:,} entries without digests "
                f"(`coalition_lot` {v.sizes['coalition_lot']}, `coalition_lotconsumption` "
                f"{v.sizes['coalition_lotconsumption']}, `coalition_journal` "
                f"{v.sizes['coalition_journal']} with their indexes). Built in bulk SQL; "
                f"checked with `ledger_verify`'s {', '.join(f'`{c}`' for c in CHECKED)}.",
                f"- **Selector**: `liability(coalition)` on Django's connection (`DEBUG=False`, "
                f"server-side binding as configured), after VACUUM ANALYZE; the warm-up call "
                f"took {t.selector_warm_up:.2f} s. Each statement is timed by Django's execute "
                "wrapper (the statement and its result, fetched) and named after the selector "
                "function that ran it. Checked: net = the points the lots hold; by tenant, by "
                "age and by last day add up to it; every cohort's issued = redeemed + refunded "
                "+ expired + outstanding.",
                "- **Page and CSV**: Django's test `Client` in this process, logged in as a "
                "superuser (`force_login`), the whole middleware stack and template; warm-up "
                f"requests took {t.page.warm_up:.2f} s (page) and {t.csv.warm_up:.2f} s (CSV). "
                "Each calls `liability()` once; the rest is the session, the user, the "
                "admin's context and the rendering.",
                f"- **Load**: {self.load_line()}; PostgreSQL and this script share the CPUs "
                "with whatever else runs on the machine, so a median well above the best is "
                "the machine, not the page.",
                *report.machine_lines(pg["version"], settings),
                END_MARK,
            ]
        )

    def write_docs(self, path: Path) -> None:
        introduction = (
            "## Liability page (`bench/liability.py`)\n\n"
            "The staff liability page (`coalition.selectors.liability.liability`, the admin page\n"
            "and its CSV) on a mall of 1,000,000 lots over 200,000 members, with two years of\n"
            "burns, refunds and expiries behind them. No target; for reference, issue 7 asks\n"
            "the dashboard to render in under a second on a million entries."
        )
        report.section_write(path, BEGIN_MARK, END_MARK, self.markdown(), introduction)


# --- the run ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, server: Server, started: float, made: list[str]) -> int:
    build_seconds = None
    if args.reuse_db:
        use_database(server, args, args.database)
    else:
        made.append(args.database)
        database_new(server, args, args.database)
        began = time.monotonic()
        build(args)
        build_seconds = time.monotonic() - began
    from coalition.models import Coalition

    coalition = Coalition.objects.filter(slug=SLUG).first()
    if coalition is None:
        raise BenchError(f"no coalition {SLUG!r} in {args.database}")
    timings = Timings()
    timings.checks = check(coalition.pk)
    volume = volume_read(coalition.pk)
    for line in volume.lines():
        say(line)
    postgres = postgres_describe()
    before = os.getloadavg()[0]
    figures = selector_measure(coalition.pk, args.runs, timings)
    figures_check(figures, volume)
    pages_measure(coalition.pk, args.runs, timings)
    timings.load = (before, os.getloadavg()[0])
    result = Report(args, volume, timings, postgres, build_seconds, 0.0)
    label, _ = result.slowest()
    timings.plan = explain(timings.sql_of[label])
    result.elapsed = time.monotonic() - started
    print()
    print(result.table())
    if not args.no_docs:
        result.write_docs(DOCS)
        say(f"Wrote the liability section of {DOCS.relative_to(ROOT)}")
    if args.json:
        figures_write(args.json, "liability", result.command(), result.figures())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--lots", type=int, default=1_000_000, help="Lots, one earn journal each (1000000).")
    add("--members", type=int, default=200_000, help="Members the lots are spread over (200000).")
    add("--tenants", type=int, default=40, help="Tenants funding the lots (40).")
    add("--months", type=int, default=24, help="Months the earns are spread over (24).")
    add("--runs", type=int, default=3, help="Timed calls and requests, after a warm-up (3).")
    add(
        "--server",
        default=report.default_server(),
        help=report.SERVER_HELP + " A database in the URL is the one to use, as --database.",
    )
    add(
        "--database",
        help="Database to create (dropped first if it exists; coalition_bench_<pid>, so that "
        "two runs on one server never drop each other's).",
    )
    add(
        "--settings",
        default="coalition.settings.base",
        help="Django settings module for the app (%(default)s).",
    )
    add("--keep-db", action="store_true", help="Keep the database afterwards.")
    add(
        "--reuse-db",
        action="store_true",
        help="Measure the database a --keep-db run left (--database), without building; kept.",
    )
    add("--no-docs", action="store_true", help="Leave docs/benchmarks.md as it is.")
    add("--json", metavar="PATH", help=JSON_HELP)
    args = parser.parse_args(argv)

    if min(args.lots, args.members, args.tenants, args.months, args.runs) <= 0:
        parser.error("--lots, --members, --tenants, --months and --runs must be positive")
    parts = urlsplit(args.server)
    in_url = parts.path.strip("/")
    if in_url and args.database and in_url != args.database:
        parser.error("--server names a database and --database another")
    named = args.database or in_url
    args.database = named or f"coalition_bench_{os.getpid()}"
    # The command as the docs show it: the database when one was named, else the server.
    args.server_shown = urlunsplit(
        (parts.scheme, parts.netloc, f"/{args.database}" if named else "", "", "")
    )
    if not args.database.startswith("coalition_bench"):
        parser.error("the database must start with coalition_bench (it is dropped and recreated)")
    if args.reuse_db:
        args.keep_db = True

    server = Server(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
    started = time.monotonic()
    made: list[str] = []
    try:
        return run_reported("liability", lambda: bench(args, server, started, made))
    finally:
        report.databases_release(server, made, "liability", keep=args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
