"""The written-out statements of the posting path do what the ORM code they replaced did.

`journal_post` writes journal, balances and entries in one statement; `lots_consume_fifo` takes
points from lots in one statement; the idempotency layer claims a key and reads its stored
response in one statement. Each is checked here against the rule it implements, on PostgreSQL.
"""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from coalition.api.idempotency import Outcome, idempotent_respond
from coalition.errors import DuplicateReceipt
from coalition.models import (
    Account,
    AccountKind,
    Coalition,
    IdempotencyRecord,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.services import points_earn
from coalition.services.ledger import (
    Leg,
    journal_post,
    lot_create,
    lot_new,
    lots_consume_fifo,
    member_accounts_lock,
)
from coalition.services.programme import LotTerms
from members.models import Member
from tenants.models import Till


def _journal(coalition: Coalition, member: Member, till: Till, **fields: object) -> Journal:
    now = timezone.now()
    defaults: dict[str, object] = {
        "coalition": coalition,
        "kind": JournalKind.ADJUST,
        "member": member,
        "tenant": till.tenant,
        "points": 0,
        "value": Decimal("0.00"),
        "point_value": Decimal("1"),
        "occurred_at": now,
        "posted_at": now,
    }
    return Journal(**{**defaults, **fields})


def test_two_legs_on_one_account_chain_their_balances(coalition, member, till_a):
    accounts = member_accounts_lock(member.pk)[member.pk]
    house = Account.objects.get(tenant=till_a.tenant, kind=AccountKind.TENANT_ISSUED)
    journal = journal_post(
        _journal(coalition, member, till_a, points=5),
        [
            Leg(accounts.points, 5, Decimal("5")),
            Leg(accounts.points, -3, Decimal("-3")),
            Leg(house, -2, Decimal("-2")),
        ],
    )
    entries = list(journal.entries.filter(account=accounts.points).order_by("id"))
    assert [(e.balance_before, e.balance_after) for e in entries] == [(0, 5), (5, 2)]
    assert Account.objects.get(pk=accounts.points.pk).balance == 2 == accounts.points.balance
    assert journal.entries.get(account=house).balance_before is None


def test_a_repeated_receipt_writes_nothing(coalition, member, till_a):
    points_earn(till=till_a, member=member, amount=Decimal("400.00"), receipt="R-1")
    journals, balance = Journal.objects.count(), member_accounts_lock(member.pk)[member.pk]
    with pytest.raises(DuplicateReceipt):
        points_earn(till=till_a, member=member, amount=Decimal("900.00"), receipt="R-1")
    assert Journal.objects.count() == journals
    assert member_accounts_lock(member.pk)[member.pk].points.balance == balance.points.balance


def test_lots_are_taken_oldest_expiry_first_and_no_expiry_last(coalition, member, till_a):
    carrier = journal_post(_journal(coalition, member, till_a), [])
    today = timezone.localdate()

    def lot(points: int, expires_in: int | None, pending: bool = False) -> Lot:
        made = lot_create(
            lot_new(
                journal=carrier,
                member_id=member.pk,
                points=points,
                funding_tenant_id=till_a.tenant_id,
                terms=LotTerms(
                    today.replace(year=today.year + expires_in) if expires_in else None, None
                ),
                pending_until=timezone.now() if pending else None,
            )
        )
        assert made is not None
        return made

    never, late, early, held = lot(50, None), lot(30, 2), lot(20, 1), lot(99, 1, pending=True)
    spender = journal_post(_journal(coalition, member, till_a), [])

    assert lots_consume_fifo(member.pk, 45, spender) == 45

    remaining = {made.pk: Lot.objects.get(pk=made.pk).remaining for made in (never, late, early)}
    assert remaining == {early.pk: 0, late.pk: 5, never.pk: 50}
    assert Lot.objects.get(pk=held.pk).remaining == 99  # pending points are not spendable
    taken = dict(LotConsumption.objects.filter(journal=spender).values_list("lot_id", "points"))
    assert taken == {early.pk: 20, late.pk: 25}
    # Asking for more than there is takes what there is.
    assert lots_consume_fifo(member.pk, 1_000, spender) == 55


@pytest.mark.django_db(transaction=True)
def test_a_key_stored_after_the_claims_snapshot_is_replayed_not_run_twice(till_a):
    """The claim and the stored-response read share a snapshot taken just before the claim: a
    request that commits in between is not seen, and storing a second response for its key hits
    the unique index. The next attempt must replay the first response."""
    calls = []

    def store_first_response() -> None:  # the other request, committing on its own connection
        try:
            IdempotencyRecord.objects.create(
                till=till_a,
                key="K-1",
                fingerprint="same",
                status=201,
                content_type="application/json",
                body=b'{"first":true}',
                created_at=timezone.now(),
            )
        finally:
            connection.close()

    def handler() -> Outcome:
        calls.append(1)
        other = threading.Thread(target=store_first_response)
        other.start()
        other.join()
        return Outcome(201, {"second": True})

    response = idempotent_respond(till=till_a, key="K-1", fingerprint="same", handler=handler)

    assert calls == [1]
    assert response.status_code == 201
    assert response.content == b'{"first":true}'
    assert response["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.filter(till=till_a, key="K-1").count() == 1
