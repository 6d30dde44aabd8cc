"""Import jobs: big files read in the background, a chunk at a time, dry run first.

Staff upload a file for a kind (`import_job_create`): the file is stored under MEDIA_ROOT and a
row records the job before anything is queued. A worker (`import_job_run`) reads the CSV in
chunks of `CHUNK_ROWS` rows, each a tablib Dataset given to the kind's resource — the same
resource (and so the same services) as the admin's immediate import — and commits the counts
after every chunk. The first pass is a dry run: each chunk runs in a transaction that is rolled
back, so nothing is written and every refusal is reported. Staff read the report and confirm
(`import_job_confirm`); the second pass writes, each row in its own transaction.

A worker that dies resumes at the first chunk it had not recorded; rows of that chunk that had
committed are skipped by the resources' idempotency (an enrolled identifier, an opened balance,
a posted receipt, an existing slug), so nothing is written twice. The beat job
`import_jobs_resume` wakes a worker for jobs whose message was lost.
"""

import csv
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import IO, Any

from django.core.files.base import File
from django.db import transaction
from django.utils import timezone
from import_export.resources import Resource
from import_export.results import Result, RowResult
from tablib import Dataset

from coalition.claims import job_claim
from coalition.errors import InvalidRequest
from coalition.models import Coalition
from coalition.models.imports import ImportJob, ImportKind, ImportStatus
from coalition.wake import worker_wake
from tenants.models import Tenant

logger = logging.getLogger(__name__)

RUN_TASK = "coalition.tasks.import_job_task"
CHUNK_ROWS = 1000
ERRORS_KEPT = 300  # row errors kept on the job; the counts cover all of them
IMMEDIATE_MAX_ROWS = 2000  # the admin's in-request import; larger files go to a job
STALE_AFTER = timedelta(minutes=5)
ENCODING = "utf-8-sig"  # spreadsheets save a byte-order mark

# What each kind needs the importing user to hold.
PERMISSIONS = {
    ImportKind.MEMBERS: "members.add_member",
    ImportKind.TRANSACTIONS: "coalition.import_transactions",
    ImportKind.TENANTS: "tenants.add_tenant",
    ImportKind.STORES: "tenants.add_store",
    ImportKind.TILLS: "tenants.add_till",
}


def import_kinds_for(user: Any) -> list[str]:
    """The kinds `user` may import."""
    return [kind for kind, perm in PERMISSIONS.items() if user.has_perm(perm)]


# --- reading the file -------------------------------------------------------------------------


@dataclass
class TextOver:
    """A binary file read as CSV text, without closing the file when done."""

    binary: IO[bytes]
    text: io.TextIOWrapper = field(init=False)

    def __enter__(self) -> Iterator[list[str]]:
        self.binary.seek(0)
        self.text = io.TextIOWrapper(self.binary, encoding=ENCODING, newline="")
        return (record for record in csv.reader(self.text) if any(cell.strip() for cell in record))

    def __exit__(self, *exc: object) -> None:
        self.text.detach()  # the caller's file stays open
        self.binary.seek(0)


def csv_rows_count(upload: Any) -> int:
    """Data rows (records after the header, blank lines left out) of an uploaded CSV, read as
    a stream. A file that is not UTF-8 CSV counts 0: the import then says what is wrong."""
    try:
        with TextOver(upload.file if hasattr(upload, "file") else upload) as records:
            return max(sum(1 for _ in records) - 1, 0)
    except (UnicodeDecodeError, csv.Error):
        return 0


def _header(records: Iterator[list[str]]) -> list[str]:
    return [cell.strip().lower() for cell in next(records, [])]


# --- the resources ----------------------------------------------------------------------------


_JOB_CLASSES: dict[type[Resource], type[Resource]] = {}


def _job_class(resource_class: type[Resource]) -> type[Resource]:
    """The kind's resource without what only the admin's preview needs (a diff of every row,
    the skipped rows themselves): a chunk's result stays small."""
    if resource_class not in _JOB_CLASSES:
        meta = type(
            "Meta", (), {"skip_diff": True, "skip_html_diff": True, "report_skipped": False}
        )
        _JOB_CLASSES[resource_class] = type(
            f"{resource_class.__name__}InJob", (resource_class,), {"Meta": meta}
        )
    return _JOB_CLASSES[resource_class]


def job_resource(job: ImportJob) -> Any:
    from coalition.resources import TransactionResource
    from members.resources import MemberResource
    from tenants.resources import StoreResource, TenantResource, TillResource

    if job.kind == ImportKind.MEMBERS:
        return _job_class(MemberResource)(
            coalition=job.coalition,
            tenant=job.tenant,
            opened_at=job.created_at,
            source=f"import job {job.pk}",
        )
    classes: dict[str, type[Resource]] = {
        ImportKind.TRANSACTIONS: TransactionResource,
        ImportKind.TENANTS: TenantResource,
        ImportKind.STORES: StoreResource,
        ImportKind.TILLS: TillResource,
    }
    return _job_class(classes[job.kind])(coalition=job.coalition)


# --- staff's steps ----------------------------------------------------------------------------


@transaction.atomic
def import_job_create(
    *,
    coalition: Coalition,
    kind: str,
    upload: Any,
    user: Any,
    tenant: Tenant | None = None,
    now: datetime | None = None,
) -> ImportJob:
    """Store the file, record the job and (after commit) wake a worker for its dry run.

    A file refused as a whole (not CSV, no rows, a wrong header row) raises InvalidRequest and
    nothing is stored.
    """
    if kind not in ImportKind.values:
        raise InvalidRequest(f"Unknown import kind {kind!r}.", field="kind")
    if not user.has_perm(PERMISSIONS[ImportKind(kind)]):
        raise InvalidRequest("You may not import this kind of file.", field="kind")
    if tenant is not None and tenant.coalition_id != coalition.pk:
        raise InvalidRequest("This tenant belongs to another programme.", field="tenant")
    if tenant is not None and not user.has_perm(PERMISSIONS[ImportKind.TRANSACTIONS]):
        raise InvalidRequest(
            "Opening balances are ledger postings the tenant pays for: bringing them needs the "
            "permission to import ledger postings. Leave the tenant out to enrol members only.",
            field="tenant",
        )
    binary = upload.file if hasattr(upload, "file") else upload
    digest = hashlib.sha256()
    binary.seek(0)
    for block in iter(lambda: binary.read(1 << 20), b""):
        digest.update(block)
    try:
        with TextOver(binary) as records:
            headers = _header(records)
            total = sum(1 for _ in records)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequest(f"Not a UTF-8 CSV file ({exc}).", field="file") from exc
    if not total:
        raise InvalidRequest("The file has no rows under its header row.", field="file")
    job = ImportJob(
        coalition=coalition,
        kind=kind,
        tenant=tenant,
        file_name=str(getattr(upload, "name", "") or "import.csv")[:255],
        file_sha256=digest.hexdigest(),
        file_size=0,
        rows_total=total,
        created_by=user,
        created_at=now or timezone.now(),
    )
    refusal = job_resource(job).header_refusal(headers)
    if refusal:
        raise InvalidRequest(refusal, field="file")
    binary.seek(0, io.SEEK_END)
    job.file_size = binary.tell()
    binary.seek(0)
    job.file.save(f"{job.file_sha256[:16]}.csv", File(binary), save=False)
    job.save()
    transaction.on_commit(lambda: import_job_enqueue(job_id=job.pk))
    return job


@transaction.atomic
def import_job_confirm(*, job: ImportJob, user: Any, now: datetime | None = None) -> ImportJob:
    """Run the import for real after its dry run. Only once: the status moves under a guard."""
    if not user.has_perm(PERMISSIONS[ImportKind(job.kind)]):
        raise InvalidRequest("You may not import this kind of file.")
    moved = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.PREVIEWED).update(
        status=ImportStatus.QUEUED,
        dry_run=False,
        rows_processed=0,
        rows_created=0,
        rows_skipped=0,
        rows_errors=0,
        errors=[],
        confirmed_by=user,
        confirmed_at=now or timezone.now(),
        started_at=None,
        progress_at=None,
        finished_at=None,
    )
    if not moved:
        raise InvalidRequest("Only an import whose dry run is done and not yet confirmed can run.")
    job.refresh_from_db()
    transaction.on_commit(lambda: import_job_enqueue(job_id=job.pk))
    return job


@transaction.atomic
def import_job_cancel(*, job: ImportJob, user: Any) -> ImportJob:
    """Drop an import before it writes: after its dry run, or while the dry run waits."""
    del user  # the admin's log entry records who
    moved = (
        ImportJob.objects.filter(pk=job.pk, dry_run=True)
        .filter(status__in=[ImportStatus.PREVIEWED, ImportStatus.QUEUED, ImportStatus.FAILED])
        .update(status=ImportStatus.CANCELLED, finished_at=timezone.now())
    )
    if not moved:
        raise InvalidRequest("An import that is running or has written rows cannot be cancelled.")
    job.refresh_from_db()
    _file_drop(job)
    return job


def _file_drop(job: ImportJob) -> None:
    """The file holds personal data: it goes once the job no longer needs it."""
    name, storage = job.file.name, job.file.storage
    if name:
        transaction.on_commit(lambda: storage.delete(name))


def import_job_enqueue(*, job_id: int) -> None:
    """Wake a worker. If the broker is down the job is still a row; `import_jobs_resume` finds
    it."""
    worker_wake(RUN_TASK, [job_id], left_to="import_jobs_resume")


def import_jobs_resume(*, now: datetime | None = None) -> int:
    """Wake a worker for jobs that wait with no worker on them; returns how many."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    stale = ImportJob.objects.filter(status__in=[ImportStatus.QUEUED, ImportStatus.RUNNING])
    ids = [
        job.pk
        for job in stale.only("pk", "created_at", "confirmed_at", "progress_at")
        if (job.progress_at or job.confirmed_at or job.created_at) < cutoff
    ]
    for job_id in ids:
        import_job_enqueue(job_id=job_id)
    return len(ids)


# --- the worker -------------------------------------------------------------------------------


def _chunks(job: ImportJob) -> Iterator[tuple[int, list[str], list[list[str]]]]:
    """(rows before the chunk, header, rows) from where the job's counts stopped."""
    with job.file.open("rb") as stored, TextOver(stored.file) as records:
        headers = _header(records)
        offset = job.rows_processed
        for _ in islice(records, offset):
            pass
        while rows := list(islice(records, CHUNK_ROWS)):
            yield offset, headers, rows
            offset += len(rows)


def _errors_of(result: Result, offset: int) -> list[dict[str, Any]]:
    found = [{"row": offset + row.number, "errors": row.error_dict} for row in result.invalid_rows]
    for number, errors in result.row_errors():
        for error in errors:
            # An unexpected error may quote a database row (personal data): the log keeps it,
            # the job (which an erasure does not scrub) names only its type.
            logger.error("import row %s failed: %r", offset + number, error.error)
        found.append(
            {
                "row": offset + number,
                "errors": {"__all__": [f"Unexpected {type(errors[0].error).__name__}: see logs."]},
            }
        )
    return sorted(found, key=lambda item: item["row"])


def _dataset(headers: list[str], rows: list[list[str]], offset: int) -> tuple[Dataset, list[Any]]:
    """The chunk as a Dataset; a row with more cells than the header is refused here."""
    dataset = Dataset(headers=headers)
    refused = []
    width = len(headers)
    for index, row in enumerate(rows, 1):
        if len(row) > width:
            refused.append(
                {
                    "row": offset + index,
                    "errors": {"__all__": [f"{len(row)} cells under a header of {width}."]},
                }
            )
            row = ["" for _ in headers]  # keeps the numbering; read as a blank row
        dataset.append(row + [""] * (width - len(row)))
    return dataset, refused


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run the job's current pass from where it stopped. Safe to run twice or at once: one
    process holds the job's claim, and a rerun resumes at the first chunk not recorded."""
    with job_claim(f"import:{job_id}") as held:
        if not held:
            logger.info("import job %s is running elsewhere", job_id)
            return None
        job = ImportJob.objects.select_related("coalition", "tenant", "created_by").get(pk=job_id)
        if job.status not in (ImportStatus.QUEUED, ImportStatus.RUNNING):
            return job
        now = timezone.now()
        job.status, job.started_at = ImportStatus.RUNNING, job.started_at or now
        ImportJob.objects.filter(pk=job.pk).update(status=job.status, started_at=job.started_at)
        resource = job_resource(job)
        user = job.confirmed_by if not job.dry_run else job.created_by
        for offset, headers, rows in _chunks(job):
            dataset, refused = _dataset(headers, rows, offset)
            resource.row_offset = offset
            result = resource.import_data(
                dataset,
                dry_run=job.dry_run,
                # Dry run: the chunk in one transaction, rolled back. For real: each row is its
                # own transaction (the services', or the resource's own), committed as it goes.
                use_transactions=job.dry_run,
                raise_errors=False,
                user=user,
            )
            if result.has_errors() and result.base_errors:
                _fail(job, "; ".join(str(error.error) for error in result.base_errors))
                return job
            _chunk_record(job, result, offset, refused, len(rows))
        job.status = ImportStatus.PREVIEWED if job.dry_run else ImportStatus.DONE
        job.finished_at = timezone.now()
        if job.dry_run:
            job.preview = _counts(job)
        ImportJob.objects.filter(pk=job.pk).update(
            status=job.status, finished_at=job.finished_at, preview=job.preview
        )
        if not job.dry_run:
            with transaction.atomic():
                _file_drop(job)
        return job


def _counts(job: ImportJob) -> dict[str, int]:
    return {
        "total": job.rows_total,
        "processed": job.rows_processed,
        "created": job.rows_created,
        "skipped": job.rows_skipped,
        "errors": job.rows_errors,
    }


def _chunk_record(
    job: ImportJob, result: Result, offset: int, refused: list[Any], rows: int
) -> None:
    totals = result.totals
    refused_rows = {item["row"] for item in refused}
    errors = [item for item in _errors_of(result, offset) if item["row"] not in refused_rows]
    errors = sorted(errors + refused, key=lambda item: item["row"])
    job.rows_processed = min(offset + rows, job.rows_total)
    job.rows_created += totals[RowResult.IMPORT_TYPE_NEW] + totals[RowResult.IMPORT_TYPE_UPDATE]
    job.rows_skipped += totals[RowResult.IMPORT_TYPE_SKIP]
    job.rows_errors += len(errors)
    job.errors = (job.errors + errors)[:ERRORS_KEPT]
    job.progress_at = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(
        rows_processed=job.rows_processed,
        rows_created=job.rows_created,
        rows_skipped=job.rows_skipped,
        rows_errors=job.rows_errors,
        errors=job.errors,
        progress_at=job.progress_at,
    )


def _fail(job: ImportJob, why: str) -> None:
    job.status, job.failure, job.finished_at = ImportStatus.FAILED, why, timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(
        status=job.status, failure=why, finished_at=job.finished_at
    )
