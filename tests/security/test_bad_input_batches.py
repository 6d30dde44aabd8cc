"""Bad batch files (issue 8, bad input): whatever bytes a till sends to `POST /api/v1/batches`,
the answer is a clear 4xx problem for the whole file, or a batch in which every line ends
`accepted` with its transaction or `rejected` with a problem type and a detail.

Hypothesis builds files from a grammar of hostile pieces (unbalanced quotes, wrong column
counts, NUL bytes, byte-order marks, CR/LF mixtures, blank and header-only files, formula-looking
values, amounts and points at and past every limit), encodes them as UTF-8, UTF-8 with a BOM,
Latin-1, UTF-16 with and without a BOM or cp1252, and sometimes corrupts a few bytes.

1. The parser (`batchfile_parse`), many examples, no database: it raises only InvalidRequest on
   `file`, and every line it returns is either fully formed or carries its errors.
2. Upload and processing over HTTP, fewer examples: never a 5xx; after `batch_process` (called
   directly, as the worker does) no line is left queued, no exception escapes, and the ledger
   holds exactly the accepted lines (a refused line posts nothing), with `ledger_verify` clean.
   Each example runs in a savepoint that is rolled back, so examples never see each other's rows.
3. Fixed cases Hypothesis would rarely reach: a 1 MB cell, a file just under 10 MB.
"""

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coalition.batchfile import COLUMNS, IDENTIFIERS, MAX_BYTES, MAX_LENGTHS, batchfile_parse
from coalition.errors import InvalidRequest
from coalition.models import Batch, BatchLine, Coalition, Journal, JournalKind, LineStatus
from coalition.selectors import ledger_verify
from coalition.services.batches import batch_process
from members.tests.factories import MemberFactory
from tests.test_till_api_contract import ref
from tests.till_api import PROBLEM, TillClient

HEADER = ",".join(COLUMNS)
FORMULAS = ["=1+1", "+91 98", "-2+3", "@SUM(A1)", '=HYPERLINK("http://x","y")', "\t=1", "\r=1"]
NASTY = [
    "",
    " ",
    '"',
    '""',
    'a"b',
    ",",
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\ufeff",
    "é",
    "💳",
    "ß" * 70,
    "x" * 255,
    "1e3",
    "NaN",
    "Infinity",
    "-0",
    "0x10",
    "١٢٣",  # Arabic-Indic digits: \d would take them
    *FORMULAS,
]
MONEY = st.one_of(
    st.sampled_from(
        ["0.00", "0.01", "100.00", "4000.00", "-120.00", "999999999999.99", "1000000000000.00"]
    ),
    st.decimals(min_value=-10, max_value=10**13, places=2, allow_nan=False).map(str),
    st.sampled_from(NASTY),
)
POINTS = st.one_of(
    st.sampled_from(["1", "10", "0", "-50", str(2**31), str(10**15 - 1), str(10**16)]),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(NASTY),
)
TIME = st.sampled_from(
    [
        "",
        "2026-01-15T18:30:00+05:30",
        "2026-01-15T18:30:00",
        "0001-01-01T00:00:00+05:30",
        "9999-12-31T23:59:59-23:59",
        "2026-02-30T00:00:00Z",
        "2026-01-01t04:29:00.1234567z",
        "yesterday",
        *FORMULAS,
    ]
)
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le"]
ENDINGS = ["\r\n", "\n", "\r"]


@st.composite
def good_cells(draw: Any, member: dict[str, str]) -> dict[str, str]:
    """A line a till would send: it posts, unless the balance or a repeated receipt stops it."""
    row = {name: "" for name in COLUMNS}
    who = draw(st.sampled_from(IDENTIFIERS))
    row.update(receipt=f"R-{draw(st.integers(1, 6))}", occurred_at=draw(TIME), **{who: member[who]})
    if draw(st.booleans()):
        row.update(kind="earn", amount=f"{draw(st.integers(1, 10**6)) / 100:.2f}")
    else:
        row.update(kind="burn", points=str(draw(st.integers(1, 60))), bill_amount="600.00")
    return row


@st.composite
def cells(draw: Any, member: dict[str, str]) -> dict[str, str]:
    """One line's cells by column name: well formed, or with hostile values mixed in."""
    if draw(st.booleans()):
        return draw(good_cells(member))
    kind = draw(st.sampled_from(["earn", "earn", "burn", "burn", "EARN", "refund", *NASTY[:6]]))
    who = draw(st.sampled_from([*IDENTIFIERS, "none", "two"]))
    receipt = draw(
        st.one_of(
            st.integers(min_value=1, max_value=6).map(lambda n: f"R-{n}"),
            st.sampled_from(NASTY),
            st.text(max_size=70),
        )
    )
    row = {name: "" for name in COLUMNS}
    row.update(kind=kind, receipt=receipt, occurred_at=draw(TIME))
    if who in IDENTIFIERS:
        row[who] = draw(st.sampled_from([member[who], member[who], "unknown@example.com"]))
    elif who == "two":
        row["card"], row["email"] = member["card"], member["email"]
    if kind.lower() == "earn" or draw(st.booleans()):
        row["amount"] = draw(MONEY)
    if kind.lower() == "burn" or draw(st.booleans()):
        row["points"], row["bill_amount"] = draw(POINTS), draw(MONEY)
    return row


def quoted(value: str, style: str) -> str:
    if style == "always" or (style == "needed" and any(c in value for c in ',"\r\n')):
        return '"' + value.replace('"', '""') + '"'
    return value  # "never": a quote or comma in it breaks the line, as a careless till would


@st.composite
def batch_files(draw: Any, member: dict[str, str]) -> bytes:
    hostile = draw(st.integers(0, 2)) == 0  # the file as a whole; its lines may be bad anyway
    header = draw(
        st.one_of(
            st.just(list(COLUMNS)),
            st.permutations(COLUMNS).map(list),
            st.just(["kind", "receipt", "card", "amount", "points", "bill_amount"]),
            st.just([*COLUMNS, "note"]),
            st.just([c.upper() for c in COLUMNS]),
            st.lists(st.sampled_from([*COLUMNS, "tenant", "x", ""]), min_size=0, max_size=10),
        )
        if hostile
        else st.sampled_from(
            [
                list(COLUMNS),
                [*COLUMNS, "note"],
                [
                    "card",
                    "kind",
                    "amount",
                    "receipt",
                    *COLUMNS[6:],
                    "email",
                    "phone",
                    "occurred_at",
                ],
            ]
        )
    )
    rows = draw(st.lists(cells(member), min_size=0, max_size=6))
    style = draw(st.sampled_from(["needed", "always", "never"] if hostile else ["needed"]))
    ending = draw(st.sampled_from(ENDINGS))
    lines = [",".join(quoted(name, style) for name in header)]
    for row in rows:
        values = [row.get(name, "") for name in header]
        width = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, -1, 1]))  # a missing or extra field
        if width < 0:
            values = values[:-1]
        elif width > 0:
            values.append(draw(st.sampled_from(NASTY)))
        lines.append(",".join(quoted(value, style) for value in values))
        if draw(st.integers(0, 19)) == 0:
            lines.append(draw(st.sampled_from(["", ",,,", '"', "\x00"])))
    if draw(st.booleans()):
        ending_mix = draw(st.lists(st.sampled_from(ENDINGS), min_size=len(lines)))
        text = "".join(line + end for line, end in zip(lines, ending_mix, strict=False))
    else:
        text = ending.join(lines) + draw(st.sampled_from([ending, ""]))
    content = text.encode(draw(st.sampled_from(ENCODINGS if hostile else ["utf-8"])), "replace")
    for _ in range(draw(st.integers(1, 3)) if hostile and draw(st.booleans()) else 0):
        at = draw(st.integers(0, len(content)))
        content = content[:at] + draw(st.binary(min_size=1, max_size=3)) + content[at:]
    return content


SOME_MEMBER = {"card": "7000000000000001", "phone": "+919800000001", "email": "a@example.com"}


# 1. The parser ---------------------------------------------------------------------------------


def check_parsed(content: bytes) -> None:
    try:
        lines = batchfile_parse(content)
    except InvalidRequest as exc:
        assert exc.field == "file" and exc.detail, exc
        return
    assert lines, "a file with no lines is refused, not an empty batch"
    numbers = [line.line for line in lines]
    assert numbers == sorted(set(numbers)) and numbers[0] >= 2  # the header is line 1
    for line in lines:
        if line.errors:
            assert all(name and message for name, message in line.errors.items())
            continue
        # A line without errors is one the posting services can take as it is.
        assert line.kind in ("earn", "burn")
        assert line.receipt and line.receipt == line.receipt.strip()
        assert sum(1 for name in IDENTIFIERS if getattr(line, name)) == 1
        for name, limit in MAX_LENGTHS.items():
            assert len(getattr(line, name)) <= limit
        assert "\x00" not in "".join((line.receipt, line.card, line.phone, line.email))
        if line.kind == "earn":
            assert isinstance(line.amount, Decimal) and line.points is line.bill_amount is None
        else:
            assert isinstance(line.points, int) and isinstance(line.bill_amount, Decimal)
            assert line.amount is None
        assert line.occurred_at is None or line.occurred_at.utcoffset() is not None


@settings(max_examples=150, deadline=None)
@given(content=batch_files(SOME_MEMBER))
@example(content=b"")
@example(content=b"\xef\xbb\xbf")
@example(content=HEADER.encode())
@example(content=HEADER.encode("utf-16"))
@example(content=(HEADER + "\nearn,R-1,,,,a@example.com,1.00,,\n").encode("utf-16-le"))
@example(content=(HEADER + "\rearn,R-1,,,,a@example.com,1.00,,\r\n").encode())
@example(content=(HEADER + '\nearn,"R-1,,,,a@example.com,1.00,,\n').encode())
@example(content=(HEADER + "\nearn,R\xff1,,,,a@example.com,1.00,,\n").encode("latin-1"))
def test_the_parser_refuses_a_file_whole_or_returns_each_line_formed_or_with_its_errors(
    content: bytes,
) -> None:
    check_parsed(content)


# 2. Upload and processing -----------------------------------------------------------------------


@pytest.fixture
def identifiers(coalition: Coalition) -> dict[str, str]:
    member = MemberFactory.create(coalition=coalition, phone="+919800000001")
    return {**ref(member, "card"), **ref(member, "phone"), **ref(member)}


@pytest.fixture
def till_api(api_a: TillClient) -> TillClient:
    """Tenant A's till, with a client that answers a crash with a 500 instead of raising it."""
    return TillClient(till=api_a.till, key=api_a.key, client=Client(raise_request_exception=False))


def upload_and_process(api: TillClient, content: bytes, multipart: bool) -> list[BatchLine] | None:
    """The property of this file, for one upload; the batch's lines, or None if refused whole."""
    if multipart:
        from django.core.files.uploadedfile import SimpleUploadedFile

        response = api.client.post(
            "/api/v1/batches",
            {"file": SimpleUploadedFile("day.csv", content, content_type="text/csv")},
            headers={"Authorization": f"Api-Key {api.key}", "Idempotency-Key": "K-1"},
        )
    else:
        response = api.post("batches", raw=content, content_type="text/csv")
    assert response.status_code < 500, response.content
    if response.status_code != 202:
        # Refused whole: a problem naming the file, and nothing recorded.
        assert 400 <= response.status_code < 500
        assert response["Content-Type"] == PROBLEM, response.content
        body = response.json()
        assert body["status"] == response.status_code and body["detail"], body
        assert response.status_code != 422 or body["errors"].get("file"), body
        assert not Batch.objects.exists()
        return None
    journals_before = set(Journal.objects.values_list("pk", flat=True))
    batch = Batch.objects.get(public_id=response.json()["id"])
    batch_process(batch_id=batch.pk)  # an exception here escapes the worker: the test fails
    batch.refresh_from_db()
    lines = list(BatchLine.objects.filter(batch=batch).select_related("journal"))
    assert batch.status == "done" and len(lines) == batch.lines_total
    posted: set[int] = set()
    for line in lines:
        assert line.status in (LineStatus.ACCEPTED, LineStatus.REJECTED), line.line
        if line.status == LineStatus.REJECTED:
            assert line.problem and line.detail and line.journal is None, line.line
            continue
        # An accepted line is exactly what the ledger holds for it.
        journal = line.journal
        assert journal is not None
        assert (journal.kind, journal.receipt, journal.till_id) == (
            line.kind,
            line.receipt,
            api.till.pk,
        )
        if line.kind == JournalKind.EARN:
            assert journal.amount == line.amount
        else:
            assert (journal.points, journal.bill_amount) == (line.points, line.bill_amount)
        posted.add(journal.pk)
    new = set(Journal.objects.values_list("pk", flat=True)) - journals_before
    assert new == posted, "a journal no accepted line accounts for"
    assert (batch.lines_accepted, batch.lines_rejected) == (
        sum(line.status == LineStatus.ACCEPTED for line in lines),
        sum(line.status == LineStatus.REJECTED for line in lines),
    )
    problems = ledger_verify(api.till.tenant.coalition)
    assert problems == [], problems
    # Every line's result is readable by the till, in the documented shape.
    result = api.get(f"batches/{batch.public_id}")
    assert result.status_code == 200, result.content
    for item in result.json()["lines"]:
        if item["status"] == "accepted":
            assert item["transaction"] and item["type"] is None
        else:
            assert item["type"] and item["detail"], item
    return lines


@pytest.mark.slow
def test_any_upload_is_refused_whole_or_every_line_is_posted_or_refused(
    till_api: TillClient, identifiers: dict[str, str], example_savepoint: Any
) -> None:
    card = identifiers["card"]
    plain = f"{HEADER}\nearn,R-1,,{card},,,4000.00,,\nburn,R-2,,{card},,,,80,600.00\n".encode()

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(content=batch_files(identifiers), multipart=st.booleans())
    @example(content=plain, multipart=False)  # an accepted and a refused line
    @example(content=plain.replace(b"R-1,", b'"R-1,'), multipart=True)  # refused whole
    def run(content: bytes, multipart: bool) -> None:
        with example_savepoint():
            lines = upload_and_process(till_api, content, multipart)
        if lines is None:
            seen["refused whole"] += 1
        else:
            seen["accepted lines"] += any(line.journal_id for line in lines)
            seen["rejected lines"] += not all(line.journal_id for line in lines)

    seen = Counter[str]()
    run()
    # The property was checked on each outcome, not only on refusals.
    assert min(seen["refused whole"], seen["accepted lines"], seen["rejected lines"]) > 0, seen


def test_an_earn_beyond_what_the_ledger_can_hold_is_a_rejected_line(
    till_api: TillClient, identifiers: dict[str, str], example_savepoint: Any
) -> None:
    """The largest amount the file format takes, and points past a 32-bit integer."""
    card = identifiers["card"]
    content = "\n".join(
        [
            HEADER,
            f"earn,R-1,,{card},,,999999999999.99,,",
            f"burn,R-2,,{card},,,,{10**15 - 1},999999999999.99",
            f"burn,R-3,,{card},,,,{2**31},1.00",
            f"earn,R-4,,{card},,,100.00,,",
        ]
    ).encode()
    with example_savepoint():
        lines = upload_and_process(till_api, content, multipart=False)
        assert lines is not None
        assert [(line.status, line.problem) for line in lines] == [
            *[(LineStatus.REJECTED, "validation-error")] * 3,
            (LineStatus.ACCEPTED, ""),
        ]


# 3. Sizes Hypothesis would rarely reach -----------------------------------------------------


def test_a_1_mb_cell_is_a_clear_refusal_of_the_file(till_api, identifiers, example_savepoint):
    for where in ("receipt", "note"):
        big = "=" + "A" * (1 << 20)
        header = HEADER + ",note"
        row = f"earn,R-1,,{identifiers['card']},,,100.00,,,x"
        row = row.replace("R-1", big) if where == "receipt" else row[: -len("x")] + big
        content = f"{header}\n{row}\nearn,R-2,,{identifiers['card']},,,100.00,,,\n".encode()
        with example_savepoint():
            upload_and_process(till_api, content, multipart=False)
        with example_savepoint():
            upload_and_process(till_api, content, multipart=True)


@pytest.mark.slow
def test_a_file_just_under_10_mb_is_taken_and_each_line_decided(
    till_api, identifiers, example_savepoint
):
    """2,000 lines padded by an unknown `note` column to just under the limit: recorded in one
    request; the lines with a formula for an amount are rejected at once, the good ones posted."""
    card = identifiers["card"]
    header = HEADER + ",note"
    good = [f"earn,G-{n},,{card},,,100.00,,,ok" for n in range(3)]
    count = 2_000 - len(good)
    budget = MAX_BYTES - len(header) - sum(len(line) + 1 for line in good) - 1
    width = budget // count - len("earn,B-00000,,,,,=1+1,,,") - len(card) - 1
    bad = [f"earn,B-{n:05d},,{card},,,=1+1,,,{'n' * width}" for n in range(count)]
    content = "\n".join([header, *bad, *good]).encode() + b"\n"
    assert MAX_BYTES - 50_000 < len(content) <= MAX_BYTES
    with example_savepoint():
        upload_and_process(till_api, content, multipart=False)
        assert BatchLine.objects.filter(status=LineStatus.ACCEPTED).count() == len(good)
        assert BatchLine.objects.filter(status=LineStatus.REJECTED).count() == count
