"""``pennyworth requests``: the request log, newest first (yours; everyone's for admins)."""

from __future__ import annotations

from typing import Any

import click

from cli import csvfile, output
from cli.client import next_cursor

#: The gateway's columns, in the order CSV writes them (chalicelib/admin/requests.py: COLUMNS).
CSV_COLUMNS = (
    "time",
    "request_id",
    "key_prefix",
    "key_name",
    "owner_email",
    "owner_sub",
    "team",
    "model",
    "protocol",
    "operation",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "latency_ms",
    "capped",
)
PAGE = 200  # the gateway's largest page


@click.command()
@click.option(
    "--from", "first", metavar="DAY|TIME", help="Earliest, e.g. 2026-11-01 or 2026-11-01T09:00:00Z [30 days ago]."
)
@click.option("--to", "last", metavar="DAY|TIME", help="Latest, inclusive [now].")
@click.option("--key", metavar="KEY", help="One key: its id or prefix (pw-…).")
@click.option("--owner", metavar="EMAIL|SUB", help="One person's requests (admins; everyone else sees their own).")
@click.option("--team", metavar="TEAM", help="One team's requests (admins, and the team's admins).")
@click.option("--model", metavar="MODEL", help="One model's requests.")
@click.option(
    "--status", type=click.Choice(["ok", "partial"]), help="Complete answers, or cut ones (billed as far as they got)."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many requests.")
@click.option("all_", "--all", is_flag=True, help="Every request in the range (for exports).")
@click.option("csv_", "--csv", is_flag=True, help="Print CSV on stdout (formula-looking cells defused).")
@output.json_option
@click.pass_obj
def requests(
    state: Any, first: str | None, last: str | None, key: str | None, owner: str | None, team: str | None,
    model: str | None, status: str | None, limit: int, all_: bool, csv_: bool, json_: bool,
) -> None:  # fmt: skip
    """Billed requests, newest first: time, key, person, team, model, protocol, tokens, cost, latency, status.

    No prompt or answer text is stored by the gateway, so none is shown.
    """
    if csv_ and json_:
        raise click.UsageError("Use either --csv or --json, not both.")
    query = {"from": first, "to": last, "key": key, "owner": owner, "team": team, "model": model, "status": status}
    rows, log = fetch(state.client(), query, None if all_ else limit)
    if csv_:
        output.echo_text(csvfile.rows_text(CSV_COLUMNS, rows))
    elif json_:
        output.emit_json(
            {"object": "list", "data": rows, "from": log["from"], "to": log["to"], "has_more": log["has_more"]}
        )
    else:
        output.print_table(_table(rows, log))
    if log["has_more"] and not json_:
        output.notice(f"More requests exist before {output.markup(log['searched_to'])}: raise --limit, or add --all.")


def fetch(client: Any, query: dict[str, Any], limit: int | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Up to ``limit`` rows (None: all) following the log's cursors; the last page's answer beside them."""
    rows: list[dict[str, Any]] = []
    params = {name: value for name, value in query.items() if value}
    last: dict[str, Any] = {}
    followed: set[str] = set()
    while limit is None or len(rows) < limit:
        params["limit"] = PAGE if limit is None else min(PAGE, limit - len(rows))
        last = client.get("/admin/requests", params)
        rows += last["data"]
        if not last.get("next_cursor"):
            break
        params["cursor"] = next_cursor(last, followed)
        if params.get("owner") and last.get("owner"):
            params["owner"] = last["owner"]  # the person's sub: no user-pool lookup for the next pages
    return rows, {**last, "has_more": bool(last.get("next_cursor"))}


def _table(rows: list[dict[str, Any]], log: dict[str, Any]) -> output.TableData:
    return output.table(
        f"Requests {log['from']} → {log['to']} (newest first; no prompt or answer is stored)",
        ("time", "key", "person", "team", "model", "protocol", "in", "out", "cost", "ms", "status", "request id"),
        [
            (
                row["time"], f"{row['key_prefix']} ({row['key_name']})" if row.get("key_name") else row["key_prefix"],
                row.get("owner_email") or row.get("owner_sub"), row.get("team"), row["model"], row.get("protocol"),
                row["input_tokens"], row["output_tokens"], f"${row['cost_usd']}", row["latency_ms"], row["status"],
                row["request_id"],
            )
            for row in rows
        ],
    )  # fmt: skip
