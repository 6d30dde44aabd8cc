"""The tenant portal's statements: the list, a statement as a page, and as CSV and PDF."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from coalition.errors import InvalidRequest
from settlement.documents import statement_csv, statement_pdf
from settlement.models import Statement
from settlement.selectors import (
    disputes_for_statement,
    statement_document,
    statement_get_for_tenant,
    statement_line_get_for_tenant,
    statements_for_tenant,
)
from settlement.services import dispute_raise
from tenants.models import PortalRole
from tenants.portal import portal_read_only, portal_view, tenant_of, tenant_user_of

# Who may question a statement line: the tenant's manager and finance, not a viewer.
DISPUTE_ROLES = (PortalRole.MANAGER, PortalRole.FINANCE)


def _filename(statement: Statement, extension: str) -> str:
    return f"statement-{statement.tenant.slug}-{statement.period.month:%Y-%m}.{extension}"


@portal_view()
def statements(request: HttpRequest) -> HttpResponse:
    found = statements_for_tenant(tenant_of(request))
    return render(request, "settlement/statement_list.html", {"statements": found})


@portal_view()
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get_for_tenant(tenant_of(request), statement_id)
    tenant_user = tenant_user_of(request)
    return render(
        request,
        "settlement/statement_detail.html",
        {
            "document": statement_document(statement),
            "disputes": disputes_for_statement(statement),
            "may_dispute": tenant_user.role in DISPUTE_ROLES and not portal_read_only(request),
        },
    )


@require_POST
@portal_view(*DISPUTE_ROLES, write=True)
def statement_dispute(request: HttpRequest, statement_id: int) -> HttpResponse:
    """Question one line of a statement; finance answers it in the back office."""
    tenant = tenant_of(request)
    statement = statement_get_for_tenant(tenant, statement_id)
    try:
        line_id = int(request.POST.get("line", ""))
    except ValueError:
        messages.error(request, "Choose the line you question.")
        return redirect("portal:statement", statement.pk)
    line = statement_line_get_for_tenant(tenant, statement.pk, line_id)
    try:
        dispute_raise(
            tenant_user=tenant_user_of(request), line=line, reason=request.POST.get("reason", "")
        )
    except InvalidRequest as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(
            request,
            "Your dispute is with the programme's finance team. Their answer will show here; "
            "an accepted one is adjusted on your next statement.",
        )
    return redirect("portal:statement", statement.pk)


@portal_view()
def statement_csv_download(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get_for_tenant(tenant_of(request), statement_id)
    response = HttpResponse(
        statement_csv(statement_document(statement)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(statement, "csv")}"'
    return response


@portal_view()
def statement_pdf_download(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get_for_tenant(tenant_of(request), statement_id)
    response = HttpResponse(
        statement_pdf(statement_document(statement)), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(statement, "pdf")}"'
    return response
