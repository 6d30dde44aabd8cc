"""Personal data on a member's page is masked until a staff member says why they need it.

Revealing records a `DataAccess` row (who, when, what, why) and lets that staff member's
session see this member's name and identifiers in full for REVEAL_MINUTES. The session keeps
only the member's opaque id and the time, never a value.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from consent.models import DataAccessAction
from consent.services import data_access_record
from members.admin.search import identifier_mask, name_mask
from members.models import Identifier, Member

REVEAL_MINUTES = 15
SESSION_KEY = "personal_data_revealed"
WHAT = "name, guardian, phone, email, card"
REASONS = (
    ("desk", "The shopper is at the desk"),
    ("call", "The shopper is on the phone"),
    ("dispute", "A dispute or complaint"),
    ("privacy", "A privacy request"),
    ("other", "Other (say what)"),
)


class RevealForm(forms.Form):
    reason = forms.ChoiceField(choices=REASONS)
    detail = forms.CharField(max_length=200, required=False)

    def clean(self) -> dict[str, str]:
        data = super().clean() or {}
        if data.get("reason") == "other" and not data.get("detail", "").strip():
            self.add_error("detail", "Say why.")
        return data

    def why(self) -> str:
        label = dict(REASONS)[self.cleaned_data["reason"]]
        detail = self.cleaned_data.get("detail", "").strip()
        return f"{label}: {detail}" if detail else label


def reveal_grant(request: HttpRequest, member: Member, *, why: str) -> None:
    now = timezone.now()
    data_access_record(
        user=request.user, action=DataAccessAction.VIEW, what=WHAT, why=why, member=member, at=now
    )
    grants = dict(request.session.get(SESSION_KEY, {}))
    grants[str(member.pk)] = (now + timedelta(minutes=REVEAL_MINUTES)).isoformat()
    request.session[SESSION_KEY] = grants


def revealed(request: HttpRequest, member: Member) -> bool:
    until = request.session.get(SESSION_KEY, {}).get(str(member.pk))
    return bool(until) and datetime.fromisoformat(until) > timezone.now()


@dataclass(frozen=True)
class PersonalData:
    revealed: bool
    name: str
    guardian_name: str
    identifiers: list[tuple[str, str]]  # (kind label, value or mask)


def member_personal_data(member: Member, *, revealed: bool) -> PersonalData:
    identifiers = Identifier.objects.filter(member=member, released_at__isnull=True)
    if revealed:
        return PersonalData(
            True,
            member.name or "—",
            member.guardian_name,
            [(i.get_kind_display(), i.value) for i in identifiers],
        )
    return PersonalData(
        False,
        name_mask(member.name) if member.name else "—",
        name_mask(member.guardian_name) if member.guardian_name else "",
        [(i.get_kind_display(), identifier_mask(i.kind, i.value)) for i in identifiers],
    )
