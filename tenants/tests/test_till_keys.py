"""Till keys: stored hashed, shown once, revocable and rotatable, from the command line and the
back office; a tenant that exits loses all its keys."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from coalition.tests.admin_client import client_for, messages_of, staff_user
from coalition.tests.factories import CoalitionFactory
from tenants.models import Tenant, TenantRate, TenantStatus, Till, TillKey
from tenants.selectors import tenant_can_issue, tenant_can_redeem, till_for_key
from tenants.services import (
    tenant_set_status,
    till_key_issue,
    till_key_revoke,
    till_key_rotate,
)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_tenant_makes_an_active_tenant_at_the_default_rates(coalition):
    # When a tenant is created from the command line
    printed = run(
        "create_tenant", "--slug", "shoe-box", "--name", "Shoe Box", "--category", "footwear"
    )
    # Then only its slug is printed, and it may issue and redeem at the coalition's rates
    assert printed == "shoe-box\n"
    tenant = Tenant.objects.get(slug="shoe-box")
    assert tenant.status == TenantStatus.ACTIVE
    assert tenant_can_issue(tenant) and tenant_can_redeem(tenant)
    assert not TenantRate.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--category", "rockets"], "--category 'rockets'"),
        (["--category", "apparel", "--coalition", "nowhere"], "No coalition with slug"),
    ],
)
def test_create_tenant_refuses_bad_input(coalition, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_tenant", "--slug", "x", "--name", "X", *args)


def test_create_tenant_needs_a_coalition_named_when_there_are_several(coalition):
    CoalitionFactory.create(slug="second")
    with pytest.raises(CommandError, match="name one with --coalition"):
        run("create_tenant", "--slug", "x", "--name", "X", "--category", "apparel")
    assert (
        run(
            "create_tenant",
            "--slug",
            "x",
            "--name",
            "X",
            "--category",
            "apparel",
            "--coalition",
            "second",
        ).strip()
        == "x"
    )
    assert Tenant.objects.get(slug="x").coalition.slug == "second"


def test_create_tenant_refuses_a_duplicate(coalition, till_a):
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "--slug", "apparel", "--name", "Again", "--category", "apparel")


def test_issue_till_key_creates_the_till_and_prints_only_a_working_key(coalition, till_a):
    # When a key is issued for a till that does not exist yet
    printed = run("issue_till_key", "--tenant", "apparel", "--till", "pos-9", "--store", "north")
    # Then the output is the key alone, and the key authenticates that till
    raw = printed.strip()
    assert printed.count("\n") == 1 and " " not in raw
    till = Till.objects.get(tenant=till_a.tenant, code="pos-9")
    assert till.store.code == "north"
    assert till_for_key(raw) == till
    # And only a hash is stored: the key itself appears in no column
    stored = TillKey.objects.get(till=till)
    assert raw not in (stored.id, stored.hashed_key) and stored.hashed_key.startswith("sha512$$")


def test_issue_till_key_rotate_revokes_the_other_keys(coalition, till_a):
    old = run("issue_till_key", "--tenant", "apparel", "--till", "a1").strip()
    new = run("issue_till_key", "--tenant", "apparel", "--till", "a1", "--rotate").strip()
    assert till_for_key(old) is None
    assert till_for_key(new) == till_a


def test_issue_till_key_refuses_an_unknown_tenant_and_an_exited_one(coalition, till_a, staff):
    with pytest.raises(CommandError, match="No tenant 'ghost'"):
        run("issue_till_key", "--tenant", "ghost", "--till", "t1")
    tenant_set_status(tenant=till_a.tenant, status=TenantStatus.EXITED, actor=staff)
    with pytest.raises(CommandError, match="exited"):
        run("issue_till_key", "--tenant", "apparel", "--till", "a1")


def test_revoke_and_rotate_take_effect_at_once(till_a, staff):
    key, raw = till_key_issue(till=till_a)
    assert till_for_key(raw) == till_a
    new_key, new_raw = till_key_rotate(key=key, actor=staff)
    assert till_for_key(raw) is None and till_for_key(new_raw) == till_a
    till_key_revoke(key=new_key, actor=staff)
    assert till_for_key(new_raw) is None
    assert TillKey.objects.get(pk=new_key.pk).revoked_at is not None


def test_a_wrong_secret_with_a_real_prefix_is_refused(till_a):
    _, raw = till_key_issue(till=till_a)
    prefix, _, secret = raw.partition(".")
    assert till_for_key(f"{prefix}.{'x' * len(secret)}") is None
    assert till_for_key(prefix) is None
    assert till_for_key("") is None


def test_a_tenant_that_exits_has_all_its_keys_revoked(till_a, till_b, staff):
    _, raw_a = till_key_issue(till=till_a)
    _, raw_b = till_key_issue(till=till_b)
    tenant_set_status(tenant=till_a.tenant, status=TenantStatus.EXITED, actor=staff)
    assert till_for_key(raw_a) is None
    assert till_for_key(raw_b) == till_b  # another tenant's keys are untouched


def test_a_deactivated_till_cannot_authenticate(till_a):
    _, raw = till_key_issue(till=till_a)
    Till.objects.filter(pk=till_a.pk).update(is_active=False)
    assert till_for_key(raw) is None


@pytest.fixture
def manager_client(db):
    return client_for(staff_user("pm", "Programme manager"))


def test_admin_issues_a_key_shown_once_in_a_message(manager_client, till_a):
    response = manager_client.post(
        reverse("admin:tenants_till_changelist"),
        {"action": "issue_key", "_selected_action": [till_a.pk]},
        follow=True,
    )
    shown = [m for m in messages_of(response) if "New key for" in m]
    assert len(shown) == 1
    raw = shown[0].split(": ", 1)[1].split(" ")[0]
    assert till_for_key(raw) == till_a
    # The till's page lists the key by prefix only
    page = manager_client.get(reverse("admin:tenants_till_change", args=[till_a.pk]))
    assert raw.split(".")[0] in page.content.decode()
    assert raw not in page.content.decode()


def test_admin_rotates_and_revokes_keys(manager_client, till_a):
    _, first = till_key_issue(till=till_a)
    response = manager_client.post(
        reverse("admin:tenants_till_changelist"),
        {"action": "rotate_keys", "_selected_action": [till_a.pk]},
        follow=True,
    )
    rotated = next(m for m in messages_of(response) if "New key for" in m)
    second = rotated.split(": ", 1)[1].split(" ")[0]
    assert till_for_key(first) is None and till_for_key(second) == till_a
    live = TillKey.objects.get(till=till_a, revoked=False)
    manager_client.post(
        reverse("admin:tenants_tillkey_changelist"),
        {"action": "revoke", "_selected_action": [live.pk]},
    )
    assert till_for_key(second) is None


def test_support_staff_cannot_issue_keys(db, till_a):
    client = client_for(staff_user("help", "Support"))
    response = client.post(
        reverse("admin:tenants_till_changelist"),
        {"action": "issue_key", "_selected_action": [till_a.pk]},
    )
    assert response.status_code == 403
    assert not TillKey.objects.exists()
