"""Login throttling (django-axes) for the admin's and the portal's sign-in pages.

Settings are in `coalition/settings/base.py` (the AXES_* block): five failures for one username
from one address lock that pair out for 15 minutes. This module holds the three pieces axes
lets a project plug in: the authentication backend, the client address behind a proxy, and the
lockout page. The till API authenticates with `Api-Key` headers, never through authenticate(),
and is not throttled here (it has its own per-key rate limit).
"""

import ipaddress
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' standalone backend, except that a call without a request is left to the others.

    Throttling counts failures per client; authenticate() without a request has no client to
    count (a test client's `login()`, a shell), and so cannot come from the network. Every login
    view here passes the request (Django's AuthenticationForm does); tests/security/
    test_login_throttle.py proves both sign-in pages are throttled.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The address a login attempt came from, as the outermost trusted proxy saw it.

    With `TRUSTED_PROXY_COUNT` = n > 0, each of the n proxies appends the address it received
    from to X-Forwarded-For, so the n-th entry from the right is the client's; anything left of
    it was written by the client and is ignored (it could be anything). With 0 (no proxy, the
    default) the socket's address is the client's.
    """
    remote = request.META.get("REMOTE_ADDR")
    hops: int = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if len(forwarded) < hops:
        return remote  # not through the expected proxies: only the socket is known
    candidate = forwarded[-hops]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return remote
    return candidate


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any = None
) -> HttpResponse:
    """429 with Retry-After: when the pair may try again (a new failure restarts the wait).

    The page says neither the username nor how many attempts are allowed.
    """
    cool_off = get_cool_off(request)
    minutes = int(cool_off.total_seconds() // 60) if cool_off else None
    response = TemplateResponse(request, "security/lockout.html", {"minutes": minutes}, status=429)
    if cool_off:
        response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response.render()
