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

from tenants.models import Till
from tenants.selectors import till_for_key

KEYWORD = "Api-Key"


class TillKeyAuthentication(BaseAuthentication):
    """`request.auth` becomes the till; its tenant is the tenant of everything it posts."""

    def authenticate(self, request: Request) -> tuple[Any, Till] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            return None  # → NotAuthenticated, 401
        till = till_for_key(key.strip())
        if till is None:
            raise AuthenticationFailed("Unknown or revoked key.")
        return None, till

    def authenticate_header(self, request: Request) -> str:
        return f'{KEYWORD} realm="till"'


class IsTill(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Till)


class TillKeyThrottle(BaseThrottle):
    """A fixed-window request count per till (`TILL_RATE_LIMIT` requests per minute).

    One atomic counter per till and minute in the shared cache (Redis in production), so every
    web process counts against the same limit.
    """

    window = 60

    def __init__(self) -> None:
        self.wait_seconds = 0

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = settings.TILL_RATE_LIMIT
        if not limit or not isinstance(request.auth, Till):
            return True
        now = time.time()
        window = int(now // self.window)
        key = f"till-rate:{request.auth.pk}:{window}"
        cache = caches["default"]
        if cache.add(key, 1, timeout=self.window + 5):
            count = 1
        else:
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=self.window + 5)
                count = 1
        if count > limit:
            self.wait_seconds = int((window + 1) * self.window - now) + 1
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds
