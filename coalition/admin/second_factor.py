"""The back office's second factor (TOTP): the sign-in form's code, the enrolment page, the code
prompt for a session not yet verified, and the middleware that sends staff who need a verified
session to one of those two pages from every admin page.

Who needs one is `staff_needs_second_factor` (Finance, Privacy officer, superusers); anyone else
with a confirmed authenticator app needs its code too. Resetting someone's app is deleting their
TOTP device in the admin (django-otp registers it; needs `otp_totp.delete_totpdevice`), which the
audit log records (`AUDITLOG_INCLUDE_TRACKING_MODELS` in the settings).
"""

import base64
import io
from collections.abc import Callable
from typing import Any

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from coalition.selectors.second_factor import staff_needs_second_factor, staff_totp_device
from coalition.services.second_factor import (
    SecondFactorRefused,
    totp_enrolment_confirm,
    totp_enrolment_start,
    totp_verify,
)

SETUP = "second_factor"
VERIFY = "second_factor_verify"
# Pages an unverified session may still open: signing in and out, and the two pages above.
OPEN_PAGES = frozenset({"admin:login", "admin:logout", "admin:jsi18n", SETUP, VERIFY})


class CodeField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        attrs = {"autocomplete": "one-time-code", "inputmode": "numeric", "size": "8"}
        super().__init__(max_length=16, widget=forms.TextInput(attrs=attrs), **kwargs)


class SecondFactorLoginForm(AdminAuthenticationForm):
    """The admin's sign-in: username and password, and the authenticator code of staff who have
    set one up. A missing or wrong code refuses the sign-in; a wrong one also counts as a failed
    sign-in for django-axes (as a wrong password does), on top of the device's own throttle."""

    otp_token = CodeField(
        label="Authenticator code",
        required=False,
        help_text="The 6-digit code from your authenticator app, if you have set one up.",
    )

    def clean(self) -> dict[str, Any]:
        # Checks the password with the request (django-axes counts failures) and is_staff.
        cleaned = super().clean()
        user = self.get_user()
        if user is None:
            return cleaned
        try:
            device = totp_verify(user=user, token=cleaned.get("otp_token") or "")
        except SecondFactorRefused as refused:
            if refused.guess:
                user_login_failed.send(
                    sender=type(self),
                    credentials={"username": cleaned.get("username")},
                    request=self.request,
                )
            raise forms.ValidationError(str(refused), code="second_factor") from None
        if device is not None:
            # django_otp's `user_logged_in` receiver marks the new session verified by it.
            user.otp_device = device  # type: ignore[attr-defined]  # read by django_otp
        return cleaned


class CodeForm(forms.Form):
    otp_token = CodeField(label="Authenticator code", required=False)


def _staff(request: HttpRequest) -> User:
    """The signed-in member of staff (the views are wrapped in `AdminSite.admin_view`)."""
    user = request.user
    assert isinstance(user, User)
    return user


def _next_url(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if safe else reverse("admin:index")


def _verified(request: HttpRequest, device: TOTPDevice) -> HttpResponseRedirect:
    """Mark the session verified by `device` (a new session key: the old one may have leaked
    before it carried the second factor) and go where the user was going."""
    request.session.cycle_key()
    otp_login(request, device)
    return HttpResponseRedirect(_next_url(request))


def _page(site: AdminSite, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
    return TemplateResponse(
        request,
        template,
        {
            **site.each_context(request),
            "title": "Two-factor authentication",
            "next": _next_url(request),
            "is_nav_sidebar_enabled": False,
        }
        | context,
    )


def qr_code_data_uri(text: str) -> str:
    """`text` as a QR code, an SVG image in a data: URI (the CSP allows data: images)."""
    out = io.BytesIO()
    qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2).save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def setup_view(site: AdminSite) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        """Whether two-factor authentication is on; if not, the QR code and secret of a new
        authenticator app, confirmed with a code from it."""
        user = _staff(request)
        device = staff_totp_device(user)
        if device is not None:
            return _page(
                site,
                request,
                "otp/status.html",
                device=device,
                session_verified=getattr(user, "otp_device", None) is not None,
                required=staff_needs_second_factor(user),
            )
        pending = totp_enrolment_start(user=user)
        form = CodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                device = totp_enrolment_confirm(user=user, token=form.cleaned_data["otp_token"])
            except (SecondFactorRefused, LookupError) as refused:
                form.add_error("otp_token", str(refused))
            else:
                messages.success(request, "Two-factor authentication is on.")
                return _verified(request, device)
        secret = base64.b32encode(pending.bin_key).decode("ascii")
        return _page(
            site,
            request,
            "otp/setup.html",
            form=form,
            qr_code=qr_code_data_uri(pending.config_url),
            secret=_grouped(secret),
            required=staff_needs_second_factor(user),
        )

    return view


def verify_view(site: AdminSite) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        """The code prompt for a signed-in member of staff whose session has no second factor
        yet but whose account has one."""
        user = _staff(request)
        if staff_totp_device(user) is None:
            return redirect_to_login(_next_url(request), reverse(SETUP))
        if getattr(user, "otp_device", None) is not None:
            return redirect(_next_url(request))
        form = CodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                device = totp_verify(user=user, token=form.cleaned_data["otp_token"])
            except SecondFactorRefused as refused:
                form.add_error("otp_token", str(refused))
            else:
                if device is not None:
                    return _verified(request, device)
        return _page(site, request, "otp/verify.html", form=form)

    return view


def second_factor_urls(site: AdminSite) -> list[URLPattern]:
    """The enrolment page and the code prompt, under the admin (before `site.urls`, whose
    catch-all would answer these paths)."""
    return [
        path("two-factor/", site.admin_view(setup_view(site)), name=SETUP),
        path("two-factor/verify/", site.admin_view(verify_view(site)), name=VERIFY),
    ]


class SecondFactorMiddleware:
    """From every admin page (GET or POST), staff who need a verified session and do not have one
    are sent to the enrolment page (no authenticator app yet) or the code prompt (an app, but this
    session has not given its code), with the page they asked for as `next`.

    After `django_otp.middleware.OTPMiddleware`, which sets `request.user.otp_device`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: Any,
        view_kwargs: Any,
    ) -> HttpResponse | None:
        if not request.path.startswith(reverse("admin:index")):
            return None
        match = request.resolver_match
        if match is not None and match.view_name in OPEN_PAGES:
            return None
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return None  # the admin sends them to its login page itself
        if getattr(user, "otp_device", None) is not None:
            return None
        if staff_totp_device(user) is not None:
            return redirect_to_login(request.get_full_path(), reverse(VERIFY))
        if staff_needs_second_factor(user):
            return redirect_to_login(request.get_full_path(), reverse(SETUP))
        return None
