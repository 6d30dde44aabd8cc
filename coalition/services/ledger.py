"""The posting core: balanced journals, cached member balances, and lots kept in step.

Every function here expects to run inside the caller's `transaction.atomic()` with the member's
accounts already locked by `member_accounts_lock` — that lock is what serialises every change to
one member's points, and with them the member's lots.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import F, Q, Sum

from coalition.errors import LedgerConflict, MemberNotFound
from coalition.models import (
    MEMBER_KINDS_SET,
    Account,
    AccountKind,
    Coalition,
    Entry,
    ExpiryPolicy,
    Journal,
    Lot,
)
from coalition.models import LotConsumption as Consumption
from coalition.money import money_round
from coalition.rows import fetch_all, fetch_one, instance, select_list
from coalition.services.programme import add_months
from members.models import Member, MemberStatus

MemberId = UUID | str


@dataclass(frozen=True)
class Leg:
    """One entry to write: `points` and `value` are signed."""

    account: Account
    points: int
    value: Decimal


@dataclass
class MemberAccounts:
    """A member's two accounts, locked for the current transaction."""

    points: Account
    pending: Account


def member_accounts_lock(*member_ids: MemberId) -> dict[MemberId, MemberAccounts]:
    """Lock the points and pending accounts of the given members, in primary-key order.

    Locking every account in one statement ordered by pk means two transactions that touch the
    same members (a merge and a burn, say) always queue in the same order and cannot deadlock.
    """
    # Written out (`coalition.rows`): every posting starts with this statement.
    accounts = [
        instance(Account, row)
        for row in fetch_all(
            f"SELECT {select_list(Account, 'a')} FROM coalition_account a "  # noqa: S608
            "WHERE a.member_id = ANY(%s::uuid[]) AND a.kind = ANY(%s) ORDER BY a.id FOR UPDATE",
            [[str(member_id) for member_id in member_ids], sorted(MEMBER_KINDS_SET)],
        )
    ]
    found: dict[MemberId, dict[str, Account]] = {}
    for account in accounts:
        if account.member_id is not None:
            found.setdefault(account.member_id, {})[account.kind] = account
    result = {}
    for member_id in member_ids:
        kinds = found.get(member_id, {})
        if len(kinds) != 2:
            raise LedgerConflict(f"Member {member_id} has no ledger accounts.")
        result[member_id] = MemberAccounts(
            points=kinds[AccountKind.MEMBER_POINTS], pending=kinds[AccountKind.MEMBER_PENDING]
        )
    return result


def coalition_account(coalition_id: int, kind: AccountKind) -> Account:
    row = fetch_one(
        f"SELECT {select_list(Account, 'a')} FROM coalition_account a "  # noqa: S608
        "WHERE a.coalition_id = %s AND a.kind = %s AND a.member_id IS NULL "
        "AND a.tenant_id IS NULL",
        [coalition_id, kind],
    )
    if row is not None:
        return instance(Account, row)
    account, _ = Account.objects.get_or_create(
        coalition_id=coalition_id, kind=kind, member=None, tenant=None
    )
    return account


def tenant_account(coalition_id: int, tenant_id: int, kind: AccountKind) -> Account:
    row = fetch_one(
        f"SELECT {select_list(Account, 'a')} FROM coalition_account a "  # noqa: S608
        "WHERE a.coalition_id = %s AND a.tenant_id = %s AND a.kind = %s",
        [coalition_id, tenant_id, kind],
    )
    if row is not None:
        return instance(Account, row)
    account, _ = Account.objects.get_or_create(
        coalition_id=coalition_id, tenant_id=tenant_id, kind=kind
    )
    return account


def journal_at_nominal(
    *, coalition: Coalition, kind: str, points: int, at: datetime, **fields: Any
) -> Journal:
    """An unsaved journal of `points` valued at the coalition's nominal point value now.

    For postings that are not a purchase (adjustments, releases, expiries, merges): occurred and
    posted at `at` unless `fields` says otherwise.
    """
    nominal = coalition.point_value
    fields.setdefault("occurred_at", at)
    fields.setdefault("posted_at", at)
    return Journal(
        coalition=coalition,
        kind=kind,
        points=points,
        value=money_round(points * nominal),
        point_value=nominal,
        **fields,
    )


def journal_post(journal: Journal, legs: Sequence[Leg]) -> Journal:
    """Write a journal and its entries, and move the cached member balances.

    Refuses an unbalanced journal. Legs with zero points and zero value are dropped; a journal
    may have no entries at all (a purchase worth no points is still a visit).
    """
    legs = [leg for leg in legs if leg.points or leg.value]
    if sum(leg.points for leg in legs) != 0 or sum((leg.value for leg in legs), Decimal(0)) != 0:
        raise ValueError(f"Unbalanced journal {journal.kind}: {legs!r}")
    journal.save(force_insert=True)
    entries = []
    for leg in legs:
        account = leg.account
        if account.kind in MEMBER_KINDS_SET:
            before = account.balance
            after = before + leg.points
            # Guarded update: the row is locked, so this matches unless the lock was skipped.
            updated = Account.objects.filter(pk=account.pk, balance=before).update(
                balance=F("balance") + leg.points
            )
            if updated != 1:
                raise LedgerConflict(f"Account {account.pk} moved under its lock.")
            account.balance = after
            entries.append(
                Entry(
                    journal=journal,
                    account=account,
                    points=leg.points,
                    value=leg.value,
                    balance_before=before,
                    balance_after=after,
                )
            )
        else:
            entries.append(
                Entry(journal=journal, account=account, points=leg.points, value=leg.value)
            )
    Entry.objects.bulk_create(entries)
    return journal


def open_lots(member_id: MemberId, *, pending: bool = False) -> list[Lot]:
    """The member's lots with points left, oldest expiry first (no expiry last), then oldest."""
    return list(
        Lot.objects.filter(
            member_id=member_id, remaining__gt=0, pending_until__isnull=not pending
        ).order_by(F("expires_on").asc(nulls_last=True), "id")
    )


def lots_consume(lots: Iterable[Lot], points: int, journal: Journal) -> int:
    """Take up to `points` from `lots` in the order given; returns how many were taken."""
    taken = 0
    changed: list[Lot] = []
    records: list[Consumption] = []
    for lot in lots:
        if taken >= points:
            break
        take = min(lot.remaining, points - taken)
        if take <= 0:
            continue
        lot.remaining -= take
        taken += take
        changed.append(lot)
        records.append(Consumption(lot=lot, journal=journal, points=take))
    if changed:
        Lot.objects.bulk_update(changed, ["remaining"])
        Consumption.objects.bulk_create(records)
    return taken


def lots_fit(member_id: MemberId, balance: int, journal: Journal) -> None:
    """Consume spendable lots FIFO until they hold exactly max(balance, 0).

    Used after a change that moved lots and balance separately (a merge, a release onto a
    negative balance), so the invariant `lots remaining == positive balance` holds again.
    """
    lots = open_lots(member_id)
    excess = sum(lot.remaining for lot in lots) - max(balance, 0)
    if excess > 0:
        lots_consume(lots, excess, journal)


def lot_create(
    *,
    journal: Journal,
    member_id: MemberId,
    points: int,
    funding_tenant_id: int | None,
    expires_on: date | None,
    pending_until: datetime | None = None,
) -> Lot | None:
    if points <= 0:
        return None
    return Lot.objects.create(
        coalition_id=journal.coalition_id,
        member_id=member_id,
        journal=journal,
        funding_tenant_id=funding_tenant_id,
        points=points,
        remaining=points,
        earned_at=journal.occurred_at,
        expires_on=expires_on,
        pending_until=pending_until,
    )


def open_points(member_id: MemberId) -> int:
    total = Lot.objects.filter(
        member_id=member_id, remaining__gt=0, pending_until__isnull=True
    ).aggregate(total=Sum("remaining"))["total"]
    return int(total or 0)


def consumed_by(journal: Journal) -> dict[int, int]:
    """Points each lot still owes back to `journal` (its consumptions net of restores)."""
    rows = (
        Consumption.objects.filter(Q(journal=journal) | Q(journal__reverses=journal))
        .values("lot_id")
        .annotate(net=Sum("points"))
    )
    return {row["lot_id"]: int(row["net"]) for row in rows if row["net"] > 0}


@dataclass(frozen=True)
class Posting:
    """What a points service returns: the journal and the member's balances after it."""

    journal: Journal
    balance: int
    pending: int


def member_lock_active(member: Member) -> MemberAccounts:
    """Lock an active member's accounts; MemberNotFound if it was merged away or erased."""
    accounts = member_accounts_lock(member.pk)[member.pk]
    # Re-read the status under the lock, in its own statement: a merge or an erasure may have
    # committed while we waited, and a status joined into the locking query would be the
    # version from before the wait (PostgreSQL re-fetches only the rows it locks).
    row = fetch_one("SELECT status FROM members_member WHERE id = %s", [member.pk])
    if row is None or row[0] != MemberStatus.ACTIVE:
        raise MemberNotFound("This member is not enrolled.")
    return accounts


def lots_slide(member: Member, coalition: Coalition, today: date) -> None:
    """Sliding expiry: any activity moves every open lot's expiry N months from today."""
    if coalition.expiry_policy == ExpiryPolicy.SLIDING:
        new_date = add_months(today, coalition.expiry_months) - timedelta(days=1)
        Lot.objects.filter(member=member, remaining__gt=0).update(expires_on=new_date)
