from coalition.models.ledger import (
    MEMBER_KINDS,
    MEMBER_KINDS_SET,
    Account,
    AccountKind,
    AdjustmentRequest,
    AdjustmentStatus,
    Entry,
    Journal,
    JournalKind,
    Lot,
    LotConsumption,
)
from coalition.models.programme import BreakagePolicy, Coalition, ExpiryPolicy

__all__ = [
    "MEMBER_KINDS",
    "MEMBER_KINDS_SET",
    "Account",
    "AccountKind",
    "AdjustmentRequest",
    "AdjustmentStatus",
    "BreakagePolicy",
    "Coalition",
    "Entry",
    "ExpiryPolicy",
    "Journal",
    "JournalKind",
    "Lot",
    "LotConsumption",
]
