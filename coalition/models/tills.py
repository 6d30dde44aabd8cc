"""What tills send us, kept so it is answered exactly once: idempotency records and batch files."""

import uuid

from django.db import models
from django.db.models import Q


class IdempotencyRecord(models.Model):
    """The response given to one `Idempotency-Key` of one till, replayed byte for byte.

    Written in the same transaction as the ledger effect, so a crash leaves neither a posting
    without its record nor a record without its posting. Only a fingerprint of the request is
    kept, never its body; `member_id` lets an erasure find responses that name the member.
    """

    till = models.ForeignKey("tenants.Till", on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status = models.PositiveSmallIntegerField()
    content_type = models.CharField(max_length=60)
    body = models.BinaryField()
    member_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["till", "key"], name="idempotency_key_per_till"),
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.till_id}:{self.key} → {self.status}"


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"


class LineStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class Batch(models.Model):
    """A file of earn and burn lines from a till that could not post live.

    The lines are rows before anything is queued; the broker only wakes a worker, and a periodic
    job picks up batches whose message was lost.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    till = models.ForeignKey("tenants.Till", on_delete=models.PROTECT, related_name="batches")
    status = models.CharField(
        max_length=12, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    file_sha256 = models.CharField(max_length=64)
    file_size = models.PositiveIntegerField()
    lines_total = models.PositiveIntegerField(default=0)
    lines_accepted = models.PositiveIntegerField(default=0)
    lines_rejected = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["status", "created_at"],
                condition=~Q(status="done"),
                name="batch_unfinished",
            )
        ]

    def __str__(self) -> str:
        return f"Batch {self.public_id} ({self.status})"


class BatchLine(models.Model):
    """One line of a batch file, as sent, and what became of it."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="lines")
    line = models.PositiveIntegerField(help_text="Line number in the file; the header is line 1.")
    kind = models.CharField(max_length=10, blank=True, default="")
    receipt = models.CharField(max_length=64, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    card = models.CharField(max_length=64, blank=True, default="")
    phone = models.CharField(max_length=64, blank=True, default="")
    email = models.CharField(max_length=254, blank=True, default="")
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    points = models.BigIntegerField(null=True, blank=True)
    bill_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=10, choices=LineStatus.choices, default=LineStatus.QUEUED)
    journal = models.ForeignKey(
        "coalition.Journal", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    problem = models.CharField(max_length=60, blank=True, default="")
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["batch", "line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "line"], name="batch_line_unique"),
            models.CheckConstraint(
                condition=~Q(status="accepted") | Q(journal__isnull=False),
                name="batch_line_accepted_has_journal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.line} {self.status}"
