"""Human output (rich tables; notices on stderr) or ``--json`` (one ``json.dumps`` on stdout).

Commands build plain dicts once and hand them here, so the table and the JSON
always show the same data. Reused by every command group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table


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


def notice(message: str) -> None:
    """A message for humans, on stderr (stdout stays parseable)."""
    stderr().print(message)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table; None cells show as a dim dash."""
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*("[dim]-[/dim]" if cell is None else _cell(cell) for cell in row))
    return result


def _cell(value: Any) -> str:
    from rich.markup import escape

    if isinstance(value, (list, tuple)):
        return escape(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return escape(", ".join(f"{k}={v}" for k, v in value.items()))
    return escape(str(value))


def show(data: Any, json_: bool, render: Callable[[Any], Any]) -> None:
    """Print ``data`` as JSON, or as whatever rich renderable ``render(data)`` builds."""
    if json_:
        emit_json(data)
    else:
        stdout().print(render(data))
