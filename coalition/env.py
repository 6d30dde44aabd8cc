"""The one place the process environment is read (12-factor).

Every setting that can differ between a laptop, CI and production comes from here. Development
defaults are safe and need nothing installed; `coalition.settings.production` refuses to start
without the secrets it needs.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]"]),
    TIME_ZONE=(str, "Asia/Kolkata"),
    CONN_MAX_AGE=(int, 600),
    DATABASE_SERVER_SIDE_BINDING=(bool, True),
)


def database(url: str) -> dict:
    """Django's database settings for a PostgreSQL URL, the same in every settings module.

    - Persistent connections (`CONN_MAX_AGE`), checked before each request reuses one.
    - Server-side parameter binding and prepared statements: psycopg prepares a statement the
      second time a connection runs it, so PostgreSQL stops parsing and planning the till
      path's statements on every request (about 40% less PostgreSQL CPU per earn, and less
      Python too: docs/benchmarks.md). Behind PgBouncer in transaction mode, use PgBouncer 1.21
      or later with `max_prepared_statements` set, or turn both off with
      `DATABASE_SERVER_SIDE_BINDING=false`.
    """
    config = env.db_url_config(url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise RuntimeError("DATABASE_URL must point at PostgreSQL; no other engine is supported.")
    config["CONN_MAX_AGE"] = env("CONN_MAX_AGE")
    config["CONN_HEALTH_CHECKS"] = True
    # TCP keepalives (libpq): a connection whose server vanished without a word (a failover, a
    # dropped network) is noticed in about a minute instead of the kernel's two hours.
    config.setdefault("OPTIONS", {}).update(
        keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3
    )
    if env("DATABASE_SERVER_SIDE_BINDING"):
        # Django leaves psycopg's prepare_threshold at None (never prepare) unless it is set.
        config.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=2)
    return config


# A `.env` file beside manage.py is honoured for local overrides; the real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
