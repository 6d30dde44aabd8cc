"""The one retry policy for a transaction that lost a race in PostgreSQL.

A serialization failure (40001) or a deadlock (40P01) rolls the whole transaction back and says
nothing about the data: running the same transaction again is correct and usually succeeds. The
till API's idempotency layer and the background jobs all retry through `conflict_retry`, so the
bound, the pause and what is logged are the same everywhere. Anything else is not retried.
"""

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
ATTEMPTS = 3
# The most a retry waits before it runs again, times the attempt number: two transactions that
# deadlocked should not collide again in lockstep.
PAUSE_SECONDS = 0.05


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL error code behind a Django database error, if any."""
    return getattr(exc.__cause__, "sqlstate", None)


def is_conflict(exc: BaseException) -> bool:
    """A serialization failure or a deadlock: the transaction may simply run again."""
    return isinstance(exc, OperationalError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def conflict_retry(
    run: Callable[[], T],
    *,
    what: str,
    attempts: int = ATTEMPTS,
    also: tuple[type[Exception], ...] = (),
) -> T:
    """Call `run` — one whole transaction — again while it fails with a serialization failure
    or a deadlock (or one of `also`), at most `attempts` times in all.

    Each retry is logged at INFO; the last failure is logged at WARNING with its sqlstate and
    re-raised for the caller to report. Inside an enclosing transaction `run`'s atomic block is
    a savepoint, and a retry rolls back to it only.
    """
    retryable: tuple[type[Exception], ...] = (OperationalError, *also)
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except retryable as exc:
            if not (is_conflict(exc) or isinstance(exc, also)):
                raise
            state = sqlstate(exc)
            reason = f"sqlstate {state}" if state else type(exc).__name__
            if attempt == attempts:
                logger.warning("%s: gave up after %s attempts (%s)", what, attempts, reason)
                raise
            logger.info("%s: retrying after %s (attempt %s)", what, reason, attempt)
            time.sleep(random.uniform(0, PAUSE_SECONDS * attempt))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")
