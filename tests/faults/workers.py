"""Real Celery worker and beat processes for fault tests, and the database helpers around them.

A process runs `.venv/bin/celery -A coalition worker|beat` in its own process group, pointed at
the test database by name (the test must use `django_db(transaction=True)` so its set-up is
committed and visible to it). `kill()` sends SIGKILL to the whole group, as when the machine or
the OOM killer takes the worker down: no shutdown handler runs, nothing is acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def database_url(name: str | None = None, *, port: int | None = None) -> str:
    """A postgres:// URL for the test database (or `name`), optionally through another port."""
    conf = connection.settings_dict
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    return (
        f"postgres://{user}{password}@{host}:{port or conf.get('PORT') or 5432}/"
        f"{name or conf['NAME']}"
    )


def broker_url() -> str:
    return str(settings.CELERY_BROKER_URL)


class CeleryProcess:
    """One `celery worker` or `celery beat` process group."""

    def __init__(self, kind: str, *, db_url: str, broker: str, args: list[str]) -> None:
        self.kind = kind
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "coalition.settings.test",
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": broker,
            "PYTHONUNBUFFERED": "1",
        }
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open for the process)
            prefix=f"celery-{kind}-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [CELERY, "-A", "coalition", kind, "--loglevel", "INFO", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches the pool children
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for_log(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"celery {self.kind} never logged {text!r}:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group, then reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self.log.close()
        if not os.environ.get("KEEP_CELERY_LOGS"):
            with contextlib.suppress(OSError):
                os.unlink(self.log.name)


def worker_start(
    *,
    db_url: str | None = None,
    broker: str | None = None,
    concurrency: int = 1,
    wait: bool = True,
) -> CeleryProcess:
    """A prefork worker on the test database; returns once it consumes from the broker (or at
    once, `wait=False`: then call `wait_for_log("ready.")`)."""
    worker = CeleryProcess(
        "worker",
        db_url=db_url or database_url(),
        broker=broker or broker_url(),
        args=[
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"faults-{os.getpid()}-{time.monotonic_ns()}@%h",
        ],
    )
    if wait:
        worker.wait_for_log("ready.")
    return worker


def beat_start(*, broker: str | None = None, wait: bool = True) -> CeleryProcess:
    """A beat process on the test database's schedule (django-celery-beat's tables)."""
    beat_dir = tempfile.mkdtemp(prefix="celery-beat-")
    beat = CeleryProcess(
        "beat",
        db_url=database_url(),
        broker=broker or broker_url(),
        args=["--max-interval", "1", "--pidfile", os.path.join(beat_dir, "beat.pid")],
    )
    if wait:
        beat.wait_for_log("beat: Starting")
    return beat


@contextlib.contextmanager
def processes() -> Iterator[list[CeleryProcess]]:
    """Collects the processes a test starts and always kills them on the way out."""
    started: list[CeleryProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.close()


def broker_flush(url: str | None = None) -> None:
    """Empty this test run's broker database: queues and the unacknowledged messages a killed
    worker left behind (Redis would hand those out again after the visibility timeout)."""
    import redis

    redis.Redis.from_url(url or broker_url()).flushdb()


def wait_until(check: Callable[[], Any], seconds: float = 60, every: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{getattr(check, '__name__', check)} never held within {seconds} s")


def sql(db_name: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement on its own autocommit connection to `db_name`."""
    with psycopg.connect(database_url(db_name), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()
