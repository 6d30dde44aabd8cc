"""Each staff role can do its privacy-related job and nothing else it should not.

Support finds members, sees their balances and (recorded) their personal data, but cannot export
anything or open the privacy officer's screens; only the privacy officer handles access and
erasure requests and reads the audit trail; the programme manager exports marketing audiences.
"""

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from coalition.models import Coalition
from coalition.services import points_earn
from coalition.services.staff import FINANCE, PRIVACY_OFFICER, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import client_for, staff_user
from consent.models import ConsentPurpose, DataAccess, DataAccessAction, PrivacyRequestStatus
from consent.services.privacy import privacy_request_open, privacy_request_verify
from members.models import Member
from members.services import member_enrol
from tenants.models import Till

ROLES = (PROGRAMME_MANAGER, FINANCE, SUPPORT, PRIVACY_OFFICER)


@pytest.fixture
def shopper(coalition: Coalition, till_a: Till) -> Member:
    member = member_enrol(
        coalition=coalition,
        consents={ConsentPurpose.PROGRAMME: True, ConsentPurpose.MARKETING_MALL: True},
        phone="+919812312345",
        name="Asha Verma",
        adult=True,
    )
    points_earn(till=till_a, member=member, amount=Decimal("2300.00"), receipt="R-9")
    return member


@pytest.fixture
def clients(db: Any) -> dict[str, Client]:
    return {role: client_for(staff_user(role.lower().replace(" ", "-"), role)) for role in ROLES}


def status(client: Client, url: str, method: str = "get", data: Any = None) -> int:
    response = getattr(client, method)(url, data or {})
    return int(response.status_code)


def test_support_finds_a_member_by_phone_and_sees_the_balance_but_not_the_name(
    clients: dict[str, Client], shopper: Member
) -> None:
    # When support searches the member list by the phone as a shopper says it
    page = clients[SUPPORT].get(reverse("admin:members_member_changelist"), {"q": "98123 12345"})
    # Then the member is found with the balance, the name and phone masked
    body = page.content.decode()
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [shopper]
    assert '<td class="field-balance">23</td>' in body
    assert "Asha Verma" not in body and "+919812312345" not in body
    assert "A. V." in body


def test_support_sees_personal_data_only_with_a_recorded_reason(
    clients: dict[str, Client], shopper: Member
) -> None:
    client = clients[SUPPORT]
    change = reverse("admin:members_member_change", args=[shopper.pk])
    assert "Asha Verma" not in client.get(change).content.decode()
    # A reveal without a reason is refused and records nothing
    client.post(reverse("admin:members_member_reveal", args=[shopper.pk]), {"reason": "other"})
    assert not DataAccess.objects.exists()
    # With a reason, the page shows it in full and the view is on the trail
    client.post(reverse("admin:members_member_reveal", args=[shopper.pk]), {"reason": "desk"})
    body = client.get(change).content.decode()
    assert "Asha Verma" in body and "+919812312345" in body
    record = DataAccess.objects.get()
    assert record.user is not None
    assert (record.action, record.member_id, record.user.username, record.why) == (
        DataAccessAction.VIEW,
        shopper.pk,
        "support",
        "The shopper is at the desk",
    )


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:consent_privacyrequest_changelist",
        "admin:consent_privacyrequest_add",
        "admin:consent_dataaccess_changelist",
        "admin:auditlog_logentry_changelist",
        "admin:consent_consentevent_changelist",
    ],
)
def test_only_the_privacy_officer_opens_requests_and_the_audit_trail(
    clients: dict[str, Client], url_name: str
) -> None:
    url = reverse(url_name)
    assert {role: status(client, url) for role, client in clients.items()} == {
        PROGRAMME_MANAGER: 403,
        FINANCE: 403,
        SUPPORT: 403,
        PRIVACY_OFFICER: 200,
    }


def test_only_the_privacy_officer_exports_a_members_file_or_erases(
    clients: dict[str, Client], shopper: Member, staff: Any
) -> None:
    access = privacy_request_open(member=shopper, kind="access", actor=staff)
    privacy_request_verify(request=access, actor=staff, note="OTP")
    erasure = privacy_request_open(member=shopper, kind="erasure", actor=staff)
    privacy_request_verify(request=erasure, actor=staff, note="OTP")
    file_url = reverse("admin:consent_privacyrequest_file", args=[access.pk, "json"])
    erase_url = reverse("admin:consent_privacyrequest_step", args=[erasure.pk, "erase"])
    for role in (PROGRAMME_MANAGER, FINANCE, SUPPORT):
        assert status(clients[role], file_url, "post") == 403, role
        assert status(clients[role], erase_url, "post") == 403, role
    shopper.refresh_from_db()
    assert shopper.name == "Asha Verma"
    assert not DataAccess.objects.exists()
    # The privacy officer can do both
    officer = clients[PRIVACY_OFFICER]
    produced = officer.post(file_url)
    assert produced.status_code == 200
    assert produced["Content-Disposition"].startswith('attachment; filename="access-')
    assert b"+919812312345" in produced.content
    assert status(officer, erase_url, "post") == 302
    erasure.refresh_from_db()
    assert erasure.status == PrivacyRequestStatus.DONE
    assert set(DataAccess.objects.values_list("action", flat=True)) == {
        DataAccessAction.ACCESS_EXPORT,
        DataAccessAction.ERASURE,
    }


def test_only_the_programme_manager_exports_a_marketing_audience(
    clients: dict[str, Client], shopper: Member, coalition: Coalition
) -> None:
    purpose = ConsentPurpose.objects.get(coalition=coalition, code=ConsentPurpose.MARKETING_MALL)
    url = reverse("admin:consent_consentpurpose_audience", args=[purpose.pk])
    data = {"why": "November newsletter"}
    for role in (FINANCE, SUPPORT, PRIVACY_OFFICER):
        assert status(clients[role], url, "post", data) == 403, role
    response = clients[PROGRAMME_MANAGER].post(url, data)
    assert response.status_code == 200
    assert "+919812312345" in response.content.decode()
    assert DataAccess.objects.get().action == DataAccessAction.AUDIENCE_EXPORT
