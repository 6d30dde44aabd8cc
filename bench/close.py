"""Month-end close at volume: `period_close` over 1,000,000 entries, against one plain GROUP BY.

    .venv/bin/python bench/close.py [--entries 1000000] [--tenants 100] [--runs 3] [--close-runs 2]
        [--history N] [--partitioned] [--json PATH]

What one run does, start to end (about 4 minutes with the defaults on 2 cores):

1. creates a fresh database `coalition_bench_<pid>` on the server (`--database` to name it) and
   migrates it;
2. creates the coalition and `--tenants` tenants, with a store and a till each, through the
   services (`coalition_create`, `tenant_create`, `till_create`), then writes the month in bulk
   SQL (`INSERT ... SELECT` over `generate_series`; posting through the services would take
   hours): `--entries / 10` members with their two accounts, each making five purchases in the
   month — three earns, then two burns that take their points from the member's lots oldest
   first — so `--entries / 2` journals of two entries each (the member's leg and the tenant's;
   every tenant at the default rates), the lots the earns credit, the lot consumptions of the
   burns, the cached balances and each member entry's balance before and after. Each entry's
   digest is the database's own `ledger_entry_digest`. A superuser loads without per-row
   foreign-key checks and triggers (`session_replication_role = replica`: every id comes from a
   join to the row it names); anyone else loads with them, more slowly. Then VACUUM ANALYZE;
3. runs `ledger_verify` over the built ledger, timing each of its checks as it goes, and stops
   if it finds anything;
4. times the floor: one plain GROUP BY over the month's entries (each entry read once, joined to
   its journal and account, as the close reads them), best of `--runs` after a warm-up run;
5. times the close's parts, each in a transaction rolled back afterwards, best of `--runs`: the
   one pass over the month's entries (`period_movements`), the statements written from it
   (`_statements_write`) and the reconciliation's figures (`reconciliation_run`); then
   `period_close` itself `--close-runs` times, every run but the last rolled back, the last
   committed; then the reconciliation's second step, the ledger check (`reconciliation_verify`,
   a job of its own after the close) — and checks that the committed close balanced and that
   its statements hold every journal and point of the month;
6. prints the figures and close ÷ floor against the target (3x), replaces the close section of
   docs/benchmarks.md (`--no-docs` to leave it), and drops the database (`--keep-db`).

With `--history N`, N months as large as the month are built before it (new members each
month, the same tenants) and closed, so the month's close opens from last month's figures and
the ledger check reads every month. With `--partitioned` (history 3 unless given), a copy of the
database is taken before anything is measured; after the steps above the copy's
`coalition_entry` is rebuilt partitioned by month on its journal's posting time (the DDL in
`PARTITIONED_ENTRY_DDL`, the recipe in docs/operations.md), and on it are timed `ledger_verify`,
the floor (as it is, and naming the entry's posting time so that one partition is read), and
`period_close` as it is (the last run committed) and with its one pass naming the entry's
posting time too (an execute wrapper adds the predicate; rolled back).

The close runs in this process, on Django's connection (`DEBUG=False`), as the beat job runs it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import report
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
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
BEGIN_MARK = "<!-- close:begin (written by bench/close.py; edits inside are replaced) -->"
END_MARK = "<!-- close:end -->"
TARGET_RATIO = 3.0  # the close within 3x of one plain GROUP BY over the same entries
SLUG = "close-bench"
SLOTS = 5  # journals per member in the month: earn, earn, earn, burn, burn
SCATTER = 7919  # a prime: journal k goes to member (k mod M) * SCATTER mod M, a permutation
MAX_EARN_POINTS = 60  # earns of 1-60 points: purchases of 100.00 to 6,099.99 at 1 per 100

# One plain GROUP BY over the month's entries: every entry of the month read once, joined to its
# journal (the month, the kind) and its account (the owner), grouped by tenant and journal kind.
FLOOR_SQL = """
    SELECT a.tenant_id, j.kind, count(*), sum(e.points), sum(e.value)
    FROM coalition_entry e
    JOIN coalition_account a ON a.id = e.account_id
    JOIN coalition_journal j ON j.id = e.journal_id
    WHERE j.coalition_id = %(c)s AND j.posted_at >= %(start)s AND j.posted_at < %(end)s
    GROUP BY 1, 2
"""


# --- the server ---------------------------------------------------------------------------------


SETTINGS = (
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "max_parallel_workers_per_gather",
    "jit",
    "random_page_cost",
    "synchronous_commit",
)


def postgres_describe() -> dict[str, str]:
    """The server's version and the settings that shape a large aggregate (Django's connection)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        found = {"version": str(cursor.fetchone()[0]).split(" on ")[0]}
        for name in SETTINGS:
            cursor.execute("SELECT current_setting(%s)", [name])
            found[name] = str(cursor.fetchone()[0])
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('coalition_entry'))")
        found["entry_size"] = str(cursor.fetchone()[0])
    return found


def django_env(server: Server, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=args.settings,
        DATABASE_URL=server.database_url(args.database),
        DEBUG="False",  # Django records no queries
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def migrate(server: Server, args: argparse.Namespace) -> None:
    python = str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable)
    done = subprocess.run(
        [python, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        env=django_env(server, args),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise BenchError(f"manage.py migrate failed ({done.returncode}):\n{tail}")


def django_setup(server: Server, args: argparse.Namespace) -> None:
    os.environ.update(django_env(server, args))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- building the month -------------------------------------------------------------------------


@dataclass
class Volume:
    coalition_id: int
    month: date
    starts_at: datetime
    ends_at: datetime
    tenants: int
    members: int
    journals: int
    entries: int
    earns: int
    burns: int
    lots: int
    consumptions: int
    earned_points: int
    burned_points: int
    seconds: float


# Per shopper (position p, 0..M-1): three earns of 1-60 points, a burn of up to the first earn's
# points, and a burn of up to what the first two earns' lots still hold. Journal k = slot * M + p
# belongs to shopper p, so the earns come first in the month and the burns after them, and each
# shopper's journals are scattered over the month's rows (as in real trade).
SHOPPERS_SQL = """
    CREATE TEMP TABLE bench_shopper AS
    WITH base AS (
        SELECT p, mod(p * %(scatter)s, %(M)s) AS mi,
            1 + mod(abs(hashint8(p)::bigint), %(most)s) AS e0,
            1 + mod(abs(hashint8(p + %(M)s)::bigint), %(most)s) AS e1,
            1 + mod(abs(hashint8(p + 2 * %(M)s)::bigint), %(most)s) AS e2,
            abs(hashint8(p + 3 * %(M)s)::bigint) AS h3,
            abs(hashint8(p + 4 * %(M)s)::bigint) AS h4
        FROM generate_series(0::bigint, %(M)s - 1) p
    ), first_burn AS (
        SELECT *, 1 + mod(h3, e0) AS b3 FROM base
    )
    SELECT p, mi, e0, e1, e2, b3, 1 + mod(h4, e0 - b3 + e1) AS b4 FROM first_burn
"""

PLAN_SQL = """
    CREATE TEMP TABLE bench_plan AS
    SELECT s.slot * %(M)s + sh.p AS k, s.slot, sh.p, sh.mi, s.slot < 3 AS earn, s.points,
        CASE WHEN s.slot < 3 THEN s.points ELSE -s.points END AS delta,
        mod(abs(hashint8(s.slot * %(M)s + sh.p + 5 * %(M)s)::bigint), %(T)s) AS ti,
        %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz)
            * ((s.slot * %(M)s + sh.p + 0.5)::float8 / %(J)s) AS at
    FROM bench_shopper sh
    CROSS JOIN LATERAL (VALUES (0, sh.e0), (1, sh.e1), (2, sh.e2), (3, sh.b3), (4, sh.b4))
        AS s(slot, points);
    CREATE UNIQUE INDEX ON bench_plan (k);
    ANALYZE bench_plan;
"""

# Which earn's lot each burn takes from, oldest first: the first burn from the first earn; the
# second from what the first earn's lot still holds, then from the second earn's.
TAKES_SQL = """
    CREATE TEMP TABLE bench_take AS
    SELECT p AS earn_k, 3 * %(M)s + p AS burn_k, b3 AS points FROM bench_shopper
    UNION ALL
    SELECT p, 4 * %(M)s + p, least(e0 - b3, b4) FROM bench_shopper WHERE least(e0 - b3, b4) > 0
    UNION ALL
    SELECT %(M)s + p, 4 * %(M)s + p, b4 - least(e0 - b3, b4) FROM bench_shopper
    WHERE b4 - least(e0 - b3, b4) > 0;
    ANALYZE bench_take;
"""

MEMBERS_SQL = """
    CREATE TEMP TABLE bench_member (
        i bigint PRIMARY KEY, id uuid NOT NULL, points_account bigint, pending_account bigint
    );
    INSERT INTO bench_member (i, id) SELECT i, gen_random_uuid()
    FROM generate_series(0::bigint, %(M)s - 1) i;
    INSERT INTO members_member (id, coalition_id, name, status, adult_declared, guardian_name,
        enrolled_at, enrolled_via, last_activity_at)
    SELECT id, %(c)s, 'Close bench shopper ' || i, 'active', true, '', %(enrolled)s, 'staff',
        %(end)s::timestamptz - interval '1 hour'
    FROM bench_member ORDER BY i;
    INSERT INTO coalition_account (coalition_id, kind, member_id, tenant_id, balance)
    SELECT %(c)s, k.kind, m.id, NULL, 0
    FROM bench_member m CROSS JOIN (VALUES (1, 'member_points'), (2, 'member_pending')) k(n, kind)
    ORDER BY m.i, k.n;
    UPDATE bench_member m SET points_account = a.id FROM coalition_account a
    WHERE a.member_id = m.id AND a.kind = 'member_points';
    UPDATE bench_member m SET pending_account = a.id FROM coalition_account a
    WHERE a.member_id = m.id AND a.kind = 'member_pending';
    ANALYZE bench_member;
"""

JOURNALS_SQL = """
    INSERT INTO coalition_journal (id, public_id, coalition_id, kind, member_id, tenant_id,
        store_id, till_id, receipt, points, amount, bill_amount, value, point_value, earn_block,
        points_per_block, price_per_point, reimbursement_per_point, reason, occurred_at,
        posted_at)
    SELECT %(jbase)s + p.k + 1, gen_random_uuid(), %(c)s,
        CASE WHEN p.earn THEN 'earn' ELSE 'burn' END, m.id, t.tenant_id, t.store_id, t.till_id,
        'close-' || (%(jbase)s + p.k + 1), p.points,
        CASE WHEN p.earn
            THEN p.points * %(block)s
                + mod(abs(hashint8(p.k + 6 * %(M)s)::bigint), 100 * %(block)s::bigint) / 100.0
        END,
        CASE WHEN NOT p.earn
            THEN p.points * %(pv)s + mod(abs(hashint8(p.k + 7 * %(M)s)::bigint), 300000) / 100.0
        END,
        round(p.points * %(pv)s, 2), %(pv)s,
        CASE WHEN p.earn THEN %(block)s END, CASE WHEN p.earn THEN %(per_block)s END,
        CASE WHEN p.earn THEN %(price)s END, %(reimbursement)s, '', p.at, p.at
    FROM bench_plan p
    JOIN bench_member m ON m.i = p.mi
    JOIN bench_tenant t ON t.t = p.ti
    ORDER BY p.k
"""

# Member legs carry the balance before and after (a running sum per member, in entry order).
# The digest is the database's own `ledger_entry_digest`, as its BEFORE INSERT trigger computes
# it (the trigger, when it runs, writes the same value again).
ENTRIES_SQL = """
    INSERT INTO coalition_entry (id, journal_id, account_id, points, value, balance_before,
        balance_after, digest)
    SELECT id, journal_id, account_id, points, value, before, after,
        ledger_entry_digest(id, journal_id, account_id, points, value, before, after)
    FROM (
        SELECT id, journal_id, account_id, points, value::numeric(18, 4) AS value,
            (after - points)::bigint AS before, after::bigint AS after
        FROM (
        SELECT %(ebase)s + 2 * p.k + 1 AS id, %(jbase)s + p.k + 1 AS journal_id,
            m.points_account AS account_id, p.delta AS points, p.delta * %(pv)s AS value,
            sum(p.delta) OVER (PARTITION BY p.mi ORDER BY p.k) AS after
        FROM bench_plan p JOIN bench_member m ON m.i = p.mi
        UNION ALL
        SELECT %(ebase)s + 2 * p.k + 2, %(jbase)s + p.k + 1,
            CASE WHEN p.earn THEN t.issued_account ELSE t.redeemed_account END, -p.delta,
            -p.delta * CASE WHEN p.earn THEN %(price)s ELSE %(reimbursement)s END, NULL
        FROM bench_plan p JOIN bench_tenant t ON t.t = p.ti
        ) legs
    ) typed
    ORDER BY id
"""

BALANCES_SQL = """
    UPDATE coalition_account a SET balance = s.total
    FROM (
        SELECT m.points_account, sum(p.delta) AS total
        FROM bench_plan p JOIN bench_member m ON m.i = p.mi GROUP BY 1
    ) s
    WHERE a.id = s.points_account
"""

LOTS_SQL = """
    INSERT INTO coalition_lot (coalition_id, member_id, journal_id, funding_tenant_id, points,
        remaining, earned_at, expires_on, pending_until)
    SELECT %(c)s, m.id, %(jbase)s + e.k + 1, t.tenant_id, e.points,
        e.points - coalesce(x.taken, 0),
        e.at,
        ((e.at AT TIME ZONE %(tz)s)::date + make_interval(months => %(expiry)s))::date - 1,
        NULL
    FROM bench_plan e
    JOIN bench_member m ON m.i = e.mi
    JOIN bench_tenant t ON t.t = e.ti
    LEFT JOIN (SELECT earn_k, sum(points) AS taken FROM bench_take GROUP BY 1) x ON x.earn_k = e.k
    WHERE e.earn
    ORDER BY e.k
"""

CONSUMPTIONS_SQL = """
    INSERT INTO coalition_lotconsumption (lot_id, journal_id, points)
    SELECT l.id, %(jbase)s + x.burn_k + 1, x.points
    FROM bench_take x JOIN coalition_lot l ON l.journal_id = %(jbase)s + x.earn_k + 1
    ORDER BY x.burn_k, l.id
"""


@dataclass(frozen=True)
class Mall:
    coalition: Any
    tenant_rows: list[tuple[int, int, int, int]]  # (index, tenant, store, till)


def mall_create(tenants: int) -> Mall:
    """The coalition and its tenants, with a store and a till each, through the services."""
    from coalition.services import coalition_create

    coalition = coalition_create(slug=SLUG, name="Close bench mall")
    return Mall(coalition, tenants_create(coalition, tenants))


def build(args: argparse.Namespace, month: date, mall: Mall, *, vacuum: bool = True) -> Volume:
    """`--entries` entries in `month` for new members of `mall` (see the module's doc)."""

    from settlement.services import month_bounds

    started = time.monotonic()
    journals = args.entries // 2
    members = journals // SLOTS
    coalition, tenant_rows = mall.coalition, mall.tenant_rows
    starts_at, ends_at = month_bounds(coalition, month)
    defaults = (coalition.default_price_per_point, coalition.default_reimbursement_per_point)
    if coalition.points_per_block != 1 or any(rate != coalition.point_value for rate in defaults):
        raise BenchError("the build assumes 1 point per block and every rate at nominal")
    params: dict[str, Any] = {
        "c": coalition.pk,
        "M": members,
        "J": journals,
        "T": args.tenants,
        "scatter": SCATTER,
        "most": MAX_EARN_POINTS,
        "start": starts_at,
        "end": ends_at,
        "enrolled": starts_at.replace(year=starts_at.year - 1),
        "tz": coalition.time_zone,
        "pv": coalition.point_value,
        "price": coalition.default_price_per_point,
        "reimbursement": coalition.default_reimbursement_per_point,
        "block": coalition.earn_block,
        "per_block": coalition.points_per_block,
        "expiry": coalition.expiry_months,
        "jbase": scalar("SELECT coalesce(max(id), 0) FROM coalition_journal"),
        "ebase": scalar("SELECT coalesce(max(id), 0) FROM coalition_entry"),
    }

    def step(label: str, sql: str) -> None:
        began = time.monotonic()
        execute(sql, params)
        say(f"  {label} ({time.monotonic() - began:.1f} s)")

    say(
        f"Building {month:%B %Y}: {members:,} members, {journals:,} journals, "
        f"{args.tenants} tenants"
    )
    tenant_table_create(tenant_rows)
    step("the plan: shoppers, journals, which lots each burn takes from", SHOPPERS_SQL)
    execute(PLAN_SQL, params)
    execute(TAKES_SQL, params)
    with bulk_load():
        step("members and their accounts", MEMBERS_SQL)
        step("journals", JOURNALS_SQL)
        step("entries", ENTRIES_SQL)
        step("cached balances", BALANCES_SQL)
        step("lots", LOTS_SQL)
        step("lot consumptions", CONSUMPTIONS_SQL)
    for table in ("coalition_journal", "coalition_entry"):
        execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    if vacuum:
        vacuum_analyze()

    def count(sql: str) -> int:
        return int(scalar(sql, {"c": coalition.pk, "start": starts_at, "end": ends_at}) or 0)

    in_month = "j.posted_at >= %(start)s AND j.posted_at < %(end)s"

    volume = Volume(
        coalition_id=coalition.pk,
        month=month,
        starts_at=starts_at,
        ends_at=ends_at,
        tenants=args.tenants,
        members=count("SELECT count(*) FROM bench_member"),
        journals=count(
            f"SELECT count(*) FROM coalition_journal j WHERE j.coalition_id = %(c)s AND {in_month}"
        ),
        entries=count(
            "SELECT count(*) FROM coalition_entry e JOIN coalition_journal j "
            f"ON j.id = e.journal_id WHERE j.coalition_id = %(c)s AND {in_month}"
        ),
        earns=count("SELECT count(*) FROM bench_plan WHERE earn"),
        burns=count("SELECT count(*) FROM bench_plan WHERE NOT earn"),
        lots=count(
            "SELECT count(*) FROM coalition_lot l JOIN coalition_journal j ON j.id = l.journal_id "
            f"WHERE l.coalition_id = %(c)s AND {in_month}"
        ),
        consumptions=count(
            "SELECT count(*) FROM coalition_lotconsumption x JOIN coalition_journal j "
            f"ON j.id = x.journal_id WHERE {in_month}"
        ),
        earned_points=count("SELECT sum(points) FROM bench_plan WHERE earn"),
        burned_points=count("SELECT sum(points) FROM bench_plan WHERE NOT earn"),
        seconds=time.monotonic() - started,
    )
    execute("DROP TABLE bench_take, bench_plan, bench_shopper, bench_member, bench_tenant")
    if volume.entries != args.entries:
        raise BenchError(f"built {volume.entries:,} entries, not {args.entries:,}")
    return volume


def vacuum_analyze() -> None:
    began = time.monotonic()
    execute("VACUUM ANALYZE")
    say(f"  VACUUM ANALYZE ({time.monotonic() - began:.1f} s)")


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Timings:
    verify_first: float = 0.0
    checks: list[tuple[str, float]] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    statements: list[float] = field(default_factory=list)
    reconciliation: list[float] = field(default_factory=list)
    scan: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)  # the last one committed
    ledger_check: float = 0.0


def verify(volume: Volume, timings: Timings) -> None:
    """`ledger_verify` must find nothing; each of its checks timed as it runs (Django's
    execute wrapper: the statement, results fetched, since the cursor is client-side)."""
    from django.db import connection

    from coalition.models import Coalition
    from coalition.selectors import CHECKS, ledger_verify

    names = {sql: name for name, sql in CHECKS.items()}

    def clock(execute: Callable[..., Any], sql: str, *rest: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *rest)
        finally:
            if sql in names:
                timings.checks.append((names[sql], time.perf_counter() - began))

    coalition = Coalition.objects.get(pk=volume.coalition_id)
    with connection.execute_wrapper(clock):
        timings.verify_first, found = timed(partial(ledger_verify, coalition))
    if found:
        shown = "\n".join(f"  {problem}" for problem in found[:20])
        raise BenchError(f"the built ledger does not verify ({len(found):,} problems):\n{shown}")
    if len(timings.checks) != len(CHECKS):
        raise BenchError("ledger_verify did not run its checks as this script expects")
    say(f"ledger_verify: clean ({timings.verify_first:.2f} s)")


def floor(volume: Volume, runs: int, timings: Timings) -> None:
    from django.db import connection

    params: dict[str, Any] = {
        "c": volume.coalition_id,
        "start": volume.starts_at,
        "end": volume.ends_at,
    }
    with connection.cursor() as cursor:
        for run in range(runs + 1):  # the first warms up and is not counted
            began = time.perf_counter()
            cursor.execute(FLOOR_SQL, params)
            rows = cursor.fetchall()
            if run:
                timings.floor.append(time.perf_counter() - began)
    if sum(int(row[2]) for row in rows) != volume.entries:
        raise BenchError("the floor's GROUP BY did not count every entry of the month")


def close_parts(volume: Volume, runs: int, timings: Timings) -> None:
    """The close's three parts, `runs` times each, under a period row in a transaction rolled
    back: the one pass over the month's entries (`period_movements`), the statements written
    from it, and the reconciliation's figures from it."""
    from django.db import transaction
    from django.utils import timezone

    from coalition.models import Coalition
    from settlement.models import Period
    from settlement.services import reconciliation_run
    from settlement.services.close import _statements_write
    from settlement.services.reconciliation import period_movements

    coalition = Coalition.objects.get(pk=volume.coalition_id)
    for _ in range(runs):
        with transaction.atomic():
            period = Period.objects.create(
                coalition=coalition,
                month=volume.month,
                starts_at=volume.starts_at,
                ends_at=volume.ends_at,
                closed_at=timezone.now(),
                journals=volume.journals,
            )
            seconds, scanned = timed(partial(period_movements, period))
            timings.scan.append(seconds)
            seconds, _ = timed(partial(_statements_write, coalition, period, scanned[1]))
            timings.statements.append(seconds)
            seconds, _ = timed(partial(reconciliation_run, period, scanned))
            timings.reconciliation.append(seconds)
            transaction.set_rollback(True)
    say(
        f"one pass: best {min(timings.scan):.2f} s; statements: best "
        f"{min(timings.statements):.2f} s; reconciliation: best {min(timings.reconciliation):.2f} s"
    )


def close_whole(volume: Volume, runs: int, timings: Timings) -> None:
    """`period_close` `runs` times: all but the last rolled back, the last committed."""
    from django.db import transaction
    from django.db.models import Sum

    from coalition.models import Coalition
    from settlement.models import Period, Reconciliation, Statement
    from settlement.services import period_close, reconciliation_verify

    for run in range(runs):
        coalition = Coalition.objects.get(pk=volume.coalition_id)  # closed_through as it is
        last = run == runs - 1
        with transaction.atomic():
            seconds, _ = timed(partial(period_close, coalition, volume.month))
            timings.close.append(seconds)
            if not last:
                transaction.set_rollback(True)
        say(f"period_close: {seconds:.2f} s" + (" (committed)" if last else " (rolled back)"))
    period = Period.objects.get(coalition_id=volume.coalition_id, month=volume.month)
    reconciliation = Reconciliation.objects.get(period=period)
    # The second step, after the close has committed: a job of its own.
    timings.ledger_check, _ = timed(partial(reconciliation_verify, reconciliation.pk))
    say(f"ledger check (reconciliation_verify): {timings.ledger_check:.2f} s")
    reconciliation.refresh_from_db()
    if not reconciliation.balanced:
        shown = "\n".join(f"  {problem}" for problem in reconciliation.discrepancies[:20])
        raise BenchError(f"the committed close did not balance:\n{shown}")
    statements = Statement.objects.filter(period=period)
    totals = statements.aggregate(issued=Sum("issued_points"), honoured=Sum("honoured_points"))
    if (
        statements.count() != volume.tenants
        or period.journals != volume.journals
        or totals["issued"] != volume.earned_points
        or totals["honoured"] != volume.burned_points
    ):
        raise BenchError(
            f"the close's statements miss part of the month: {statements.count()} statements, "
            f"{period.journals:,} journals, {totals['issued']:,} points issued and "
            f"{totals['honoured']:,} honoured; expected {volume.tenants}, {volume.journals:,}, "
            f"{volume.earned_points:,} and {volume.burned_points:,}"
        )


# --- the partitioned copy ----------------------------------------------------------------------

# coalition_entry rebuilt as a table partitioned by month on its posting time. An entry has no
# posting time of its own, so the copy carries its journal's (`posted_at`): the app would have
# to write it with each entry. The journal table stays as it is: eight tables' foreign keys name
# `coalition_journal(id)` and the posting path's `ON CONFLICT` needs the receipt's unique index,
# and on a partitioned table every unique index must include the partition key.
PARTITIONED_ENTRY_DDL = """
CREATE TABLE coalition_entry_by_month (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    points bigint NOT NULL,
    value numeric(18, 4) NOT NULL,
    balance_before bigint,
    balance_after bigint,
    digest varchar(64) NOT NULL,
    account_id bigint NOT NULL
        REFERENCES coalition_account (id) DEFERRABLE INITIALLY DEFERRED,
    journal_id bigint NOT NULL
        REFERENCES coalition_journal (id) DEFERRABLE INITIALLY DEFERRED,
    posted_at timestamptz NOT NULL,  -- the journal's, written with the entry
    PRIMARY KEY (id, posted_at),     -- a unique key must include the partition key
    CONSTRAINT entry_balance_after_follows CHECK (
        (balance_after IS NULL AND balance_before IS NULL)
        OR (balance_after = balance_before + points
            AND balance_after IS NOT NULL AND balance_before IS NOT NULL))
) PARTITION BY RANGE (posted_at);
CREATE INDEX ON coalition_entry_by_month (account_id, id);
CREATE INDEX ON coalition_entry_by_month (journal_id);
CREATE TRIGGER coalition_entry_append_only BEFORE DELETE OR UPDATE ON coalition_entry_by_month
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER coalition_entry_digest BEFORE INSERT ON coalition_entry_by_month
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_set_digest()
"""

PARTITION_DDL = """
CREATE TABLE coalition_entry_{name} PARTITION OF coalition_entry_by_month
    FOR VALUES FROM ('{start}') TO ('{end}')
"""

# The copy, then the swap; the loader runs as a superuser in replica role (no trigger
# recomputes the digests it copies).
PARTITIONED_ENTRY_LOAD = """
INSERT INTO coalition_entry_by_month (id, points, value, balance_before, balance_after, digest,
    account_id, journal_id, posted_at)
SELECT e.id, e.points, e.value, e.balance_before, e.balance_after, e.digest, e.account_id,
    e.journal_id, j.posted_at
FROM coalition_entry e JOIN coalition_journal j ON j.id = e.journal_id;
SELECT setval(pg_get_serial_sequence('coalition_entry_by_month', 'id'),
    (SELECT max(id) FROM coalition_entry_by_month));
DROP TABLE coalition_entry;
ALTER TABLE coalition_entry_by_month RENAME TO coalition_entry
"""

# The close's one pass names only the journal's posting time; the variant measured here adds
# the entry's, so that PostgreSQL reads the month's partition alone.
MONTH_FILTER = "j.posted_at >= %(since)s AND j.posted_at < %(end)s"
ENTRY_FILTER = " AND e.posted_at >= %(since)s AND e.posted_at < %(end)s"
FLOOR_PRUNED_SQL = FLOOR_SQL.replace(
    "j.posted_at < %(end)s",
    "j.posted_at < %(end)s AND e.posted_at >= %(start)s AND e.posted_at < %(end)s",
)


def month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    months = [first]
    while months[-1] < last:
        months.append(month_after(months[-1]))
    return months


def partition_ddl(coalition: Any, first: date, last: date) -> list[str]:
    """The statements that rebuild coalition_entry partitioned by month, a partition for each
    month from `first` to `last` (the month's bounds in the coalition's zone)."""
    from settlement.services import month_bounds

    statements = [part.strip() for part in PARTITIONED_ENTRY_DDL.split(";")]
    for month in months_between(first, last):
        start, end = month_bounds(coalition, month)
        statements.append(
            PARTITION_DDL.format(
                name=f"{month:%Y_%m}", start=start.isoformat(), end=end.isoformat()
            ).strip()
        )
    return statements


def entry_partition(coalition_id: int, first: date, last: date) -> float:
    """Rebuild coalition_entry, in this database, partitioned by month; returns the seconds."""
    from django.db import connection, transaction

    from coalition.models import Coalition

    coalition = Coalition.objects.get(pk=coalition_id)
    began = time.monotonic()
    with transaction.atomic():
        with connection.cursor() as cursor:
            for statement in partition_ddl(coalition, first, last):
                cursor.execute(statement)
        if scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            execute("SET LOCAL session_replication_role = replica")
        execute(PARTITIONED_ENTRY_LOAD)
    seconds = time.monotonic() - began
    vacuum_analyze()
    return seconds


@dataclass
class Partitioned:
    """The same month, closed on a copy whose entries are partitioned by month."""

    months: int  # months in the ledger, the closed month included
    entries: int  # in the whole ledger
    partition_seconds: float = 0.0
    entry_size: str = ""
    month_size: str = ""
    verify: float = 0.0
    checks: list[tuple[str, float]] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    floor_pruned: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)  # the app's close, as it is
    close_pruned: list[float] = field(default_factory=list)  # with the entry's posting time


def entry_pruning(execute: Callable[..., Any], sql: str, *rest: Any) -> Any:
    """Django execute wrapper: the close's one pass with the entry's posting time too."""
    if MONTH_FILTER in sql and "FROM coalition_entry e" in sql:
        sql = sql.replace(MONTH_FILTER, MONTH_FILTER + ENTRY_FILTER)
        entry_pruning.used += 1  # type: ignore[attr-defined]
    return execute(sql, *rest)


entry_pruning.used = 0  # type: ignore[attr-defined]


def partitioned_measure(volume: Volume, args: argparse.Namespace, result: Partitioned) -> None:
    from django.db import connection, transaction

    from coalition.models import Coalition
    from settlement.services import period_close

    first = scalar(
        "SELECT min(posted_at) FROM coalition_journal WHERE coalition_id = %s",
        [volume.coalition_id],
    )
    from zoneinfo import ZoneInfo

    first_month = first.astimezone(ZoneInfo("Asia/Kolkata")).date().replace(day=1)
    next_month = month_after(volume.month)
    say("Partitioning coalition_entry by month on the copy")
    result.partition_seconds = entry_partition(volume.coalition_id, first_month, next_month)
    result.entry_size = str(
        scalar(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits "
            "WHERE inhparent = 'coalition_entry'::regclass"
        )
    )
    result.month_size = str(
        scalar(
            f"SELECT pg_size_pretty(pg_total_relation_size('coalition_entry_{volume.month:%Y_%m}'))"
        )
    )
    say(f"  partitioned in {result.partition_seconds:.0f} s ({result.entry_size})")
    timings = Timings()
    verify(volume, timings)
    result.verify, result.checks = timings.verify_first, timings.checks
    params: dict[str, Any] = {
        "c": volume.coalition_id,
        "start": volume.starts_at,
        "end": volume.ends_at,
    }
    for sql, into in ((FLOOR_SQL, result.floor), (FLOOR_PRUNED_SQL, result.floor_pruned)):
        with connection.cursor() as cursor:
            for run in range(args.runs + 1):
                began = time.perf_counter()
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                if run:
                    into.append(time.perf_counter() - began)
        if sum(int(row[2]) for row in rows) != volume.entries:
            raise BenchError("a floor on the partitioned copy did not count the month's entries")
    say(
        f"partitioned: floor {min(result.floor):.2f} s, with the entry's posting time "
        f"{min(result.floor_pruned):.2f} s"
    )
    for _ in range(args.close_runs):
        coalition = Coalition.objects.get(pk=volume.coalition_id)
        with transaction.atomic(), connection.execute_wrapper(entry_pruning):
            seconds, _ = timed(partial(period_close, coalition, volume.month))
            transaction.set_rollback(True)
        result.close_pruned.append(seconds)
    if not entry_pruning.used:  # type: ignore[attr-defined]
        raise BenchError("the close's one pass no longer reads as this script expects")
    say(
        f"partitioned: period_close reading the month's partition: {min(result.close_pruned):.2f} s"
    )
    timings = Timings()
    close_whole(volume, args.close_runs, timings)
    result.close = timings.close
    say(f"partitioned: period_close as it is: {min(result.close):.2f} s")


def history_build(args: argparse.Namespace, mall: Mall) -> int:
    """`--history` months before the month, each as large, built and closed; returns their
    entries."""
    from settlement.services import period_close

    entries = 0
    months = months_between(date(args.month.year - 2, args.month.month, 1), args.month)
    for month in months[-args.history - 1 : -1]:
        volume = build(args, month, mall, vacuum=False)
        say(f"History: {volume.entries:,} entries in {month:%B %Y} ({volume.seconds:.0f} s)")
        entries += volume.entries
    if args.history:
        began = time.monotonic()
        period_close(mall.coalition, months[-2])
        say(f"  closed the history ({time.monotonic() - began:.0f} s)")
    return entries


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Report:
    args: argparse.Namespace
    volume: Volume
    timings: Timings
    postgres: dict[str, str]
    elapsed: float
    history: int = 0  # entries in the months before
    partitioned: Partitioned | None = None

    @property
    def floor(self) -> float:
        return min(self.timings.floor)

    @property
    def close(self) -> float:
        return min(self.timings.close)

    @property
    def ratio(self) -> float:
        return self.close / self.floor

    def met(self) -> bool:
        return self.ratio <= TARGET_RATIO

    def rows(self) -> list[list[str]]:
        t, runs, close_runs = self.timings, self.args.runs, self.args.close_runs

        def row(name: str, seconds: float, how: str) -> list[str]:
            return [name, f"{seconds:.2f}", f"{seconds / self.floor:.1f}", how]

        return [
            row("floor: one plain GROUP BY", self.floor, f"best of {runs} after a warm-up"),
            row("`period_close`", self.close, f"best of {close_runs} (the last committed)"),
            row("- one pass over the month", min(t.scan), f"`period_movements`, best of {runs}"),
            row("- statements", min(t.statements), f"`_statements_write`, best of {runs}"),
            row(
                "- reconciliation figures",
                min(t.reconciliation),
                f"`reconciliation_run`, best of {runs}",
            ),
            row(
                "then: the ledger check",
                t.ledger_check,
                "`reconciliation_verify` (`ledger_verify`), a job after the close, once",
            ),
        ]

    def verdict(self) -> str:
        return f"close ÷ floor = {self.ratio:.1f}x; target <= {TARGET_RATIO:.0f}x: " + (
            "met" if self.met() else "NOT met"
        )

    def check_lines(self) -> list[str]:
        slowest = sorted(self.timings.checks, key=lambda item: -item[1])
        return [f"{name} {seconds:.2f} s" for name, seconds in slowest]

    def table(self) -> str:
        v = self.volume
        header = ["", "seconds", "÷ floor", ""]
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(
            [
                f"{v.entries:,} entries ({v.journals:,} journals: {v.earns:,} earns, "
                f"{v.burns:,} burns) in {v.month:%B %Y}, {v.tenants} tenants, "
                f"{v.members:,} members, {v.lots:,} lots, {v.consumptions:,} consumptions",
                "",
                *lines,
                "",
                self.verdict(),
                "ledger_verify's checks, slowest first: " + ", ".join(self.check_lines()),
            ]
        )

    def command(self) -> str:
        parts = [".venv/bin/python bench/close.py", f"--entries {self.args.entries}"]
        parts += [f"--tenants {self.args.tenants}", f"--runs {self.args.runs}"]
        parts += [f"--close-runs {self.args.close_runs}"]
        if self.args.month_given:
            parts.append(f"--month {self.volume.month:%Y-%m}")
        if self.args.history:
            parts.append(f"--history {self.args.history}")
        if self.args.partitioned:
            parts.append("--partitioned")
        return " ".join(parts)

    def figures(self) -> list[Figure]:
        figures = [
            Figure(
                "period_close",
                self.close,
                "s",
                self.floor * TARGET_RATIO,
                False,
                f"floor {self.floor:.2f} s (one plain GROUP BY) x {TARGET_RATIO:.0f}",
            ),
            Figure("floor: one plain GROUP BY", self.floor, "s", None, False),
            Figure(
                "ledger_verify",
                self.timings.verify_first,
                "s",
                None,
                False,
                f"whole ledger, {self.volume.entries + self.history:,} entries",
            ),
        ]
        part = self.partitioned
        if part is not None:
            floor, pruned = min(part.floor), min(part.floor_pruned)
            figures += [
                Figure(
                    "partitioned: period_close as it is",
                    min(part.close),
                    "s",
                    floor * TARGET_RATIO,
                    False,
                    "floor on the partitioned copy x 3",
                ),
                Figure(
                    "partitioned: period_close reading the month's partition",
                    min(part.close_pruned),
                    "s",
                    pruned * TARGET_RATIO,
                    False,
                    "the entry's posting time in the one pass; pruned floor x 3",
                ),
                Figure(
                    "partitioned: ledger_verify",
                    part.verify,
                    "s",
                    self.timings.verify_first,
                    False,
                    "floor = ledger_verify unpartitioned",
                ),
            ]
        return figures

    def json_write(self, path: Path) -> None:
        figures_write(path, "close", self.command(), self.figures())

    def partitioned_markdown(self) -> list[str]:
        part = self.partitioned
        if part is None:
            return []
        v = self.volume

        def row(name: str, plain: float | None, parted: float, how: str) -> str:
            shown = "—" if plain is None else f"{plain:.2f}"
            return f"| {name} | {shown} | {parted:.2f} | {how} |"

        return [
            "",
            f"**Partitioned by month** (`--partitioned`): the same month with "
            f"{self.args.history} month(s) of history before it, each as large "
            f"({part.entries:,} entries in {part.months} months, the months before closed), "
            "closed in this database and on "
            "a copy whose `coalition_entry` is partitioned by month on its journal's posting "
            f"time (rebuilt in {part.partition_seconds:.0f} s; the month's partition "
            f"{part.month_size} of {part.entry_size}; the DDL is in docs/operations.md):",
            "",
            "|  | plain tables, seconds | partitioned, seconds | how |",
            "| --- | --- | --- | --- |",
            row(
                "floor: one plain GROUP BY",
                self.floor,
                min(part.floor),
                f"best of {self.args.runs}; the month's journals by their posting time",
            ),
            row(
                "floor naming the entry's posting time",
                None,
                min(part.floor_pruned),
                "the same, plus `e.posted_at` in the month: one partition read",
            ),
            row(
                "`period_close` as it is",
                self.close,
                min(part.close),
                f"best of {self.args.close_runs}, the last committed",
            ),
            row(
                "`period_close`, its one pass naming the entry's posting time",
                None,
                min(part.close_pruned),
                f"best of {self.args.close_runs}, rolled back (the query changed in this run)",
            ),
            row(
                "`ledger_verify`",
                self.timings.verify_first,
                part.verify,
                f"whole ledger, {part.entries:,} entries",
            ),
            "",
            f"The month: {v.entries:,} entries. Partitioning alone does not shorten the close "
            "as it is written: it names the journal's posting time, not the entry's, so every "
            "partition is read; with the entry's posting time named it reads one.",
        ]

    def markdown(self) -> str:
        v, pg = self.volume, self.postgres
        header = ["", "seconds", "÷ floor", "how"]
        table = report.markdown_table(header, self.rows())
        floor_sql = " ".join(FLOOR_SQL.split())
        settings = ", ".join(f"`{name}={pg[name]}`" for name in SETTINGS)
        return "\n".join(
            [
                BEGIN_MARK,
                *report.run_heading(
                    ROOT,
                    self.elapsed,
                    self.command(),
                    table,
                    f" ({v.seconds:.0f} s of it building the month)",
                ),
                f"**{self.verdict()}.**",
                *self.partitioned_markdown(),
                "",
                f"- **Volume**: {v.entries:,} entries in {v.month:%B %Y} (Asia/Kolkata), "
                f"{v.journals:,} journals ({v.earns:,} earns, {v.burns:,} burns) of two entries "
                f"each, {v.tenants} tenants at the default rates,",
                f"  {v.members:,} members (three earns and two burns each), {v.lots:,} lots, "
                f"{v.consumptions:,} lot consumptions; `coalition_entry` is {pg['entry_size']} "
                "with its indexes. "
                + (
                    f"{self.args.history} months as large come before it, closed first "
                    f"({self.history:,} entries):"
                    if self.args.history
                    else "The month is the whole ledger:"
                ),
                "  the close reads the month's entries once (and, for the first month closed, the "
                "ledger before it); the ledger check after it reads every entry ever written, so "
                "it grows with the history, the close does not.",
                "- **Floor**: every entry of the month read once, joined to its journal and its "
                "account as the close joins them, grouped by tenant and journal kind:",
                f"  `{floor_sql}`.",
                "- **Close**: `period_close` as the beat job calls it (freeze, period row, one "
                "pass over the month, statements, reconciliation figures); the runs before the "
                "last are rolled back. The parts",
                "  run under a period row in a transaction rolled back. Everything on Django's "
                "connection (`DEBUG=False`), after VACUUM ANALYZE.",
                "- **`ledger_verify`'s checks**, slowest first: "
                + ", ".join(self.check_lines())
                + ".",
                *report.machine_lines(pg["version"], settings),
                END_MARK,
            ]
        )

    def write_docs(self, path: Path) -> None:
        introduction = (
            "## Month-end close at volume (`bench/close.py`)\n\n"
            "`period_close` over a month of 1,000,000 ledger entries and 100 tenants, against\n"
            "one plain GROUP BY over the same entries (the floor: what reading each entry of\n"
            "the month once costs). Target: the close within 3x of the floor."
        )
        report.section_write(path, BEGIN_MARK, END_MARK, self.markdown(), introduction)


# --- the run ------------------------------------------------------------------------------------


def last_ended_month() -> date:
    """The month before this one in Asia/Kolkata (the coalition's zone)."""
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def bench(args: argparse.Namespace, server: Server, started: float) -> int:
    say(f"Database {args.database}: create, migrate")
    server.recreate(args.database)
    migrate(server, args)
    django_setup(server, args)
    mall = mall_create(args.tenants)
    history = history_build(args, mall)
    volume = build(args, args.month, mall)
    say(f"Built {volume.entries:,} entries in {volume.seconds:.0f} s")
    partitioned = None
    if args.partitioned:
        from django.db import connections

        connections.close_all()
        with server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}_part" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{args.database}_part" TEMPLATE "{args.database}"')
        args.made.append(f"{args.database}_part")
        partitioned = Partitioned(months=args.history + 1, entries=history + volume.entries)
    timings = Timings()
    verify(volume, timings)
    floor(volume, args.runs, timings)
    say(f"floor: best {min(timings.floor):.2f} s of {', '.join(f'{s:.2f}' for s in timings.floor)}")
    close_parts(volume, args.runs, timings)
    close_whole(volume, args.close_runs, timings)
    described = postgres_describe()
    if partitioned is not None:
        from django.db import connections

        connections.close_all()
        connections["default"].settings_dict["NAME"] = f"{args.database}_part"
        partitioned_measure(volume, args, partitioned)
    report = Report(
        args, volume, timings, described, time.monotonic() - started, history, partitioned
    )
    print()
    print(report.table())
    if not args.no_docs:
        report.write_docs(DOCS)
        say(f"Wrote the close section of {DOCS.relative_to(ROOT)}")
    if args.json:
        report.json_write(Path(args.json))
    return 0 if report.met() else 2


def month_arg(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m").date()
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a month is YYYY-MM") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--entries",
        type=int,
        default=1_000_000,
        help="Ledger entries in the month, a multiple of 10 (1000000): entries / 2 journals, "
        "entries / 10 members.",
    )
    add("--tenants", type=int, default=100, help="Tenants (100).")
    add(
        "--runs",
        type=int,
        default=3,
        help="Timed runs of the floor and of the statements (3).",
    )
    add(
        "--close-runs",
        type=int,
        default=2,
        help="Timed runs of the reconciliation and of period_close, the last close committed "
        "(2; each takes about 25 s at 1,000,000 entries here).",
    )
    add(
        "--month",
        type=month_arg,
        help="The month to build and close, YYYY-MM (the last that has ended in Asia/Kolkata).",
    )
    add(
        "--server",
        default=report.default_server(),
        help=report.SERVER_HELP,
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
    add(
        "--history",
        type=int,
        default=0,
        help="Months of history before the month, each of --entries entries, built and closed "
        "first (0; 3 with --partitioned).",
    )
    add(
        "--partitioned",
        action="store_true",
        help="Also close the month on a copy whose ledger entries are partitioned by month.",
    )
    add("--keep-db", action="store_true", help="Keep the database afterwards.")
    add("--no-docs", action="store_true", help="Leave docs/benchmarks.md as it is.")
    add("--json", metavar="PATH", help=JSON_HELP)
    args = parser.parse_args(argv)
    if args.partitioned and not args.history:
        args.history = 3
    if not 0 <= args.history <= 24:
        parser.error("--history is 0 to 24 months")

    if args.entries <= 0 or args.entries % (2 * SLOTS):
        parser.error(f"--entries must be a positive multiple of {2 * SLOTS}")
    if (args.entries // (2 * SLOTS)) % SCATTER == 0:
        parser.error(f"--entries / {2 * SLOTS} must not be a multiple of {SCATTER}")
    if min(args.tenants, args.runs, args.close_runs) <= 0:
        parser.error("--tenants, --runs and --close-runs must be positive")
    args.month_given = args.month is not None
    args.month = (args.month or last_ended_month()).replace(day=1)
    if args.month > last_ended_month():
        parser.error("--month must have ended (the close refuses a month still running)")
    args.database = args.database or f"coalition_bench_{os.getpid()}"
    if not args.database.startswith("coalition_bench"):
        parser.error("--database must start with coalition_bench (it is dropped and recreated)")

    args.made = [args.database]
    server = Server(args.server.rstrip("/"))
    started = time.monotonic()
    try:
        return run_reported("close", lambda: bench(args, server, started))
    finally:
        report.databases_release(server, args.made, "close", keep=args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
