"""The admin's first page: the programme dashboard above the usual list of apps.

`coalition/urls.py` routes `/admin/` here ahead of the admin site's own index; this view asks
the site for its index (`AdminSite.index`, so the app list, permissions and the recent-actions
sidebar stay Django's) with the dashboard as extra context. Every figure comes from
`coalition.selectors.dashboard`; this module only picks the coalition and month, draws the
charts and formats money. The money figures (liability, arrears, campaign cost) are shown only
to staff with `coalition.view_liability`, as on the liability page.
"""

import re
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.contrib.humanize.templatetags.humanize import intcomma
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from coalition.charts import grouped_bar_chart, line_chart
from coalition.models import Coalition
from coalition.selectors.dashboard import Dashboard, FlowMatrix, dashboard, month_choices
from coalition.selectors.dashboard.campaigns import LIFT_DEFINITION

MONEY_PERMISSION = "coalition.view_liability"
CURRENCY_SYMBOLS = {"INR": "₹", "EUR": "€", "GBP": "£", "USD": "$", "AED": "AED ", "SGD": "S$"}
MONTH_PARAMETER = re.compile(r"^(\d{4})-(\d{2})$")


def money_text(value: Decimal, currency: str) -> str:
    """`₹1,234.50` (the coalition's currency symbol, thousands separators, two places)."""
    symbol = CURRENCY_SYMBOLS.get(currency, f"{currency} ")
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{intcomma(abs(value).quantize(Decimal('0.01')))}"


def percent_text(value: Decimal | int | None) -> str:
    return "—" if value is None else f"{value}%"


def _coalition(request: HttpRequest, coalitions: list[Coalition]) -> Coalition | None:
    wanted = request.GET.get("coalition", "")
    for coalition in coalitions:
        if str(coalition.pk) == wanted:
            return coalition
    return coalitions[0] if coalitions else None


def _month(request: HttpRequest, coalition: Coalition) -> date:
    """The month asked for (`?month=YYYY-MM`), no later than the current one; else this one."""
    latest = month_choices(coalition)
    found = MONTH_PARAMETER.match(request.GET.get("month", ""))
    if found and 1 <= int(found[2]) <= 12 and int(found[1]) >= 2000:
        return min(date(int(found[1]), int(found[2]), 1), latest)
    return latest


def _flow_rows(matrix: FlowMatrix) -> list[dict[str, Any]]:
    """The matrix as table rows, each cell shaded by its share of the largest cell."""
    largest = max((abs(cell) for row in matrix.cells for cell in row), default=0) or 1
    return [
        {
            "issuer": issuer,
            "cells": [
                {
                    "points": points,
                    "shade": f"{min(abs(points) / largest, 1):.2f}",
                    "own": issuer == redeemer,
                }
                for points, redeemer in zip(row, matrix.redeemers, strict=True)
            ],
            "total": total,
        }
        for issuer, row, total in zip(matrix.issuers, matrix.cells, matrix.row_totals, strict=True)
    ]


def _charts(figures: Dashboard) -> dict[str, Any]:
    labels = [f"{m.month:%b %y}" for m in figures.months]
    return {
        "points": grouped_bar_chart(
            "Points issued, redeemed and expired each month",
            labels,
            [
                ("Issued", [m.issued for m in figures.months]),
                ("Redeemed", [m.redeemed for m in figures.months]),
                ("Expired", [m.expired for m in figures.months]),
            ],
            y_label="Points",
        ),
        "liability": line_chart(
            "Outstanding points at the end of each month",
            labels,
            [("Outstanding points", [m.liability for m in figures.months])],
            y_label="Points",
        ),
        "cross_shop": line_chart(
            "Cross-shop rate each month",
            labels,
            [("Cross-shop rate", [m.cross_shop_rate for m in figures.months])],
            y_label="% of buyers",
            text=lambda value: f"{value}%",
        ),
    }


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    coalitions = list(Coalition.objects.order_by("name", "pk"))
    coalition = _coalition(request, coalitions)
    if coalition is None:
        return {"dashboard": None}
    month = _month(request, coalition)
    figures = dashboard(coalition, month)
    money = request.user.has_perm(MONEY_PERMISSION)
    currency = coalition.currency
    reconciliation = figures.reconciliation
    return {
        "dashboard": figures,
        "coalitions": coalitions,
        "month_value": f"{figures.month:%Y-%m}",
        "month_max": f"{month_choices(coalition):%Y-%m}",
        "money": money,
        "cross_shop_rate": percent_text(figures.cross_shop_rate),
        "liability_value": money_text(figures.liability_value, currency),
        "liability_url": reverse("admin:coalition_coalition_liability", args=[coalition.pk]),
        "reconciliation_url": reverse(
            "admin:settlement_period_change", args=[reconciliation.period_id]
        )
        if reconciliation
        else None,
        "arrears": [
            {
                "row": row,
                "url": reverse("admin:tenants_tenant_change", args=[row.tenant.pk]),
                "owed": money_text(row.owed, currency) if row.owed is not None else "—",
            }
            for row in figures.arrears
        ],
        "campaigns": [
            {"row": row, "cost": money_text(row.cost, currency)} for row in figures.campaigns
        ],
        "campaign_cost": money_text(figures.campaign_cost, currency),
        "lift": figures.lift,
        "lift_texts": {
            name: {
                "before": percent_text(group.before_rate),
                "after": percent_text(group.after_rate),
                "lift": "—" if group.lift is None else f"{group.lift:+} pp",
            }
            for name, group in (
                ("recipients", figures.lift.recipients),
                ("others", figures.lift.others),
            )
        },
        "lift_difference": "—"
        if figures.lift.difference is None
        else f"{figures.lift.difference:+} pp",
        "lift_definition": LIFT_DEFINITION,
        "tenant_flow": figures.tenant_flow,
        "tenant_flow_rows": _flow_rows(figures.tenant_flow),
        "category_flow": figures.category_flow,
        "category_flow_rows": _flow_rows(figures.category_flow),
        "charts": _charts(figures),
        "local_now": figures.as_of.astimezone(ZoneInfo(coalition.time_zone)),
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The admin index with the dashboard (the admin site's own view and template)."""
    return admin.site.index(request, extra_context=dashboard_context(request))
