"""Reads about tenants: the rates in force on a date, and whether a tenant may issue or redeem."""

from datetime import date
from decimal import Decimal

from tenants.models import Tenant, TenantRate, TenantStatus, Till, TillKey


def tenant_rates_on(tenant: Tenant, day: date) -> tuple[Decimal, Decimal]:
    """(price per point issued, reimbursement per point honoured) in force on `day`.

    Without a rate row of its own, a tenant settles at the coalition's default rates.
    """
    rate = (
        TenantRate.objects.filter(tenant=tenant, effective_from__lte=day)
        .order_by("-effective_from")
        .values_list("price_per_point", "reimbursement_per_point")
        .first()
    )
    if rate is not None:
        return rate
    coalition = tenant.coalition
    return coalition.default_price_per_point, coalition.default_reimbursement_per_point


def tenant_in_arrears(tenant: Tenant) -> bool:
    """Unpaid statements past their due date put a tenant in arrears (settlement, issue 4)."""
    from settlement.selectors import tenant_has_overdue_statements

    return tenant_has_overdue_statements(tenant)


def tenant_can_issue(tenant: Tenant) -> bool:
    return tenant.status == TenantStatus.ACTIVE and tenant.may_issue


def tenant_can_redeem(tenant: Tenant) -> bool:
    """Redeem only while active, allowed to, and not in arrears (no free riders)."""
    return (
        tenant.status == TenantStatus.ACTIVE and tenant.may_redeem and not tenant_in_arrears(tenant)
    )


def till_for_key(raw_key: str) -> Till | None:
    """The active till a live key belongs to, with its tenant and coalition, in one query;
    None for an unknown, revoked, expired or malformed key."""
    prefix, dot, _ = raw_key.partition(".")
    if not dot or not prefix:
        return None
    key = (
        TillKey.objects.select_related("till__tenant__coalition")
        .filter(prefix=prefix, revoked=False, till__is_active=True)
        .first()
    )
    if key is None or key.has_expired or not key.is_valid(raw_key):
        return None
    return key.till
