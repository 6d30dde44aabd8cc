"""The right of access: staff export everything held about a member, as JSON or a printable page,
for a verified access request; every export is recorded (who, when, what, why)."""

import json
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.test import override_settings

from coalition.errors import InvalidRequest
from coalition.models import ExpiryNotice, Journal, NoticeStatus, OutboxMessage
from coalition.services import points_burn, points_earn
from coalition.services.notices import expiry_notices_queue, expiry_notices_send
from consent.models import (
    ConsentChannel,
    ConsentPurpose,
    DataAccess,
    DataAccessAction,
    PrivacyRequest,
    PrivacyRequestKind,
)
from consent.services import consent_notice_publish, consents_record
from consent.services.access import member_access_export
from consent.services.privacy import privacy_request_open, privacy_request_verify
from members.models import Identifier, IdentifierKind, Member
from members.selectors import member_reference_for_tenant
from members.services import members_merge
from members.tests.factories import MemberFactory

IST = ZoneInfo("Asia/Kolkata")
PHONE = "+919812345678"
EMAIL = "asha.rao@example.com"
OLD_PHONE = "+919800000002"


def at(year, month, day, hour=12):
    return datetime(year, month, day, hour, tzinfo=IST)


@pytest.fixture
def shopper(coalition, till_a, till_b, staff) -> Member:
    """Given a shopper enrolled at tenant A's till, with an older record merged in, a consent
    history across two notice versions, an earn, a burn and an expiry notice sent by email."""
    shopper = MemberFactory.create(
        coalition=coalition, name="Asha Rao", phone=PHONE, email=EMAIL, adult=True,
        till=till_a, channel=ConsentChannel.TILL, now=at(2025, 1, 5),
    )  # fmt: skip
    older = MemberFactory.create(
        coalition=coalition, name="Asha R.", phone=OLD_PHONE, email=None, now=at(2025, 1, 6)
    )
    points_earn(
        till=till_a, member=older, amount=Decimal("1000.00"), receipt="A-0900",
        occurred_at=at(2025, 1, 15), now=at(2025, 1, 15),
    )  # fmt: skip
    members_merge(
        survivor=shopper, merged=older, actor=staff, reason="Same person", now=at(2025, 1, 20)
    )
    consents_record(member=shopper, consents={"marketing_mall": True}, at=at(2025, 1, 5, 13))
    marketing = ConsentPurpose.objects.get(coalition=coalition, code="marketing_mall")
    consent_notice_publish(purpose=marketing, version="v2", texts={"en": "Offers by SMS, weekly."})
    consents_record(
        member=shopper, consents={"marketing_mall": False, "analytics": True}, by_user=staff,
        at=at(2025, 3, 1),
    )  # fmt: skip
    points_earn(
        till=till_a, member=shopper, amount=Decimal("4000.00"), receipt="A-1001",
        occurred_at=at(2025, 1, 10), now=at(2025, 1, 10),
    )  # fmt: skip
    points_burn(
        till=till_b, member=shopper, points=15, bill_amount=Decimal("600.00"), receipt="F-77",
        occurred_at=at(2025, 2, 10), now=at(2025, 2, 10),
    )  # fmt: skip
    assert expiry_notices_queue(now=at(2025, 12, 25)) == 1
    assert expiry_notices_send(now=at(2025, 12, 25)) == {NoticeStatus.SENT: 1}
    shopper.refresh_from_db()
    return shopper


@pytest.fixture
def access_request(shopper, staff) -> PrivacyRequest:
    request = privacy_request_open(
        member=shopper, kind=PrivacyRequestKind.ACCESS, actor=staff, now=at(2025, 12, 26, 10)
    )
    return privacy_request_verify(
        request=request, actor=staff, note="Saw her ID at the desk.", now=at(2025, 12, 26, 11)
    )


def export(request, staff, fmt):
    return member_access_export(request=request, actor=staff, fmt=fmt, now=at(2025, 12, 26))


def test_the_json_file_holds_everything_and_the_export_is_recorded(
    shopper, access_request, staff, till_a, till_b
):
    older = Member.objects.get(merged_into=shopper)
    cards = list(
        Identifier.objects.filter(kind=IdentifierKind.CARD).values_list("value", flat=True)
    )
    assert len(cards) == 2  # one generated at each enrolment, both the shopper's since the merge
    # When the privacy officer exports the JSON file
    file = export(access_request, staff, "json")
    # Then it is named after the member and the day, and is UTF-8 JSON
    assert file.filename == f"access-{str(shopper.pk)[:8]}-2025-12-26.json"
    assert file.content_type == "application/json; charset=utf-8"
    data = json.loads(file.content.decode("utf-8"))
    assert data["coalition"]["name"] == "Phoenix Mall"
    assert data["generated_at"] == "2025-12-26T12:00:00+05:30"
    assert data["privacy_request"] == {
        "id": access_request.pk,
        "kind": "access",
        "received_at": "2025-12-26T10:00:00+05:30",
        "verified_at": "2025-12-26T11:00:00+05:30",
        "due_on": "2026-01-25",
    }
    # The member, enrolled at tenant A's till, with the merged record named
    person = data["member"]
    assert (person["id"], person["name"], person["status"]) == (
        str(shopper.pk),
        "Asha Rao",
        "active",
    )
    assert person["enrolled_at"] == "2025-01-05T12:00:00+05:30"
    assert person["enrolled_via"] == "till"
    assert person["enrolling_till"] == {
        "tenant": "Apparel Co",
        "store": till_a.store.name,
        "till": "a1",
    }
    assert person["adult_declared"] is True
    assert person["merged_records"] == [str(older.pk)]
    # Every identifier, the merged record's phone included (it followed the merge)
    assert sorted((row["kind"], row["value"]) for row in data["identifiers"]) == sorted(
        [("phone", PHONE), ("email", EMAIL), ("phone", OLD_PHONE)]
        + [("card", value) for value in cards]
    )
    # The consent history with the notice version each event cited, and those texts
    history = [
        (row["member_id"], row["purpose"], row["given"], row["channel"], row["notice_version"],
         row["at"])
        for row in data["consents"]["history"]
    ]  # fmt: skip
    assert history == [
        (str(shopper.pk), "programme", True, "till", "v1", "2025-01-05T12:00:00+05:30"),
        (str(shopper.pk), "marketing_mall", True, "staff", "v1", "2025-01-05T13:00:00+05:30"),
        (str(older.pk), "programme", True, "staff", "v1", "2025-01-06T12:00:00+05:30"),
        (str(shopper.pk), "marketing_mall", False, "staff", "v2", "2025-03-01T12:00:00+05:30"),
        (str(shopper.pk), "analytics", True, "staff", "v1", "2025-03-01T12:00:00+05:30"),
    ]
    texts = {(row["purpose"], row["version"]): row["text"] for row in data["consents"]["notices"]}
    assert set(texts) == {
        ("programme", "v1"), ("marketing_mall", "v1"), ("marketing_mall", "v2"),
        ("analytics", "v1"),
    }  # fmt: skip
    assert texts["marketing_mall", "v2"] == "Offers by SMS, weekly."
    assert texts["marketing_mall", "v1"].startswith("The mall may send me offers")
    current = {
        row["purpose"]: (row["given"], row["notice_version"]) for row in data["consents"]["current"]
    }
    assert current == {
        "programme": (True, "v1"),
        "marketing_mall": (False, "v2"),
        "analytics": (True, "v1"),
    }
    # Balances: 40 + 10 earned, 15 burned; the open lots with their funding tenant
    assert (data["balances"]["points"], data["balances"]["pending"]) == (35, 0)
    lots = [
        (lot["remaining"], lot["expires_on"], lot["funded_by"])
        for lot in data["balances"]["open_lots"]
    ]
    assert lots == [(25, "2026-01-09", "Apparel Co"), (10, "2026-01-14", "Apparel Co")]
    # Transactions of both records, by occurred time, with their signed effect on the balance
    rows = [
        (row["kind"], row["tenant"], row["till"], row["receipt"], row["points"],
         row["points_change"], row["member_id"])
        for row in data["transactions"]
    ]  # fmt: skip
    assert rows == [
        ("earn", "Apparel Co", "a1", "A-1001", 40, 40, str(shopper.pk)),
        ("earn", "Apparel Co", "a1", "A-0900", 10, 10, str(older.pk)),
        ("merge", None, None, "", 10, 0, str(older.pk)),
        ("burn", "Food Court", "b1", "F-77", 15, -15, str(shopper.pk)),
    ]
    assert data["transactions"][0]["amount"] == "4000.00"
    assert data["transactions"][3]["value"] == "15.00"
    assert data["transactions"][0]["occurred_at"] == "2025-01-10T12:00:00+05:30"
    # The expiry notice sent by email
    notice = ExpiryNotice.objects.get()
    assert [
        (
            row["id"],
            row["points"],
            row["first_expiry"],
            row["channel"],
            row["status"],
            row["sent_at"],
        )
        for row in data["notices_sent"]
    ] == [(notice.pk, 35, "2026-01-09", "email", "sent", "2025-12-25T12:00:00+05:30")]
    # Privacy requests, this one included, with the staff's notes
    assert [
        (row["id"], row["kind"], row["status"], row["note"]) for row in data["privacy_requests"]
    ] == [(access_request.pk, "access", "verified", "Saw her ID at the desk.")]
    # Recipients: the operator, each tenant with its count and masked reference, the processor
    recipients = data["recipients"]
    assert recipients["operator"]["name"] == "Phoenix Mall"
    tenants = {row["tenant"]: row for row in recipients["tenants"]}
    assert set(tenants) == {"Apparel Co", "Food Court"}
    assert tenants["Apparel Co"]["transactions"] == 2
    assert tenants["Apparel Co"]["masked_references"] == [
        member_reference_for_tenant(till_a.tenant_id, shopper.pk),
        member_reference_for_tenant(till_a.tenant_id, older.pk),
    ]
    assert any("enrolled at its till" in text for text in tenants["Apparel Co"]["received"])
    assert tenants["Food Court"]["transactions"] == 1
    assert tenants["Food Court"]["masked_references"] == [
        member_reference_for_tenant(till_b.tenant_id, shopper.pk)
    ]
    assert all("never your name, phone or email" in row["received"][-1] for row in tenants.values())
    assert [
        (row["channel"], row["adapter"], row["notices"], row["identifiers"])
        for row in recipients["processors"]
    ] == [("email", "coalition.channels.EmailChannel", 1, [EMAIL])]
    assert mail.outbox[0].to == [EMAIL]  # the address the processor really received
    # And the export is recorded once: who, when, what, why
    record = DataAccess.objects.get()
    assert (record.action, record.member, record.request, record.user, record.at) == (
        DataAccessAction.ACCESS_EXPORT, shopper, access_request, staff, at(2025, 12, 26),
    )  # fmt: skip
    assert record.what.startswith("identifiers, consents, transactions, balances, notices")
    assert record.why == f"Access request {access_request.pk}"


def test_the_html_page_shows_the_same_values(shopper, access_request, staff):
    cards = list(
        Identifier.objects.filter(kind=IdentifierKind.CARD).values_list("value", flat=True)
    )
    file = export(access_request, staff, "html")
    assert file.filename == f"access-{str(shopper.pk)[:8]}-2025-12-26.html"
    assert file.content_type == "text/html; charset=utf-8"
    page = file.content.decode("utf-8")
    assert page.startswith("<!doctype html>")
    assert "<h1>Your personal data</h1>" in page and "Phoenix Mall" in page
    for value in (str(shopper.pk), "Asha Rao", PHONE, EMAIL, OLD_PHONE, *cards):
        assert value in page, value
    # Moments are written for people, in the mall's time zone
    assert "2025-01-10 12:00 (UTC+05:30)" in page
    assert "Offers by SMS, weekly." in page
    for value in ("A-1001", "F-77", "A-0900", "4000.00", "Apparel Co", "Food Court"):
        assert value in page, value
    for journal in Journal.objects.all():
        assert str(journal.public_id) in page  # the id a member can quote back to us
    assert "<tr><th>Points you can spend</th><td>35</td></tr>" in page
    assert "Saw her ID at the desk." in page
    assert "Email delivery service" in page and "coalition.channels.EmailChannel" in page
    assert "https://" not in page  # standalone: nothing fetched from elsewhere
    assert DataAccess.objects.filter(action=DataAccessAction.ACCESS_EXPORT).count() == 1


def test_a_member_s_values_are_escaped_in_the_page(coalition, staff):
    member = MemberFactory.create(coalition=coalition, name="<script>alert(1)</script>")
    request = privacy_request_open(member=member, kind=PrivacyRequestKind.ACCESS, actor=staff)
    request = privacy_request_verify(request=request, actor=staff, note="ID checked")
    page = member_access_export(request=request, actor=staff, fmt="html").content.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@override_settings(EXPIRY_NOTICE_CHANNELS=["sms"])
def test_an_sms_processor_is_named_with_the_phone_it_received(coalition, till_a, staff):
    member = MemberFactory.create(coalition=coalition, phone=PHONE, now=at(2025, 1, 5))
    points_earn(
        till=till_a, member=member, amount=Decimal("500.00"), receipt="1",
        occurred_at=at(2025, 1, 10), now=at(2025, 1, 10),
    )  # fmt: skip
    expiry_notices_queue(now=at(2025, 12, 25))
    expiry_notices_send(now=at(2025, 12, 25))
    assert OutboxMessage.objects.get().recipient == PHONE
    request = privacy_request_open(member=member, kind=PrivacyRequestKind.ACCESS, actor=staff)
    request = privacy_request_verify(request=request, actor=staff, note="ID checked")
    data = json.loads(export(request, staff, "json").content)
    assert [
        (row["channel"], row["adapter"], row["identifier_kind"], row["identifiers"])
        for row in data["recipients"]["processors"]
    ] == [("sms", "coalition.channels.SmsOutboxChannel", "phone", [PHONE])]


def test_refused_for_an_erasure_request(shopper, staff):
    request = privacy_request_open(member=shopper, kind=PrivacyRequestKind.ERASURE, actor=staff)
    request = privacy_request_verify(request=request, actor=staff, note="ID checked")
    with pytest.raises(InvalidRequest, match="not an access request"):
        export(request, staff, "json")
    assert not DataAccess.objects.exists()


def test_refused_before_the_requester_is_verified(shopper, staff):
    request = privacy_request_open(member=shopper, kind=PrivacyRequestKind.ACCESS, actor=staff)
    with pytest.raises(InvalidRequest, match="Verify the requester"):
        export(request, staff, "html")
    assert not DataAccess.objects.exists()


def test_refused_once_the_request_is_done_or_in_an_unknown_format(access_request, staff):
    with pytest.raises(InvalidRequest) as refused:
        export(access_request, staff, "pdf")
    assert refused.value.field == "fmt"
    from consent.services.privacy import privacy_request_complete

    privacy_request_complete(request=access_request, actor=staff)
    with pytest.raises(InvalidRequest):
        export(access_request, staff, "json")
    assert not DataAccess.objects.exists()
