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
        ("pool", f"coalition {posted.coalition_id}"),
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
    assert checks == ["balance_cache", "lot_remaining", "lots_vs_balance", "member_flow"]
