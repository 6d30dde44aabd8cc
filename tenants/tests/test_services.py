import pytest

from coalition.errors import InvalidRequest
from tenants.models import TenantStatus
from tenants.services import tenant_set_status


def test_status_changes_and_an_exit_is_final(till_a, staff):
    tenant = till_a.tenant
    tenant_set_status(tenant=tenant, status=TenantStatus.SUSPENDED, actor=staff)
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.SUSPENDED
    with pytest.raises(InvalidRequest):
        tenant_set_status(tenant=tenant, status="closed-for-lunch", actor=staff)
    tenant_set_status(tenant=tenant, status=TenantStatus.EXITED, actor=staff)
    with pytest.raises(InvalidRequest):
        tenant_set_status(tenant=tenant, status=TenantStatus.ACTIVE, actor=staff)
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.EXITED
