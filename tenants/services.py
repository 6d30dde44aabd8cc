"""Every write to tenants, their stores and tills."""

from datetime import date, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import Account, AccountKind, Coalition
from coalition.services.programme import local_date
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
    """Suspend, reactivate or exit a tenant. Exiting is at once (today is its exit date); an
    exited tenant's points stay redeemable elsewhere: they were funded when issued."""
    del actor  # recorded by the admin's log entry; the audit trail arrives with issue 6
    if status not in TenantStatus.values:
        raise InvalidRequest(f"Unknown tenant status {status!r}.", field="status")
    current = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if current.status == TenantStatus.EXITED and status != TenantStatus.EXITED:
        raise InvalidRequest("A tenant that has exited the programme cannot come back to it.")
    if status == TenantStatus.EXITED:
        today = local_date(current.coalition, timezone.now())
        exit_on = min(current.exit_on or today, today)
        _exit_apply(current, exit_on)
        tenant.status, tenant.exit_on = current.status, current.exit_on
        return tenant
    Tenant.objects.filter(pk=tenant.pk).update(status=status)
    tenant.status = status
    return tenant


@transaction.atomic
def tenant_exit_schedule(
    *, tenant: Tenant, exit_on: date, actor: Any = None, now: datetime | None = None
) -> Tenant:
    """Set the first day `tenant` is out of the programme (today or later, in the coalition's
    time zone). From that day its tills are refused and its keys revoked (at once when it is
    today, else by the daily job `tenants_exit_due`); its next close writes its final
    statement; its portal stays, read only. Staff may move a date that has not come yet."""
    del actor  # recorded by the admin's log entry; the audit trail arrives with issue 6
    current = Tenant.objects.select_for_update().select_related("coalition").get(pk=tenant.pk)
    if current.status == TenantStatus.EXITED:
        raise InvalidRequest(f"{current.name} has already left the programme.")
    today = local_date(current.coalition, now or timezone.now())
    if exit_on < today:
        raise InvalidRequest(
            f"The exit date is today ({today}) or later; a past date would rewrite what its "
            "tills already did.",
            field="exit_on",
        )
    if exit_on == today:
        _exit_apply(current, exit_on)
    else:
        Tenant.objects.filter(pk=current.pk).update(exit_on=exit_on)
        current.exit_on = exit_on
    tenant.status, tenant.exit_on = current.status, current.exit_on
    return tenant


def tenants_exit_due(*, now: datetime | None = None) -> list[Tenant]:
    """Exit every tenant whose exit date has come (the daily job; catches up)."""
    now = now or timezone.now()
    exited = []
    due = Tenant.objects.filter(exit_on__isnull=False).exclude(status=TenantStatus.EXITED)
    for tenant in due.select_related("coalition").order_by("pk"):
        if tenant.exit_on is not None and tenant.exit_on <= local_date(tenant.coalition, now):
            with transaction.atomic():
                locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
                if locked.status != TenantStatus.EXITED and locked.exit_on is not None:
                    _exit_apply(locked, locked.exit_on)
                    exited.append(locked)
    return exited


def _exit_apply(tenant: Tenant, exit_on: date) -> None:
    """The exit itself, under the tenant's row lock: status, date, every key revoked."""
    Tenant.objects.filter(pk=tenant.pk).update(status=TenantStatus.EXITED, exit_on=exit_on)
    tenant.status, tenant.exit_on = TenantStatus.EXITED, exit_on
    till_keys_revoke(tills=Till.objects.filter(tenant=tenant), reason="Tenant exited")


@transaction.atomic
def till_key_issue(
    *, till: Till, name: str = "", actor: Any = None, rate_limit_per_minute: int | None = None
) -> tuple[TillKey, str]:
    """Make a new key for `till`. Returns the key itself, which is shown once and never stored.

    `rate_limit_per_minute`: None for the programme's default (`TILL_RATE_LIMIT`), 0 for none.
    """
    if till.tenant.status == TenantStatus.EXITED:
        raise InvalidRequest("A tenant that has exited the programme gets no new keys.")
    _check_rate_limit(rate_limit_per_minute)
    key = TillKey(
        till=till,
        name=(name or f"{till.code} {timezone.now():%Y-%m-%d}")[:50],
        created_by=actor,
        rate_limit_per_minute=rate_limit_per_minute,
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
    """Replace a key: a new one for the same till with the same rate limit, and the old one
    revoked at once."""
    current = TillKey.objects.select_for_update().select_related("till__tenant").get(pk=key.pk)
    if current.revoked:
        raise InvalidRequest("This key is already revoked; issue a new one instead.")
    till_key_revoke(key=current, reason="Rotated", actor=actor)
    return till_key_issue(
        till=current.till,
        name=current.name,
        actor=actor,
        rate_limit_per_minute=current.rate_limit_per_minute,
    )


@transaction.atomic
def till_key_set_rate_limit(
    *, key: TillKey, rate_limit_per_minute: int | None, actor: Any = None
) -> TillKey:
    """Set how many requests per minute a live key may make (None: the programme's default,
    0: no limit). It applies from the key's next request: the limit is read with the key."""
    del actor  # recorded by the admin's log entry
    _check_rate_limit(rate_limit_per_minute)
    updated = TillKey.objects.filter(pk=key.pk, revoked=False).update(
        rate_limit_per_minute=rate_limit_per_minute
    )
    if not updated:
        raise InvalidRequest("A revoked key takes no rate limit.")
    key.refresh_from_db()
    return key


def _check_rate_limit(rate_limit_per_minute: int | None) -> None:
    if rate_limit_per_minute is not None and rate_limit_per_minute < 0:
        raise InvalidRequest(
            "A rate limit is a number of requests per minute, 0 or more.",
            field="rate_limit_per_minute",
        )


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
