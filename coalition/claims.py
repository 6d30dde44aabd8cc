"""Database claims for jobs that must not overlap: PostgreSQL advisory locks, not guesses.

A claim is a session-level `pg_try_advisory_lock` on a key derived from a name; it is held until
the block ends (or the connection dies, so a killed worker never leaves a claim behind).
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

# Every posting holds (PERIOD_LOCK_CLASS, coalition id) shared for its whole transaction; the
# monthly close takes it exclusively for an instant to freeze a month (`period_freeze`), so a
# posting that was running as the close began lands wholly in the old period or the new one.
PERIOD_LOCK_CLASS = 7401


def claim_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def job_claim(name: str) -> Iterator[bool]:
    """Yield True when this process holds the claim `name`, False when another one does."""
    key = claim_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
