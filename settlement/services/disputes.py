"""Disputes: a tenant questions a statement line from the portal; finance answers it.

A closed month never changes. An accepted dispute's amount becomes an adjustment line on the
tenant's next statement (the close of the month in which it was accepted, or the first close
after it); a rejected one keeps finance's reason. Either way the tenant sees the answer on the
statement it questioned.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.money import money_round
from settlement.models import Dispute, StatementLine
from tenants.models import TenantUser

REASON_LIMIT = 2000


@transaction.atomic
def dispute_raise(
    *, tenant_user: TenantUser, line: StatementLine, reason: str, now: datetime | None = None
) -> Dispute:
    """Open a dispute on one line of the tenant's own statement (one open dispute per line)."""
    statement = line.statement
    if statement.tenant_id != tenant_user.tenant_id:
        raise InvalidRequest("That statement is another tenant's.", field="line")
    reason = reason.strip()
    if not reason:
        raise InvalidRequest("Say what is wrong with the line.", field="reason")
    if len(reason) > REASON_LIMIT:
        raise InvalidRequest(f"Keep the reason under {REASON_LIMIT:,} characters.", field="reason")
    # Lock the line: two people of one tenant raising the same line at once get one dispute.
    StatementLine.objects.select_for_update().filter(pk=line.pk).get()
    if Dispute.objects.filter(line=line, status=Dispute.Status.OPEN).exists():
        raise InvalidRequest("This line is already in dispute; finance will answer it.")
    return Dispute.objects.create(
        statement=statement,
        line=line,
        reason=reason,
        raised_by=tenant_user.user,
        raised_at=now or timezone.now(),
    )


@transaction.atomic
def dispute_resolve(
    *,
    dispute: Dispute,
    accept: bool,
    resolution: str,
    amount: Decimal | None = None,
    direction: str = "",
    actor: Any = None,
    now: datetime | None = None,
) -> Dispute:
    """Finance answers an open dispute: accept it with the amount to adjust and its direction
    (in the tenant's favour, or charged to it), or reject it with the reason."""
    resolution = resolution.strip()
    if not resolution:
        raise InvalidRequest("Write the answer the tenant will read.", field="resolution")
    if accept:
        if amount is None or amount <= 0 or amount != money_round(amount):
            raise InvalidRequest(
                "An accepted dispute needs the amount to adjust, in rupees and paise.",
                field="amount",
            )
        if direction not in Dispute.Direction.values:
            raise InvalidRequest(
                "Say whether the tenant is credited or charged.", field="direction"
            )
    current = Dispute.objects.select_for_update().get(pk=dispute.pk)
    if current.status != Dispute.Status.OPEN:
        raise InvalidRequest(f"This dispute is already {current.get_status_display().lower()}.")
    current.status = Dispute.Status.ACCEPTED if accept else Dispute.Status.REJECTED
    current.resolution = resolution
    current.amount = amount if accept and amount is not None else Decimal(0)
    current.direction = direction if accept else ""
    current.resolved_by = actor if getattr(actor, "pk", None) else None
    current.resolved_at = now or timezone.now()
    current.save(
        update_fields=["status", "resolution", "amount", "direction", "resolved_by", "resolved_at"]
    )
    return current
