"""Every page works under the Content-Security-Policy: Chromium (`make browser`) reports no
violation on the admin, the portal, the lockout page and the API docs.

A violation shows two ways, and both are caught: Chromium's console message ("Refused to ...
because it violates the following Content Security Policy directive") and the document's
`securitypolicyviolation` event, which an init script (Playwright's, itself exempt from the
page's policy) turns into a console line. As in the other browser tests, the data is committed
first and no ORM call is made while Playwright's event loop runs.
"""

import shutil
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from coalition.models import Coalition
from coalition.models.imports import ImportJob, ImportKind, ImportStatus
from coalition.services import points_earn
from members.models import Member
from members.tests.factories import MemberFactory
from settlement.models import Statement
from settlement.services import period_close
from settlement.tests.test_close import NOW, _month, burn, earn
from tenants.models import PortalRole, Till
from tenants.services import tenant_user_create

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"
MARK = "CSP-VIOLATION"
OWN_APPS = {"coalition", "tenants", "members", "consent", "settlement"}
REPORT_VIOLATIONS = f"""
document.addEventListener('securitypolicyviolation', (e) => {{
  console.error('{MARK} ' + e.effectiveDirective + ' blocked ' + (e.blockedURI || 'inline')
    + ' in ' + e.sourceFile + ':' + e.lineNumber);
}});
"""


def is_violation(text: str) -> bool:
    return MARK in text or "Content Security Policy" in text


class Pages:
    """The URLs to walk and the sessions to walk them with, made before the browser starts."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    admin_session: str
    portal_session: str
    admin_urls: list[str]
    portal_urls: list[str]


def session_of(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def pages(coalition: Coalition, till_a: Till, till_b: Till, member: Member) -> Pages:
    # A month closed: the tenant's statement, with both tills' activity
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1001", start + timedelta(days=2))
    burn(till_b, member, 40, "F-77", start + timedelta(days=16))
    period = period_close(coalition, start.date(), now=NOW)
    statement = Statement.objects.get(period=period, tenant=till_a.tenant)
    points_earn(till=till_a, member=member, amount=Decimal("500.00"), receipt="A-1002")
    MemberFactory.create(coalition=coalition, name="Priya Sharma", phone="+919812345678")
    manager = tenant_user_create(
        tenant=till_a.tenant, username="a-manager", role=PortalRole.MANAGER, password=PASSWORD
    )
    # Back-office staff with every permission, outside the groups that need a second factor
    staff = User.objects.create_user("csp-staff", password=PASSWORD, is_staff=True)
    staff.user_permissions.set(Permission.objects.all())
    job = ImportJob.objects.create(
        coalition=coalition,
        kind=ImportKind.MEMBERS,
        file_name="old-programme.csv",
        file_sha256="0" * 64,
        file_size=120,
        status=ImportStatus.RUNNING,
        rows_total=10,
        rows_processed=4,
        created_by=staff,
        created_at=timezone.now(),
    )
    # Every list of the project's own models, and the third-party ones staff use here
    changelists = [
        reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        for opts in (model._meta for model in admin.site._registry)
        if opts.app_label in OWN_APPS
        or opts.label_lower in {"auth.user", "axes.accessattempt", "otp_totp.totpdevice"}
    ]
    admin_urls = [
        "/admin/",
        *sorted(changelists),
        f"/admin/members/member/{member.pk}/change/",
        "/admin/coalition/campaign/add/",
        f"/admin/coalition/coalition/{coalition.pk}/change/",
        f"/admin/coalition/coalition/{coalition.pk}/liability/",
        "/admin/coalition/importjob/add/",
        f"/admin/coalition/importjob/{job.pk}/change/",
        "/admin/auth/user/add/",
    ]
    portal_urls = [
        "/portal/statements/",
        f"/portal/statements/{statement.pk}/",
        "/portal/transactions/",
        "/portal/shoppers/",
        "/portal/tills/",
        "/portal/account/",
        "/portal/password/",
    ]
    return Pages(
        admin_session=session_of(staff),
        portal_session=session_of(manager.user),
        admin_urls=admin_urls,
        portal_urls=portal_urls,
    )


@pytest.fixture
def browser(live_server: LiveServer) -> Iterator[Browser]:
    """Started after the server and, where a test asks for `pages` first, after the data (and
    so stopped before either is torn down)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's Chromium is missing: run `make browser` (make test does it).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


class Watched:
    """A browser context whose pages' CSP violations are collected, by URL."""

    def __init__(self, browser: Browser, live_server: LiveServer, session: str = "") -> None:
        self.context: BrowserContext = browser.new_context()
        self.context.add_init_script(REPORT_VIOLATIONS)
        if session:
            self.context.add_cookies(
                [{"name": "sessionid", "value": session, "url": live_server.url}]
            )
        self.base = live_server.url
        self.violations: list[str] = []
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if is_violation(message.text):
            self.violations.append(f"{self.page.url}: {message.text}")

    def visit(self, path: str, settle: bool = False) -> Page:
        """Open `path`; with `settle`, wait until the page's own scripts stop fetching."""
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        if settle:
            self.page.wait_for_load_state("networkidle")
        return self.page


def test_the_admin_has_no_csp_violation(
    pages: Pages, browser: Browser, live_server: LiveServer
) -> None:
    watched = Watched(browser, live_server, pages.admin_session)
    for path in pages.admin_urls:
        watched.visit(path)
        assert "/login/" not in watched.page.url, f"{path}: sent to sign in"
    # The dashboard's charts are drawn (SVG), the running import's page is the refreshing one
    watched.visit("/admin/")
    expect(watched.page.locator("#chart-points svg")).to_be_visible()
    page = watched.visit(pages.admin_urls[-2])
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(1)
    assert not watched.violations, "\n".join(watched.violations)


def test_the_portal_its_statements_and_the_lockout_page_have_no_csp_violation(
    pages: Pages, browser: Browser, live_server: LiveServer
) -> None:
    watched = Watched(browser, live_server, pages.portal_session)
    for path in pages.portal_urls:
        watched.visit(path)
        assert "/login/" not in watched.page.url, f"{path}: sent to sign in"
    # Signed out, the two sign-in pages, then five wrong passwords: the lockout page
    anonymous = Watched(browser, live_server)
    anonymous.visit("/admin/login/")
    page = anonymous.visit("/portal/login/")
    for _ in range(5):
        page.get_by_label("Username").fill("a-manager")
        page.get_by_label("Password").fill("wrong")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    violations = watched.violations + anonymous.violations
    assert not violations, "\n".join(violations)


def test_the_api_docs_have_no_csp_violation(browser: Browser, live_server: LiveServer) -> None:
    watched = Watched(browser, live_server)
    page = watched.visit("/api/v1/docs", settle=True)
    expect(page.get_by_text("Coalition loyalty — till API").first).to_be_visible()
    page = watched.visit("/api/v1/docs/swagger", settle=True)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Coalition loyalty")
    assert not watched.violations, "\n".join(watched.violations)


def test_a_violation_is_caught(browser: Browser, live_server: LiveServer) -> None:
    """The watch above can fail: an inline script without the nonce is reported."""
    watched = Watched(browser, live_server)
    page = watched.visit("/portal/login/")
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1';"
        " document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert any("script-src" in v for v in watched.violations), watched.violations
