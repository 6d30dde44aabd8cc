"""Every write to tenants, their stores and tills."""

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import Account, AccountKind, Coalition
from tenants.models import (
    PortalRole,
    Store,
    Tenant,
    TenantStatus,
    TenantUser,
    Till,
    TillKey,
)


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
    if status == TenantStatus.EXITED:
        till_keys_revoke(tills=Till.objects.filter(tenant=tenant), reason="Tenant exited")
    return tenant


@transaction.atomic
def till_key_issue(*, till: Till, name: str = "", actor: Any = None) -> tuple[TillKey, str]:
    """Make a new key for `till`. Returns the key itself, which is shown once and never stored."""
    if till.tenant.status == TenantStatus.EXITED:
        raise InvalidRequest("A tenant that has exited the programme gets no new keys.")
    key = TillKey(
        till=till, name=(name or f"{till.code} {timezone.now():%Y-%m-%d}")[:50], created_by=actor
    )
    raw = TillKey.objects.assign_key(key)
    key.save(force_insert=True)
    return key, raw


@transaction.atomic
def till_key_revoke(*, key: TillKey, reason: str = "Revoked", actor: Any = None) -> TillKey:
    """Revoke a key for good; the next request that carries it gets 401."""
    del actor  # recorded by the admin's log entry; the audit trail arrives with issue 6
    TillKey.objects.filter(pk=key.pk, revoked=False).update(
        revoked=True, revoked_at=timezone.now(), revoked_reason=reason[:200]
    )
    key.refresh_from_db()
    return key


@transaction.atomic
def till_key_rotate(*, key: TillKey, actor: Any = None) -> tuple[TillKey, str]:
    """Replace a key: a new one for the same till, and the old one revoked at once."""
    current = TillKey.objects.select_for_update().select_related("till__tenant").get(pk=key.pk)
    if current.revoked:
        raise InvalidRequest("This key is already revoked; issue a new one instead.")
    till_key_revoke(key=current, reason="Rotated", actor=actor)
    return till_key_issue(till=current.till, name=current.name, actor=actor)


def till_keys_revoke(*, tills: Any, reason: str, keep: TillKey | None = None) -> int:
    """Revoke every live key of `tills` (a queryset) but `keep`; returns how many."""
    keys = TillKey.objects.filter(till__in=tills, revoked=False)
    if keep is not None:
        keys = keys.exclude(pk=keep.pk)
    return keys.update(revoked=True, revoked_at=timezone.now(), revoked_reason=reason[:200])


@transaction.atomic
def tenant_user_create(
    *, tenant: Tenant, username: str, role: str, password: str, email: str = ""
) -> TenantUser:
    """A portal login for one tenant (never staff: staff use the admin)."""
    username = username.strip()
    if not username:
        raise InvalidRequest("A username is required.", field="username")
    if role not in PortalRole.values:
        raise InvalidRequest(f"Unknown portal role {role!r}.", field="role")
    if len(password) < 10:
        raise InvalidRequest("A password of at least 10 characters.", field="password")
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise InvalidRequest(f"The username {username!r} is taken.", field="username")
    user = user_model.objects.create_user(
        username=username, email=email, password=password, is_staff=False
    )
    return TenantUser.objects.create(user=user, tenant=tenant, role=role)
