from coalition.models.campaigns import Campaign, CampaignAward, CampaignKind
from coalition.models.figures import DailyFigures as DailyFigures
from coalition.models.figures import DailyFlow as DailyFlow
from coalition.models.imports import ImportJob as ImportJob
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
from coalition.models.notices import ExpiryNotice, NoticeChannel, NoticeStatus, OutboxMessage
from coalition.models.programme import (
    BreakagePolicy,
    Coalition,
    ExpiryPolicy,
    ExpiryPolicyMigration,
    MigrationStatus,
)
from coalition.models.tills import Batch, BatchLine, BatchStatus, IdempotencyRecord, LineStatus

__all__ = [
    "MEMBER_KINDS",
    "MEMBER_KINDS_SET",
    "Account",
    "AccountKind",
    "AdjustmentRequest",
    "AdjustmentStatus",
    "Batch",
    "BatchLine",
    "BatchStatus",
    "BreakagePolicy",
    "Campaign",
    "CampaignAward",
    "CampaignKind",
    "Coalition",
    "Entry",
    "ExpiryNotice",
    "ExpiryPolicy",
    "ExpiryPolicyMigration",
    "IdempotencyRecord",
    "Journal",
    "JournalKind",
    "LineStatus",
    "Lot",
    "LotConsumption",
    "MigrationStatus",
    "NoticeChannel",
    "NoticeStatus",
    "OutboxMessage",
]
