"""The privacy officer's audit trail: who viewed or exported a member's personal data, when,
what and why (`DataAccess`). Changes made through the admin are in the audit log library's own
screen (*Auditlog → Log entries*), behind the same role."""

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyAdmin, member_link, uuid_or_none
from consent.models import DataAccess


@admin.register(DataAccess)
class DataAccessAdmin(ReadOnlyAdmin):
    list_display = ("at", "user", "action", "member_short", "purpose", "rows", "what", "why")
    list_display_links = ("at",)
    list_filter = ("action", "purpose")
    list_select_related = ("user", "purpose")
    date_hierarchy = "at"
    search_fields = ("user__username", "why")
    search_help_text = "A member id, a staff username, or words of the reason."
    fields = ("at", "user", "action", "member", "purpose", "request", "rows", "what", "why")
    ordering = ("-at", "-id")  # type: ignore[assignment]

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: DataAccess) -> SafeString | str:
        return member_link(obj.member_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DataAccess], search_term: str
    ) -> tuple[QuerySet[DataAccess], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        found = uuid_or_none(term)
        if found is not None:
            return queryset.filter(member_id=found), False
        return queryset.filter(Q(user__username__iexact=term) | Q(why__icontains=term)), False
