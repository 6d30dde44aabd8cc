"""Settlement services: the monthly close, payments and arrears, the pool reconciliation."""

from settlement.services.close import (
    CloseInProgress,
    first_open_month,
    last_ended_month,
    month_bounds,
    month_start,
    period_close,
    periods_close_due,
)
from settlement.services.disputes import dispute_raise, dispute_resolve
from settlement.services.payments import (
    arrears_apply,
    arrears_waive,
    payment_record,
    tenant_overdue_statement,
    tenant_unpaid_statement,
)
from settlement.services.reconciliation import (
    reconciliation_run,
    reconciliation_verify,
    reconciliations_verify_pending,
)

__all__ = [
    "CloseInProgress",
    "arrears_apply",
    "arrears_waive",
    "dispute_raise",
    "dispute_resolve",
    "first_open_month",
    "last_ended_month",
    "month_bounds",
    "month_start",
    "payment_record",
    "period_close",
    "periods_close_due",
    "reconciliation_run",
    "reconciliation_verify",
    "reconciliations_verify_pending",
    "tenant_overdue_statement",
    "tenant_unpaid_statement",
]
