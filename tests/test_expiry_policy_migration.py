"""A change of expiry policy dates new lots only; staff move existing lots by an audited run."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from coalition.errors import InvalidRequest
from coalition.models import (
    Coalition,
    ExpiryPolicy,
    ExpiryPolicyMigration,
    Lot,
    MigrationStatus,
)
from coalition.selectors import ledger_verify
from coalition.services import lots_expire, points_burn, points_earn
from coalition.services.notices import expiry_notices_queue
from coalition.services.policy_migrations import (
    expiry_policy_migration_preview,
    expiry_policy_migration_request,
    expiry_policy_migrations_run,
)
from coalition.services.programme import coalition_settings_save
from coalition.services.staff import FINANCE, PROGRAMME_MANAGER
from coalition.tests.admin_client import client_for, messages_of, staff_user
from members.models import Member
from members.selectors import member_balances
from tests.test_ledger_concurrency import burn_call, only_outcomes, race

IST = ZoneInfo("Asia/Kolkata")


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, tzinfo=IST)


def earn(till, member, amount: str, when: datetime, receipt: str) -> Lot:
    posting = points_earn(
        till=till,
        member=member,
        amount=Decimal(amount),
        receipt=receipt,
        occurred_at=when,
        now=when,
    )
    return Lot.objects.get(journal=posting.journal)


def set_policy(coalition: Coalition, *objects, **fields) -> None:
    Coalition.objects.filter(pk=coalition.pk).update(**fields)
    coalition.refresh_from_db()
    for obj in objects:
        obj.refresh_from_db()


def test_a_switch_to_sliding_leaves_fixed_lots_alone(coalition, till_a, till_b, member):
    # Given a lot earned under the fixed 12-month term
    old = earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    assert (old.expires_on, old.slide_months) == (date(2026, 1, 9), None)
    # When the coalition moves to sliding 6 months and the member is active again
    set_policy(
        coalition,
        till_a.tenant.coalition,
        till_b.tenant.coalition,
        member.coalition,
        expiry_policy=ExpiryPolicy.SLIDING,
        expiry_months=6,
    )
    new = earn(till_a, member, "1000.00", at(2025, 5, 1), "2")
    points_burn(
        till=till_b,
        member=member,
        points=5,
        bill_amount=Decimal("50"),
        receipt="3",
        occurred_at=at(2025, 8, 1),
        now=at(2025, 8, 1),
    )
    # Then the old lot keeps its date; the new one slides to six months after the burn
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.expires_on, old.slide_months) == (date(2026, 1, 9), None)
    assert (new.expires_on, new.slide_months) == (date(2026, 1, 31), 6)


def test_migration_moves_existing_lots_with_a_record(coalition, till_a, member, staff):
    # Given two lots under a 12-month term, one of them noticed already
    jan = earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    jun = earn(till_a, member, "2000.00", at(2025, 6, 1), "2")
    assert expiry_notices_queue(now=at(2025, 12, 15)) == 1
    jan.refresh_from_db()
    assert jan.notice_id is not None
    # When the policy becomes a 3-month term and staff migrate the existing lots
    set_policy(coalition, expiry_months=3)
    now = at(2025, 12, 20)
    preview = expiry_policy_migration_preview(coalition=coalition, now=now)
    assert (preview.lots, preview.earlier, preview.points) == (2, 2, 60)
    with pytest.raises(InvalidRequest):
        expiry_policy_migration_request(coalition=coalition, actor=staff, reason="  ")
    migration = expiry_policy_migration_request(
        coalition=coalition, actor=staff, reason="Board decision of 19 Dec", now=now
    )
    with pytest.raises(InvalidRequest, match="already under way"):
        expiry_policy_migration_request(coalition=coalition, actor=staff, reason="again")
    # A later change of settings does not alter what the queued run applies
    set_policy(coalition, expiry_months=24)
    assert expiry_policy_migrations_run(now=now) == 1
    # Then each lot has the 3-month date, its old notice is gone, and the record says so
    jan.refresh_from_db()
    jun.refresh_from_db()
    assert (jan.expires_on, jun.expires_on) == (date(2025, 4, 9), date(2025, 8, 31))
    assert (jan.notice_id, jun.notice_id) == (None, None)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.DONE
    assert (migration.expiry_policy, migration.expiry_months) == (ExpiryPolicy.FIXED, 3)
    assert (migration.lots_changed, migration.lots_earlier, migration.points_changed) == (2, 2, 60)
    assert (migration.members_done, migration.members_total) == (1, 1)
    assert migration.requested_by == staff and migration.finished_at is not None
    # And a second run changes nothing more
    assert expiry_policy_migrations_run(now=now) == 0
    migration.refresh_from_db()
    assert migration.lots_changed == 2


def test_migrated_lots_wait_a_full_notice_window(coalition, till_a, member, staff):
    # Given a lot whose new, shorter term is long past
    earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    set_policy(coalition, expiry_months=3)
    expiry_policy_migration_request(coalition=coalition, actor=staff, reason="r")
    expiry_policy_migrations_run(now=at(2025, 12, 20))
    # When the sweep runs at once: nothing expires, there is no notice yet
    assert lots_expire(as_of=at(2025, 12, 21)) == 0
    assert expiry_notices_queue(now=at(2025, 12, 21)) == 1
    assert lots_expire(as_of=at(2026, 1, 19)) == 0
    # Then a full window after the notice, the points go
    assert lots_expire(as_of=at(2025, 12, 21) + timedelta(days=30)) == 40
    assert member_balances(member).balance == 0


def test_migration_to_sliding_counts_from_the_last_activity(coalition, till_a, member, staff):
    Member.objects.filter(pk=member.pk).update(last_activity_at=None)  # enrolled long ago
    member.refresh_from_db()
    lot = earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    earn(till_a, member, "100.00", at(2025, 9, 3), "2")  # below a block: activity, no points
    set_policy(coalition, expiry_policy=ExpiryPolicy.SLIDING, expiry_months=6)
    expiry_policy_migration_request(coalition=coalition, actor=staff, reason="r")
    expiry_policy_migrations_run(now=at(2025, 10, 1))
    lot.refresh_from_db()
    member.refresh_from_db()
    assert member.last_activity_at is not None
    assert (lot.expires_on, lot.slide_months) == (date(2026, 3, 2), 6)


def test_the_admin_action_asks_for_a_reason_then_queues(coalition, till_a, member):
    earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    set_policy(coalition, expiry_months=6)
    manager = staff_user("pm", PROGRAMME_MANAGER)
    client = client_for(manager)
    url = reverse("admin:coalition_coalition_changelist")
    data = {"action": "migrate_existing_lots", ACTION_CHECKBOX_NAME: [coalition.pk]}
    # The first step shows what would change
    page = client.post(url, data)
    assert page.status_code == 200
    assert b"<strong>1</strong> open lots holding" in page.content
    # Without a reason nothing is recorded
    page = client.post(url, {**data, "apply": "1", "reason": ""})
    assert page.status_code == 200 and b"This field is required" in page.content
    assert not ExpiryPolicyMigration.objects.exists()
    # With one, the request is recorded and the job queued
    done = client.post(url, {**data, "apply": "1", "reason": "New rules"}, follow=True)
    assert any("being moved" in message for message in messages_of(done))
    migration = ExpiryPolicyMigration.objects.get()
    assert (migration.requested_by, migration.reason) == (manager, "New rules")
    assert migration.status == MigrationStatus.QUEUED
    # Finance can read the record but not start a migration
    finance = client_for(staff_user("fin", FINANCE))
    listing = finance.get(reverse("admin:coalition_expirypolicymigration_changelist"))
    assert listing.status_code == 200 and b"Fixed term from the earn date" in listing.content
    record = finance.get(
        reverse("admin:coalition_expirypolicymigration_change", args=[migration.pk])
    )
    assert record.status_code == 200 and b"New rules" in record.content
    assert b"migrate_existing_lots" not in finance.get(url).content
    finance.post(url, {**data, "apply": "1", "reason": "x"})
    assert ExpiryPolicyMigration.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_migration_racing_burns_never_deadlocks(coalition, till_a, till_b, staff):
    # Given twenty members with points, a migration queued
    from members.tests.factories import MemberFactory

    members = [MemberFactory.create(coalition=coalition) for _ in range(20)]
    for index, one in enumerate(members):
        earn(till_a, one, "4000.00", at(2025, 1, 10), f"e{index}")
    set_policy(coalition, expiry_months=6)
    expiry_policy_migration_request(coalition=coalition, actor=staff, reason="r")
    # When the run races a burn on every member
    burns = [burn_call(till_b.pk, one.pk, 10, f"b{i}") for i, one in enumerate(members)]
    futures = race([expiry_policy_migrations_run, *burns])
    # Then every burn went through, every lot has its new date, and the ledger adds up
    only_outcomes(futures[1:])
    assert futures[0].result() == 1
    dates = set(Lot.objects.filter(coalition=coalition).values_list("expires_on", flat=True))
    assert dates == {date(2025, 7, 9)}
    for one in members:
        assert member_balances(one).balance == 30
        assert Lot.objects.get(member=one).remaining == 30
    assert ledger_verify(coalition) == []


def test_lots_earned_under_sliding_keep_sliding_after_a_switch_away(
    coalition, till_a, till_b, member
):
    # Given staff set a sliding policy (through the service the admin uses) and a lot earned
    coalition.expiry_policy, coalition.expiry_months = ExpiryPolicy.SLIDING, 6
    coalition_settings_save(coalition=coalition)
    for obj in (till_a.tenant.coalition, till_b.tenant.coalition, member.coalition):
        obj.refresh_from_db()
    sliding = earn(till_a, member, "4000.00", at(2025, 1, 10), "1")
    # When they go back to a fixed 12-month term and the member earns, then burns
    coalition.expiry_policy, coalition.expiry_months = ExpiryPolicy.FIXED, 12
    coalition_settings_save(coalition=coalition)
    for obj in (till_a.tenant.coalition, till_b.tenant.coalition, member.coalition):
        obj.refresh_from_db()
    assert coalition.sliding_lots
    fixed = earn(till_a, member, "1000.00", at(2025, 2, 1), "2")
    points_burn(
        till=till_b,
        member=member,
        points=5,
        bill_amount=Decimal("50"),
        receipt="3",
        occurred_at=at(2025, 4, 1),
        now=at(2025, 4, 1),
    )
    # Then the sliding lot moved with the burn; the fixed one kept its date
    sliding.refresh_from_db()
    fixed.refresh_from_db()
    assert (sliding.expires_on, sliding.slide_months) == (date(2025, 9, 30), 6)
    assert (fixed.expires_on, fixed.slide_months) == (date(2026, 1, 31), None)
