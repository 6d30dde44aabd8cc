"""Scheduled tenant jobs: each only calls a service."""

import logging

from celery import shared_task

from tenants.services import tenants_exit_due

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=30 * 60, time_limit=35 * 60)
def tenants_exit_due_task() -> int:
    """Exit every tenant whose exit date has come (catches up on any missed run)."""
    exited = tenants_exit_due()
    for tenant in exited:
        logger.info("tenant %s left the programme on %s", tenant.slug, tenant.exit_on)
    return len(exited)
