"""Reads about settlement. Statements arrive with the monthly close (issue 4)."""

from tenants.models import Tenant


def tenant_has_overdue_statements(tenant: Tenant) -> bool:
    """True when the tenant has an unpaid statement past its due date.

    No statements exist before the monthly close is built, so no tenant can be in arrears yet.
    """
    del tenant
    return False
