"""The tenant portal: sign-in, statements and their files, transactions, tills and keys.

Three personas: tenant A (a manager and a viewer), tenant B (a manager), and staff. Every URL of
tenant A's objects is tried as tenant B and must be a 404, never a 403 that confirms it exists.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from members.selectors import member_reference_for_tenant
from members.tests.factories import MemberFactory
from settlement.models import Statement
from settlement.selectors import OTHER_CATEGORIES, statement_document
from settlement.services import period_close
from settlement.tests.test_close import NOW, _month, burn, earn
from tenants.models import PortalRole, TenantStatus, TillKey
from tenants.selectors import till_for_key
from tenants.services import tenant_set_status, tenant_user_create, till_key_issue

PASSWORD = "correct horse battery"


def _login(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


@pytest.fixture
def portal(coalition, till_a, till_b, member):
    """Last month closed: apparel (A) issued 40 points, the food court (B) honoured them."""
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1001", start + timedelta(days=2))
    burn(till_b, member, 40, "F-77", start + timedelta(days=16))
    period = period_close(coalition, start.date(), now=NOW)
    for username, till, role in (
        ("a-manager", till_a, PortalRole.MANAGER),
        ("a-viewer", till_a, PortalRole.VIEWER),
        ("b-manager", till_b, PortalRole.MANAGER),
    ):
        tenant_user_create(tenant=till.tenant, username=username, role=role, password=PASSWORD)
    key, _ = till_key_issue(till=till_a)
    return {
        "a_statement": Statement.objects.get(period=period, tenant=till_a.tenant),
        "a_key": key,
    }


def test_sign_in_lands_on_the_statements(portal):
    client = Client()
    page = client.get(reverse("portal:login"))
    assert page.status_code == 200
    assert b"Tenant portal" in page.content

    signed_in = client.post(
        reverse("portal:login"), {"username": "a-manager", "password": PASSWORD}, follow=True
    )

    assert signed_in.redirect_chain[-1][0] == reverse("portal:statements")
    assert b"October" in signed_in.content or b"20" in signed_in.content
    assert f"{portal['a_statement'].net_amount}".encode() in signed_in.content


def test_a_wrong_password_is_refused(portal):
    page = Client().post(reverse("portal:login"), {"username": "a-manager", "password": "nope"})
    assert page.status_code == 200
    assert b"Please enter a correct username and password" in page.content


def test_pages_need_a_portal_login(portal, staff):
    for name in ("portal:statements", "portal:transactions", "portal:tills", "portal:account"):
        anonymous = Client().get(reverse(name))
        assert anonymous.status_code == 302
        assert anonymous["Location"].startswith(reverse("portal:login"))
    staff_client = Client()
    staff_client.force_login(staff)
    assert staff_client.get(reverse("portal:statements")).status_code == 403


def test_the_statement_as_a_page_csv_and_pdf(portal):
    client = _login("a-manager")
    statement = portal["a_statement"]

    page = client.get(reverse("portal:statement", args=[statement.pk]))
    assert page.status_code == 200
    assert b"You pay the pool" in page.content
    assert b"40.00" in page.content

    csv_file = client.get(reverse("portal:statement_csv", args=[statement.pk]))
    assert csv_file["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_file["Content-Disposition"]
    text = csv_file.content.decode()
    assert "Points issued,1.0000,1,40,40.00,40.00" in text
    assert "Net amount,,,,40.00,40.00" in text

    pdf = client.get(reverse("portal:statement_pdf", args=[statement.pk]))
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert len(pdf.content) > 1000


def test_tenant_b_gets_404_for_every_one_of_tenant_as_urls(portal, till_a):
    b = _login("b-manager")
    statement, key = portal["a_statement"], portal["a_key"]
    for name in ("portal:statement", "portal:statement_csv", "portal:statement_pdf"):
        assert b.get(reverse(name, args=[statement.pk])).status_code == 404, name
    assert b.post(reverse("portal:key_issue", args=[till_a.pk])).status_code == 404
    assert b.post(reverse("portal:key_rotate", args=[key.pk])).status_code == 404
    assert b.post(reverse("portal:key_revoke", args=[key.pk])).status_code == 404
    a_line = statement.lines.first()
    dispute = {"line": a_line.pk, "reason": "not ours"}
    url = reverse("portal:statement_dispute", args=[statement.pk])
    assert b.post(url, dispute).status_code == 404
    # A's line under B's own statement is not found either.
    b_statement = Statement.objects.get(period=statement.period, tenant__slug="food-court")
    url = reverse("portal:statement_dispute", args=[b_statement.pk])
    assert b.post(url, dispute).status_code == 404
    assert not a_line.disputes.exists()
    # Nothing happened to A's key, and A's statement is not in B's list.
    assert not TillKey.objects.get(pk=key.pk).revoked
    assert TillKey.objects.filter(till=till_a).count() == 1
    listing = b.get(reverse("portal:statements"))
    assert reverse("portal:statement", args=[statement.pk]).encode() not in listing.content


def test_a_manager_issues_rotates_and_revokes_keys(portal, till_a):
    client = _login("a-manager")

    issued = client.post(reverse("portal:key_issue", args=[till_a.pk]))
    assert issued.status_code == 200
    assert issued["Cache-Control"] == "no-store"
    raw = issued.context["key"]
    assert raw.encode() in issued.content
    assert till_for_key(raw) == till_a

    key = TillKey.objects.get(till=till_a, prefix=raw.split(".")[0])
    rotated = client.post(reverse("portal:key_rotate", args=[key.pk]))
    new_raw = rotated.context["key"]
    assert till_for_key(raw) is None and till_for_key(new_raw) == till_a

    new_key = TillKey.objects.get(till=till_a, prefix=new_raw.split(".")[0])
    client.post(reverse("portal:key_revoke", args=[new_key.pk]))
    assert till_for_key(new_raw) is None
    # The tills page never shows a whole key again.
    page = client.get(reverse("portal:tills"))
    assert new_raw.encode() not in page.content
    assert f"{new_key.prefix}".encode() in page.content


def test_a_viewer_may_not_touch_keys(portal, till_a):
    viewer = _login("a-viewer")
    assert viewer.post(reverse("portal:key_issue", args=[till_a.pk])).status_code == 403
    assert viewer.post(reverse("portal:key_revoke", args=[portal["a_key"].pk])).status_code == 403
    page = viewer.get(reverse("portal:tills"))
    assert b"Issue a new key" not in page.content


def test_an_exited_tenant_keeps_a_read_only_portal(portal, till_a, staff):
    tenant_set_status(tenant=till_a.tenant, status=TenantStatus.EXITED, actor=staff)
    client = _login("a-manager")

    assert client.get(reverse("portal:statements")).status_code == 200
    assert b"read only" in client.get(reverse("portal:tills")).content
    assert client.post(reverse("portal:key_issue", args=[till_a.pk])).status_code == 403


def test_transactions_show_a_masked_shopper_and_filter(portal, till_a, member):
    client = _login("a-manager")
    page = client.get(reverse("portal:transactions"))

    assert page.status_code == 200
    assert b"A-1001" in page.content
    masked = member_reference_for_tenant(till_a.tenant_id, member.pk)
    assert masked.encode() in page.content
    identifiers = list(member.identifiers.values_list("value", flat=True))
    assert identifiers  # the factory gave the member an email
    for personal in (member.name, str(member.pk), *identifiers):
        assert personal.encode() not in page.content
    # The same shopper has another reference at another tenant.
    assert member_reference_for_tenant(till_a.tenant_id + 1, member.pk) != masked

    burns_only = client.get(reverse("portal:transactions"), {"kind": "burn"})
    assert b"A-1001" not in burns_only.content
    later = client.get(
        reverse("portal:transactions"), {"start": f"{NOW + timedelta(days=2):%Y-%m-%d}"}
    )
    assert b"A-1001" not in later.content
    wrong = client.get(reverse("portal:transactions"), {"start": "2026-05-02", "end": "2026-05-01"})
    assert b"The start date is after the end date." in wrong.content


def test_small_categories_are_folded_and_suppressed(coalition, till_a, till_b, member):
    """Two shoppers redeem at the food court: fewer than k (10), so the category is folded
    into 'Other categories', which is itself still behind fewer than k: not shown."""
    start, _ = _month(coalition)
    other = MemberFactory.create(coalition=coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=1))
    earn(till_a, other, "4000.00", "A-2", start + timedelta(days=1))
    burn(till_b, member, 10, "F-1", start + timedelta(days=2))
    burn(till_b, other, 10, "F-2", start + timedelta(days=2))
    period = period_close(coalition, start.date(), now=NOW)

    document = statement_document(Statement.objects.get(period=period, tenant=till_a.tenant))
    assert [(r.category, r.burns) for r in document.redeemed_at] == [(OTHER_CATEGORIES, None)]

    coalition.small_group_k = 2
    coalition.save(update_fields=["small_group_k"])
    statement = Statement.objects.get(period=period, tenant=till_a.tenant)
    statement.tenant.coalition.small_group_k = 2
    document = statement_document(statement)
    assert [(r.category, r.burns, r.points, r.value) for r in document.redeemed_at] == [
        ("Food court & restaurants", 2, 20, Decimal("20.00"))
    ]
