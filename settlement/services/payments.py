"""Payments between tenants and the pool, and arrears: a tenant that does not pay its statement
by the due date may not redeem until it pays or staff waive it."""

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from coalition.claims import PERIOD_LOCK_CLASS
from coalition.errors import InvalidRequest
from coalition.models import Coalition
from coalition.money import money_round
from coalition.services.programme import local_date
from settlement.models import (
    ArrearsWaiver,
    Payment,
    Statement,
)
from tenants.models import Tenant


def _posting_time(coalition_id: int, now: datetime) -> datetime:
    """`now`, or the end of the last closed month if `now` falls inside it, read under the
    coalition's period lock taken shared, as a ledger posting does (`ledger_freeze`)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s, %s)", [PERIOD_LOCK_CLASS, coalition_id]
        )
    # A statement of its own, after the lock: its snapshot includes a freeze it waited for.
    closed_through = Coalition.objects.values_list("closed_through", flat=True).get(pk=coalition_id)
    return max(now, closed_through) if closed_through is not None else now


@transaction.atomic
def payment_record(
    *,
    tenant: Tenant,
    direction: str,
    amount: Decimal,
    reference: str,
    received_on: date,
    statement: Statement | None = None,
    actor: Any = None,
    now: datetime | None = None,
) -> Payment:
    """Record money received from a tenant or paid out to it; it shows on the statement of the
    open month, and a payment that settles what was overdue lifts the arrears at once."""
    if direction not in Payment.Direction.values:
        raise InvalidRequest(f"Unknown direction {direction!r}.", field="direction")
    if amount <= 0 or amount != money_round(amount):
        raise InvalidRequest("The amount is more than zero, in rupees and paise.", field="amount")
    reference = reference.strip()
    if not reference:
        raise InvalidRequest("The bank reference is required.", field="reference")
    if statement is not None and statement.tenant_id != tenant.pk:
        raise InvalidRequest("That statement is another tenant's.", field="statement")
    payment = Payment.objects.create(
        tenant=tenant,
        direction=direction,
        amount=amount,
        reference=reference,
        received_on=received_on,
        statement=statement,
        posted_at=_posting_time(tenant.coalition_id, now or timezone.now()),
        recorded_by=actor,
    )
    arrears_apply(tenants=[tenant], today=local_date(tenant.coalition, now or timezone.now()))
    return payment


def tenant_unpaid_statement(tenant: Tenant) -> Statement | None:
    """The tenant's latest statement when it owes money on it, not fully paid and not waived:
    payments posted since the statement count towards it, payouts against it."""
    latest = (
        Statement.objects.filter(tenant=tenant)
        .select_related("period")
        .order_by("-period__month")
        .first()
    )
    if latest is None or latest.net_amount <= 0:
        return None
    if ArrearsWaiver.objects.filter(statement=latest).exists():
        return None
    paid = Decimal(0)
    for direction, amount in Payment.objects.filter(
        tenant=tenant, posted_at__gte=latest.period.ends_at
    ).values_list("direction", "amount"):
        paid += amount if direction == Payment.Direction.RECEIVED else -amount
    return latest if paid < latest.net_amount else None


def tenant_overdue_statement(tenant: Tenant, today: date) -> Statement | None:
    """`tenant_unpaid_statement`, once its due date has passed."""
    unpaid = tenant_unpaid_statement(tenant)
    return unpaid if unpaid is not None and unpaid.due_on < today else None


def arrears_apply(
    *, tenants: Iterable[Tenant] | None = None, today: date | None = None
) -> dict[str, int]:
    """Put tenants with an overdue statement into arrears (their tills may not redeem) and take
    the others out. The daily job runs it for every tenant; a payment or a waiver, for one."""
    entered = left = 0
    chosen = list(tenants) if tenants is not None else Tenant.objects.select_related("coalition")
    for tenant in chosen:
        day = today or local_date(tenant.coalition, timezone.now())
        overdue = tenant_overdue_statement(tenant, day)
        since = overdue.due_on + timedelta(days=1) if overdue is not None else None
        current = Tenant.objects.values_list("arrears_since", flat=True).get(pk=tenant.pk)
        if (since is None) != (current is None):
            Tenant.objects.filter(pk=tenant.pk).update(arrears_since=since)
            entered += since is not None
            left += since is None
        tenant.arrears_since = since if (since is None) != (current is None) else current
    return {"entered": entered, "left": left}


@transaction.atomic
def arrears_waive(*, tenant: Tenant, reason: str, actor: Any) -> ArrearsWaiver:
    """Lift (or forestall) a tenant's arrears on its latest unpaid statement, with a reason
    (recorded): the daily job then leaves that statement alone."""
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Say why the arrears are lifted.", field="reason")
    # Overdue, or not yet due (instalments agreed before the due date).
    unpaid = tenant_unpaid_statement(tenant)
    if unpaid is None:
        raise InvalidRequest(f"{tenant.name} owes nothing on its latest statement.")
    waiver = ArrearsWaiver.objects.create(statement=unpaid, reason=reason, waived_by=actor)
    arrears_apply(tenants=[tenant])
    return waiver
