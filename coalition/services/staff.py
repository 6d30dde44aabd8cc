"""Staff groups with least privilege, declared once and kept in step after every `migrate`.

The mapping below is the source of truth: `staff_groups_sync` gives each group exactly these
permissions, so a permission added to one of these groups by hand is removed at the next
migrate. A later issue that needs a new permission extends the mapping.
"""

from collections.abc import Mapping

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Q

PROGRAMME_MANAGER = "Programme manager"
FINANCE = "Finance"
SUPPORT = "Support"
PRIVACY_OFFICER = "Privacy officer"

# Staff who must sign in to the back office with a second factor (TOTP), as must superusers,
# who hold every permission of these groups: `coalition.selectors.second_factor`. Anyone else
# may opt in.
SECOND_FACTOR_GROUPS = frozenset({FINANCE, PRIVACY_OFFICER})

LEDGER_VIEW = frozenset(
    {
        "coalition.view_journal",
        "coalition.view_entry",
        "coalition.view_lot",
        "coalition.view_lotconsumption",
        "coalition.view_account",
        "coalition.view_campaignaward",
    }
)

# Closed months, their statements and reconciliations, payments and waivers: read-only to staff
# (the close writes them), except what finance records.
SETTLEMENT_VIEW = frozenset(
    {
        "settlement.view_period",
        "settlement.view_statement",
        "settlement.view_statementline",
        "settlement.view_reconciliation",
        "settlement.view_payment",
        "settlement.view_arrearswaiver",
        "settlement.view_dispute",
    }
)

STAFF_GROUPS: Mapping[str, frozenset[str]] = {
    # Runs the programme: its rules, the tenants and their tills, the consent purposes.
    PROGRAMME_MANAGER: frozenset(
        {
            "coalition.view_coalition",
            "coalition.change_coalition",
            "coalition.view_liability",
            "coalition.view_expirypolicymigration",
            # Campaigns: multipliers tenants fund, the mall's cross-shop bonus.
            "coalition.view_campaign",
            "coalition.add_campaign",
            "coalition.change_campaign",
            "coalition.view_campaignaward",
            # Imports that post to the ledger: a tenant's old programme's opening balances and
            # historical transactions (members, tenants, stores and tills need their add_*).
            "coalition.import_transactions",
            # Marketing audiences: the members who consent to a marketing purpose, as a CSV.
            "consent.export_audience",
            "tenants.view_tenant",
            "tenants.add_tenant",
            "tenants.change_tenant",
            "tenants.view_store",
            "tenants.add_store",
            "tenants.change_store",
            "tenants.view_till",
            "tenants.add_till",
            "tenants.change_till",
            # Issue, rotate and revoke tills' API keys.
            "tenants.view_tillkey",
            "tenants.add_tillkey",
            "tenants.change_tillkey",
            "tenants.view_tenantrate",
            "tenants.add_tenantrate",
            "tenants.change_tenantrate",
            # Tenant portal logins.
            "tenants.view_tenantuser",
            "tenants.add_tenantuser",
            "tenants.change_tenantuser",
            "members.view_member",
            "members.view_identifier",
            # "add" an adjustment request = may ask for a manual adjustment (maker).
            "coalition.add_adjustmentrequest",
            "coalition.view_adjustmentrequest",
            "coalition.view_journal",
            "coalition.view_entry",
            "coalition.view_lot",
            "coalition.view_expirynotice",
            "coalition.view_account",
            "consent.view_consentpurpose",
            "consent.add_consentpurpose",
            "consent.change_consentpurpose",
        }
    )
    | SETTLEMENT_VIEW,
    # Sees the whole ledger and the tenants' rates; approves or rejects adjustments (checker).
    FINANCE: LEDGER_VIEW
    | SETTLEMENT_VIEW
    | frozenset(
        {
            "coalition.view_adjustmentrequest",
            "coalition.change_adjustmentrequest",
            # The programme's rules (read only), the liability and its CSV, policy migrations.
            "coalition.view_coalition",
            "coalition.view_liability",
            "coalition.view_expirypolicymigration",
            "coalition.view_campaign",
            "tenants.view_tenant",
            "tenants.view_tenantrate",
            # Records payments both ways, and lifts arrears with a reason.
            "settlement.add_payment",
            "settlement.add_arrearswaiver",
            "settlement.change_dispute",
        }
    ),
    # Helps shoppers: enrols and finds members, merges duplicates, asks for adjustments (never
    # approves them).
    SUPPORT: frozenset(
        {
            "members.view_member",
            "members.add_member",
            "members.change_member",
            "members.view_identifier",
            "coalition.add_adjustmentrequest",
            "coalition.view_adjustmentrequest",
            "coalition.view_journal",
            "coalition.view_lot",
            "coalition.view_expirynotice",
            # Which campaign gave a shopper which points ("why did I get 80?").
            "coalition.view_campaignaward",
            # Records a shopper's consent given or withdrawn at the desk, and sees that member's
            # consent history on their page (not the whole consent log).
            "consent.add_consentevent",
        }
    ),
    # Answers data-subject requests: who we hold, what they consented to, which records merged.
    PRIVACY_OFFICER: frozenset(
        {
            "members.view_member",
            "members.view_identifier",
            "consent.view_consentevent",
            "consent.add_consentevent",
            "consent.view_consentpurpose",
            "members.view_mergerecord",
            # Shopper rights: record, verify and carry out access and erasure requests.
            "consent.view_privacyrequest",
            "consent.add_privacyrequest",
            "consent.change_privacyrequest",
            # The audit trail: views and exports of personal data, and every admin change.
            "consent.view_dataaccess",
            "auditlog.view_logentry",
        }
    ),
}


def staff_groups_sync(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, Group]:
    """Create the staff groups and give each exactly the permissions of `STAFF_GROUPS`.

    Idempotent. Raises `LookupError` naming any permission in the mapping that does not exist,
    so a typo fails the first migrate instead of silently granting less.
    """
    labels = {name.split(".", 1)[0] for names in STAFF_GROUPS.values() for name in names}
    # post_migrate reaches the apps one at a time and this runs from the coalition app's turn,
    # before the later apps have their permissions: create them now (idempotent).
    for label in sorted(labels):
        create_permissions(apps.get_app_config(label), verbosity=0, using=using)
    with transaction.atomic(using=using):
        groups = {}
        for group_name, wanted in STAFF_GROUPS.items():
            permissions = _permissions(wanted, using)
            group, _ = Group.objects.using(using).get_or_create(name=group_name)
            group.permissions.set(permissions)
            groups[group_name] = group
        return groups


def _permissions(names: frozenset[str], using: str) -> list[Permission]:
    query = Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".", 1)
        query |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.using(using).filter(query).select_related("content_type"))
    missing = names - {f"{p.content_type.app_label}.{p.codename}" for p in found}
    if missing:
        raise LookupError(f"Unknown permissions in STAFF_GROUPS: {', '.join(sorted(missing))}.")
    return found
