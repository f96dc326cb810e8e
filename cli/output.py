"""Human output (rich tables; notices on stderr), ``--json``, and tab-separated rows when piped.

Commands build plain dicts once and hand them here, so the table and the JSON
always show the same data. Reused by every command group.

Everything shown comes from the gateway, and so, in the end, from whoever
named a key or wrote a reason: ``safe`` shows control and bidi-override
characters as escapes (``\\x1b``, ``\\u202e``) instead of letting them drive
the terminal, and rich markup in the data is escaped too. ``--json`` needs
no help: ``json.dumps`` escapes them itself.

On a terminal a table is a rich table. When stdout is not a terminal (a pipe,
a file) a table is tab-separated values instead: a header line, then one line
per row, every value whole, never wrapped (a secret split across two lines
is a lost secret).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from chalicelib.shared.text import visible

#: TSV's own escapes (tab, newline, backslash) on top of the unsafe characters.
_TSV_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def json_option[F: Callable[..., Any]](command: F) -> F:
    """Add ``--json`` to a command (passed as ``json_``)."""
    return click.option("json_", "--json", is_flag=True, help="Print JSON (one document on stdout) for scripts.")(
        command
    )


def stdout() -> Console:
    # Built per call: click's test runner swaps sys.stdout between invocations.
    return Console(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def is_terminal() -> bool:
    """True when stdout is a terminal (tables), False for a pipe or a file (TSV)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def safe(value: Any) -> str:
    """``value`` as text a terminal shows as it is: control and bidi characters become escapes."""
    return visible(str(value))


def markup(value: Any) -> str:
    """``value`` for a rich string: terminal-safe, and its ``[…]`` shown literally."""
    return escape(safe(value))


def notice(message: str) -> None:
    """A message for humans, on stderr (stdout stays parseable). Pass data in through ``markup``."""
    stderr().print(message)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def echo_text(text: str) -> None:
    """A text block from the gateway (CSV, a report) on stdout: escaped on a terminal, exact in a pipe."""
    if is_terminal():
        text = "\n".join(safe(line) for line in text.split("\n"))
    click.echo(text, nl=False)


@dataclass
class TableData:
    """Rows to show: a rich table on a terminal, TSV otherwise. ``panel``: one record in a box."""

    title: str | None
    columns: Sequence[str]
    rows: list[Sequence[Any]]
    panel: bool = False

    def __rich__(self) -> Table | Panel:
        result = Table(title=markup(self.title) if self.title and not self.panel else None, title_justify="left")
        for column in self.columns:
            result.add_column(markup(column), overflow="fold")
        for row in self.rows:
            result.add_row(*("[dim]-[/dim]" if cell is None else markup(_text(cell)) for cell in row))
        if not self.panel:
            return result
        result.show_header = False
        return Panel(result, title=markup(self.title) if self.title else None, expand=False)

    def tsv(self) -> str:
        lines = [self.columns, *self.rows]
        return "".join("\t".join(_tsv_cell(cell) for cell in line) + "\n" for line in lines)


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, panel: bool = False
) -> TableData:
    """Rows to show; None cells are a dim dash on a terminal and empty in TSV."""
    return TableData(title, list(columns), [list(row) for row in rows], panel)


def print_table(data: TableData, *, err: bool = False) -> None:
    """``data`` on stdout (``err``: stderr): a rich table on a terminal, TSV otherwise."""
    if is_terminal():
        (stderr() if err else stdout()).print(data)
    else:
        click.echo(data.tsv(), nl=False, err=err)


def show(data: Any, json_: bool, render: Callable[[Any], Any]) -> None:
    """Print ``data`` as JSON, or as what ``render(data)`` builds (a ``TableData`` or a rich renderable)."""
    if json_:
        emit_json(data)
        return
    rendered = render(data)
    if isinstance(rendered, TableData):
        print_table(rendered)
    else:
        stdout().print(rendered)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _tsv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = "".join(_TSV_ESCAPES.get(char, char) for char in _text(value))
    return safe(text)
