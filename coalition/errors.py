"""Domain errors raised by services. Each names the problem type the till API reports
(`till-api.md`); one exception handler maps them to RFC 9457 problem+json."""

from typing import Any


class DomainError(Exception):
    """A refusal with a stable problem name, an HTTP status for the API, and extra fields."""

    problem = "domain-error"
    title = "The request was refused"
    status = 422

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class InvalidRequest(DomainError):
    """Input that parses but breaks a business rule (amount too high, value above bill...)."""

    problem = "validation-error"
    title = "The request is not valid"
    status = 422

    def __init__(self, detail: str = "", *, field: str = "non_field_errors", **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.field = field


class TenantCannotRedeem(DomainError):
    problem = "tenant-cannot-redeem"
    title = "This tenant may not redeem points"
    status = 403


class TenantCannotIssue(DomainError):
    problem = "tenant-cannot-issue"
    title = "This tenant may not issue points"
    status = 403


class MemberNotFound(DomainError):
    problem = "member-not-found"
    title = "No such member"
    status = 404


class MemberExists(DomainError):
    problem = "member-exists"
    title = "An identifier is already enrolled"
    status = 409


class TransactionNotFound(DomainError):
    problem = "transaction-not-found"
    title = "No such transaction"
    status = 404


class DuplicateReceipt(DomainError):
    problem = "duplicate-receipt"
    title = "This receipt was already posted"
    status = 409


class InsufficientPoints(DomainError):
    problem = "insufficient-points"
    title = "Not enough spendable points"
    status = 409


class AlreadyReversed(DomainError):
    problem = "already-reversed"
    title = "More than remains unreversed"
    status = 409


class NotReversible(DomainError):
    problem = "not-reversible"
    title = "This transaction cannot be reversed"
    status = 422


class ApprovalRequired(DomainError):
    problem = "approval-required"
    title = "A second staff member must approve this"
    status = 409


class LedgerConflict(DomainError):
    """A cached balance moved under a lock that should have prevented it: never expected."""

    problem = "try-again"
    title = "The ledger was busy"
    status = 503


# Refusals of the till API itself (`till-api.md`), mapped by the same exception handler.


class MalformedRequest(DomainError):
    problem = "malformed-request"
    title = "The body is not valid JSON"
    status = 400


class IdempotencyKeyMissing(DomainError):
    problem = "idempotency-key-missing"
    title = "Every POST needs an Idempotency-Key header"
    status = 400


class IdempotencyKeyInvalid(DomainError):
    problem = "idempotency-key-invalid"
    title = "An Idempotency-Key is 1 to 255 printable ASCII characters"
    status = 400


class IdempotencyKeyReused(DomainError):
    problem = "idempotency-key-reused"
    title = "This Idempotency-Key was used with another request"
    status = 422


class RequestInProgress(DomainError):
    problem = "request-in-progress"
    title = "A request with this Idempotency-Key is still running"
    status = 409


class PayloadTooLarge(DomainError):
    problem = "payload-too-large"
    title = "The request body is too large"
    status = 413


class TryAgain(DomainError):
    """The database could not resolve a conflict within bounded retries; nothing was applied."""

    problem = "try-again"
    title = "The service is busy; nothing was applied"
    status = 503


class BatchNotFound(DomainError):
    problem = "batch-not-found"
    title = "No such batch"
    status = 404
