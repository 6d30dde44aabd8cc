"""Tenants in the back office: created through tenant_create, status through tenant_set_status."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from coalition.models import Account, AccountKind
from coalition.services.programme import local_date
from coalition.tests.admin_client import client_for, messages_of, staff_user
from tenants.models import Store, Tenant, TenantRate, TenantStatus, Till
from tenants.tests.factories import TenantFactory

CHANGELIST = "admin:tenants_tenant_changelist"


@pytest.fixture
def manager(db):
    return staff_user("pm", "Programme manager")


@pytest.fixture
def manager_client(manager):
    return client_for(manager)


def test_tenant_added_in_admin_has_its_ledger_accounts(manager_client, coalition):
    response = manager_client.post(
        reverse("admin:tenants_tenant_add"),
        {
            "coalition": coalition.pk,
            "name": "Shoe Box",
            "slug": "shoe-box",
            "legal_name": "",
            "category": "footwear",
        },
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="shoe-box")
    # tenant_create's defaults and accounts, not a bare row
    assert (tenant.legal_name, tenant.status) == ("Shoe Box", TenantStatus.ACTIVE)
    kinds = set(Account.objects.filter(tenant=tenant).values_list("kind", flat=True))
    assert kinds == {AccountKind.TENANT_ISSUED, AccountKind.TENANT_REDEEMED}


def test_tenant_add_refuses_a_duplicate_slug(manager_client, coalition, till_a):
    response = manager_client.post(
        reverse("admin:tenants_tenant_add"),
        {"coalition": coalition.pk, "name": "Again", "slug": "apparel", "category": "apparel"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Tenant.objects.filter(slug="apparel").count() == 1


def test_suspend_and_reactivate_actions(manager_client, manager, till_a, till_b):
    apparel, food = till_a.tenant, till_b.tenant
    # When the programme manager suspends one tenant
    response = manager_client.post(
        reverse(CHANGELIST), {"action": "suspend", "_selected_action": [apparel.pk]}, follow=True
    )
    # Then only that tenant is suspended, and the change is in the admin log
    apparel.refresh_from_db()
    food.refresh_from_db()
    assert (apparel.status, food.status) == (TenantStatus.SUSPENDED, TenantStatus.ACTIVE)
    assert any("suspended" in text for text in messages_of(response))
    assert LogEntry.objects.filter(
        object_id=str(apparel.pk), action_flag=CHANGE, user=manager
    ).exists()

    # When they reactivate it
    manager_client.post(
        reverse(CHANGELIST), {"action": "reactivate", "_selected_action": [apparel.pk]}
    )
    apparel.refresh_from_db()
    assert apparel.status == TenantStatus.ACTIVE


def test_status_is_not_editable_on_the_tenant_page(manager_client, till_a):
    tenant = till_a.tenant
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = manager_client.get(url).context["adminform"].form
    assert "status" not in form.fields
    assert "may_redeem" in form.fields


def test_finance_cannot_suspend_a_tenant(till_a):
    finance = client_for(staff_user("fin", "Finance"))
    response = finance.post(
        reverse(CHANGELIST), {"action": "suspend", "_selected_action": [till_a.tenant.pk]}
    )
    till_a.tenant.refresh_from_db()
    assert till_a.tenant.status == TenantStatus.ACTIVE
    assert "suspend" not in response.context["cl"].model_admin.get_actions(response.wsgi_request)


def test_redeem_without_issue_needs_explicit_permission(manager_client, till_a):
    tenant = till_a.tenant
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = manager_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data.update(may_issue=False, may_redeem=True, redeem_only_allowed=False)
    data = {k: v for k, v in data.items() if v not in (None, False)}
    data |= {
        "rates-TOTAL_FORMS": "0",
        "rates-INITIAL_FORMS": "0",
        "stores-TOTAL_FORMS": "0",
        "stores-INITIAL_FORMS": "0",
    }
    response = manager_client.post(url, data)
    assert response.status_code == 200  # the form shows the constraint's message
    assert "unless staff explicitly allow it" in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.may_issue is True


def _rate_post(tenant, effective_from):
    return {
        "coalition": tenant.coalition_id,
        "name": tenant.name,
        "legal_name": tenant.legal_name,
        "category": tenant.category,
        "may_issue": "on",
        "may_redeem": "on",
        "change_reason": "New rate agreed",
        "rates-TOTAL_FORMS": "1",
        "rates-INITIAL_FORMS": "0",
        "rates-0-effective_from": effective_from.isoformat(),
        "rates-0-price_per_point": "1.2000",
        "rates-0-reimbursement_per_point": "0.9500",
        "stores-TOTAL_FORMS": "0",
        "stores-INITIAL_FORMS": "0",
    }


def test_rates_are_added_from_today_on_never_backdated(manager_client, till_a):
    tenant = till_a.tenant
    today = local_date(tenant.coalition, timezone.now())
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])

    backdated = manager_client.post(url, _rate_post(tenant, today - timedelta(days=1)))
    assert backdated.status_code == 200
    assert not TenantRate.objects.filter(tenant=tenant).exists()

    added = manager_client.post(url, _rate_post(tenant, today + timedelta(days=1)))
    assert added.status_code == 302
    rate = TenantRate.objects.get(tenant=tenant)
    assert (rate.price_per_point, rate.reimbursement_per_point) == (
        Decimal("1.2000"),
        Decimal("0.9500"),
    )


def test_a_rate_in_force_cannot_be_changed_but_a_future_one_can(manager_client, till_a):
    tenant = till_a.tenant
    today = local_date(tenant.coalition, timezone.now())
    in_force = TenantRate.objects.create(
        tenant=tenant,
        effective_from=today,
        price_per_point=Decimal("1.0000"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    future = TenantRate.objects.create(
        tenant=tenant,
        effective_from=today + timedelta(days=30),
        price_per_point=Decimal("1.1000"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    payload = {
        "tenant": tenant.pk,
        "change_reason": "Typo in the contract's rate",
        "price_per_point": "5.0000",
        "reimbursement_per_point": "1.0000",
    }
    refused = manager_client.post(
        reverse("admin:tenants_tenantrate_change", args=[in_force.pk]),
        payload | {"effective_from": today.isoformat()},
    )
    assert refused.status_code == 403
    in_force.refresh_from_db()
    assert in_force.price_per_point == Decimal("1.0000")

    changed = manager_client.post(
        reverse("admin:tenants_tenantrate_change", args=[future.pk]),
        payload | {"effective_from": future.effective_from.isoformat()},
    )
    assert changed.status_code == 302
    future.refresh_from_db()
    assert future.price_per_point == Decimal("5.0000")


def test_till_added_in_admin_goes_through_till_create(manager_client, till_a):
    store = till_a.store
    response = manager_client.post(
        reverse("admin:tenants_till_add"), {"store": store.pk, "code": "a2"}
    )
    assert response.status_code == 302
    till = Till.objects.get(tenant=till_a.tenant, code="a2")
    assert (till.store, till.is_active) == (store, True)

    again = manager_client.post(
        reverse("admin:tenants_till_add"), {"store": store.pk, "code": "a2"}
    )
    assert again.status_code == 200
    assert "code" in again.context["adminform"].form.errors
    assert Till.objects.filter(tenant=till_a.tenant, code="a2").count() == 1


def test_tenant_search_and_filters(manager_client, coalition):
    TenantFactory.create(
        coalition=coalition, slug="cine", name="Cineplex", category="entertainment"
    )
    TenantFactory.create(
        coalition=coalition, slug="pharma", name="Wellness", legal_name="Wellness Retail Pvt Ltd"
    )
    url = reverse(CHANGELIST)

    def names(params):
        return {t.name for t in manager_client.get(url, params).context["cl"].result_list}

    assert names({"q": "retail pvt"}) == {"Wellness"}
    assert names({"q": "cine"}) == {"Cineplex"}
    assert names({"category__exact": "entertainment"}) == {"Cineplex"}


def test_stores_and_tills_are_never_deleted(manager_client, till_a):
    store = Store.objects.get(pk=till_a.store_id)
    denied = manager_client.post(
        reverse("admin:tenants_store_delete", args=[store.pk]), {"post": "yes"}
    )
    assert denied.status_code == 403
    assert Store.objects.filter(pk=store.pk).exists()
