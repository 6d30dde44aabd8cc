"""Import jobs: a stored file, a dry run that writes nothing, a confirmed run that writes each
row once, progress committed per chunk, a rerun after a crash that resumes, and the admin pages
staff follow. The worker is called directly (`import_job_run`), as the Celery task does."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from coalition.errors import InvalidRequest
from coalition.models import AccountKind, Coalition, Journal, JournalKind
from coalition.models.imports import ImportJob, ImportKind, ImportStatus
from coalition.services import imports
from coalition.services.imports import (
    import_job_cancel,
    import_job_confirm,
    import_job_create,
    import_job_run,
    import_jobs_resume,
)
from coalition.tasks import import_job_task
from coalition.tests.admin_client import client_for, staff_user
from consent.models import ConsentEvent
from members.models import Member
from tenants.models import Till

HEADER = "phone,email,card,name,adult,marketing_mall,analytics,opening_balance\n"


def members_csv(count: int, bad: tuple[int, ...] = ()) -> str:
    rows = [
        f"98{index:08d},,,Member {index},{'maybe' if index in bad else 'yes'},yes,,{index % 7}\n"
        for index in range(1, count + 1)
    ]
    return HEADER + "".join(rows)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture
def support(db: Any) -> Any:
    """Support staff (who enrol members) also allowed to bring opening balances, which are
    ledger postings (`coalition.import_transactions`)."""
    user = staff_user("helpdesk", "Support")
    user.user_permissions.add(Permission.objects.get(codename="import_transactions"))
    return user


def create(coalition: Coalition, till: Till, user: Any, text: str, **kw: Any) -> ImportJob:
    return import_job_create(
        coalition=coalition,
        kind=kw.pop("kind", ImportKind.MEMBERS),
        tenant=till.tenant,
        upload=SimpleUploadedFile("old.csv", text.encode(), "text/csv"),
        user=user,
        **kw,
    )


def stored(media: Path) -> list[Path]:
    return [path for path in media.rglob("*") if path.is_file()]


def test_dry_run_then_confirm_imports_each_row_once(
    django_capture_on_commit_callbacks: Any,
    coalition: Coalition,
    till_a: Till,
    support: Any,
    media: Path,
    assert_ledger_clean: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    job = create(coalition, till_a, support, members_csv(10, bad=(3, 9)))
    assert (job.status, job.dry_run, job.rows_total) == (ImportStatus.QUEUED, True, 10)
    assert len(stored(media)) == 1  # under MEDIA_ROOT, where an erasure finds it

    ran = import_job_run(job_id=job.pk)

    assert ran is not None and ran.status == ImportStatus.PREVIEWED
    job.refresh_from_db()
    counts = (job.rows_processed, job.rows_created, job.rows_skipped, job.rows_errors)
    assert counts == (10, 8, 0, 2)
    assert job.errors == [
        {"row": 3, "errors": {"adult": ["Write yes or no, not 'maybe'."]}},
        {"row": 9, "errors": {"adult": ["Write yes or no, not 'maybe'."]}},
    ]
    assert job.preview == {"total": 10, "processed": 10, "created": 8, "skipped": 0, "errors": 2}
    assert Member.objects.count() == 0 and not Journal.objects.exists()  # a dry run

    import_job_confirm(job=job, user=support)
    with django_capture_on_commit_callbacks(execute=True):
        ran = import_job_run(job_id=job.pk)

    assert ran is not None and ran.status == ImportStatus.DONE
    job.refresh_from_db()
    assert (job.rows_processed, job.rows_created, job.rows_skipped, job.rows_errors) == (
        10,
        8,
        0,
        2,
    )
    assert Member.objects.count() == 8
    # Member i held i % 7 points: rows 7 has none; rows 3 and 9 were refused.
    openings = Journal.objects.filter(kind=JournalKind.OPENING)
    expected = sorted(i % 7 for i in range(1, 11) if i not in (3, 9) and i % 7)
    assert sorted(openings.values_list("points", flat=True)) == expected
    assert {j.receipt for j in openings} >= {f"import job {job.pk} row 1"}
    assert all(j.created_by_id == support.pk for j in openings)
    assert stored(media) == []  # the file goes once imported
    assert_ledger_clean(coalition)


def test_a_worker_that_dies_resumes_at_its_last_chunk_and_writes_nothing_twice(
    coalition: Coalition,
    till_a: Till,
    support: Any,
    media: Path,
    assert_ledger_clean: Any,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    job = create(coalition, till_a, support, members_csv(8))
    import_job_run(job_id=job.pk)
    import_job_confirm(job=job, user=support)
    # The worker dies while recording its second chunk: its rows committed, its count did not.
    real_record = imports._chunk_record
    calls = []

    def dying(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("worker killed")
        real_record(*args)

    monkeypatch.setattr(imports, "_chunk_record", dying)
    with pytest.raises(SystemExit):
        import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.rows_processed) == (ImportStatus.RUNNING, 3)
    assert Member.objects.count() == 6
    monkeypatch.setattr(imports, "_chunk_record", real_record)

    assert import_job_task(job.pk) == ImportStatus.DONE  # the task, called directly

    job.refresh_from_db()
    # Rows 4-6 ran again and found their members enrolled and balances opened: skipped.
    assert (job.rows_processed, job.rows_created, job.rows_skipped, job.rows_errors) == (
        8,
        5,
        3,
        0,
    )
    assert Member.objects.count() == 8
    assert Journal.objects.filter(kind=JournalKind.OPENING).count() == 7  # row 7 holds 0
    assert ConsentEvent.objects.filter(purpose__code="programme").count() == 8
    assert_ledger_clean(coalition)


def test_the_same_file_twice_creates_nothing_twice(
    coalition: Coalition, till_a: Till, support: Any, media: Path
) -> None:
    for _ in range(2):
        job = create(coalition, till_a, support, members_csv(5))
        import_job_run(job_id=job.pk)
        import_job_confirm(job=job, user=support)
        import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.rows_created, job.rows_skipped) == (0, 5)
    assert job.preview["skipped"] == 5
    assert Member.objects.count() == 5
    total = sum(
        m.accounts.get(kind=AccountKind.MEMBER_POINTS).balance for m in Member.objects.all()
    )
    assert total == 1 + 2 + 3 + 4 + 5


def test_a_wrong_file_is_refused_at_upload_and_nothing_is_stored(
    coalition: Coalition, till_a: Till, support: Any, media: Path
) -> None:
    with pytest.raises(InvalidRequest, match="missing columns: adult"):
        create(coalition, till_a, support, "phone,email,card,name\n98,,,A\n")
    with pytest.raises(InvalidRequest, match="no rows"):
        create(coalition, till_a, support, HEADER)
    desk = staff_user("desk", "Support")  # enrols members, posts nothing to the ledger
    with pytest.raises(InvalidRequest, match="may not import"):
        create(coalition, till_a, desk, members_csv(1), kind=ImportKind.TRANSACTIONS)
    assert not ImportJob.objects.exists()
    assert stored(media) == []


def test_a_cancelled_import_drops_its_file_and_cannot_run(
    coalition: Coalition, till_a: Till, support: Any, media: Path
) -> None:
    job = create(coalition, till_a, support, members_csv(3))
    import_job_run(job_id=job.pk)

    import_job_cancel(job=job, user=support)

    assert job.status == ImportStatus.CANCELLED
    with pytest.raises(InvalidRequest):
        import_job_confirm(job=job, user=support)
    assert import_job_run(job_id=job.pk).status == ImportStatus.CANCELLED  # type: ignore[union-attr]
    assert Member.objects.count() == 0


def test_the_resume_job_wakes_workers_for_jobs_left_waiting(
    coalition: Coalition, till_a: Till, support: Any, media: Path, monkeypatch: Any
) -> None:
    woken: list[int] = []
    monkeypatch.setattr(imports, "import_job_enqueue", lambda *, job_id: woken.append(job_id))
    waiting = create(coalition, till_a, support, members_csv(2))
    done = create(coalition, till_a, support, members_csv(2))
    import_job_run(job_id=done.pk)

    assert import_jobs_resume(now=waiting.created_at) == 0  # just queued: its message is due
    assert import_jobs_resume(now=waiting.created_at + imports.STALE_AFTER * 2) == 1
    assert woken == [waiting.pk]


def test_staff_upload_read_the_dry_run_confirm_and_watch_progress(
    coalition: Coalition, till_a: Till, support: Any, media: Path
) -> None:
    client = client_for(support)
    add = reverse("admin:coalition_importjob_add")
    page = client.get(add)
    assert page.status_code == 200
    kinds = [value for value, _ in page.context["form"].fields["kind"].choices]
    assert kinds == ["members", "transactions"]
    assert b"phone,email,card,name,adult" in page.content  # the formats are on the page

    sent = client.post(
        add,
        {
            "kind": "members",
            "coalition": coalition.pk,
            "tenant": till_a.tenant.pk,
            "file": SimpleUploadedFile("old.csv", members_csv(4, bad=(2,)).encode()),
        },
    )

    job = ImportJob.objects.get()
    assert sent.status_code == 302 and sent["Location"] == reverse(
        "admin:coalition_importjob_change", args=[job.pk]
    )
    waiting = client.get(sent["Location"])
    assert b'<meta http-equiv="refresh" content="3">' in waiting.content
    assert b'<progress class="import-progress" max="4" value="0">' in waiting.content
    import_job_run(job_id=job.pk)  # the worker
    report = client.get(sent["Location"])
    assert b"http-equiv" not in report.content
    assert b"Write yes or no, not &#x27;maybe&#x27;." in report.content
    assert b"Confirm: import 3 rows" in report.content
    assert Member.objects.count() == 0

    confirmed = client.post(reverse("admin:coalition_importjob_confirm", args=[job.pk]))

    assert confirmed.status_code == 302
    job.refresh_from_db()
    assert (job.status, job.dry_run, job.confirmed_by) == (ImportStatus.QUEUED, False, support)
    import_job_run(job_id=job.pk)
    done = client.get(sent["Location"])
    assert b'<progress class="import-progress" max="4" value="4">' in done.content
    assert b"Imported" in done.content
    assert Member.objects.count() == 3
    assert client.get(reverse("admin:coalition_importjob_changelist")).status_code == 200


def test_who_may_import_what(coalition: Coalition, till_a: Till, support: Any, media: Path) -> None:
    job = create(coalition, till_a, support, members_csv(1))
    finance = client_for(staff_user("money", "Finance"))  # imports nothing

    assert finance.get(reverse("admin:coalition_importjob_add")).status_code == 403
    assert finance.get(reverse("admin:coalition_importjob_change", args=[job.pk])).status_code in (
        302,
        403,
        404,
    )
    refused = finance.post(reverse("admin:coalition_importjob_confirm", args=[job.pk]))
    assert refused.status_code in (403, 404)
    job.refresh_from_db()
    assert job.status == ImportStatus.QUEUED
