"""Shopper-rights requests in the back office (the privacy officer's desk): record a request,
verify who is asking, then produce the member's file (access) or erase (erasure). Every step is a
service call; nothing here is edited by hand."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from coalition.admin.base import member_link, service_form_page, uuid_or_none
from coalition.errors import DomainError
from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus
from consent.services.access import member_access_export
from consent.services.privacy import (
    privacy_request_cancel,
    privacy_request_complete,
    privacy_request_erase,
    privacy_request_open,
    privacy_request_verify,
)
from members.models import Member


class RequestOpenForm(forms.Form):
    member = forms.UUIDField(
        label="Member id", help_text="The member's id (find the member first, then copy it)."
    )
    kind = forms.ChoiceField(choices=PrivacyRequestKind.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="How the request came (desk, email, letter). No phone numbers or emails.",
    )


class StepForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


# step -> (title, button, what the note is for, whether a note is required)
STEPS = {
    "verify": (
        "Verify the requester",
        "Verified",
        "How the identity was checked (e.g. OTP to the enrolled phone, ID seen at the desk).",
    ),
    "erase": (
        "Erase the member",
        "Erase now",
        "",
    ),
    "complete": ("Mark the access request done", "Done", ""),
    "cancel": ("Cancel the request", "Cancel the request", "Why it is cancelled."),
}


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    list_display = ("received_at", "kind", "member_short", "source", "status", "due", "done_at")
    list_display_links = ("received_at",)
    list_filter = ("status", "kind", "source", "coalition")
    list_select_related = ("coalition",)
    search_fields = ("member__id",)
    search_help_text = "Member id."
    ordering = ("-received_at",)
    fields = (
        "coalition",
        "member",
        ("kind", "source"),
        "status",
        ("received_at", "received_by"),
        "due_on",
        ("verified_at", "verified_by"),
        ("done_at", "done_by"),
        "note",
        "outcome_table",
    )
    readonly_fields = tuple(
        name for field in fields for name in (field if isinstance(field, tuple) else (field,))
    )

    @admin.display(description="Member", ordering="member")
    def member_short(self, obj: PrivacyRequest) -> SafeString | str:
        return member_link(obj.member_id)

    @admin.display(description="Due", ordering="due_on")
    def due(self, obj: PrivacyRequest) -> SafeString | str:
        if obj.status in (PrivacyRequestStatus.DONE, PrivacyRequestStatus.CANCELLED):
            return f"{obj.due_on:%d %b %Y}"
        overdue = obj.due_on < timezone.localdate()
        return format_html(
            '<span class="{}">{}{}</span>',
            "errornote" if overdue else "",
            f"{obj.due_on:%d %b %Y}",
            " (overdue)" if overdue else "",
        )

    @admin.display(description="What was done")
    def outcome_table(self, obj: PrivacyRequest) -> SafeString | str:
        if not obj.outcome:
            return "—"
        rows = "".join(
            str(format_html("<tr><td>{}</td><td>{}</td></tr>", key.replace("_", " "), value))
            for key, value in obj.outcome.items()
        )
        return format_html("<table>{}</table>", SafeString(rows))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PrivacyRequest], search_term: str
    ) -> tuple[QuerySet[PrivacyRequest], bool]:
        if not search_term.strip():
            return queryset, False
        found = uuid_or_none(search_term)
        return (queryset.filter(member_id=found) if found else queryset.none()), False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # "change" is the permission to act on a request (verify, erase, export); the form
        # itself never saves: every step is a service.
        return request.user.has_perm("consent.change_privacyrequest")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # -- pages -------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<path:object_id>/step/<str:step>/",
                self.admin_site.admin_view(self.step_view),
                name="consent_privacyrequest_step",
            ),
            path(
                "<path:object_id>/file/<str:fmt>/",
                self.admin_site.admin_view(self.file_view),
                name="consent_privacyrequest_file",
            ),
        ]
        return custom + super().get_urls()

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {"member": request.GET.get("member", ""), "kind": request.GET.get("kind", "")}
        form = RequestOpenForm(request.POST if request.method == "POST" else None, initial=initial)
        if form.is_bound and form.is_valid():
            member = Member.objects.filter(pk=form.cleaned_data["member"]).first()
            if member is None:
                form.add_error("member", "No member has this id.")
            else:
                try:
                    opened = privacy_request_open(
                        member=member,
                        kind=form.cleaned_data["kind"],
                        actor=request.user,
                        note=form.cleaned_data["note"],
                    )
                except DomainError as exc:
                    form.add_error(None, exc.detail)
                else:
                    self.message_user(
                        request,
                        f"{opened} recorded; it is due on {opened.due_on:%d %b %Y}. "
                        "Verify the requester next.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:consent_privacyrequest_change", args=[opened.pk])
                    )
        return self._form_page(
            request,
            form,
            title="Record a privacy request",
            submit_label="Record",
            cancel_url=reverse("admin:consent_privacyrequest_changelist"),
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        open_ = obj is not None and obj.status in (
            PrivacyRequestStatus.RECEIVED,
            PrivacyRequestStatus.VERIFIED,
        )
        can_act = open_ and self.has_change_permission(request, obj)
        verified = obj is not None and obj.status == PrivacyRequestStatus.VERIFIED
        access = obj is not None and obj.kind == PrivacyRequestKind.ACCESS
        context = {
            "title": str(obj) if obj else "Privacy request",
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete_link": False,
            "steps": [
                step
                for step, allowed in (
                    ("verify", can_act and not verified),
                    ("erase", can_act and verified and not access),
                    ("complete", can_act and verified and access),
                    ("cancel", can_act),
                )
                if allowed
            ],
            "can_download": can_act and verified and access,
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def step_view(self, request: HttpRequest, object_id: str, step: str) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None or step not in STEPS:
            raise Http404("No such request or step.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        title, button, note_help = STEPS[step]
        change_url = reverse("admin:consent_privacyrequest_change", args=[obj.pk])
        form = StepForm(request.POST if request.method == "POST" else None)
        form.fields["note"].help_text = note_help
        if not note_help:
            form.fields["note"].widget = forms.HiddenInput()
        if form.is_bound and form.is_valid():
            note = form.cleaned_data["note"]
            try:
                if step == "verify":
                    privacy_request_verify(request=obj, actor=request.user, note=note)
                elif step == "erase":
                    privacy_request_erase(request=obj, actor=request.user)
                elif step == "complete":
                    privacy_request_complete(request=obj, actor=request.user)
                else:
                    privacy_request_cancel(request=obj, actor=request.user, note=note)
            except DomainError as exc:
                form.add_error("note" if note_help else None, exc.detail)
            else:
                self.message_user(request, f"{obj}: {button.lower()}.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        return self._form_page(
            request,
            form,
            title=title,
            submit_label=button,
            cancel_url=change_url,
            original=obj,
            step=step,
        )

    def file_view(self, request: HttpRequest, object_id: str, fmt: str) -> HttpResponse:
        """The member's file for a verified access request; each download is recorded."""
        obj = self.get_object(request, unquote(object_id))
        if obj is None or fmt not in ("json", "html"):
            raise Http404("No such request or format.")
        if request.method != "POST" or not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            produced = member_access_export(request=obj, actor=request.user, fmt=fmt)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:consent_privacyrequest_change", args=[obj.pk])
            )
        response = HttpResponse(produced.content, content_type=produced.content_type)
        response["Content-Disposition"] = f'attachment; filename="{produced.filename}"'
        response["Cache-Control"] = "no-store"
        return response

    def _form_page(
        self, request: HttpRequest, form: forms.Form, **context: Any
    ) -> TemplateResponse:
        return service_form_page(
            self, request, "admin/consent/privacyrequest/step.html", form, **context
        )
