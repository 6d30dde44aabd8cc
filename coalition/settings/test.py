"""Test settings: the same PostgreSQL engine as production, fast hashing, eager nothing.

Tasks are not run eagerly: tests that are about queues use the real broker (`CELERY_BROKER_URL`,
Redis in CI); the rest call services directly.
"""

from coalition.settings.base import *  # noqa: F403
from coalition.settings.base import env, redis_broker_options

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_TRANSPORT_OPTIONS = redis_broker_options(CELERY_BROKER_URL)
