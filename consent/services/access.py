"""The shopper's right of access: one file with everything held about a member, as JSON or as a
printable HTML page, for a verified access request.

The file is only returned, never stored (not in the database, not in media): a stored copy would
be one more copy of the member's data to secure and to erase. Each export is recorded as a
`DataAccess` row (who, when, what, why) in the same transaction.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from coalition.errors import InvalidRequest
from coalition.services.programme import local_date
from consent.access_data import member_access_data
from consent.models import (
    DataAccess,
    DataAccessAction,
    PrivacyRequest,
    PrivacyRequestKind,
    PrivacyRequestStatus,
)

WHAT = "identifiers, consents, transactions, balances, notices, recipients"
CONTENT_TYPES = {
    "json": "application/json; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
TEMPLATE = "privacy/access_export.html"


@dataclass(frozen=True)
class AccessFile:
    filename: str
    content_type: str
    content: bytes


@transaction.atomic
def member_access_export(
    *, request: PrivacyRequest, actor: Any, fmt: str, now: datetime | None = None
) -> AccessFile:
    """The member's access file for a verified access request, recorded as an export."""
    if fmt not in CONTENT_TYPES:
        raise InvalidRequest("Choose json or html.", field="fmt")
    # Re-read under the row lock: a request cancelled or completed meanwhile is refused.
    request = (
        PrivacyRequest.objects.select_for_update(of=("self",))
        .select_related(
            "coalition",
            "member__coalition",
            "member__enrolled_by_till__tenant",
            "member__enrolled_by_till__store",
        )
        .get(pk=request.pk)
    )
    if request.kind != PrivacyRequestKind.ACCESS:
        raise InvalidRequest("This is not an access request.")
    if request.status != PrivacyRequestStatus.VERIFIED:
        raise InvalidRequest("Verify the requester's identity first.")
    now = now or timezone.now()
    member = request.member
    data = member_access_data(member, request=request, now=now)
    DataAccess.objects.create(
        at=now,
        user=actor,
        action=DataAccessAction.ACCESS_EXPORT,
        member=member,
        request=request,
        what=f"{WHAT} ({fmt})",
        why=f"Access request {request.pk}",
    )
    if fmt == "json":
        content = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    else:
        content = render_to_string(TEMPLATE, {"data": _for_reading(data)}).encode("utf-8")
    day = local_date(request.coalition, now).isoformat()
    return AccessFile(
        filename=f"access-{str(member.pk)[:8]}-{day}.{fmt}",
        content_type=CONTENT_TYPES[fmt],
        content=content,
    )


ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _for_reading(value: Any, key: str = "") -> Any:
    """The data with its moments (`..._at` keys) written for people: 2025-01-10 12:00
    (UTC+05:30) rather than 2025-01-10T12:00:00.123456+05:30."""
    if isinstance(value, dict):
        return {name: _for_reading(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_for_reading(item, key) for item in value]
    if isinstance(value, str) and (key == "at" or key.endswith("_at")) and ISO_MOMENT.match(value):
        moment = datetime.fromisoformat(value)
        return f"{moment:%Y-%m-%d %H:%M} ({moment:%Z})"
    return value
