"""Disputes: a tenant questions a statement line from the portal, finance answers in the back
office, and an accepted dispute is an adjustment on the next statement — once."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from coalition.errors import InvalidRequest
from coalition.services.programme import add_months
from coalition.services.staff import FINANCE
from coalition.tests.admin_client import client_for, staff_user
from settlement.models import Dispute, LineKind, Statement
from settlement.services import dispute_raise, dispute_resolve, period_close
from settlement.tests.test_close import NOW, _month, burn, earn, lines, statement
from tenants.models import PortalRole, TenantUser
from tenants.services import tenant_user_create

PASSWORD = "correct horse battery"


@pytest.fixture
def disputed(coalition, till_a, till_b, member):
    """The month before last closed (apparel issued 40 points, the food court honoured them);
    apparel's finance user and viewer have portal logins."""
    start, _ = _month(coalition)
    earlier = add_months(start.date(), -1)
    earn(till_a, member, "4000.00", "A-1", start - timedelta(days=20))
    burn(till_b, member, 40, "F-1", start - timedelta(days=18))
    period = period_close(coalition, earlier, now=NOW)
    for username, role in (("a-finance", PortalRole.FINANCE), ("a-viewer", PortalRole.VIEWER)):
        tenant_user_create(tenant=till_a.tenant, username=username, role=role, password=PASSWORD)
    return Statement.objects.get(period=period, tenant=till_a.tenant)


def _client(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def test_a_tenant_raises_a_dispute_from_the_portal(disputed):
    line = disputed.lines.get(kind=LineKind.ISSUED)
    client = _client("a-finance")

    page = client.get(reverse("portal:statement", args=[disputed.pk]))
    assert b"Question a line" in page.content
    response = client.post(
        reverse("portal:statement_dispute", args=[disputed.pk]),
        {"line": line.pk, "reason": "Receipt A-1 was refunded the next day."},
        follow=True,
    )

    found = Dispute.objects.get()
    assert (found.line, found.status, found.raised_by.username) == (
        line, Dispute.Status.OPEN, "a-finance",
    )  # fmt: skip
    assert b"Your dispute is with the programme" in response.content
    assert b"Receipt A-1 was refunded the next day." in response.content
    # The same line cannot be raised twice while finance has it.
    again = client.post(
        reverse("portal:statement_dispute", args=[disputed.pk]),
        {"line": line.pk, "reason": "again"},
        follow=True,
    )
    assert b"already in dispute" in again.content
    assert Dispute.objects.count() == 1


def test_a_viewer_may_not_raise_a_dispute(disputed):
    line = disputed.lines.first()
    client = _client("a-viewer")

    assert (
        b"Question a line"
        not in client.get(reverse("portal:statement", args=[disputed.pk])).content
    )
    response = client.post(
        reverse("portal:statement_dispute", args=[disputed.pk]), {"line": line.pk, "reason": "x"}
    )
    assert response.status_code == 403
    assert not Dispute.objects.exists()


def test_an_empty_reason_is_refused(disputed):
    user = TenantUser.objects.get(user__username="a-finance")
    with pytest.raises(InvalidRequest, match="Say what is wrong"):
        dispute_raise(tenant_user=user, line=disputed.lines.first(), reason="   ")


def test_an_accepted_dispute_is_adjusted_on_the_next_statement_once(coalition, disputed, till_a):
    user = TenantUser.objects.get(user__username="a-finance")
    dispute = dispute_raise(
        tenant_user=user, line=disputed.lines.get(kind=LineKind.ISSUED), reason="refunded"
    )
    start, _ = _month(coalition)
    client = client_for(staff_user("fin", FINANCE))
    # Finance answers in the back office, during last month.
    url = reverse("admin:settlement_dispute_change", args=[dispute.pk])
    assert client.get(url).status_code == 200
    incomplete = client.post(url, {"decision": "accept", "resolution": "Refunded: agreed."})
    assert incomplete.status_code == 200  # the form asks for the amount and direction
    assert Dispute.objects.get(pk=dispute.pk).status == Dispute.Status.OPEN
    dispute_resolve(
        dispute=dispute, accept=True, resolution="Refunded: agreed.", amount=Decimal("40.00"),
        direction=Dispute.Direction.CREDIT, now=start + timedelta(days=3),
    )  # fmt: skip

    period = period_close(coalition, start.date(), now=NOW)

    following = statement(period, till_a)
    assert lines(following) == [
        (LineKind.ADJUSTMENT_CREDIT, None, 1, 0, Decimal("40.00")),
    ]
    assert following.opening_balance == Decimal("40.00")
    assert following.adjustments == Decimal("-40.00")
    assert following.net_amount == Decimal("0.00")
    dispute.refresh_from_db()
    assert dispute.adjusted_on == following
    # The disputed statement itself never changes; the answer shows on it in the portal.
    assert Statement.objects.get(pk=disputed.pk).net_amount == Decimal("40.00")
    page = _client("a-finance").get(reverse("portal:statement", args=[disputed.pk]))
    assert b"Refunded: agreed." in page.content
    assert b"In the tenant&#x27;s favour: 40.00" in page.content
    # The operator pays the adjustment, and it is shown among the operator's figures.
    assert period.reconciliations.get().statement_adjustment_value == Decimal("-40.00")
    # Answered is final: finance cannot answer twice, and the admin shows it read only.
    with pytest.raises(InvalidRequest, match="already accepted"):
        dispute_resolve(dispute=dispute, accept=False, resolution="changed my mind")
    assert client.post(url, {"decision": "reject", "resolution": "x"}).status_code == 403


def test_a_rejected_dispute_changes_no_statement(coalition, disputed, till_a):
    user = TenantUser.objects.get(user__username="a-finance")
    dispute = dispute_raise(tenant_user=user, line=disputed.lines.first(), reason="too much")
    client = client_for(staff_user("fin", FINANCE))
    response = client.post(
        reverse("admin:settlement_dispute_change", args=[dispute.pk]),
        {"decision": "reject", "resolution": "The rate was in force that day."},
    )
    assert response.status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.amount) == (Dispute.Status.REJECTED, 0)
    start, _ = _month(coalition)

    period = period_close(coalition, start.date(), now=NOW)

    following = statement(period, till_a)
    assert following.adjustments == 0
    assert not following.lines.filter(kind__startswith="adjustment").exists()
    page = _client("a-finance").get(reverse("portal:statement", args=[disputed.pk]))
    assert b"The rate was in force that day." in page.content
