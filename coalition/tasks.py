"""Scheduled ledger jobs. Each task only claims the job and calls a service; running one twice,
or two at once, changes nothing more (the services are idempotent, the claim stops overlap)."""

import logging
from functools import partial

from celery import shared_task

from coalition.claims import job_claim
from coalition.retry import conflict_retry
from coalition.services import lots_expire, points_release
from coalition.services.batches import batch_process, batches_resume
from coalition.services.figures import daily_figures_refresh_all
from coalition.services.idempotency import idempotency_records_purge
from coalition.services.imports import import_job_run, import_jobs_resume
from coalition.services.notices import expiry_notices_queue, expiry_notices_send
from coalition.services.policy_migrations import expiry_policy_migrations_run

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def lots_expire_task() -> int:
    """Expire everything due as of now in every coalition (catches up on missed days)."""
    with job_claim("lots_expire") as held:
        if not held:
            logger.info("lots_expire is already running elsewhere; skipping")
            return 0
        points = lots_expire()
        logger.info("lots_expire expired %s points", points)
        return points


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def expiry_notices_task() -> dict[str, int]:
    """Record the notices of points expiring within each coalition's window, then send them."""
    recorded = expiry_notices_queue()
    sent = expiry_notices_send()
    logger.info("expiry notices: %s recorded, sent %s", recorded, sent)
    return {"recorded": recorded, **sent}


@shared_task(soft_time_limit=10 * 60, time_limit=12 * 60)
def expiry_notices_send_task() -> dict[str, int]:
    """Send queued notices: a retry of failed deliveries, and any the daily run left."""
    return expiry_notices_send()


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def expiry_policy_migrations_task() -> int:
    """Apply requested expiry policy migrations to existing lots (and finish interrupted ones)."""
    return expiry_policy_migrations_run()


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def points_release_task() -> int:
    """Release pending (held-back) points whose window has ended."""
    with job_claim("points_release") as held:
        if not held:
            logger.info("points_release is already running elsewhere; skipping")
            return 0
        return points_release()


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def batch_process_task(batch_id: int) -> str:
    """Post the queued lines of one till batch file (safe to run twice: see `batch_process`)."""
    batch = batch_process(batch_id=batch_id)
    return batch.status if batch else "claimed elsewhere"


@shared_task(soft_time_limit=5 * 60, time_limit=6 * 60)
def batches_resume_task() -> int:
    """Queue again the batch files whose message was lost or whose worker died."""
    return batches_resume()


@shared_task(soft_time_limit=30 * 60, time_limit=35 * 60)
def idempotency_records_purge_task() -> int:
    """Forget stored idempotent responses past their retention (at least 7 days)."""
    return idempotency_records_purge()


@shared_task(soft_time_limit=50 * 60, time_limit=55 * 60)
def daily_figures_refresh_task() -> dict[str, int]:
    """Store the dashboard's figures of every ended day not stored (or not settled) yet."""
    with job_claim("daily_figures_refresh") as held:
        if not held:
            logger.info("daily_figures_refresh is already running elsewhere; skipping")
            return {}
        return daily_figures_refresh_all()


@shared_task(soft_time_limit=3 * 60 * 60, time_limit=3 * 60 * 60 + 300)
def import_job_task(job_id: int) -> str:
    """Run an import job's current pass (dry run or real) from where it stopped; safe to run
    twice (`import_job_run` claims the job, and a rerun resumes at its last recorded chunk)."""
    # A rerun resumes at the first chunk not recorded, so a run that lost a race (deadlock,
    # serialization failure) outside a row is simply run again, a bounded number of times.
    job = conflict_retry(partial(import_job_run, job_id=job_id), what=f"import job {job_id}")
    return job.status if job else "claimed elsewhere"


@shared_task(soft_time_limit=5 * 60, time_limit=6 * 60)
def import_jobs_resume_task() -> int:
    """Wake a worker for import jobs whose message was lost or whose worker died."""
    return import_jobs_resume()
