"""CSV cells a spreadsheet will not run (CSV or formula injection, OWASP).

A spreadsheet opening a CSV file reads a cell that begins with `=`, `+`, `-` or `@` as a
formula, and a leading TAB or CR can hide one; a tenant name, a receipt or a shopper's name can
hold any of them. Every CSV the product writes goes through `csv_writer` (or `csv_cell` for
import-export's datasets): such a text cell gets a leading apostrophe, which spreadsheets take
as "this is text" and do not show. Numbers stay numbers: an int, a Decimal, or a text that is a
plain decimal number (`-120.00`, `-50`, `+919800000001`), which no spreadsheet can run.

`csv_uncell` undoes `csv_cell` on import, so a file exported here reads back to the same values.
"""

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
QUOTE = "'"
# A plain decimal, as the product writes amounts and points, or an E.164 phone number: digits
# (and one sign) cannot carry a formula. No exponent, no spaces, nothing else.
NUMBER = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")


def csv_cell(value: Any) -> Any:
    """`value` as a cell no spreadsheet will read as a formula; anything but text unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return QUOTE + value
    if value.startswith(QUOTE):
        return QUOTE + value  # so that `csv_uncell` can tell it from a quoted formula
    return value


def csv_uncell(value: str) -> str:
    """The text `csv_cell` was given: a leading apostrophe it added is dropped."""
    if value.startswith(QUOTE) and value[1:].startswith((*FORMULA_START, QUOTE)):
        return value[1:]
    return value


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


class SafeWriter:
    """`csv.writer`, with every cell passed through `csv_cell`."""

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out: Any, **kwargs: Any) -> SafeWriter:
    """A `csv.writer(out, **kwargs)` that writes no formula."""
    return SafeWriter(csv.writer(out, **kwargs))
