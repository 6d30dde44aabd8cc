"""The batch file format of `till-api.md`: UTF-8 CSV with a header row, earn and burn lines.

`batchfile_parse` checks the file as a whole (encoding, header, size) and each line's shape; a
line whose shape is wrong is kept with its errors, so it is reported, never silently dropped.
Business rules (balance, duplicate receipt, tenant) are checked when the line is posted.
"""

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.utils.dateparse import parse_datetime

from coalition.api.fields import FORBIDDEN_FIELDS, MONEY_RE, RFC3339_RE
from coalition.errors import InvalidRequest

MAX_BYTES = 10 * 1024 * 1024
MAX_LINES = 50_000
COLUMNS = (
    "kind",
    "receipt",
    "occurred_at",
    "card",
    "phone",
    "email",
    "amount",
    "points",
    "bill_amount",
)
REQUIRED_COLUMNS = ("kind", "receipt")
IDENTIFIERS = ("card", "phone", "email")
INTEGER_RE = re.compile(r"-?[0-9]{1,15}")
# Field lengths as the database keeps them; longer is a line error, not a crash.
MAX_LENGTHS = {"receipt": 64, "card": 64, "phone": 64, "email": 254}


@dataclass
class ParsedLine:
    line: int
    kind: str = ""
    receipt: str = ""
    occurred_at: datetime | None = None
    card: str = ""
    phone: str = ""
    email: str = ""
    amount: Decimal | None = None
    points: int | None = None
    bill_amount: Decimal | None = None
    errors: dict[str, str] = field(default_factory=dict)


def batchfile_parse(content: bytes) -> list[ParsedLine]:
    """Every data line of `content`, numbered as in the file (the header is line 1).

    Raises InvalidRequest (field `file`) when the file as a whole cannot be taken.
    """
    if len(content) > MAX_BYTES:
        raise InvalidRequest("A batch file is at most 10 MB.", field="file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The file is not UTF-8 (byte {exc.start} cannot be read).", field="file"
        ) from exc
    if "\x00" in text:
        raise InvalidRequest("The file contains NUL bytes; it is not a CSV file.", field="file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        raise InvalidRequest("The file is empty; a header row is required.", field="file") from None
    except csv.Error as exc:
        raise InvalidRequest(f"Line 1: {exc}.", field="file") from exc
    _check_header(header)
    lines: list[ParsedLine] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # a blank line is not a transaction
            if len(lines) >= MAX_LINES:
                raise InvalidRequest(f"The file has more than {MAX_LINES} lines.", field="file")
            lines.append(_parse_row(reader.line_num, header, row))
    except csv.Error as exc:
        raise InvalidRequest(f"Line {reader.line_num}: {exc}.", field="file") from exc
    if not lines:
        raise InvalidRequest("The file has a header but no lines.", field="file")
    return lines


def _check_header(header: list[str]) -> None:
    named = sorted(FORBIDDEN_FIELDS & set(header))
    if named:
        raise InvalidRequest(
            f"Columns {', '.join(named)}: the till's key decides the tenant and till.", field="file"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InvalidRequest(
            f"The header lacks {', '.join(missing)}; columns are {', '.join(COLUMNS)}.",
            field="file",
        )
    if not any(name in header for name in IDENTIFIERS):
        raise InvalidRequest("The header needs a card, phone or email column.", field="file")
    duplicated = sorted({name for name in header if header.count(name) > 1 and name in COLUMNS})
    if duplicated:
        raise InvalidRequest(f"Columns repeated: {', '.join(duplicated)}.", field="file")


def _parse_row(number: int, header: list[str], row: list[str]) -> ParsedLine:
    parsed = ParsedLine(line=number)
    if len(row) != len(header):
        parsed.errors["line"] = f"Has {len(row)} fields; the header has {len(header)}."
        return parsed
    cells = {
        name: value.strip() for name, value in zip(header, row, strict=True) if name in COLUMNS
    }
    for name, limit in MAX_LENGTHS.items():
        if len(cells.get(name, "")) > limit:
            parsed.errors[name] = f"At most {limit} characters."
            cells[name] = ""
    parsed.kind = cells.get("kind", "").lower()
    parsed.receipt = cells.get("receipt", "")
    parsed.card, parsed.phone, parsed.email = (cells.get(name, "") for name in IDENTIFIERS)
    if parsed.kind not in ("earn", "burn"):
        parsed.errors["kind"] = "Must be earn or burn."
    if not parsed.receipt:
        parsed.errors.setdefault("receipt", "A receipt number is required.")
    if sum(1 for name in IDENTIFIERS if cells.get(name)) != 1:
        parsed.errors["member"] = "Fill exactly one of card, phone or email."
    parsed.occurred_at = _time(cells.get("occurred_at", ""), parsed.errors)
    if parsed.kind == "earn":
        parsed.amount = _money("amount", cells, parsed.errors)
        for name in ("points", "bill_amount"):
            if cells.get(name):
                parsed.errors[name] = "Only burn lines carry points and a bill amount."
    elif parsed.kind == "burn":
        parsed.points = _integer("points", cells, parsed.errors)
        parsed.bill_amount = _money("bill_amount", cells, parsed.errors)
        if cells.get("amount"):
            parsed.errors["amount"] = "Only earn lines carry an amount."
    return parsed


def _time(value: str, errors: dict[str, str]) -> datetime | None:
    if not value:
        return None
    parsed = None
    if RFC3339_RE.fullmatch(value):
        try:
            parsed = parse_datetime(value.upper())
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors["occurred_at"] = "An RFC 3339 time with an offset, like 2026-11-22T18:30:00+05:30."
        return None
    # In UTC, as the live endpoint takes it: PostgreSQL refuses offsets beyond 15:59.
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        errors["occurred_at"] = "This time cannot be expressed in UTC."
        return None


def _money(name: str, cells: dict[str, str], errors: dict[str, str]) -> Decimal | None:
    value = cells.get(name, "")
    if not MONEY_RE.fullmatch(value):
        errors[name] = 'A decimal with at most two places, like "4000.00".'
        return None
    return Decimal(value)


def _integer(name: str, cells: dict[str, str], errors: dict[str, str]) -> int | None:
    value = cells.get(name, "")
    if not INTEGER_RE.fullmatch(value):
        errors[name] = "A whole number is required."
        return None
    return int(value)
