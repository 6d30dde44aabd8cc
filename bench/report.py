"""What every benchmark's section of docs/benchmarks.md states the same way: the machine, the
commit measured, and the section itself, replaced between its markers on each run."""

import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SERVER_HELP = "PostgreSQL server, without a database (BENCH_POSTGRES_URL, else %(default)s)."


def default_server() -> str:
    """The PostgreSQL server the benchmarks create their databases on."""
    return os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def machine_lines(version: str, settings: str) -> list[str]:
    """The docs section's machine bullet for the benchmarks that run in this process."""
    return [
        f"- **Machine**: {machine()}; {version},",
        f"  {settings}; the script and PostgreSQL share the machine.",
    ]


def machine() -> str:
    """`2 CPUs (AMD EPYC ...), 24 GiB RAM`, from /proc where there is one."""
    processor = platform.processor() or platform.machine()
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    memory = ""
    with suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} CPUs ({processor}){memory}"


def revision(root: Path) -> str:
    """` at commit `abc1234`` (and whether the app had uncommitted changes), or nothing."""
    with suppress(OSError, subprocess.SubprocessError):
        git = ["git", "--no-optional-locks", "-C", str(root)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "diff", "--quiet", "HEAD", "--", ".", ":!bench", ":!docs"], check=False
        ).returncode
        if commit:
            dirty = " (with uncommitted changes to the app)" if changed else ""
            return f" at commit `{commit}`{dirty}"
    return ""


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: the header, its rule, then the rows."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in lines)


def run_heading(root: Path, elapsed: float, command: str, table: str, built: str = "") -> list[str]:
    """The lines a section opens with after its marker: when and at which commit it ran, how long
    it took in all (`built`: e.g. ` (40 s of it building the month)`), its command, its table."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = f"Last run {when}{revision(root)}, {elapsed:.0f} s in all{built}:"
    return [heading, "", "```", command, "```", "", table, ""]


def section_write(path: Path, begin: str, end: str, generated: str, introduction: str) -> None:
    """Replace the text between `begin` and `end` with `generated`; without the markers, add the
    section at the end of the file, after its heading and `introduction`."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = before + generated + after
    else:
        section = f"{introduction}\n\n{generated}\n"
        text = (
            (text.rstrip() + "\n\n" + section) if text.strip() else ("# Benchmarks\n\n" + section)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def databases_drop(server: Any, names: Iterable[str], tool: str) -> None:
    """Drop a run's databases on the way out. A failure is reported, never hidden, and never
    replaces the run's own result or error."""
    import psycopg

    for name in names:
        try:
            server.drop(name)
        except psycopg.Error as exc:
            print(f"{tool}: could not drop the database {name}: {exc}", file=sys.stderr)


def databases_release(server: Any, names: Iterable[str], tool: str, *, keep: bool) -> None:
    """On the way out: close Django's connections when this process set Django up, then drop the
    run's databases unless `keep`."""
    if "django" in sys.modules:
        from django.conf import settings

        if settings.configured:  # imported is not set up: soak's parent process imports Django
            from django.db import connections

            connections.close_all()
    if not keep:
        databases_drop(server, names, tool)
