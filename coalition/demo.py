"""The demo mall `make run` loads: one coalition, 30 tenants, shoppers and months of history.

Every member and every posting goes through the services (`member_enrol`, `points_earn`, ...)
with `occurred_at`/`now` in the past, so the demo's ledger verifies clean like a real one. The
only direct writes are the tenant rate rows (no service sets rates yet) and the coalition's name,
which says "(loading…)" until the ledger has verified, so a half-loaded demo shows as such.

Deterministic for a seed and a `now`: the plan of shoppers comes from `random.Random(seed)` and
each member's history from a generator seeded with the seed and the member's index, card
numbers included (the service would draw its own). That is also what lets several processes
post histories side by side with the same result. Database ids and UUIDs differ between runs.
"""

import heapq
import itertools
import math
import multiprocessing
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.contrib.auth.models import Group, User
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from django.utils.text import slugify

from coalition.models import (
    AdjustmentRequest,
    Campaign,
    CampaignKind,
    Coalition,
    ExpiryNotice,
    Journal,
    NoticeStatus,
)
from coalition.selectors import Discrepancy, ledger_verify
from coalition.services import (
    Posting,
    adjustment_approve,
    coalition_create,
    lots_expire,
    points_adjust,
    points_burn,
    points_earn,
    points_reverse,
)
from coalition.services.notices import expiry_notices_queue
from coalition.services.programme import add_months
from consent.models import ConsentChannel, ConsentPurpose
from consent.services import consents_record
from members.identifiers import CARD_LENGTH, CARD_PREFIX, luhn_check_digit
from members.models import Member, MemberStatus
from members.services import member_enrol, members_merge
from settlement.services import periods_close_due, reconciliations_verify_pending
from tenants.models import Tenant, TenantCategory, TenantRate, TenantStatus, TenantUser, Till
from tenants.services import tenant_create, tenant_set_status, tenant_user_create, till_create

DEMO_SLUG = "demo"
DEMO_NAME = "Phoenix Marketcity Demo"
LOADING = " (loading…)"  # the name says so until the last step: a half-loaded demo is visible
ADMIN_USERNAME = "admin"
DEMO_FIRST_NAME = "Demo"  # marks the users this module created, whose password is the username
# (username, group): one demo login per staff group, when the group exists.
STAFF_LOGINS = (
    ("manager", "Programme manager"),
    ("finance", "Finance"),
    ("support", "Support"),
    ("privacy", "Privacy officer"),
)
# (username, tenant slug, portal role): demo tenant-portal logins, password = username.
PORTAL_LOGINS = (
    ("kesari-manager", "kesari-threads", "manager"),
    ("tandoor-finance", "tandoor-junction", "finance"),
)
MEMBERS_PER_TRANSACTION = 200  # one commit per batch instead of one per posting
PROGRESS_EVERY = 1000
LOCK_KEY = 0x5EED_DE30  # pg advisory lock: two `make run`s at once load the demo once

C = TenantCategory
# (name, category, tills per store): 1-2 stores, 1-3 tills each. Invented brands.
TENANTS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("Kesari Threads", C.APPAREL, (2, 1)),
    ("Urban Dhaaga", C.APPAREL, (2,)),
    ("Saffron Lane Ethnic", C.APPAREL, (1,)),
    ("Little Lotus Kidswear", C.APPAREL, (1,)),
    ("Chappal Chowk", C.FOOTWEAR, (1,)),
    ("StrideWell Shoes", C.FOOTWEAR, (2,)),
    ("Tandoor Junction", C.FOOD, (1, 1)),
    ("Dosa Darbar", C.FOOD, (2,)),
    ("Chaat Street Co.", C.FOOD, (1,)),
    ("Brew & Bun Café", C.FOOD, (1, 1)),
    ("Biryani Bhavan", C.FOOD, (2,)),
    ("Annapurna Fresh Mart", C.GROCERY, (3,)),
    ("Green Basket Organics", C.GROCERY, (1,)),
    ("Rangmanch Cinemas", C.ENTERTAINMENT, (2, 1)),
    ("Bounce Arcade", C.ENTERTAINMENT, (1,)),
    ("Circuit Bazaar Electronics", C.ELECTRONICS, (2,)),
    ("Pixel Point Mobiles", C.ELECTRONICS, (1,)),
    ("Chandan Beauty Lounge", C.BEAUTY, (1,)),
    ("Glow Ayurveda", C.BEAUTY, (1,)),
    ("Sanjeevani Pharmacy", C.PHARMACY, (2,)),
    ("Arogya Chemists", C.PHARMACY, (1,)),
    ("Kaveri Home Studio", C.HOME, (1,)),
    ("Neem Tree Furnishings", C.HOME, (1,)),
    ("Swarnalaya Jewellers", C.JEWELLERY, (2,)),
    ("Kangan Accessories", C.JEWELLERY, (1,)),
    ("Kitaab Ghar", C.BOOKS, (1,)),
    ("Khilona Toys & Gifts", C.BOOKS, (1,)),
    ("Kesh Kala Salon", C.SERVICES, (1,)),
    ("Seva Alterations", C.SERVICES, (1,)),
    ("QuickFix Phone Care", C.SERVICES, (1,)),
)
OPENING_SOON = "Neem Tree Furnishings"  # onboarding: tills set up, no trade yet
CLOSED = "Bounce Arcade"  # left the mall three weeks ago; its points stay redeemable
# (tenant, from what fraction of the history, price per point issued, reimbursement per point)
RATES = (
    ("Kesari Threads", 0.0, "1.1000", "1.0000"),  # premium: pays above nominal (margin)
    ("Kesari Threads", 0.6, "1.1500", "1.0000"),  # renegotiated part way through
    ("Swarnalaya Jewellers", 0.0, "1.1000", "1.0000"),
    ("Tandoor Junction", 0.0, "1.0000", "0.9500"),  # food court: reimbursed below (variance)
    ("Biryani Bhavan", 0.0, "1.0000", "0.9500"),
    ("Rangmanch Cinemas", 0.5, "1.0500", "0.9000"),
)
FLOORS: dict[str, str] = {
    C.JEWELLERY: "G",
    C.BEAUTY: "G",
    C.PHARMACY: "G",
    C.GROCERY: "UG",
    C.APPAREL: "F1",
}
FLOORS |= {C.FOOTWEAR: "F1", C.ELECTRONICS: "F2", C.HOME: "F2", C.BOOKS: "F2", C.SERVICES: "F2"}
FLOORS |= {C.FOOD: "F3", C.ENTERTAINMENT: "F3"}
# Category: (smallest bill, largest bill, how often shoppers earn there, redeem there).
SHOPPING: dict[str, tuple[int, int, float, float]] = {
    C.FOOD: (200, 1500, 30, 30),
    C.GROCERY: (400, 4500, 12, 15),
    C.APPAREL: (1500, 8000, 14, 15),
    C.ENTERTAINMENT: (300, 1800, 9, 15),
    C.PHARMACY: (150, 2500, 8, 4),
    C.BEAUTY: (500, 3500, 6, 6),
    C.FOOTWEAR: (1200, 6000, 5, 5),
    C.BOOKS: (250, 2500, 4, 4),
    C.SERVICES: (300, 3000, 4, 3),
    C.HOME: (1500, 25000, 3, 2),
    C.ELECTRONICS: (5000, 60000, 3, 1),
    C.JEWELLERY: (4000, 90000, 2, 1),
}
RETURNS: dict[str, float] = {C.APPAREL: 0.06, C.FOOTWEAR: 0.06, C.ELECTRONICS: 0.05, C.HOME: 0.04}
# Visits over six months by kind of shopper: (share, fewest, most). As in most programmes,
# a small core shops often and a third of the members do not shop at all in six months.
SEGMENTS = ((0.1, 8, 12), (0.3, 1, 3), (0.25, 1, 1), (0.35, 0, 0))
FIRST_NAMES = (  # noqa: SIM905 (names read better as prose than as 66 lines)
    "Aarav Aditi Aisha Akash Ananya Anil Anjali Arjun Arun Bhavna Chetan Deepa Devika Dhruv "
    "Divya Farhan Fatima Gaurav Gita Harpreet Hemant Imran Ishaan Jaspreet Joseph Karthik Kavya "
    "Kiran Lakshmi Lavanya Manish Mary Meera Mohammed Naveen Neha Nikhil Padma Pooja Pradeep "
    "Priya Rahul Rajesh Ravi Rekha Riya Rohan Sahil Sana Sandeep Sanjay Shreya Simran Sneha "
    "Sunita Suresh Swati Tanvi Tarun Uma Varun Venkatesh Vikram Vivek Yash Zoya"
).split()
SURNAMES = (  # noqa: SIM905
    "Agarwal Ansari Banerjee Bansal Bose Chatterjee Choudhary Chopra D'Souza Das Desai "
    "Deshpande Fernandes Ghosh Gill Gowda Gupta Hegde Iyer Jain Joshi Kapoor Kaur Khan Krishnan "
    "Kulkarni Kurian Mahajan Malhotra Mehta Menon Mishra Mukherjee Naidu Nair Pandey Patel Patil "
    "Pawar Pereira Pillai Qureshi Rao Reddy Sandhu Saxena Sen Shah Sharma Sheikh Shetty Shinde "
    "Singh Subramanian Tiwari Verma Yadav"
).split()
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")  # reserved: no mail leaves
GOODWILL = (
    "Goodwill: points missing for a receipt taken while the till was offline",
    "Goodwill: complaint about a late food order, resolved at the help desk",
    "Goodwill: card not scanned at checkout, bill verified at the desk",
)


@dataclass(frozen=True)
class DemoResult:
    created: bool  # False: the demo was already there and nothing was written
    complete: bool  # False: an earlier load was interrupted
    coalition: Coalition
    logins: list[tuple[str, str]]  # (username, role); each password is the username
    problems: list[Discrepancy] = field(default_factory=list)


@dataclass
class _Shop:
    tenant: Tenant
    tills: list[Till]
    closes_at: datetime | None = None

    def open_at(self, moment: datetime) -> bool:
        return self.tenant.status != TenantStatus.ONBOARDING and (
            self.closes_at is None or moment < self.closes_at
        )


@dataclass
class _Shopper:
    """The plan for one member, drawn before anything is written."""

    name: str
    phone: str | None
    email: str | None
    card: str
    enrolled_at: datetime
    visits: int
    # regular, goodwill (gets staff adjustments), lapsed (points from 13-14 months ago expire),
    # negative / negative_final (a refund after the points were spent), survivor / duplicate
    role: str = "regular"
    adult: bool = True
    history_end: datetime | None = None
    merges_into: int | None = None  # a duplicate: the index of its survivor


@dataclass
class _Timeline:
    """One member's history as it is posted: events in time order and the running balance."""

    index: int
    member: Member
    favourites: list[_Shop]
    end: datetime
    may_burn: bool
    balance: int = 0
    receipts: int = 0
    sequence: Iterator[int] = field(default_factory=itertools.count)
    credits: list[int] = field(default_factory=list)
    events: list[tuple[datetime, int, str, Any]] = field(default_factory=list)


def demo_load(
    *,
    members: int = 5000,
    months: int = 6,
    seed: int = 42,
    workers: int = 1,
    progress: Callable[[str], None] = lambda line: None,
    now: datetime | None = None,
) -> DemoResult:
    """Load the demo mall unless it exists; either way, return the demo staff logins.

    The history ends at `now` (default: the present), so one seed and one `now` give the same
    data. `workers` > 1 posts the members' histories from that many processes side by side.
    """
    with _advisory_lock():
        existing = Coalition.objects.filter(slug=DEMO_SLUG).first()
        if existing is not None:
            return DemoResult(
                created=False,
                complete=not existing.name.endswith(LOADING),
                coalition=existing,
                logins=_logins(),
            )
        builder = _Builder(
            members=members,
            months=months,
            seed=seed,
            workers=workers,
            progress=progress,
            now=now or timezone.now(),
        )
        coalition = builder.build()
        problems = ledger_verify(coalition)
        if not problems:  # a demo that does not verify keeps its "loading" name
            progress("Closing the months that have ended (statements, reconciliation)")
            periods_close_due(now=builder.now)
            reconciliations_verify_pending()  # the worker would; the demo shows the result
            _portal_users_create(coalition)
            Coalition.objects.filter(pk=coalition.pk).update(name=DEMO_NAME)
            coalition.name = DEMO_NAME
        return DemoResult(
            created=True,
            complete=not problems,
            coalition=coalition,
            logins=_logins(),
            problems=problems,
        )


@contextmanager
def _advisory_lock() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    try:
        yield
    finally:
        # A lost connection has released the lock already; its error is the one to report.
        with suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def _logins() -> list[tuple[str, str]]:
    """The demo logins that exist: the users `_staff_create` and `_portal_users_create` made
    (first name "Demo")."""
    made = User.objects.filter(first_name=DEMO_FIRST_NAME, is_active=True)
    found = []
    if made.filter(username=ADMIN_USERNAME, is_superuser=True).exists():
        found.append((ADMIN_USERNAME, "superuser"))
    for username, group in STAFF_LOGINS:
        if made.filter(username=username, groups__name=group, is_staff=True).exists():
            found.append((username, group))
    portal = TenantUser.objects.filter(user__in=made).select_related("user", "tenant")
    for tenant_user in portal.order_by("user__username"):
        found.append(
            (
                tenant_user.user.username,
                f"tenant portal: {tenant_user.get_role_display()} at {tenant_user.tenant.name}",
            )
        )
    return found


def _portal_users_create(coalition: Coalition) -> None:
    """Demo tenant-portal logins (password = username), for tenants of the demo mall."""
    for username, slug, role in PORTAL_LOGINS:
        tenant = Tenant.objects.filter(coalition=coalition, slug=slug).first()
        if tenant is None or User.objects.filter(username=username).exists():
            continue
        tenant_user = tenant_user_create(
            tenant=tenant, username=username, role=role, password=username
        )
        User.objects.filter(pk=tenant_user.user_id).update(first_name=DEMO_FIRST_NAME)


def _staff_create() -> tuple[User, User | None, User | None]:
    """The demo logins (password = username): admin, and a user per staff group that exists.

    A user that exists already is used as it is. Returns admin, the help desk's user and a
    second member of staff to approve large adjustments (None when their groups do not exist).
    """
    admin = User.objects.filter(username=ADMIN_USERNAME).first()
    if admin is None:
        admin = User.objects.create_superuser(
            ADMIN_USERNAME,
            "admin@example.com",
            ADMIN_USERNAME,
            first_name=DEMO_FIRST_NAME,
            last_name="Administrator",
        )
    staff: dict[str, User] = {}
    for username, group_name in STAFF_LOGINS:
        group = Group.objects.filter(name=group_name).first()
        if group is None:  # the staff groups are created at migrate, elsewhere
            continue
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username,
                f"{username}@example.com",
                username,
                is_staff=True,
                first_name=DEMO_FIRST_NAME,
                last_name=group_name,
            )
            user.groups.add(group)
        if user.is_staff:
            staff[group_name] = user
    return admin, staff.get("Support"), staff.get("Finance") or staff.get("Programme manager")


class _Builder:
    def __init__(
        self,
        *,
        members: int,
        months: int,
        seed: int,
        workers: int,
        progress: Callable[[str], None],
        now: datetime,
    ) -> None:
        self.seed, self.size, self.months = seed, members, months
        self.workers, self.progress = workers, progress
        # Replaced by one generator per member while loading (see `_shopper_load`).
        self.rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
        self.zone = ZoneInfo("Asia/Kolkata")
        self.now = now.replace(microsecond=0)
        local_now = self.now.astimezone(self.zone)
        start_day = add_months(local_now.date(), -months)
        self.start = datetime.combine(start_day, local_now.timetz())
        self.shops: list[_Shop] = []
        self.weights: dict[int, tuple[float, float]] = {}  # tenant id: (earn, redeem)
        self.store_codes: dict[int, str] = {}
        self.shoppers: list[_Shopper] = []

    # --- the mall ---------------------------------------------------------------------------

    def build(self) -> Coalition:
        self.progress(
            f"Loading {DEMO_NAME}: {len(TENANTS)} tenants, {self.size:,} members, "
            f"{self.months} months of history…"
        )
        with transaction.atomic():
            # Expiry stays the coalition default, fixed 12 months: the lapsed shoppers' points
            # from 13-14 months ago are due, everything earned in the history is not.
            self.coalition = coalition_create(slug=DEMO_SLUG, name=DEMO_NAME + LOADING)
            self.purposes = set(
                ConsentPurpose.objects.filter(coalition=self.coalition).values_list(
                    "code", flat=True
                )
            )
            self.admin, support, self.checker = _staff_create()
            self.desk = support or self.admin
            self._tenants_create()
        self.shoppers = self._shoppers_plan()
        kept = self._members_load()
        with transaction.atomic():
            members = Member.objects.select_related("coalition").in_bulk(list(kept.values()))
            self._merges({index: members[pk] for index, pk in kept.items()})
            closed = next(shop.tenant for shop in self.shops if shop.tenant.name == CLOSED)
            tenant_set_status(tenant=closed, status=TenantStatus.EXITED, actor=self.admin)
        # The notices went out a window before the sweep (expiry is never silent); then the
        # notices of what expires next, as the daily job records them today.
        window = timedelta(days=self.coalition.expiry_notice_days)
        expiry_notices_queue(now=self.now - window, coalition=self.coalition)
        ExpiryNotice.objects.filter(coalition=self.coalition, status=NoticeStatus.QUEUED).update(
            status=NoticeStatus.SENT, sent_at=self.now - window
        )  # history: those went out when they were recorded
        expired = lots_expire(as_of=self.now, coalition=self.coalition)
        noticed = expiry_notices_queue(now=self.now, coalition=self.coalition)
        self.progress(f"  expiry sweep: {expired:,} points expired; {noticed:,} members noticed")
        return self.coalition

    def _members_load(self) -> dict[int, UUID]:
        """Enrol every shopper and post their history, a batch of members per transaction.

        With several workers, batches run in forked processes, each on its own connection:
        every member's history depends only on the seed and the member's index, so the result
        is the same whatever order the batches finish in. Inside a transaction (a test) the
        work stays on this connection, which alone can see the uncommitted mall.
        """
        batches = [
            (first, min(first + MEMBERS_PER_TRANSACTION, self.size))
            for first in range(0, self.size, MEMBERS_PER_TRANSACTION)
        ]
        kept: dict[int, UUID] = {}
        done = 0

        def report(loaded: dict[int, UUID], count: int) -> None:
            nonlocal done
            kept.update(loaded)
            before, done = done, done + count
            if done // PROGRESS_EVERY > before // PROGRESS_EVERY or done == self.size:
                self.progress(f"  {done:,} of {self.size:,} members, with their history")

        forking = "fork" in multiprocessing.get_all_start_methods()
        if self.workers <= 1 or connection.in_atomic_block or not forking:
            for first, last in batches:
                report(self._batch_load(first, last), last - first)
            return kept
        global _forked  # read by the forked workers, which inherit it
        _forked = self
        try:
            context = multiprocessing.get_context("fork")
            with context.Pool(self.workers, initializer=_worker_start) as pool:
                for loaded, (first, last) in zip(
                    pool.imap(_batch_in_worker, batches), batches, strict=True
                ):
                    report(loaded, last - first)
        finally:
            _forked = None
        return kept

    def _batch_load(self, first: int, last: int) -> dict[int, UUID]:
        kept = {}
        with transaction.atomic():
            for index in range(first, last):
                member = self._shopper_load(index, self.shoppers[index])
                if self.shoppers[index].role in ("survivor", "duplicate"):
                    kept[index] = member.pk
        return kept

    def _tenants_create(self) -> None:
        units: dict[str, int] = {}
        for name, category, tills_per_store in TENANTS:
            tenant = tenant_create(
                coalition=self.coalition,
                slug=slugify(name),
                name=name,
                category=category,
                legal_name=f"{name.rstrip('.')} Private Limited",
                status=TenantStatus.ONBOARDING if name == OPENING_SOON else TenantStatus.ACTIVE,
            )
            tenant.coalition = self.coalition  # one shared instance: no re-reads per posting
            tills: list[Till] = []
            for store_number, till_count in enumerate(tills_per_store):
                floor = FLOORS[category] if store_number == 0 else "K"  # a second store: kiosk
                units[floor] = units.get(floor, 0) + 1
                unit = f"{floor}-{units[floor]:02d}"
                for _ in range(till_count):
                    till = till_create(
                        tenant=tenant,
                        store_code=unit.lower(),
                        till_code=f"pos-{len(tills) + 1}",
                        store_name=f"{name}, unit {unit}",
                    )
                    till.tenant = tenant
                    self.store_codes[till.store_id] = unit
                    tills.append(till)
            closes_at = self.now - timedelta(days=21) if name == CLOSED else None
            self.shops.append(_Shop(tenant, tills, closes_at))
            peers = sum(1 for _, other, _ in TENANTS if other == category)
            _, _, earn, redeem = SHOPPING[category]
            self.weights[tenant.pk] = (earn / peers, redeem / peers)
        # No service sets rates yet (tenants/services.py); these rows are plain settings.
        by_name = {shop.tenant.name: shop.tenant for shop in self.shops}
        span = self.now - self.start
        TenantRate.objects.bulk_create(
            TenantRate(
                tenant=by_name[name],
                effective_from=(self.start + span * share).astimezone(self.zone).date(),
                price_per_point=Decimal(price),
                reimbursement_per_point=Decimal(reimbursement),
            )
            for name, share, price, reimbursement in RATES
        )

        self._campaigns_create()

    def _campaigns_create(self) -> None:
        """Two campaigns running through the last quarter, so their points are in the history
        and on the dashboard: a tenant's weekend double points, and the mall's cross-shop bonus
        (no total cap: the history's batches load in parallel, and each member's own history
        alone decides what it gets)."""
        today = self.now.astimezone(self.zone).date()
        # The busiest shop of the mall: the food court's favourite.
        busiest = max(self.shops, key=lambda shop: self.weights[shop.tenant.pk][0]).tenant
        Campaign.objects.create(
            coalition=self.coalition,
            name=f"Weekend double points at {busiest.name}",
            kind=CampaignKind.MULTIPLIER,
            tenant=busiest,
            multiplier=Decimal("2.00"),
            weekdays=[5, 6],
            starts_on=today - timedelta(days=90),
            ends_on=today + timedelta(days=30),
            member_cap=2000,
            created_by=self.admin,
        )
        Campaign.objects.create(
            coalition=self.coalition,
            name="Shop two categories in a day, get 50 points",
            kind=CampaignKind.CROSS_SHOP,
            bonus_points=50,
            min_categories=2,
            min_amount=Decimal("200.00"),
            starts_on=today - timedelta(days=60),
            ends_on=today + timedelta(days=30),
            member_cap=300,
            created_by=self.admin,
        )

    # --- who shops here ---------------------------------------------------------------------

    def _shoppers_plan(self) -> list[_Shopper]:
        rng, size = self.rng, self.size
        phones: set[str] = set()
        emails: set[str] = set()
        cards: set[str] = set()
        shoppers = []
        for _ in range(size):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
            contact = rng.random()  # 45% phone only, 40% phone and email, 9% email, 6% card
            phone = self._unique(phones, self._phone) if contact < 0.85 else None
            has_email = 0.45 <= contact < 0.94
            email = self._unique(emails, partial(self._email, name)) if has_email else None
            if rng.random() < 0.4:  # a member since before the history starts
                enrolled = self._moment(self.start - timedelta(days=365), self.start)
            else:
                enrolled = self._moment(self.start, self.now - timedelta(days=1))
            _, fewest, most = rng.choices(SEGMENTS, [share for share, _, _ in SEGMENTS])[0]
            visits = round(rng.randint(fewest, most) * self.months / 6)
            card = self._unique(cards, self._card)
            shoppers.append(_Shopper(name, phone, email, card, enrolled, visits))

        # Each story goes to distinct shoppers, so no two of them interfere.
        counts = {
            "lapsed": max(3, size // 100),
            "negative": max(2, size // 1000),
            "minor": max(1, size // 1000),
            "goodwill": max(2, size // 500),
            "pair": 2 if size >= 200 else 1,
        }
        chosen = iter(rng.sample(range(size), sum(counts.values()) + counts["pair"]))
        for index in itertools.islice(chosen, counts["lapsed"]):
            shopper = shoppers[index]
            shopper.role, shopper.visits = "lapsed", rng.randint(0, 1)
            shopper.enrolled_at = self._moment(self._ago(460), self._ago(430))
        for number, index in enumerate(itertools.islice(chosen, counts["negative"])):
            shopper = shoppers[index]
            shopper.role, shopper.visits = ("negative_final" if number == 0 else "negative"), 0
            shopper.enrolled_at = min(shopper.enrolled_at, self.now - timedelta(days=60))
        for index in itertools.islice(chosen, counts["minor"]):
            shoppers[index].adult = False  # enrolled at the desk with a guardian's consent
            shoppers[index].visits = min(shoppers[index].visits, 3)
        for index in itertools.islice(chosen, counts["goodwill"]):
            shoppers[index].role = "goodwill"
        for _ in range(counts["pair"]):
            kept = next(chosen)
            survivor, copy = shoppers[kept], shoppers[next(chosen)]
            # The same person, enrolled twice: by phone at a till, later by email at the desk.
            survivor.role, copy.role, copy.merges_into = "survivor", "duplicate", kept
            survivor.phone = survivor.phone or self._unique(phones, self._phone)
            copy.name, copy.phone = survivor.name, None
            copy.email = copy.email or self._unique(emails, partial(self._email, survivor.name))
            merge_at = self.now - timedelta(days=rng.uniform(3, 15))
            survivor.enrolled_at = min(survivor.enrolled_at, merge_at - timedelta(days=90))
            copy.enrolled_at = survivor.enrolled_at + (merge_at - survivor.enrolled_at) / 3
            for shopper in (survivor, copy):
                shopper.visits = max(shopper.visits, 4)
                shopper.history_end = merge_at - timedelta(hours=1)
        return shoppers

    def _unique(self, taken: set[str], draw: Callable[[], str]) -> str:
        value = draw()
        while value in taken:
            value = draw()
        taken.add(value)
        return value

    def _phone(self) -> str:
        return f"+9198{self.rng.randrange(10**8):08d}"  # valid Indian mobile numbers

    def _email(self, name: str) -> str:
        first, last = (part.lower().replace("'", "") for part in name.split(" ", 1))
        local = self.rng.choice((f"{first}.{last}", f"{first}{last[0]}", f"{last}.{first}"))
        return f"{local}{self.rng.randint(1, 999)}@{self.rng.choice(EMAIL_DOMAINS)}"

    def _card(self) -> str:
        digits = CARD_LENGTH - len(CARD_PREFIX) - 1
        body = CARD_PREFIX + f"{self.rng.randrange(10**digits):0{digits}d}"
        return body + luhn_check_digit(body)

    def _ago(self, days: float) -> datetime:
        return self.now - timedelta(days=days)

    def _moment(self, low: datetime, high: datetime) -> datetime:
        """A moment between `low` and `high`, during mall hours when the range allows."""
        moment = low + (high - low) * self.rng.random()
        local = moment.astimezone(self.zone).replace(
            hour=self.rng.randint(11, 21), minute=self.rng.randrange(60), second=0, microsecond=0
        )
        return local if low <= local <= high else moment.replace(microsecond=0)

    def _amount(self, category: str) -> Decimal:
        """A bill: log-uniform over the category's range, priced the way shops price."""
        low, high, _, _ = SHOPPING[category]
        rupees = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        if rupees >= 1000 and self.rng.random() < 0.5:
            return Decimal(int(rupees) // 100 * 100 - 1)  # 2,499
        if category in (C.GROCERY, C.PHARMACY):
            return Decimal(f"{rupees:.2f}")
        return Decimal(int(rupees))

    def _receipt(self, line: _Timeline, till: Till, moment: datetime) -> str:
        """Unique per store without a shared counter: the member's index and its receipt count."""
        line.receipts += 1
        number = f"{line.index:05d}{line.receipts:02d}"
        return f"{self.store_codes[till.store_id]}/{moment.astimezone(self.zone):%y%m%d}/{number}"

    def _pick(self, moment: datetime, favourites: list[_Shop] | None, *, earn: bool) -> _Shop:
        if favourites and self.rng.random() < 0.8:
            usual = [shop for shop in favourites if shop.open_at(moment)]
            if usual:
                return self.rng.choice(usual)
        shops = [shop for shop in self.shops if shop.open_at(moment)]
        weights = [self.weights[shop.tenant.pk][0 if earn else 1] for shop in shops]
        return self.rng.choices(shops, weights)[0]

    # --- one shopper's history --------------------------------------------------------------

    def _shopper_load(self, index: int, shopper: _Shopper) -> Member:
        # One generator per member: its history depends on the seed and its index alone.
        rng = self.rng = random.Random(f"{self.seed}/{index}")  # noqa: S311
        favourites: list[_Shop] = []
        for _ in range(rng.randint(3, 6)):
            shop = self._pick(self.start, None, earn=True)
            if shop not in favourites:
                favourites.append(shop)
        at_till = shopper.adult and shopper.role != "duplicate" and rng.random() < 0.75
        contactable = shopper.phone is not None or shopper.email is not None
        marketing = contactable and shopper.adult and rng.random() < 0.55
        consents = {ConsentPurpose.PROGRAMME: True, ConsentPurpose.MARKETING_MALL: marketing}
        if ConsentPurpose.ANALYTICS in self.purposes:
            consents[ConsentPurpose.ANALYTICS] = rng.random() < 0.45
        guardian = "" if shopper.adult else f"{rng.choice(FIRST_NAMES)} {shopper.name.split()[-1]}"
        member = member_enrol(
            coalition=self.coalition,
            consents=consents,
            phone=shopper.phone,
            email=shopper.email,
            card=shopper.card,
            name=shopper.name,
            adult=shopper.adult,
            guardian_name=guardian,
            guardian_consent=not shopper.adult,
            channel=ConsentChannel.TILL if at_till else ConsentChannel.STAFF,
            till=rng.choice(favourites[0].tills) if at_till else None,
            user=None if at_till else self.desk,
            now=shopper.enrolled_at,
        )
        line = _Timeline(
            index=index,
            member=member,
            favourites=favourites,
            end=shopper.history_end or self.now - timedelta(hours=1),
            may_burn=shopper.role not in ("lapsed", "negative", "negative_final"),
        )
        self._history_plan(line, shopper, marketing)
        if at_till and shopper.enrolled_at > self.start and shopper.role == "regular":
            # Joined at a till while paying: that purchase is the member's first earn.
            first = favourites[0]
            amount = self._amount(first.tenant.category)
            self._later(
                line, shopper.enrolled_at + timedelta(minutes=2), "earn", (first, amount, None)
            )
        handlers: dict[str, Callable[[_Timeline, datetime, Any], Posting | None]] = {
            "visit": self._on_visit,
            "earn": self._on_earn,
            "burn_all": self._on_burn_all,
            "refund": self._on_refund,
            "void": self._on_void,
            "adjust": self._on_adjust,
            "withdraw": self._on_withdraw,
        }
        while line.events:
            moment, _, kind, data = heapq.heappop(line.events)
            posting = handlers[kind](line, moment, data)
            if posting is not None:
                line.balance = posting.balance
        return member

    def _later(self, line: _Timeline, moment: datetime, kind: str, data: Any = None) -> None:
        heapq.heappush(line.events, (moment, next(line.sequence), kind, data))

    def _history_plan(self, line: _Timeline, shopper: _Shopper, marketing: bool) -> None:
        rng = self.rng
        first = max(shopper.enrolled_at, self.start) + timedelta(minutes=5)
        for _ in range(shopper.visits):
            self._later(line, self._moment(first, line.end), "visit")
        if shopper.role == "lapsed":  # a purchase 13-14 months ago, never spent: it expires
            shop = rng.choice([s for s in self.shops if s.tenant.category == C.APPAREL])
            bought = self._moment(self._ago(425), self._ago(396))
            self._later(line, bought, "earn", (shop, self._amount(C.APPAREL), None))
        elif shopper.role in ("negative", "negative_final"):
            # A big purchase, every point spent elsewhere, then the purchase is refunded: the
            # balance goes negative once. All but one shopper repay it with a later purchase.
            window = (line.end - first) / 4
            bought = self._moment(first, first + window)
            spent = self._moment(bought + window / 4, bought + window)
            refunded = self._moment(spent + window / 8, spent + window)
            shop = rng.choice([s for s in self.shops if s.tenant.category == C.ELECTRONICS])
            amount = Decimal(rng.randrange(25_000, 60_000, 500) - 1)
            self._later(line, bought, "earn", (shop, amount, refunded))
            self._later(line, spent, "burn_all")
            if shopper.role == "negative":
                self._later(line, self._moment(line.end - window / 2, line.end), "visit")
        elif shopper.role == "goodwill":
            moment = self._moment(first, max(first, line.end - timedelta(days=3)))
            self._later(line, moment, "adjust", rng.choice((50, 100, 150, 250)))
            if rng.random() < 0.5:  # the same goodwill credited twice, corrected days later
                self._later(line, moment + timedelta(minutes=3), "adjust", "again")
                self._later(line, moment + timedelta(days=2), "adjust", "correct")
        if marketing and rng.random() < 0.04:
            self._later(line, self._moment(first, line.end), "withdraw")

    def _on_visit(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        if line.may_burn and line.balance >= 50 and self.rng.random() < 0.5:
            return self._burn(line, moment)
        shop = self._pick(moment, line.favourites, earn=True)
        later = moment + timedelta(minutes=self.rng.randint(20, 150))
        if self.rng.random() < 0.3 and later < line.end:
            # A day out: a second shop before going home (what the cross-shop bonus rewards).
            other = self._pick(later, None, earn=True)
            if other.tenant.category != shop.tenant.category:
                amount = self._amount(other.tenant.category)
                self._later(line, later, "earn", (other, amount, None))
        return self._earn(line, shop, moment, self._amount(shop.tenant.category))

    def _on_earn(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        shop, amount, refund_at = data
        posting = self._earn(line, shop, moment, amount, returns=False)
        if refund_at is not None:
            self._later(line, refund_at, "refund", (posting.journal, shop, None))
        return posting

    def _earn(
        self,
        line: _Timeline,
        shop: _Shop,
        moment: datetime,
        amount: Decimal,
        *,
        till: Till | None = None,
        receipt: str | None = None,
        returns: bool = True,
    ) -> Posting:
        rng = self.rng
        till = till or rng.choice(shop.tills)
        posted = moment
        if rng.random() < 0.04:  # an offline till posts the next morning: occurred != posted
            posted = max(moment, min(moment + timedelta(hours=rng.uniform(8, 20)), line.end))
        posting = points_earn(
            till=till,
            member=line.member,
            amount=amount,
            receipt=receipt or self._receipt(line, till, moment),
            occurred_at=moment,
            now=posted,
        )
        if (
            returns
            and posting.journal.points
            and rng.random() < RETURNS.get(shop.tenant.category, 0.01)
        ):
            low, high = moment + timedelta(days=1), min(moment + timedelta(days=12), line.end)
            when = self._moment(low, high) if low < high else None
            if when is not None and shop.open_at(when):
                part = None
                if rng.random() < 0.35:  # one item of several comes back
                    part = Decimal(max(1, int(amount * Decimal(rng.uniform(0.2, 0.7)))))
                self._later(line, when, "refund", (posting.journal, shop, part))
        return posting

    def _burn(
        self, line: _Timeline, moment: datetime, *, everything: bool = False
    ) -> Posting | None:
        rng = self.rng
        shop = self._pick(moment, None, earn=False)  # anywhere in the mall: cross-shopping
        bill = self._amount(shop.tenant.category)
        if everything:
            bill = max(bill, Decimal(line.balance + rng.randrange(100, 2000)))
        # The discount may not exceed the bill.
        most = min(line.balance, int(bill / self.coalition.point_value))
        if most <= 0:
            return None
        points = most
        if not everything and rng.random() < 0.5:
            points = min(most, max(10, int(most * rng.uniform(0.3, 0.9)) // 10 * 10))
        till = rng.choice(shop.tills)
        receipt = self._receipt(line, till, moment)
        posting = points_burn(
            till=till,
            member=line.member,
            points=points,
            bill_amount=bill,
            receipt=receipt,
            occurred_at=moment,
            now=moment,
        )
        paid = bill - posting.journal.value
        if rng.random() < 0.015:
            self._later(
                line, moment + timedelta(minutes=rng.randint(3, 15)), "void", posting.journal
            )
        elif not everything and paid >= 100 and rng.random() < 0.5:  # the rest earns points
            later = moment + timedelta(seconds=20)
            return self._earn(line, shop, later, paid, till=till, receipt=receipt, returns=False)
        return posting

    def _on_burn_all(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        return self._burn(line, moment, everything=True)

    def _on_refund(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        original, shop, amount = data
        return points_reverse(
            original=original,
            tenant=shop.tenant,
            reason="Partial return: one item of the bill" if amount else "Goods returned",
            amount=amount,
            till=original.till,
            now=moment,
        )

    def _on_void(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        original: Journal = data
        assert original.tenant is not None
        return points_reverse(
            original=original,
            tenant=original.tenant,
            reason="Bill cancelled at the till after the points were applied",
            till=original.till,
            now=moment,
        )

    def _on_adjust(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        if data == "correct":
            points = -line.credits[-1]
            if line.balance < -points:
                return None  # spent meanwhile: the desk lets it go
            reason = "Correction: the same goodwill was credited twice"
        else:
            points = line.credits[-1] if data == "again" else int(data)
            line.credits.append(points)
            reason = self.rng.choice(GOODWILL)
        result = points_adjust(
            member=line.member, points=points, reason=reason, actor=self.desk, now=moment
        )
        return result if isinstance(result, Posting) else None

    def _on_withdraw(self, line: _Timeline, moment: datetime, data: Any) -> Posting | None:
        consents_record(
            member=line.member,
            consents={ConsentPurpose.MARKETING_MALL: False},
            channel=ConsentChannel.STAFF,
            by_user=self.desk,
            at=moment,
        )
        return None

    # --- the last steps ---------------------------------------------------------------------

    def _merges(self, members: dict[int, Member]) -> None:
        """Merge the duplicate records, then ask for two large goodwill adjustments."""
        for index, member in members.items():
            shopper = self.shoppers[index]
            if shopper.merges_into is None:
                continue
            assert shopper.history_end is not None
            members_merge(
                survivor=members[shopper.merges_into],
                merged=member,
                actor=self.desk,
                reason="Same shopper enrolled twice (phone at a till, email at the desk); "
                "confirmed with the shopper at the help desk",
                now=shopper.history_end + timedelta(hours=1),
            )
        # Maker-checker: above the threshold an adjustment waits for a second member of staff.
        survivors = [m for m in members.values() if m.status == MemberStatus.ACTIVE]
        points = self.coalition.adjustment_approval_threshold + 500
        request = points_adjust(
            member=survivors[0],
            points=points,
            reason="Goodwill for a television exchanged twice at Circuit Bazaar Electronics",
            actor=self.desk,
            now=self.now,
        )
        if self.checker is not None and isinstance(request, AdjustmentRequest):
            adjustment_approve(request=request, approver=self.checker, now=self.now)
            points_adjust(  # this one stays in the queue
                member=survivors[-1],
                points=points + 200,
                reason="Goodwill: wedding jewellery purchase not credited at the till",
                actor=self.desk,
                now=self.now,
            )


_forked: _Builder | None = None


def _worker_start() -> None:
    """In a forked worker: forget the connections inherited from the parent, unclosed.

    Closing one would end the parent's session, and with it the advisory lock it holds;
    psycopg does not close a connection object that a forked child drops. The worker opens
    its own connection on its first query.
    """
    for alias in connections:
        connections[alias].connection = None


def _batch_in_worker(bounds: tuple[int, int]) -> dict[int, UUID]:
    assert _forked is not None, "set by _members_load before the pool forks"
    try:
        return _forked._batch_load(*bounds)
    finally:
        connections.close_all()
