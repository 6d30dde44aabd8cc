"""Maker-checker for manual adjustments: a second staff member approves or rejects requests.

Requests are created by the member page's "Adjust points" (through `points_adjust`); here they
are only looked at and decided, through `adjustment_approve` / `adjustment_reject`.
"""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString

from coalition.admin.base import BigTableAdmin, member_link, uuid_or_none
from coalition.errors import DomainError
from coalition.models import AdjustmentRequest
from coalition.services import adjustment_approve, adjustment_reject

DECIDE_TEMPLATE = "admin/coalition/adjustmentrequest/decide.html"


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(BigTableAdmin):
    list_display = (
        "requested_at",
        "member_short",
        "points",
        "reason_short",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
    )
    list_display_links = ("requested_at",)
    list_filter = ("status", "coalition")
    list_select_related = ("requested_by", "decided_by")
    search_fields = ("member__id",)
    search_help_text = "Member id."
    fields = (
        "coalition",
        "member",
        "points",
        "reason",
        "status",
        ("requested_by", "requested_at"),
        ("decided_by", "decided_at"),
        "journal",
    )
    readonly_fields = (
        "coalition",
        "member",
        "points",
        "reason",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "journal",
    )
    actions = ("approve", "reject")

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: AdjustmentRequest) -> SafeString | str:
        return member_link(obj.member_id)

    @admin.display(description="Reason")
    def reason_short(self, obj: AdjustmentRequest) -> str:
        return obj.reason if len(obj.reason) <= 60 else obj.reason[:59] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # `add_adjustmentrequest` means "may ask for an adjustment": that happens on the
        # member's page through points_adjust, never by filling in a request by hand.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest], search_term: str
    ) -> tuple[QuerySet[AdjustmentRequest], bool]:
        if not search_term.strip():
            return queryset, False
        found = uuid_or_none(search_term)
        return (queryset.filter(member_id=found) if found else queryset.none()), False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        # Every field is read-only: the decision is taken with the buttons, never by saving.
        context = {
            "title": "Adjustment request",
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description="Approve selected adjustments…", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]) -> Any:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected adjustments…", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest]) -> Any:
        return self._decide(request, queryset, approve=False)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[AdjustmentRequest], *, approve: bool
    ) -> TemplateResponse | None:
        requests = list(queryset.select_related("member", "requested_by").order_by("pk"))
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Approve adjustments" if approve else "Reject adjustments",
                "opts": self.opts,
                "requests": requests,
                "approve": approve,
                "action": "approve" if approve else "reject",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, DECIDE_TEMPLATE, context)
        for pending in requests:
            # One service call per request, each in its own transaction: a refusal (the
            # requester deciding their own request, one already decided) stops only that one.
            try:
                if approve:
                    posting = adjustment_approve(request=pending, approver=request.user)
                else:
                    adjustment_reject(request=pending, approver=request.user)
            except DomainError as exc:
                self.message_user(request, f"{pending}: {exc.detail}", messages.ERROR)
                continue
            if approve:
                self.log_change(request, pending, "Approved and posted.")
                self.message_user(
                    request,
                    f"Approved {pending.points:+d} points for member {str(pending.member_id)[:8]};"
                    f" their balance is now {posting.balance}.",
                    messages.SUCCESS,
                )
            else:
                self.log_change(request, pending, "Rejected.")
                self.message_user(
                    request,
                    f"Rejected {pending.points:+d} points for member {str(pending.member_id)[:8]}.",
                    messages.SUCCESS,
                )
        return None
