"""The tenant portal in a real browser: Playwright driving Debian's Chromium (`make browser`
installs it; `make test` does too) against the live server on PostgreSQL.

The data is committed before the browser starts (the live server is another thread with its own
connection); while Playwright's event loop runs in this thread the test makes no ORM call.
"""

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from settlement.models import Statement
from settlement.services import period_close
from settlement.tests.test_close import NOW, _month, burn, earn
from tenants.models import PortalRole
from tenants.services import tenant_user_create

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"


@pytest.fixture
def statement(coalition, till_a, till_b, member) -> Statement:
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1001", start + timedelta(days=2))
    burn(till_b, member, 40, "F-77", start + timedelta(days=16))
    period = period_close(coalition, start.date(), now=NOW)
    tenant_user_create(
        tenant=till_a.tenant, username="a-manager", role=PortalRole.MANAGER, password=PASSWORD
    )
    return Statement.objects.select_related("period", "tenant").get(
        period=period, tenant=till_a.tenant
    )


@pytest.fixture
def browser(statement: Statement, live_server: LiveServer) -> Iterator[Browser]:
    """Started after the data and the server (and so stopped before they are torn down)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's Chromium is missing: run `make browser` (make test does it).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def _sign_in(page: Page, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/portal/")
    expect(page).to_have_url(f"{live_server.url}/portal/login/?next=/portal/")
    page.get_by_label("Username").fill("a-manager")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_see_the_statement_list(
    browser: Browser, live_server: LiveServer, statement: Statement
) -> None:
    month = f"{statement.period.month:%B %Y}"
    page = browser.new_page()

    _sign_in(page, live_server)

    expect(page).to_have_url(f"{live_server.url}/portal/statements/")
    expect(page.get_by_role("heading", name="Statements")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=month)
    expect(row).to_contain_text("40.00")
    expect(row).to_contain_text("you pay")
    row.get_by_role("link", name=month).click()
    expect(page.get_by_role("heading", name=f"Statement for {month}")).to_be_visible()
    expect(page.get_by_text("You pay the pool")).to_be_visible()


def test_download_the_statement_pdf(
    browser: Browser, live_server: LiveServer, statement: Statement, tmp_path: Path
) -> None:
    page = browser.new_page(accept_downloads=True)
    _sign_in(page, live_server)
    page.get_by_role("link", name=f"{statement.period.month:%B %Y}").click()

    with page.expect_download() as caught:
        page.get_by_role("link", name="Download PDF").click()
    download = caught.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    assert download.suggested_filename == (
        f"statement-{statement.tenant.slug}-{statement.period.month:%Y-%m}.pdf"
    )
    assert saved.read_bytes().startswith(b"%PDF")


def test_the_portal_fits_a_phone(
    browser: Browser, live_server: LiveServer, statement: Statement
) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 740})
    _sign_in(page, live_server)
    expect(page).to_have_url(f"{live_server.url}/portal/statements/")
    expect(page.get_by_role("link", name="Transactions")).to_be_visible()
    # Nothing wider than the screen: the tables scroll inside their cards.
    for path in ("statements/", "transactions/", "tills/", "account/"):
        page.goto(f"{live_server.url}/portal/{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path
