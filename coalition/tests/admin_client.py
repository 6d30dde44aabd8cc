"""Helpers for admin tests: staff users in the staff groups, signed-in clients (with the second
factor their role needs), authenticator codes, and the messages a page showed."""

import time
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice

from coalition.selectors.second_factor import staff_needs_second_factor, staff_totp_device


def staff_user(username: str, *groups: str) -> User:
    """A staff user (not a superuser) in the named staff groups."""
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    assert user.groups.count() == len(groups), f"missing staff group among {groups}"
    return user


def client_for(user: User) -> Client:
    """A client signed in as `user`; when their role needs a second factor (or they have one),
    the session is verified by their authenticator app, as after signing in with its code."""
    client = Client()
    client.force_login(user)
    if staff_needs_second_factor(user) or staff_totp_device(user) is not None:
        second_factor_verify(client, user)
    return client


def totp_device(user: User) -> TOTPDevice:
    """The user's confirmed authenticator app, set up now if they have none."""
    device = staff_totp_device(user)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test app", confirmed=True)
    return device


def second_factor_verify(client: Client, user: User) -> TOTPDevice:
    """Mark the client's session verified by the user's authenticator app, the way
    `django_otp.login` does when a code is accepted."""
    device = totp_device(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def totp_code(device: TOTPDevice, *, step: int | None = None) -> str:
    """The code the device's app shows: for `step` (a TOTP time step) if given, else for the
    earliest step the device accepts now (the current one, or the next one when the current
    one's code was used already; the device accepts one step either side of its clock)."""
    device.refresh_from_db()
    if step is None:
        step = max(totp_step(device), device.last_t + 1)
    return f"{hotp(device.bin_key, step, digits=device.digits):0{device.digits}d}"


def totp_step(device: TOTPDevice) -> int:
    """The device's current time step, by this machine's clock and the device's known drift."""
    return (int(time.time()) - device.t0) // device.step + device.drift


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]
