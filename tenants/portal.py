"""The tenant portal's access check, in one place: who is signed in, for which tenant, in what
role. Every portal view is wrapped in `portal_view`; every object it shows is then read through
a `*_for_tenant` selector with `tenant_of(request)`, so another tenant's object is a 404."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from tenants.models import PortalRole, Tenant, TenantUser
from tenants.selectors import tenant_has_left

View = Callable[..., HttpResponse]
LOGIN_URL = "portal:login"


def portal_view(*roles: str, write: bool = False) -> Callable[[View], View]:
    """Signed-in portal users only; with `roles`, only those roles. `write` views refuse a
    tenant that has left the programme (its portal stays, read only)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), LOGIN_URL)
            tenant_user = (
                TenantUser.objects.select_related("tenant__coalition")
                .filter(user=request.user)
                .first()
            )
            if tenant_user is None:
                raise PermissionDenied("This login has no tenant portal access.")
            if roles and tenant_user.role not in roles:
                raise PermissionDenied("Your role may not do this.")
            read_only = tenant_has_left(tenant_user.tenant)
            if write and read_only:
                raise PermissionDenied("This tenant has left the programme: read only.")
            request.tenant_user = tenant_user  # type: ignore[attr-defined]
            request.tenant_read_only = read_only  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


MANAGER = PortalRole.MANAGER


def tenant_user_of(request: HttpRequest) -> TenantUser:
    """The portal user `portal_view` signed in for this request."""
    tenant_user = getattr(request, "tenant_user", None)
    assert isinstance(tenant_user, TenantUser), "a portal view without @portal_view"
    return tenant_user


def portal_read_only(request: HttpRequest) -> bool:
    """The signed-in tenant has left the programme: its portal shows, and changes nothing."""
    return bool(getattr(request, "tenant_read_only", False))


def tenant_of(request: HttpRequest) -> Tenant:
    return tenant_user_of(request).tenant
