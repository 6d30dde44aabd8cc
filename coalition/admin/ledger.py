"""The ledger, read-only: staff look at journals, entries, lots and accounts; only services write.

Journals and entries are append-only in the database too (a trigger rejects UPDATE/DELETE);
here add, change and delete are refused for everyone, so no balance can be edited by hand.
"""

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from coalition.admin.base import (
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    admin_link,
    member_link,
    uuid_or_none,
)
from coalition.models import (
    MEMBER_KINDS_SET,
    Account,
    CampaignAward,
    Entry,
    Journal,
    Lot,
    LotConsumption,
)


class EntryInline(ReadOnlyTabularInline):
    model = Entry
    fields = ("account", "points", "value", "balance_before", "balance_after")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Entry]:
        return super().get_queryset(request).select_related("account").order_by("id")


class ConsumptionInline(ReadOnlyTabularInline):
    """On a journal: the lots it took points from (or gave them back to)."""

    model = LotConsumption
    fields = ("lot", "points")
    verbose_name_plural = "points taken from (or given back to) lots"

    def get_queryset(self, request: HttpRequest) -> QuerySet[LotConsumption]:
        return super().get_queryset(request).select_related("lot").order_by("id")


class CampaignAwardInline(ReadOnlyTabularInline):
    """On an earn (or its refund): which campaign gave (or took back) which points, and who
    paid for them."""

    model = CampaignAward
    fields = ("campaign", "points", "funding_tenant", "value")
    verbose_name_plural = "campaign points (negative: taken back by a refund)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CampaignAward]:
        return super().get_queryset(request).select_related("campaign", "funding_tenant")


class LotUseInline(ReadOnlyTabularInline):
    """On a lot: the journals that took points from it (or gave them back)."""

    model = LotConsumption
    fields = ("journal", "points")
    verbose_name_plural = "points taken by journals (negative: given back)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[LotConsumption]:
        return super().get_queryset(request).select_related("journal").order_by("id")


class LotCreatedInline(ReadOnlyTabularInline):
    model = Lot
    fields = ("lot", "points", "remaining", "earned_at", "expires_on", "pending_until")
    verbose_name_plural = "lots created by this journal"

    @admin.display(description="Lot")
    def lot(self, obj: Lot) -> SafeString:
        return admin_link(obj)


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdmin):
    list_display = (
        "posted_at",
        "kind",
        "points",
        "value",
        "tenant",
        "till",
        "receipt",
        "member_short",
    )
    list_display_links = ("posted_at",)
    list_filter = ("kind", "coalition", "tenant", ("posted_at", admin.DateFieldListFilter))
    list_select_related = ("tenant", "till__tenant")
    search_fields = ("receipt",)
    search_help_text = "Receipt number (exact), journal id, or member id."
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "coalition",
                    "kind",
                    ("points", "value", "point_value"),
                    ("member", "counterpart"),
                )
            },
        ),
        (
            "Purchase",
            {
                "fields": (
                    ("tenant", "store", "till"),
                    "receipt",
                    ("amount", "bill_amount"),
                    ("price_per_point", "reimbursement_per_point"),
                )
            },
        ),
        ("Dates", {"fields": ("occurred_at", "posted_at")}),
        ("Why", {"fields": ("reverses", "reason", "created_by")}),
    )
    inlines = (EntryInline, CampaignAwardInline, ConsumptionInline, LotCreatedInline)

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: Journal) -> SafeString | str:
        return member_link(obj.member_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Journal], search_term: str
    ) -> tuple[QuerySet[Journal], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        found = uuid_or_none(term)
        if found is not None:
            return queryset.filter(Q(public_id=found) | Q(member_id=found)), False
        return queryset.filter(receipt=term), False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "journal",
        "account",
        "points",
        "value",
        "balance_before",
        "balance_after",
    )
    list_filter = ("account__kind", "journal__kind")
    list_select_related = ("journal", "account")
    search_fields = ("journal__public_id",)
    search_help_text = "Journal id or member id."
    fields = (
        "journal",
        "account",
        "points",
        "value",
        "balance_before",
        "balance_after",
        "digest",
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Entry], search_term: str
    ) -> tuple[QuerySet[Entry], bool]:
        found = uuid_or_none(search_term)
        if found is None:
            return (queryset.none() if search_term.strip() else queryset), False
        return queryset.filter(Q(journal__public_id=found) | Q(account__member_id=found)), False


class LotStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("spendable", "Spendable"), ("pending", "Pending (holdback)"), ("used", "Used up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Lot]) -> QuerySet[Lot]:
        if self.value() == "spendable":
            return queryset.filter(remaining__gt=0, pending_until__isnull=True)
        if self.value() == "pending":
            return queryset.filter(remaining__gt=0, pending_until__isnull=False)
        if self.value() == "used":
            return queryset.filter(remaining=0)
        return queryset


@admin.register(Lot)
class LotAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "member_short",
        "points",
        "remaining",
        "earned_at",
        "expires_on",
        "pending_until",
        "funding_tenant",
    )
    list_filter = (LotStateFilter, "coalition", "funding_tenant")
    list_select_related = ("funding_tenant",)
    search_fields = ("member__id",)
    search_help_text = "Member id."
    fields = (
        "coalition",
        "member",
        "journal",
        "funding_tenant",
        ("points", "remaining"),
        "earned_at",
        ("expires_on", "pending_until"),
    )
    inlines = (LotUseInline,)

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: Lot) -> SafeString | str:
        return member_link(obj.member_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Lot], search_term: str
    ) -> tuple[QuerySet[Lot], bool]:
        return _by_member(queryset, search_term), False


@admin.register(LotConsumption)
class LotConsumptionAdmin(ReadOnlyAdmin):
    list_display = ("id", "lot", "journal", "points")
    list_select_related = ("lot", "journal")
    search_fields = ("journal__public_id",)
    search_help_text = "Journal id."
    fields = ("lot", "journal", "points")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[LotConsumption], search_term: str
    ) -> tuple[QuerySet[LotConsumption], bool]:
        found = uuid_or_none(search_term)
        if found is None:
            return (queryset.none() if search_term.strip() else queryset), False
        return queryset.filter(journal__public_id=found), False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "owner", "cached_balance")
    list_filter = ("kind", "coalition")
    list_select_related = ("tenant", "coalition")
    search_fields = ("tenant__name",)
    search_help_text = "Member id, or a tenant's name."
    fields = ("coalition", "kind", "owner", "cached_balance", "entries")

    @admin.display(description="Owner")
    def owner(self, obj: Account) -> SafeString | str:
        if obj.member_id:
            return member_link(obj.member_id)
        if obj.tenant_id:
            return str(obj.tenant)
        return str(obj.coalition)

    @admin.display(description="Cached balance (points)", ordering="balance")
    def cached_balance(self, obj: Account) -> int | str:
        # Only member accounts keep a balance; the others are sums over entries at the close.
        return obj.balance if obj.kind in MEMBER_KINDS_SET else "— (sum of entries)"

    @admin.display(description="Entries")
    def entries(self, obj: Account) -> SafeString:
        url = reverse("admin:coalition_entry_changelist")
        return format_html('<a href="{}?account={}">Entries on this account</a>', url, obj.pk)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Account], search_term: str
    ) -> tuple[QuerySet[Account], bool]:
        if uuid_or_none(search_term) is not None:
            return _by_member(queryset, search_term), False
        return super().get_search_results(request, queryset, search_term)


def _by_member(queryset: QuerySet[Any], term: str) -> QuerySet[Any]:
    """Rows of one member, by member id; an empty search shows everything."""
    if not term.strip():
        return queryset
    found = uuid_or_none(term)
    return queryset.filter(member_id=found) if found is not None else queryset.none()
