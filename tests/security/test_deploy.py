"""Production settings: `check --deploy` is clean, secrets and a shared cache are required, and
the security headers and cookie flags are on real responses.

The deploy check runs in a subprocess with a realistic environment, as a release would run it.
The refusals load `coalition/settings/production.py` afresh with a given environment. The
headers come from requests through the whole middleware stack with production's own security
settings (read from the module, not repeated here).
"""

import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from coalition.settings.base import DEV_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = "coalition.settings.production"


def production_env(**changes: str | None) -> dict[str, str]:
    """What a production host sets: a long random key, its host names, real services."""
    env = {
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "loyalty.example.com",
        "DATABASE_URL": "postgres://loyalty:pw@db.internal:5432/loyalty",
        "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
        "CACHE_URL": "redis://redis.internal:6379/1",
        "EMAIL_URL": "smtp+tls://mailer@example.com:pw@smtp.example.com:587",
        "TRUSTED_PROXY_COUNT": "1",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def deploy_check(env: dict[str, str], *tags: str) -> subprocess.CompletedProcess[str]:
    # Only the process basics are inherited: nothing from the test run's own configuration.
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--deploy",
            "--settings",
            PRODUCTION,
            "--fail-level",
            "WARNING",
            *(f"--tag={tag}" for tag in tags),
        ],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_production(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_module(PRODUCTION)


def test_check_deploy_is_clean_with_a_production_environment() -> None:
    result = deploy_check(production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_when_a_protection_is_turned_off() -> None:
    """The check above can fail: without the HTTPS redirect it reports security.W008 (only the
    security checks run here, to keep it quick)."""
    result = deploy_check(production_env(SECURE_SSL_REDIRECT="false"), "security")
    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr


def test_production_starts_with_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    env = production_env()
    loaded = load_production(monkeypatch, env)
    assert loaded["SECRET_KEY"] == env["SECRET_KEY"]
    assert loaded["DEBUG"] is False
    assert loaded["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": DEV_SECRET_KEY}, "development key"),
        ({"SECRET_KEY": "short-but-not-the-dev-key"}, "50 characters"),
        ({"CACHE_URL": None}, "CACHE_URL"),
        ({"CACHE_URL": "locmemcache://"}, "shared by every web process"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"CELERY_BROKER_URL": None}, "CELERY_BROKER_URL"),
        ({"ALLOWED_HOSTS": None}, "ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], complaint: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=complaint):
        load_production(monkeypatch, production_env(**changes))


SECURITY_SETTINGS = (
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "X_FRAME_OPTIONS",
)


@pytest.fixture
def production_security(monkeypatch: pytest.MonkeyPatch) -> Any:
    loaded = load_production(monkeypatch, production_env())
    with override_settings(**{name: loaded[name] for name in SECURITY_SETTINGS}):
        yield


@pytest.mark.django_db
@pytest.mark.usefixtures("production_security")
def test_plain_http_is_redirected_to_https() -> None:
    response = Client().get("/portal/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/portal/login/"


@pytest.mark.django_db
@pytest.mark.usefixtures("production_security")
def test_https_behind_the_proxy_gets_every_security_header_and_secure_cookies() -> None:
    user = User.objects.create_user("anita.desk", password="correct horse battery", is_staff=True)
    client = Client(HTTP_X_FORWARDED_PROTO="https")

    page = client.get("/admin/login/")

    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    assert page["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page["Content-Security-Policy"]
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] is True

    signed_in = client.post(
        "/admin/login/?next=/admin/",
        {"username": user.username, "password": "correct horse battery", "next": "/admin/"},
    )
    assert signed_in.status_code == 302
    session = signed_in.cookies["sessionid"]
    assert session["secure"] is True
    assert session["httponly"] is True
