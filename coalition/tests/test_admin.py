"""The back office: every page renders, the ledger cannot be touched, and maker-checker holds."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from coalition.admin.base import LargeTablePaginator
from coalition.models import (
    Account,
    AccountKind,
    AdjustmentRequest,
    AdjustmentStatus,
    Campaign,
    CampaignKind,
    Coalition,
    Entry,
    ImportJob,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
    OutboxMessage,
)
from coalition.services import points_adjust, points_burn, points_earn
from coalition.services.batches import batch_create
from coalition.services.notices import expiry_notices_queue
from coalition.services.policy_migrations import (
    expiry_policy_migration_request,
    expiry_policy_migrations_run,
)
from coalition.tests.admin_client import client_for, messages_of, staff_user
from coalition.tests.factories import CoalitionFactory
from consent.models import ConsentPurpose
from consent.services import data_access_record
from consent.services.privacy import privacy_request_open
from members.models import Member
from members.selectors import member_balances
from members.services import members_merge
from members.tests.factories import MemberFactory
from settlement.models import Payment
from settlement.services import (
    arrears_apply,
    arrears_waive,
    dispute_raise,
    last_ended_month,
    month_bounds,
    payment_record,
    period_close,
)
from tenants.models import TenantRate
from tenants.services import tenant_user_create, till_key_issue

OUR_APPS = {"coalition", "tenants", "members", "consent", "settlement"}
LEDGER_MODELS = (Journal, Entry, Lot, LotConsumption, Account)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "x")


@pytest.fixture
def admin_client_(superuser) -> Client:
    return client_for(superuser)


@pytest.fixture
def mall_with_history(coalition, till_a, till_b, member, staff, checker):
    """Given a mall where every model has rows: earns, a burn, an adjustment waiting for
    approval, a merge, rates and consent events."""
    TenantRate.objects.create(
        tenant=till_a.tenant,
        effective_from="2024-01-01",
        price_per_point=Decimal("1.1000"),
        reimbursement_per_point=Decimal("1.0000"),
    )
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="A-1")
    points_burn(till=till_b, member=member, points=10, bill_amount=Decimal("600"), receipt="F-1")
    other = MemberFactory.create(coalition=coalition, phone="+919812345670")
    points_earn(till=till_b, member=other, amount=Decimal("900.00"), receipt="F-2")
    twin = MemberFactory.create(coalition=coalition)
    members_merge(survivor=other, merged=twin, actor=staff, reason="Same person")
    points_adjust(member=member, points=5000, reason="Corporate order", actor=staff)
    till_key_issue(till=till_a)
    batch_create(
        till=till_a,
        content=b"kind,receipt,card,amount\nearn,B-1,0000,100.00\nearn,,x,1\n",
    )
    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="demo", task="demo.task", interval=interval)
    CrontabSchedule.objects.create(minute="0", hour="3")
    ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=30))
    SolarSchedule.objects.create(
        event="sunrise", latitude=Decimal("19.07"), longitude=Decimal("72.87")
    )
    # Settlement: last month closed, a payment, arrears waived; a tenant portal login.
    last_month = month_bounds(coalition, last_ended_month(coalition, timezone.now()))[0]
    points_earn(
        till=till_a, member=member, amount=Decimal("700.00"), receipt="A-old",
        occurred_at=last_month, now=last_month,
    )  # fmt: skip
    period = period_close(coalition, last_month.date())
    owed = period.statements.get(tenant=till_a.tenant)
    arrears_apply(today=owed.due_on + timedelta(days=1))
    arrears_waive(tenant=till_a.tenant, reason="Instalments agreed", actor=staff)
    payment_record(
        tenant=till_a.tenant, direction=Payment.Direction.RECEIVED, amount=Decimal("1.00"),
        reference="UTR-1", received_on=timezone.localdate(), actor=staff,
    )  # fmt: skip
    portal_user = tenant_user_create(
        tenant=till_a.tenant, username="portal-a", role="manager", password="long enough pw"
    )
    dispute_raise(tenant_user=portal_user, line=owed.lines.first(), reason="Not ours")
    # Expiry notices: recorded as the daily job would a year on, one sent through the outbox.
    expiry_notices_queue(now=timezone.now() + timedelta(days=400), coalition=coalition)
    OutboxMessage.objects.create(channel="sms", recipient="+919812345670", body="Points expire")
    # A policy migration staff asked for, run.
    expiry_policy_migration_request(coalition=coalition, actor=staff, reason="New term")
    expiry_policy_migrations_run()
    # Privacy: an access request, and a recorded view of a member's personal data.
    privacy_request_open(member=other, kind="access", actor=staff, note="At the desk")
    data_access_record(user=staff, action="view", what="name", why="At the desk", member=other)
    # A campaign that gave points.
    Campaign.objects.create(
        coalition=coalition, name="Double at the food court", kind=CampaignKind.MULTIPLIER,
        tenant=till_b.tenant, multiplier=Decimal("2.00"),
        starts_on=timezone.localdate() - timedelta(days=1),
        ends_on=timezone.localdate() + timedelta(days=1),
    )  # fmt: skip
    points_earn(till=till_b, member=other, amount=Decimal("300.00"), receipt="F-3")
    # An import job, as the upload page records it.
    ImportJob.objects.create(
        coalition=coalition, kind="members", file_name="old.csv", file_sha256="0" * 64,
        file_size=1, rows_total=1, created_by=staff, created_at=timezone.now(),
    )  # fmt: skip
    return coalition


def test_every_admin_page_renders_with_data(admin_client_, mall_with_history):
    # Given rows in every model of the project's apps
    for model in admin.site._registry:
        if model._meta.app_label in OUR_APPS:
            assert model._default_manager.exists(), f"no {model.__name__} rows to render"
    # When staff open each changelist, a change page and the add page
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = admin_client_.get(changelist)
        # Then every page renders
        assert response.status_code == 200, changelist
        obj = model._default_manager.first()
        if obj is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
            assert admin_client_.get(change).status_code == 200, change
        if model_admin.has_add_permission(response.wsgi_request):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert admin_client_.get(add).status_code == 200, add


def test_every_changelist_search_renders(admin_client_, mall_with_history):
    for model, model_admin in admin.site._registry.items():
        if not model_admin.search_fields:
            continue
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        for term in ("A-1", "98123 45670", str(Member.objects.first().pk), "x@y.z"):
            assert admin_client_.get(url, {"q": term}).status_code == 200, (url, term)


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda m: m.__name__)
def test_ledger_rows_cannot_be_added_changed_or_deleted(admin_client_, mall_with_history, model):
    opts = model._meta
    obj = model._default_manager.first()
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])

    # The page is view-only: no save button, no delete link, no add button on the list
    page = admin_client_.get(change)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert b"deletelink" not in page.content
    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
    changelist = admin_client_.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert changelist.context["has_add_permission"] is False
    assert f'href="{add}"'.encode() not in changelist.content
    assert "delete_selected" not in changelist.context["cl"].model_admin.get_actions(
        changelist.wsgi_request
    )

    # And posting anyway is refused, even for a superuser
    assert admin_client_.post(change, {}).status_code == 403
    delete = reverse(f"admin:{opts.app_label}_{opts.model_name}_delete", args=[obj.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert admin_client_.get(add).status_code == 403
    assert model._default_manager.filter(pk=obj.pk).exists()


def test_member_balance_is_not_editable_through_the_account_admin(
    admin_client_, mall_with_history, member
):
    account = Account.objects.get(member=member, kind=AccountKind.MEMBER_POINTS)
    before = account.balance
    url = reverse("admin:coalition_account_change", args=[account.pk])
    response = admin_client_.post(url, {"balance": before + 1000})
    assert response.status_code == 403
    account.refresh_from_db()
    assert account.balance == before


def test_adjustment_above_threshold_waits_for_a_second_staff_member(
    coalition, member, assert_ledger_clean
):
    # Given a maker (Support) and a checker (Finance); the maker also holds Finance's rights,
    # so only the maker-checker rule can stop them approving their own request
    maker = staff_user("maker", "Support", "Finance")
    checker = staff_user("checker", "Finance")
    maker_client, checker_client = client_for(maker), client_for(checker)
    threshold = coalition.adjustment_approval_threshold

    # When the maker adjusts by more than the threshold
    adjust = reverse("admin:members_member_adjust", args=[member.pk])
    response = maker_client.post(
        adjust, {"points": threshold + 1, "reason": "Corporate order"}, follow=True
    )

    # Then a pending request is created and nothing is posted yet
    assert "awaits a second staff member's approval" in " ".join(messages_of(response))
    request = AdjustmentRequest.objects.get(member=member)
    assert (request.status, request.points, request.requested_by) == (
        AdjustmentStatus.PENDING,
        threshold + 1,
        maker,
    )
    assert not Journal.objects.filter(member=member, kind=JournalKind.ADJUST).exists()
    assert member_balances(member).balance == 0

    # When the maker tries to approve it (confirmation page, then confirm)
    changelist = reverse("admin:coalition_adjustmentrequest_changelist")
    confirm = maker_client.post(changelist, {"action": "approve", "_selected_action": [request.pk]})
    assert confirm.status_code == 200
    assert b"Approve and post" in confirm.content
    refused = maker_client.post(
        changelist,
        {"action": "approve", "_selected_action": [request.pk], "confirm": "yes"},
        follow=True,
    )
    # Then it is refused with an error message, not a server error
    assert refused.status_code == 200
    assert any("cannot approve" in text for text in messages_of(refused))
    request.refresh_from_db()
    assert request.status == AdjustmentStatus.PENDING

    # When the checker approves it
    approved = checker_client.post(
        changelist,
        {"action": "approve", "_selected_action": [request.pk], "confirm": "yes"},
        follow=True,
    )
    # Then it is posted and the member's balance moves
    assert any("Approved" in text for text in messages_of(approved))
    request.refresh_from_db()
    assert (request.status, request.decided_by) == (AdjustmentStatus.APPROVED, checker)
    assert request.journal is not None and request.journal.kind == JournalKind.ADJUST
    assert member_balances(member).balance == threshold + 1
    assert_ledger_clean(coalition)


def test_checker_rejects_an_adjustment(coalition, member, staff, checker):
    request = points_adjust(member=member, points=5000, reason="Typo?", actor=staff)
    assert isinstance(request, AdjustmentRequest)
    checker.groups.add(Group.objects.get(name="Finance"))
    response = client_for(checker).post(
        reverse("admin:coalition_adjustmentrequest_changelist"),
        {"action": "reject", "_selected_action": [request.pk], "confirm": "yes"},
        follow=True,
    )
    assert any("Rejected" in text for text in messages_of(response))
    request.refresh_from_db()
    assert request.status == AdjustmentStatus.REJECTED
    assert member_balances(member).balance == 0


def test_support_cannot_approve_an_adjustment(coalition, member, staff):
    # Given a pending request made by someone else
    request = points_adjust(member=member, points=5000, reason="Corporate order", actor=staff)
    support = client_for(staff_user("helpdesk", "Support"))
    changelist = reverse("admin:coalition_adjustmentrequest_changelist")

    # When Support opens the list (it may see its requests) and tries the approve action
    listing = support.get(changelist)
    assert listing.status_code == 200
    offered = listing.context["cl"].model_admin.get_actions(listing.wsgi_request)
    assert "approve" not in offered
    support.post(
        changelist, {"action": "approve", "_selected_action": [request.pk], "confirm": "yes"}
    )

    # Then nothing is approved and the request still waits
    request.refresh_from_db()
    assert request.status == AdjustmentStatus.PENDING
    assert member_balances(member).balance == 0


def test_pending_request_page_offers_the_decision_only_to_checkers(coalition, member, staff):
    request = points_adjust(member=member, points=5000, reason="Corporate order", actor=staff)
    url = reverse("admin:coalition_adjustmentrequest_change", args=[request.pk])
    finance = client_for(staff_user("fin", "Finance")).get(url)
    assert finance.status_code == 200
    assert b'value="approve"' in finance.content
    assert b'name="_save"' not in finance.content  # decided by the buttons, never by Save


def test_coalition_added_in_admin_goes_through_coalition_create(admin_client_):
    response = admin_client_.post(
        reverse("admin:coalition_coalition_add"),
        {"name": "Orion Mall", "slug": "orion", "currency": "inr", "time_zone": "Asia/Kolkata"},
    )
    assert response.status_code == 302
    created = Coalition.objects.get(slug="orion")
    assert created.currency == "INR"
    # Its operator accounts and consent purposes exist, as coalition_create makes them
    kinds = set(Account.objects.filter(coalition=created).values_list("kind", flat=True))
    assert {AccountKind.BREAKAGE, AccountKind.ADJUSTMENT, AccountKind.CAMPAIGN} <= kinds
    assert ConsentPurpose.objects.filter(coalition=created, code="programme").exists()


def test_coalition_add_refuses_an_unknown_time_zone(admin_client_):
    response = admin_client_.post(
        reverse("admin:coalition_coalition_add"),
        {"name": "Orion Mall", "slug": "orion", "currency": "INR", "time_zone": "Mars/Olympus"},
    )
    assert response.status_code == 200
    assert "time_zone" in response.context["adminform"].form.errors
    assert not Coalition.objects.filter(slug="orion").exists()


def test_coalition_settings_are_edited_but_point_value_is_fixed_after_postings(
    admin_client_, mall_with_history
):
    coalition = mall_with_history
    url = reverse("admin:coalition_coalition_change", args=[coalition.pk])
    form = admin_client_.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    assert "point_value" not in data  # read-only once journals exist
    data.update(holdback_days=3, point_value="2.0000", change_reason="Longer holdback")
    response = admin_client_.post(url, {k: "" if v is None else v for k, v in data.items()})
    assert response.status_code == 302
    coalition.refresh_from_db()
    assert coalition.holdback_days == 3
    assert coalition.point_value == Decimal("1.0000")


def test_journal_search_by_receipt_and_public_id(admin_client_, mall_with_history):
    url = reverse("admin:coalition_journal_changelist")
    earn = Journal.objects.get(receipt="A-1")
    by_receipt = admin_client_.get(url, {"q": "A-1"}).context["cl"].result_list
    by_id = admin_client_.get(url, {"q": str(earn.public_id)}).context["cl"].result_list
    assert list(by_receipt) == [earn]
    assert list(by_id) == [earn]


def test_large_table_paginator_estimates_only_an_unfiltered_big_table(db, monkeypatch):
    # Given a table whose statistics are fresh, and a threshold every table is above
    CoalitionFactory.create()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE coalition_coalition")
    monkeypatch.setattr(LargeTablePaginator, "EXACT_BELOW", 0)
    rows = Coalition.objects.order_by("pk")

    # When the unfiltered list is counted, then no COUNT(*) runs: the planner's estimate does
    with CaptureQueriesContext(connection) as unfiltered:
        assert LargeTablePaginator(rows, 10).count == 1
    assert [q["sql"] for q in unfiltered if "COUNT(" in q["sql"].upper()] == []
    assert any("reltuples" in q["sql"] for q in unfiltered)

    # And a filtered list is counted exactly
    with CaptureQueriesContext(connection) as filtered:
        assert LargeTablePaginator(rows.filter(slug="nope"), 10).count == 0
    assert any("COUNT(" in q["sql"].upper() for q in filtered)
