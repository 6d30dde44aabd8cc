"""RFC 9457 problem details: the only error shape the till API gives.

`problem_for` is the one mapping from an exception to a problem; the DRF exception handler, the
idempotency layer (which stores refusals) and the 404/500 handlers for `/api/` all use it, so
DRF's default error shapes never leak through.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions as drf

from coalition.errors import DomainError, InvalidRequest, LedgerConflict, TryAgain

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
JSON_CONTENT_TYPE = "application/json"
RETRY_AFTER_SECONDS = 1

# Every problem type the API can answer with: name → (status, title). The contract's own names
# come first; the rest are HTTP-level problems any careful API reports the same way.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The body is not valid JSON"),
    "idempotency-key-missing": (400, "Every POST needs an Idempotency-Key header"),
    "idempotency-key-invalid": (400, "An Idempotency-Key is 1 to 255 printable ASCII characters"),
    "unauthenticated": (401, "A valid till key is required"),
    "forbidden": (403, "Not allowed"),
    "tenant-cannot-issue": (403, "This tenant may not issue points"),
    "tenant-cannot-redeem": (403, "This tenant may not redeem points"),
    "member-not-found": (404, "No such member"),
    "transaction-not-found": (404, "No such transaction"),
    "batch-not-found": (404, "No such batch"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed"),
    "not-acceptable": (406, "Not acceptable"),
    "request-in-progress": (409, "A request with this Idempotency-Key is still running"),
    "duplicate-receipt": (409, "This receipt was already posted"),
    "insufficient-points": (409, "Not enough spendable points"),
    "already-reversed": (409, "More than remains unreversed"),
    "member-exists": (409, "An identifier is already enrolled"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation-error": (422, "The request is not valid"),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with another request"),
    "not-reversible": (422, "This transaction cannot be reversed"),
    "rate-limited": (429, "Too many requests for this key"),
    "internal-error": (500, "Something went wrong on our side"),
    "try-again": (503, "The service is busy; nothing was applied"),
}


def problem_type(name: str) -> str:
    return f"{settings.PROBLEM_TYPE_BASE}{name}"


@dataclass
class Problem:
    status: int
    name: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        title = PROBLEMS.get(self.name, (self.status, "Error"))[1]
        return {
            "type": problem_type(self.name),
            "title": title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }

    def response(self) -> HttpResponse:
        response = json_response(self.payload(), self.status, PROBLEM_CONTENT_TYPE)
        for header, value in self.headers.items():
            response[header] = value
        return response


def json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(
        payload, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")
    ).encode()


def json_response(
    payload: Mapping[str, Any], status: int, content_type: str = JSON_CONTENT_TYPE
) -> HttpResponse:
    return HttpResponse(json_bytes(payload), status=status, content_type=content_type)


def _errors(detail: Any) -> dict[str, list[str]]:
    """DRF's nested error detail as `{"field": ["message", ...]}`, nested fields dotted."""
    if isinstance(detail, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, Mapping):
                for sub, messages in _errors(value).items():
                    flat[f"{key}.{sub}"] = messages
            else:
                flat[str(key)] = [str(m) for m in (value if isinstance(value, list) else [value])]
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {"non_field_errors": [str(m) for m in messages]}


def validation_problem(errors: dict[str, list[str]]) -> Problem:
    first = next(iter(errors.items()), ("", [""]))
    detail = f"{first[0]}: {first[1][0]}" if first[0] != "non_field_errors" else first[1][0]
    return Problem(422, "validation-error", detail, {"errors": errors})


def problem_for(exc: BaseException) -> Problem | None:
    """The problem an exception means, or None for a bug (which becomes a logged 500)."""
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, InvalidRequest):
        return validation_problem({exc.field: [exc.detail]})
    if isinstance(exc, LedgerConflict | TryAgain):
        return Problem(503, "try-again", exc.detail, exc.extra, retry)
    if isinstance(exc, DomainError):
        return Problem(exc.status, exc.problem, exc.detail, exc.extra)
    if isinstance(exc, drf.ValidationError):
        return validation_problem(_errors(exc.detail))
    if isinstance(exc, drf.ParseError):
        return Problem(400, "malformed-request", str(exc.detail))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return Problem(
            401,
            "unauthenticated",
            "Send the till's key as 'Authorization: Api-Key <key>'.",
            headers={"WWW-Authenticate": 'Api-Key realm="till"'},
        )
    if isinstance(exc, drf.Throttled):
        wait = max(int(getattr(exc, "wait", None) or RETRY_AFTER_SECONDS), 1)
        return Problem(
            429, "rate-limited", f"Retry in {wait} s.", headers={"Retry-After": str(wait)}
        )
    if isinstance(exc, drf.NotFound | Http404):
        return Problem(404, "not-found", "No such resource.")
    if isinstance(exc, drf.MethodNotAllowed):
        return Problem(405, "method-not-allowed", str(exc.detail))
    if isinstance(exc, drf.NotAcceptable):
        return Problem(406, "not-acceptable", str(exc.detail))
    if isinstance(exc, drf.UnsupportedMediaType):
        return Problem(415, "unsupported-media-type", str(exc.detail))
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        return Problem(403, "forbidden", "This key may not use this endpoint.")
    if isinstance(exc, RequestDataTooBig):
        return Problem(413, "payload-too-large", "The request body is too large.")
    if isinstance(exc, OperationalError):
        # Lock timeouts, exhausted retries, a lost connection: nothing was committed.
        logger.warning("database unavailable for an API request: %s", exc)
        return Problem(503, "try-again", "The database is busy; retry unchanged.", headers=retry)
    return None


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: every error as problem+json; None lets a bug be a 500."""
    problem = problem_for(exc)
    return problem.response() if problem else None


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return Problem(404, "not-found", f"No endpoint at {request.path}.").response()


def api_server_error(request: HttpRequest) -> HttpResponse:
    return Problem(500, "internal-error", "The error was logged; retry later.").response()
