"""Expiry notices in the back office: what was sent to whom about which points, and how it went.

Read-only: notices are recorded by the daily job (`coalition.services.notices`); the outbox
holds what the development SMS and WhatsApp adapters "sent".
"""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyAdmin, member_link
from coalition.models import ExpiryNotice, OutboxMessage


@admin.register(ExpiryNotice)
class ExpiryNoticeAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "member_short", "points", "first_expiry", "channel", "status", "attempts",
        "sent_at",
    )  # fmt: skip
    list_filter = ("status", "channel", "coalition")
    search_fields = ("member__id",)
    search_help_text = "Member id."
    date_hierarchy = "created_at"
    fields = (
        "coalition", "member", "created_at", ("points", "first_expiry"), "lots",
        ("channel", "status"), ("attempts", "sent_at"), "error",
    )  # fmt: skip

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: ExpiryNotice) -> SafeString | str:
        return member_link(obj.member_id)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExpiryNotice]:
        return super().get_queryset(request).select_related("coalition")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "channel", "recipient", "notice")
    list_filter = ("channel",)
    fields = ("created_at", "channel", "recipient", "body", "notice")
