"""Reads about tenants: the rates in force on a date, and whether a tenant may issue or redeem."""

from datetime import date
from decimal import Decimal

from tenants.models import Tenant, TenantRate, TenantStatus


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
