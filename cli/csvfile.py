"""The one CSV writer of every export (``usage --csv``, ``keys export``, ``keys import --secrets-out``).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula: a key named ``=HYPERLINK("https://evil.example",
"Click")`` becomes a link the moment an admin opens the export. So such a cell
is written with a leading ``'`` (shown as text, never run), as the web
console's download does (``chalicelib/console/static/dom.js: toCsv``, the same
rule): numbers such as ``-5`` and ``-0.25`` stay as they are.

A cell that already starts with ``'`` before one of those characters gets one
more ``'``, so ``read_cell`` gives back exactly what was written: an exported
key file imports as the same names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Cells a spreadsheet would run (after any quotes that defuse them already), unless a plain number.
FORMULA = re.compile(r"^'*[=+\-@\t\r]")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def defuse(value: Any) -> str:
    """``value`` as a CSV cell a spreadsheet shows as text: None is empty, a formula gets a leading ``'``."""
    text = "" if value is None else str(value)
    if FORMULA.match(text) and not NUMBER.match(text):
        return f"'{text}"
    return text


def read_cell(text: str) -> str:
    """A cell as it was before ``defuse``: one leading ``'`` fewer on a defused formula."""
    return text[1:] if text.startswith("'") and FORMULA.match(text[1:]) else text


def rows_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A header of ``columns``, then one line per row (missing and None cells empty), every cell defused."""
    buffer = io.StringIO()
    writer = Writer(buffer)
    writer.row(columns)
    for row in rows:
        writer.row([row.get(column) for column in columns])
    return buffer.getvalue()


class Writer:
    """Writes defused rows to an open text file (opened with ``newline=""``)."""

    def __init__(self, handle: Any) -> None:
        self._writer = csv.writer(handle, lineterminator="\n")

    def row(self, cells: Iterable[Any]) -> None:
        self._writer.writerow([defuse(cell) for cell in cells])
