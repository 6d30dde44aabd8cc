"""Import jobs: a file staff uploaded, read in the background in chunks, first as a dry run.

The row is the truth about the job (the broker only wakes a worker): its status, its counts so
far, the first row errors, who asked and when. A worker commits the counts after every chunk, so
a job whose worker died resumes from the last chunk it recorded (`import_job_run`).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ImportKind(models.TextChoices):
    MEMBERS = "members", "Members (enrolment from a tenant's old programme)"
    TRANSACTIONS = "transactions", "Historical transactions (earn and burn)"
    TENANTS = "tenants", "Tenants"
    STORES = "stores", "Stores"
    TILLS = "tills", "Tills"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Waiting for a worker"
    RUNNING = "running", "Running"
    PREVIEWED = "previewed", "Dry run done: waiting for confirmation"
    DONE = "done", "Imported"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (ImportStatus.QUEUED, ImportStatus.RUNNING)


class ImportJob(models.Model):
    coalition = models.ForeignKey("coalition.Coalition", on_delete=models.PROTECT)
    kind = models.CharField(max_length=20, choices=ImportKind.choices)
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Members: the tenant whose old programme the file comes from; it funds the "
        "opening balances.",
    )
    file = models.FileField(
        upload_to="imports/%Y/%m/",
        blank=True,
        help_text="Kept under MEDIA_ROOT (where an erasure finds it) until the import is done "
        "or cancelled, then deleted.",
    )
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64)
    file_size = models.BigIntegerField()
    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    dry_run = models.BooleanField(
        default=True, help_text="The current (or last) pass is the dry run, which writes nothing."
    )
    rows_total = models.PositiveIntegerField(default=0)
    rows_processed = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_skipped = models.PositiveIntegerField(default=0)
    rows_errors = models.PositiveIntegerField(default=0)
    errors = models.JSONField(
        default=list,
        blank=True,
        help_text="The first row errors of the current pass: [{row, errors: {column: [...]}}].",
    )
    preview = models.JSONField(
        default=dict, blank=True, help_text="The dry run's counts, kept once the import runs."
    )
    failure = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker last recorded a chunk."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "import"
        verbose_name_plural = "imports"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["status", "progress_at"],
                condition=Q(status__in=["queued", "running"]),
                name="import_job_active",
            ),
        ]
        permissions = [
            (
                "import_transactions",
                "Can import ledger postings: historical transactions and opening balances",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(rows_processed__lte=models.F("rows_total")),
                name="import_job_processed_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"Import {self.pk}: {self.get_kind_display()} ({self.file_name})"

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.status in (ImportStatus.PREVIEWED, ImportStatus.DONE) else 0
        return self.rows_processed * 100 // self.rows_total
