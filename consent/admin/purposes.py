"""Consent purposes (edited by staff) and the consent log (append-only, read-only here)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.safestring import SafeString

from coalition.admin.base import (
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    member_link,
    service_form_page,
    uuid_or_none,
)
from coalition.errors import InvalidRequest
from consent.models import ConsentEvent, ConsentNotice, ConsentPurpose
from consent.services import consent_notice_publish
from consent.services.audience import audience_count, audience_export, purpose_is_marketing

EXTRA_LANGUAGES = 3


class NoticeVersionForm(forms.Form):
    version = forms.CharField(max_length=20, help_text="A new name, e.g. v2 or 2026-11.")
    text_en = forms.CharField(label="English text", widget=forms.Textarea(attrs={"rows": 4}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for n in range(1, EXTRA_LANGUAGES + 1):
            self.fields[f"language_{n}"] = forms.CharField(
                max_length=10, required=False, label=f"Language {n + 1}", help_text="e.g. hi, mr"
            )
            self.fields[f"text_{n}"] = forms.CharField(
                required=False, label=f"Text {n + 1}", widget=forms.Textarea(attrs={"rows": 3})
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for n in range(1, EXTRA_LANGUAGES + 1):
            language, text = data.get(f"language_{n}", ""), data.get(f"text_{n}", "")
            if bool(language.strip()) != bool(text.strip()):
                self.add_error(f"text_{n}", "Give both the language and its text, or neither.")
        return data

    def texts(self) -> dict[str, str]:
        data = self.cleaned_data
        texts = {"en": data["text_en"]}
        for n in range(1, EXTRA_LANGUAGES + 1):
            if data.get(f"language_{n}"):
                texts[data[f"language_{n}"]] = data[f"text_{n}"]
        return texts


class AudienceExportForm(forms.Form):
    why = forms.CharField(
        label="Why",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="The campaign and who it is for, e.g. “November newsletter, sent by the mall "
        "on behalf of Apparel Co”. Kept in the personal data access log.",
    )


class ConsentNoticeInline(ReadOnlyTabularInline):
    model = ConsentNotice
    fields = ("version", "language", "text", "published_at")
    verbose_name_plural = "notice texts (each version kept)"


@admin.register(ConsentPurpose)
class ConsentPurposeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "coalition", "required", "tenant", "notice_version")
    list_filter = ("coalition", "required")
    list_select_related = ("coalition", "tenant")
    search_fields = ("code", "name")
    autocomplete_fields = ("tenant",)
    fields = ("coalition", "code", "name", "description", "required", "tenant", "notice_version")
    inlines = (ConsentNoticeInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The code is what enrolment and the tills refer to (`programme`): fixed once created.
        # The version in force changes only by publishing a new text (`consent_notice_publish`).
        return ("notice_version",) if obj is None else ("coalition", "code", "notice_version")

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<path:object_id>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="consent_consentpurpose_publish",
            ),
            path(
                "<path:object_id>/audience/",
                self.admin_site.admin_view(self.audience_view),
                name="consent_consentpurpose_audience",
            ),
        ]
        return custom + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"can_publish": self.has_change_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        context["can_export_audience"] = (
            obj is not None
            and self.has_export_audience_permission(request)
            and purpose_is_marketing(obj)
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_export_audience_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("consent.export_audience")

    def audience_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The purpose's audience now, as a CSV download, for a reason that is logged."""
        if not self.has_export_audience_permission(request):
            raise PermissionDenied
        purpose = self.get_object(request, unquote(object_id))
        if purpose is None:
            raise Http404("No such purpose.")
        change_url = reverse("admin:consent_consentpurpose_change", args=[purpose.pk])
        if not purpose_is_marketing(purpose):
            self.message_user(
                request,
                f"{purpose} is not a marketing purpose: it has no audience to export.",
                messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        form = AudienceExportForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                export = audience_export(
                    purpose=purpose, actor=request.user, why=form.cleaned_data["why"]
                )
            except InvalidRequest as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
            else:
                response = HttpResponse(export.content, content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
                # Personal data: no copy in a browser's or a proxy's cache.
                patch_cache_control(response, no_store=True, private=True)
                return response
        return service_form_page(
            self,
            request,
            "admin/consent/consentpurpose/audience.html",
            form,
            original=purpose,
            audience_size=audience_count(purpose=purpose, at=timezone.now()),
            title=f"Export the audience of {purpose}",
            submit_label="Download the CSV",
            cancel_url=change_url,
        )

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        purpose = self.get_object(request, unquote(object_id))
        if purpose is None:
            raise Http404("No such purpose.")
        if not self.has_change_permission(request, purpose):
            raise PermissionDenied
        change_url = reverse("admin:consent_consentpurpose_change", args=[purpose.pk])
        form = NoticeVersionForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                consent_notice_publish(
                    purpose=purpose, version=form.cleaned_data["version"], texts=form.texts()
                )
            except InvalidRequest as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.detail)
            else:
                self.log_change(request, purpose, f"Notice version {purpose.notice_version}.")
                self.message_user(
                    request,
                    f"Version {purpose.notice_version} is in force: consents from now on cite it.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(change_url)
        return service_form_page(
            self,
            request,
            "admin/consent/consentpurpose/publish.html",
            form,
            original=purpose,
            title=f"New notice version for {purpose}",
            submit_label="Publish",
            cancel_url=change_url,
        )

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
