"""The tenant portal: sign-in, its tills' transactions, its tills and keys, its account, and
aggregates about its shoppers.

Statements are in `settlement/views.py`. Each view is a `portal_view` (tenants/portal.py) and
reads only through selectors that take the signed-in tenant (`tenant_of(request)`).
"""

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from coalition.errors import InvalidRequest
from coalition.selectors import TILL_KINDS, transactions_for_tenant
from members.selectors import member_reference_for_tenant
from tenants.insight import DEFAULT_PERIOD, PERIODS, shopper_insight
from tenants.portal import (
    LOGIN_URL,
    MANAGER,
    portal_read_only,
    portal_view,
    tenant_of,
    tenant_user_of,
)
from tenants.selectors import till_get_for_tenant, till_key_get_for_tenant, tills_for_tenant
from tenants.services import till_key_issue, till_key_revoke, till_key_rotate

PAGE_SIZE = 50


class PortalLoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return str(reverse_lazy("portal:home"))


class PortalLogoutView(auth_views.LogoutView):
    def get_default_redirect_url(self) -> str:
        return str(reverse_lazy("portal:login"))


class PortalPasswordChangeView(auth_views.PasswordChangeView):
    template_name = "portal/password_change.html"
    success_url = reverse_lazy("portal:account")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # To the portal's sign-in, not settings.LOGIN_URL (the back office's).
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), LOGIN_URL)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password is changed.")
        return super().form_valid(form)


@portal_view()
def home(request: HttpRequest) -> HttpResponse:
    return redirect("portal:statements")


class TransactionFilter(forms.Form):
    start = forms.DateField(required=False, label="From", widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput({"type": "date"}))
    till = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(
        required=False, choices=[("", "All kinds"), *[(k.value, k.label) for k in TILL_KINDS]]
    )

    def __init__(self, *args: Any, tills: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        till_field = self.fields["till"]
        assert isinstance(till_field, forms.ChoiceField)
        till_field.choices = [("", "All tills"), *[(code, code) for code in tills]]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return data


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


@portal_view()
def transactions(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    zone = ZoneInfo(tenant.coalition.time_zone)
    tills = list(tills_for_tenant(tenant).values_list("code", flat=True))
    form = TransactionFilter(request.GET or None, tills=tills)
    rows = transactions_for_tenant(tenant.pk).order_by("-posted_at", "-id")
    if form.is_valid():
        data = form.cleaned_data
        if data["start"]:
            rows = rows.filter(posted_at__gte=_day_start(data["start"], zone))
        if data["end"]:
            rows = rows.filter(posted_at__lt=_day_start(data["end"] + timedelta(days=1), zone))
        if data["till"]:
            rows = rows.filter(till__code=data["till"])
        if data["kind"]:
            rows = rows.filter(kind=data["kind"])
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    shown = [
        {"journal": journal, "member": member_reference_for_tenant(tenant.pk, journal.member_id)}
        for journal in page.object_list
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/transactions.html",
        {"form": form, "page": page, "rows": shown, "query": query.urlencode(), "zone": zone},
    )


@portal_view()
def tills(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    found = tills_for_tenant(tenant).prefetch_related("keys")
    can_manage = tenant_user_of(request).role == MANAGER and not portal_read_only(request)
    return render(request, "portal/tills.html", {"tills": found, "can_manage": can_manage})


def _key_shown_once(request: HttpRequest, till: Any, raw: str, what: str) -> HttpResponse:
    """The new key in this response only: never in a redirect, a message or a log."""
    response = render(request, "portal/key_created.html", {"till": till, "key": raw, "what": what})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@portal_view(MANAGER, write=True)
def key_issue(request: HttpRequest, till_id: int) -> HttpResponse:
    till = till_get_for_tenant(tenant_of(request), till_id)
    try:
        _, raw = till_key_issue(till=till, actor=request.user)
    except InvalidRequest as exc:
        messages.error(request, exc.detail)
        return redirect("portal:tills")
    return _key_shown_once(request, till, raw, "issued")


@require_POST
@portal_view(MANAGER, write=True)
def key_rotate(request: HttpRequest, key_id: str) -> HttpResponse:
    key = till_key_get_for_tenant(tenant_of(request), key_id)
    try:
        _, raw = till_key_rotate(key=key, actor=request.user)
    except InvalidRequest as exc:
        messages.error(request, exc.detail)
        return redirect("portal:tills")
    return _key_shown_once(request, key.till, raw, "rotated")


@require_POST
@portal_view(MANAGER, write=True)
def key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    key = till_key_get_for_tenant(tenant_of(request), key_id)
    till_key_revoke(key=key, reason="Revoked in the tenant portal", actor=request.user)
    messages.success(request, f"Key {key.prefix}… of {key.till.code} is revoked.")
    return redirect("portal:tills")


@portal_view()
def account(request: HttpRequest) -> HttpResponse:
    tenant = tenant_of(request)
    users = tenant.users.select_related("user").order_by("user__username")
    return render(request, "portal/account.html", {"tenant": tenant, "users": users})


class ShoppersPeriod(forms.Form):
    months = forms.TypedChoiceField(
        label="Period",
        choices=[(months, f"Last {months} months") for months in PERIODS],
        coerce=int,
        initial=DEFAULT_PERIOD,
    )


@portal_view()
def shoppers(request: HttpRequest) -> HttpResponse:
    """Aggregates about the signed-in tenant's shoppers, for every portal role: counts only,
    small groups and dominated figures hidden (`tenants.insight`). There is no tenant
    parameter: the page is always the signed-in tenant's."""
    form = ShoppersPeriod(request.GET or None)
    if form.is_valid():
        months = form.cleaned_data["months"]
    else:  # a period the page does not offer: the default, shown as chosen
        months, form = DEFAULT_PERIOD, ShoppersPeriod()
    insight = shopper_insight(tenant_of(request), months=months)
    return render(request, "portal/shoppers.html", {"form": form, "insight": insight})
