"""A 100,000-member import from a tenant's old programme, through the import job, in-process.

    .venv/bin/python bench/import.py [--rows 100000] [--server URL] [--database NAME]
        [--keep-db] [--no-docs]

What one run does:

1. creates a fresh database `bench_import_<pid>` (`--database` to name it) and migrates it;
2. makes the coalition and the tenant whose old programme is imported (through the services),
   and writes a CSV of `--rows` members into a temporary MEDIA_ROOT: a phone each, an email for
   one in two, a card for one in five, the two consent columns (yes / no / blank in turn), a
   tenant-marketing consent column, and an opening balance of 0 to 499 points (one in ten with
   the old programme's expiry date);
3. stores the file as staff would (`import_job_create`), then calls the worker
   (`import_job_run`, what the Celery task calls) for the dry run, confirms
   (`import_job_confirm`), and calls it again for the import; each pass timed, in rows/s;
4. checks the outcome: every row created once, the members' balances add up to the file's
   opening balances, each opening a lot funded by the tenant, and the same file imported again
   (dry run only) creates nothing;
5. reports the peak resident memory of the process (`getrusage` maxrss) after building the file
   and after each pass, replaces its section of docs/benchmarks.md (`--no-docs` to leave it),
   and drops the database (`--keep-db` keeps it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import report
from common import JSON_HELP, BenchError, Figure, Server, figures_write, run_reported, say
from expiry import database_new

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN_MARK = "<!-- import:begin (written by bench/import.py; edits inside are replaced) -->"
END_MARK = "<!-- import:end -->"
HEADER = (
    "phone,email,card,name,adult,marketing_mall,analytics,marketing_old-shop,"
    "opening_balance,opening_expires_on"
)
CONSENT = ("yes", "no", "")


def maxrss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def opening(index: int) -> int:
    return (index * 7919) % 500


def file_write(path: Path, rows: int) -> int:
    """The old programme's export; returns the sum of its opening balances."""
    total = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        for index in range(rows):
            points = opening(index)
            total += points
            phone = f"+9198{index:08d}"
            email = f"shopper{index}@example.com" if index % 2 == 0 else ""
            card = f"9{index:015d}" if index % 5 == 0 else ""
            expires = "2099-12-31" if index % 10 == 0 else ""
            out.write(
                f"{phone},{email},{card},Shopper {index},yes,{CONSENT[index % 3]},"
                f"{CONSENT[(index + 1) % 3]},{CONSENT[(index + 2) % 3]},{points},{expires}\n"
            )
    return total


@dataclass
class Pass:
    name: str
    seconds: float
    rows: int
    created: int
    skipped: int
    errors: int
    maxrss: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Run:
    rows: int
    file_mib: float
    build_maxrss: float
    passes: list[Pass] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


def job_pass(name: str, job_id: int) -> Pass:
    from coalition.models.imports import ImportJob, ImportStatus
    from coalition.services.imports import import_job_run

    began = time.monotonic()
    import_job_run(job_id=job_id)
    seconds = time.monotonic() - began
    job = ImportJob.objects.get(pk=job_id)
    if job.status not in (ImportStatus.PREVIEWED, ImportStatus.DONE):
        raise BenchError(f"{name}: the job ended {job.status}: {job.failure or job.errors[:3]}")
    found = Pass(
        name,
        seconds,
        job.rows_processed,
        job.rows_created,
        job.rows_skipped,
        job.rows_errors,
        maxrss_mib(),
    )
    say(
        f"{name}: {found.rows:,} rows in {seconds:,.1f} s = {found.rate:,.0f} rows/s "
        f"(created {found.created:,}, skipped {found.skipped:,}, errors {found.errors:,}); "
        f"peak memory {found.maxrss:,.0f} MiB"
    )
    return found


def bench(args: argparse.Namespace, server: Server, media: Path) -> Run:
    database_new(server, args, args.database)
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.files import File
    from django.db.models import Sum

    from coalition.models import Account, AccountKind, Journal, JournalKind, Lot
    from coalition.services import coalition_create
    from coalition.services.imports import import_job_confirm, import_job_create
    from consent.models import ConsentPurpose
    from members.models import Member
    from tenants.services import tenant_create

    settings.MEDIA_ROOT = str(media)
    coalition = coalition_create(slug="import-bench", name="Import bench mall")
    tenant = tenant_create(
        coalition=coalition, slug="old-shop", name="Old Shop", category="apparel"
    )
    ConsentPurpose.objects.create(
        coalition=coalition, code="marketing_old-shop", name="Marketing by Old Shop", tenant=tenant
    )
    staff = User.objects.create_superuser("bench", password="x")

    say(f"Writing {args.rows:,} members")
    source = media / "old-programme.csv"
    expected_points = file_write(source, args.rows)
    run = Run(args.rows, source.stat().st_size / 1024 / 1024, maxrss_mib())

    def upload() -> int:
        with source.open("rb") as handle:
            job = import_job_create(
                coalition=coalition,
                kind="members",
                tenant=tenant,
                upload=File(handle, name="old-programme.csv"),
                user=staff,
            )
        return job.pk

    job_id = upload()
    run.passes.append(job_pass("dry run", job_id))
    from coalition.models.imports import ImportJob

    import_job_confirm(job=ImportJob.objects.get(pk=job_id), user=staff)
    run.passes.append(job_pass("import", job_id))

    say("Checking")
    members = Member.objects.filter(coalition=coalition).count()
    points = Account.objects.filter(coalition=coalition, kind=AccountKind.MEMBER_POINTS).aggregate(
        total=Sum("balance")
    )["total"]
    openings = Journal.objects.filter(coalition=coalition, kind=JournalKind.OPENING).count()
    funded = Lot.objects.filter(coalition=coalition, funding_tenant=tenant).aggregate(
        total=Sum("points")
    )["total"]
    with_points = sum(1 for index in range(args.rows) if opening(index))
    checks = {
        f"members enrolled: {members:,}": members == args.rows,
        f"opening journals: {openings:,} (rows with points: {with_points:,})": openings
        == with_points,
        f"points held: {points:,} (the file's: {expected_points:,})": points == expected_points,
        f"points in lots funded by the tenant: {funded:,}": funded == expected_points,
    }
    again = upload()
    repeat = job_pass("same file again, dry run", again)
    run.passes.append(repeat)
    checks[f"the same file again: {repeat.created} to create, {repeat.skipped:,} skipped"] = (
        repeat.created == 0 and repeat.skipped == args.rows
    )
    for line, ok in checks.items():
        run.checks.append(f"{'ok' if ok else 'FAILED'}: {line}")
        say(run.checks[-1])
    if not all(checks.values()):
        raise BenchError("the import's outcome is wrong (see above)")
    return run


def markdown(run: Run, args: argparse.Namespace, elapsed: float) -> str:
    from django.db import connection

    lines = [
        BEGIN_MARK,
        "",
        f"`.venv/bin/python bench/import.py --rows {args.rows}` — {run.rows:,} members "
        f"({run.file_mib:,.1f} MiB of CSV, opening balances and consents), imported by the job "
        f"in chunks of 1,000 rows, in-process (the worker function the Celery task calls); "
        f"{elapsed / 60:,.1f} minutes in all.",
        "",
        *report.machine_lines(
            f"PostgreSQL {getattr(connection, 'pg_version', 0) // 10000}",
            "default settings, `DEBUG=False`",
        ),
        f"- **Measured**{report.revision(ROOT)}.",
        "",
        "| Pass | Rows | Seconds | Rows/s | Created | Skipped | Errors | Peak memory (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p.name} | {p.rows:,} | {p.seconds:,.1f} | {p.rate:,.0f} | {p.created:,} | "
        f"{p.skipped:,} | {p.errors:,} | {p.maxrss:,.0f} |"
        for p in run.passes
    ]
    lines += [
        "",
        f"Peak memory after writing the file: {run.build_maxrss:,.0f} MiB; the process's peak "
        "(maxrss) only grows, so each pass's figure bounds what it used: a chunk of rows, not "
        "the file.",
        "",
        *[f"- {check}" for check in run.checks],
        "",
        END_MARK,
    ]
    return "\n".join(lines)


def figures(run: Run) -> list[Figure]:
    """Each pass's rate and the process's peak memory; the issue sets no figure to meet."""
    found = [
        Figure(f"{p.name}: rows/s", p.rate, "rows/s", None, True, f"{p.rows:,} rows")
        for p in run.passes
    ]
    peak = max([run.build_maxrss, *(p.maxrss for p in run.passes)])
    found.append(Figure("peak memory (maxrss)", peak, "MiB", None, False, "bounded: a chunk"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="Members in the file (100000).")
    parser.add_argument("--server", default=report.default_server(), help=report.SERVER_HELP)
    parser.add_argument("--database", help="Database to create (bench_import_<pid>).")
    parser.add_argument(
        "--settings", default="coalition.settings.base", help="Django settings (%(default)s)."
    )
    parser.add_argument("--keep-db", action="store_true", help="Keep the database afterwards.")
    parser.add_argument("--no-docs", action="store_true", help="Leave docs/benchmarks.md as is.")
    parser.add_argument("--json", metavar="PATH", help=JSON_HELP)
    args = parser.parse_args(argv)
    if args.rows <= 0:
        parser.error("--rows must be positive")
    args.database = args.database or f"bench_import_{os.getpid()}"
    if not args.database.startswith("bench_import"):
        parser.error("--database must start with bench_import (it is dropped and recreated)")

    server = Server(args.server.rstrip("/"))
    media = Path(tempfile.mkdtemp(prefix="bench-import-"))
    started = time.monotonic()

    def measure() -> int:
        run = bench(args, server, media)
        elapsed = time.monotonic() - started
        if not args.no_docs:
            report.section_write(
                DOCS,
                BEGIN_MARK,
                END_MARK,
                markdown(run, args, elapsed),
                "## Member import (issue 7)\n\nA tenant's old programme brought in: enrolment, "
                "consents and opening balances, dry run then import, through the import job.",
            )
        if args.json:
            command = f".venv/bin/python bench/import.py --rows {args.rows}"
            figures_write(args.json, "import", command, figures(run))
        return 0

    try:
        return run_reported("import", measure)
    finally:
        shutil.rmtree(media, ignore_errors=True)
        report.databases_release(server, [args.database], "import", keep=args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
