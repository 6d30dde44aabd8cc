"""Staff groups exist after every migrate, each with exactly its least-privilege permissions."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.urls import reverse

from coalition.services import staff as staff_module
from coalition.services import staff_groups_sync
from coalition.tests.admin_client import client_for, staff_user

# Written out in full on purpose: this is the intended access, reviewed line by line, and the
# test fails if the mapping in coalition/services/staff.py drifts from it.
EXPECTED = {
    "Programme manager": {
        "consent.export_audience",
        "coalition.view_coalition",
        "coalition.change_coalition",
        "tenants.view_tenant",
        "tenants.add_tenant",
        "tenants.change_tenant",
        "tenants.view_store",
        "tenants.add_store",
        "tenants.change_store",
        "tenants.view_till",
        "tenants.add_till",
        "tenants.change_till",
        "tenants.view_tillkey",
        "tenants.add_tillkey",
        "tenants.change_tillkey",
        "tenants.view_tenantrate",
        "tenants.add_tenantrate",
        "tenants.change_tenantrate",
        "tenants.view_tenantuser",
        "tenants.add_tenantuser",
        "tenants.change_tenantuser",
        "members.view_member",
        "members.view_identifier",
        "coalition.add_adjustmentrequest",
        "coalition.view_adjustmentrequest",
        "coalition.view_journal",
        "coalition.view_entry",
        "coalition.view_lot",
        "coalition.view_expirynotice",
        "coalition.view_account",
        "coalition.view_liability",
        "coalition.view_expirypolicymigration",
        "coalition.view_campaign",
        "coalition.add_campaign",
        "coalition.change_campaign",
        "coalition.view_campaignaward",
        "coalition.import_transactions",
        "consent.view_consentpurpose",
        "consent.add_consentpurpose",
        "consent.change_consentpurpose",
        "settlement.view_period",
        "settlement.view_statement",
        "settlement.view_statementline",
        "settlement.view_reconciliation",
        "settlement.view_payment",
        "settlement.view_arrearswaiver",
        "settlement.view_dispute",
    },
    "Finance": {
        "coalition.view_journal",
        "coalition.view_entry",
        "coalition.view_lot",
        "coalition.view_lotconsumption",
        "coalition.view_account",
        "coalition.view_adjustmentrequest",
        "coalition.change_adjustmentrequest",
        "coalition.view_coalition",
        "coalition.view_liability",
        "coalition.view_expirypolicymigration",
        "coalition.view_campaign",
        "coalition.view_campaignaward",
        "tenants.view_tenant",
        "tenants.view_tenantrate",
        "settlement.view_period",
        "settlement.view_statement",
        "settlement.view_statementline",
        "settlement.view_reconciliation",
        "settlement.view_payment",
        "settlement.view_arrearswaiver",
        "settlement.view_dispute",
        "settlement.add_payment",
        "settlement.add_arrearswaiver",
        "settlement.change_dispute",
    },
    "Support": {
        "members.view_member",
        "members.add_member",
        "members.change_member",
        "members.view_identifier",
        "coalition.add_adjustmentrequest",
        "coalition.view_adjustmentrequest",
        "coalition.view_journal",
        "coalition.view_lot",
        "coalition.view_expirynotice",
        "coalition.view_campaignaward",
        "consent.add_consentevent",
    },
    "Privacy officer": {
        "members.view_member",
        "members.view_identifier",
        "consent.view_consentevent",
        "consent.add_consentevent",
        "consent.view_consentpurpose",
        "members.view_mergerecord",
        "consent.view_privacyrequest",
        "consent.add_privacyrequest",
        "consent.change_privacyrequest",
        "consent.view_dataaccess",
        "auditlog.view_logentry",
    },
}
LEDGER = {"journal", "entry", "lot", "lotconsumption", "account", "campaignaward"}


def permissions_of(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_groups_exist_after_migrate_with_exactly_their_permissions(db):
    # The test database was built by `migrate`, whose post_migrate made the groups
    assert set(Group.objects.values_list("name", flat=True)) >= set(EXPECTED)
    for name, expected in EXPECTED.items():
        assert permissions_of(name) == expected, name


def test_no_group_may_write_the_ledger_or_delete_anything(db):
    for name in EXPECTED:
        for permission in permissions_of(name):
            app_codename = permission.split(".", 1)[1]
            verb, model = app_codename.split("_", 1)
            assert verb != "delete", permission
            assert model not in LEDGER or verb == "view", permission


def test_only_finance_approves_adjustments(db):
    approvers = {
        name for name in EXPECTED if "coalition.change_adjustmentrequest" in permissions_of(name)
    }
    assert approvers == {"Finance"}


def test_migrate_recreates_the_groups_and_resets_hand_made_changes(db):
    # Given a deleted group and a permission granted by hand to another
    Group.objects.filter(name="Finance").delete()
    support = Group.objects.get(name="Support")
    support.permissions.add(Permission.objects.get(codename="delete_member"))

    # When migrate runs again
    call_command("migrate", verbosity=0)

    # Then both are back to the declared state
    assert permissions_of("Finance") == EXPECTED["Finance"]
    assert permissions_of("Support") == EXPECTED["Support"]


def test_sync_is_idempotent(db):
    first = {name: group.pk for name, group in staff_groups_sync().items()}
    second = {name: group.pk for name, group in staff_groups_sync().items()}
    assert first == second
    assert Group.objects.filter(name__in=EXPECTED).count() == len(EXPECTED)


def test_a_misspelt_permission_fails_loudly(db, monkeypatch):
    monkeypatch.setattr(
        staff_module, "STAFF_GROUPS", {"Support": frozenset({"members.veiw_member"})}
    )
    with pytest.raises(LookupError, match=r"members\.veiw_member"):
        staff_groups_sync()


@pytest.mark.parametrize(
    ("group", "url", "status"),
    [
        ("Support", "admin:members_member_changelist", 200),
        ("Support", "admin:coalition_journal_changelist", 200),
        ("Support", "admin:coalition_adjustmentrequest_changelist", 200),
        ("Support", "admin:consent_consentevent_changelist", 403),
        ("Finance", "admin:coalition_adjustmentrequest_changelist", 200),
        ("Finance", "admin:coalition_lotconsumption_changelist", 200),
        ("Finance", "admin:members_member_changelist", 403),
        ("Privacy officer", "admin:consent_consentevent_changelist", 200),
        ("Privacy officer", "admin:members_mergerecord_changelist", 200),
        ("Privacy officer", "admin:coalition_journal_changelist", 403),
        ("Programme manager", "admin:tenants_tenant_add", 200),
        ("Programme manager", "admin:coalition_coalition_add", 403),
        ("Programme manager", "admin:consent_consentevent_changelist", 403),
    ],
)
def test_each_group_sees_what_it_needs_and_no_more(coalition, member, group, url, status):
    client = client_for(staff_user("someone", group))
    assert client.get(reverse(url)).status_code == status
