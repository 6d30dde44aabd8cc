"""Every write to the programme and its ledger goes through these services."""

from coalition.services.adjustments import adjustment_approve, adjustment_reject, points_adjust
from coalition.services.expiry import lots_expire, lots_expire_member
from coalition.services.ledger import Posting
from coalition.services.points import points_burn, points_earn, points_release
from coalition.services.programme import coalition_create
from coalition.services.reversals import points_reverse
from coalition.services.staff import staff_groups_sync

__all__ = [
    "Posting",
    "adjustment_approve",
    "adjustment_reject",
    "coalition_create",
    "lots_expire",
    "lots_expire_member",
    "points_adjust",
    "points_burn",
    "points_earn",
    "points_release",
    "points_reverse",
    "staff_groups_sync",
]
