"""Till keys as a security boundary: each key has its own rate limit (set by staff, kept by
rotation, read with the key in the one query that authenticates it), counted in the shared
cache so several web processes share one count; and a revoked key is refused by the very next
request — nothing about keys is cached anywhere.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from coalition.errors import InvalidRequest
from coalition.services.staff import FINANCE, PROGRAMME_MANAGER
from coalition.tests.admin_client import client_for, staff_user
from tenants.models import Till, TillKey
from tenants.selectors import till_key_for_key
from tenants.services import (
    till_key_issue,
    till_key_revoke,
    till_key_rotate,
    till_key_set_rate_limit,
)
from tests.test_till_api_contract import ok, problem
from tests.till_api import TillClient

REDIS_URL = "redis://127.0.0.1:6379/6"


def key_client(till: Till, limit: int | None = None) -> TillClient:
    """A client speaking as `till` with a fresh key of its own, limited to `limit` a minute."""
    _, raw = till_key_issue(till=till, rate_limit_per_minute=limit)
    return TillClient(till=till, key=raw, client=Client())


def prefix_of(api: TillClient) -> str:
    return api.key.partition(".")[0]


def spend(api: TillClient, times: int) -> None:
    for _ in range(times):
        ok(api.get("transactions"), 200)


def refused(api: TillClient) -> int:
    """Assert the next request of `api` is rate limited; return its Retry-After in seconds."""
    response = api.get("transactions")
    problem(response, 429, "rate-limited")
    return int(response["Retry-After"])


@pytest.fixture
def local_cache(settings: Any) -> Iterator[None]:
    """A fresh in-process cache (the test settings' default), with a high programme default."""
    settings.TILL_RATE_LIMIT = 1000
    caches["default"].clear()
    yield
    caches["default"].clear()


def test_two_keys_of_one_till_are_limited_separately(till_a, local_cache):
    # Given one till with two keys, one allowed 2 requests a minute and one allowed 4
    slow, fast = key_client(till_a, limit=2), key_client(till_a, limit=4)
    # When the first spends its 2
    spend(slow, 2)
    # Then its third is refused with a time to wait within the minute
    assert 1 <= refused(slow) <= 61
    # And the other key of the same till still has all 4 of its own
    spend(fast, 4)
    assert 1 <= refused(fast) <= 61


def test_a_key_without_a_limit_uses_the_default_and_zero_means_none(till_a, local_cache, settings):
    settings.TILL_RATE_LIMIT = 2
    default, unlimited = key_client(till_a), key_client(till_a, limit=0)
    spend(default, 2)
    refused(default)
    spend(unlimited, 5)  # more than the default, never refused


def test_a_limit_set_by_the_service_applies_from_the_next_request(till_a, local_cache):
    api = key_client(till_a)
    spend(api, 3)
    key = TillKey.objects.get(prefix=prefix_of(api))
    # When staff lower the key's limit below what it has already used this minute
    till_key_set_rate_limit(key=key, rate_limit_per_minute=3)
    # Then its very next request is refused
    refused(api)


def test_a_rotated_key_keeps_its_limit(till_a, local_cache):
    # Given a key limited to 2 a minute
    old = key_client(till_a, limit=2)
    key = TillKey.objects.get(prefix=prefix_of(old))
    # When it is rotated
    new_key, raw = till_key_rotate(key=key)
    # Then the new key carries the same limit, and is held to it
    assert new_key.rate_limit_per_minute == 2
    assert TillKey.objects.get(pk=new_key.pk).rate_limit_per_minute == 2
    new = TillClient(till=till_a, key=raw, client=Client())
    spend(new, 2)
    refused(new)
    # And the old key is refused outright (401, not 429)
    problem(old.get("transactions"), 401, "unauthenticated")


def test_a_negative_limit_and_a_limit_on_a_revoked_key_are_refused(till_a):
    key, _ = till_key_issue(till=till_a)
    with pytest.raises(InvalidRequest):
        till_key_set_rate_limit(key=key, rate_limit_per_minute=-1)
    with pytest.raises(InvalidRequest):
        till_key_issue(till=till_a, rate_limit_per_minute=-5)
    till_key_revoke(key=key)
    with pytest.raises(InvalidRequest, match="revoked"):
        till_key_set_rate_limit(key=key, rate_limit_per_minute=10)
    assert TillKey.objects.get(pk=key.pk).rate_limit_per_minute is None


def test_the_limit_comes_with_the_key_in_the_one_query_that_authenticates_it(till_a, local_cache):
    limited, default = key_client(till_a, limit=50), key_client(till_a)
    limited_key = till_key_for_key(limited.key)
    assert limited_key is not None and limited_key.rate_limit_per_minute == 50
    counts = []
    for api in (limited, default, limited):
        with CaptureQueriesContext(connection) as queries:
            ok(api.get("transactions"), 200)
        # Every request reads its key from the database, once: no extra query for the limit
        key_reads = [q["sql"] for q in queries.captured_queries if "tenants_tillkey" in q["sql"]]
        assert len(key_reads) == 1, key_reads
        assert "rate_limit_per_minute" in key_reads[0]
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1] == counts[2]


def test_staff_set_a_keys_limit_in_the_back_office(till_a, local_cache):
    key, raw = till_key_issue(till=till_a)
    url = reverse("admin:tenants_tillkey_change", args=[key.pk])
    manager = client_for(staff_user("pm", PROGRAMME_MANAGER))
    # When the programme manager sets the key's limit on its page
    response = manager.post(url, {"rate_limit_per_minute": "7"})
    assert response.status_code == 302, response.content
    # Then it is stored, and nothing else about the key changed
    key.refresh_from_db()
    assert key.rate_limit_per_minute == 7 and not key.revoked
    assert till_key_for_key(raw) is not None
    # And finance may look but not change it
    finance = client_for(staff_user("fin", FINANCE))
    assert finance.post(url, {"rate_limit_per_minute": "1"}).status_code == 403
    key.refresh_from_db()
    assert key.rate_limit_per_minute == 7
    # And a revoked key's page is read only, even to the manager
    till_key_revoke(key=key)
    assert manager.get(url).status_code == 200
    assert manager.post(url, {"rate_limit_per_minute": "99"}).status_code == 403
    key.refresh_from_db()
    assert key.rate_limit_per_minute == 7


# Several web processes: a Redis cache, one client per process.


@pytest.fixture
def redis_cache(settings: Any) -> Iterator[str]:
    """The default cache on Redis (this suite's Redis db), under a prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    settings.TILL_RATE_LIMIT = 1000
    yield prefix
    caches["default"].delete_many([key.decode().split(":", 2)[2] for key in _redis_keys(prefix)])


def _redis_keys(prefix: str) -> list[bytes]:
    import redis

    return list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{prefix}:*"))


def in_own_thread(work: Callable[[], Any]) -> Any:
    """Run `work` in a thread of its own: its own cache client (`caches` is per thread, and a
    RedisCache makes its own connection pool) and its own database connection, as a second
    web process would have."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["cache"] = caches["default"]
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_count_in_redis(till_a, redis_cache):
    # Given a key allowed 3 requests a minute, and two "processes" each with its own cache client
    api = key_client(till_a, limit=3)
    first = in_own_thread(lambda: spend(api, 2))
    second = in_own_thread(lambda: spend(api, 1))
    assert isinstance(first["cache"], RedisCache) and isinstance(second["cache"], RedisCache)
    assert first["cache"] is not second["cache"]
    assert first["cache"]._cache is not second["cache"]._cache  # separate clients and pools
    # Then the count both made is one count: a third, fresh client reads 3
    reader = RedisCache(REDIS_URL, {"KEY_PREFIX": redis_cache})
    counters = [k.decode() for k in _redis_keys(redis_cache)]
    assert len(counters) == 1 and f"till-rate:{prefix_of(api)}:" in counters[0]
    assert reader.get(counters[0].split(":", 2)[2]) == 3
    # And the next request is refused whichever process serves it
    in_own_thread(lambda: refused(api))
    in_own_thread(lambda: refused(api))


def test_the_throttle_counts_in_the_default_cache(till_a, redis_cache):
    """The counter is where the settings put the default cache (Redis here), not in-process."""
    api = key_client(till_a, limit=5)
    spend(api, 2)
    assert isinstance(caches["default"], RedisCache)
    (counter,) = [k.decode() for k in _redis_keys(redis_cache)]
    assert caches["default"].get(counter.split(":", 2)[2]) == 2


# Revocation: refused by the very next request.


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_while_requests_flow_is_refused_by_the_next_request(till_a, local_cache):
    api = key_client(till_a)
    key = TillKey.objects.get(prefix=prefix_of(api))
    warmed_up, revoked, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[bool, int]] = []  # (sent after the revoke had committed, status)
    failure: list[BaseException] = []

    def till() -> None:
        """A till sending requests back to back on its own database connection."""
        try:
            after = 0
            for _ in range(2000):
                sent_after_revoke = revoked.is_set()
                status = api.get("transactions").status_code
                seen.append((sent_after_revoke, status))
                if sum(1 for _, s in seen if s == 200) >= 3:
                    warmed_up.set()
                after += sent_after_revoke
                if after >= 5:
                    break
        except BaseException as exc:  # noqa: BLE001 (asserted on in the test's thread)
            failure.append(exc)
        finally:
            warmed_up.set()
            done.set()
            connections.close_all()

    thread = threading.Thread(target=till)
    thread.start()
    assert warmed_up.wait(timeout=60)
    # When staff revoke the key through the service, from another connection, mid-stream
    till_key_revoke(key=key, reason="Stolen")
    revoked.set()
    thread.join(timeout=120)
    assert done.is_set() and not failure, failure
    # Then every request sent after the revocation committed was refused, from the first one
    after = [status for sent_after, status in seen if sent_after]
    before = [status for sent_after, status in seen if not sent_after]
    assert len(after) == 5 and set(after) == {401}, seen
    assert before.count(200) >= 3 and set(before) <= {200, 401}, seen
