"""Settlement in the back office: finance sees closed months, records payments and waivers;
a programme manager closes months; nobody edits what the close wrote."""

from datetime import timedelta
from decimal import Decimal

from django.urls import reverse

from coalition.services.staff import FINANCE, PROGRAMME_MANAGER
from coalition.tests.admin_client import client_for, messages_of, staff_user
from settlement.models import ArrearsWaiver, Payment, Period, Statement
from settlement.services import arrears_apply, period_close, reconciliations_verify_pending
from settlement.tests.test_close import NOW, _month, burn, earn
from tenants.models import Tenant


def _closed(coalition, till_a, till_b, member) -> Period:
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    burn(till_b, member, 40, "F-1", start + timedelta(days=3))
    return period_close(coalition, start.date(), now=NOW)


def test_finance_sees_the_month_its_reconciliation_and_statements(
    coalition, till_a, till_b, member
):
    period = _closed(coalition, till_a, till_b, member)
    client = client_for(staff_user("fin", FINANCE))

    page = client.get(reverse("admin:settlement_period_change", args=[period.pk]))
    assert page.status_code == 200
    assert b"Figures balance; ledger check pending" in page.content
    assert b"The operator&#x27;s result for the month" in page.content
    reconciliations_verify_pending()
    page = client.get(reverse("admin:settlement_period_change", args=[period.pk]))
    assert b"Balanced" in page.content
    listing = client.get(reverse("admin:settlement_period_changelist"))
    assert b"Balanced" in listing.content
    statement = Statement.objects.get(period=period, tenant=till_a.tenant)
    detail = client.get(reverse("admin:settlement_statement_change", args=[statement.pk]))
    assert detail.status_code == 200
    assert b"40.00" in detail.content
    # Nobody changes what the close wrote.
    post = client.post(reverse("admin:settlement_statement_change", args=[statement.pk]), {})
    assert post.status_code == 403


def test_finance_records_a_payment_that_lifts_arrears(coalition, till_a, till_b, member):
    period = _closed(coalition, till_a, till_b, member)
    owed = Statement.objects.get(period=period, tenant=till_a.tenant)
    arrears_apply(today=owed.due_on + timedelta(days=1))
    assert Tenant.objects.get(pk=till_a.tenant_id).arrears_since is not None
    client = client_for(staff_user("fin", FINANCE))

    response = client.post(
        reverse("admin:settlement_payment_add"),
        {
            "tenant": till_a.tenant_id,
            "direction": Payment.Direction.RECEIVED,
            "amount": "40.00",
            "reference": "UTR-123",
            "received_on": f"{NOW:%Y-%m-%d}",
            "statement": owed.pk,
        },
        follow=True,
    )

    assert response.status_code == 200, response.content
    payment = Payment.objects.get()
    assert (payment.amount, payment.reference) == (Decimal("40.00"), "UTR-123")
    assert payment.recorded_by is not None and payment.recorded_by.username == "fin"
    assert Tenant.objects.get(pk=till_a.tenant_id).arrears_since is None


def test_finance_waives_arrears_with_a_reason(coalition, till_a, till_b, member):
    period = _closed(coalition, till_a, till_b, member)
    owed = Statement.objects.get(period=period, tenant=till_a.tenant)
    arrears_apply(today=owed.due_on + timedelta(days=1))
    client = client_for(staff_user("fin", FINANCE))

    response = client.post(
        reverse("admin:settlement_arrearswaiver_add"),
        {"tenant": till_a.tenant_id, "reason": "Agreed instalments"},
        follow=True,
    )

    assert response.status_code == 200
    assert ArrearsWaiver.objects.get().statement == owed
    assert Tenant.objects.get(pk=till_a.tenant_id).arrears_since is None


def test_a_programme_manager_closes_ended_months_from_the_coalition_page(coalition, till_a, member):
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1", start + timedelta(days=2))
    client = client_for(staff_user("pm", PROGRAMME_MANAGER))

    response = client.post(
        reverse("admin:coalition_coalition_changelist"),
        {"action": "close_ended_months", "_selected_action": [coalition.pk]},
        follow=True,
    )

    period = Period.objects.get(coalition=coalition)
    assert period.month == start.date()
    assert f"{coalition}: {period} is closed." in messages_of(response)
    # A second time there is nothing left to close, and it says so.
    again = client.post(
        reverse("admin:coalition_coalition_changelist"),
        {"action": "close_ended_months", "_selected_action": [coalition.pk]},
        follow=True,
    )
    assert Period.objects.count() == 1
    assert any("is closed" in m for m in messages_of(again))
