"""The back office in a real browser: Playwright driving Debian's Chromium (`make browser`) against
the live server on PostgreSQL, as mall staff use it every morning.

Like the portal's browser tests, the data is committed before the browser starts and the test
makes no ORM call while Playwright's event loop runs; it reads the database again afterwards.
Screenshots go to the test artefacts folder (`TEST_ARTEFACTS`, else `var/test-artefacts/`).
"""

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from coalition.models import Campaign, CampaignKind, Coalition
from coalition.services import points_earn
from coalition.services.staff import PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import staff_user
from members.models import Member
from members.tests.factories import MemberFactory
from tenants.models import Till

pytestmark = pytest.mark.django_db(transaction=True)
T = TypeVar("T")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery"
ARTEFACTS = Path(
    os.environ.get("TEST_ARTEFACTS", Path(__file__).parent.parent / "var/test-artefacts")
)


@pytest.fixture
def shopper(coalition: Coalition, till_a: Till, till_b: Till) -> Member:
    """A shopper known by phone, with double points earned at tenant A."""
    Campaign.objects.create(
        coalition=coalition,
        name="Double at Apparel",
        kind=CampaignKind.MULTIPLIER,
        tenant=till_a.tenant,
        multiplier=Decimal("2.00"),
        starts_on=timezone.localdate() - timedelta(days=1),
        ends_on=timezone.localdate() + timedelta(days=1),
    )
    member = MemberFactory.create(coalition=coalition, name="Priya Sharma", phone="+919812345678")
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1001")
    points_earn(till=till_b, member=member, amount=Decimal("600.00"), receipt="F-77")
    return member


@pytest.fixture
def staff_users(db: None) -> dict[str, User]:
    users = {
        "support": staff_user("desk", SUPPORT),
        "manager": staff_user("pm", PROGRAMME_MANAGER),
    }
    for user in users.values():
        user.set_password(PASSWORD)
        user.save()
    return users


@pytest.fixture
def browser(
    shopper: Member, staff_users: dict[str, User], live_server: LiveServer
) -> Iterator[Browser]:
    """Started after the data and the server (and so stopped before they are torn down)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's Chromium is missing: run `make browser` (make test does it).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def sign_in(page: Page, live_server: LiveServer, username: str) -> None:
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(f"{live_server.url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/admin/")


def off_the_loop(read: Callable[[], T]) -> T:
    """Run an ORM read in a thread of its own: Playwright's event loop runs in this one."""
    found: list[T] = []

    def run() -> None:
        try:
            found.append(read())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert found, "the read failed (see the thread's traceback above)"
    return found[0]


def screenshot(page: Page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_staff_sign_in_and_a_wrong_password_is_refused(
    browser: Browser, live_server: LiveServer
) -> None:
    page = browser.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("desk")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Please enter the correct username and password")).to_be_visible()
    sign_in(page, live_server, "desk")
    expect(page.get_by_text("Welcome,")).to_be_visible()


def test_find_a_member_by_phone_and_open_their_ledger(
    browser: Browser, live_server: LiveServer, shopper: Member
) -> None:
    page = browser.new_page()
    sign_in(page, live_server, "desk")
    page.goto(f"{live_server.url}/admin/members/member/")
    # The phone as the shopper says it, spaces and all
    page.locator("#searchbar").fill("98123 45678")
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("P. S.")  # masked until a recorded reveal
    rows.first.locator("th a, td a").first.click()
    expect(page.locator("#personal-data")).to_contain_text("P. S.")
    # The member's ledger: their journals, the earn with its campaign points
    page.locator("#content-main").get_by_role("link", name="Journals").click()
    journals = page.locator("#result_list tbody tr")
    expect(journals).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("A-1001")
    journals.filter(has_text="A-1001").locator("th a").click()
    expect(page.locator("body")).to_contain_text("Double at Apparel")
    screenshot(page, "member-journal")


def test_a_programme_manager_creates_a_campaign(
    browser: Browser, live_server: LiveServer, till_a: Till
) -> None:
    page = browser.new_page()
    sign_in(page, live_server, "pm")
    page.goto(f"{live_server.url}/admin/coalition/campaign/add/")
    page.get_by_label("Name").fill("Weekend triple points")
    page.locator("#id_kind").select_option(CampaignKind.MULTIPLIER)
    page.locator("#id_coalition").select_option(label="Phoenix Mall")
    today = timezone.localdate()
    page.get_by_label("Starts on").fill(today.isoformat())
    page.get_by_label("Ends on").fill((today + timedelta(days=30)).isoformat())
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"):
        page.get_by_label(day).uncheck()
    page.locator("#id_tenant").select_option(label=str(till_a.tenant))
    page.locator("#id_multiplier").fill("3.00")
    page.locator("#id_member_cap").fill("600")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tbody tr").filter(has_text="Weekend triple points")
    expect(row).to_contain_text("Sat, Sun")
    expect(row).to_contain_text("Running")
    screenshot(page, "campaign-created")


def test_the_dashboard_draws_its_charts(browser: Browser, live_server: LiveServer) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in(page, live_server, "pm")
    # The admin's first page is the dashboard: figures, then the charts, drawn as SVG
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#fig-members .figure")).to_have_text("1")
    expect(page.locator("#fig-issued .figure")).to_have_text("86")  # 40 + 40 doubled, + 6
    bars = page.locator("#chart-points svg rect")
    assert bars.count() >= 3, "the issued / redeemed / expired bars"
    for chart in ("#chart-liability", "#chart-cross-shop"):
        expect(page.locator(f"{chart} svg")).to_be_visible()
        assert page.locator(f"{chart} svg polyline, {chart} svg path").count() >= 1, chart
    expect(page.locator("#flow-tenants")).to_be_visible()
    expect(page.locator("#campaigns")).to_contain_text("Double at Apparel")
    shot = screenshot(page, "dashboard")
    assert shot.stat().st_size > 10_000


def test_an_import_dry_run_shows_the_error_row_and_writes_nothing(
    browser: Browser, live_server: LiveServer, tmp_path: Path
) -> None:
    csv = tmp_path / "old-programme.csv"
    csv.write_text(
        "phone,email,card,name,adult,marketing_mall,analytics\n"
        "+919800000001,,,Anil Kumar,yes,no,no\n"
        "+919800000002,,,Bela Rao,maybe,no,no\n"
    )
    page = browser.new_page()
    sign_in(page, live_server, "desk")
    page.goto(f"{live_server.url}/admin/members/member/import/")
    page.locator("#id_coalition").select_option(label="Phoenix Mall")
    page.locator("#id_import_file").set_input_files(str(csv))
    page.get_by_role("button", name="Submit").click()
    # The preview lists the bad row alone, with its reason; nothing can be confirmed
    expect(page.get_by_text("Some rows failed to validate")).to_be_visible()
    rows = page.locator("table.import-preview tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("+919800000002")
    expect(rows.first.locator(".validation-error-count")).to_have_text("1")
    expect(rows.first.locator(".validation-error-list")).to_contain_text("yes or no")
    rows.first.locator(".validation-error-count").hover()
    expect(rows.first.locator(".validation-error-list")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm import")).to_have_count(0)
    screenshot(page, "import-dry-run")
    page.close()
    assert off_the_loop(lambda: Member.objects.count()) == 1  # the shopper alone
