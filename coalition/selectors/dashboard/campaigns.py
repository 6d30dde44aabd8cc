"""Campaign figures of a period: what each campaign gave and cost, and the cross-shop lift.

Read from `CampaignAward` rows (one per campaign per earn, signed: a refund's award is
negative), by their posting time, as every other dashboard figure.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.core.cache import cache

from coalition.models import CampaignKind, Coalition
from coalition.rows import fetch_all
from coalition.selectors.dashboard.daily import PURCHASE_KINDS, midnight, report_queries

LIFT_DAYS = 30
MALL = "The mall"

LIFT_DEFINITION = (
    "Recipients are the members whose first cross-shop bonus ever was posted in the period. "
    "For each we compare the 30 days before the bonus day with the 30 days after it (the bonus "
    "day itself left out): the share who bought at two or more tenants in each. Non-recipients "
    "are the members who bought in the period without any cross-shop bonus before the end of "
    "their 30 days after, compared the same way around their first purchase day in the period. "
    "Lift is the change in that share, in percentage points; the bonus's lift is the "
    "recipients' lift less the non-recipients' (an association, not proof of cause). Members "
    "whose 30 days after have not ended yet are left out until they have."
)


@dataclass(frozen=True)
class CampaignRow:
    campaign_id: int
    name: str
    kind: str
    funder: str
    points: int
    members: int
    cost: Decimal


@dataclass(frozen=True)
class Group:
    """One side of the lift: members, and how many bought at 2+ tenants before and after."""

    members: int
    before: int
    after: int

    @property
    def before_rate(self) -> Decimal | None:
        return percent(self.before, self.members)

    @property
    def after_rate(self) -> Decimal | None:
        return percent(self.after, self.members)

    @property
    def lift(self) -> Decimal | None:
        if self.before_rate is None or self.after_rate is None:
            return None
        return self.after_rate - self.before_rate


@dataclass(frozen=True)
class Lift:
    recipients: Group
    others: Group
    waiting: int  # recipients in the period whose 30 days after have not ended

    @property
    def difference(self) -> Decimal | None:
        if self.recipients.lift is None or self.others.lift is None:
            return None
        return self.recipients.lift - self.others.lift


def percent(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(100) * part / whole).quantize(Decimal("0.1"))


_CAMPAIGNS_SQL = """
    SELECT c.id, c.name, c.kind, t.name, sum(a.points), count(DISTINCT a.member_id),
        sum(a.value)
    FROM coalition_campaignaward a
    JOIN coalition_campaign c ON c.id = a.campaign_id
    LEFT JOIN tenants_tenant t ON t.id = a.funding_tenant_id
    WHERE c.coalition_id = %(c)s AND a.posted_at >= %(from)s AND a.posted_at < %(to)s
    GROUP BY c.id, c.name, c.kind, t.name
    ORDER BY sum(a.value) DESC, c.name, t.name
"""


def campaign_rows(coalition: Coalition, first: date, last: date) -> list[CampaignRow]:
    """Each campaign's points, members and cost in [first, last], by funder."""
    params = {
        "c": coalition.pk,
        "from": midnight(coalition, first),
        "to": midnight(coalition, last + timedelta(days=1)),
    }
    return [
        CampaignRow(pk, name, kind, funder or MALL, int(points), int(members), Decimal(cost))
        for pk, name, kind, funder, points, members, cost in fetch_all(_CAMPAIGNS_SQL, params)
    ]


_LIFT_SQL = """
    WITH first_bonus AS (
        SELECT a.member_id, min((a.posted_at AT TIME ZONE %(tz)s)::date) AS anchor
        FROM coalition_campaignaward a JOIN coalition_campaign c ON c.id = a.campaign_id
        WHERE c.coalition_id = %(c)s AND c.kind = %(cross_shop)s AND a.points > 0
        GROUP BY a.member_id
    ), buyers AS (
        SELECT member_id, min((posted_at AT TIME ZONE %(tz)s)::date) AS anchor
        FROM coalition_journal
        WHERE coalition_id = %(c)s AND kind = ANY(%(purchase)s) AND tenant_id IS NOT NULL
            AND member_id IS NOT NULL AND posted_at >= %(from)s AND posted_at < %(anchors_to)s
        GROUP BY member_id
    ), cohort AS (
        SELECT member_id, anchor, true AS recipient FROM first_bonus
        WHERE anchor >= %(first)s AND anchor <= %(last_anchor)s
        UNION ALL
        SELECT b.member_id, b.anchor, false FROM buyers b
        WHERE NOT EXISTS (SELECT 1 FROM first_bonus f
            WHERE f.member_id = b.member_id AND f.anchor <= b.anchor + %(days)s)
    ), purchase AS (
        SELECT member_id, tenant_id, (posted_at AT TIME ZONE %(tz)s)::date AS day
        FROM coalition_journal
        WHERE coalition_id = %(c)s AND kind = ANY(%(purchase)s) AND tenant_id IS NOT NULL
            AND posted_at >= %(scan_from)s AND posted_at < %(scan_to)s
    ), per_member AS (
        SELECT co.recipient,
            count(DISTINCT p.tenant_id) FILTER (
                WHERE p.day BETWEEN co.anchor - %(days)s AND co.anchor - 1) AS before,
            count(DISTINCT p.tenant_id) FILTER (
                WHERE p.day BETWEEN co.anchor + 1 AND co.anchor + %(days)s) AS after
        FROM cohort co LEFT JOIN purchase p ON p.member_id = co.member_id
        GROUP BY co.member_id, co.recipient
    )
    SELECT recipient, count(*), count(*) FILTER (WHERE before >= 2),
        count(*) FILTER (WHERE after >= 2)
    FROM per_member GROUP BY recipient
"""

_WAITING_SQL = """
    SELECT count(*) FROM (
        SELECT a.member_id, min((a.posted_at AT TIME ZONE %(tz)s)::date) AS anchor
        FROM coalition_campaignaward a JOIN coalition_campaign c ON c.id = a.campaign_id
        WHERE c.coalition_id = %(c)s AND c.kind = %(cross_shop)s AND a.points > 0
        GROUP BY a.member_id
    ) first_bonus
    WHERE anchor > %(last_anchor)s AND anchor <= %(last)s AND anchor >= %(first)s
"""


def cross_shop_lift(coalition: Coalition, first: date, last: date, today: date) -> Lift:
    """The cross-shop lift of the members whose first cross-shop bonus fell in [first, last]
    (see `LIFT_DEFINITION`), with the windows that have ended by `today`."""
    # The 30 days after an anchor must have ended: anchor + 30 <= yesterday.
    last_anchor = min(last, today - timedelta(days=LIFT_DAYS + 1))
    params = {
        "c": coalition.pk,
        "tz": coalition.time_zone,
        "cross_shop": CampaignKind.CROSS_SHOP,
        "purchase": PURCHASE_KINDS,
        "days": LIFT_DAYS,
        "first": first,
        "last": last,
        "last_anchor": last_anchor,
        "from": midnight(coalition, first),
        "anchors_to": midnight(coalition, last_anchor + timedelta(days=1)),
        "scan_from": midnight(coalition, first - timedelta(days=LIFT_DAYS)),
        "scan_to": midnight(coalition, last_anchor + timedelta(days=LIFT_DAYS + 1)),
    }
    waiting = int(fetch_all(_WAITING_SQL, params)[0][0])
    groups = {True: Group(0, 0, 0), False: Group(0, 0, 0)}
    if last_anchor >= first:
        with report_queries():
            found = fetch_all(_LIFT_SQL, params)
        for recipient, members, before, after in found:
            groups[bool(recipient)] = Group(int(members), int(before), int(after))
    return Lift(recipients=groups[True], others=groups[False], waiting=waiting)


def cross_shop_lift_cached(coalition: Coalition, first: date, last: date, today: date) -> Lift:
    """`cross_shop_lift`, kept for the day: it reads only days that have ended (every window
    it counts ended by yesterday, by posting date), so within one day it cannot change. Its
    scan of three months of purchases is the dashboard's largest; the nightly refresh warms it
    (in a shared cache, CACHE_URL, every web process gets it)."""
    key = f"dashboard-lift:{coalition.pk}:{first}:{last}:{today}"
    found = cache.get(key)
    if not isinstance(found, Lift):
        found = cross_shop_lift(coalition, first, last, today)
        cache.set(key, found, timeout=26 * 60 * 60)
    return found
