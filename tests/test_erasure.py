"""Erasure: a member's name, phone, email and card leave every copy, the ledger still adds up.

The proof the issue asks for is `test_markers_are_nowhere_after_erasure`: marker values that
appear nowhere else go through a till enrolment, a batch line, an import preview, an expiry
notice, a staff view and an access export; after the erasure a `pg_dump --data-only` of the test
database and a search of the media folder find none of them.
"""

import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from coalition.models import AccountKind, Batch, Coalition, Journal, JournalKind, Lot
from coalition.services import points_earn
from coalition.services.batches import batch_process
from coalition.services.ledger import coalition_account
from coalition.services.notices import expiry_notices_queue, expiry_notices_send
from coalition.services.staff import PRIVACY_OFFICER, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import client_for, staff_user
from consent.models import (
    ConsentPurpose,
    DataAccess,
    DataAccessAction,
    PrivacyRequest,
    PrivacyRequestKind,
    PrivacyRequestSource,
    PrivacyRequestStatus,
)
from consent.selectors import consent_state
from consent.services import consents_record
from consent.services.erasure import member_erase
from consent.services.privacy import (
    privacy_erasures_run,
    privacy_request_complete,
    privacy_request_open,
    privacy_request_verify,
)
from members.models import Identifier, Member, MemberStatus
from members.services import member_enrol
from tenants.models import Till
from tests.till_api import till_client

NAME = "Quillon Zarathustrova"
PHONE_LOCAL = "90000 12345"
PHONE = "+919000012345"
EMAIL = "quillon.zq7@erasure-marker.example"


def enrolled(coalition: Coalition, **extra: Any) -> Member:
    return member_enrol(
        coalition=coalition,
        consents={ConsentPurpose.PROGRAMME: True, ConsentPurpose.MARKETING_MALL: True},
        phone=PHONE,
        email=EMAIL,
        name=NAME,
        adult=True,
        **extra,
    )


def test_erasure_forfeits_frees_and_is_idempotent(
    coalition: Coalition, till_a: Till, staff: Any, assert_ledger_clean: Callable[..., None]
) -> None:
    # Given a member with spendable points
    member = enrolled(coalition)
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="R-1")
    forfeit = coalition_account(coalition.pk, AccountKind.FORFEIT)
    # When they are erased
    done = member_erase(member=member, actor=staff, why="asked at the desk")
    # Then the points are forfeited by one journal, the lots are empty, the ledger adds up
    assert done.points_forfeited == 40
    journal = Journal.objects.get(member=member, kind=JournalKind.FORFEIT)
    assert journal.points == 40 and journal.created_by == staff
    assert list(journal.entries.filter(account=forfeit).values_list("points", flat=True)) == [40]
    assert sum(lot.remaining for lot in Lot.objects.filter(member=member)) == 0
    assert_ledger_clean(coalition)
    member.refresh_from_db()
    assert (member.status, member.name) == (MemberStatus.ERASED, "")
    assert not Identifier.objects.filter(member=member).exists()
    assert done.identifiers_freed == 3  # phone, email and the card enrolment generated
    assert consent_state(member) == {
        ConsentPurpose.PROGRAMME: False,
        ConsentPurpose.MARKETING_MALL: False,
    }
    # and the identifiers are free to enrol again, as a new member
    again = enrolled(coalition)
    assert again.pk != member.pk
    # and a second erasure finds nothing left to do
    twice = member_erase(member=member, actor=staff, why="again")
    assert twice.points_forfeited == 0
    assert twice.identifiers_freed == 0
    assert twice.consents_withdrawn == 0
    assert Journal.objects.filter(member=member, kind=JournalKind.FORFEIT).count() == 1
    assert_ledger_clean(coalition)
    # and each erasure is on the privacy officer's trail
    assert DataAccess.objects.filter(member=member, action=DataAccessAction.ERASURE).count() == 2


def test_withdrawing_programme_consent_starts_an_erasure(
    coalition: Coalition, till_a: Till, staff: Any, assert_ledger_clean: Callable[..., None]
) -> None:
    member = enrolled(coalition)
    points_earn(till=till_a, member=member, amount=Decimal("1000.00"), receipt="R-2")
    # When the member withdraws consent to the programme
    with transaction.atomic():
        consents_record(member=member, consents={ConsentPurpose.PROGRAMME: False}, by_user=staff)
    # Then the membership ends and a verified erasure request is due today
    member.refresh_from_db()
    assert member.status == MemberStatus.WITHDRAWN
    request = PrivacyRequest.objects.get(member=member)
    assert (request.kind, request.source, request.status) == (
        PrivacyRequestKind.ERASURE,
        PrivacyRequestSource.WITHDRAWAL,
        PrivacyRequestStatus.VERIFIED,
    )
    # and the job carries it out (once)
    assert privacy_erasures_run() == 1
    assert privacy_erasures_run() == 0
    member.refresh_from_db()
    request.refresh_from_db()
    assert member.status == MemberStatus.ERASED and member.name == ""
    assert request.status == PrivacyRequestStatus.DONE
    assert request.outcome["points_forfeited"] == 10
    assert_ledger_clean(coalition)


def test_the_audit_tables_refuse_changes_outside_an_erasure(
    coalition: Coalition, staff: Any
) -> None:
    member = enrolled(coalition)
    entry = LogEntry.objects.filter(object_pk=str(member.pk)).first()
    assert entry is not None and NAME in str(entry.changes)
    record = DataAccess.objects.create(
        at=timezone.now(),
        user=staff,
        action=DataAccessAction.VIEW,
        member=member,
        what="x",
        why="y",
    )
    for statement, params in (
        ("UPDATE auditlog_logentry SET object_repr = 'x' WHERE id = %s", [entry.pk]),
        ("DELETE FROM auditlog_logentry WHERE id = %s", [entry.pk]),
        ("UPDATE consent_dataaccess SET why = 'x' WHERE id = %s", [record.pk]),
        ("DELETE FROM consent_dataaccess WHERE id = %s", [record.pk]),
    ):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, params)


# -- the proof -----------------------------------------------------------------------------


def pg_dump_text() -> str:
    """`pg_dump --data-only` of the test database, through a separate connection (the test
    commits: it is a transaction=True test)."""
    db = connection.settings_dict
    binary = shutil.which("pg_dump")
    assert binary, "pg_dump is needed for this test (Debian: postgresql-client)"
    command = [
        binary,
        "--data-only",
        "--no-owner",
        "-d",
        db["NAME"],
        "-U",
        db["USER"] or "postgres",
    ]
    if db.get("HOST"):
        command += ["-h", db["HOST"], "-p", str(db.get("PORT") or 5432)]
    env = {"PGPASSWORD": db.get("PASSWORD") or "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def markers_in(text: str, markers: list[str]) -> list[str]:
    return [marker for marker in markers if re.search(re.escape(marker), text, re.IGNORECASE)]


@pytest.mark.django_db(transaction=True)
def test_markers_are_nowhere_after_erasure(
    coalition: Coalition,
    till_a: Till,
    tmp_path: Path,
    settings: Any,
    assert_ledger_clean: Callable[..., None],
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    support = staff_user("support-m", SUPPORT)
    officer = staff_user("privacy-m", PRIVACY_OFFICER)
    api = till_client(till_a)

    # Given a member enrolled at a till with marker values
    response = api.post(
        "members",
        {
            "phone": PHONE_LOCAL,
            "email": EMAIL.upper(),
            "name": NAME,
            "adult": True,
            "consents": {"programme": True, "marketing_mall": True},
        },
    )
    assert response.status_code == 201, response.content
    card = response.json()["card"]
    member = Member.objects.get(pk=response.json()["id"])
    markers = [NAME, "Zarathustrova", PHONE, "9000012345", PHONE_LOCAL, EMAIL, card]

    # who earns at the till and through a batch line written the way the till writes phones
    api.post(
        "earn",
        {"member": {"card": card}, "amount": "5000.00", "currency": "INR", "receipt": "E-1"},
    )
    batch = api.post(
        "batches",
        raw=(
            "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\r\n"
            f"earn,E-2,,,{PHONE_LOCAL},,1500.00,,\r\n"
        ).encode(),
        content_type="text/csv",
    )
    assert batch.status_code == 202, batch.content
    batch_process(batch_id=Batch.objects.get(public_id=batch.json()["id"]).pk)
    # whose points are about to expire: a notice goes to the phone
    Lot.objects.filter(member=member).update(expires_on=timezone.localdate() + timedelta(days=5))
    assert expiry_notices_queue() == 1
    expiry_notices_send()
    # whom support looked up, typing the name into the reason
    support_client = client_for(support)
    reveal = support_client.post(
        f"/admin/members/member/{member.pk}/reveal/",
        {"reason": "other", "detail": f"{NAME} asked about points"},
    )
    assert reveal.status_code == 302
    page = support_client.get(f"/admin/members/member/{member.pk}/change/")
    assert NAME in page.content.decode() and PHONE in page.content.decode()
    # and who is in a tenant's old-programme file that support previewed but never confirmed
    # (its file waits in the media folder), next to a file about someone else
    header = "phone,email,card,name,adult,marketing_mall,analytics\n"
    for text in (
        f"{header}{PHONE_LOCAL},,,,yes,yes,\n",
        f"{header}91111 11111,,,Else,yes,,\n",
    ):
        preview = support_client.post(
            reverse("admin:members_member_import"),
            {
                "resource": "0",
                "coalition": str(coalition.pk),
                "format": "0",
                "import_file": SimpleUploadedFile("old.csv", text.encode(), "text/csv"),
            },
        )
        assert preview.status_code == 200 and "confirm_form" in preview.context
    waiting = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    assert len(waiting) == 2
    # and who asked for their file, which the privacy officer exported
    officer_client = client_for(officer)
    access = privacy_request_open(member=member, kind="access", actor=officer, note=f"{NAME}")
    privacy_request_verify(request=access, actor=officer, note="ID seen at the desk")
    exported = officer_client.post(f"/admin/consent/privacyrequest/{access.pk}/file/json/")
    assert exported.status_code == 200 and EMAIL in exported.content.decode()
    privacy_request_complete(request=access, actor=officer)
    # and who is in the mall's marketing audience, exported by a programme manager
    marketing = ConsentPurpose.objects.get(coalition=coalition, code=ConsentPurpose.MARKETING_MALL)
    audience = client_for(staff_user("manager-m", PROGRAMME_MANAGER)).post(
        reverse("admin:consent_consentpurpose_audience", args=[marketing.pk]),
        {"why": "November newsletter"},
    )
    assert audience.status_code == 200 and PHONE in audience.content.decode()
    # Every copy holds the markers before the erasure (the test can see them)
    before = pg_dump_text()
    assert set(markers_in(before, markers)) == set(markers)
    assert PHONE_LOCAL.encode() in b"".join(p.read_bytes() for p in waiting)  # as typed

    # When the privacy officer takes an erasure request through received → verified → done
    opened = officer_client.post(
        "/admin/consent/privacyrequest/add/",
        {"member": str(member.pk), "kind": "erasure", "note": "Asked at the desk."},
    )
    assert opened.status_code == 302, opened.content
    request = PrivacyRequest.objects.get(member=member, kind=PrivacyRequestKind.ERASURE)
    assert request.due_on == timezone.localdate() + timedelta(days=coalition.privacy_request_days)
    base = f"/admin/consent/privacyrequest/{request.pk}/step"
    assert officer_client.post(f"{base}/erase/", {}).status_code == 200  # not verified yet
    assert officer_client.post(f"{base}/verify/", {"note": "OTP to phone"}).status_code == 302
    assert officer_client.post(f"{base}/erase/", {}).status_code == 302

    # Then nothing in the database or the media folder holds a marker
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.DONE
    assert request.outcome["points_forfeited"] == 65
    after = pg_dump_text()
    assert markers_in(after, markers) == []
    media = b"".join(p.read_bytes() for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())
    assert markers_in(media.decode(), markers) == []
    assert len([p for p in waiting if p.exists()]) == 1  # the file about someone else stays
    # and the ledger still adds up, with the entries under the member's opaque id
    assert_ledger_clean(coalition)
    assert str(member.pk) in after
    assert Journal.objects.filter(member=member).count() == 3  # earn, batch earn, forfeit
    # and a till asking about the old card is told there is no such member
    lookup = api.get("members/lookup", card=card)
    assert lookup.status_code == 404
