"""Read-only inlines on a member's page: identifiers, open lots, the consent log."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyTabularInline, admin_link
from coalition.models import Lot
from consent.models import ConsentEvent
from members.admin.search import identifier_mask
from members.models import Identifier


class IdentifierInline(ReadOnlyTabularInline):
    """Masked: the full values are shown in the personal-data panel, after a recorded reveal."""

    model = Identifier
    fields = ("kind", "masked_value", "created_at", "released_at")

    @admin.display(description="Identifier")
    def masked_value(self, obj: Identifier) -> str:
        return identifier_mask(obj.kind, obj.value)


class OpenLotInline(ReadOnlyTabularInline):
    model = Lot
    fields = (
        "lot",
        "points",
        "remaining",
        "earned_at",
        "expires_on",
        "pending_until",
        "funding_tenant",
    )
    verbose_name_plural = "open lots (points not yet spent or expired)"

    @admin.display(description="Lot")
    def lot(self, obj: Lot) -> SafeString:
        return admin_link(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Lot]:
        # Only lots with points left: a regular shopper has one lot per visit, for years.
        return (
            super()
            .get_queryset(request)
            .filter(remaining__gt=0)
            .select_related("funding_tenant")
            .order_by("expires_on", "id")
        )


class ConsentEventInline(ReadOnlyTabularInline):
    model = ConsentEvent
    fields = ("purpose", "given", "at", "channel", "notice_version", "by_user", "by_till")
    verbose_name_plural = "consent log"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever records a member's consent sees that member's history; the whole log
        # (Consent → Consent events) stays with the privacy officer.
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "consent.add_consentevent"
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentEvent]:
        return (
            super()
            .get_queryset(request)
            .select_related("purpose", "by_user", "by_till__tenant")
            .order_by("-at", "-id")
        )
