"""Bad import files (issue 8, bad input): members, historical transactions and tenants, through
the background import job (`coalition.services.imports`) and the admin's small-file Import
button.

Hypothesis builds files from each kind's columns, unknown columns, hostile cells (formulas,
quotes, CR/LF, huge numbers, exponents, long text), wrong column counts, unbalanced quotes, NUL
bytes and foreign encodings. The property, for the job: the upload is refused as a whole with a
clear message (InvalidRequest on `file`), or the dry run ends `previewed` with a clear message
for every refused row (never an "Unexpected ...: see logs") or `failed` with its reason; no
exception escapes the worker, and the dry run writes nothing (no member, journal or tenant;
`ledger_verify` clean). For the admin's Import button: never a 5xx page, and nothing written
on the preview.
"""

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coalition.errors import InvalidRequest
from coalition.models import Coalition, Journal
from coalition.models.imports import ImportJob, ImportKind, ImportStatus
from coalition.resources import TRANSACTION_COLUMNS
from coalition.selectors import ledger_verify
from coalition.services.imports import import_job_create, import_job_run
from coalition.tests.admin_client import client_for, staff_user
from members.models import Member
from members.resources import COLUMNS as MEMBER_COLUMNS
from tenants.models import Store, Tenant, Till
from tenants.resources import TENANT_COLUMNS
from tenants.tests.factories import TenantFactory, TillFactory

NASTY = [
    "",
    " ",
    '"',
    'a"b',
    ",",
    "\r\n",
    "é",
    "💳",
    "x" * 300,
    "1e3",
    "1e999999",
    "-1e-999999",
    "NaN",
    "Infinity",
    "9" * 40,
    "-" + "9" * 20,
    "١٢٣",
    "²",
    "=1+1",
    "+91 98",
    "-2+3",
    "@SUM(A1)",
    "'=1+1",
    "\t=1",
    "2024-02-30T10:00:00+05:30",
    "2024-03-01T14:05:00+99:00",
    "0001-01-01T00:00:00+05:30",
]
GOOD: dict[str, dict[str, list[str]]] = {
    ImportKind.MEMBERS: {
        "phone": ["+919800000001", "9800000002", "98000"],
        "email": ["a@example.com", "b@example.com", "not-an-email"],
        "card": ["", ""],
        "name": ["Asha", "=Asha"],
        "adult": ["yes", "no", "maybe"],
        "marketing_mall": ["yes", "", "no"],
        "analytics": ["", "yes"],
    },
    ImportKind.TRANSACTIONS: {
        "kind": ["earn", "burn", "refund"],
        "tenant": ["apparel", "nope"],
        "till": ["a1", "zz"],
        "card": ["", ""],
        "phone": ["", ""],
        "email": ["a@example.com", ""],
        "amount": ["100.00", "4000", "-5", "0.001"],
        "points": ["", "10", "-3", str(2**63)],
        "bill_amount": ["", "600.00"],
        "receipt": ["R-1", "R-2", "=R"],
        "occurred_at": ["", "2024-03-01T14:05:00+05:30", "2024-03-01 14:05"],
    },
    ImportKind.TENANTS: {
        "slug": ["cafe", "-x", "a b", "cafe"],
        "name": ["Cafe", "=Cafe", ""],
        "legal_name": ["", "Cafe Pvt Ltd"],
        "category": ["food", "apparel", "spaceship"],
    },
}
HEADERS: dict[str, list[str]] = {
    ImportKind.MEMBERS: list(MEMBER_COLUMNS),
    ImportKind.TRANSACTIONS: list(TRANSACTION_COLUMNS),
    ImportKind.TENANTS: list(TENANT_COLUMNS),
}
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le"]


def cell_text(value: str, style: str) -> str:
    if style == "always" or (style == "needed" and any(c in value for c in ',"\r\n')):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def import_files(draw: Any, kind: str) -> bytes:
    hostile = draw(st.integers(0, 2)) == 0
    header = list(HEADERS[kind])
    if hostile:
        header = draw(
            st.one_of(
                st.permutations(header).map(list),
                st.just([*header, "unknown"]),
                st.just(header[:-1]),
                st.just([*header, header[0]]),
                st.just([name.upper() for name in header]),
            )
        )
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        row = []
        for name in header:
            good = GOOD[kind].get(name.lower(), [""])
            row.append(draw(st.sampled_from(good if draw(st.booleans()) else NASTY)))
        if draw(st.integers(0, 5)) == 0:
            row = row[: draw(st.integers(0, len(row)))] or [*row, "extra", "cells"]
        rows.append(row)
    style = draw(st.sampled_from(["needed", "always", "never"] if hostile else ["needed"]))
    ending = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    text = ending.join(",".join(cell_text(v, style) for v in line) for line in [header, *rows])
    content = text.encode(draw(st.sampled_from(ENCODINGS if hostile else ["utf-8"])), "replace")
    if hostile and draw(st.booleans()):
        at = draw(st.integers(0, len(content)))
        junk = draw(st.sampled_from([b"\x00", b"\xff", b'"', b"\xc3"]))
        content = content[:at] + junk + content[at:]
    return content


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture
def admin_user(db: Any) -> User:
    return User.objects.create_superuser("root", password="x")


def written(coalition: Coalition) -> tuple[int, ...]:
    return (
        Member.objects.filter(coalition=coalition).count(),
        Journal.objects.count(),
        Tenant.objects.count(),
        Store.objects.count(),
        Till.objects.count(),
    )


def dry_run(coalition: Coalition, user: User, kind: str, content: bytes) -> str:
    """The property for one file through the job; what became of it."""
    before = written(coalition)
    try:
        job = import_job_create(
            coalition=coalition,
            kind=kind,
            upload=SimpleUploadedFile("in.csv", content, "text/csv"),
            user=user,
        )
    except InvalidRequest as exc:
        assert exc.field == "file" and exc.detail, exc
        assert not ImportJob.objects.exists()
        return "refused whole"
    ran = import_job_run(job_id=job.pk)  # an exception here escapes the worker: the test fails
    assert ran is not None
    job.refresh_from_db()
    assert job.status in (ImportStatus.PREVIEWED, ImportStatus.FAILED), job.status
    assert written(coalition) == before, "the dry run wrote something"
    assert ledger_verify(coalition) == []
    if job.status == ImportStatus.FAILED:
        assert job.failure
        return "failed"
    assert job.rows_processed == job.rows_total
    assert job.rows_created + job.rows_skipped + job.rows_errors == job.rows_total, job.errors
    for item in job.errors:
        messages = [m for ms in item["errors"].values() for m in ms]
        assert messages and all(messages), item
        assert not any(m.startswith("Unexpected") for m in messages), item
    return "rows refused" if job.rows_errors else "rows taken"


@pytest.mark.slow
@pytest.mark.parametrize("kind", [ImportKind.MEMBERS, ImportKind.TRANSACTIONS, ImportKind.TENANTS])
def test_a_bad_file_is_refused_whole_or_each_row_is_taken_or_refused_clearly(
    kind: str,
    coalition: Coalition,
    admin_user: User,
    media: Path,
    example_savepoint: Any,
) -> None:
    TillFactory.create(tenant=TenantFactory.create(coalition=coalition, slug="apparel"), code="a1")

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(content=import_files(kind))
    @example(content=",".join(HEADERS[kind]).encode() + b"\n" + b'"' + b"x" * (1 << 20) + b'"\n')
    @example(content=",".join(HEADERS[kind]).encode("utf-16"))
    def run(content: bytes) -> None:
        with example_savepoint():
            seen[dry_run(coalition, admin_user, kind, content)] += 1

    seen = Counter[str]()
    run()
    assert seen["refused whole"] and seen["rows taken"] + seen["rows refused"], seen


@pytest.mark.parametrize(
    "cell",
    ["1e999999", "-1e-999999", "9" * 40, str(2**63), "Infinity", "١٢٣", "²"],
)
def test_an_impossible_number_is_a_clear_row_error(
    cell: str, coalition: Coalition, admin_user: User, media: Path, example_savepoint: Any
) -> None:
    TillFactory.create(tenant=TenantFactory.create(coalition=coalition, slug="apparel"), code="a1")
    header = ",".join(TRANSACTION_COLUMNS)
    earn = f"earn,apparel,a1,,,a@example.com,{cell},,,R-1,"
    burn = f"burn,apparel,a1,,,a@example.com,,{cell},600.00,R-2,"
    content = f"{header}\n{earn}\n{burn}\n".encode()
    with example_savepoint():
        assert dry_run(coalition, admin_user, ImportKind.TRANSACTIONS, content) == "rows refused"


def test_the_admin_import_button_answers_a_bad_file_without_a_server_error(
    coalition: Coalition, admin_user: User, media: Path, example_savepoint: Any
) -> None:
    client = client_for(staff_user("pm", "Programme manager"))
    client.raise_request_exception = False  # a crash is a 500 to look at, not an exception
    files = [
        b"",
        b"slug,name,legal_name,category\n",
        b'slug,name,legal_name,category\n"cafe,Cafe,,food\n',
        b"slug,name,legal_name,category\ncaf\xe9,Caf\xe9,,food\n",
        "slug,name,legal_name,category\ncafe,Cafe,,food\n".encode("utf-16"),
        b"slug,name,legal_name,category\nca\x00fe,Cafe,,food\n",
        b"slug,name,legal_name,category,unknown\ncafe,Cafe,,food,1\n",
        b"slug,name,legal_name,category\ncafe,=1+1,,food,extra\n",
        b"slug,name,legal_name,category\ncafe," + b"x" * (1 << 20) + b",,food\n",
        b"slug,name,legal_name,category\n-x,\t=1,,spaceship\n",
    ]
    statuses = Counter[int]()
    for content in files:
        with example_savepoint():
            response = client.post(
                reverse("admin:tenants_tenant_import"),
                {
                    "resource": "0",
                    "coalition": str(coalition.pk),
                    "format": "0",
                    "import_file": SimpleUploadedFile("t.csv", content, "text/csv"),
                },
            )
            assert response.status_code < 500, (content[:80], response.status_code)
            statuses[response.status_code] += 1
            assert not Tenant.objects.exists(), "the preview wrote a tenant"
    assert statuses[200] == len(files), statuses  # the form again, with its errors
