"""Every write to tenants, their stores and tills."""

from typing import Any

from django.db import transaction

from coalition.errors import InvalidRequest
from coalition.models import Account, AccountKind, Coalition
from tenants.models import Store, Tenant, TenantStatus, Till


@transaction.atomic
def tenant_create(
    *,
    coalition: Coalition,
    slug: str,
    name: str,
    category: str,
    legal_name: str = "",
    status: str = TenantStatus.ACTIVE,
) -> Tenant:
    """A tenant that may issue and redeem, settling at the coalition's default rates."""
    tenant = Tenant(
        coalition=coalition,
        slug=slug,
        name=name,
        legal_name=legal_name or name,
        category=category,
        status=status,
    )
    tenant.full_clean()
    tenant.save()
    Account.objects.bulk_create(
        [
            Account(coalition=coalition, tenant=tenant, kind=AccountKind.TENANT_ISSUED),
            Account(coalition=coalition, tenant=tenant, kind=AccountKind.TENANT_REDEEMED),
        ]
    )
    return tenant


@transaction.atomic
def till_create(*, tenant: Tenant, store_code: str, till_code: str, store_name: str = "") -> Till:
    """A till in a store of `tenant`; the store is created when it does not exist yet."""
    store, _ = Store.objects.get_or_create(
        tenant=tenant, code=store_code, defaults={"name": store_name or f"{tenant.name} store"}
    )
    till, _ = Till.objects.get_or_create(tenant=tenant, code=till_code, defaults={"store": store})
    return till


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: str, actor: Any) -> Tenant:
    """Suspend, reactivate or exit a tenant. An exited tenant's points stay redeemable elsewhere:
    they were funded when issued."""
    del actor  # recorded by the admin's log entry; the audit trail arrives with issue 6
    if status not in TenantStatus.values:
        raise InvalidRequest(f"Unknown tenant status {status!r}.", field="status")
    current = Tenant.objects.select_for_update().get(pk=tenant.pk).status
    if current == TenantStatus.EXITED and status != TenantStatus.EXITED:
        raise InvalidRequest("A tenant that has exited the programme cannot come back to it.")
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.status = status
    return tenant
