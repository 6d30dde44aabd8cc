"""Reads of settlement: a tenant's statements (always through the tenant), and a statement as
the document its accountant reads — lines, rates, and where its points went and came from.

The category breakdown holds counts and values only. A category cell behind fewer than k
members (the coalition's `small_group_k`) is folded into "other categories", and that bucket is
itself suppressed when it is still behind fewer than k.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet
from django.http import Http404

from coalition.models import JournalKind
from coalition.money import money_round
from coalition.rows import fetch_all
from settlement.models import LINE_SIGN, Dispute, LineKind, Statement, StatementLine
from tenants.models import Tenant, TenantCategory

OTHER_CATEGORIES = "Other categories"


def statements_for_tenant(tenant: Tenant) -> QuerySet[Statement]:
    return (
        Statement.objects.filter(tenant=tenant)
        .select_related("period", "tenant", "tenant__coalition")
        .order_by("-period__month")
    )


def statement_get_for_tenant(tenant: Tenant, statement_id: int) -> Statement:
    """The tenant's own statement; another tenant's is not found (404), never forbidden."""
    found = statements_for_tenant(tenant).filter(pk=statement_id).first()
    if found is None:
        raise Http404("No such statement.")
    return found


def statement_line_get_for_tenant(tenant: Tenant, statement_id: int, line_id: int) -> StatementLine:
    """A line of the tenant's own statement; anything else is not found (404)."""
    found = (
        StatementLine.objects.select_related("statement")
        .filter(pk=line_id, statement_id=statement_id, statement__tenant=tenant)
        .first()
    )
    if found is None:
        raise Http404("No such statement line.")
    return found


def disputes_for_statement(statement: Statement) -> QuerySet[Dispute]:
    """The disputes raised on a statement (read through `statement_get_for_tenant` first)."""
    return (
        Dispute.objects.filter(statement=statement)
        .select_related("line", "adjusted_on__period")
        .order_by("-raised_at")
    )


@dataclass(frozen=True)
class CategoryRow:
    category: str
    burns: int | None  # None: suppressed (fewer than k members behind it)
    points: int | None
    value: Decimal | None


@dataclass(frozen=True)
class ShownLine:
    pk: int
    label: str
    rate: Decimal | None
    count: int
    points: int
    amount: Decimal
    signed: Decimal  # as it counts towards the net amount: + the tenant owes, - it is owed


@dataclass(frozen=True)
class StatementDocument:
    statement: Statement
    lines: list[ShownLine]
    redeemed_at: list[CategoryRow]  # where the points this tenant issued were honoured
    issued_by: list[CategoryRow]  # where the points this tenant honoured were issued
    k: int


def statement_document(statement: Statement) -> StatementDocument:
    lines = [
        ShownLine(
            pk=line.pk,
            label=str(LineKind(line.kind).label),
            rate=line.rate,
            count=line.count,
            points=line.points,
            amount=line.amount,
            signed=LINE_SIGN[LineKind(line.kind)] * line.amount,
        )
        for line in StatementLine.objects.filter(statement=statement).order_by("id")
    ]
    coalition = statement.tenant.coalition
    k = coalition.small_group_k
    return StatementDocument(
        statement=statement,
        lines=lines,
        redeemed_at=_breakdown(statement, by="redeemer", k=k),
        issued_by=_breakdown(statement, by="funder", k=k),
        k=k,
    )


def _breakdown(statement: Statement, *, by: str, k: int) -> list[CategoryRow]:
    """Burns in the statement's month that took points from lots this tenant funded ("redeemer":
    grouped by the honouring tenant's category), or burns at this tenant (grouped by the
    category of the tenant that funded the lots they took from)."""
    period = statement.period
    if by == "redeemer":
        mine, theirs = "l.funding_tenant_id", "j.tenant_id"
    else:
        mine, theirs = "j.tenant_id", "l.funding_tenant_id"
    base = f"""
        FROM coalition_lotconsumption c
        JOIN coalition_lot l ON l.id = c.lot_id
        JOIN coalition_journal j ON j.id = c.journal_id
        JOIN tenants_tenant t ON t.id = {theirs}
        WHERE {mine} = %s AND j.kind = %s AND j.posted_at >= %s AND j.posted_at < %s
    """
    params = [statement.tenant_id, JournalKind.BURN, period.starts_at, period.ends_at]
    rows = fetch_all(
        "SELECT t.category, count(DISTINCT j.id), sum(c.points), count(DISTINCT j.member_id) "
        + base
        + " GROUP BY t.category ORDER BY t.category",
        params,
    )
    value = statement.tenant.coalition.point_value
    shown: list[CategoryRow] = []
    small: list[str] = []
    for category, burns, points, members in rows:
        if members < k:
            small.append(category)
            continue
        points = int(points)
        label = str(TenantCategory(category).label)
        shown.append(CategoryRow(label, int(burns), points, money_round(points * value)))
    if small:
        # The folded bucket's members counted once each, across the categories it folds.
        burns, points, members = fetch_all(
            "SELECT count(DISTINCT j.id), sum(c.points), count(DISTINCT j.member_id) "
            + base
            + " AND t.category = ANY(%s)",
            [*params, small],
        )[0]
        if members >= k:
            points = int(points)
            shown.append(
                CategoryRow(OTHER_CATEGORIES, int(burns), points, money_round(points * value))
            )
        else:
            shown.append(CategoryRow(OTHER_CATEGORIES, None, None, None))
    return shown
