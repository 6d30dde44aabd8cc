"""ledger_verify can fail, and the database itself refuses to change the ledger."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.utils import IntegrityError

from coalition.models import AccountKind, Entry, Journal
from coalition.selectors import ledger_verify
from coalition.services import points_burn, points_earn


@pytest.fixture
def posted(till_a, till_b, member):
    points_earn(till=till_a, member=member, amount=Decimal("4000.00"), receipt="1")
    points_burn(till=till_b, member=member, points=15, bill_amount=Decimal("100"), receipt="2")
    return member


def test_entries_and_journals_cannot_be_updated_or_deleted(posted):
    entry = Entry.objects.first()
    assert entry is not None
    for statement in (
        lambda: Entry.objects.filter(pk=entry.pk).update(points=1),
        lambda: Entry.objects.filter(pk=entry.pk).delete(),
        lambda: Journal.objects.filter(pk=entry.journal_id).update(points=1),
    ):
        with pytest.raises(IntegrityError) as refused, transaction.atomic():
            statement()
        assert "append-only" in str(refused.value)


def _tamper(sql, params):
    # Only a superuser (the test role is one) can switch the triggers off for its session.
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = origin")


def test_verify_reports_exactly_a_changed_tenant_entry(posted):
    assert ledger_verify(posted.coalition) == []
    entry = Entry.objects.get(account__kind=AccountKind.TENANT_REDEEMED)
    _tamper("UPDATE coalition_entry SET value = value + 1 WHERE id = %s", [entry.pk])
    found = {(d.check, d.subject) for d in ledger_verify(posted.coalition)}
    assert found == {
        ("journal_unbalanced", f"journal {entry.journal_id}"),
        ("entry_changed", f"entry {entry.pk}"),
        ("entry_value", f"entry {entry.pk}"),
    }


def test_verify_reports_a_changed_member_entry_everywhere_it_shows(posted):
    entry = Entry.objects.filter(account__kind=AccountKind.MEMBER_POINTS).order_by("id").first()
    assert entry is not None
    following = Entry.objects.filter(account=entry.account, id__gt=entry.pk).order_by("id").first()
    assert following is not None
    # A consistent-looking edit (points and after-balance together) passes the row's own check
    _tamper(
        "UPDATE coalition_entry SET points = points + 5, balance_after = balance_after + 5 "
        "WHERE id = %s",
        [entry.pk],
    )
    found = {(d.check, d.subject) for d in ledger_verify(posted.coalition)}
    member = f"member {posted.pk}"
    assert found == {
        ("journal_unbalanced", f"journal {entry.journal_id}"),
        ("entry_changed", f"entry {entry.pk}"),
        ("balance_chain", f"entry {following.pk}"),
        ("balance_cache", f"account {entry.account_id}"),
        ("member_flow", member),
        ("entry_value", f"entry {entry.pk}"),
    }


def test_verify_reports_a_drifted_cache_and_lot(posted):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE coalition_account SET balance = balance - 1 WHERE member_id = %s "
            "AND kind = 'member_points'",
            [posted.pk],
        )
        cursor.execute(
            "UPDATE coalition_lot SET remaining = remaining - 2 WHERE member_id = %s", [posted.pk]
        )
    checks = sorted(d.check for d in ledger_verify(posted.coalition))
    assert checks == [
        "balance_cache",
        "liability",
        "lot_remaining",
        "lots_vs_balance",
        "member_flow",
    ]


def test_verify_catches_a_balanced_journal_that_misvalues_its_legs(coalition, member, till_a):
    # A journal can balance and still lie: 40 points valued at 80.00 for the member, a
    # money-only leg on a member account, and a header claiming 999 points.
    from django.utils import timezone

    from coalition.models import Account, JournalKind
    from coalition.services.ledger import Leg, journal_post, member_accounts_lock

    accounts = member_accounts_lock(member.pk)[member.pk]
    issued = Account.objects.get(tenant=till_a.tenant, kind=AccountKind.TENANT_ISSUED)
    journal = Journal(
        coalition=coalition,
        kind=JournalKind.EARN,
        member=member,
        tenant=till_a.tenant,
        points=999,
        value=Decimal("999.00"),
        point_value=Decimal("1"),
        occurred_at=timezone.now(),
        posted_at=timezone.now(),
    )
    journal_post(
        journal,
        [
            Leg(accounts.points, 40, Decimal("80")),
            Leg(accounts.pending, 0, Decimal("5")),
            Leg(issued, -40, Decimal("-85")),
        ],
    )
    found = {(d.check, d.subject) for d in ledger_verify(coalition)}
    entries = {e.account.kind: e.pk for e in journal.entries.select_related("account")}
    assert found >= {
        ("journal_header", f"journal {journal.pk}"),
        ("entry_value", f"entry {entries['member_points']}"),
        ("entry_value", f"entry {entries['member_pending']}"),
        ("entry_value", f"entry {entries['tenant_issued']}"),
        ("liability", f"coalition {coalition.pk}"),
    }
