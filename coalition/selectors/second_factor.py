"""Who must sign in to the back office with a second factor, and the authenticator app they use.

The second factor is a TOTP device (`django_otp.plugins.otp_totp`): one confirmed device per
member of staff, made on the enrolment page (`coalition.admin.second_factor`).
"""

from django.contrib.auth.models import AnonymousUser, User
from django_otp.plugins.otp_totp.models import TOTPDevice

from coalition.services.staff import SECOND_FACTOR_GROUPS


def staff_needs_second_factor(user: User | AnonymousUser) -> bool:
    """Whether `user` may use the back office only in a session verified by a second factor.

    Members of `SECOND_FACTOR_GROUPS` (Finance, Privacy officer) must, and so must superusers:
    they hold every permission of those groups and can reset anyone's second factor.
    """
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=SECOND_FACTOR_GROUPS).exists()


def staff_totp_device(user: User | AnonymousUser) -> TOTPDevice | None:
    """The user's confirmed authenticator app, or None when they have not set one up."""
    if not user.is_authenticated:
        return None
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("pk").first()
