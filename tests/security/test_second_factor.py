"""The second factor (TOTP) for staff: required for Finance, the Privacy officer and superusers,
optional for everyone else, and once set up, needed at every sign-in.

Real requests through the whole middleware stack (django-otp, django-axes, the audit log) and
real codes computed from the device's secret the way an authenticator app does; nothing is
mocked. A device accepts one 30-second step either side of its clock and never a step at or
before the last it accepted (`totp_code` picks a step it accepts now).
"""

import shutil
import threading
import time
from base64 import b32decode
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import hotp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from coalition.models import Coalition
from coalition.selectors.second_factor import staff_needs_second_factor
from coalition.services.second_factor import (
    MISSING,
    WRONG,
    SecondFactorRefused,
    totp_verify,
)
from coalition.services.staff import FINANCE, PRIVACY_OFFICER, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import (
    client_for,
    second_factor_verify,
    staff_user,
    totp_code,
    totp_device,
    totp_step,
)
from settlement.models import Payment
from tenants.models import Till

LOGIN = "/admin/login/"
SETUP = "/admin/two-factor/"
VERIFY = "/admin/two-factor/verify/"


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.wsgi_request.session


def verified(client: Client) -> bool:
    return DEVICE_ID_SESSION_KEY in client.session


def sign_in(username: str, code: str = "", client: Client | None = None) -> Any:
    """One sign-in at the admin's login page, password "x" (`staff_user`)."""
    client = client or Client()
    return client.post(
        LOGIN, {"username": username, "password": "x", "otp_token": code, "next": "/admin/"}
    )


def errors_of(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode().replace("&#x27;", "'")


def wrong_code(device: TOTPDevice) -> str:
    """A well-formed code that none of the steps the device could accept now would show."""
    now = totp_step(device)
    accepted = {totp_code(device, step=step) for step in range(now - 2, now + 3)}
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in accepted)


def pending_device(user: User) -> TOTPDevice:
    return TOTPDevice.objects.get(user=user, confirmed=False)


# -- who must ---------------------------------------------------------------------------------


def test_the_rule_finance_privacy_and_superusers_must_others_may(db: Any) -> None:
    assert staff_needs_second_factor(staff_user("fin", FINANCE))
    assert staff_needs_second_factor(staff_user("dpo", PRIVACY_OFFICER))
    assert staff_needs_second_factor(User.objects.create_superuser("root", password="x"))
    assert not staff_needs_second_factor(staff_user("desk", SUPPORT))
    assert not staff_needs_second_factor(staff_user("pm", PROGRAMME_MANAGER))
    assert not staff_needs_second_factor(User.objects.create_user("shopper", password="x"))


def test_finance_without_an_app_is_sent_to_enrolment_from_every_admin_page(
    coalition: Coalition, till_a: Till
) -> None:
    finance = staff_user("fin", FINANCE)
    client = Client()
    client.force_login(finance)  # signed in with the password alone
    pages = [
        "/admin/",  # the dashboard (coalition/urls.py)
        reverse("admin:coalition_adjustmentrequest_changelist"),
        reverse("admin:coalition_coalition_liability", args=[coalition.pk]),  # a custom view
        reverse("admin:settlement_period_changelist"),
        reverse("admin:settlement_payment_add"),
        reverse("admin:password_change"),
    ]
    not_finances = reverse("admin:consent_privacyrequest_changelist")  # the Privacy officer's
    payment = {
        "tenant": till_a.tenant_id,
        "direction": Payment.Direction.RECEIVED,
        "amount": "40.00",
        "reference": "UTR-1",
        "received_on": f"{date.today():%Y-%m-%d}",
    }

    for url in [*pages, not_finances]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"{SETUP}?next={url}", url
    posted = client.post(reverse("admin:settlement_payment_add"), payment)

    assert posted.status_code == 302
    assert posted["Location"].startswith(f"{SETUP}?next=")
    assert not Payment.objects.exists()
    # The enrolment page itself, and signing out, stay open.
    assert client.get(SETUP).status_code == 200
    # Verified, the same pages and the same POST go through.
    second_factor_verify(client, finance)
    for url in pages:
        assert client.get(url).status_code == 200, url
    assert client.get(not_finances).status_code == 403
    assert client.post(reverse("admin:settlement_payment_add"), payment).status_code == 302
    assert Payment.objects.get().reference == "UTR-1"
    assert client.post(reverse("admin:logout")).status_code == 200


def test_a_privacy_officer_and_a_superuser_are_sent_to_enrolment_too(db: Any) -> None:
    for user in (
        staff_user("dpo", PRIVACY_OFFICER),
        User.objects.create_superuser("root", password="x"),
    ):
        client = Client()
        client.force_login(user)
        url = reverse("admin:consent_privacyrequest_changelist")
        response = client.get(url)
        assert response.status_code == 302, user
        assert response["Location"].startswith(SETUP), user


# -- enrolment -------------------------------------------------------------------------------


def test_enrolment_shows_a_qr_code_and_the_secret_and_a_wrong_code_fails(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    client = Client()
    client.force_login(finance)

    page = client.get(SETUP)
    device = pending_device(finance)
    secret = page.context["secret"].replace(" ", "")
    refused = client.post(SETUP, {"otp_token": wrong_code(device)})

    assert page.status_code == 200
    assert b32decode(secret) == device.bin_key
    assert b'src="data:image/svg+xml;base64,' in page.content
    assert b"Your role needs two-factor authentication" in page.content
    assert WRONG in errors_of(refused)
    assert not pending_device(finance).confirmed
    assert not verified(client)
    assert client.get("/admin/")["Location"].startswith(SETUP)
    # Reloading the page shows the same secret (a QR code already scanned stays good).
    assert client.get(SETUP).context["secret"].replace(" ", "") == secret


def test_enrolment_with_the_right_code_turns_it_on_and_verifies_the_session(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    client = Client()
    client.force_login(finance)
    client.get(f"{SETUP}?next=/admin/settlement/period/")
    session_before = client.session.session_key

    confirmed = client.post(
        SETUP,
        {"otp_token": totp_code(pending_device(finance)), "next": "/admin/settlement/period/"},
    )

    assert confirmed.status_code == 302
    assert confirmed["Location"] == "/admin/settlement/period/"
    device = TOTPDevice.objects.get(user=finance)
    assert device.confirmed
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.session.session_key != session_before  # a verified session is a new one
    assert client.get("/admin/settlement/period/").status_code == 200
    status = client.get(SETUP)
    assert b"Two-factor authentication is <strong>on</strong>" in status.content
    assert b"verified with a code" in status.content


# -- signing in --------------------------------------------------------------------------------


def test_after_enrolment_sign_in_needs_the_code(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    device = totp_device(finance)

    without = sign_in("fin")
    assert not signed_in(without)
    assert MISSING in errors_of(without)

    client = Client()
    with_code = sign_in("fin", totp_code(device), client)
    assert signed_in(with_code)
    assert verified(client)
    assert client.get("/admin/").status_code == 200


def test_a_wrong_code_is_refused_and_counts_as_a_failed_sign_in(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    device = totp_device(finance)

    wrong = sign_in("fin", wrong_code(device))

    assert not signed_in(wrong)
    assert WRONG in errors_of(wrong)
    assert AccessAttempt.objects.get(username="fin").failures_since_start == 1
    # The device throttles: right after a wrong code even the right one waits.
    too_soon = sign_in("fin", totp_code(device))
    assert not signed_in(too_soon)
    assert "Too many wrong codes" in errors_of(too_soon)


def test_a_reused_or_an_old_code_is_refused(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    device = totp_device(finance)
    code = totp_code(device)
    assert signed_in(sign_in("fin", code))

    reused = sign_in("fin", code)
    assert not signed_in(reused)
    assert WRONG in errors_of(reused)

    device.refresh_from_db()
    device.throttle_reset()  # so that the next refusal is the old code's, not the throttle's
    old = sign_in("fin", totp_code(device, step=totp_step(device) - 3))
    assert not signed_in(old)
    assert WRONG in errors_of(old)


def test_support_without_an_app_signs_in_with_the_password_and_may_opt_in(db: Any) -> None:
    desk = staff_user("desk", SUPPORT)
    client = Client()

    assert signed_in(sign_in("desk", client=client))
    assert client.get("/admin/").status_code == 200
    page = client.get(SETUP)
    assert page.status_code == 200
    assert b"Your role needs" not in page.content
    confirmed = client.post(SETUP, {"otp_token": totp_code(pending_device(desk))})

    assert confirmed.status_code == 302
    assert TOTPDevice.objects.get(user=desk).confirmed
    assert verified(client)


def test_support_with_an_app_must_give_its_code(db: Any) -> None:
    desk = staff_user("desk", SUPPORT)
    device = totp_device(desk)

    assert MISSING in errors_of(sign_in("desk"))
    client = Client()
    assert signed_in(sign_in("desk", totp_code(device), client))
    assert client.get("/admin/").status_code == 200


def test_a_session_without_the_code_is_asked_for_it(db: Any) -> None:
    """An account with an app, in a session that has not given its code (signed in before the
    app was set up, or on another path): the code prompt, then the page asked for."""
    finance = staff_user("fin", FINANCE)
    device = totp_device(finance)
    client = Client()
    client.force_login(finance)
    url = reverse("admin:settlement_period_changelist")

    asked = client.get(url)
    assert asked.status_code == 302
    assert asked["Location"].startswith(VERIFY)
    assert client.get(SETUP).status_code == 200  # shows "on", not a new secret
    assert not TOTPDevice.objects.filter(user=finance, confirmed=False).exists()
    refused = client.post(VERIFY, {"otp_token": wrong_code(device), "next": url})
    assert WRONG in errors_of(refused)
    device.refresh_from_db()
    device.throttle_reset()
    given = client.post(VERIFY, {"otp_token": totp_code(device), "next": url})

    assert given.status_code == 302
    assert given["Location"] == url
    assert client.get(url).status_code == 200


# -- resetting ----------------------------------------------------------------------------------


def test_a_superuser_resets_an_app_in_the_admin_and_the_audit_log_records_it(db: Any) -> None:
    finance = staff_user("fin", FINANCE)
    finance_client = client_for(finance)  # verified by its app
    device = TOTPDevice.objects.get(user=finance)
    root = User.objects.create_superuser("root", password="x")
    admin = client_for(root)
    change = reverse("admin:otp_totp_totpdevice_change", args=[device.pk])
    delete = reverse("admin:otp_totp_totpdevice_delete", args=[device.pk])

    page = admin.get(change)
    assert page.status_code == 200
    assert device.key.encode() not in page.content  # the admin never shows the secret
    desk = client_for(staff_user("desk", SUPPORT))
    assert desk.post(delete, {"post": "yes"}).status_code == 403
    assert admin.post(delete, {"post": "yes"}).status_code == 302

    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    entry = LogEntry.objects.get_for_object(device).get(action=LogEntry.Action.DELETE)
    assert entry.actor == root
    assert "key" not in (entry.changes or {})
    # Finance's session lost its second factor: back to enrolment for a new app.
    assert finance_client.get("/admin/")["Location"].startswith(SETUP)


# -- a race -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_code_used_by_two_sign_ins_at_once_is_accepted_once() -> None:
    finance = staff_user("fin", FINANCE)
    device = totp_device(finance)
    code = totp_code(device)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def attempt() -> None:
        try:
            barrier.wait(timeout=10)
            totp_verify(user=finance, token=code)
            results.append("accepted")
        except SecondFactorRefused:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == ["accepted", "refused"]


# -- in a browser -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_PASSWORD = "correct horse battery"


def app_code(secret: str, step: int) -> str:
    """What an authenticator app that scanned `secret` (base32, as the page shows it) shows."""
    return f"{hotp(b32decode(secret.replace(' ', '')), step):06d}"


@pytest.mark.django_db(transaction=True)
def test_in_a_browser_finance_enrols_at_first_sign_in_then_signs_in_with_a_code(
    live_server: LiveServer,
) -> None:
    finance = staff_user("fin", FINANCE)
    finance.set_password(BROWSER_PASSWORD)
    finance.save()
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's Chromium is missing: run `make browser` (make test does it).")
    # No ORM call from here on: Playwright's event loop runs in this thread.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page()
        blocked: list[str] = []
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )

        page.goto(f"{live_server.url}/admin/")
        page.get_by_label("Username").fill("fin")
        page.get_by_label("Password").fill(BROWSER_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}{SETUP}?next=/admin/")
        expect(page.get_by_text("Your role needs two-factor authentication")).to_be_visible()
        expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
        secret = page.locator("#two-factor-secret").inner_text()
        enrolled_at = int(time.time()) // 30
        page.get_by_label("Authenticator code").fill(app_code(secret, enrolled_at))
        page.get_by_role("button", name="Turn on two-factor authentication").click()
        expect(page).to_have_url(f"{live_server.url}/admin/")
        expect(page.get_by_text("Two-factor authentication is on.")).to_be_visible()

        page.get_by_role("button", name="Log out").click()
        page.goto(f"{live_server.url}/admin/login/")
        page.get_by_label("Username").fill("fin")
        page.get_by_label("Password").fill(BROWSER_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text(MISSING)).to_be_visible()
        page.get_by_label("Username").fill("fin")
        page.get_by_label("Password").fill(BROWSER_PASSWORD)
        next_step = max(int(time.time()) // 30, enrolled_at + 1)
        page.get_by_label("Authenticator code").fill(app_code(secret, next_step))
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/admin/")
        expect(page.get_by_text("Welcome,")).to_be_visible()
        browser.close()

    assert blocked == []
