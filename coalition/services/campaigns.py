"""Campaign pricing: the points campaigns add to an earn, and take back on its refund.

This is the one place an earn's campaign points are computed (`points_earn` calls it for the
till API, batch files and imports alike). The rounding is domain.md's: each multiplier adds
floor(base x (multiplier - 1)), a cross-shop bonus its fixed points; campaigns add up, they do
not compound. Caps clip an award to what is left of them.

Everything here runs inside the earn's (or the refund's) transaction, with the member's accounts
already locked: that lock is what makes the per-member cap and the once-a-day bonus race-free.
The total cap is the one shared counter, taken with a guarded UPDATE on the campaign's row, and
only for campaigns that have a total cap (the row is then held until the earn commits, so that
campaign's earns queue on it; campaigns without one touch no shared row).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.models import Campaign, CampaignAward, CampaignKind, Coalition, Journal
from coalition.rows import fetch_one
from coalition.services.programme import local_date
from tenants.models import Tenant


@dataclass(frozen=True)
class Award:
    """Points one campaign adds to one earn (or takes back, negative, on a refund)."""

    campaign: Campaign
    points: int

    @property
    def funding_tenant_id(self) -> int | None:
        """The tenant pays for a multiplier at its tills; the mall pays for a bonus."""
        return self.campaign.tenant_id if self.campaign.kind == CampaignKind.MULTIPLIER else None


@dataclass(frozen=True)
class EarnPrice:
    """An earn's points: the base from the earn rule, and each campaign's award on top."""

    base: int
    awards: tuple[Award, ...] = ()

    @property
    def tenant_funded(self) -> int:
        return sum(a.points for a in self.awards if a.funding_tenant_id is not None)

    @property
    def mall_funded(self) -> int:
        return sum(a.points for a in self.awards if a.funding_tenant_id is None)

    @property
    def points(self) -> int:
        return self.base + self.tenant_funded + self.mall_funded


def multiplier_points(base: int, multiplier: Decimal) -> int:
    """The points a multiplier adds: floor(base x (multiplier - 1))."""
    return math.floor(base * (multiplier - 1)) if base > 0 else 0


# The terms pricing reads, as JSON (numbers as text, so decimals stay exact).
_TERMS = ", ".join(
    f"'{name}', c.{name}{'::text' if name in ('multiplier', 'min_amount') else ''}"
    for name in (
        "id",
        "coalition_id",
        "kind",
        "tenant_id",
        "multiplier",
        "bonus_points",
        "min_categories",
        "min_amount",
        "member_cap",
        "total_cap",
    )
)


def campaigns_running_sql() -> str:
    """The terms of the campaigns that apply to an earn at `%(tenant)s` on `%(day)s` (a weekday
    `%(weekday)s`), as a JSON array: read in the posting's one statement (`ledger.posting_lock`),
    so an earn in a mall with no campaign running costs no extra query."""
    return (
        f"SELECT coalesce(json_agg(json_build_object({_TERMS}) ORDER BY c.id), '[]') "  # noqa: S608
        "FROM coalition_campaign c "
        "WHERE c.coalition_id = %(coalition)s AND c.ends_on >= %(day)s "
        "AND c.starts_on <= %(day)s AND NOT c.paused AND %(weekday)s = ANY(c.weekdays) "
        "AND (c.kind = 'cross_shop' OR c.tenant_id = %(tenant)s)"
    )


def campaigns_from_json(rows: Sequence[dict[str, Any]]) -> list[Campaign]:
    """Campaign instances (unsaved copies, for pricing and as award keys) from
    `campaigns_running_sql`'s array."""
    return [
        Campaign(
            **{
                **row,
                "multiplier": Decimal(row["multiplier"]) if row["multiplier"] else None,
                "min_amount": Decimal(row["min_amount"]),
            }
        )
        for row in rows
    ]


def earn_price(
    *,
    coalition: Coalition,
    tenant: Tenant,
    member_id: Any,
    amount: Decimal,
    base: int,
    occurred_on: date,
    campaigns: Sequence[Campaign],
) -> EarnPrice:
    """Price an earn: `base` points from the earn rule plus every running campaign's award,
    clipped to the campaign's caps. `campaigns` are those running for this tenant on the
    purchase's date (`campaigns_running_sql`)."""
    awards = []
    for campaign in campaigns:
        if amount < campaign.min_amount:
            continue
        if campaign.kind == CampaignKind.MULTIPLIER:
            assert campaign.multiplier is not None
            points = multiplier_points(base, campaign.multiplier)
            if campaign.member_cap is not None and points > 0:
                points = min(points, _member_room(campaign, member_id))
        else:
            points = _cross_shop_award(coalition, campaign, member_id, tenant, occurred_on)
        if campaign.total_cap is not None and points > 0:
            points = _total_cap_take(campaign, points)
        if points > 0:
            awards.append(Award(campaign, points))
    return EarnPrice(base, tuple(awards))


def _day_bounds(coalition: Coalition, day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(coalition.time_zone)
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


_AWARDED = (
    "SELECT coalesce(sum(points), 0) FROM coalition_campaignaward "
    "WHERE campaign_id = %(campaign)s AND member_id = %(member)s"
)


def _member_room(campaign: Campaign, member_id: Any) -> int:
    """What is left of the campaign's per-member cap for this member."""
    row = fetch_one(_AWARDED, {"campaign": campaign.pk, "member": member_id})
    assert campaign.member_cap is not None and row is not None
    return max(campaign.member_cap - int(row[0]), 0)


def _cross_shop_award(
    coalition: Coalition, campaign: Campaign, member_id: Any, tenant: Tenant, day: date
) -> int:
    """The bonus when this purchase brings the member's categories bought on `day` to the
    campaign's minimum and the member has not had it for that day, clipped to what is left of
    the per-member cap; else 0. One statement."""
    start, end = _day_bounds(coalition, day)
    # Purchases of the day that still count: what is left of each (after refunds) is at least
    # the campaign's minimum.
    row = fetch_one(
        f"""
        SELECT
            ({_AWARDED} AND occurred_on = %(day)s),
            (SELECT count(DISTINCT t.category) FROM coalition_journal j
                JOIN tenants_tenant t ON t.id = j.tenant_id
                WHERE j.member_id = %(member)s AND j.kind = 'earn'
                    AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
                    AND t.category <> %(category)s
                    AND j.amount - coalesce((SELECT sum(r.amount) FROM coalition_journal r
                        WHERE r.reverses_id = j.id), 0) >= greatest(%(minimum)s, 0.01)),
            ({_AWARDED})
        """,  # noqa: S608 (constants of this module)
        {
            "campaign": campaign.pk,
            "member": member_id,
            "day": day,
            "start": start,
            "end": end,
            "minimum": campaign.min_amount,
            "category": tenant.category,
        },
    )
    assert row is not None
    today, others, awarded = (int(value) for value in row)
    if today > 0 or others + 1 < campaign.min_categories:
        return 0
    points = campaign.bonus_points or 0
    if campaign.member_cap is not None:
        points = min(points, max(campaign.member_cap - awarded, 0))
    return points


def _total_cap_take(campaign: Campaign, points: int) -> int:
    """Take up to `points` from what is left of the campaign's total cap; returns how many.

    A guarded UPDATE on the campaign's row: concurrent earns queue on it, and each sees what the
    one before it left, so together they never give more than the cap."""
    row = fetch_one(
        """
        WITH before AS (SELECT awarded FROM coalition_campaign WHERE id = %(id)s FOR UPDATE)
        UPDATE coalition_campaign c SET awarded = LEAST(c.total_cap, b.awarded + %(points)s)
        FROM before b WHERE c.id = %(id)s
        RETURNING c.awarded - b.awarded
        """,
        {"id": campaign.pk, "points": points},
    )
    return int(row[0]) if row is not None else 0


def _total_cap_return(campaign: Campaign, points: int) -> None:
    """A refund gives its points back to the campaign's total cap."""
    if campaign.total_cap is not None and points > 0:
        Campaign.objects.filter(pk=campaign.pk).update(
            awarded=Greatest(F("awarded") - points, Value(0))
        )


def awards_record(
    journal: Journal, member_id: Any, awards: Sequence[Award], price: Decimal, occurred_on: date
) -> None:
    """Write one `CampaignAward` per award beside the journal that posted it."""
    CampaignAward.objects.bulk_create(
        CampaignAward(
            campaign=award.campaign,
            journal=journal,
            member_id=member_id,
            funding_tenant_id=award.funding_tenant_id,
            points=award.points,
            value=award.points
            * (price if award.funding_tenant_id is not None else journal.point_value),
            occurred_on=occurred_on,
            posted_at=journal.posted_at,
        )
        for award in awards
        if award.points
    )


@dataclass(frozen=True)
class Clawback:
    """What a refund of an earn takes back from each campaign that added points to it, with
    what the campaigns gave the earn (`given`) and what is left of that after earlier refunds."""

    awards: tuple[Award, ...]
    given: int = 0
    left: int = 0

    @property
    def tenant_funded(self) -> int:
        return sum(-a.points for a in self.awards if a.funding_tenant_id is not None)

    @property
    def mall_funded(self) -> int:
        return sum(-a.points for a in self.awards if a.funding_tenant_id is None)


def refund_clawback(original: Journal, *, base_kept: int, amount_kept: Decimal) -> Clawback:
    """The campaign points a refund takes back.

    A multiplier keeps what the unrefunded rest of the purchase earns: floor(kept base x
    (m - 1)), never more than is left of what it gave this earn. A cross-shop bonus is the
    member's for the day, whichever purchase carried it: it stays while the day's purchases,
    this one as the refund leaves it, still span the campaign's categories, and is taken back
    whole (by this refund, once) when they no longer do, so refunding the first purchase of a
    pair cannot leave the bonus with the second.
    """
    net: dict[int, int] = {}
    campaigns: dict[int, Campaign] = {}
    given = 0
    for award in CampaignAward.objects.filter(
        journal__in=[original.pk, *original.reversals.values_list("pk", flat=True)]
    ).select_related("campaign"):
        net[award.campaign_id] = net.get(award.campaign_id, 0) + award.points
        campaigns[award.campaign_id] = award.campaign
        given += award.points if award.journal_id == original.pk else 0
    taken = []
    for campaign_id, left in sorted(net.items()):
        campaign = campaigns[campaign_id]
        if campaign.kind != CampaignKind.MULTIPLIER:
            continue  # the day's bonus, below
        assert campaign.multiplier is not None
        counts = amount_kept > 0 and amount_kept >= campaign.min_amount
        keep = multiplier_points(base_kept, campaign.multiplier) if counts else 0
        give_back = max(left - keep, 0)
        if give_back:
            taken.append(Award(campaign, -give_back))
    taken += _day_bonus_clawback(original, amount_kept)
    return Clawback(tuple(taken), given=given, left=sum(net.values()))


def _day_bonus_clawback(original: Journal, amount_kept: Decimal) -> list[Award]:
    """Every cross-shop bonus the member holds for the refunded purchase's day that the day's
    purchases, after this refund, no longer earn."""
    if original.member_id is None:
        return []
    coalition = original.coalition
    day = local_date(coalition, original.occurred_at)
    held: dict[int, int] = {}
    campaigns: dict[int, Campaign] = {}
    for award in CampaignAward.objects.filter(
        member_id=original.member_id, occurred_on=day, campaign__kind=CampaignKind.CROSS_SHOP
    ).select_related("campaign"):
        held[award.campaign_id] = held.get(award.campaign_id, 0) + award.points
        campaigns[award.campaign_id] = award.campaign
    taken = []
    start, end = _day_bounds(coalition, day)
    for campaign_id, points in sorted(held.items()):
        if points <= 0:
            continue
        campaign = campaigns[campaign_id]
        # The day's purchases as this refund leaves them, each counted while what is left of
        # it is at least the campaign's minimum.
        row = fetch_one(
            """
            SELECT count(DISTINCT t.category) FROM coalition_journal j
            JOIN tenants_tenant t ON t.id = j.tenant_id
            WHERE j.member_id = %(member)s AND j.kind = 'earn'
                AND j.occurred_at >= %(start)s AND j.occurred_at < %(end)s
                AND CASE WHEN j.id = %(original)s THEN %(kept)s
                    ELSE j.amount - coalesce((SELECT sum(r.amount) FROM coalition_journal r
                        WHERE r.reverses_id = j.id), 0) END
                    >= greatest(%(minimum)s, 0.01)
            """,
            {
                "member": original.member_id,
                "start": start,
                "end": end,
                "original": original.pk,
                "kept": amount_kept,
                "minimum": campaign.min_amount,
            },
        )
        if row is None or int(row[0]) < campaign.min_categories:
            taken.append(Award(campaign, -points))
    return taken


def clawback_record(
    journal: Journal, member_id: Any, clawback: Clawback, price: Decimal, occurred_on: date
) -> None:
    awards_record(journal, member_id, clawback.awards, price, occurred_on)
    for award in clawback.awards:
        _total_cap_return(award.campaign, -award.points)


# What a campaign gives for a purchase: fixed once it has given points (refunds are priced with
# them, statements already show what they gave).
TERMS = ("kind", "tenant", "multiplier", "bonus_points", "min_categories", "min_amount")


@transaction.atomic
def campaign_save(*, campaign: Campaign, user: Any = None) -> Campaign:
    """Save a campaign staff configured. Its terms are fixed once it has given points: a refund
    prices its clawback with them, and statements already show what they gave."""
    if campaign.pk is not None and CampaignAward.objects.filter(campaign=campaign).exists():
        stored = Campaign.objects.get(pk=campaign.pk)
        attnames = {name: Campaign._meta.get_field(name).attname for name in TERMS}  # type: ignore[union-attr]
        changed = [
            name
            for name in TERMS
            if getattr(stored, attnames[name]) != getattr(campaign, attnames[name])
        ]
        if changed:
            raise InvalidRequest(
                "This campaign has given points: its terms can no longer change "
                f"({', '.join(changed)}). End it and start a new one.",
                field=changed[0],
            )
    if campaign.pk is None:
        campaign.created_by = user
    campaign.full_clean()
    campaign.save()
    return campaign


def campaign_status(campaign: Campaign, today: date | None = None) -> str:
    today = today or local_date(campaign.coalition, timezone.now())
    if campaign.paused:
        return "Paused"
    if today < campaign.starts_on:
        return "Scheduled"
    if today > campaign.ends_on:
        return "Ended"
    if campaign.total_cap is not None and campaign.awarded >= campaign.total_cap:
        return "Cap reached"
    return "Running"
