"""Random sequences of everything that moves points, checked against an in-memory model.

Hypothesis drives enrolments, earns, burns, refunds (full and partial), burn reversals (full and
partial), small staff adjustments, expiry sweeps on a simulated clock, and merges. After every
step each member's spendable balance and each lot agree with `tests/ledger_model.py`, and
`ledger_verify` finds nothing wrong. Refusals are part of the contract: the model predicts the
domain error, and the service must raise exactly that one and change nothing.

Each example runs in its own savepoint inside the pytest-django test transaction and is rolled
back in `teardown`, so examples never see each other's rows. `run_state_machine_as_test` runs
the machine inside the test (rather than exposing `LedgerMachine.TestCase`), so the pytest-django
database fixture wraps the whole run.
"""

import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar
from uuid import UUID

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from coalition.errors import DomainError
from coalition.models import Account, AccountKind, Campaign, CampaignKind, Journal, Lot
from coalition.selectors import ledger_verify
from coalition.services import (
    Posting,
    lots_expire,
    points_adjust,
    points_burn,
    points_earn,
    points_reverse,
)
from coalition.services.notices import expiry_notices_queue
from coalition.tests.factories import CoalitionFactory
from members.models import Member
from members.services import members_merge
from members.tests.factories import MemberFactory
from tenants.models import Till
from tenants.tests.factories import TenantFactory, TillFactory
from tests.ledger_model import MULTIPLIERS, ZONE, LedgerModel, Refusal, add_months

T = TypeVar("T")

# 02:00 in Kolkata is 20:30 UTC the day before: a service that used the UTC date would be a
# day off on every expiry date.
START = datetime(2023, 1, 30, 20, 30, tzinfo=UTC)
EARN_MODES = ["full", "part", "part", "too_much", "wrong_tenant"]
BURN_MODES = ["full", "part", "part", "wrong_tenant"]
# Purchases up to ₹15,099.99 in paise: whole hundreds (the points) plus a remainder that must
# round down; both parts drawn evenly so that most purchases earn something.
PAISE = st.builds(
    lambda hundreds, rest: hundreds * 10_000 + rest, st.integers(0, 150), st.integers(0, 9_999)
)
RARELY = st.sampled_from([False, False, False, False, True])
CARD = st.sampled_from([True, True, True, False])  # mostly found by card, sometimes a stale record


class LedgerMachine(RuleBasedStateMachine):
    members = Bundle("members")

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.clock = START
        self.receipts = itertools.count(1)
        self.coalition = CoalitionFactory.create(expiry_notice_days=0)
        self.tills: list[Till] = [
            TillFactory.create(tenant=TenantFactory.create(coalition=self.coalition))
            for _ in range(2)
        ]
        self.staff = User.objects.create_user("maker", password="x", is_staff=True)
        Campaign.objects.create(
            coalition=self.coalition,
            name="1.5x at tenant 0",
            kind=CampaignKind.MULTIPLIER,
            tenant=self.tills[0].tenant,
            multiplier=MULTIPLIERS[0],
            starts_on=START.date() - timedelta(days=1),
            ends_on=START.date() + timedelta(days=36500),  # beyond any clock the sweeps reach
        )
        self.model = LedgerModel()
        self.threshold = self.coalition.adjustment_approval_threshold
        self.merges = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- the comparison ------------------------------------------------------------------

    def outcome(
        self, label: str, service: Callable[[], T], model: Callable[[T | None], Any]
    ) -> tuple[T, Any] | None:
        """Run the service, then ask the model; both must agree on success or on the refusal.

        The model is told the service's result (for the journal id that names a new lot) but
        decides refusals before it looks at it.
        """
        journals = Journal.objects.filter(coalition=self.coalition).count()
        try:
            result: T | None = service()
            refused: DomainError | None = None
        except DomainError as exc:
            result, refused = None, exc
            assert Journal.objects.filter(coalition=self.coalition).count() == journals
        event(f"{label}: {type(refused).__name__ if refused else 'posted'}")
        try:
            predicted = model(result)
        except Refusal as refusal:
            assert type(refused) is refusal.error, (
                f"expected {refusal.error.__name__}, the service gave {result or refused!r}"
            )
            return None
        assert refused is None, f"the model expected success, the service refused: {refused!r}"
        assert result is not None
        return result, predicted

    def member(self, pk: UUID) -> Member:
        return Member.objects.select_related("coalition").get(pk=pk)

    def receipt(self) -> str:
        return f"R{next(self.receipts)}"

    def found(self, member: UUID, by_card: bool) -> UUID:
        """A till finds a member by card, which follows a merge; staff may hold an old record."""
        return self.model.survivor(member).key if by_card else member

    def someone(self, data: Any, member: UUID, where: Callable[[int], bool]) -> UUID:
        """`member`, or another active member whose balance fits `where` if any (so that the
        interesting cases, spending points and repaying a debt, come up often enough)."""
        fits = [
            key
            for key, m in self.model.members.items()
            if m.merged_into is None and where(m.balance)
        ]
        if where(self.model.balance(member)) or not fits:
            return member
        return data.draw(st.sampled_from(fits), label="instead")

    @staticmethod
    def pick(data: st.DataObject, keys: Iterable[int], what: str) -> int:
        # In creation order, never by id: ids differ from run to run, and Hypothesis must make
        # the same choice when it replays or shrinks an example.
        return data.draw(st.sampled_from(list(keys)), label=what)

    def assert_posting(self, posting: Posting, member: UUID) -> None:
        assert posting.balance == self.model.survivor(member).balance

    # --- rules ---------------------------------------------------------------------------

    @initialize(
        target=members, paise=st.lists(PAISE, min_size=2, max_size=4), in_debt=st.booleans()
    )
    def two_members_who_shop(self, paise: list[int], in_debt: bool) -> Any:
        """Two shoppers with a few purchases; the second, perhaps, spent everything and then
        returned a purchase, so that they start in debt."""
        first, second = self._enrol(), self._enrol()
        for i, amount in enumerate(paise):
            self._earn(first if i % 2 == 0 else second, i % 2, amount)
        if in_debt and self.model.balance(second) > 0:
            self._burn(second, 0, self.model.balance(second))
            self._refund(
                next(k for k, e in self.model.earns.items() if e.member == second), 1, None
            )
        return multiple(first, second)

    @precondition(lambda self: len(self.model.members) < 6)
    @rule(target=members)
    def enrol(self) -> Any:
        return self._enrol()

    def _enrol(self) -> UUID:
        pk = MemberFactory.create(coalition=self.coalition, now=self.clock).pk
        self.model.enrol(pk)
        return pk

    @rule(
        member=members,
        by_card=CARD,
        till=st.integers(0, 1),
        paise=PAISE,
        repeat=RARELY,
        in_debt=st.booleans(),
        data=st.data(),
    )
    def earn(
        self,
        member: UUID,
        by_card: bool,
        till: int,
        paise: int,
        repeat: bool,
        in_debt: bool,
        data: Any,
    ) -> None:
        """An earn, sometimes by a member in debt (after a refund), sometimes a repeat."""
        if repeat and self.model.earns:
            self._earn_again(self.pick(data, self.model.earns, "earn to post again"))
        elif in_debt:
            self._earn(self.someone(data, member, lambda balance: balance < 0), till, paise)
        else:
            self._earn(self.found(member, by_card), till, paise)

    def _earn(self, member: UUID, till: int, paise: int) -> None:
        amount = Decimal(paise) / 100
        before = self.model.balance(member)
        done = self.outcome(
            "earn",
            lambda: points_earn(
                till=self.tills[till],
                member=self.member(member),
                amount=amount,
                receipt=self.receipt(),
                currency="INR",
                occurred_at=self.clock,
                now=self.clock,
            ),
            lambda posting: self.model.earn(
                member=member,
                tenant=till,
                amount=amount,
                now=self.clock,
                key=posting.journal.pk if posting else None,
            ),
        )
        if done is not None:
            posting, points = done
            assert posting.journal.points == points
            self.assert_posting(posting, member)
            if before < 0 < points:
                event("earn: repaid a negative balance first")

    def _earn_again(self, earn: int) -> None:
        """A till posts a receipt its store already posted (a retry after a lost response)."""
        original = Journal.objects.get(pk=earn)
        member, till = original.member_id, original.till_id
        assert member is not None and till is not None
        self.outcome(
            "earn again",
            lambda: points_earn(
                till=Till.objects.get(pk=till),
                member=self.member(member),
                amount=Decimal("500.00"),
                receipt=original.receipt,
                occurred_at=self.clock,
                now=self.clock,
            ),
            lambda _: self.model.earn_again(earn=earn),
        )

    @rule(
        member=members,
        by_card=CARD,
        till=st.integers(0, 1),
        mode=st.sampled_from(["share", "share", "everything", "one_too_many"]),
        percent=st.integers(1, 100),
        data=st.data(),
    )
    def burn(
        self, member: UUID, by_card: bool, till: int, mode: str, percent: int, data: Any
    ) -> None:
        """A burn of part of the balance, all of it, or one point more than it."""
        member = self.found(member, by_card)
        if by_card:
            member = self.someone(data, member, lambda balance: balance > 0)
        balance = self.model.balance(member)
        points = {
            "share": max(balance * percent // 100, 1),
            "everything": max(balance, 1),  # the exact balance: the edge of the rule
            "one_too_many": max(balance + 1, 1),
        }[mode]
        self._burn(member, till, points)

    def _burn(self, member: UUID, till: int, points: int) -> None:
        done = self.outcome(
            "burn",
            lambda: points_burn(
                till=self.tills[till],
                member=self.member(member),
                points=points,
                bill_amount=Decimal(points + 250),
                receipt=self.receipt(),
                occurred_at=self.clock,
                now=self.clock,
            ),
            lambda posting: self.model.burn(
                member=member,
                tenant=till,
                points=points,
                key=posting.journal.pk if posting else None,
            ),
        )
        if done is not None:
            posting, _ = done
            self.assert_posting(posting, member)

    @precondition(lambda self: self.model.earns)
    @rule(
        data=st.data(),
        mode=st.sampled_from(EARN_MODES),
        percent=st.integers(1, 99),
        after_spending=st.booleans(),
    )
    def refund(self, data: Any, mode: str, percent: int, after_spending: bool) -> None:
        """A full or partial refund, often of a purchase whose points were spent since."""
        spent = [
            key
            for key, e in self.model.earns.items()
            if e.points - e.reversed > 0 and self.model.survivor(e.member).balance < e.points
        ]
        choices = spent if after_spending and spent else self.model.earns
        earn = self.pick(data, choices, "earn to refund")
        m_earn = self.model.earns[earn]
        unrefunded = m_earn.amount - m_earn.refunded
        amount: Decimal | None = None
        if mode == "part":
            part = (unrefunded * percent / 100).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            amount = max(part, Decimal("0.01"))
        elif mode == "too_much":
            amount = unrefunded + Decimal("0.01")
        tenant = 1 - m_earn.tenant if mode == "wrong_tenant" else m_earn.tenant
        self._refund(earn, tenant, amount)

    def _refund(self, earn: int, tenant: int, amount: Decimal | None) -> None:
        m_earn = self.model.earns[earn]
        done = self.outcome(
            "refund",
            lambda: points_reverse(
                original=Journal.objects.get(pk=earn),
                tenant=self.tills[tenant].tenant,
                reason="refund",
                amount=amount,
                now=self.clock,
            ),
            lambda _: self.model.reverse_earn(earn=earn, tenant=tenant, amount=amount),
        )
        if done is not None:
            posting, points = done
            assert posting.journal.points == points
            self.assert_posting(posting, m_earn.member)
            if posting.balance < 0:
                event("refund: the balance went negative")

    @precondition(lambda self: self.model.burns)
    @rule(data=st.data(), mode=st.sampled_from(BURN_MODES), part=st.integers(1, 80))
    def reverse_burn(self, data: Any, mode: str, part: int) -> None:
        burn = self.pick(data, self.model.burns, "burn to reverse")
        m_burn = self.model.burns[burn]
        before = self.model.survivor(m_burn.member).balance
        points = part if mode == "part" else None
        tenant = 1 - m_burn.tenant if mode == "wrong_tenant" else m_burn.tenant
        done = self.outcome(
            "burn reversal",
            lambda: points_reverse(
                original=Journal.objects.get(pk=burn),
                tenant=self.tills[tenant].tenant,
                reason="bill cancelled",
                points=points,
                now=self.clock,
            ),
            lambda _: self.model.reverse_burn(burn=burn, tenant=tenant, points=points),
        )
        if done is not None:
            posting, reversed_points = done
            assert posting.journal.points == reversed_points
            self.assert_posting(posting, m_burn.member)
            if before < 0:
                event("burn reversal: repaid a negative balance first")
            if m_burn.member != self.model.survivor(m_burn.member).key:
                event("burn reversal: of a member merged away since")

    @rule(member=members, by_card=CARD, points=st.integers(-60, 60).filter(bool))
    def adjust(self, member: UUID, by_card: bool, points: int) -> None:
        member = self.found(member, by_card)
        assert abs(points) <= self.threshold  # below the maker-checker threshold: posted now
        done = self.outcome(
            "adjust",
            lambda: points_adjust(
                member=self.member(member),
                points=points,
                reason="goodwill",
                actor=self.staff,
                now=self.clock,
            ),
            lambda posting: self.model.adjust(
                member=member,
                points=points,
                now=self.clock,
                key=posting.journal.pk if isinstance(posting, Posting) else None,
            ),
        )
        if done is not None:
            posting, _ = done
            assert isinstance(posting, Posting)
            self.assert_posting(posting, member)

    @rule(
        to_the_edge=st.booleans(),
        months=st.integers(0, 13),
        days=st.integers(0, 40),
        hours=st.integers(0, 23),
        day_after=st.booleans(),
        late=st.booleans(),
    )
    def sweep(
        self, to_the_edge: bool, months: int, days: int, hours: int, day_after: bool, late: bool
    ) -> None:
        """Move the clock on and run the daily sweep.

        Either by months and days, or to the last day of the next lot to expire (or the day
        after), a minute from midnight in the coalition's zone: a lot lives through its last
        day and goes the next.
        """
        due = [lot.expires_on for lot in self.model.lots.values() if lot.remaining > 0]
        if to_the_edge and due:
            day = min(due) + timedelta(days=1 if day_after else 0)
            local = datetime.combine(day, time(23, 59) if late else time(0, 1), tzinfo=ZONE)
            self.clock = max(self.clock, local.astimezone(UTC))
        else:
            moved = add_months(self.clock.date(), months)
            self.clock = datetime.combine(moved, self.clock.timetz()) + timedelta(
                days=days, hours=hours
            )
        self._sweep()

    def _sweep(self) -> None:
        # Notices with a window of 0 days (set up in `__init__`): the model knows no notices.
        expiry_notices_queue(now=self.clock, coalition=self.coalition)
        expired = lots_expire(as_of=self.clock, coalition=self.coalition)
        assert expired == self.model.expire(now=self.clock)
        event(f"sweep: {'expired points' if expired else 'nothing due'}")
        # Idempotent: a second run the same day finds nothing left to expire.
        assert lots_expire(as_of=self.clock, coalition=self.coalition) == 0

    @precondition(lambda self: self.merges < 2)  # merges are rare: leave members to merge
    @rule(survivor=members, merged=members, stale=RARELY, data=st.data())
    def merge(self, survivor: UUID, merged: UUID, stale: bool, data: Any) -> None:
        """Staff merge two records: two active members found by card, or now and then stale
        records (the same member twice, or one merged away already)."""
        if not stale:
            survivor = self.found(survivor, by_card=True)
            others = [key for key in self.active() if key != survivor]
            if others:
                merged = data.draw(st.sampled_from(others), label="merged")
        self._merge(survivor, merged)

    @precondition(
        lambda self: (
            self.merges < 3
            and len(self.active()) >= 2
            and any(self.model.balance(key) < 0 for key in self.active())
        )
    )
    @rule(debtor_survives=st.booleans(), data=st.data())
    def merge_a_member_in_debt(self, debtor_survives: bool, data: Any) -> None:
        """A negative balance moves too: the combined lots must shrink to the combined balance."""
        active = self.active()
        debtor = data.draw(st.sampled_from([k for k in active if self.model.balance(k) < 0]))
        other = data.draw(st.sampled_from([k for k in active if k != debtor]))
        self._merge(*((debtor, other) if debtor_survives else (other, debtor)))

    def active(self) -> list[UUID]:
        return [key for key, m in self.model.members.items() if m.merged_into is None]

    def _merge(self, survivor: UUID, merged: UUID) -> None:
        done = self.outcome(
            "merge",
            lambda: members_merge(
                survivor=self.member(survivor),
                merged=self.member(merged),
                actor=self.staff,
                reason="one person, two cards",
                now=self.clock,
            ),
            lambda _: self.model.merge(survivor=survivor, merged=merged),
        )
        if done is not None:
            self.merges += 1
            record, moved = done
            assert record.points_moved == moved
            if moved < 0 or self.model.balance(survivor) - moved < 0:
                event("merge: one side was negative")

    # --- after every step ----------------------------------------------------------------

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        balances = dict(
            Account.objects.filter(
                coalition=self.coalition, kind=AccountKind.MEMBER_POINTS
            ).values_list("member_id", "balance")
        )
        assert balances == {key: m.balance for key, m in self.model.members.items()}
        if any(balance < 0 for balance in balances.values()):
            event("a member's balance is negative")
        lots = {
            journal: (member, remaining, points, expires_on)
            for journal, member, remaining, points, expires_on in Lot.objects.filter(
                coalition=self.coalition
            ).values_list("journal_id", "member_id", "remaining", "points", "expires_on")
        }
        assert lots == {
            key: (lot.member, lot.remaining, lot.points, lot.expires_on)
            for key, lot in self.model.lots.items()
        }

    @invariant()
    def ledger_is_clean(self) -> None:
        problems = ledger_verify(self.coalition)
        assert problems == [], "\n".join(map(str, problems))


@pytest.mark.django_db
# Passing takes about a minute; a failure is then shrunk for up to five more minutes (Hypothesis's
# own limit), which the default 300 s timeout would cut off before the sequence is printed.
@pytest.mark.timeout(600)
def test_ledger_against_the_model() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],  # every example sets up a mall
        ),
    )
