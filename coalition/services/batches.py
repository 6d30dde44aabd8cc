"""Batch files: recorded line by line before anything is queued, then posted by a worker.

Each line is posted in its own transaction together with its result, so a worker killed half
way leaves every line either posted-and-marked or untouched; the rerun takes only the untouched
ones. A line whose receipt was already posted with the same content is `accepted` with the
original transaction: nothing is posted twice.
"""

import hashlib
import logging
from datetime import datetime, timedelta
from functools import partial

from django.db import OperationalError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from coalition.batchfile import ParsedLine, batchfile_parse
from coalition.claims import job_claim
from coalition.errors import DomainError, DuplicateReceipt
from coalition.models import Batch, BatchLine, BatchStatus, Journal, JournalKind, LineStatus
from coalition.retry import conflict_retry, is_conflict, sqlstate
from coalition.services.ledger import Posting
from coalition.services.points import points_burn, points_earn
from coalition.wake import worker_wake
from members.selectors import MemberRef, member_find
from tenants.models import Till

logger = logging.getLogger(__name__)

PROCESS_TASK = "coalition.tasks.batch_process_task"
# A queued batch older than this, or one whose worker died, is taken up again by the resume job.
STALE_AFTER = timedelta(minutes=5)


@transaction.atomic
def batch_create(*, till: Till, content: bytes, now: datetime | None = None) -> Batch:
    """Record a batch file and its lines, then (after commit) wake a worker to post them.

    A file that cannot be taken as a whole raises InvalidRequest; a line with a wrong shape is
    recorded as rejected with its errors.
    """
    now = now or timezone.now()
    parsed = batchfile_parse(content)
    batch = Batch.objects.create(
        till=till,
        file_sha256=hashlib.sha256(content).hexdigest(),
        file_size=len(content),
        lines_total=len(parsed),
        created_at=now,
    )
    BatchLine.objects.bulk_create((_line(batch, line) for line in parsed), batch_size=2000)
    transaction.on_commit(lambda: batch_enqueue(batch_id=batch.pk))
    return batch


def _line(batch: Batch, parsed: ParsedLine) -> BatchLine:
    line = BatchLine(
        batch=batch,
        line=parsed.line,
        kind=parsed.kind[:10],
        receipt=parsed.receipt,
        occurred_at=parsed.occurred_at,
        card=parsed.card,
        phone=parsed.phone,
        email=parsed.email,
        amount=parsed.amount,
        points=parsed.points,
        bill_amount=parsed.bill_amount,
    )
    if parsed.errors:
        line.status = LineStatus.REJECTED
        line.problem = "validation-error"
        line.detail = "; ".join(f"{name}: {message}" for name, message in parsed.errors.items())
    return line


def batch_enqueue(*, batch_id: int) -> None:
    """Wake a worker. If the broker is down the batch is still a row; `batches_resume` finds it."""
    worker_wake(PROCESS_TASK, [batch_id], left_to="batches_resume")


def batch_process(*, batch_id: int, now: datetime | None = None) -> Batch | None:
    """Post every line of a batch that is still queued. Safe to run twice or at once: one
    process holds the batch's claim, and lines already decided are never touched again."""
    with job_claim(f"batch:{batch_id}") as held:
        if not held:
            logger.info("batch %s is being processed elsewhere", batch_id)
            return None
        batch = Batch.objects.select_related("till__tenant__coalition", "till__store").get(
            pk=batch_id
        )
        if batch.status == BatchStatus.DONE:
            return batch
        Batch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.PROCESSING, started_at=batch.started_at or timezone.now()
        )
        pending = BatchLine.objects.filter(batch=batch, status=LineStatus.QUEUED).order_by("line")
        for line in pending.iterator(chunk_size=500):
            try:
                conflict_retry(
                    partial(batch_line_post, till=batch.till, line=line, now=now),
                    what=f"batch {batch_id} line {line.line}",
                )
            except OperationalError as exc:
                if not is_conflict(exc):
                    raise
                # The line kept losing a race: it stays queued with the reason, the batch stays
                # `processing` (in file order: later lines wait), and `batches_resume` retries.
                BatchLine.objects.filter(pk=line.pk, status=LineStatus.QUEUED).update(
                    problem="try-again", detail=f"Not posted yet: {exc}"
                )
                logger.error(
                    "batch %s stopped at line %s (sqlstate %s)", batch_id, line.line, sqlstate(exc)
                )
                batch.refresh_from_db()
                return batch
        counts = BatchLine.objects.filter(batch=batch).aggregate(
            accepted=Count("pk", filter=Q(status=LineStatus.ACCEPTED)),
            rejected=Count("pk", filter=Q(status=LineStatus.REJECTED)),
        )
        Batch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.DONE,
            lines_accepted=counts["accepted"],
            lines_rejected=counts["rejected"],
            finished_at=timezone.now(),
        )
        batch.refresh_from_db()
        return batch


@transaction.atomic
def batch_line_post(*, till: Till, line: BatchLine, now: datetime | None = None) -> BatchLine:
    """Post one line exactly as the live endpoint would, and record the result with it."""
    try:
        with transaction.atomic():
            posting = _post(till, line, now)
        line.status, line.journal = LineStatus.ACCEPTED, posting.journal
        line.problem = line.detail = ""  # a try-again noted by an earlier run
    except DuplicateReceipt as exc:
        original = _same_line_posted(till, line)
        if original is not None:
            line.status, line.journal = LineStatus.ACCEPTED, original
        else:
            line.status, line.problem, line.detail = LineStatus.REJECTED, exc.problem, exc.detail
    except DomainError as exc:
        line.status, line.problem, line.detail = LineStatus.REJECTED, exc.problem, exc.detail
    # The guard makes a concurrent second poster (which the claim rules out) a no-op.
    BatchLine.objects.filter(pk=line.pk, status=LineStatus.QUEUED).update(
        status=line.status, journal=line.journal, problem=line.problem, detail=line.detail
    )
    return line


def _member_ref(line: BatchLine) -> MemberRef:
    for kind in ("card", "phone", "email"):
        value = getattr(line, kind)
        if value:
            return MemberRef(kind, value)
    raise AssertionError("a queued line names exactly one member")


def _post(till: Till, line: BatchLine, now: datetime | None) -> Posting:
    if line.kind == JournalKind.EARN:
        assert line.amount is not None
        return points_earn(
            till=till,
            member=_member_ref(line),
            amount=line.amount,
            receipt=line.receipt,
            occurred_at=line.occurred_at,
            now=now,
        )
    assert line.points is not None and line.bill_amount is not None
    return points_burn(
        till=till,
        member=_member_ref(line),
        points=line.points,
        bill_amount=line.bill_amount,
        receipt=line.receipt,
        occurred_at=line.occurred_at,
        now=now,
    )


def _same_line_posted(till: Till, line: BatchLine) -> Journal | None:
    """The journal this receipt was posted as, if it is this very line sent again."""
    journal = Journal.objects.filter(
        store_id=till.store_id, kind=line.kind, receipt=line.receipt.strip()
    ).first()
    if journal is None:
        return None
    try:
        member = member_find(till.tenant.coalition, **_member_ref(line).__dict__)
    except DomainError:
        return None
    same = journal.member_id == member.pk and (
        journal.amount == line.amount
        if line.kind == JournalKind.EARN
        else (journal.points == line.points and journal.bill_amount == line.bill_amount)
    )
    return journal if same else None


def batches_resume(*, now: datetime | None = None) -> int:
    """Queue again the batches whose message was lost or whose worker died; returns how many."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    stale = Batch.objects.filter(
        Q(status=BatchStatus.QUEUED, created_at__lt=cutoff)
        | Q(status=BatchStatus.PROCESSING, started_at__lt=cutoff)
    ).values_list("pk", flat=True)
    ids = list(stale)
    for batch_id in ids:
        batch_enqueue(batch_id=batch_id)
    return len(ids)
