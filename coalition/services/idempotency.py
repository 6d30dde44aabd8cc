"""Keeping stored idempotent responses as long as the contract promises, and no longer."""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from coalition.models import IdempotencyRecord

MIN_RETENTION_DAYS = 7  # till-api.md: "Keys are kept at least 7 days."
PURGE_CHUNK = 5000


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete stored responses older than IDEMPOTENCY_RETENTION_DAYS (never under 7 days), in
    chunks so the table is never locked for long. Returns how many were deleted."""
    days = max(int(settings.IDEMPOTENCY_RETENTION_DAYS), MIN_RETENTION_DAYS)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :PURGE_CHUNK
            ]
        )
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
