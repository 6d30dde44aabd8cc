"""Reads of the consent log."""

from dataclasses import dataclass
from datetime import datetime

from consent.models import ConsentEvent, ConsentPurpose
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


@dataclass(frozen=True)
class PurposeState:
    """A purpose as staff see it on a member's page: where the member stands and since when."""

    purpose: ConsentPurpose
    given: bool | None  # None: never asked
    at: datetime | None
    version: str | None  # the notice version the member's latest choice cited

    @property
    def outdated(self) -> bool:
        """Given against an older notice than the one in force."""
        return bool(self.given) and self.version != self.purpose.notice_version


def consent_overview(member: Member) -> list[PurposeState]:
    latest = {
        event.purpose_id: event
        for event in ConsentEvent.objects.filter(member=member)
        .order_by("purpose_id", "-at", "-id")
        .distinct("purpose_id")
    }
    purposes = ConsentPurpose.objects.filter(coalition_id=member.coalition_id).select_related(
        "tenant"
    )
    states = []
    for purpose in purposes.order_by("-required", "tenant_id", "code"):
        event = latest.get(purpose.pk)
        states.append(
            PurposeState(
                purpose=purpose,
                given=event.given if event else None,
                at=event.at if event else None,
                version=event.notice_version if event else None,
            )
        )
    return states
