"""Consent purposes (edited by staff) and the consent log (append-only, read-only here)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyAdmin, member_link, uuid_or_none
from consent.models import ConsentEvent, ConsentPurpose


@admin.register(ConsentPurpose)
class ConsentPurposeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "coalition", "required", "tenant", "notice_version")
    list_filter = ("coalition", "required")
    list_select_related = ("coalition", "tenant")
    search_fields = ("code", "name")
    autocomplete_fields = ("tenant",)
    fields = ("coalition", "code", "name", "description", "required", "tenant", "notice_version")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The code is what enrolment and the tills refer to (`programme`): fixed once created.
        return () if obj is None else ("coalition", "code")

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return {"code": ("name",)} if obj is None else {}

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the consent log points at its purposes


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "member_short",
        "purpose",
        "given",
        "channel",
        "notice_version",
        "by_user",
        "by_till",
    )
    list_display_links = ("at",)
    list_filter = ("given", "channel", "purpose")
    list_select_related = ("purpose", "by_user", "by_till__tenant")
    search_fields = ("member__id",)
    search_help_text = "Member id."
    fields = (
        "member",
        "purpose",
        "given",
        "at",
        "channel",
        "notice_version",
        "by_user",
        "by_till",
    )

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: ConsentEvent) -> SafeString | str:
        return member_link(obj.member_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentEvent], search_term: str
    ) -> tuple[QuerySet[ConsentEvent], bool]:
        if not search_term.strip():
            return queryset, False
        found = uuid_or_none(search_term)
        return (queryset.filter(member_id=found) if found else queryset.none()), False
