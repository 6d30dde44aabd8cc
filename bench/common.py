"""What the benchmarks share besides their docs section (bench/report.py): the PostgreSQL server
they create their databases on, the statements they build a ledger with, the tenants' table
the bulk loads join to, and the figures each writes for `make bench` (`--json PATH`), read back
by bench/run_all.py.

A figure is compared with its floor: the issue's target, or the measured floor it is held
against. ratio = value / floor when higher is better, floor / value when lower is better, so a
ratio of 1 or more means the target is met.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

JSON_HELP = "Also write the figures as JSON to PATH (read by bench/run_all.py)."


class BenchError(Exception):
    """A step failed; the message says which."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run_reported(tool: str, call: Callable[[], int]) -> int:
    """`call()`'s exit status; a failed step (1) or Ctrl-C (130) said as `tool: ...` on stderr
    instead of a traceback."""
    try:
        return call()
    except BenchError as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return 130


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP end the script as SystemExit, so that its `finally` blocks still stop
    what it started and drop its databases."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@dataclass(frozen=True)
class Server:
    url: str  # postgres://user@host:port (no database)

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))

    def connect(self, name: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.database_url(name), autocommit=True)

    def recreate(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- statements on Django's connection ----------------------------------------------------------


def execute(sql: str, params: dict[str, Any] | None = None) -> None:
    """Run each statement of `sql` in turn (server-side binding takes one statement at a time;
    none of these has a semicolon inside a literal)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for statement in filter(None, (part.strip() for part in sql.split(";"))):
            cursor.execute(statement, params)


def scalar(sql: str, params: dict[str, Any] | Sequence[Any] | None = None) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row is not None else None


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


# --- building a ledger in bulk ------------------------------------------------------------------


def tenants_create(coalition: Any, count: int) -> list[tuple[int, int, int, int]]:
    """`count` tenants with a store and a till each, through the services: (index, tenant,
    store, till) each."""
    from django.db import transaction

    from tenants.models import TenantCategory
    from tenants.services import tenant_create, till_create

    categories = list(TenantCategory.values)
    rows = []
    with transaction.atomic():
        for index in range(count):
            tenant = tenant_create(
                coalition=coalition,
                slug=f"tenant-{index:03d}",
                name=f"Tenant {index:03d}",
                category=categories[index % len(categories)],
            )
            till = till_create(tenant=tenant, store_code="main", till_code="till-1")
            rows.append((index, tenant.pk, till.store_id, till.pk))
    return rows


def tenant_table_create(tenant_rows: list[tuple[int, int, int, int]]) -> None:
    """The temporary table `bench_tenant` the bulk statements join to: each tenant's index,
    ids, and its issued and redeemed accounts."""
    from django.db import connection

    execute(
        "CREATE TEMP TABLE bench_tenant (t bigint PRIMARY KEY, tenant_id bigint, store_id bigint,"
        " till_id bigint, issued_account bigint, redeemed_account bigint)"
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO bench_tenant (t, tenant_id, store_id, till_id) VALUES (%s, %s, %s, %s)",
            tenant_rows,
        )
    execute(
        "UPDATE bench_tenant t SET issued_account = a.id FROM coalition_account a "
        "WHERE a.tenant_id = t.tenant_id AND a.kind = 'tenant_issued'; "
        "UPDATE bench_tenant t SET redeemed_account = a.id FROM coalition_account a "
        "WHERE a.tenant_id = t.tenant_id AND a.kind = 'tenant_redeemed'; ANALYZE bench_tenant"
    )


@contextmanager
def bulk_load() -> Iterator[None]:
    """Every id a bulk load writes comes from a join to the row it refers to, so a superuser
    loads without the per-row foreign-key checks and triggers (replica role): several times
    faster. Anyone else loads with them, more slowly."""
    fast = bool(scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
    if fast:
        execute("SET session_replication_role = replica")
    yield
    if fast:
        execute("RESET session_replication_role")


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None  # None: not measured in this run (the note says why)
    unit: str
    floor: float | None  # the target, or the measured floor the value is compared with
    higher_is_better: bool
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """>= 1 when met; None without a floor or a value. A floor of 0 where lower is better
        (errors: none allowed) is met by 0 alone: 1.0 then, else 0.0."""
        if self.floor is None or self.value is None:
            return None
        if self.higher_is_better:
            return self.value / self.floor if self.floor else None
        if self.floor == 0:
            return 1.0 if self.value <= 0 else 0.0
        return self.floor / self.value if self.value > 0 else None


def figures_write(path: str | Path, bench: str, command: str, figures: Iterable[Figure]) -> None:
    """`{"bench": ..., "command": ..., "figures": [...]}` at `path`."""
    document: dict[str, Any] = {
        "bench": bench,
        "command": command,
        "figures": [asdict(figure) for figure in figures],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n")


def figures_read(path: str | Path) -> tuple[str, str, list[Figure]]:
    """The bench's name, its command and its figures, as `figures_write` wrote them."""
    document = json.loads(Path(path).read_text())
    known = Figure.__dataclass_fields__
    figures = [
        Figure(**{key: value for key, value in figure.items() if key in known})
        for figure in document["figures"]
    ]
    return str(document["bench"]), str(document["command"]), figures


# --- the back office ----------------------------------------------------------------------------


def admin_client(username: str) -> Any:
    """A test `Client` signed in as the superuser `username` (created if missing), its session
    verified by an authenticator app as after signing in with its code: superusers need a second
    factor on every admin page."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        user = user_model.objects.create_superuser(
            username=username, email=f"{username}@example.com", password=None
        )
    client = Client(SERVER_NAME="localhost")  # ALLOWED_HOSTS has no "testserver"
    client.force_login(user)
    try:
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice
    except ImportError:  # a checkout from before the second factor
        return client
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Bench app", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
