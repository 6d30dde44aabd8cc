"""The access matrix: every URL of the tenant portal, the till API and the back office, walked as
tenant B against tenant A's objects, as each portal role, as each staff group, as staff with no
group, as a portal (non-staff) login and anonymously.

The walks take their URLs from the functions below (`portal_urls`, `api_urls`, `admin_urls`),
and `test_every_route_is_in_the_matrix` checks that those URLs resolve to exactly the routes the
resolver serves under portal/, api/v1/ and admin/: a URL added later without an entry here
fails that test.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django_celery_beat.models import ClockedSchedule, IntervalSchedule, SolarSchedule
from django_otp.plugins.otp_totp.models import TOTPDevice

from coalition.models import ImportJob, Journal
from coalition.services.batches import batch_create
from coalition.services.staff import FINANCE, PRIVACY_OFFICER, PROGRAMME_MANAGER, SUPPORT
from coalition.tests.admin_client import client_for, staff_user
from consent.models import ConsentPurpose, PrivacyRequest, PrivacyRequestKind
from consent.services.audience import purpose_is_marketing
from consent.services.privacy import privacy_request_open
from members.models import Identifier
from members.tests.factories import MemberFactory
from settlement.models import Dispute, Payment, Statement
from settlement.services import period_close
from settlement.services.disputes import dispute_raise
from settlement.services.payments import payment_record
from settlement.tests.test_close import NOW, _month, burn, earn
from tenants.models import PortalRole, TenantRate, TenantUser, Till, TillKey
from tenants.services import tenant_user_create, till_key_issue
from tests.test_till_api_contract import burn_body, earn_body, problem
from tests.till_api import TillClient

PASSWORD = "correct horse battery"
PREFIXES = ("portal/", "api/v1/", "admin/")


def served_routes() -> set[str]:
    """Every route under PREFIXES, joined as Django's resolver joins them (`.route`)."""

    def walk(patterns: Iterable[Any], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = str(pattern.pattern)
            joined = prefix + route.removeprefix("^") if prefix else route
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, joined)
            elif isinstance(pattern, URLPattern):
                yield joined

    return {r for r in walk(get_resolver().url_patterns, "") if r.startswith(PREFIXES)}


def seen(response: Any) -> Any:
    """The response, having checked the request reached a view (not a resolver 404)."""
    assert response.resolver_match is not None, response
    return response


# The world: tenant A with a closed statement, a dispute, a batch, keys and an A-only shopper;
# tenant B with its own; portal users of every role on both sides.


@dataclass
class World:
    till_a: Till
    till_b: Till
    statement_a: Statement
    statement_b: Statement
    key_a: TillKey
    raw_b: str
    journal_a: Journal
    batch_a: Any
    dispute_a: Dispute
    a_only_card: str
    totp_device: int
    markers: list[str] = field(default_factory=list)

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused request must leave as it was."""
        return (
            sorted(TillKey.objects.values_list("pk", "revoked", "rate_limit_per_minute")),
            sorted(Dispute.objects.values_list("pk", "status", "reason")),
            Journal.objects.count(),
            TenantUser.objects.count(),
        )


@pytest.fixture
def world(coalition, till_a, till_b, member) -> World:
    start, _ = _month(coalition)
    earn(till_a, member, "4000.00", "A-1001", start + timedelta(days=2))
    burn(till_b, member, 40, "F-77", start + timedelta(days=16))
    a_only = MemberFactory.create(coalition=coalition, name="Zenobia Apparelonly")
    journal_a = earn(till_a, a_only, "2500.00", "A-SECRET-7", start + timedelta(days=3))
    period = period_close(coalition, start.date(), now=NOW)
    for tenant, side in ((till_a.tenant, "a"), (till_b.tenant, "b")):
        for role in PortalRole.values:
            tenant_user_create(
                tenant=tenant, username=f"{side}-{role}", role=role, password=PASSWORD
            )
    statement_a = Statement.objects.get(period=period, tenant=till_a.tenant)
    statement_b = Statement.objects.get(period=period, tenant=till_b.tenant)
    dispute_a = dispute_raise(
        tenant_user=TenantUser.objects.get(user__username="a-finance"),
        line=statement_a.lines.order_by("pk")[0],
        reason="Apparel disputes this",
    )
    payment_record(
        tenant=till_a.tenant,
        direction=Payment.Direction.values[0],
        amount=Decimal("1.00"),
        reference="PAY-A-1",
        received_on=date.today(),
        statement=statement_a,
    )
    key_a, _ = till_key_issue(till=till_a)
    _, raw_b = till_key_issue(till=till_b)
    card = Identifier.objects.get(member=a_only, kind="card").value
    batch_a = batch_create(
        till=till_a,
        content=(
            "kind,receipt,occurred_at,card,phone,email,amount,points,bill_amount\n"
            f"earn,A-BATCH-1,{NOW.isoformat()},{card},,,100.00,,\n"
        ).encode(),
    )
    privacy_request_open(member=member, kind=PrivacyRequestKind.ACCESS)
    # An object for more of the back office's pages (the rest are walked without one)
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from=date(2020, 1, 1),
        price_per_point=Decimal("1"),
        reimbursement_per_point=Decimal("1"),
    )
    ClockedSchedule.objects.create(clocked_time=NOW)
    SolarSchedule.objects.create(event="sunrise", latitude=Decimal("19"), longitude=Decimal("72"))
    IntervalSchedule.objects.get_or_create(every=7, period=IntervalSchedule.MINUTES)
    holder = User.objects.create_user("totp-holder", password=PASSWORD, is_staff=True)
    totp = TOTPDevice.objects.create(user=holder, name="phone")
    markers = [
        till_a.tenant.name,
        "A-SECRET-7",
        "A-BATCH-1",
        card,
        "Zenobia",
        key_a.prefix,
        "Apparel disputes this",
        "a-manager",
        "PAY-A-1",
    ]
    return World(
        till_a=till_a,
        till_b=till_b,
        statement_a=statement_a,
        statement_b=statement_b,
        key_a=key_a,
        raw_b=raw_b,
        journal_a=journal_a,
        batch_a=batch_a,
        dispute_a=dispute_a,
        a_only_card=card,
        totp_device=totp.pk,
        markers=markers,
    )


def portal_login(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(username=username))
    return client


def leaks(response: Any, markers: list[str]) -> list[str]:
    body = response.content.decode("utf-8", "replace")
    return [marker for marker in markers if marker in body]


# Portal


def a_object_urls(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, data) for every portal URL that names one of tenant A's objects."""
    statement = world.statement_a.pk
    line = world.statement_a.lines.order_by("pk").first()
    assert line is not None
    urls: list[tuple[str, str, dict[str, Any]]] = []
    for name in ("portal:statement", "portal:statement_csv", "portal:statement_pdf"):
        urls.append(("get", reverse(name, args=[statement]), {}))
    dispute = reverse("portal:statement_dispute", args=[statement])
    issue = reverse("portal:key_issue", args=[world.till_a.pk])
    rotate = reverse("portal:key_rotate", args=[world.key_a.pk])
    revoke = reverse("portal:key_revoke", args=[world.key_a.pk])
    for url in (dispute, issue, rotate, revoke):
        urls.append(("post", url, {"line": line.pk, "reason": "B says so"}))
        urls.append(("get", url, {}))
    # A's line under B's own statement: not found either.
    own = reverse("portal:statement_dispute", args=[world.statement_b.pk])
    urls.append(("post", own, {"line": line.pk, "reason": "B says so"}))
    return urls


OWN_PAGES = (
    "portal:statements",
    "portal:transactions",
    "portal:shoppers",
    "portal:tills",
    "portal:account",
    "portal:password_change",
)


@pytest.mark.parametrize("role", PortalRole.values)
def test_tenant_b_reaches_none_of_tenant_as_objects_in_the_portal(world, role):
    client = portal_login(f"b-{role}")
    before = world.snapshot()
    for method, url, data in a_object_urls(world):
        response = seen(getattr(client, method)(url, data))
        # Not found (or, for a role that may not do this at all, forbidden), never A's data
        assert response.status_code in (403, 404, 405), (role, method, url, response.status_code)
        assert not leaks(response, world.markers), (role, url, leaks(response, world.markers))
    for name in OWN_PAGES:
        response = seen(client.get(reverse(name)))
        assert response.status_code == 200, (role, name)
        assert not leaks(response, world.markers), (role, name, leaks(response, world.markers))
    assert seen(client.get(reverse("portal:home"))).status_code == 302
    assert seen(client.get(reverse("portal:login"))).status_code == 302  # already signed in
    # Nothing of A's changed: its key is live, no dispute or key was added
    assert world.snapshot() == before
    assert not TillKey.objects.get(pk=world.key_a.pk).revoked
    response = seen(client.post(reverse("portal:logout")))
    assert response.status_code == 302 and "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    ("role", "may_dispute", "may_manage_keys"),
    [
        (PortalRole.MANAGER, True, True),
        (PortalRole.FINANCE, True, False),
        (PortalRole.VIEWER, False, False),
    ],
)
def test_each_portal_role_on_its_own_tenant(world, role, may_dispute, may_manage_keys):
    client = portal_login(f"a-{role}")
    line = world.dispute_a.line
    Dispute.objects.filter(pk=world.dispute_a.pk).delete()  # the line is free to dispute again
    dispute = seen(
        client.post(
            reverse("portal:statement_dispute", args=[world.statement_a.pk]),
            {"line": line.pk, "reason": f"{role} asks"},
        )
    )
    disputed = Dispute.objects.filter(reason=f"{role} asks").exists()
    assert (dispute.status_code, disputed) == ((302, True) if may_dispute else (403, False))
    for name, args in (
        ("portal:key_rotate", [world.key_a.pk]),
        ("portal:key_revoke", [world.key_a.pk]),
        ("portal:key_issue", [world.till_a.pk]),
    ):
        if may_manage_keys:
            continue  # the manager's own key actions are test_portal.py's; here: refusals
        before = world.snapshot()
        assert seen(client.post(reverse(name, args=args))).status_code == 403, (role, name)
        assert world.snapshot() == before
    page = seen(client.get(reverse("portal:tills")))
    assert (reverse("portal:key_revoke", args=[world.key_a.pk]) in page.content.decode()) is (
        may_manage_keys
    )


def test_anonymous_and_staff_are_kept_out_of_the_portal(world):
    anonymous = Client()
    staff = client_for(staff_user("portal-staff", PROGRAMME_MANAGER))
    login = reverse("portal:login")
    pages = [reverse(name) for name in ("portal:home", *OWN_PAGES)]
    pages += [url for method, url, _ in a_object_urls(world) if method == "get"]
    for url in pages:
        response = seen(anonymous.get(url))
        if response.status_code == 405:
            continue  # a POST-only URL refuses the method before anything else
        assert response.status_code == 302, url
        assert response["Location"].startswith(login), (url, response["Location"])
    for method, url, data in a_object_urls(world):
        response = getattr(anonymous, method)(url, data)
        assert response.status_code in (302, 405), url
    assert seen(anonymous.get(login)).status_code == 200
    # A staff login has no tenant: every portal page but the password page is forbidden
    for url in pages:
        if url == reverse("portal:password_change"):
            continue
        assert staff.get(url).status_code in (403, 405), url
    assert not TillKey.objects.get(pk=world.key_a.pk).revoked


# Till API


def test_tenant_bs_till_reaches_none_of_tenant_as_transactions_or_batches(world, member):
    api = TillClient(till=world.till_b, key=world.raw_b, client=Client())
    journal = world.journal_a
    before = world.snapshot()
    # Another tenant's transaction, its reversal and its batch: not found, nothing leaked
    for response, name in (
        (api.get(f"transactions/{journal.public_id}"), "transaction-not-found"),
        (api.post(f"transactions/{journal.public_id}/reverse", {"reason": "x"}), None),
        (api.get(f"batches/{world.batch_a.public_id}"), None),
    ):
        seen(response)
        assert response.status_code == 404, response.content
        if name:
            problem(response, 404, name)
        assert not leaks(response, world.markers), leaks(response, world.markers)
    assert world.snapshot() == before
    # B's own list holds only B's postings
    listing = seen(api.get("transactions"))
    assert listing.status_code == 200
    assert not leaks(listing, world.markers)
    assert {row["tenant"] for row in listing.json()["results"]} == {world.till_b.tenant.slug}
    # Lookup is coalition-wide by design (a shopper redeems anywhere): the balance and card,
    # never a name, phone or email, nor anything of where the points were earned
    lookup = seen(api.get("members/lookup", card=world.a_only_card))
    assert lookup.status_code == 200
    assert set(lookup.json()) <= {"id", "card", "balance", "pending", "expiring"}
    assert not leaks(lookup, [m for m in world.markers if m != world.a_only_card])
    # Enrolling A's shopper again says only that they exist
    taken = Identifier.objects.get(kind="card", value=world.a_only_card)
    enrol = seen(
        api.post(
            "members",
            {"card": taken.value, "adult": True, "consents": {"programme": True}},
        )
    )
    problem(enrol, 409, "member-exists")
    assert not leaks(enrol, [m for m in world.markers if m != world.a_only_card])
    # A body can never name tenant A
    for path, body in (
        ("earn", earn_body({"card": world.a_only_card}, tenant=world.till_a.tenant.slug)),
        ("burn", burn_body({"card": world.a_only_card}, 1, till=world.till_a.code)),
    ):
        response = seen(api.post(path, body))
        assert response.status_code == 422, response.content
    assert world.snapshot() == before


def test_the_api_needs_a_key_except_for_its_documents(world):
    anonymous = Client()
    ids = {"journal": world.journal_a.public_id, "batch": world.batch_a.public_id}
    for path, method in API_PATHS:
        response = seen(getattr(anonymous, method)("/api/v1/" + path.format(**ids)))
        problem(response, 401, "unauthenticated")
    for path in API_DOCUMENTS:
        assert seen(anonymous.get(f"/api/v1/{path}")).status_code == 200


# Back office

ROLES = {
    "programme-manager": (PROGRAMME_MANAGER,),
    "finance": (FINANCE,),
    "support": (SUPPORT,),
    "privacy-officer": (PRIVACY_OFFICER,),
    "staff-without-group": (),
    "portal-user": None,  # a tenant's manager: not staff
}


def admin_client_for(role: str) -> tuple[Client, User]:
    groups = ROLES[role]
    if groups is None:
        user = User.objects.get(username="a-manager")
    else:
        user = staff_user(f"user-{role}", *groups)
    return client_for(user), user


def an_object(model: type[Model]) -> Model | None:
    return model._default_manager.order_by("pk").first()


def model_urls(model_admin: admin.ModelAdmin, obj: Model | None) -> dict[str, str]:
    info = (model_admin.model._meta.app_label, model_admin.model._meta.model_name)
    pk = str(obj.pk) if obj is not None else "0"
    return {
        "changelist": reverse("admin:{}_{}_changelist".format(*info)),
        "add": reverse("admin:{}_{}_add".format(*info)),
        "change": reverse("admin:{}_{}_change".format(*info), args=[pk]),
        "history": reverse("admin:{}_{}_history".format(*info), args=[pk]),
        "delete": reverse("admin:{}_{}_delete".format(*info), args=[pk]),
        "bare": f"{reverse('admin:{}_{}_changelist'.format(*info))}{pk}/",
        **{
            extra: reverse("admin:{}_{}_{}".format(*info, extra))
            for extra in ("import", "process_import", "export")
            if hasattr(model_admin, f"{extra}_action") or hasattr(model_admin, extra)
        },
    }


def expected_model_statuses(
    model_admin: admin.ModelAdmin, user: User, obj: Model | None
) -> dict[str, int]:
    """What the ModelAdmin's own permission checks promise for `user` (a staff user)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    view = model_admin.has_view_or_change_permission(request, obj)
    # An allowed user asking for an object that does not exist goes back to the index (the
    # import jobs' own page says 404); history looks the object up before the permission.
    missing = 302
    if model_admin.model is ImportJob and obj is None:
        change = 404  # its own page: not found before any permission, for every staff user
    else:
        change = (200 if obj is not None else missing) if view else 403
    return {
        "changelist": 200 if model_admin.has_view_or_change_permission(request) else 403,
        "add": 200 if model_admin.has_add_permission(request) else 403,
        "change": change,
        "history": 302 if obj is None else 200 if view else 403,
        "delete": (200 if obj is not None else missing)
        if model_admin.has_delete_permission(request, obj)
        else 403,
        "bare": 302,
        # django-import-export's pages, for the ModelAdmins that have them
        "import": 200 if getattr(model_admin, "has_import_permission", bool)(request) else 403,
        "process_import": 405,  # POST only, refused before the permission is asked
        "export": 200 if getattr(model_admin, "has_export_permission", bool)(request) else 403,
    }


# Pinned: the rules that matter most, stated outright (the derived walk would also pass if a
# ModelAdmin's own permission methods were wrong).
PINNED: dict[tuple[str, str], set[str]] = {
    # Only the privacy officer acts on privacy requests (an erasure is one of their steps)
    ("consent_privacyrequest", "add"): {"privacy-officer"},
    ("consent_privacyrequest", "changelist"): {"privacy-officer"},
    # Campaigns: the programme manager edits; finance may only look
    ("coalition_campaign", "add"): {"programme-manager"},
    # Money: statements, payments and the ledger's entries are not support's
    ("settlement_statement", "changelist"): {"programme-manager", "finance"},
    ("settlement_payment", "add"): {"finance"},
    ("coalition_entry", "changelist"): {"programme-manager", "finance"},
    ("coalition_account", "changelist"): {"programme-manager", "finance"},
    # Till keys: the programme manager's
    ("tenants_tillkey", "changelist"): {"programme-manager"},
    # Audit trail and data-access log: the privacy officer's
    ("auditlog_logentry", "changelist"): {"privacy-officer"},
    ("consent_dataaccess", "changelist"): {"privacy-officer"},
    # Nobody deletes anything
    ("members_member", "delete"): set(),
    ("coalition_journal", "delete"): set(),
}


def custom_urls(world: World, member: Any) -> list[tuple[str, str, dict[str, int], int]]:
    """(name, url, {role: status} for staff roles, status for a non-staff login), GET."""
    coalition = world.till_a.tenant.coalition_id
    privacy = PrivacyRequest.objects.filter(member=member).order_by("pk").first()
    purpose = next(
        (p for p in ConsentPurpose.objects.order_by("pk") if purpose_is_marketing(p)), None
    )
    totp = world.totp_device
    assert privacy is not None and purpose is not None
    staff = [role for role, groups in ROLES.items() if groups is not None]

    def only(*roles: str, yes: int = 200, no: int = 403) -> dict[str, int]:
        return {role: yes if role in roles else no for role in staff}

    def every(status: int) -> dict[str, int]:
        return dict.fromkeys(staff, status)

    login = 302
    tenant_ct = ContentType.objects.get_for_model(type(world.till_a.tenant)).pk
    return [
        ("dashboard", reverse("admin:index"), every(200), login),
        ("login", reverse("admin:login"), every(302), 200),
        ("logout", reverse("admin:logout"), every(405), 302),
        ("second_factor", reverse("second_factor"), every(200), 302),
        # Without an authenticator app there is no code to ask for: to the enrolment page
        ("second_factor_verify", reverse("second_factor_verify"), every(302), 302),
        (
            "import_confirm",
            reverse("admin:coalition_importjob_confirm", args=[0]),
            every(405),  # POST only, refused before anything is looked up
            login,
        ),
        ("import_cancel", reverse("admin:coalition_importjob_cancel", args=[0]), every(405), login),
        (
            "totp_config",
            reverse("admin:otp_totp_totpdevice_config", args=[totp]),
            every(403),
            login,
        ),
        (
            "totp_qrcode",
            reverse("admin:otp_totp_totpdevice_qrcode", args=[totp]),
            every(403),
            login,
        ),
        ("password_change", reverse("admin:password_change"), every(200), login),
        ("password_change_done", reverse("admin:password_change_done"), every(200), login),
        ("jsi18n", reverse("admin:jsi18n"), every(200), login),
        (
            "autocomplete",
            reverse("admin:autocomplete")
            + "?app_label=tenants&model_name=till&field_name=store&term=",
            only("programme-manager"),
            login,
        ),
        (
            "view_on_site",
            reverse("admin:view_on_site", args=[tenant_ct, world.till_a.tenant.pk]),
            every(404),
            login,
        ),
        (
            "app_list",
            reverse("admin:app_list", args=["tenants"]),
            only("programme-manager", "finance", no=404),
            login,
        ),
        ("catch_all", "/admin/no-such-page/", every(404), login),
        (
            "liability",
            reverse("admin:coalition_coalition_liability", args=[coalition]),
            only("programme-manager", "finance"),
            login,
        ),
        (
            "liability_csv",
            reverse("admin:coalition_coalition_liability_csv", args=[coalition]),
            only("programme-manager", "finance"),
            login,
        ),
        (
            "user_password",
            reverse("admin:auth_user_password_change", args=[world.till_a.pk]),
            every(403),
            login,
        ),
        (
            "privacy_step_erase",
            reverse("admin:consent_privacyrequest_step", args=[privacy.pk, "erase"]),
            only("privacy-officer"),
            login,
        ),
        (
            "privacy_file",
            reverse("admin:consent_privacyrequest_file", args=[privacy.pk, "json"]),
            every(403),  # POST only
            login,
        ),
        (
            "purpose_publish",
            reverse("admin:consent_consentpurpose_publish", args=[purpose.pk]),
            only("programme-manager"),
            login,
        ),
        (
            "purpose_audience",
            reverse("admin:consent_consentpurpose_audience", args=[purpose.pk]),
            only("programme-manager"),
            login,
        ),
        (
            "member_adjust",
            reverse("admin:members_member_adjust", args=[member.pk]),
            only("programme-manager", "support"),
            login,
        ),
        (
            "member_reveal",
            reverse("admin:members_member_reveal", args=[member.pk]),
            every(403),
            login,
        ),
        (
            "member_consent",
            reverse("admin:members_member_consent", args=[member.pk]),
            every(403),
            login,
        ),
    ]


@pytest.mark.parametrize("role", list(ROLES))
def test_the_back_office_as_each_role(world, member, role):
    client, user = admin_client_for(role)
    is_staff = ROLES[role] is not None
    before = world.snapshot()
    wrong: list[str] = []
    for model, model_admin in admin.site._registry.items():
        obj = an_object(model)
        urls = model_urls(model_admin, obj)
        expected = (
            expected_model_statuses(model_admin, user, obj)
            if is_staff
            else dict.fromkeys(urls, 302)
        )
        label = f"{model._meta.app_label}_{model._meta.model_name}"
        for view, url in urls.items():
            pinned = PINNED.get((label, view))
            if pinned is not None and is_staff:
                assert (expected[view] == 200) is (role in pinned), (role, label, view, "pin")
            response = seen(client.get(url))
            if response.status_code != expected[view]:
                wrong.append(f"{label} {view} {url}: {response.status_code} != {expected[view]}")
            elif not is_staff:
                assert response["Location"].startswith(reverse("admin:login")), url
    for name, url, statuses, portal_status in custom_urls(world, member):
        want = statuses[role] if is_staff else portal_status
        response = seen(client.get(url))
        if response.status_code != want:
            wrong.append(f"{name} {url}: {response.status_code} != {want}")
    assert not wrong, "\n".join(wrong)
    if is_staff:
        # Money on the dashboard (the liability and its link) only for who may see money
        dashboard = client.get(reverse("admin:index")).content.decode()
        liability = reverse(
            "admin:coalition_coalition_liability", args=[world.till_a.tenant.coalition_id]
        )
        assert (liability in dashboard) is (role in ("programme-manager", "finance")), role
    assert world.snapshot() == before


# The matrix covers every route


API_PATHS = (
    ("members", "post"),
    ("members/lookup", "get"),
    ("earn", "post"),
    ("burn", "post"),
    ("transactions", "get"),
    ("transactions/{journal}", "get"),
    ("transactions/{journal}/reverse", "post"),
    ("batches", "post"),
    ("batches/{batch}", "get"),
)
API_DOCUMENTS = ("schema", "docs", "docs/swagger")


def matrix_urls(world: World, member: Any) -> list[str]:
    urls = [url for _, url, _ in a_object_urls(world)]
    urls += [reverse(name) for name in (*OWN_PAGES, "portal:home", "portal:login", "portal:logout")]
    ids = {"journal": world.journal_a.public_id, "batch": world.batch_a.public_id}
    urls += ["/api/v1/" + path.format(**ids) for path, _ in API_PATHS]
    urls += [f"/api/v1/{path}" for path in API_DOCUMENTS]
    for model, model_admin in admin.site._registry.items():
        urls += model_urls(model_admin, an_object(model)).values()
    urls += [url for _, url, _, _ in custom_urls(world, member)]
    return urls


def test_every_route_is_in_the_matrix(world, member):
    walked = {resolve(url.split("?", 1)[0]).route for url in matrix_urls(world, member)}
    served = served_routes()
    # admin:index and the dashboard share the route "admin/" (the dashboard answers it)
    assert served - walked == set(), "routes with no entry in the access matrix"
    assert walked - served == set()
