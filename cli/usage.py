"""``pennyworth usage``, ``budget``, ``report`` and ``ledger``: spend, limits and the bill."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from cli import csvfile, output
from cli.errors import CliError

GROUPS = ("key", "owner", "team", "model", "day", "price")
RECONCILE_BATCH = 1_000  # lines per request, far below the gateway's 10,000
#: Bytes of JSON per request: well under the gateway's 5 MB body limit (PENNYWORTH_MAX_BODY_BYTES).
RECONCILE_BATCH_BYTES = 1_000_000
#: The longest line a CloudWatch Logs event can be (256 KB): anything longer was not exported from it.
MAX_LOG_LINE_BYTES = 256 * 1024
CSV_COLUMNS = (
    "group",
    "name",
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
_BAR = 40


@click.command()
@click.option("--from", "first", metavar="YYYY-MM-DD", help="First day (UTC) [default: the 1st of this month].")
@click.option("--to", "last", metavar="YYYY-MM-DD", help="Last day (UTC), inclusive [default: today].")
@click.option(
    "--group-by",
    type=click.Choice(GROUPS),
    default="key",
    show_default=True,
    help="One row per … (price: per model price version, with the rates it billed at).",
)
@click.option("--owner", metavar="EMAIL|SUB", help="Admins: one owner's usage (others always see their own).")
@click.option("--team", metavar="TEAM", help="One team's usage: what was charged to it (its admins and admins).")
@click.option("--csv", "csv_", is_flag=True, help="Print CSV on stdout.")
@click.option("--chart", is_flag=True, help="Draw cost per row as a bar chart in the terminal.")
@output.json_option
@click.pass_obj
def usage(
    state: Any, first: str | None, last: str | None, group_by: str, owner: str | None, team: str | None,
    csv_: bool, chart: bool, json_: bool,
) -> None:  # fmt: skip
    """Tokens, requests and cost (exact USD) over a date range: yours, a team's, or everyone's for admins."""
    if csv_ and json_:
        raise click.UsageError("Use either --csv or --json, not both.")
    query = {"from": first, "to": last, "group_by": group_by, "owner": owner, "team": team}
    report = state.client().get("/admin/usage", query)
    if csv_:
        output.echo_text(to_csv(report))
    elif json_:
        output.emit_json(report)
    else:
        output.print_table(usage_table(report))
        if chart:
            output.stdout().print(bar_chart(report))


def usage_table(report: dict[str, Any]) -> output.TableData:
    if report.get("team"):
        who = f"team {report['team']['name']}"
    else:
        who = "everyone" if report["scope"] == "all" else report.get("scope_email") or report["scope"]
    rows = [
        (_label(row), row["requests"], row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
         f"${row['cost_usd']}")
        for row in report["data"]
    ]  # fmt: skip
    total = report["total"]
    rows.append(("total", total["requests"], total["input_tokens"], total["output_tokens"],
                 total["cache_read_tokens"], f"${total['cost_usd']}"))  # fmt: skip
    return output.table(
        f"Usage by {report['group_by']}, {report['from']} → {report['to']} ({who})",
        (report["group_by"], "requests", "input tokens", "output tokens", "cached tokens", "cost"),
        rows,
    )


def bar_chart(report: dict[str, Any]) -> Group:
    """Cost per row as horizontal bars (a terminal plot: no image viewer needed)."""
    rows = report["data"]
    if not rows:
        return Group(Text("No usage in this range.", style="dim"))
    peak = max(Decimal(row["cost_usd"]) for row in rows) or Decimal(1)
    width = max(len(output.safe(_label(row))) for row in rows)
    lines = [Text(f"Cost by {report['group_by']}", style="bold")]
    for row in rows:
        cost = Decimal(row["cost_usd"])
        filled = int(round(cost / peak * _BAR)) if cost else 0
        line = Text(f"{output.safe(_label(row)):<{width}} ")
        line.append("█" * filled or "·", style="cyan")
        line.append(f" ${row['cost_usd']}")
        lines.append(line)
    return Group(*lines)


def to_csv(report: dict[str, Any]) -> str:
    rows = ({**row, "name": row.get("name") or row.get("owner_email") or ""} for row in report["data"])
    return csvfile.rows_text(CSV_COLUMNS, rows)


def _label(row: dict[str, Any]) -> str:
    if "price_version" in row:
        # A model's price version with the rates it billed at: a bill explained after prices change.
        prices = row.get("prices") or {}
        rates = f" (${prices['input']} in / ${prices['output']} out per M)" if prices else ""
        return f"{row['model']} v{row['price_version']}{rates}"
    if "name" in row and "prefix" not in row and row.get("name"):
        return f"{row['name']} ({row['group']})" if row["group"] != "none" else str(row["name"])
    if row.get("prefix"):
        return f"{row['prefix']} ({row['name']})" if row.get("name") else row["prefix"]
    return str(row.get("owner_email") or row["group"])  # owners by e-mail, as people know them


@click.group()
def budget() -> None:
    """Owner budgets: one monthly USD limit across all of an owner's keys."""


@budget.command("show")
@click.argument("owner", default="me")
@output.json_option
@click.pass_obj
def budget_show(state: Any, owner: str, json_: bool) -> None:
    """An owner's monthly budget and this month's spend (yours by default)."""
    output.show(state.client().get(f"/admin/owners/{owner}/budget"), json_, _budget_table)


@budget.command("set")
@click.argument("owner")
@click.argument("usd")
@output.json_option
@click.pass_obj
def budget_set(state: Any, owner: str, usd: str, json_: bool) -> None:
    """Set OWNER's (email or sub) monthly budget to USD, e.g. 25.00; "none" removes it. Admins only."""
    amount = None if usd.lower() in ("none", "null", "unlimited") else usd
    output.show(state.client().put(f"/admin/owners/{owner}/budget", {"monthly_budget_usd": amount}), json_,
                _budget_table)  # fmt: skip


def _budget_table(view: dict[str, Any]) -> output.TableData:
    money = lambda v: None if v is None else f"${v}"  # noqa: E731 - a two-use formatter
    return output.table(
        f"Budget of {view.get('owner_email') or view['owner']} for {view['period']}",
        ("monthly budget", "spent", "remaining"),
        [(money(view["monthly_budget_usd"]), money(view["spent_usd"]), money(view["remaining_usd"]))],
    )


@click.group()
def report() -> None:
    """The daily cost report (admins)."""


@report.command("run")
@click.option("--day", metavar="YYYY-MM-DD", help="The day to report (UTC) [default: yesterday].")
@click.option("--force", is_flag=True, help="Send a corrected revision of a day already reported.")
@output.json_option
@click.pass_obj
def report_run(state: Any, day: str | None, force: bool, json_: bool) -> None:
    """Run the daily report now: metrics, e-mail, Slack — once per day, or again as a correction with --force."""
    body: dict[str, Any] = {"day": day} if day else {}
    if force:
        body["force"] = True
    result = state.client().post("/admin/reports/daily", body)
    if json_:
        output.emit_json(result)
        return
    output.echo_text(result["notification"])
    sent = ", ".join(result["sent"]) or "nothing new (this day was already reported; --force sends a correction)"
    revision = f" (revision {result['revision']})" if result.get("revision", 1) > 1 else ""
    output.notice(f"Sent{revision}: {output.markup(sent)}.")


@report.command("show")
@click.argument("day")
@output.json_option
@click.pass_obj
def report_show(state: Any, day: str, json_: bool) -> None:
    """Show the stored report of DAY (YYYY-MM-DD)."""
    result = state.client().get(f"/admin/reports/daily/{day}")
    if json_:
        output.emit_json(result)
    else:
        output.echo_text(result["notification"])


def reconcile_batches(
    numbered: list[tuple[int, str]],
) -> tuple[list[list[tuple[int, str]]], list[tuple[int, str]]]:
    """``numbered`` lines cut into requests the gateway takes, and the lines too long to be log events.

    A batch holds at most ``RECONCILE_BATCH`` lines and ``RECONCILE_BATCH_BYTES`` of JSON, so a
    file of long lines never meets the gateway's body limit (a 413 half-way through the file).
    """
    batches: list[list[tuple[int, str]]] = []
    too_long: list[tuple[int, str]] = []
    batch: list[tuple[int, str]] = []
    size = len('{"lines": []}')
    for number, line in numbered:
        encoded = len(json.dumps(line)) + 2  # the string and its ", " separator
        if len(line.encode()) > MAX_LOG_LINE_BYTES:
            too_long.append((number, line))
            continue
        if batch and (len(batch) >= RECONCILE_BATCH or size + encoded > RECONCILE_BATCH_BYTES):
            batches.append(batch)
            batch, size = [], len('{"lines": []}')
        batch.append((number, line))
        size += encoded
    if batch:
        batches.append(batch)
    return batches, too_long


@click.group()
def ledger() -> None:
    """The usage ledger (admins)."""


@ledger.command("reconcile")
@click.argument("log_file", type=click.File("r"))
@output.json_option
@click.pass_obj
def reconcile(state: Any, log_file: Any, json_: bool) -> None:
    """Replay usage that failed to persist, from log lines in LOG_FILE ("-" for stdin).

    Lines without a "usage_unrecorded" event are skipped; each entry is validated, and bad
    lines are reported by line number (exit status 1). Replaying is idempotent.
    """
    numbered = [(number, line.rstrip("\n")) for number, line in enumerate(log_file, start=1) if line.strip()]
    if not numbered:
        raise CliError(f"{log_file.name} has no lines to replay.")
    totals: dict[str, Any] = {
        "lines": 0,
        "entries": 0,
        "recorded": 0,
        "failed": [],
        "rejected": [],
        "skipped": 0,
        "cost_usd": Decimal(0),
    }
    batches, too_long = reconcile_batches(numbered)
    totals["lines"] += len(too_long)
    too_long_reason = f"longer than a CloudWatch log event ({MAX_LOG_LINE_BYTES} bytes)"
    totals["rejected"] += [{"line": n, "request_id": None, "error": too_long_reason} for n, _ in too_long]
    for batch in batches:
        result = state.client().post("/admin/ledger/reconcile", {"lines": [line for _, line in batch]})
        for name in ("lines", "entries", "recorded", "skipped"):
            totals[name] += result.get(name, 0)
        totals["failed"] += result["failed"]
        # The gateway numbers lines within one request; report them as lines of the file.
        totals["rejected"] += [{**r, "line": batch[r["line"] - 1][0]} for r in result.get("rejected", [])]
        totals["cost_usd"] += Decimal(result["cost_usd"])
    totals["cost_usd"] = str(totals["cost_usd"])
    totals["rejected"].sort(key=lambda r: r["line"])
    output.show(totals, json_, lambda t: output.table(
        "Ledger reconcile", ("lines read", "usage entries", "recorded", "failed", "rejected", "cost replayed"),
        [(t["lines"], t["entries"], t["recorded"], len(t["failed"]), len(t["rejected"]), f"${t['cost_usd']}")],
    ))  # fmt: skip
    if not json_:
        for rejected in totals["rejected"]:
            # One unwrapped FILE:LINE: reason line each, as compilers do (editors jump to them). The
            # reason quotes the line with repr(), so no control character reaches the terminal.
            click.echo(output.safe(f"{log_file.name}:{rejected['line']}: {rejected['error']}"), err=True)
    problems = []
    if totals["rejected"]:
        problems.append(f"{len(totals['rejected'])} lines were refused (nothing of them was written)")
    if totals["failed"]:
        problems.append(f"{len(totals['failed'])} entries could not be stored; run the same command again later")
    if problems:
        raise CliError("; ".join(problems) + ".")
