"""Privacy jobs. Each task claims its job and calls a service; the requests are rows first, so a
lost message only delays the work until beat's next run."""

import logging

from celery import shared_task

from coalition.claims import job_claim
from consent.services.privacy import privacy_erasures_run
from consent.services.retention import retention_warn

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def privacy_erasures_task() -> int:
    """Carry out the automatic erasures that are due (withdrawals, retention)."""
    with job_claim("privacy_erasures") as held:
        if not held:
            logger.info("privacy_erasures is already running elsewhere; skipping")
            return 0
        erased = privacy_erasures_run()
        logger.info("privacy_erasures erased %s members", erased)
        return erased


@shared_task(soft_time_limit=5 * 60 * 60, time_limit=5 * 60 * 60 + 10 * 60)
def retention_warn_task() -> int:
    """Warn the members inactive past the retention period and open their erasure requests."""
    with job_claim("retention_warn") as held:
        if not held:
            logger.info("retention_warn is already running elsewhere; skipping")
            return 0
        warned = retention_warn()
        logger.info("retention_warn warned %s members", warned)
        return warned
