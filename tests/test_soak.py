"""The soak's CI setting: `bench/soak.py` for half a minute against the test server, as a child.

It runs the whole path the 30-minute soak runs (a database of its own on `DATABASE_URL`'s server,
gunicorn, a Celery worker on `CELERY_BROKER_URL`, every trading tenant's tills, the close and the
sweep half way) and its own checks; this test reads the figures it writes and asserts on what
must hold whatever the machine's speed: no errors, a clean ledger, the close and the sweep done
exactly once, every posting the tills were answered with in the ledger. No assertion on time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _server() -> str:
    """The test database's server, without a database."""
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/coalition")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Any]:
    figures = tmp_path_factory.mktemp("soak") / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--minutes",
            "0.5",
            "--members",
            "100",
            "--tills",
            "8",
            "--batch-every",
            "10",
            "--no-docs",
            "--json",
            str(figures),
            "--server",
            _server(),
        ],
        env={
            **os.environ,
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"),
        },
        capture_output=True,
        text=True,
        timeout=540,  # a bound for a stuck run, not a speed check
        check=False,
    )
    data = json.loads(figures.read_text()) if figures.exists() else None
    return done, data


def _figure(data: Any, name: str) -> Any:
    return next(figure for figure in data["figures"] if figure["name"] == name)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_runs_clean(soak: tuple[subprocess.CompletedProcess[str], Any]) -> None:
    # Given the soak's CI setting, when it has run: it exited 0 and wrote its figures
    done, data = soak
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert data is not None and data["bench"] == "soak"
    # Then no till saw an error, and the ledger verifies clean
    assert _figure(data, "errors")["value"] == 0
    assert _figure(data, "ledger_verify problems")["value"] == 0
    assert all(data["checks"].values()), data["checks"]
    # And every kind of till traffic happened (a batch file included)
    for operation in ("lookup", "earn", "burn", "reverse", "enrol", "list", "batch"):
        assert _figure(data, f"{operation} throughput")["value"] > 0, operation


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_closed_and_swept_once_in_the_middle(
    soak: tuple[subprocess.CompletedProcess[str], Any],
) -> None:
    done, data = soak
    assert data is not None, done.stdout[-4000:] + done.stderr[-4000:]
    details = data["details"]
    ledger = details["ledger"]
    close, close_again = details["jobs"]["close"]
    sweep, sweep_again = details["jobs"]["sweep"]
    # The worker closed the previous month while the tills traded, and a second close did nothing
    assert ledger["previous_month"] in ledger["closed_months"]
    assert close["result"] != "0" and close["failed"] is None
    assert close_again["result"] == "0"
    assert ledger["statements"] > 0
    assert ledger["reconciliation"]["balanced"] is True
    # The sweep expired every lapsed lot exactly once, and a second sweep expired nothing
    assert sweep["result"] == str(ledger["lapsed_points"]) and ledger["lapsed_points"] > 0
    assert sweep_again["result"] == "0"
    assert ledger["expired_once"] and ledger["lapsed_left"] == 0
    assert ledger["expiry_journals"] == ledger["lapsed_lots"]
    # Nothing lost, nothing doubled: the journals are the seed, the tills' postings, the expiries
    assert ledger["missing_count"] == 0 and ledger["unexplained_count"] == 0
    assert ledger["client_postings"] > 0
    assert ledger["journals_after"] == (
        ledger["journals_before"] + ledger["client_postings"] + ledger["expiry_journals"]
    )
