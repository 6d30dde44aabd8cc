"""Exactly-once POSTs: the IETF Idempotency-Key draft, as `till-api.md` states it.

A POST runs in one database transaction that
1. takes `pg_try_advisory_xact_lock` on a hash of (till, key): if another request holds it, the
   answer is 409 `request-in-progress` at once (a plain insert of the same key would instead
   wait on the unique index until the first request commits);
2. in the same statement, looks for a stored response: same fingerprint → replayed byte for
   byte; another → 422;
3. runs the handler (its service is atomic: a savepoint), and stores its response — a success
   or a business refusal (403/404/409/422) — in the same transaction as its ledger effect, so a
   crash can leave neither a posting without its record nor a key stuck without a posting.
Nothing is stored for 400, 401, 409 in-progress, 429 or 5xx: the key stays free to retry.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.http import HttpResponse
from django.utils.timezone import now
from rest_framework.exceptions import ValidationError

from coalition.api.problems import JSON_CONTENT_TYPE, json_bytes, problem_for
from coalition.claims import claim_key
from coalition.errors import (
    DomainError,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    RequestInProgress,
    TryAgain,
)
from coalition.models import IdempotencyRecord
from coalition.retry import conflict_retry, sqlstate
from coalition.rows import fetch_one
from tenants.models import Till

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TABLE = IdempotencyRecord._meta.db_table
STORED_STATUSES = frozenset({200, 201, 202, 403, 404, 409, 422})
UNIQUE_VIOLATION = "23505"


@dataclass
class Outcome:
    """What a handler answers: a status, a JSON payload, and the member it concerns (so that an
    erasure can find the stored copy)."""

    status: int
    payload: dict[str, Any]
    member_id: UUID | None = None
    headers: dict[str, str] = field(default_factory=dict)


def idempotency_key(headers: Any) -> str:
    key = headers.get(HEADER)
    if key is None:
        raise IdempotencyKeyMissing(f"Send an {HEADER} header with every POST.")
    if not 1 <= len(key) <= 255 or not all(" " <= ch <= "~" for ch in key):
        raise IdempotencyKeyInvalid("An Idempotency-Key is 1 to 255 printable ASCII characters.")
    return str(key)


@dataclass(frozen=True)
class Body:
    """A request body: parsed (when it is JSON) and in the canonical form it is fingerprinted in."""

    is_json: bool
    data: Any
    canonical: bytes


def canonical_json(body: bytes) -> Body:
    """The body parsed, and re-serialised with sorted keys; the raw bytes if it is not JSON."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than any body
        return Body(False, None, body)
    return Body(True, data, canonical)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def fingerprint(method: str, path: str, canonical: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(method.upper().encode() + b"\n" + path.encode() + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


class _KeyRaced(Exception):
    """The key's response was stored by a request that committed after this one's snapshot."""


def idempotent_respond(
    *, till: Till, key: str, fingerprint: str, handler: Callable[[], Outcome]
) -> HttpResponse:
    """Run `handler` at most once per (till, key) and answer with its stored response.

    Deadlocks and serialization failures are retried a bounded number of times; what still
    fails is a 503 `try-again` with nothing applied and nothing stored.
    """
    try:
        return conflict_retry(
            lambda: _attempt(till, key, fingerprint, handler),
            what=f"till {till.pk} request {key}",
            also=(_KeyRaced,),
        )
    except _KeyRaced:
        raise TryAgain("The request raced itself; retry unchanged.") from None
    except OperationalError as exc:
        # Exhausted retries, a lock timeout or a lost connection: nothing was applied.
        raise TryAgain("The ledger was busy; retry unchanged.") from exc


def _attempt(
    till: Till, key: str, fingerprint: str, handler: Callable[[], Outcome]
) -> HttpResponse:
    with transaction.atomic():
        # One round trip: claim the key, bound how long this request may wait for a member's
        # lock (a till should get a clear 503, not hang), and read a stored response. The read
        # runs on the statement's snapshot, taken just before the claim: if the request that
        # held the key committed in between, its response is not seen here, the ledger refuses
        # the repeat, and storing ours hits the key's unique index — `_KeyRaced`, and the next
        # attempt replays the stored response.
        claimed = fetch_one(
            f"SELECT pg_try_advisory_xact_lock(%s), set_config('lock_timeout', %s, true), "  # noqa: S608
            f"r.fingerprint, r.status, r.content_type, r.body FROM (SELECT 1) x "
            f"LEFT JOIN {TABLE} r ON r.till_id = %s AND r.key = %s",
            [
                claim_key(f"idempotency:{till.pk}:{key}"),
                f"{settings.API_LOCK_TIMEOUT_MS}ms",
                till.pk,
                key,
            ],
        )
        assert claimed is not None  # one row, whatever the join finds
        if not claimed[0]:
            raise RequestInProgress(
                "A request with this Idempotency-Key is still running; retry it unchanged."
            )
        if claimed[2] is not None:
            stored_print, stored_status, stored_type, stored_body = claimed[2:]
            if stored_print != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with another request."
                )
            response = HttpResponse(
                bytes(stored_body), status=stored_status, content_type=stored_type
            )
            response[REPLAYED_HEADER] = "true"
            return response
        status, content_type, body, member_id, headers = _run(handler)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {TABLE} (till_id, key, fingerprint, status, content_type, "  # noqa: S608
                    "body, member_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [till.pk, key, fingerprint, status, content_type, body, member_id, now()],
                )
        except IntegrityError as exc:
            if sqlstate(exc) == UNIQUE_VIOLATION:
                raise _KeyRaced from exc
            raise
        response = HttpResponse(body, status=status, content_type=content_type)
        for header, value in headers.items():
            response[header] = value
        return response


def _run(handler: Callable[[], Outcome]) -> tuple[int, str, bytes, UUID | None, dict[str, str]]:
    """Run the handler; a refusal becomes the stored problem response.

    No savepoint of its own: a handler validates, then makes its writes through one service,
    and every service is `transaction.atomic` (a savepoint here), so a refusal raised inside it
    has already rolled back what it wrote. That saves two round trips on every POST.
    """
    try:
        outcome = handler()
    except (DomainError, ValidationError) as exc:
        problem = problem_for(exc)
        if problem is None or problem.status not in STORED_STATUSES:
            raise  # 400 and 5xx are not stored: the key stays free
        response = problem.response()
        return problem.status, response["Content-Type"], response.content, None, {}
    return (
        outcome.status,
        JSON_CONTENT_TYPE,
        json_bytes(outcome.payload),
        outcome.member_id,
        outcome.headers,
    )
