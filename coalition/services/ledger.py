"""The posting core: balanced journals, cached member balances, and lots kept in step.

Every function here expects to run inside the caller's `transaction.atomic()` with the member's
accounts already locked by `member_accounts_lock` — that lock is what serialises every change to
one member's points, and with them the member's lots.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import F, Q, Sum

from coalition.claims import PERIOD_LOCK_CLASS
from coalition.errors import DuplicateReceipt, LedgerConflict, MemberNotFound
from coalition.models import (
    MEMBER_KINDS_SET,
    Account,
    AccountKind,
    Campaign,
    Coalition,
    Entry,
    ExpiryPolicy,
    Journal,
    Lot,
)
from coalition.models import LotConsumption as Consumption
from coalition.money import money_round
from coalition.rows import (
    fetch_all,
    fetch_one,
    insert_from,
    insert_into,
    insert_values,
    instance,
    mark_saved,
    select_list,
    width,
)
from coalition.services.campaigns import campaigns_from_json, campaigns_running_sql
from coalition.services.programme import LotTerms
from members.models import Member, MemberStatus
from tenants.models import Tenant
from tenants.selectors import TENANT_RATE_SQL, rates_or_defaults

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
    """Lock the points and pending accounts of the given members (of one coalition), in
    primary-key order, after taking the coalition's period lock shared (`claims.py`).

    Locking every account in one statement ordered by pk means two transactions that touch the
    same members (a merge and a burn, say) always queue in the same order and cannot deadlock.
    """
    # Written out (`coalition.rows`): every posting starts with this statement.
    ids = [str(member_id) for member_id in member_ids]
    accounts = [
        instance(Account, row)
        for row in fetch_all(
            f"SELECT {select_list(Account, 'a')} FROM coalition_account a "  # noqa: S608
            # First (a one-time filter, before any row is locked), the coalition's period lock,
            # shared: the close's freeze waits for this posting, and this posting never holds a
            # row lock while it queues behind a freeze (no deadlock).
            "WHERE (SELECT true FROM pg_advisory_xact_lock_shared(%s, (SELECT m.coalition_id "
            "FROM members_member m WHERE m.id = (%s::uuid[])[1])::integer)) "
            "AND a.member_id = ANY(%s::uuid[]) AND a.kind = ANY(%s) ORDER BY a.id FOR UPDATE",
            [PERIOD_LOCK_CLASS, ids, ids, sorted(MEMBER_KINDS_SET)],
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


@transaction.atomic
def ledger_freeze(coalition_id: int, through: datetime) -> None:
    """From now on, post nothing of this coalition before `through` (the end of a month being
    closed). Takes the coalition's period lock exclusively: it waits for every posting in flight
    (each holds it shared, `member_accounts_lock`) to commit, so each of them lands wholly before
    the freeze, and every posting after it reads the new `closed_through` (`journal_post`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PERIOD_LOCK_CLASS, coalition_id])
    Coalition.objects.filter(pk=coalition_id).filter(
        Q(closed_through__isnull=True) | Q(closed_through__lt=through)
    ).update(closed_through=through)


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


# The receipt's unique index as the conflict target: a second earn (or burn) of one receipt by
# one store inserts nothing, and the statement says so, without an error that would need a
# savepoint to survive. The predicate must imply the index's (`Journal.Meta.constraints`); a
# lookup repeats it literally too, or a prepared statement's generic plan, which cannot see that
# a parameter is 'burn', scans every journal of the store instead of using the index.
# A journal is never posted into a closed month: its posting time is at least the end of the
# last closed one (`Coalition.closed_through`), read after the period lock was taken shared.
_POSTED_AFTER_CUT = (("posted_at", "GREATEST(%s::timestamptz, (SELECT closed_through FROM cut))"),)
_RECEIPT_INDEX_PREDICATE = "kind IN ('earn', 'burn') AND NOT receipt = ''"
_RECEIPT_CONFLICT = (
    f"ON CONFLICT (store_id, kind, receipt) WHERE {_RECEIPT_INDEX_PREDICATE} DO NOTHING"
)


@cache
def _journal_post_sql(with_lot: bool) -> str:
    """One statement: the journal (posted no earlier than the last close's cut), the guarded
    balance updates, the entries and (`with_lot`) the lot the journal creates.

    `moves` are the member accounts to update, each with the balance it must still have (it is
    locked, so it has — unless the lock was skipped).
    """
    entry = Entry._meta.db_table
    account = Account._meta.db_table
    lot = insert_from(Lot, "j", "journal_id", "j.id") if with_lot else "SELECT NULL::bigint"
    return f"""
        WITH cut AS (SELECT closed_through FROM {Coalition._meta.db_table} WHERE id = %s),
        j AS (
            {insert_into(Journal, _POSTED_AFTER_CUT)} {_RECEIPT_CONFLICT}
            RETURNING id, posted_at
        ),
        moves AS (
            SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[])
                AS m(account_id, before, delta)
        ),
        moved AS (
            UPDATE {account} a SET balance = a.balance + m.delta FROM moves m, j
            WHERE a.id = m.account_id AND a.balance = m.before RETURNING a.id
        ),
        entries AS (
            INSERT INTO {entry} (journal_id, account_id, points, value, balance_before,
                balance_after, digest)
            SELECT j.id, l.account_id, l.points, l.value, l.before, l.after, ''
            FROM j, unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::bigint[], %s::bigint[])
                AS l(account_id, points, value, before, after)
        ),
        lot AS ({lot}{" RETURNING id" if with_lot else ""})
        SELECT (SELECT id FROM j), (SELECT posted_at FROM j), (SELECT count(*) FROM moved),
            (SELECT * FROM lot)
    """  # noqa: S608 (table and column names from model metadata, never from input)


def journal_post(journal: Journal, legs: Sequence[Leg], lot: Lot | None = None) -> Journal:
    """Write a journal, its entries and the lot it credits (if any, from `lot_new`), and move
    the cached member balances, in one statement.

    Refuses an unbalanced journal. Legs with zero points and zero value are dropped; a journal
    may have no entries at all (a purchase worth no points is still a visit). An earn or burn
    whose receipt this store already posted writes nothing and raises DuplicateReceipt — the
    receipt's unique index decides, so two tills racing with one receipt cannot both post.
    """
    legs = [leg for leg in legs if leg.points or leg.value]
    if sum(leg.points for leg in legs) != 0 or sum((leg.value for leg in legs), Decimal(0)) != 0:
        raise ValueError(f"Unbalanced journal {journal.kind}: {legs!r}")
    entries: tuple[list[Any], ...] = ([], [], [], [], [])
    moves: dict[int, list[int]] = {}  # account id -> [balance before, delta]
    for leg in legs:
        account = leg.account
        before = after = None
        if account.kind in MEMBER_KINDS_SET:
            move = moves.setdefault(account.pk, [account.balance, 0])
            before = move[0] + move[1]  # a second leg on one account follows the first
            after = before + leg.points
            move[1] += leg.points
        for column, value in zip(
            entries, (account.pk, leg.points, leg.value, before, after), strict=True
        ):
            column.append(value)
    move_columns = (list(moves), [m[0] for m in moves.values()], [m[1] for m in moves.values()])
    lot_values = insert_values(lot, skip="journal_id") if lot is not None else []
    with connection.cursor() as cursor:
        cursor.execute(
            _journal_post_sql(lot is not None),
            [journal.coalition_id, *insert_values(journal), *move_columns, *entries, *lot_values],
        )
        journal_id, posted_at, moved, lot_id = cursor.fetchone()
    if journal_id is None:
        raise DuplicateReceipt(
            f"Receipt {journal.receipt!r} was already posted as {journal.kind} by this store."
        )
    if moved != len(moves):
        raise LedgerConflict("A member account moved under its lock.")
    mark_saved(journal, journal_id)
    journal.posted_at = posted_at  # moved into the open period if its own fell in a closed one
    if lot is not None:
        lot.journal = journal
        mark_saved(lot, lot_id)
    for leg in legs:  # the callers' view of the balances, as the database now has them
        if leg.account.pk in moves:
            leg.account.balance = sum(moves[leg.account.pk])
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


@cache
def _lots_consume_fifo_sql() -> str:
    lot = Lot._meta.db_table
    consumption = Consumption._meta.db_table
    return f"""
        WITH open AS (
            SELECT id, remaining,
                sum(remaining) OVER (ORDER BY expires_on ASC NULLS LAST, id) - remaining AS ahead
            FROM {lot}
            WHERE member_id = %(member)s::uuid AND remaining > 0 AND pending_until IS NULL
        ),
        taken AS (
            UPDATE {lot} l SET remaining = l.remaining - least(o.remaining, %(points)s - o.ahead)
            FROM open o
            WHERE l.id = o.id AND o.ahead < %(points)s AND l.remaining = o.remaining
            RETURNING l.id, least(o.remaining, %(points)s - o.ahead) AS points
        ),
        recorded AS (
            INSERT INTO {consumption} (lot_id, journal_id, points)
            SELECT id, %(journal)s, points FROM taken RETURNING points
        )
        SELECT coalesce(sum(points), 0) FROM recorded
    """  # noqa: S608 (table names from model metadata, never from input)


def lots_consume_fifo(member_id: MemberId, points: int, journal: Journal) -> int:
    """Take up to `points` from the member's spendable lots, oldest expiry first (no expiry
    last), then oldest; returns how many were taken. One statement, however many lots the member
    has: the running sum picks the lots, and each is updated only if it still holds what was
    read (it does, under the member's lock)."""
    if points <= 0:
        return 0
    row = fetch_one(
        _lots_consume_fifo_sql(), {"member": member_id, "points": points, "journal": journal.pk}
    )
    return int(row[0]) if row is not None else 0


def lots_fit(member_id: MemberId, balance: int, journal: Journal) -> None:
    """Consume spendable lots FIFO until they hold exactly max(balance, 0).

    Used after a change that moved lots and balance separately (a merge, a release onto a
    negative balance), so the invariant `lots remaining == positive balance` holds again.
    """
    excess = open_points(member_id) - max(balance, 0)
    if excess > 0:
        lots_consume_fifo(member_id, excess, journal)


def lot_new(
    *,
    journal: Journal,
    member_id: MemberId,
    points: int,
    funding_tenant_id: int | None,
    terms: LotTerms,
    pending_until: datetime | None = None,
) -> Lot | None:
    """The lot `journal` credits, unsaved (`journal_post` writes it with the journal); None
    for no points."""
    if points <= 0:
        return None
    return Lot(
        coalition_id=journal.coalition_id,
        member_id=member_id,
        journal_id=journal.pk,
        funding_tenant_id=funding_tenant_id,
        points=points,
        remaining=points,
        earned_at=journal.occurred_at,
        expires_on=terms.expires_on,
        slide_months=terms.slide_months,
        pending_until=pending_until,
    )


def lot_create(lot: Lot | None) -> Lot | None:
    """Write a lot from `lot_new` for a journal already posted (`journal_post` writes an earn's
    lot with its journal instead); None stays None."""
    if lot is None:
        return None
    row = fetch_one(f"{insert_into(Lot)} RETURNING id", insert_values(lot))
    assert row is not None
    return mark_saved(lot, row[0])


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


@dataclass(frozen=True)
class PostingLock:
    """An earn's or burn's member, locked, and what the posting reads once it holds the lock."""

    accounts: MemberAccounts
    price: Decimal  # per point issued, in force on the posting's day
    reimbursement: Decimal  # per point honoured
    tenant_account: Account
    house_account: Account
    receipt_posted: bool
    campaigns: list[Campaign]  # an earn's: those running at this tenant on the day
    # An earn's: the tenant's campaign account and the coalition's (None: not made yet).
    campaign_accounts: tuple[Account | None, Account | None] = (None, None)


@cache
def _posting_reads_sql(with_campaigns: bool) -> str:
    """With campaigns (an earn): also the campaigns running, and the two accounts that pay for
    campaign points (the tenant's, the coalition's), so pricing them costs no extra read."""
    member = Member._meta.db_table
    journal = Journal._meta.db_table
    account = Account._meta.db_table
    campaigns = f"({campaigns_running_sql()})" if with_campaigns else "'[]'::json"
    paying = (
        f", {select_list(Account, 'tc')}, {select_list(Account, 'cc')}" if with_campaigns else ""
    )
    paying_joins = (
        ""
        if not with_campaigns
        else f"""
        LEFT JOIN {account} tc ON tc.coalition_id = %(coalition)s AND tc.tenant_id = %(tenant)s
            AND tc.kind = '{AccountKind.TENANT_CAMPAIGN}'
        LEFT JOIN {account} cc ON cc.coalition_id = %(coalition)s AND cc.kind = 'campaign'
            AND cc.member_id IS NULL AND cc.tenant_id IS NULL"""
    )
    return f"""
        SELECT m.status, r.price_per_point, r.reimbursement_per_point,
            EXISTS (SELECT 1 FROM {journal} WHERE store_id = %(store)s AND kind = %(receipt_kind)s
                AND receipt = %(receipt)s AND {_RECEIPT_INDEX_PREDICATE}),
            {campaigns},
            {select_list(Account, "ta")}, {select_list(Account, "ha")}{paying}
        FROM (SELECT %(member)s::uuid AS id) x
        LEFT JOIN {member} m ON m.id = x.id
        LEFT JOIN LATERAL ({TENANT_RATE_SQL}) r ON true
        LEFT JOIN {account} ta ON ta.coalition_id = %(coalition)s AND ta.tenant_id = %(tenant)s
            AND ta.kind = %(tenant_kind)s
        LEFT JOIN {account} ha ON ha.coalition_id = %(coalition)s AND ha.kind = %(house_kind)s
            AND ha.member_id IS NULL AND ha.tenant_id IS NULL{paying_joins}
    """  # noqa: S608 (table and column names from model metadata, never from input)


def posting_lock(
    member: Member,
    tenant: Tenant,
    *,
    day: date,
    tenant_kind: AccountKind,
    house_kind: AccountKind,
    receipt: tuple[int | None, str, str] | None = None,
) -> PostingLock:
    """`member_lock_active` for an earn or burn at `tenant`, in two statements whatever it reads.

    After the lock, one statement re-reads the member's status (MemberNotFound if it was merged
    away or erased while we waited), and reads the tenant's rates on `day`, the tenant's account
    of `tenant_kind`, the coalition's `house_kind` account and, given `receipt` as (store id,
    journal kind, receipt), whether that receipt is already posted; for an earn, also the
    campaigns running at the tenant on `day` (`campaigns.campaigns_running_sql`).
    """
    accounts = member_accounts_lock(member.pk)[member.pk]
    store_id, receipt_kind, receipt_number = receipt or (None, "", "")
    row = fetch_one(
        _posting_reads_sql(tenant_kind == AccountKind.TENANT_ISSUED),
        {
            "member": str(member.pk),
            "coalition": tenant.coalition_id,
            "tenant": tenant.pk,
            "day": day,
            "weekday": day.weekday(),
            "tenant_kind": tenant_kind,
            "house_kind": house_kind,
            "store": store_id,
            "receipt_kind": receipt_kind,
            "receipt": receipt_number,
        },
    )
    assert row is not None  # one row, whatever the joins find
    if row[0] != MemberStatus.ACTIVE:
        raise MemberNotFound("This member is not enrolled.")
    price, reimbursement = rates_or_defaults(tenant, (row[1], row[2]))
    width_ = width(Account)
    tenant_row, house_row = row[5 : 5 + width_], row[5 + width_ : 5 + 2 * width_]
    paying = [row[5 + i * width_ : 5 + (i + 1) * width_] for i in (2, 3)]
    return PostingLock(
        accounts=accounts,
        price=price,
        reimbursement=reimbursement,
        tenant_account=instance(Account, tenant_row)
        if tenant_row[0] is not None
        else tenant_account(tenant.coalition_id, tenant.pk, tenant_kind),
        house_account=instance(Account, house_row)
        if house_row[0] is not None
        else coalition_account(tenant.coalition_id, house_kind),
        receipt_posted=bool(row[3]),
        campaigns=campaigns_from_json(row[4]),
        campaign_accounts=tuple(  # type: ignore[arg-type]
            instance(Account, found) if found and found[0] is not None else None for found in paying
        ),
    )


def lots_slide(member: Member, coalition: Coalition, today: date) -> None:
    """Sliding expiry: any activity moves the member's open lots earned under a sliding policy
    to their N months from today.

    A lot whose last day moves loses its notice: the notice told the member of the old date, and
    the sweep must wait a full window after a notice of the new one (expiry is never silent).
    """
    if not (coalition.expiry_policy == ExpiryPolicy.SLIDING or coalition.sliding_lots):
        return  # no lot of this coalition can slide: no query on the earn and burn paths
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH moved AS (
                SELECT id, ((%s::date + make_interval(months => slide_months::integer))::date - 1)
                    AS last_day
                FROM coalition_lot
                WHERE member_id = %s AND remaining > 0 AND slide_months IS NOT NULL
            )
            UPDATE coalition_lot l SET expires_on = m.last_day, notice_id = NULL
            FROM moved m WHERE l.id = m.id AND l.expires_on IS DISTINCT FROM m.last_day
            """,
            [today, member.pk],
        )
