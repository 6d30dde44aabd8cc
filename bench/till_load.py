"""Till API load test: earn and burn under gunicorn on PostgreSQL, against pgbench's floor.

    .venv/bin/python bench/till_load.py [--duration 20] [--clients 16] [--workers N] [--members M]

What one run does, start to end (about 2 minutes with the defaults):

1. creates a fresh database `coalition_bench_<pid>` on the server (`--database` to name it),
   migrates it and loads the demo mall's tenants and tills (`seed_demo` with 20 members);
2. enrols `--members` shoppers through `member_enrol`, gives each 5,000 points with one
   `points_earn` (so burns do not run dry), issues one key per till of every tenant that may
   trade (`till_key_issue`), runs VACUUM ANALYZE (a real database has planner statistics), and
   writes the keys and card numbers for wrk;
3. starts gunicorn (DEBUG off, persistent connections, rate limit off) on a free port;
4. warms up, then runs wrk with `bench/till_load.lua` for earn, then for burn: `--clients`
   connections, each request under a random till's key for a random member's card, with its
   own Idempotency-Key and receipt. Every non-2xx answer is an error (a 409 too);
5. runs pgbench's default TPC-B-like transaction in a database of its own on the same server
   (`pgbench -i -s <tenants>`, then `pgbench -c <clients> -j 2 -T <duration>`), before gunicorn
   starts and again after it stops: the floor of what a durable balance change costs on this
   server, as the mean of the two runs (a shared VM's speed drifts);
6. prints requests/s, p50, p99, errors and the ratio to pgbench's TPS against the targets
   (earn >= 0.10, burn >= 0.08, p99 < 50 ms, no errors), replaces the till section of
   docs/benchmarks.md (`--no-docs` to leave it), and drops both databases (`--keep-db`).

Nothing is left running: gunicorn, wrk and pgbench run in process groups of their own, which
are killed on the way out whatever happened (Ctrl-C and SIGTERM included). synchronous_commit
is left as the server has it (on). CPU seconds per request of gunicorn, PostgreSQL and wrk are
reported too, so it is visible how much of the two cores the load generator took.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import common
import report
from common import JSON_HELP, BenchError, Figure, exit_on_signals, figures_write, run_reported, say

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "till_load.lua"
DOCS = ROOT / "docs" / "benchmarks.md"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
BEGIN_MARK = "<!-- till_load:begin (written by bench/till_load.py; edits inside are replaced) -->"
END_MARK = "<!-- till_load:end -->"
TARGETS = {"earn": 0.10, "burn": 0.08}
P99_TARGET_MS = 50.0
FUND_AMOUNT = "500000.00"  # 5,000 points per member: 500 burns of 10 points
CARD_BASE = "79999"  # bench members' cards: 79999 + 10-digit index + Luhn digit (16 digits)
RESULT_PREFIX = "TILL_LOAD_RESULT "
QUIET = 0.15  # a run starts once the machine is under 15% busy (or --quiet-wait has passed)
NOISY = 0.10  # other people's share of the CPU above which a run is flagged


# --- processes ----------------------------------------------------------------------------------


class Children:
    """Every process this script starts, each in a session (process group) of its own, so that
    stopping one stops whatever it forked (gunicorn's workers) and nothing is left behind."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(list(argv), start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL to what is left of it after `grace` seconds.

        The group leader is reaped only after the last signal, so its pid (the group's id) cannot
        have been reused by a process that is not ours when the signal is sent.
        """
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while not _exited(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their master, too
            proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, grace=5.0)


def run_to_end(
    children: Children, argv: Sequence[str], *, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """Run a command in its own process group; its stdout+stderr and the CPU seconds it used."""
    with tempfile.TemporaryFile("w+") as out:
        proc = children.start(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind in its group
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        children.procs.remove(proc)
        out.seek(0)
        output = out.read()
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise BenchError(f"{' '.join(argv[:3])}… failed ({proc.returncode}):\n{tail}")
    return output, usage.ru_utime + usage.ru_stime


def _exited(pid: int) -> bool:
    """Whether a child has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# --- CPU accounting -----------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _postgres_role(pid: int, database: str) -> str | None:
    """ "ours" for a backend of `database` or a server process (WAL writer, checkpointer…),
    "other" for another database's backend, None for a process that is not PostgreSQL's."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    words = title.split()
    if not words or not (words[0] == "postgres:" or words[0].endswith("bin/postgres")):
        return None
    if words[0] == "postgres:" and len(words) >= 5 and words[2] not in ("autovacuum", "logical"):
        # "postgres: 15/main: USER DATABASE HOST(PORT) state": a client's backend
        return "ours" if words[3] == database else "other"
    if words[2:4] == ["autovacuum", "worker"] and len(words) > 4:
        return "ours" if words[4] == database else "other"
    return "ours"  # the server's own: postmaster, WAL writer, checkpointer, background writer


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS, sum(values[:8]) / CLOCK_TICKS


class Meter:
    """CPU used during a run by gunicorn (master and workers) and by PostgreSQL for `database`
    (its backends and the server's own processes), sampled from /proc every 0.5 s so that
    backends which exit before the end (pgbench's) still count; and the machine's in all."""

    def __init__(self, gunicorn_pid: int | None, database: str) -> None:
        self.gunicorn_pid, self.database = gunicorn_pid, database
        self.first: dict[int, tuple[str, float]] = {}  # pid: (whose, CPU seconds) at the start
        self.last: dict[int, tuple[str, float]] = {}
        self.roles: dict[int, str | None] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None:
                continue
            ppid, seconds = stat
            if self.gunicorn_pid is not None and self.gunicorn_pid in (pid, ppid):
                seen[pid] = ("app", seconds)
                continue
            if pid not in self.roles:
                self.roles[pid] = _postgres_role(pid, self.database)
            if self.roles[pid] == "ours":
                seen[pid] = ("postgres", seconds)
        return seen

    def _run(self) -> None:
        while not self.stopping.wait(0.5):
            self.last.update(self._sample())

    def __enter__(self) -> Meter:
        self.first = self._sample()
        self.machine_first = _machine()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.last.update(self._sample())
        self.machine_last = _machine()

    def usage(self, load: float) -> Usage:
        spent = {"app": 0.0, "postgres": 0.0}
        for pid, (whose, seconds) in self.last.items():
            spent[whose] += seconds - self.first.get(pid, (whose, 0.0))[1]
        busy = self.machine_last[0] - self.machine_first[0]
        total = self.machine_last[1] - self.machine_first[1]
        cpus = os.cpu_count() or 1
        return Usage(
            app=spent["app"],
            postgres=spent["postgres"],
            load=load,
            other=max(busy - spent["app"] - spent["postgres"] - load, 0.0),
            busy=busy / max(total, 1e-9),
            wall=total / cpus,
        )


@dataclass
class Usage:
    """Where the machine's CPU went during a run, in CPU seconds."""

    app: float
    postgres: float
    load: float  # wrk or pgbench itself
    other: float  # everything else on the machine: other people's work
    busy: float  # share of the machine in use
    wall: float

    @property
    def other_share(self) -> float:
        """Other people's share of the machine's CPU during the run."""
        return self.other / max(self.wall * (os.cpu_count() or 1), 1e-9)


def wait_for_quiet(limit: float, seconds: float) -> float:
    """Wait up to `seconds` for the machine to be under `limit` busy; the last share seen."""
    deadline = time.monotonic() + seconds
    while True:
        busy_first, total_first = _machine()
        time.sleep(1.0)
        busy_last, total_last = _machine()
        busy = (busy_last - busy_first) / max(total_last - total_first, 1e-9)
        if busy < limit or time.monotonic() >= deadline:
            return busy


# --- the database -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server(common.Server):
    """The benchmarks' server, with what pgbench and the report need of it."""

    def libpq_args(self) -> list[str]:
        parts = urlsplit(self.url)
        args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
        return [*args, "-U", parts.username or "postgres"]

    def describe(self) -> dict[str, str]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT version(), current_setting('synchronous_commit'), "
                "current_setting('shared_buffers'), current_setting('max_connections'), "
                "current_setting('fsync'), current_setting('wal_sync_method')"
            ).fetchone()
        keys = ("version", "synchronous_commit", "shared_buffers", "max_connections")
        return dict(zip((*keys, "fsync", "wal_sync_method"), row, strict=True))


# --- preparing the data (runs in child processes with Django set up) ----------------------------


def card_number(index: int) -> str:
    from members.identifiers import luhn_check_digit

    body = f"{CARD_BASE}{index:010d}"
    return body + luhn_check_digit(body)


def prepare_members(first: int, last: int) -> None:
    """Enrol members [first, last) with a card each and give them 5,000 points (child process)."""
    import django

    django.setup()
    from decimal import Decimal

    from django.db import transaction

    from coalition.demo import DEMO_SLUG
    from coalition.errors import MemberExists
    from coalition.models import Coalition
    from coalition.services import points_earn
    from consent.models import ConsentChannel, ConsentPurpose
    from members.services import member_enrol
    from tenants.models import TenantStatus, Till

    coalition = Coalition.objects.get(slug=DEMO_SLUG)
    tills = list(
        Till.objects.select_related("tenant__coalition")
        .filter(tenant__coalition=coalition, tenant__status=TenantStatus.ACTIVE)
        .order_by("pk")
    )
    for start in range(first, last, 100):
        with transaction.atomic():
            for index in range(start, min(start + 100, last)):
                try:
                    member = member_enrol(
                        coalition=coalition,
                        consents={ConsentPurpose.PROGRAMME: True},
                        card=card_number(index),
                        name=f"Bench shopper {index}",
                        adult=True,
                        channel=ConsentChannel.STAFF,
                    )
                except MemberExists:
                    continue
                points_earn(
                    till=tills[index % len(tills)],
                    member=member,
                    amount=Decimal(FUND_AMOUNT),
                    receipt=f"bench-fund-{index}",
                )


def prepare_keys(data_file: str) -> None:
    """One key per till of every tenant that may trade; the wrk input file (child process)."""
    import django

    django.setup()
    from coalition.demo import DEMO_SLUG
    from members.models import Identifier, IdentifierKind
    from tenants.models import TenantStatus, Till
    from tenants.selectors import tenant_can_issue, tenant_can_redeem
    from tenants.services import till_key_issue

    tills = [
        till
        for till in Till.objects.select_related("tenant__coalition")
        .filter(tenant__coalition__slug=DEMO_SLUG, tenant__status=TenantStatus.ACTIVE)
        .order_by("pk")
        if tenant_can_issue(till.tenant) and tenant_can_redeem(till.tenant)
    ]
    lines = [f"key {till_key_issue(till=till, name='bench')[1]}" for till in tills]
    cards = Identifier.objects.filter(
        kind=IdentifierKind.CARD, value__startswith=CARD_BASE, member__status="active"
    ).values_list("value", flat=True)
    lines += [f"card {card}" for card in cards]
    Path(data_file).write_text("\n".join(lines) + "\n")
    tenants = len({till.tenant_id for till in tills})
    print(json.dumps({"tills": len(tills), "tenants": tenants, "cards": len(cards)}))


def prepare_campaigns() -> None:
    """Campaigns running on every earn (child process): double points at every tenant, every
    day, the first tenant's with a total cap (its earns queue on the campaign's row), and the
    mall's cross-shop bonus of 50 points with a per-member cap of 500."""
    import django

    django.setup()
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from coalition.demo import DEMO_SLUG
    from coalition.models import Campaign, CampaignKind, Coalition
    from tenants.models import TenantStatus

    coalition = Coalition.objects.get(slug=DEMO_SLUG)
    today = timezone.localdate()
    dates = {"starts_on": today - timedelta(days=1), "ends_on": today + timedelta(days=30)}
    tenants = list(coalition.tenants.filter(status=TenantStatus.ACTIVE).order_by("pk"))
    for index, tenant in enumerate(tenants):
        Campaign.objects.get_or_create(
            coalition=coalition,
            name=f"Bench double points at {tenant.slug}",
            defaults={
                "kind": CampaignKind.MULTIPLIER,
                "tenant": tenant,
                "multiplier": Decimal("2.00"),
                "total_cap": 10**12 if index == 0 else None,
                **dates,
            },
        )
    Campaign.objects.get_or_create(
        coalition=coalition,
        name="Bench cross-shop bonus",
        defaults={
            "kind": CampaignKind.CROSS_SHOP,
            "bonus_points": 50,
            "member_cap": 500,
            **dates,
        },
    )
    print(json.dumps({"campaigns": Campaign.objects.filter(coalition=coalition).count()}))


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    statuses: dict[str, int]
    first_error: str | None
    usage: Usage

    def cpu_ms(self, seconds: float) -> float:
        """CPU milliseconds per request."""
        return seconds * 1000 / max(self.requests, 1)


@dataclass
class Pgbench:
    tps: float  # the mean of the runs before and after the app's
    init_seconds: float
    usage: Usage | None  # of the run after the app's
    runs: tuple[float, ...] = ()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn_start(
    children: Children,
    python: str,
    port: int,
    workers: Sequence[str],
    env: dict[str, str],
    log: Path,
) -> subprocess.Popen[Any]:
    """The app under gunicorn on 127.0.0.1:`port` (`workers`: its worker options), logging to
    `log`; returns once it answers."""
    gunicorn = [python, "-m", "gunicorn", "coalition.wsgi:application"]
    gunicorn += ["--bind", f"127.0.0.1:{port}", *workers]
    gunicorn += ["--backlog", "2048", "--timeout", "60", "--log-level", "warning"]
    gunicorn += ["--error-logfile", str(log), "--chdir", str(ROOT)]
    with open(log, "w") as out:
        proc = children.start(gunicorn, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_until_up(f"http://127.0.0.1:{port}", proc, log)
    return proc


def wait_until_up(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/api/v1/members/lookup?card=1", timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and refusing a request without a key as it should
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise BenchError(f"gunicorn did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def run_wrk(
    children: Children,
    args: argparse.Namespace,
    url: str,
    kind: str,
    data_file: Path,
    seconds: int,
    gunicorn_pid: int,
) -> Result:
    run_id = f"{kind[0]}{secrets.token_hex(4)}"
    argv = [
        args.wrk,
        f"-t{args.wrk_threads}",
        f"-c{args.clients}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        kind,
        str(data_file),
        run_id,
    ]
    with Meter(gunicorn_pid, args.database) as meter:
        output, wrk_cpu = run_to_end(children, argv)
    line = next((ln for ln in output.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise BenchError(f"wrk printed no result:\n{output[-3000:]}")
    raw = json.loads(line[len(RESULT_PREFIX) :])
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    socket_errors = sum(raw["socket_errors"].values())
    non_2xx = sum(n for status, n in statuses.items() if not 200 <= int(status) <= 299)
    requests = int(raw["requests"])
    seconds_run = raw["duration_us"] / 1e6
    ok = requests - non_2xx
    return Result(
        name=kind,
        rps=ok / seconds_run,  # successful requests only: an error is not throughput
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        requests=requests,
        errors=non_2xx + socket_errors,
        statuses=statuses | ({"socket": socket_errors} if socket_errors else {}),
        first_error=raw.get("first_error"),
        usage=meter.usage(wrk_cpu),
    )


def pgbench_init(children: Children, args: argparse.Namespace, server: Server, scale: int) -> str:
    """A database of pgbench's own at `scale`; returns its name."""
    name = f"{args.database}_pgbench"
    server.recreate(name)
    run_to_end(children, [args.pgbench, *server.libpq_args(), "-i", "-q", "-s", str(scale), name])
    return name


def pgbench_run(
    children: Children, args: argparse.Namespace, server: Server, name: str
) -> tuple[float, Usage]:
    """pgbench's default (TPC-B-like) script: its TPS and the CPU it used."""
    wait_for_quiet(QUIET, args.quiet_wait)
    run = [args.pgbench, *server.libpq_args(), "-c", str(args.clients), "-j", "2"]
    with Meter(None, name) as meter:
        output, pgbench_cpu = run_to_end(children, [*run, "-T", str(args.duration), name])
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if match is None:
        raise BenchError(f"no TPS in pgbench's output:\n{output}")
    return float(match.group(1)), meter.usage(pgbench_cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--duration", type=int, default=20, help="Seconds per measured run (20).")
    add("--clients", type=int, default=16, help="Concurrent tills and pgbench clients (16).")
    add("--workers", type=int, default=4, help="gunicorn workers (4).")
    add(
        "--worker-class",
        default="sync",
        choices=("sync", "gthread"),
        help="gunicorn worker class (sync).",
    )
    add("--threads", type=int, default=1, help="Threads per gthread worker (1).")
    add("--members", type=int, default=1000, help="Members the tills draw from (1000).")
    add("--warmup", type=int, default=5, help="Seconds of warm-up per endpoint (5).")
    add("--wrk-threads", type=int, default=1, help="wrk threads (1).")
    add(
        "--quiet-wait",
        type=float,
        default=15,
        help="Seconds to wait, before each measured run, for other work on the machine to "
        "calm down (15).",
    )
    add(
        "--server",
        default=report.default_server(),
        help=report.SERVER_HELP,
    )
    add(
        "--database",
        help="Database to create (dropped first if it exists); pgbench uses NAME_pgbench "
        "(coalition_bench_<pid>, so that two runs on one server never drop each other's).",
    )
    add(
        "--settings",
        default="coalition.settings.base",
        help="Django settings module for the app (%(default)s; experiments may point at a "
        "module of their own on PYTHONPATH).",
    )
    add("--keep-db", action="store_true", help="Keep both databases afterwards.")
    add(
        "--campaigns",
        action="store_true",
        help="Earn with campaigns running: double points at every tenant (one with a total "
        "cap) and the mall's cross-shop bonus.",
    )
    add(
        "--reuse-db",
        action="store_true",
        help="Run against the database a --keep-db run left (experiments; implies --keep-db).",
    )
    add("--no-docs", action="store_true", help="Leave docs/benchmarks.md as it is.")
    add(
        "--skip-pgbench",
        type=float,
        metavar="TPS",
        help="Take this TPS instead of running pgbench (experiments; implies --no-docs).",
    )
    add("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk", help=argparse.SUPPRESS)
    add("--pgbench", default=shutil.which("pgbench") or "/usr/bin/pgbench", help=argparse.SUPPRESS)
    # Internal: the preparation steps, run in child processes that set up Django.
    add("--json", metavar="PATH", help=JSON_HELP)
    parser.add_argument("--prepare-members", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-keys", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-campaigns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.prepare_members:
        prepare_members(*args.prepare_members)
        return 0
    if args.prepare_keys:
        prepare_keys(args.prepare_keys)
        return 0
    if args.prepare_campaigns:
        prepare_campaigns()
        return 0
    if args.reuse_db and not args.database:
        parser.error("--reuse-db needs --database: the one a --keep-db run left")
    args.database = args.database or f"coalition_bench_{os.getpid()}"
    if not args.database.startswith("coalition_bench"):
        parser.error("--database must start with coalition_bench (it is dropped and recreated)")
    for tool in (args.wrk, args.pgbench):
        if not Path(tool).exists():
            parser.error(f"{tool} not found (apt-get install wrk postgresql-client)")
    if args.skip_pgbench:
        args.no_docs = True
    if args.reuse_db:
        args.keep_db = True

    exit_on_signals()
    children = Children()
    server = Server(args.server.rstrip("/"))
    started = time.monotonic()

    def measure() -> int:
        with tempfile.TemporaryDirectory(prefix="till_load_") as scratch:
            return bench(args, children, server, Path(scratch), started)

    try:
        return run_reported("till_load", measure)
    finally:
        children.stop_all()
        made = [args.database, f"{args.database}_pgbench"]
        report.databases_release(server, made, "till_load", keep=args.keep_db)


def django_env(server: Server, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=args.settings,
        DATABASE_URL=server.database_url(args.database),
        DEBUG="False",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CONN_MAX_AGE="600",  # persistent connections: one per worker (thread), kept
        TILL_RATE_LIMIT="0",  # 16 tills hammering is the point; the limit is per key anyway
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


def bench(
    args: argparse.Namespace, children: Children, server: Server, scratch: Path, started: float
) -> int:
    env = django_env(server, args)
    python = str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable)
    me = str(Path(__file__).resolve())

    manage = [python, str(ROOT / "manage.py")]
    if args.reuse_db:
        say(f"Database {args.database}: reused (migrated, new keys)")
        run_to_end(children, [*manage, "migrate", "--noinput", "-v0"], env=env)
    else:
        say(f"Database {args.database}: create, migrate, seed the demo mall")
        server.recreate(args.database)
        run_to_end(children, [*manage, "migrate", "--noinput", "-v0"], env=env)
        seed = [*manage, "seed_demo", "--members", "20", "--months", "1", "--workers", "1"]
        run_to_end(children, seed, env=env)
        say(f"{args.members:,} members with 5,000 points each")
        half = args.members // 2
        enrolling = [
            children.start([python, me, "--prepare-members", str(a), str(b)], env=env)
            for a, b in ((0, half), (half, args.members))
        ]
        for proc in enrolling:
            proc.wait()
            children.stop(proc)
        if any(proc.returncode != 0 for proc in enrolling):
            raise BenchError("enrolling the bench members failed (see above)")
    if args.campaigns:
        say("Campaigns: double points at every tenant, a cross-shop bonus")
        run_to_end(children, [python, me, "--prepare-campaigns"], env=env)
    data_file = scratch / "tills.txt"
    output, _ = run_to_end(children, [python, me, "--prepare-keys", str(data_file)], env=env)
    setup = json.loads(output.strip().splitlines()[-1])
    with server.connect(args.database) as conn:
        conn.execute("VACUUM ANALYZE")
    say(
        f"{setup['tills']} tills of {setup['tenants']} tenants, {setup['cards']:,} members "
        f"(set up in {time.monotonic() - started:.0f} s)"
    )

    if not args.skip_pgbench:
        # pgbench runs before and after the app, and the ratio is taken against the mean: the
        # speed of a shared VM drifts by 10-20% over minutes, and this halves its effect.
        say(f"pgbench: -i -s {setup['tenants']}, then -c {args.clients} -j 2 -T {args.duration}")
        init_started = time.monotonic()
        pgbench_name = pgbench_init(children, args, server, setup["tenants"])
        pgbench_init_seconds = time.monotonic() - init_started
        before, _ = pgbench_run(children, args, server, pgbench_name)
        say(f"pgbench before: {before:,.0f} TPS (initialised in {pgbench_init_seconds:.0f} s)")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = scratch / "gunicorn.log"
    say(
        f"gunicorn: {args.workers} {args.worker_class} workers"
        + (f" x {args.threads} threads" if args.worker_class == "gthread" else "")
        + f" on {url}"
    )
    workers = ["--workers", str(args.workers), "--worker-class", args.worker_class]
    workers += ["--threads", str(args.threads)]
    proc = gunicorn_start(children, python, port, workers, env, log)
    results = []
    for kind in ("earn", "burn"):
        if args.warmup:
            run_wrk(children, args, url, kind, data_file, args.warmup, proc.pid)
        busy = wait_for_quiet(QUIET, args.quiet_wait)
        say(f"{kind}: {args.clients} tills for {args.duration} s (machine {busy:.0%} busy before)")
        result = run_wrk(children, args, url, kind, data_file, args.duration, proc.pid)
        say(
            f"{kind}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors"
        )
        results.append(result)
    children.stop(proc)
    probe = "Unauthorized: /api/v1/members/lookup"  # wait_until_up's requests
    gunicorn_log = "\n".join(ln for ln in log.read_text().splitlines() if probe not in ln)

    if args.skip_pgbench:
        pgbench = Pgbench(args.skip_pgbench, 0.0, None)
        say(f"pgbench skipped: taking {pgbench.tps:,.0f} TPS")
    else:
        say(f"pgbench after: -c {args.clients} -j 2 -T {args.duration}")
        after, usage = pgbench_run(children, args, server, pgbench_name)
        pgbench = Pgbench((before + after) / 2, pgbench_init_seconds, usage, (before, after))
        say(f"pgbench after: {after:,.0f} TPS; mean of before and after {pgbench.tps:,.0f} TPS")
        if not args.keep_db:
            server.drop(pgbench_name)

    report = Report(args, setup, results, pgbench, server.describe(), time.monotonic() - started)
    print()
    print(report.table())
    for result in results:
        if result.first_error:
            print(f"first {result.name} error: {result.first_error}")
    if gunicorn_log:
        print("\ngunicorn logged (last lines):\n" + "\n".join(gunicorn_log.splitlines()[-10:]))
    if not args.no_docs:
        report.write_docs(DOCS)
        say(f"Wrote the till section of {DOCS.relative_to(ROOT)}")
    if args.json:
        figures_write(args.json, "till_load", report.command(), report.figures())
    return 0 if report.all_met() else 2


# --- the report ---------------------------------------------------------------------------------


@dataclass
class Report:
    args: argparse.Namespace
    setup: dict[str, int]
    results: list[Result]
    pgbench: Pgbench
    postgres: dict[str, str]
    elapsed: float

    HEADER = ("", "req/s", "p50 ms", "p99 ms", "errors", "÷ pgbench TPS", "target", "")

    def ratio(self, result: Result) -> float:
        return result.rps / self.pgbench.tps if self.pgbench.tps else 0.0

    def met(self, result: Result) -> bool:
        return (
            self.ratio(result) >= TARGETS[result.name]
            and result.p99_ms < P99_TARGET_MS
            and result.errors == 0
        )

    def all_met(self) -> bool:
        return all(self.met(result) for result in self.results)

    def rows(self) -> list[list[str]]:
        rows = []
        for r in self.results:
            errors = f"{r.errors:,}"
            if r.errors:
                wrong = (f"{s}: {n}" for s, n in sorted(r.statuses.items()) if s != "201")
                errors += " (" + ", ".join(wrong) + ")"
            rows.append(
                [
                    r.name,
                    f"{r.rps:,.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    errors,
                    f"{self.ratio(r):.3f}",
                    f">= {TARGETS[r.name]:.2f}, p99 < {P99_TARGET_MS:.0f} ms, no errors",
                    "met" if self.met(r) else "NOT met",
                ]
            )
        rows.append(["pgbench", f"{self.pgbench.tps:,.0f} TPS", "", "", "", "1", "", ""])
        return rows

    def figures(self) -> list[Figure]:
        tps = self.pgbench.tps
        figures = []
        for r in self.results:
            target = TARGETS[r.name]
            figures += [
                Figure(
                    f"{r.name} req/s",
                    r.rps,
                    "req/s",
                    target * tps if tps else None,
                    True,
                    f"target {target:.2f} x pgbench's {tps:,.0f} TPS",
                ),
                Figure(f"{r.name} p99", r.p99_ms, "ms", P99_TARGET_MS, False),
                Figure(f"{r.name} errors", r.errors, "requests", 0, False, "none allowed"),
                Figure(
                    f"{r.name} CPU per request (gunicorn + PostgreSQL)",
                    r.cpu_ms(r.usage.app) + r.cpu_ms(r.usage.postgres),
                    "ms",
                    None,
                    False,
                    f"gunicorn {r.cpu_ms(r.usage.app):.1f} ms with {self.args.workers} "
                    f"{self.args.worker_class} workers",
                ),
            ]
        figures.append(Figure("pgbench", tps, "TPS", None, True, "TPC-B-like, same server"))
        return figures

    def table(self) -> str:
        rows = [list(self.HEADER), *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += ["", "CPU per request:", *(f"  {line}" for line in self.cpu_lines())]
        lines += [f"  {line}" for line in self.noise_lines()]
        return "\n".join(lines)

    def cpu_lines(self) -> list[str]:
        lines = [
            f"{r.name}: gunicorn {r.cpu_ms(r.usage.app):.1f} ms, PostgreSQL "
            f"{r.cpu_ms(r.usage.postgres):.1f} ms, wrk {r.cpu_ms(r.usage.load):.2f} ms "
            f"(machine {r.usage.busy:.0%} busy, {r.usage.other_share:.0%} of it other work)"
            for r in self.results
        ]
        usage = self.pgbench.usage
        if self.pgbench.runs:
            runs = " before, ".join(f"{tps:,.0f}" for tps in self.pgbench.runs)
            lines.append(f"pgbench TPS is the mean of {runs} after the app's runs")
        if usage is not None:
            per = 1000 / max(self.pgbench.tps * usage.wall, 1)
            lines.append(
                f"pgbench: PostgreSQL {usage.postgres * per:.2f} ms, pgbench {usage.load * per:.2f}"
                f" ms per transaction (machine {usage.busy:.0%} busy, "
                f"{usage.other_share:.0%} of it other work)"
            )
        return lines

    def noise_lines(self) -> list[str]:
        runs = [(r.name, r.usage) for r in self.results]
        if self.pgbench.usage is not None:
            runs.append(("pgbench", self.pgbench.usage))
        noisy = [name for name, usage in runs if usage.other_share > NOISY]
        if not noisy:
            return []
        return [
            f"WARNING: other work took more than {NOISY:.0%} of the CPU during "
            f"{', '.join(noisy)}; the figures understate what this machine can do."
        ]

    def command(self) -> str:
        parts = [".venv/bin/python bench/till_load.py", f"--duration {self.args.duration}"]
        parts += [f"--clients {self.args.clients}", f"--workers {self.args.workers}"]
        parts += [f"--members {self.args.members}"]
        if self.args.campaigns:
            parts.append("--campaigns")
        if self.args.worker_class != "sync":
            parts += [f"--worker-class {self.args.worker_class}", f"--threads {self.args.threads}"]
        if self.args.wrk_threads != 1:
            parts.append(f"--wrk-threads {self.args.wrk_threads}")
        if self.args.settings != "coalition.settings.base":
            parts.append(f"--settings {self.args.settings}")
        return " ".join(parts)

    def markdown(self) -> str:
        a, setup, pg = self.args, self.setup, self.postgres
        header = ["endpoint", *self.HEADER[1:-1], "verdict"]
        table = report.markdown_table(header, self.rows())
        worker = f"{a.workers} {a.worker_class} workers" + (
            f" x {a.threads} threads" if a.worker_class == "gthread" else ""
        )
        usage = "\n".join(f"  - {line}" for line in [*self.cpu_lines(), *self.noise_lines()])
        version = pg["version"].split(" on ")[0]
        threads = "thread" if a.wrk_threads == 1 else "threads"
        return "\n".join(
            [
                BEGIN_MARK,
                *report.run_heading(ROOT, self.elapsed, self.command(), table),
                f"- **Load**: wrk, {a.wrk_threads} {threads}, {a.clients} connections, "
                f"{a.duration} s per endpoint after {a.warmup} s of warm-up, with "
                "`bench/till_load.lua`.",
                f"  Each request uses a random one of {setup['tills']} till keys "
                f"({setup['tenants']} tenants) and a random one of {setup['cards']:,} members' "
                "cards,",
                '  with its own `Idempotency-Key` and receipt. Earn: `"amount": "4000.00"`; '
                "burn: 10 points on a bill of 600.00",
                "  (every member starts with 5,000 points). req/s counts 2xx answers only; "
                "any other status is an error, a 409 too.",
                "  Campaigns running on every earn: double points at every tenant (the first "
                "tenant's with a total cap),"
                if a.campaigns
                else "  No campaign running.",
                "  and the mall's cross-shop bonus of 50 points, at most 500 per member."
                if a.campaigns
                else "",
                f"- **App**: gunicorn, {worker}, `DEBUG=False`, `CONN_MAX_AGE=600` "
                "(persistent connections), `TILL_RATE_LIMIT=0`;",
                "  the full path: key auth, idempotency record, journal and entries, lots.",
                f"- **pgbench**: the default TPC-B-like script, `pgbench -i -s {setup['tenants']}` "
                f"(scale = tenants), then `pgbench -c {a.clients} -j 2 -T {a.duration}` before "
                "and after the app's runs,",
                "  same server, gunicorn stopped; the ratio is to the mean of the two.",
                f"- **Machine**: {report.machine()}; {version},",
                f"  `synchronous_commit={pg['synchronous_commit']}`, `fsync={pg['fsync']}`, "
                f"`shared_buffers={pg['shared_buffers']}`; app, PostgreSQL and wrk share the "
                "machine.",
                "- **CPU per request** (from /proc; other work = whatever else ran meanwhile):",
                usage,
                END_MARK,
            ]
        )

    def write_docs(self, path: Path) -> None:
        introduction = (
            "## Till API under load (`bench/till_load.py`)\n\n"
            "Earn and burn through the whole till API under gunicorn, against pgbench's\n"
            "TPC-B-like transaction on the same server. Targets: earn >= 0.10 and\n"
            "burn >= 0.08 of pgbench's TPS, p99 under 50 ms at 16 concurrent tills,\n"
            "durable commits."
        )
        report.section_write(path, BEGIN_MARK, END_MARK, self.markdown(), introduction)


if __name__ == "__main__":
    sys.exit(main())
