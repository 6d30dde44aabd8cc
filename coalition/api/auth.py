"""Till authentication (`Authorization: Api-Key <key>`) and the per-key rate limit."""

import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tenants.models import Till, TillKey
from tenants.selectors import till_key_for_key

KEYWORD = "Api-Key"


class TillKeyAuthentication(BaseAuthentication):
    """`request.auth` becomes the till; its tenant is the tenant of everything it posts.

    DRF makes one authenticator per request; the key it accepted stays on it (`key`) for the
    rate limit, which reaches it through `request.successful_authenticator`.
    """

    key: TillKey | None = None

    def authenticate(self, request: Request) -> tuple[Any, Till] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        if scheme != KEYWORD or not raw.strip():
            return None  # → NotAuthenticated, 401
        # Read from the database on every request, never cached: a revoked key is refused by
        # the very next request, whichever web process serves it.
        key = till_key_for_key(raw.strip())
        if key is None:
            raise AuthenticationFailed("Unknown or revoked key.")
        self.key = key
        return None, key.till

    def authenticate_header(self, request: Request) -> str:
        return f'{KEYWORD} realm="till"'


class IsTill(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Till)


def key_rate_limit(key: TillKey) -> int:
    """Requests per minute `key` may make: its own limit, else `TILL_RATE_LIMIT`; 0 is none."""
    if key.rate_limit_per_minute is not None:
        return key.rate_limit_per_minute
    return int(settings.TILL_RATE_LIMIT)


class TillKeyThrottle(BaseThrottle):
    """A fixed-window request count per key (`key_rate_limit` requests per minute).

    One atomic counter per key and minute in the default cache (Redis in production), so every
    web process counts against the same limit; two keys of one till are counted apart.
    """

    window = 60

    def __init__(self) -> None:
        self.wait_seconds = 0

    def allow_request(self, request: Request, view: Any) -> bool:
        authenticator = request.successful_authenticator
        if not isinstance(authenticator, TillKeyAuthentication) or authenticator.key is None:
            return True  # not a till: refused by authentication, not here
        key = authenticator.key
        limit = key_rate_limit(key)
        if not limit:
            return True
        now = time.time()
        window = int(now // self.window)
        counter = f"till-rate:{key.prefix}:{window}"
        cache = caches["default"]
        # add-then-incr: both atomic in Redis, so concurrent requests in several processes
        # never lose a count (a get-then-set would).
        if cache.add(counter, 1, timeout=self.window + 5):
            count = 1
        else:
            try:
                count = cache.incr(counter)
            except ValueError:  # expired between add and incr
                cache.add(counter, 1, timeout=self.window + 5)
                count = 1
        if count > limit:
            self.wait_seconds = int((window + 1) * self.window - now) + 1
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds
