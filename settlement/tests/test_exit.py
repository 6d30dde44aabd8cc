"""A tenant leaving: staff set the exit date; from that day its tills are refused and its keys
revoked, its next close writes its final statement, the points it issued stay redeemable at the
other tenants, and its portal stays, read only."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.services import points_burn
from coalition.services.programme import add_months, local_date
from coalition.services.staff import PROGRAMME_MANAGER
from coalition.tests.admin_client import client_for, staff_user
from settlement.models import Payment, Statement
from settlement.services import payment_record, period_close
from settlement.tests.test_close import NOW, _month, earn
from tenants.models import Tenant, TenantStatus, TillKey
from tenants.selectors import tenant_can_issue, till_for_key
from tenants.services import tenant_exit_schedule, tenants_exit_due
from tests.till_api import till_client


def _today(coalition):
    return local_date(coalition, timezone.now())


def test_an_exit_date_ahead_leaves_the_tills_working_until_that_day(coalition, till_a, member):
    api = till_client(till_a)
    tomorrow = _today(coalition) + timedelta(days=1)

    tenant_exit_schedule(tenant=till_a.tenant, exit_on=tomorrow)

    tenant = Tenant.objects.get(pk=till_a.tenant_id)
    assert (tenant.status, tenant.exit_on) == (TenantStatus.ACTIVE, tomorrow)
    assert till_for_key(api.key) is not None
    assert api.get("members/lookup", id=str(member.pk)).status_code == 200
    # The daily job does nothing before the day...
    assert tenants_exit_due() == []
    # ...and on the day exits the tenant and revokes its keys.
    the_day = timezone.now() + timedelta(days=1)
    assert [t.pk for t in tenants_exit_due(now=the_day)] == [till_a.tenant_id]
    assert Tenant.objects.get(pk=till_a.tenant_id).status == TenantStatus.EXITED
    assert not TillKey.objects.filter(till=till_a, revoked=False).exists()
    assert tenants_exit_due(now=the_day) == []  # run twice: nothing more


def test_from_the_exit_date_the_tills_are_refused_even_before_the_job(coalition, till_a):
    api = till_client(till_a)
    # The date has come, the hourly job has not run yet: the key still exists, unrevoked.
    Tenant.objects.filter(pk=till_a.tenant_id).update(exit_on=_today(coalition))

    assert till_for_key(api.key) is None
    response = api.post(
        "earn",
        {"member": {"phone": "+919800000001"}, "amount": "100.00", "currency": "INR",
         "receipt": "X-1"},
    )  # fmt: skip
    assert response.status_code == 401
    tenant = Tenant.objects.select_related("coalition").get(pk=till_a.tenant_id)
    assert not tenant_can_issue(tenant)


def test_an_exit_date_in_the_past_is_refused(coalition, till_a):
    with pytest.raises(InvalidRequest, match="today"):
        tenant_exit_schedule(tenant=till_a.tenant, exit_on=_today(coalition) - timedelta(days=1))
    assert Tenant.objects.get(pk=till_a.tenant_id).exit_on is None


def test_staff_set_the_exit_date_in_the_admin(coalition, till_a):
    client = client_for(staff_user("pm", PROGRAMME_MANAGER))
    url = reverse("admin:tenants_tenant_changelist")
    form = client.post(url, {"action": "schedule_exit", "_selected_action": [till_a.tenant_id]})
    assert form.status_code == 200
    assert b"Set the exit date" in form.content
    later = _today(coalition) + timedelta(days=30)

    done = client.post(
        url,
        {"action": "schedule_exit", "_selected_action": [till_a.tenant_id], "apply": "1",
         "exit_on": f"{later:%Y-%m-%d}"},
        follow=True,
    )  # fmt: skip

    assert f"leaves the programme on {later}".encode() in done.content
    assert Tenant.objects.get(pk=till_a.tenant_id).exit_on == later
    past = client.post(
        url,
        {"action": "schedule_exit", "_selected_action": [till_a.tenant_id], "apply": "1",
         "exit_on": "2020-01-01"},
    )  # fmt: skip
    assert b"today" in past.content
    assert Tenant.objects.get(pk=till_a.tenant_id).exit_on == later


def test_the_final_statement_and_points_still_redeemable_elsewhere(
    coalition, till_a, till_b, member
):
    start, _ = _month(coalition)
    earlier = start - timedelta(days=25)  # inside the month before last
    earn(till_a, member, "4000.00", "A-1", earlier)
    # Apparel leaves two days later (staff set the date the day before).
    exit_on = local_date(coalition, earlier) + timedelta(days=2)
    tenant_exit_schedule(tenant=till_a.tenant, exit_on=exit_on, now=earlier)
    tenants_exit_due(now=earlier + timedelta(days=3))
    # The points apparel issued (and paid for) stay good at the food court.
    burn = points_burn(
        till=till_b, member=member, points=40, bill_amount=Decimal("600.00"), receipt="F-1",
        occurred_at=earlier + timedelta(days=4), now=earlier + timedelta(days=4),
    )  # fmt: skip
    assert burn.journal.points == 40

    first = period_close(coalition, add_months(start.date(), -1), now=NOW)

    final = Statement.objects.get(period=first, tenant=till_a.tenant)
    assert final.final and final.net_amount == Decimal("40.00")
    assert not Statement.objects.get(period=first, tenant=till_b.tenant).final
    # It still owes the 40.00: the next month carries it, not as a final statement.
    payment_record(
        tenant=till_a.tenant, direction=Payment.Direction.RECEIVED, amount=Decimal("40.00"),
        reference="UTR-1", received_on=start.date(), now=start + timedelta(days=2),
    )  # fmt: skip
    second = period_close(coalition, start.date(), now=NOW)
    carried = Statement.objects.get(period=second, tenant=till_a.tenant)
    assert (carried.final, carried.opening_balance, carried.net_amount) == (
        False, Decimal("40.00"), Decimal("0.00"),
    )  # fmt: skip
    # Settled and gone: the month after has no statement for it (this month, closed as if it
    # had ended).
    third = period_close(coalition, local_date(coalition, NOW), now=NOW + timedelta(days=40))
    assert third.month == add_months(start.date(), 1)
    assert not Statement.objects.filter(period=third, tenant=till_a.tenant).exists()
    assert Statement.objects.filter(period=third, tenant=till_b.tenant).exists()


def test_the_portal_of_a_tenant_past_its_exit_date_is_read_only(coalition, till_a):
    from django.test import Client

    from tenants.models import PortalRole
    from tenants.services import tenant_user_create

    tenant_user_create(
        tenant=till_a.tenant, username="a-m", role=PortalRole.MANAGER, password="pw-12345-long"
    )
    Tenant.objects.filter(pk=till_a.tenant_id).update(exit_on=_today(coalition))
    client = Client()
    assert client.login(username="a-m", password="pw-12345-long")

    page = client.get(reverse("portal:tills"))
    assert b"read only" in page.content
    assert client.post(reverse("portal:key_issue", args=[till_a.pk])).status_code == 403
