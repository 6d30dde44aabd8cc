"""A small in-memory model of a member's points, written from domain.md, for the stateful test.

It knows nothing of journals or SQL: members have a spendable balance (which a refund may take
below zero), lots hold the positive part of that balance oldest-expiry-first, and each rule of
the domain is a few lines of arithmetic. It predicts refusals by raising `Refusal` with the
domain error the service must raise; a refused operation changes nothing.

Defaults of `coalition_create`: 1 point per 100.00, lots expire 12 months after the earn date
(the last day is the day before the anniversary), dates in the coalition's time zone.

Where domain.md leaves a choice open, the model follows the one the services document: a refund
takes from the earn's own lot first, then oldest-expiry-first; a burn reversal gives points back
to the lots the burn took them from, latest expiry first.
"""

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

from coalition.errors import (
    AlreadyReversed,
    DomainError,
    DuplicateReceipt,
    InsufficientPoints,
    InvalidRequest,
    MemberNotFound,
    TransactionNotFound,
)

EARN_BLOCK = Decimal("100.00")
POINTS_PER_BLOCK = 1
EXPIRY_MONTHS = 12
ZONE = ZoneInfo("Asia/Kolkata")


class Refusal(Exception):
    """The model predicts that the service refuses with `error`."""

    def __init__(self, error: type[DomainError]) -> None:
        super().__init__(error.__name__)
        self.error = error


# Tenant 0 runs a 1.5x multiplier throughout: it adds floor(base x 0.5), funded by the tenant
# and held in the earn's one lot (domain.md's rounding; refunds keep what the rest earns).
MULTIPLIERS = {0: Decimal("1.50")}


def earn_points(amount: Decimal, tenant: int | None = None) -> int:
    base = int(amount // EARN_BLOCK) * POINTS_PER_BLOCK if amount > 0 else 0
    multiplier = MULTIPLIERS.get(tenant) if tenant is not None else None
    return base + (int(base * (multiplier - 1)) if multiplier else 0)


def local_date(moment: datetime) -> date:
    return moment.astimezone(ZONE).date()


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def last_day(earned_on: date) -> date:
    """The last day points earned on `earned_on` can be spent (fixed 12-month term)."""
    return add_months(earned_on, EXPIRY_MONTHS) - timedelta(days=1)


@dataclass
class MLot:
    key: int  # the credit (earn or adjustment) it came from
    order: int  # creation order: ties on the expiry date go to the older lot
    member: UUID
    expires_on: date
    points: int
    remaining: int
    expired: int = 0


@dataclass
class MMember:
    key: UUID
    balance: int = 0
    merged_into: UUID | None = None


@dataclass
class MEarn:
    key: int
    member: UUID  # who earned it (they may have been merged away since)
    tenant: int
    amount: Decimal
    points: int
    refunded: Decimal = Decimal("0.00")
    reversed: int = 0
    from_breakage: int = 0  # expired points of its lot that refunds took back from breakage


@dataclass
class MBurn:
    key: int
    member: UUID
    tenant: int
    points: int
    reversed: int = 0
    owed: dict[int, int] = field(default_factory=dict)  # lot key -> points still owed back


class LedgerModel:
    def __init__(self) -> None:
        self.members: dict[UUID, MMember] = {}
        self.lots: dict[int, MLot] = {}
        self.earns: dict[int, MEarn] = {}
        self.burns: dict[int, MBurn] = {}
        self._order = 0

    # --- reading -------------------------------------------------------------------------

    def balance(self, member: UUID) -> int:
        return self.members[member].balance

    def survivor(self, member: UUID) -> MMember:
        found = self.members[member]
        while found.merged_into is not None:
            found = self.members[found.merged_into]
        return found

    def _active(self, member: UUID) -> MMember:
        found = self.members[member]
        if found.merged_into is not None:
            raise Refusal(MemberNotFound)
        return found

    def open_lots(self, member: UUID) -> list[MLot]:
        """Spendable lots with points left, oldest expiry first, then oldest."""
        lots = [lot for lot in self.lots.values() if lot.member == member and lot.remaining > 0]
        return sorted(lots, key=lambda lot: (lot.expires_on, lot.order))

    # --- lots ----------------------------------------------------------------------------

    def _new_lot(self, key: int, member: UUID, points: int, earned_on: date) -> None:
        if points > 0:
            self._order += 1
            self.lots[key] = MLot(key, self._order, member, last_day(earned_on), points, points)

    @staticmethod
    def _take(lots: list[MLot], points: int) -> dict[int, int]:
        taken: dict[int, int] = {}
        for lot in lots:
            if points <= 0:
                break
            take = min(lot.remaining, points)
            if take > 0:
                lot.remaining -= take
                points -= take
                taken[lot.key] = take
        return taken

    def _credit(self, member: MMember, points: int, key: int, earned_on: date) -> None:
        """A credit repays a negative balance first; only the rest becomes a new lot."""
        before = member.balance
        member.balance += points
        self._new_lot(key, member.key, max(member.balance, 0) - max(before, 0), earned_on)

    # --- operations (each raises Refusal before changing anything) -------------------------

    def enrol(self, member: UUID) -> None:
        self.members[member] = MMember(member)

    def earn(
        self, *, member: UUID, tenant: int, amount: Decimal, now: datetime, key: int | None
    ) -> int:
        if amount <= 0:
            raise Refusal(InvalidRequest)
        found = self._active(member)
        points = earn_points(amount, tenant)
        assert key is not None
        self._credit(found, points, key, local_date(now))
        self.earns[key] = MEarn(key, member, tenant, amount, points)
        return points

    def earn_again(self, *, earn: int) -> None:
        """The same receipt posted again at the same store."""
        self._active(self.earns[earn].member)
        raise Refusal(DuplicateReceipt)

    def burn(self, *, member: UUID, tenant: int, points: int, key: int | None) -> None:
        found = self._active(member)
        if found.balance < points:
            raise Refusal(InsufficientPoints)
        assert key is not None
        found.balance -= points
        owed = self._take(self.open_lots(member), points)
        self.burns[key] = MBurn(key, member, tenant, points, owed=owed)

    def reverse_earn(self, *, earn: int, tenant: int, amount: Decimal | None) -> int:
        """A refund reverses the original points less what the unrefunded rest still earns."""
        original = self.earns[earn]
        if tenant != original.tenant:
            raise Refusal(TransactionNotFound)
        unrefunded = original.amount - original.refunded
        refund = unrefunded if amount is None else amount
        if amount is not None and amount <= 0:
            raise Refusal(InvalidRequest)
        if unrefunded <= 0 or refund > unrefunded:
            raise Refusal(AlreadyReversed)
        total_reversed = original.points - earn_points(unrefunded - refund, original.tenant)
        points = max(total_reversed - original.reversed, 0)
        member = self.survivor(original.member)
        own = self.lots.get(earn)
        from_own = min(points, own.remaining if own else 0)
        # What of its lot already expired comes back from breakage, not from the member again.
        expired_left = (own.expired if own else 0) - original.from_breakage
        from_breakage = max(min(points - from_own, expired_left), 0)
        member.balance -= points - from_breakage
        # The earn's own lot first, then the oldest others; what no lot covers goes negative.
        mine = [own] if own is not None and own.remaining > 0 else []
        others = [lot for lot in self.open_lots(member.key) if lot.key != earn]
        self._take(mine + others, points - from_breakage)
        original.from_breakage += from_breakage
        original.refunded += refund
        original.reversed += points
        return points

    def reverse_burn(self, *, burn: int, tenant: int, points: int | None) -> int:
        """Points go back to the lots the burn took them from, once any negative is repaid."""
        original = self.burns[burn]
        if tenant != original.tenant:
            raise Refusal(TransactionNotFound)
        left = original.points - original.reversed
        wanted = left if points is None else points
        if wanted <= 0 and points is not None:
            raise Refusal(InvalidRequest)
        if left <= 0 or wanted > left:
            raise Refusal(AlreadyReversed)
        member = self.survivor(original.member)
        before = member.balance
        member.balance += wanted
        restore = max(member.balance, 0) - max(before, 0)
        owed = [self.lots[key] for key, points_owed in original.owed.items() if points_owed > 0]
        for lot in sorted(owed, key=lambda lot: (lot.expires_on, lot.order), reverse=True):
            if restore <= 0:
                break
            give = min(original.owed[lot.key], restore)
            lot.remaining += give
            lot.member = member.key
            original.owed[lot.key] -= give
            restore -= give
        original.reversed += wanted
        return wanted

    def adjust(self, *, member: UUID, points: int, now: datetime, key: int | None) -> None:
        found = self._active(member)
        if points < 0 and found.balance < -points:
            raise Refusal(InsufficientPoints)
        assert key is not None
        if points > 0:
            self._credit(found, points, key, local_date(now))
        else:
            found.balance += points
            self._take(self.open_lots(member), -points)

    def expire(self, *, now: datetime) -> int:
        """Every lot past its last day loses what it has left."""
        today = local_date(now)
        total = 0
        for lot in self.lots.values():
            if lot.remaining > 0 and lot.expires_on < today:
                self.members[lot.member].balance -= lot.remaining
                total += lot.remaining
                lot.expired += lot.remaining
                lot.remaining = 0
        return total

    def merge(self, *, survivor: UUID, merged: UUID) -> int:
        """The whole balance (even a negative one) and every lot move to the survivor."""
        if survivor == merged:
            raise Refusal(InvalidRequest)
        keep, gone = self._active(survivor), self._active(merged)
        moved = gone.balance
        keep.balance += moved
        gone.balance = 0
        gone.merged_into = survivor
        for lot in self.lots.values():
            if lot.member == merged:
                lot.member = survivor
        # A negative side eats into the other's lots: they must hold the positive balance only.
        lots = self.open_lots(survivor)
        self._take(lots, sum(lot.remaining for lot in lots) - max(keep.balance, 0))
        return moved
