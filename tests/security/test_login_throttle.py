"""Login throttling (django-axes): the admin's and the portal's sign-in pages.

Five wrong passwords for one username from one address lock that pair out (429 with
Retry-After) even for the right password; another user, or the same user from elsewhere, is not
locked; staff unlock it; a success resets the count. Real requests through the middleware and
the database handler: nothing is mocked.
"""

import re
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client, override_settings

from coalition.settings.base import AXES_COOLOFF_TIME, AXES_FAILURE_LIMIT
from tenants.models import PortalRole, Till
from tenants.services import tenant_user_create

PASSWORD = "correct horse battery"
ADMIN_LOGIN = "/admin/login/"
PORTAL_LOGIN = "/portal/login/"
HOME = "198.51.100.7"
ELSEWHERE = "203.0.113.9"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_pair(db: Any) -> tuple[User, User]:
    users = tuple(
        User.objects.create_user(name, password=PASSWORD, is_staff=True)
        for name in ("anita.desk", "ravi.desk")
    )
    return users[0], users[1]


@pytest.fixture
def portal_pair(till_a: Till) -> tuple[str, str]:
    for name in ("a-manager", "a-clerk"):
        tenant_user_create(
            tenant=till_a.tenant, username=name, role=PortalRole.MANAGER, password=PASSWORD
        )
    return "a-manager", "a-clerk"


def attempt(url: str, username: str, password: str, ip: str = HOME, **extra: Any) -> Any:
    """One sign-in from a fresh browser (no session) at `ip`."""
    return Client().post(url, {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def fail_times(url: str, username: str, times: int, ip: str = HOME, **extra: Any) -> list[int]:
    return [attempt(url, username, "wrong", ip, **extra).status_code for _ in range(times)]


@pytest.mark.parametrize("url", [ADMIN_LOGIN, PORTAL_LOGIN])
def test_five_failures_lock_that_user_at_that_address_only(
    url: str, staff_pair: tuple[User, User], portal_pair: tuple[str, str]
) -> None:
    user, other = (
        (staff_pair[0].username, staff_pair[1].username) if url == ADMIN_LOGIN else portal_pair
    )
    # Given four wrong passwords: still only a wrong-password form
    assert fail_times(url, user, AXES_FAILURE_LIMIT - 1) == [200] * (AXES_FAILURE_LIMIT - 1)
    # When the fifth fails too, the pair is locked out at once
    locked = attempt(url, user, "wrong")
    assert locked.status_code == 429

    # Then even the right password is refused, from that address
    refused = attempt(url, user, PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in refused.wsgi_request.session
    assert refused["Retry-After"] == str(int(AXES_COOLOFF_TIME.total_seconds()))
    page = refused.content.decode()
    assert "Sign-in paused" in page
    # Nothing to help a guesser: not whose account, nor how many attempts are allowed
    assert user not in page
    assert not re.search(rf"\b{AXES_FAILURE_LIMIT}\b", page)
    # ...but another user at the same address, and the same user elsewhere, sign in
    assert signed_in(attempt(url, other, PASSWORD))
    assert signed_in(attempt(url, user, PASSWORD, ip=ELSEWHERE))


@pytest.mark.parametrize("url", [ADMIN_LOGIN, PORTAL_LOGIN])
def test_a_success_resets_the_count(
    url: str, staff_pair: tuple[User, User], portal_pair: tuple[str, str]
) -> None:
    user = staff_pair[0].username if url == ADMIN_LOGIN else portal_pair[0]
    fail_times(url, user, AXES_FAILURE_LIMIT - 1)
    assert signed_in(attempt(url, user, PASSWORD))
    # Four more failures: eight in all, but only four since the success
    assert fail_times(url, user, AXES_FAILURE_LIMIT - 1) == [200] * (AXES_FAILURE_LIMIT - 1)
    assert signed_in(attempt(url, user, PASSWORD))


def test_staff_with_the_permission_unlock_in_the_admin(staff_pair: tuple[User, User]) -> None:
    user = staff_pair[0].username
    fail_times(ADMIN_LOGIN, user, AXES_FAILURE_LIMIT)
    assert attempt(ADMIN_LOGIN, user, PASSWORD).status_code == 429
    locked = AccessAttempt.objects.get(username=user, ip_address=HOME)

    # A staff member without the permission cannot
    unlocker = User.objects.create_user("security-desk", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(unlocker)
    delete_url = f"/admin/axes/accessattempt/{locked.pk}/delete/"
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert attempt(ADMIN_LOGIN, user, PASSWORD).status_code == 429

    # With axes.delete_accessattempt (and view), deleting the attempt lifts the lockout
    unlocker.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="axes",
            codename__in=["view_accessattempt", "delete_accessattempt"],
        )
    )
    client.force_login(User.objects.get(pk=unlocker.pk))
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not AccessAttempt.objects.filter(username=user).exists()
    assert signed_in(attempt(ADMIN_LOGIN, user, PASSWORD))


def test_the_reset_command_unlocks_a_portal_user(portal_pair: tuple[str, str]) -> None:
    user = portal_pair[0]
    fail_times(PORTAL_LOGIN, user, AXES_FAILURE_LIMIT)
    assert attempt(PORTAL_LOGIN, user, PASSWORD).status_code == 429

    call_command("axes_reset_username", user)

    assert signed_in(attempt(PORTAL_LOGIN, user, PASSWORD))


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_one_proxy_the_forwarded_address_counts_and_a_forged_one_does_not(
    staff_pair: tuple[User, User],
) -> None:
    """Every request arrives from the proxy's address; X-Forwarded-For's last entry is the
    client's. A client that writes its own X-Forwarded-For only adds entries to its left."""
    user = staff_pair[0].username
    proxy = "10.0.0.2"
    for n in range(AXES_FAILURE_LIMIT):
        forged = f"192.0.2.{n}, {HOME}"  # a different forged address each time
        attempt(ADMIN_LOGIN, user, "wrong", ip=proxy, HTTP_X_FORWARDED_FOR=forged)
    assert AccessAttempt.objects.get(username=user).ip_address == HOME

    assert (
        attempt(ADMIN_LOGIN, user, PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR=HOME).status_code == 429
    )
    # Another shopper's browser behind the same proxy is a different client
    assert signed_in(attempt(ADMIN_LOGIN, user, PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR=ELSEWHERE))
