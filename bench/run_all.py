"""Every benchmark under bench/ at a size that fits this machine, then a summary of the figures.

    .venv/bin/python bench/run_all.py [--only close,expiry] [--soak-minutes 5] [--no-docs]
    make bench [BENCH=close]

Runs each bench in turn (about 40 minutes in all on 2 cores), each in its own process with
`--json` into a scratch folder; each bench rewrites its own section of docs/benchmarks.md as it
always does. Then rewrites the summary at the top of docs/benchmarks.md, between its markers:
each figure, its floor (the issue's target, or the measured floor it is held against) and the
ratio (value / floor when higher is better, floor / value when lower is better: 1 or more is
met). A bench not run this time keeps its rows from the last summary.

Exits 1 if a bench failed to run (crashed, timed out, or wrote no figures); a target missed is
reported in the summary, not an error. SOAK_MINUTES sets the soak's length (5).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import report
from common import Figure, figures_read

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
BENCH = ROOT / "bench"
PYTHON = ROOT / ".venv" / "bin" / "python"
BEGIN_MARK = "<!-- summary:begin (written by bench/run_all.py; edits inside are replaced) -->"
END_MARK = "<!-- summary:end -->"
HEADER = "| bench | figure | value | floor | ratio | met? | note | command |"


def sizes(soak_minutes: float) -> dict[str, list[str]]:
    """Each bench's arguments at this machine's size, in the order they run. The close and the
    till load at their issue's sizes; the expiry at 300,000 lots (a million takes 10 minutes);
    the import at 2,000 rows (a 100,000-row import takes an hour); the soak for SOAK_MINUTES."""
    return {
        "till_load": ["--duration", "20", "--clients", "16", "--workers", "4", "--campaigns"],
        "close": [
            "--entries",
            "1000000",
            "--runs",
            "3",
            "--close-runs",
            "2",
            "--partitioned",
            "--history",
            "2",
        ],
        "expiry": ["--lots", "300000", "--members", "60000", "--runs", "2"],
        "liability": ["--lots", "1000000", "--members", "200000", "--runs", "3"],
        "dashboard": ["--lots", "1000000", "--members", "200000", "--runs", "5"],
        "import": ["--rows", "2000"],
        "soak": ["--minutes", f"{soak_minutes:g}"],
    }


@dataclass
class Outcome:
    name: str
    returncode: int | None  # None: timed out
    seconds: float
    figures: list[Figure]
    command: str

    @property
    def ran(self) -> bool:
        # 0: every target met; 2: ran to the end and missed a target (reported, not a failure)
        return self.returncode in (0, 2) and bool(self.figures)


def run_one(name: str, arguments: list[str], scratch: Path, timeout: float, docs: bool) -> Outcome:
    out = scratch / f"{name}.json"
    python = str(PYTHON if PYTHON.exists() else sys.executable)
    argv = [python, str(BENCH / f"{name}.py"), *arguments, "--json", str(out)]
    if not docs:
        argv.append("--no-docs")
    print(f"==> make bench: {' '.join(argv[1:])}", flush=True)
    began = time.monotonic()
    # Its own session, so that a timeout stops the bench and whatever it started, nothing else.
    child = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
    returncode: int | None
    try:
        returncode = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        returncode = None
    except KeyboardInterrupt:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait()
        raise
    seconds = time.monotonic() - began
    figures: list[Figure] = []
    command = " ".join([".venv/bin/python", f"bench/{name}.py", *arguments])
    if out.exists():
        _, command, figures = figures_read(out)
    shown = "timed out" if returncode is None else f"exit {returncode}"
    print(
        f"==> make bench: {name}: {shown} after {seconds / 60:.1f} min, {len(figures)} figures",
        flush=True,
    )
    return Outcome(name, returncode, seconds, figures, command)


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "x":
        return f"{value:,.2f}x"
    if unit in ("req/s", "TPS", "rows/s", "requests", "MiB"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.3g} {unit}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows_for(outcome: Outcome, when: str) -> list[str]:
    if not outcome.ran:
        why = "timed out" if outcome.returncode is None else f"exit {outcome.returncode}"
        return [
            f"| {outcome.name} ({when}) | **did not run to the end** ({why}) |  |  |  |  |  | "
            f"`{cell(outcome.command)}` |"
        ]
    rows = []
    for index, figure in enumerate(outcome.figures):
        ratio = figure.ratio
        floor = "—" if figure.floor is None else number(figure.floor, figure.unit)
        shown_ratio = "—" if ratio is None else f"{ratio:.2f}"
        met = "—" if ratio is None else ("yes" if ratio >= 1 else "**no**")
        bench = f"{outcome.name} ({when})" if index == 0 else ""
        command = f"`{cell(outcome.command)}`" if index == 0 else ""
        rows.append(
            f"| {bench} | {cell(figure.name)} | {number(figure.value, figure.unit)} | {floor} | "
            f"{shown_ratio} | {met} | {cell(figure.note)} | {command} |"
        )
    return rows


def previous_rows(text: str) -> dict[str, list[str]]:
    """The last summary's rows, by bench (a bench's first row names it)."""
    if BEGIN_MARK not in text or END_MARK not in text:
        return {}
    inside = text.split(BEGIN_MARK, 1)[1].split(END_MARK, 1)[0]
    found: dict[str, list[str]] = {}
    current = None
    for line in inside.splitlines():
        if not line.startswith("| ") or line == HEADER or line.startswith("| ---"):
            continue
        first = line[2:].split(" |", 1)[0].strip()
        if first:
            current = first.split(" (", 1)[0]
        if current is not None:
            found.setdefault(current, []).append(line)
    return found


def summary_write(path: Path, outcomes: list[Outcome], order: list[str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    kept = previous_rows(text)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    fresh = {outcome.name: rows_for(outcome, when) for outcome in outcomes}
    rows: list[str] = []
    for name in order:
        rows += fresh.get(name) or kept.get(name, [])
    revision = report.revision(ROOT)
    generated = "\n".join(
        [
            BEGIN_MARK,
            f"Summary written by `make bench` (bench/run_all.py){revision}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}, on {report.machine()}. Each bench's date "
            "is when it last ran; its section below has the details. floor = the issue's "
            "target or the measured floor the figure is held against; ratio = value / floor "
            "when higher is better, floor / value when lower is better, so 1 or more is met.",
            "",
            HEADER,
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            END_MARK,
        ]
    )
    if BEGIN_MARK in text and END_MARK in text:
        before, rest = text.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        text = before + generated + after
    else:
        heading, _, body = text.partition("\n")
        text = f"{heading}\n\n{generated}\n\n{body.lstrip()}"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    soak_default = float(os.environ.get("SOAK_MINUTES") or 5)
    every = list(sizes(soak_default))
    parser.add_argument(
        "--only",
        help=f"Comma-separated benches to run, of {', '.join(every)} (all of them).",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=soak_default,
        help="Minutes of soak traffic (SOAK_MINUTES, else 5).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=45,
        help="Minutes a bench may take before it is stopped and counted as failed (45).",
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="Leave docs/benchmarks.md as it is (the benches too); print the summary.",
    )
    args = parser.parse_args(argv)
    chosen = every
    if args.only:
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(every))
        if unknown:
            parser.error(f"no bench {', '.join(unknown)}; there are {', '.join(every)}")
    plan = sizes(args.soak_minutes)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-json-") as scratch:
        for name in chosen:
            outcomes.append(
                run_one(name, plan[name], Path(scratch), args.timeout * 60, not args.no_docs)
            )
    if args.no_docs:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        print("\n".join([HEADER, *(row for o in outcomes for row in rows_for(o, when))]))
    else:
        summary_write(DOCS, outcomes, every)
        print(f"==> make bench: wrote the summary at the top of {DOCS.relative_to(ROOT)}")
    failed = [outcome.name for outcome in outcomes if not outcome.ran]
    if failed:
        print(f"make bench: did not run to the end: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
