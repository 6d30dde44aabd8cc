"""Members in the back office: find one however staff type it, see their points, and act on them
through the services (enrol, adjust, merge). Nothing about a member is edited by hand."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from coalition.admin.base import BigTableAdmin, service_form_page, short_id
from coalition.errors import DomainError
from coalition.models import AdjustmentRequest, Coalition
from coalition.services import points_adjust
from consent.models import ConsentPurpose
from consent.selectors import consent_overview
from consent.services import consents_record
from members.admin.forms import AdjustPointsForm, MemberEnrolForm, MergeMembersForm, error_to_form
from members.admin.imports import MemberImportMixin
from members.admin.inlines import ConsentEventInline, IdentifierInline, OpenLotInline
from members.admin.reads import members_with_balances
from members.admin.reveal import RevealForm, member_personal_data, reveal_grant, revealed
from members.admin.search import identifier_mask, members_search, name_mask
from members.models import Member, MemberStatus
from members.resources import MemberResource
from members.selectors import member_balances, member_expiring, member_history_ids
from members.services import member_enrol, members_merge


@admin.register(Member)
class MemberAdmin(MemberImportMixin, BigTableAdmin):
    resource_classes = [MemberResource]  # import only: members are never exported here
    list_display = (
        "short_id",
        "who",
        "status",
        "balance",
        "pending",
        "enrolled_on",
        "last_activity_on",
    )
    list_filter = ("status", "coalition", "enrolled_via")
    ordering = ("-enrolled_at",)
    search_fields = ("name",)  # shows the search box; the search itself is members_search
    search_help_text = (
        "Phone (any format), email, card number, member id or short id, or part of a name."
    )
    fieldsets = (
        (None, {"fields": ("id", "coalition", "status", "merged_into", "merged_members")}),
        ("Points", {"fields": ("points_summary",)}),
        (
            "Enrolment",
            {
                "fields": (
                    "enrolled_at",
                    "enrolled_via",
                    ("enrolled_by_till", "enrolled_by_user"),
                    "last_activity_at",
                )
            },
        ),
        ("Age", {"fields": ("adult_declared", "guardian_consent_at")}),
    )
    readonly_fields = (
        "id",
        "coalition",
        "status",
        "merged_into",
        "merged_members",
        "points_summary",
        "enrolled_at",
        "enrolled_via",
        "enrolled_by_till",
        "enrolled_by_user",
        "last_activity_at",
        "adult_declared",
        "guardian_consent_at",
    )
    inlines = (IdentifierInline, OpenLotInline, ConsentEventInline)
    actions = ("adjust_points", "merge_members")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return members_with_balances(super().get_queryset(request))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Members", **(extra_context or {})})

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Member], search_term: str
    ) -> tuple[QuerySet[Member], bool]:
        return members_search(queryset, search_term), False

    # -- columns ---------------------------------------------------------------------------

    @admin.display(description="Member", ordering="id")
    def short_id(self, obj: Member) -> str:
        return short_id(obj.pk)

    @admin.display(description="Name / identifier")
    def who(self, obj: Member) -> SafeString:
        masked = identifier_mask(
            getattr(obj, "primary_kind", None), getattr(obj, "primary_value", None)
        )
        if not obj.name:
            return format_html("{}", masked)
        # Names are masked in the list too: seeing one in full is a recorded view (reveal_view).
        return format_html('{}<br><span class="quiet">{}</span>', name_mask(obj.name), masked)

    @admin.display(description="Enrolled", ordering="enrolled_at")
    def enrolled_on(self, obj: Member) -> str:
        return f"{timezone.localtime(obj.enrolled_at):%d %b %Y}"

    @admin.display(description="Last activity", ordering="last_activity_at")
    def last_activity_on(self, obj: Member) -> str:
        when = obj.last_activity_at
        return f"{timezone.localtime(when):%d %b %Y}" if when else "—"

    @admin.display(description="Points", ordering="points_balance")
    def balance(self, obj: Member) -> int:
        return int(getattr(obj, "points_balance", None) or 0)

    @admin.display(description="Pending", ordering="pending_balance")
    def pending(self, obj: Member) -> int:
        return int(getattr(obj, "pending_balance", None) or 0)

    @admin.display(description="Points")
    def points_summary(self, obj: Member) -> SafeString:
        balances = member_balances(obj)
        expiring = member_expiring(obj, within_days=obj.coalition.expiry_notice_days)
        soon = format_html_join(
            "", "<br>{} points expire after {}", ((p, day.isoformat()) for p, day in expiring)
        )
        return format_html(
            "<strong>{}</strong> spendable · {} pending{}",
            balances.balance,
            balances.pending,
            soon,
        )

    @admin.display(description="Merged into this member")
    def merged_members(self, obj: Member) -> SafeString | str:
        merged = Member.objects.filter(merged_into=obj).values_list("pk", flat=True)
        if not merged:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:members_member_change", args=[pk]), short_id(pk)) for pk in merged),
        )

    # -- permissions -------------------------------------------------------------------------

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a member leaves by erasure (a service), never by deleting the row

    def has_adjust_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("coalition.add_adjustmentrequest")

    def has_consent_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("consent.add_consentevent")

    def has_merge_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("members.change_member")

    # -- pages -------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="members_member_adjust",
            ),
            path(
                "<path:object_id>/reveal/",
                self.admin_site.admin_view(self.reveal_view),
                name="members_member_reveal",
            ),
            path(
                "<path:object_id>/consent/",
                self.admin_site.admin_view(self.consent_view),
                name="members_member_consent",
            ),
        ]
        return custom + super().get_urls()  # before the catch-all "<path:object_id>/"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        member = self.get_object(request, unquote(object_id))
        history = ",".join(str(pk) for pk in member_history_ids(member)) if member else ""
        context = {
            "title": "Member",
            # Every field is read-only: changes go through the actions, never through Save.
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "history_ids": history,
            "consents": consent_overview(member) if member else [],
            "personal": member_personal_data(member, revealed=revealed(request, member))
            if member
            else None,
            "reveal_form": RevealForm(),
            "can_consent": self.has_consent_permission(request)
            and member is not None
            and member.status == MemberStatus.ACTIVE,
            "can_adjust": self.has_adjust_permission(request)
            and member is not None
            and member.status == MemberStatus.ACTIVE,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Enrolment through member_enrol: identifiers, age or guardian, and consents."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else None
        form = MemberEnrolForm(data, initial={"coalition": Coalition.objects.first()})
        if data is not None and form.is_valid():
            try:
                member = member_enrol(**form.enrol_kwargs(), user=request.user)
            except DomainError as exc:
                error_to_form(form, exc, MemberEnrolForm.SERVICE_FIELDS)
            else:
                self.log_addition(request, member, "Enrolled by staff.")
                self.message_user(request, f"Enrolled {member}.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:members_member_change", args=[member.pk])
                )
        return self._form_page(
            request,
            "admin/members/member/enrol.html",
            form,
            title="Enrol a member",
            submit_label="Enrol",
            cancel_url=reverse("admin:members_member_changelist"),
        )

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Adjust points through points_adjust; above the threshold it becomes a request."""
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404("No such member.")
        if not (
            self.has_view_or_change_permission(request, member)
            and self.has_adjust_permission(request)
        ):
            raise PermissionDenied
        change_url = reverse("admin:members_member_change", args=[member.pk])
        data = request.POST if request.method == "POST" else None
        form = AdjustPointsForm(data)
        if data is not None and form.is_valid():
            points, reason = form.cleaned_data["points"], form.cleaned_data["reason"]
            try:
                result = points_adjust(
                    member=member, points=points, reason=reason, actor=request.user
                )
            except DomainError as exc:
                error_to_form(form, exc)
            else:
                if isinstance(result, AdjustmentRequest):
                    self.log_change(request, member, f"Asked to adjust {points:+d} points.")
                    self.message_user(
                        request,
                        f"{points:+d} points is above the approval threshold "
                        f"({member.coalition.adjustment_approval_threshold}): the adjustment "
                        "awaits a second staff member's approval.",
                        messages.WARNING,
                    )
                else:
                    self.log_change(request, member, f"Adjusted {points:+d} points.")
                    self.message_user(
                        request,
                        f"Adjusted {points:+d} points; {member}'s balance is now {result.balance}.",
                        messages.SUCCESS,
                    )
                return HttpResponseRedirect(change_url)
        return self._form_page(
            request,
            "admin/members/member/adjust.html",
            form,
            title="Adjust points",
            submit_label="Adjust",
            cancel_url=change_url,
            original=member,
            threshold=member.coalition.adjustment_approval_threshold,
        )

    def reveal_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show the member's name and identifiers in full for a while, once the reason is
        given; the view is recorded (who, when, what, why) for the privacy officer."""
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404("No such member.")
        if request.method != "POST" or not self.has_view_permission(request, member):
            raise PermissionDenied
        change_url = reverse("admin:members_member_change", args=[member.pk])
        form = RevealForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Say why you need to see the personal data.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        reveal_grant(request, member, why=form.why())
        return HttpResponseRedirect(change_url + "#personal-data")

    def consent_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Give or withdraw one purpose in one click (withdrawing is as easy as giving); ending
        the membership by withdrawing programme consent asks for a confirmation first."""
        member = self.get_object(request, unquote(object_id))
        if member is None:
            raise Http404("No such member.")
        if request.method != "POST" or not self.has_consent_permission(request):
            raise PermissionDenied
        change_url = reverse("admin:members_member_change", args=[member.pk])
        purpose_id, _, given = request.POST.get("consent", "").partition(":")
        purpose = (
            ConsentPurpose.objects.filter(
                pk=int(purpose_id), coalition_id=member.coalition_id
            ).first()
            if purpose_id.isdigit()
            else None
        )
        if purpose is None or given not in {"0", "1"}:
            self.message_user(request, "Choose a purpose to give or withdraw.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        ending = purpose.code == ConsentPurpose.PROGRAMME and given == "0"
        if ending and "confirm" not in request.POST:
            return TemplateResponse(
                request,
                "admin/members/member/withdraw_programme.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.opts,
                    "original": member,
                    "title": "Withdraw consent to the programme",
                    "purpose": purpose,
                    "cancel_url": change_url,
                },
            )
        try:
            consents_record(
                member=member, consents={purpose.code: given == "1"}, by_user=request.user
            )
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return HttpResponseRedirect(change_url)
        verb = "gave" if given == "1" else "withdrew"
        self.log_change(request, member, f"Member {verb} consent: {purpose.name}.")
        done = f"Recorded: the member {verb} consent to {purpose.name} ({purpose.notice_version})."
        if ending:
            done += " The membership has ended; the member's identifiers are free again."
        self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    # -- actions -----------------------------------------------------------------------------

    @admin.action(description="Adjust points of the selected member…", permissions=["adjust"])
    def adjust_points(self, request: HttpRequest, queryset: QuerySet[Member]) -> Any:
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one member to adjust.", messages.ERROR)
            return None
        return HttpResponseRedirect(reverse("admin:members_member_adjust", args=[ids[0]]))

    @admin.action(description="Merge the two selected members…", permissions=["merge"])
    def merge_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> Any:
        members = sorted(queryset[:3], key=lambda member: (member.enrolled_at, str(member.pk)))
        if len(members) != 2:
            self.message_user(request, "Select exactly two members to merge.", messages.ERROR)
            return None
        applying = "apply" in request.POST
        form = MergeMembersForm(
            request.POST if applying else None,
            members=members,
            initial={"survivor": str(members[0].pk)},  # the older record, by default
        )
        if applying and form.is_valid():
            survivor, merged = form.chosen()
            try:
                record = members_merge(
                    survivor=survivor,
                    merged=merged,
                    actor=request.user,
                    reason=form.cleaned_data["reason"],
                )
            except DomainError as exc:
                error_to_form(form, exc)
            else:
                self.log_change(request, survivor, f"Merged {merged} into this member.")
                self.log_change(request, merged, f"Merged into {survivor}.")
                self.message_user(
                    request,
                    f"Merged {merged} into {survivor}: {record.points_moved} points, "
                    f"{record.pending_moved} pending, {record.lots_moved} lots and "
                    f"{record.identifiers_moved} identifiers moved.",
                    messages.SUCCESS,
                )
                return None
        return self._form_page(
            request,
            "admin/members/member/merge.html",
            form,
            title="Merge two members",
            submit_label="Merge",
            cancel_url=request.get_full_path(),
            members=members,
            action="merge_members",
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
        )

    def _form_page(
        self, request: HttpRequest, template: str, form: Any, **context: Any
    ) -> TemplateResponse:
        return service_form_page(self, request, template, form, **context)
