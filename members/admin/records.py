"""Identifiers and merge records, read-only: services write them, staff look them up."""

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from coalition.admin.base import ReadOnlyAdmin, member_link, uuid_or_none
from coalition.models import Coalition
from members.admin.search import identifier_candidates, identifier_mask
from members.models import Identifier, MergeRecord


@admin.register(Identifier)
class IdentifierAdmin(ReadOnlyAdmin):
    list_display = ("masked_value", "kind", "member_short", "created_at")
    list_filter = ("kind", "coalition")
    search_fields = ("value",)
    search_help_text = "A phone (any format), email or card number, found exactly."
    fields = ("coalition", "member", "kind", "value", "created_at")

    @admin.display(description="Identifier")
    def masked_value(self, obj: Identifier) -> str:
        return identifier_mask(obj.kind, obj.value)

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: Identifier) -> SafeString | str:
        return member_link(obj.member_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Identifier], search_term: str
    ) -> tuple[QuerySet[Identifier], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(pk__in=[])
        for coalition_id, region in Coalition.objects.values_list("pk", "phone_region"):
            for kind, value in identifier_candidates(term, region):
                match |= Q(coalition_id=coalition_id, kind=kind, value=value)
        return queryset.filter(match), False


@admin.register(MergeRecord)
class MergeRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "merged_at",
        "merged_short",
        "survivor_short",
        "points_moved",
        "pending_moved",
        "lots_moved",
        "identifiers_moved",
        "merged_by",
    )
    list_display_links = ("merged_at",)
    list_filter = ("coalition",)
    list_select_related = ("merged_by",)
    search_fields = ("merged__id",)
    search_help_text = "Member id (either side of the merge)."
    fields = (
        "coalition",
        ("merged", "survivor"),
        "journal",
        ("points_moved", "pending_moved"),
        ("lots_moved", "identifiers_moved"),
        "reason",
        ("merged_by", "merged_at"),
    )

    @admin.display(description="Merged member", ordering="merged")
    def merged_short(self, obj: MergeRecord) -> SafeString | str:
        return member_link(obj.merged_id)

    @admin.display(description="Survivor", ordering="survivor")
    def survivor_short(self, obj: MergeRecord) -> SafeString | str:
        return member_link(obj.survivor_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[MergeRecord], search_term: str
    ) -> tuple[QuerySet[MergeRecord], bool]:
        if not search_term.strip():
            return queryset, False
        found = uuid_or_none(search_term)
        if found is None:
            return queryset.none(), False
        return queryset.filter(Q(merged_id=found) | Q(survivor_id=found)), False
