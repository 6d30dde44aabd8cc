"""Tenants, their stores, tills and settlement rates in the back office.

A tenant and a till are created through their services (`tenant_create` writes the tenant's
ledger accounts), and a tenant's status changes only through `tenant_set_status`.
"""

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from rest_framework_api_key.models import APIKey

from coalition.admin.base import ChangeReasonAdmin, ServiceCreateAdmin
from coalition.admin.imports import ProgrammeImportExportMixin
from coalition.errors import InvalidRequest
from coalition.services.programme import local_date
from tenants.models import Store, Tenant, TenantRate, TenantStatus, TenantUser, Till, TillKey
from tenants.resources import StoreResource, TenantResource, TillResource
from tenants.selectors import tenant_rates_on
from tenants.services import (
    tenant_create,
    tenant_exit_schedule,
    tenant_set_status,
    tenant_user_create,
    till_create,
    till_key_issue,
    till_key_revoke,
    till_key_rotate,
    till_key_set_rate_limit,
)

# The library's own generic key model is unused: tills have `TillKey`.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


def _today(tenant: Tenant) -> date:
    return local_date(tenant.coalition, timezone.now())


class TenantRateForm(forms.ModelForm):
    class Meta:
        model = TenantRate
        fields = ("tenant", "effective_from", "price_per_point", "reimbursement_per_point")

    def clean_effective_from(self) -> date:
        day: date = self.cleaned_data["effective_from"]
        tenant = self.cleaned_data.get("tenant") or (
            self.instance.tenant if self.instance.tenant_id else None
        )
        # Postings keep the rates they were made at, but a rate dated in the past would apply
        # to late postings of those days and make two answers for one date.
        if tenant is not None and "effective_from" in self.changed_data and day < _today(tenant):
            raise forms.ValidationError(
                "A new rate takes effect today or later; postings already made keep theirs."
            )
        return day


class ExitDateForm(forms.Form):
    exit_on = forms.DateField(
        label="Exit date",
        help_text="The first day out of the programme: today or later (YYYY-MM-DD).",
    )


class TenantRateInline(admin.TabularInline):
    """Rates are added, never edited here: existing rows are history."""

    model = TenantRate
    form = TenantRateForm
    fields = ("effective_from", "price_per_point", "reimbursement_per_point")
    extra = 0
    can_delete = False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StoreInline(admin.TabularInline):
    model = Store
    fields = ("code", "name", "unit")
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Tenant)
class TenantAdmin(ProgrammeImportExportMixin, ChangeReasonAdmin, ServiceCreateAdmin):
    resource_classes = [TenantResource]
    list_display = (
        "name", "slug", "category", "status", "exit_on", "may_issue", "may_redeem", "coalition"
    )  # fmt: skip
    list_filter = ("status", "category", "coalition", "may_issue", "may_redeem")
    list_select_related = ("coalition",)
    search_fields = ("name", "slug", "legal_name")
    fieldsets = (
        (None, {"fields": ("coalition", "name", "slug", "legal_name", "category", "status")}),
        ("Points", {"fields": ("may_issue", "may_redeem", "redeem_only_allowed")}),
        ("Settlement", {"fields": ("rates_today",)}),
        ("Record", {"fields": ("exit_on", "created_at")}),
    )
    add_fieldsets = ((None, {"fields": ("coalition", "name", "slug", "legal_name", "category")}),)
    inlines = (TenantRateInline, StoreInline)
    actions = ("suspend", "reactivate", "schedule_exit")

    @admin.display(description="Rates in force today")
    def rates_today(self, obj: Tenant) -> str:
        price, reimbursement = tenant_rates_on(obj, _today(obj))
        currency = obj.coalition.currency
        return (
            f"pays {price} {currency} per point it issues, is paid {reimbursement} {currency} "
            "per point it honours (the coalition's defaults unless a rate below says otherwise)"
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The status moves only through the actions (tenant_set_status).
        return (
            ()
            if obj is None
            else ("coalition", "slug", "status", "exit_on", "rates_today", "created_at")
        )

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return {"slug": ("name",)} if obj is None else {}

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def create(self, request: HttpRequest, form: Any) -> Tenant:
        data = form.cleaned_data
        return tenant_create(
            coalition=data["coalition"],
            slug=data["slug"],
            name=data["name"],
            category=data["category"],
            legal_name=data["legal_name"],
        )

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, TenantStatus.SUSPENDED)

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, TenantStatus.ACTIVE)

    @admin.action(description="Set the exit date of the selected tenant…", permissions=["change"])
    def schedule_exit(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> Any:
        tenants = list(queryset.select_related("coalition")[:2])
        if len(tenants) != 1:
            self.message_user(request, "Select one tenant to set its exit date.", messages.ERROR)
            return None
        tenant = tenants[0]
        applying = "apply" in request.POST
        form = ExitDateForm(
            request.POST if applying else None,
            initial={"exit_on": tenant.exit_on or _today(tenant)},
        )
        if applying and form.is_valid():
            try:
                tenant_exit_schedule(
                    tenant=tenant, exit_on=form.cleaned_data["exit_on"], actor=request.user
                )
            except InvalidRequest as exc:
                form.add_error("exit_on", exc.detail)
            else:
                when = tenant.exit_on
                self.log_change(request, tenant, f"Exit date set to {when}.")
                done = (
                    "has left the programme"
                    if tenant.status == TenantStatus.EXITED
                    else ("leaves the programme")
                )
                self.message_user(
                    request,
                    f"{tenant.name} {done} on {when}: its tills are refused and its keys revoked "
                    "from that day; its final statement comes with the next close.",
                    messages.SUCCESS,
                )
                return None
        adminform = helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {})  # type: ignore[arg-type]
        return TemplateResponse(
            request,
            "admin/tenants/tenant/schedule_exit.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "adminform": adminform,
                "title": f"Exit date of {tenant.name}",
                "submit_label": "Set the exit date",
                "cancel_url": request.get_full_path(),
                "tenant": tenant,
                "original": tenant,
                "action": "schedule_exit",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Tenant], status: str) -> None:
        changed = []
        for tenant in queryset.order_by("pk"):
            if tenant.status == status:
                continue
            before = tenant.get_status_display()
            tenant_set_status(tenant=tenant, status=status, actor=request.user)
            self.log_change(request, tenant, f"Status {before} → {tenant.get_status_display()}.")
            changed.append(tenant.name)
        label = TenantStatus(status).label.lower()
        if changed:
            self.message_user(
                request, f"{len(changed)} now {label}: {', '.join(changed)}.", messages.SUCCESS
            )
        else:
            self.message_user(request, f"The selected tenants were already {label}.")


@admin.register(TenantRate)
class TenantRateAdmin(ChangeReasonAdmin):
    form = TenantRateForm
    list_display = ("tenant", "effective_from", "price_per_point", "reimbursement_per_point")
    list_filter = ("tenant__coalition", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)
    date_hierarchy = "effective_from"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A rate in force (or past) is history; only a future rate may still be corrected.
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.effective_from > _today(obj.tenant))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and obj is not None and obj.effective_from > _today(obj.tenant)


@admin.register(Store)
class StoreAdmin(ProgrammeImportExportMixin, ChangeReasonAdmin):
    resource_classes = [StoreResource]
    list_display = ("code", "name", "tenant", "unit")
    list_filter = ("tenant__coalition", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("code", "name", "tenant__name")
    autocomplete_fields = ("tenant",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("tenant", "code")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # journals point at stores


class TillForm(forms.ModelForm):
    class Meta:
        model = Till
        fields = ("store", "code", "is_active")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        store, code = data.get("store"), data.get("code")
        if store is None or not code or self.instance.pk is not None:
            return data
        if Till.objects.filter(tenant_id=store.tenant_id, code=code).exists():
            self.add_error("code", f"{store.tenant} already has a till {code!r}.")
        return data


def _show_key_once(admin_: admin.ModelAdmin, request: HttpRequest, till: Till, raw: str) -> None:
    admin_.message_user(
        request,
        f"New key for {till}: {raw} — copy it now into the till; it is stored hashed and will "
        "not be shown again.",
        messages.WARNING,
    )


class TillKeyInline(admin.TabularInline):
    """A till's keys: only their prefixes are ever shown. Issue, rotate and revoke are actions."""

    model = TillKey
    fields = ("prefix", "name", "created", "created_by", "revoked", "revoked_at", "revoked_reason")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Till)
class TillAdmin(ProgrammeImportExportMixin, ChangeReasonAdmin, ServiceCreateAdmin):
    resource_classes = [TillResource]
    form = TillForm
    inlines = (TillKeyInline,)
    actions = ("issue_key", "rotate_keys")
    list_display = ("code", "tenant", "store", "is_active", "live_keys")
    list_filter = ("is_active", "tenant__coalition", "tenant")
    list_select_related = ("tenant", "store__tenant")
    search_fields = ("code", "tenant__name", "tenant__slug")
    autocomplete_fields = ("store",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("store", "code") if obj is None else ("tenant", "store", "code", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("tenant", "store", "code")

    def create(self, request: HttpRequest, form: Any) -> Till:
        store: Store = form.cleaned_data["store"]
        return till_create(
            tenant=store.tenant, store_code=store.code, till_code=form.cleaned_data["code"]
        )

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    @admin.display(description="Live keys")
    def live_keys(self, obj: Till) -> int:
        return obj.keys.filter(revoked=False).count()

    @admin.action(description="Issue a new API key (shown once)", permissions=["add_key"])
    def issue_key(self, request: HttpRequest, queryset: QuerySet[Till]) -> None:
        for till in queryset.select_related("tenant").order_by("pk"):
            try:
                key, raw = till_key_issue(till=till, actor=request.user)
            except InvalidRequest as exc:
                self.message_user(request, f"{till}: {exc.detail}", messages.ERROR)
                continue
            self.log_change(request, till, f"Issued API key {key.prefix}.")
            _show_key_once(self, request, till, raw)

    @admin.action(
        description="Rotate API keys: a new key, the old ones revoked", permissions=["add_key"]
    )
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[Till]) -> None:
        for till in queryset.select_related("tenant").order_by("pk"):
            live = list(till.keys.filter(revoked=False).order_by("created"))
            if not live:
                self.message_user(request, f"{till} has no live key to rotate.", messages.ERROR)
                continue
            key, raw = till_key_rotate(key=live[-1], actor=request.user)
            for older in live[:-1]:
                till_key_revoke(key=older, reason="Rotated", actor=request.user)
            self.log_change(request, till, f"Rotated API keys; the new key is {key.prefix}.")
            _show_key_once(self, request, till, raw)

    def has_add_key_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("tenants.add_tillkey"))


@admin.register(TillKey)
class TillKeyAdmin(admin.ModelAdmin):
    """Every till key with its till; revoking is an action and cannot be undone."""

    list_display = (
        "prefix",
        "name",
        "till",
        "created",
        "created_by",
        "rate_limit_per_minute",
        "revoked",
        "revoked_at",
    )
    list_filter = ("revoked", "till__tenant__coalition", "till__tenant")
    list_select_related = ("till__tenant", "created_by")
    search_fields = ("prefix", "name", "till__code", "till__tenant__name")
    readonly_fields = (
        "prefix",
        "name",
        "till",
        "created",
        "created_by",
        "revoked",
        "revoked_at",
        "revoked_reason",
        "expiry_date",
    )
    # The one editable field, set through `till_key_set_rate_limit` and kept by rotation.
    fields = (*readonly_fields, "rate_limit_per_minute")
    actions = ("revoke",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.revoked:
            return False  # final: a revoked key's page is a record, nothing on it changes
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        till_key_set_rate_limit(
            key=obj,
            rate_limit_per_minute=form.cleaned_data["rate_limit_per_minute"],
            actor=request.user,
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are issued from the till's page, so the key can be shown once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a revoked key stays as the record of who could post as the till

    @admin.action(description="Revoke selected keys (final)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[TillKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked=False).order_by("pk"):
            till_key_revoke(key=key, reason=f"Revoked by {request.user}", actor=request.user)
            self.log_change(request, key, "Revoked.")
            revoked += 1
        self.message_user(request, f"{revoked} key(s) revoked; tills using them now get 401.")


class TenantUserCreateForm(forms.ModelForm):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(
        widget=forms.PasswordInput, min_length=10, help_text="At least 10 characters."
    )

    class Meta:
        model = TenantUser
        fields = ("tenant", "role")

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"].strip()
        if get_user_model().objects.filter(username=username).exists():
            raise forms.ValidationError("That username is taken.")
        return username


@admin.register(TenantUser)
class TenantUserAdmin(ServiceCreateAdmin):
    """Tenant portal logins: one user, one tenant, one role. Created through
    `tenant_user_create` (never a staff user); the role can be changed afterwards."""

    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant__coalition")
    search_fields = ("user__username", "tenant__name")

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            return TenantUserCreateForm
        kwargs["fields"] = ("role",)
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("tenant", "username", "email", "role", "password")
        return ("user", "tenant", "role", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "tenant", "created_at") if obj else ()

    def create(self, request: HttpRequest, form: Any) -> TenantUser:
        data = form.cleaned_data
        try:
            return tenant_user_create(
                tenant=data["tenant"],
                username=data["username"],
                email=data["email"],
                role=data["role"],
                password=data["password"],
            )
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.detail) from exc
