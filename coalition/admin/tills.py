"""What tills sent: batch files and their per-line results, for staff answering a tenant's
"what happened to yesterday's file?". Read-only; lines show no shopper identifiers."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from coalition.admin.base import ReadOnlyAdmin, ReadOnlyTabularInline
from coalition.models import Batch, BatchLine


class BatchLineInline(ReadOnlyTabularInline):
    model = BatchLine
    fields = ("line", "kind", "receipt", "status", "journal", "problem", "detail")
    max_num = 0
    ordering = ("line",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BatchLine]:
        return super().get_queryset(request).select_related("journal")


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = (
        "public_id",
        "till",
        "status",
        "lines_total",
        "lines_accepted",
        "lines_rejected",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "till__tenant")
    list_select_related = ("till__tenant",)
    search_fields = ("=public_id", "till__code", "till__tenant__name")
    fields = (
        "public_id",
        "till",
        "status",
        "file_sha256",
        "file_size",
        "lines_total",
        "lines_accepted",
        "lines_rejected",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields
    inlines = (BatchLineInline,)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        try:
            return super().get_search_results(request, queryset, search_term)
        except ValueError:  # not a UUID: search the other fields only
            return queryset.none(), False
