"""Staff's second factor: setting up an authenticator app (TOTP) and checking its codes.

django-otp's `TOTPDevice` does the arithmetic: a code is accepted for its own 30-second step and
one step either side (clock drift), only at a step later than the last code accepted (so a code
is never accepted twice), and after a wrong code the device refuses every code for 1, 2, 4, 8 ...
seconds (`OTP_TOTP_THROTTLE_FACTOR`). The views in `coalition.admin.second_factor` call these and
then mark the session verified (`django_otp.login`).
"""

import math

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

DEVICE_NAME = "Authenticator app"


class SecondFactorRefused(Exception):
    """A code was missing, wrong, already used or came too soon after a wrong one. `guess` is
    True when a code was given and refused (a failed sign-in), False when none was given."""

    def __init__(self, message: str, *, guess: bool) -> None:
        super().__init__(message)
        self.guess = guess


MISSING = "Enter the 6-digit code your authenticator app shows now."
WRONG = (
    "That code is not right, or it was used already: enter the current 6-digit code from your "
    "authenticator app."
)
WAIT = (
    "Too many wrong codes: no code is accepted for {seconds} more seconds. Wait, then enter the "
    "code your app shows then."
)


def totp_enrolment_start(*, user: User) -> TOTPDevice:
    """The user's authenticator app waiting for its first code: made on the first call, the same
    one (and so the same secret) on later calls until it is confirmed, so that reloading the page
    does not invalidate a QR code already scanned."""
    with transaction.atomic():
        # Two tabs opening the page at once must not make two secrets: one waits for the other.
        User.objects.select_for_update().filter(pk=user.pk).get()
        pending = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if pending is None:
            pending = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
        return pending


def totp_enrolment_confirm(*, user: User, token: str) -> TOTPDevice:
    """Confirm the pending authenticator app with a current code from it; from then on the
    user's sign-in needs a code. Raises `SecondFactorRefused`; `LookupError` when the user has
    no pending app (set up already, or never started)."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).get()
        if TOTPDevice.objects.devices_for_user(user, confirmed=True).exists():
            raise LookupError("Two-factor authentication is on already.")
        pending = (
            TOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=False)
            .order_by("pk")
            .first()
        )
        if pending is None:
            raise LookupError("There is no authenticator app waiting to be confirmed.")
        refused = _check(pending, token)
        if refused is None:
            pending.confirmed = True
            pending.save(update_fields=["confirmed"])
            TOTPDevice.objects.filter(user=user, confirmed=False).exclude(pk=pending.pk).delete()
    # Raised after the transaction: the device's failure count (its throttle) must be kept.
    if refused is not None:
        raise refused
    return pending


def totp_verify(*, user: User, token: str) -> TOTPDevice | None:
    """Check a code from the user's confirmed authenticator app. Returns the device that
    accepted it, or None when the user has none (the password alone signs them in). Raises
    `SecondFactorRefused` for a missing, wrong, reused or throttled code."""
    with transaction.atomic():
        # Locked: two sign-ins with the same code at the same moment must not both pass (the
        # second must see the step the first one used, `last_t`).
        device = (
            TOTPDevice.objects.devices_for_user(user, confirmed=True)
            .select_for_update()
            .order_by("pk")
            .first()
        )
        if device is None:
            return None
        refused = _check(device, token)
    if refused is not None:
        raise refused
    return device


def _check(device: TOTPDevice, token: str) -> SecondFactorRefused | None:
    """Verify `token` on the locked `device`. The device records a failure itself (its throttle)
    and the step of a success (no reuse); the caller commits both."""
    token = "".join(token.split())  # apps show "123 456"
    if not token:
        return SecondFactorRefused(MISSING, guess=False)
    allowed, why = device.verify_is_allowed()
    if not allowed:
        until = (why or {}).get("locked_until")
        if until is None:
            return SecondFactorRefused(WRONG, guess=True)
        seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
        return SecondFactorRefused(WAIT.format(seconds=seconds), guess=True)
    if not device.verify_token(token):
        return SecondFactorRefused(WRONG, guess=True)
    return None
