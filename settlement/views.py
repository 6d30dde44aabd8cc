"""The tenant portal's statements: the list, a statement as a page, and as CSV and PDF."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from settlement.documents import statement_csv, statement_pdf
from settlement.models import Statement
from settlement.selectors import (
    statement_document,
    statement_get_for_tenant,
    statements_for_tenant,
)
from tenants.portal import portal_view, tenant_of


def _filename(statement: Statement, extension: str) -> str:
    return f"statement-{statement.tenant.slug}-{statement.period.month:%Y-%m}.{extension}"


@portal_view()
def statements(request: HttpRequest) -> HttpResponse:
    found = statements_for_tenant(tenant_of(request))
    return render(request, "settlement/statement_list.html", {"statements": found})


@portal_view()
def statement_detail(request: HttpRequest, statement_id: int) -> HttpResponse:
    statement = statement_get_for_tenant(tenant_of(request), statement_id)
    return render(
        request, "settlement/statement_detail.html", {"document": statement_document(statement)}
    )


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
