"""Production settings: secrets have no default, and the process refuses to start without them.

`manage.py check --deploy --settings coalition.settings.production` is clean with a real
environment (`tests/security/test_deploy.py` runs it). Behind the TLS-terminating proxy the app
trusts `X-Forwarded-Proto` for the scheme and, with `TRUSTED_PROXY_COUNT`, `X-Forwarded-For` for
the client address that login throttling counts (`coalition/login_throttle.py`).
"""

import os

from django.core.exceptions import ImproperlyConfigured

from coalition.env import database, env
from coalition.settings.base import *  # noqa: F403
from coalition.settings.base import DEV_SECRET_KEY, redis_broker_options

DEBUG = False
SECRET_KEY = env("SECRET_KEY")  # no default: ImproperlyConfigured when unset
if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured(
        "SECRET_KEY is the development key or shorter than 50 characters: set a long random one."
    )
# coalition/env.py gives ALLOWED_HOSTS a development default (localhost): require it here.
if not os.environ.get("ALLOWED_HOSTS"):
    raise ImproperlyConfigured("Set ALLOWED_HOSTS to the host names the site answers to.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
DATABASES = {"default": database(env("DATABASE_URL"))}  # no default
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_BROKER_TRANSPORT_OPTIONS = redis_broker_options(CELERY_BROKER_URL)

# Till keys' rate limits and login throttling's lockouts must be seen by every web process:
# one shared cache (Redis or memcached), never a per-process one.
CACHES = {"default": env.cache_url("CACHE_URL")}  # no default
if CACHES["default"]["BACKEND"] in (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
):
    raise ImproperlyConfigured(
        "CACHE_URL must name a cache shared by every web process (redis://, memcached://)."
    )

# HTTPS only: the proxy terminates TLS and says so in X-Forwarded-Proto (it must overwrite any
# value a client sends).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
