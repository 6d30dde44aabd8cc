"""The ledger under real concurrency: threads, separate connections, PostgreSQL row locks.

Every test commits its set-up (`transaction=True`), then starts its threads together behind a
`threading.Barrier` so that the services really overlap. Each thread loads its own model
instances, uses the ORM normally (Django gives each thread its own connection) and closes that
connection when it is done. A thread still running after the timeout is stuck; a thread that
raised anything but a domain error (PostgreSQL's "deadlock detected" among them) fails the test.

The last tests do not leave the interleaving to chance: one transaction is held open inside an
outer `transaction.atomic()` until the others are seen queuing on its locks in
`pg_stat_activity`, then released.
"""

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from coalition.errors import (
    AlreadyReversed,
    DomainError,
    DuplicateReceipt,
    InsufficientPoints,
    MemberNotFound,
)
from coalition.models import (
    Account,
    AccountKind,
    Coalition,
    Entry,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.selectors import ledger_verify
from coalition.services import lots_expire, points_burn, points_earn, points_reverse
from coalition.services.notices import expiry_notices_queue
from members.models import Member, MemberStatus, MergeRecord
from members.selectors import member_balances
from members.services import members_merge
from members.tests.factories import MemberFactory
from tenants.models import Tenant, Till
from tenants.tests.factories import TillFactory

pytestmark = pytest.mark.django_db(transaction=True)

RACE_TIMEOUT = 30.0  # seconds; a thread still running after this is deadlocked


# --- helpers -------------------------------------------------------------------------------


def _own_connection(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run `fn` and close this thread's connection afterwards, whatever happened."""

    def run() -> Any:
        try:
            return fn()
        finally:
            connection.close()

    return run


def race(calls: Sequence[Callable[[], Any]], timeout: float = RACE_TIMEOUT) -> list[Future[Any]]:
    """Run every call in its own thread, all released at once; return their futures in order.

    Fails the test if any thread has not finished within `timeout` (a deadlock or a lock held
    forever) or raised anything but a domain error (a crash, a database deadlock error...).
    """
    barrier = threading.Barrier(len(calls))

    def start_together(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            barrier.wait(timeout=timeout)
            return fn()

        return _own_connection(run)

    pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="race")
    futures = [pool.submit(start_together(fn)) for fn in calls]
    _, not_done = wait(futures, timeout=timeout)
    pool.shutdown(wait=not not_done, cancel_futures=True)
    assert not not_done, f"{len(not_done)} of {len(calls)} threads did not finish: deadlock?"
    crashes = [
        f.exception()
        for f in futures
        if f.exception() is not None and not isinstance(f.exception(), DomainError)
    ]
    assert not crashes, f"threads crashed with non-domain errors: {crashes!r}"
    return futures


def ok(futures: Sequence[Future[Any]]) -> list[Any]:
    return [f.result() for f in futures if f.exception() is None]


def refused(futures: Sequence[Future[Any]], error: type[DomainError]) -> list[BaseException]:
    return [exc for f in futures if isinstance(exc := f.exception(), error)]


def only_outcomes(futures: Sequence[Future[Any]], *errors: type[DomainError]) -> None:
    """Every future either succeeded or was refused with one of `errors`."""
    for f in futures:
        exc = f.exception()
        assert exc is None or isinstance(exc, errors), f"unexpected refusal: {exc!r}"


def fresh_member(pk: Any) -> Member:
    return Member.objects.select_related("coalition").get(pk=pk)


def fresh_till(pk: int) -> Till:
    return Till.objects.select_related("tenant__coalition", "store").get(pk=pk)


def earn(till: Till, member: Member, amount: str, receipt: str, *, days_ago: int = 0) -> Journal:
    """A committed earn (set-up), optionally dated in the past so its lot expires earlier."""
    when = timezone.now() - timedelta(days=days_ago)
    return points_earn(
        till=till,
        member=member,
        amount=Decimal(amount),
        receipt=receipt,
        occurred_at=when,
        now=when,
    ).journal


def burn_call(till_pk: int, member_pk: Any, points: int, receipt: str) -> Callable[[], Any]:
    def call() -> Any:
        return points_burn(
            till=fresh_till(till_pk),
            member=fresh_member(member_pk),
            points=points,
            bill_amount=Decimal(points + 500),
            receipt=receipt,
        )

    return call


def reverse_call(
    journal_pk: int, *, amount: str | None = None, points: int | None = None
) -> Callable[[], Any]:
    def call() -> Any:
        original = Journal.objects.select_related("coalition", "member").get(pk=journal_pk)
        assert original.tenant_id is not None
        return points_reverse(
            original=original,
            tenant=Tenant.objects.get(pk=original.tenant_id),
            reason="refund at the counter",
            amount=Decimal(amount) if amount is not None else None,
            points=points,
        )

    return call


def points_account(member: Member) -> Account:
    return Account.objects.get(member=member, kind=AccountKind.MEMBER_POINTS)


def entries_total(account: Account) -> int:
    return int(Entry.objects.filter(account=account).aggregate(s=Sum("points"))["s"] or 0)


def lots_total(member: Member) -> int:
    total = Lot.objects.filter(member=member, pending_until__isnull=True).aggregate(
        s=Sum("remaining")
    )["s"]
    return int(total or 0)


def reversed_points(journal: Journal) -> int:
    return int(journal.reversals.aggregate(s=Sum("points"))["s"] or 0)


def refunded_amount(journal: Journal) -> Decimal:
    return journal.reversals.aggregate(s=Sum("amount"))["s"] or Decimal("0")


def assert_clean(coalition: Coalition) -> None:
    problems = ledger_verify(coalition)
    assert problems == [], "\n".join(map(str, problems))


def assert_burns_never_overdrew(member: Member) -> None:
    """No entry left the account below zero unless it was a refund (the one allowed cause)."""
    account = points_account(member)
    for entry in Entry.objects.filter(account=account).select_related("journal"):
        assert entry.balance_after is not None and entry.balance_before is not None
        if entry.journal.kind == JournalKind.BURN:
            assert entry.balance_before >= entry.journal.points, entry
            assert entry.balance_after >= 0, entry


# --- tests ---------------------------------------------------------------------------------


def test_fifty_concurrent_burns_spend_exactly_the_balance(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member
) -> None:
    # Given a member with 1,000 points from ten earns, each with its own expiry date
    for i in range(10):
        earn(till_a, member, "10000.99", f"E-{i}", days_ago=300 - i * 20)
    assert member_balances(member).balance == 1000

    # When fifty tills burn 30 points each at the same moment, each with its own receipt
    futures = race([burn_call(till_b.pk, member.pk, 30, f"B-{i}") for i in range(50)])

    # Then exactly the affordable burns succeed and the rest are refused
    only_outcomes(futures, InsufficientPoints)
    assert len(ok(futures)) == 1000 // 30 == 33
    assert len(refused(futures, InsufficientPoints)) == 17
    assert Journal.objects.filter(kind=JournalKind.BURN, member=member).count() == 33
    # And the balance is what is left, never having gone below zero on the way
    assert member_balances(member).balance == 1000 - 33 * 30 == 10
    account = points_account(member)
    afters = list(Entry.objects.filter(account=account).values_list("balance_after", flat=True))
    assert len(afters) == 10 + 33
    assert all(after is not None and after >= 0 for after in afters)
    assert_burns_never_overdrew(member)
    # And FIFO held under contention: only the lot expiring last still has points
    remaining = list(Lot.objects.filter(member=member).order_by("expires_on", "id"))
    assert [lot.remaining for lot in remaining] == [0] * 9 + [10]
    assert_clean(coalition)


def test_concurrent_earns_lose_nothing(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member
) -> None:
    # Given twenty tills of two tenants, each posting five earns for the same member at once
    tills = [till_a, till_b]
    amounts = {
        (t, i): Decimal(f"{(t * 5 + i) * 137 + 99}.{(t + i) % 100:02d}")
        for t in range(20)
        for i in range(5)
    }

    def earns_of(t: int) -> Callable[[], Any]:
        def call() -> Any:
            till = fresh_till(tills[t % 2].pk)
            for i in range(5):
                points_earn(
                    till=till,
                    member=fresh_member(member.pk),
                    amount=amounts[(t, i)],
                    receipt=f"T{t}-{i}",
                )

        return call

    # When they all run together
    futures = race([earns_of(t) for t in range(20)])

    # Then every earn was posted and no point was lost
    assert len(ok(futures)) == 20
    expected = {till.tenant_id: 0 for till in tills}
    for (t, _), amount in amounts.items():
        expected[tills[t % 2].tenant_id] += int(amount // 100)
    total = sum(expected.values())
    assert Journal.objects.filter(kind=JournalKind.EARN, member=member).count() == 100
    assert member_balances(member).balance == total
    assert entries_total(points_account(member)) == total
    assert lots_total(member) == total
    # And each tenant funds exactly the points its tills issued
    for tenant_id, points in expected.items():
        issued = Account.objects.get(tenant_id=tenant_id, kind=AccountKind.TENANT_ISSUED)
        assert entries_total(issued) == -points
    assert_clean(coalition)


def test_burns_and_reversals_racing_stay_consistent(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member
) -> None:
    # Given a member with four earns (200 points) and two burns (80 points)
    e1 = earn(till_a, member, "5000.00", "E1", days_ago=40)  # 50 points, refunded in full
    e2 = earn(till_a, member, "5050.00", "E2", days_ago=30)  # 50 points, two partial refunds
    e3 = earn(till_a, member, "4000.00", "E3", days_ago=20)  # 40 points, full + partial race
    earn(till_a, member, "6000.00", "E4", days_ago=10)  # 60 points, untouched
    b1 = points_burn(
        till=till_b, member=member, points=40, bill_amount=Decimal(900), receipt="B1"
    ).journal
    b2 = points_burn(
        till=till_b, member=member, points=40, bill_amount=Decimal(900), receipt="B2"
    ).journal
    assert member_balances(member).balance == 120

    # When burns, refunds of earns and reversals of burns all run at once
    burns = [burn_call(till_b.pk, member.pk, 30, f"R-{i}") for i in range(4)]
    futures = race(
        [
            *burns,
            reverse_call(e1.pk),
            reverse_call(e2.pk, amount="1525.50"),
            reverse_call(e2.pk, amount="1525.50"),
            reverse_call(e3.pk),
            reverse_call(e3.pk, amount="1000.00"),
            reverse_call(b1.pk),
            reverse_call(b2.pk, points=20),
            reverse_call(b2.pk, points=20),
            reverse_call(b2.pk, points=20),
        ]
    )
    burn_f, e1_f, e2_f, e3_f, b1_f, b2_f = (
        futures[:4],
        futures[4:5],
        futures[5:7],
        futures[7:9],
        futures[9:10],
        futures[10:13],
    )

    # Then each operation either succeeded or was refused for the one legitimate reason
    only_outcomes(burn_f, InsufficientPoints)
    assert len(ok(e1_f)) == 1 and len(ok(e2_f)) == 2 and len(ok(b1_f)) == 1
    only_outcomes(e3_f, AlreadyReversed)
    assert len(ok(e3_f)) >= 1
    # Three reversals of 20 points of a 40-point burn: exactly two fit
    assert len(ok(b2_f)) == 2 and len(refused(b2_f, AlreadyReversed)) == 1

    # And no earn or burn was reversed beyond its amount; partial refunds follow the rule
    assert reversed_points(e1) == 50
    # ₹3,051 of ₹5,050 refunded: the ₹1,999 kept would earn 19 points, so 31 are reversed
    assert reversed_points(e2) == 50 - 19 == 31
    assert reversed_points(e3) == 40 and refunded_amount(e3) == Decimal("4000.00")
    assert reversed_points(b1) == 40 and reversed_points(b2) == 40
    for journal in Journal.objects.filter(member=member, kind__in=["earn", "burn"]):
        assert reversed_points(journal) <= journal.points
        if journal.kind == JournalKind.EARN:
            assert journal.amount is not None
            assert refunded_amount(journal) <= journal.amount

    # And the balance is the sum of its entries and of every posting that happened
    new_burns = len(ok(burn_f))
    balance = member_balances(member).balance
    assert balance == entries_total(points_account(member))
    assert balance == 120 - 30 * new_burns - 50 - 31 - 40 + 40 + 40
    assert lots_total(member) == max(balance, 0)
    assert_burns_never_overdrew(member)
    assert_clean(coalition)


def test_two_refunds_of_the_remainder_one_wins(
    coalition: Coalition, till_a: Till, member: Member
) -> None:
    # Given five earns of ₹4,000.50 (40 points each), each already partly refunded (₹1,000)
    earns = [earn(till_a, member, "4000.50", f"E-{i}") for i in range(5)]
    for journal in earns:
        points_reverse(original=journal, tenant=till_a.tenant, reason="part", amount=Decimal(1000))
    assert member_balances(member).balance == 5 * 30

    # When two refunds of the whole remainder race for each earn
    futures = race([reverse_call(journal.pk) for journal in earns for _ in range(2)])

    # Then exactly one of each pair succeeds and the other is refused as already reversed
    for i, journal in enumerate(earns):
        pair = futures[2 * i : 2 * i + 2]
        assert len(ok(pair)) == 1, journal
        assert len(refused(pair, AlreadyReversed)) == 1, journal
        assert reversed_points(journal) == 40
        assert refunded_amount(journal) == Decimal("4000.50")
    # And the points were taken back once, not twice
    assert member_balances(member).balance == 0
    assert_clean(coalition)


@pytest.mark.parametrize("kind", [JournalKind.EARN, JournalKind.BURN])
@pytest.mark.parametrize("same_member", [True, False], ids=["same-member", "two-members"])
def test_same_receipt_posted_twice_at_one_store_once(
    coalition: Coalition, till_a: Till, member: Member, kind: str, same_member: bool
) -> None:
    # Given two tills in the same store and, for burns, members with points to spend
    till_a2 = TillFactory.create(tenant=till_a.tenant, code="a2", store_code="main")
    assert till_a2.store_id == till_a.store_id
    other = member if same_member else MemberFactory.create(coalition=coalition)
    for who in {member.pk: member, other.pk: other}.values():
        earn(till_a, who, "50000.00", f"SEED-{who.pk}")
    start = {who: member_balances(fresh_member(who)).balance for who in (member.pk, other.pk)}

    def post(till: Till, who: Member, receipt: str) -> Callable[[], Any]:
        def call() -> Any:
            if kind == JournalKind.EARN:
                return points_earn(
                    till=fresh_till(till.pk),
                    member=fresh_member(who.pk),
                    amount=Decimal("700.00"),
                    receipt=receipt,
                )
            return burn_call(till.pk, who.pk, 7, receipt)()

        return call

    # When both tills post each of five receipts at the same moment
    receipts = [f"DUP-{i}" for i in range(5)]
    futures = race(
        [c for r in receipts for c in (post(till_a, member, r), post(till_a2, other, r))]
    )

    # Then exactly one post of each receipt succeeds and the other is a duplicate
    for i, receipt in enumerate(receipts):
        pair = futures[2 * i : 2 * i + 2]
        assert len(ok(pair)) == 1, receipt
        assert len(refused(pair, DuplicateReceipt)) == 1, receipt
        assert Journal.objects.filter(kind=kind, receipt=receipt).count() == 1
    # And the balances moved once per receipt
    sign = 1 if kind == JournalKind.EARN else -1
    moved = sum(
        member_balances(fresh_member(who)).balance - start[who] for who in {member.pk, other.pk}
    )
    assert moved == sign * 7 * len(receipts)
    assert_clean(coalition)


@pytest.mark.parametrize("both_ways", [False, True], ids=["one-merge", "merges-both-ways"])
def test_merge_racing_burns_on_both_members(
    coalition: Coalition, till_a: Till, till_b: Till, staff: User, both_ways: bool
) -> None:
    # Given four people, each with two member records holding 300 points apiece
    pairs = [
        (MemberFactory.create(coalition=coalition), MemberFactory.create(coalition=coalition))
        for _ in range(4)
    ]
    for pair in pairs:
        for who in pair:
            for i in range(3):
                earn(till_a, who, "10000.00", f"E-{who.pk}-{i}", days_ago=30 * (i + 1))

    def merge(keep: Any, gone: Any) -> Callable[[], Any]:
        def call() -> Any:
            return members_merge(
                survivor=fresh_member(keep),
                merged=fresh_member(gone),
                actor=User.objects.get(pk=staff.pk),
                reason="same person, two cards",
            )

        return call

    # When each pair is merged while both records burn at several tills (and, in the second
    # variant, a merge the other way round races it: the locks must be taken in one order)
    calls: list[Callable[[], Any]] = []
    for n, (first, second) in enumerate(pairs):
        calls.append(merge(first.pk, second.pk))
        if both_ways:
            calls.append(merge(second.pk, first.pk))
        for who in (first, second):
            calls += [burn_call(till_b.pk, who.pk, 25, f"B-{n}-{who.pk}-{i}") for i in range(4)]
    futures = race(calls)  # fails on a deadlock error or a timeout

    # Then exactly one merge per pair happened, and each burn ran or found its member merged
    only_outcomes(futures, MemberNotFound)
    assert MergeRecord.objects.count() == len(pairs)
    for first, second in pairs:
        record = MergeRecord.objects.get(survivor__in=[first, second])
        keep, gone = record.survivor, record.merged
        assert {keep.pk, gone.pk} == {first.pk, second.pk}
        assert fresh_member(gone.pk).status == MemberStatus.MERGED
        spent = 25 * Journal.objects.filter(kind=JournalKind.BURN, member__in=[keep, gone]).count()
        # And the whole remaining balance moved to the survivor; nothing was lost or doubled
        assert member_balances(gone).balance == 0
        assert member_balances(keep).balance == 600 - spent
        assert not Lot.objects.filter(member=gone, remaining__gt=0).exists()
        assert lots_total(keep) == 600 - spent
        assert_burns_never_overdrew(keep)
        assert_burns_never_overdrew(gone)
    assert_clean(coalition)


def test_merges_racing_refunds_and_burns_on_both_members(
    coalition: Coalition, till_a: Till, till_b: Till, staff: User
) -> None:
    """Refunds follow the points to the survivor, whichever side of a merge they land on, and
    every lock is taken in one order: no deadlock, nothing posted on a merged-away member."""
    # Given four people, each with two records: 300 points earned, 40 spent, on each record
    pairs = [
        (MemberFactory.create(coalition=coalition), MemberFactory.create(coalition=coalition))
        for _ in range(4)
    ]
    earns, burns = {}, {}
    for pair in pairs:
        for who in pair:
            earns[who.pk] = [
                earn(till_a, who, "10000.00", f"E-{who.pk}-{i}", days_ago=30 * (i + 1))
                for i in range(3)
            ]
            burns[who.pk] = points_burn(
                till=till_b, member=who, points=40, bill_amount=Decimal(500), receipt=f"P-{who.pk}"
            ).journal

    def merge(keep: Any, gone: Any) -> Callable[[], Any]:
        def call() -> Any:
            return members_merge(
                survivor=fresh_member(keep),
                merged=fresh_member(gone),
                actor=User.objects.get(pk=staff.pk),
                reason="same person, two cards",
            )

        return call

    # When staff submit each merge twice (a double click) while refunds, burn reversals and
    # burns of either record arrive
    calls: list[Callable[[], Any]] = []
    for n, (first, second) in enumerate(pairs):
        calls += [merge(first.pk, second.pk), merge(first.pk, second.pk)]
        for who in (first, second):
            calls += [
                reverse_call(earns[who.pk][0].pk),
                reverse_call(earns[who.pk][1].pk, amount="2550.00"),
                reverse_call(burns[who.pk].pk),
                burn_call(till_b.pk, who.pk, 25, f"B-{n}-{who.pk}"),
            ]
    futures = race(calls)  # fails on a deadlock error or a timeout

    # Then one merge per pair happened; every reversal was posted; burns ran or were refused
    only_outcomes(futures, MemberNotFound)
    assert MergeRecord.objects.count() == len(pairs)
    reversals = Journal.objects.filter(
        kind__in=[JournalKind.EARN_REVERSAL, JournalKind.BURN_REVERSAL]
    )
    assert reversals.count() == 3 * 2 * len(pairs)
    for first, second in pairs:
        record = MergeRecord.objects.get(survivor__in=[first, second])
        keep, gone = record.survivor, record.merged
        both = [first, second]
        burned = Journal.objects.filter(kind=JournalKind.BURN, member__in=both).aggregate(
            s=Sum("points")
        )["s"]
        refunded = reversals.filter(
            kind=JournalKind.EARN_REVERSAL, reverses__member__in=both
        ).aggregate(s=Sum("points"))["s"]
        # 100 + 26 points reversed per record (₹2,550 of ₹10,000 keeps 74 points)
        assert refunded == 2 * (100 + 26)
        # And the merged-away record holds nothing: every point sits with the survivor
        assert member_balances(gone).balance == 0
        assert not Lot.objects.filter(member=gone, remaining__gt=0).exists()
        assert member_balances(keep).balance == 600 - burned - refunded + 2 * 40
        assert lots_total(keep) == max(member_balances(keep).balance, 0)
        assert_burns_never_overdrew(keep)
    assert_clean(coalition)


def test_expiry_sweep_racing_burns_never_takes_the_same_points(
    coalition: Coalition, till_a: Till, till_b: Till, member: Member
) -> None:
    # Given a member with a lot past its last day (not swept yet) and a fresh one
    due = earn(till_a, member, "10000.00", "OLD", days_ago=400)  # 100 points, expired
    fresh = earn(till_a, member, "10000.00", "NEW", days_ago=1)  # 100 points
    due_lot, fresh_lot = Lot.objects.get(journal=due), Lot.objects.get(journal=fresh)
    today = timezone.localdate(timezone.now(), timezone=ZoneInfo(coalition.time_zone))
    assert due_lot.expires_on is not None and due_lot.expires_on < today
    assert fresh_lot.expires_on is not None and fresh_lot.expires_on > today
    # Its expiry notice was recorded more than the notice window ago.
    assert expiry_notices_queue(now=timezone.now() - timedelta(days=31)) == 1

    # When two sweeps run while eight tills burn 30 points each (burns take the due lot first)
    def sweep() -> Any:
        return lots_expire(as_of=timezone.now(), coalition=Coalition.objects.get(pk=coalition.pk))

    burns = [burn_call(till_b.pk, member.pk, 30, f"B-{i}") for i in range(8)]
    futures = race([sweep, sweep, *burns])

    # Then the sweeps together expired exactly what the burns had not yet taken from the due lot
    only_outcomes(futures[2:], InsufficientPoints)
    expired = sum(f.result() for f in futures[:2])
    burned = 30 * len(ok(futures[2:]))
    taken_from_due = LotConsumption.objects.filter(lot=due_lot).aggregate(s=Sum("points"))["s"]
    assert taken_from_due == 100
    burned_from_due = LotConsumption.objects.filter(
        lot=due_lot, journal__kind=JournalKind.BURN
    ).aggregate(s=Sum("points"))["s"]
    assert expired == 100 - (burned_from_due or 0)
    # And no lot gave more than it held; the sweep never touched the fresh lot
    for lot in (due_lot, fresh_lot):
        consumed = LotConsumption.objects.filter(lot=lot).aggregate(s=Sum("points"))["s"] or 0
        lot.refresh_from_db()
        assert 0 <= consumed <= lot.points
        assert lot.remaining == lot.points - consumed
    assert not LotConsumption.objects.filter(
        lot=fresh_lot, journal__kind=JournalKind.EXPIRE
    ).exists()
    expire_journals = Journal.objects.filter(kind=JournalKind.EXPIRE)
    assert (expire_journals.aggregate(s=Sum("points"))["s"] or 0) == expired
    assert expire_journals.count() <= 1  # the second sweep found nothing left to expire
    # And the balance accounts for every point: 200 = burned + expired + left
    assert member_balances(member).balance == 200 - burned - expired >= 0
    assert_burns_never_overdrew(member)
    assert_clean(coalition)


@pytest.mark.parametrize("kind", [JournalKind.EARN, JournalKind.BURN])
def test_reversal_racing_a_merge_lands_on_the_survivor(
    coalition: Coalition, till_a: Till, till_b: Till, staff: User, kind: str
) -> None:
    """A refund that looked the member up just before a merge committed must still post on
    the survivor: after the merge the merged-away member holds no points and no lots."""
    # Given two records of one person, and a transaction of the one about to be merged away
    survivor = MemberFactory.create(coalition=coalition)
    merged = MemberFactory.create(coalition=coalition)
    earn(till_a, survivor, "10000.00", "S-1")  # 100 points
    original = earn(till_a, merged, "5000.00", "M-1")  # 50 points
    if kind == JournalKind.BURN:
        original = points_burn(
            till=till_b, member=merged, points=20, bill_amount=Decimal(500), receipt="M-2"
        ).journal
    before = member_balances(survivor).balance + member_balances(merged).balance

    # When the merge has written but not committed, and the reversal starts in that window
    merge_written, merge_may_commit = threading.Event(), threading.Event()

    def merge() -> Any:
        with transaction.atomic():
            record = members_merge(
                survivor=fresh_member(survivor.pk),
                merged=fresh_member(merged.pk),
                actor=User.objects.get(pk=staff.pk),
                reason="same person",
            )
            merge_written.set()
            assert merge_may_commit.wait(RACE_TIMEOUT)
        return record

    def reverse() -> Any:
        assert merge_written.wait(RACE_TIMEOUT)
        return reverse_call(original.pk)()

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="merge-race")
    merge_f, reverse_f = pool.submit(_own_connection(merge)), pool.submit(_own_connection(reverse))
    # Let the merge commit once the reversal is queued behind its lock (or after 3 s anyway)
    assert merge_written.wait(RACE_TIMEOUT)
    _wait_for_a_lock_wait(seconds=3.0)
    merge_may_commit.set()
    pool.shutdown(wait=True)
    merge_f.result()
    reverse_f.result()

    # Then the merged-away member is empty and the survivor carries the reversal
    moved = original.points if kind == JournalKind.BURN else -original.points
    assert member_balances(merged).balance == 0
    assert member_balances(survivor).balance == before + moved
    assert not Lot.objects.filter(member=merged, remaining__gt=0).exists()
    assert_clean(coalition)


def test_refund_after_a_merge_takes_locks_in_the_one_order(
    coalition: Coalition, till_a: Till, till_b: Till, staff: User
) -> None:
    """Every transaction locks member accounts in one order (by primary key), so no two can
    wait for each other. A refund of a merged-away member's purchase must lock the survivor
    the same way, not the merged-away member first and the survivor after."""
    # Given two records of one person, already merged; the survivor's accounts are older
    survivor = MemberFactory.create(coalition=coalition)
    merged = MemberFactory.create(coalition=coalition)
    earn(till_a, survivor, "10000.00", "S-1")  # 100 points
    original = earn(till_a, merged, "5000.00", "M-1")  # 50 points
    members_merge(survivor=survivor, merged=merged, actor=staff, reason="same person")
    burn_written, burn_may_commit = threading.Event(), threading.Event()

    def slow_burn() -> Any:  # a till's burn on the survivor, holding its lock for a moment
        with transaction.atomic():
            posting = burn_call(till_b.pk, survivor.pk, 10, "B-1")()
            burn_written.set()
            assert burn_may_commit.wait(RACE_TIMEOUT)
        return posting

    def merge_again() -> Any:  # staff submit the same merge a second time (a double click)
        return members_merge(
            survivor=fresh_member(survivor.pk),
            merged=fresh_member(merged.pk),
            actor=User.objects.get(pk=staff.pk),
            reason="same person",
        )

    # When the repeated merge and then the refund queue behind the burn...
    pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="lock-order")
    burn_f = pool.submit(_own_connection(slow_burn))
    assert burn_written.wait(RACE_TIMEOUT)
    again_f = pool.submit(_own_connection(merge_again))
    _wait_for_lock_waits(1, seconds=5.0)
    refund_f = pool.submit(_own_connection(reverse_call(original.pk)))
    _wait_for_lock_waits(2, seconds=5.0)
    # ... and the burn commits
    burn_may_commit.set()
    _, not_done = wait([burn_f, again_f, refund_f], timeout=RACE_TIMEOUT)
    pool.shutdown(wait=not not_done)
    assert not not_done, "threads still waiting: deadlock"

    # Then nobody was a deadlock victim: the refund posted on the survivor, the repeated merge
    # was refused, and the burn went through
    burn_f.result()
    refund_f.result()  # a deadlock victim raises OperationalError here
    with pytest.raises(MemberNotFound):
        again_f.result()  # ... or here
    assert member_balances(merged).balance == 0
    assert member_balances(survivor).balance == 100 + 50 - 10 - 50
    assert_clean(coalition)


def _wait_for_a_lock_wait(*, seconds: float) -> None:
    _wait_for_lock_waits(1, seconds=seconds)


def _wait_for_lock_waits(count: int, *, seconds: float) -> None:
    """Wait until `count` backends of this database are blocked on a lock (or `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = cursor.fetchone()
        if row and row[0] >= count:
            return
        time.sleep(0.02)
