"""Scheduled settlement jobs: each only calls a service (which claims its own work)."""

import logging

from celery import shared_task

from coalition.retry import conflict_retry
from settlement.services import (
    arrears_apply,
    periods_close_due,
    reconciliation_verify,
    reconciliations_verify_pending,
)

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def periods_close_due_task() -> int:
    """Close every month that has ended and is not closed, in every coalition (catches up)."""
    # The close catches up by design, so a run that lost a race (deadlock, serialization
    # failure) is simply run again; one that keeps losing is logged and fails the task.
    periods = conflict_retry(periods_close_due, what="monthly close")
    for period in periods:
        logger.info("closed %s of %s", period, period.coalition_id)
    # The ledger check of each new reconciliation was queued at its close; this catches any
    # whose message the broker lost.
    reconciliations_verify_pending()
    return len(periods)


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def reconciliation_verify_task(reconciliation_id: int) -> bool | None:
    """The reconciliation's second step, queued by the close: `ledger_verify`."""
    return reconciliation_verify(reconciliation_id)


@shared_task(soft_time_limit=30 * 60, time_limit=35 * 60)
def arrears_apply_task() -> dict[str, int]:
    """Put tenants with a statement unpaid past its due date into arrears, and take the rest
    out."""
    return arrears_apply()
