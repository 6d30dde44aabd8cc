"""A statement as files: CSV for the tenant's accountant, PDF rendered from the same template
as the page (`settlement/statement_document.html`, through xhtml2pdf: PyPI wheels only, no
system libraries)."""

import io

from django.template.loader import render_to_string
from xhtml2pdf import pisa

from coalition.csvsafe import csv_writer
from settlement.selectors import StatementDocument


def statement_csv(document: StatementDocument) -> str:
    statement = document.statement
    out = io.StringIO()
    write = csv_writer(out).writerow
    write(["Statement", statement.tenant.name, f"{statement.period.month:%Y-%m}"])
    write(["Statement date", statement.statement_date.isoformat()])
    write(["Due on", statement.due_on.isoformat()])
    write([])
    write(["Line", "Rate per point", "Count", "Points", "Amount", "Counts towards net"])
    write(["Opening balance", "", "", "", statement.opening_balance, statement.opening_balance])
    for line in document.lines:
        rate = "" if line.rate is None else line.rate
        write([line.label, rate, line.count, line.points, line.amount, line.signed])
    write(["Net amount", "", "", "", statement.net_amount, statement.net_amount])
    write(["Direction", statement.direction])
    for title, rows in (
        ("Where the points you issued were honoured", document.redeemed_at),
        ("Where the points you honoured were issued", document.issued_by),
    ):
        write([])
        write([title])
        write(["Category", "Redemptions", "Points", "Value"])
        for row in rows:
            if row.burns is None:
                write([row.category, f"fewer than {document.k} shoppers: not shown", "", ""])
            else:
                write([row.category, row.burns, row.points, row.value])
    return out.getvalue()


def statement_pdf(document: StatementDocument) -> bytes:
    html = render_to_string("settlement/statement_pdf.html", {"document": document})
    out = io.BytesIO()
    result = pisa.CreatePDF(html, dest=out, encoding="utf-8")
    if result.err:
        raise RuntimeError(f"The statement PDF could not be rendered ({result.err} errors).")
    return out.getvalue()
