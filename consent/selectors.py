"""Reads of the consent log."""

from consent.models import ConsentEvent
from members.models import Member


def consent_state(member: Member) -> dict[str, bool]:
    """The member's current consent per purpose code: the latest event for each purpose."""
    latest = (
        ConsentEvent.objects.filter(member=member)
        .order_by("purpose_id", "-at", "-id")
        .distinct("purpose_id")
        .values_list("purpose__code", "given")
    )
    return dict(latest)
