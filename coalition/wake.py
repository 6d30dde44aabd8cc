"""Waking a worker: the one way services send a Celery message.

Work that must happen is a database row before any message is sent (`domain.md`); the message
only wakes a worker sooner. So a broker that is down or silent costs a delay, never the work and
never the request: the send is bounded (`BROKER_REDIS_OPTIONS`, `CELERY_TASK_PUBLISH_RETRY_POLICY`),
its failure is logged, and a scheduled job finds the row and sends the message again.
"""

import logging
from collections.abc import Sequence
from typing import Any

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)


def worker_wake(task: str, args: Sequence[Any] = (), *, left_to: str) -> bool:
    """Send `task` now; False (and a warning naming `left_to`, the job that will pick the work
    up instead) when the broker cannot take it."""
    try:
        current_app.send_task(task, args=list(args))
    except (BrokerError, OSError) as exc:
        logger.warning("%s%s not sent, left to %s (broker: %s)", task, tuple(args), left_to, exc)
        return False
    return True


def worker_wake_on_commit(task: str, args: Sequence[Any] = (), *, left_to: str) -> None:
    """`worker_wake` once the current transaction commits (and not at all if it rolls back)."""
    transaction.on_commit(lambda: worker_wake(task, args, left_to=left_to))
