"""``pennyworth requests``: paging the log, the table, and the CSV (the HTTP side: tests/integration)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from click.testing import CliRunner

from cli import requests as cli_requests
from cli.main import cli

ROW = {
    "object": "request", "time": "2026-11-26T10:00:00Z", "request_id": "r1", "key_id": "aaaaaaaaaaaa",
    "key_prefix": "pw-aaaaaaaaaaaa", "key_name": "=cmd|' /C calc'!A0", "owner_sub": "s1",
    "owner_email": "a@example.com",
    "team": None, "model": "nova-micro", "protocol": "openai", "operation": "chat", "status": "ok",
    "input_tokens": 10, "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0,
    "cost_usd": "0.0000031", "latency_ms": 120, "capped": False,
}  # fmt: skip


class FakeClient:
    """Answers the log in pages of ``size`` rows out of ``total``, following cursors."""

    def __init__(self, total: int, size: int = 3) -> None:
        self.total, self.size, self.calls = total, size, []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        assert path == "/admin/requests"
        self.calls.append(dict(params))
        start = int(params.get("cursor", 0))
        end = min(self.total, start + min(self.size, params["limit"]))
        data = [{**ROW, "request_id": f"r{n}"} for n in range(start, end)]
        more = end < self.total
        return {"object": "list", "data": data, "has_more": more, "next_cursor": str(end) if more else None,
                "from": "2026-10-27T10:00:00Z", "to": "2026-11-26T10:00:00Z",
                "searched_to": "2026-11-01T00:00:00Z"}  # fmt: skip


def run(client: FakeClient, *args: str) -> Any:
    from unittest import mock

    from cli.main import State

    with mock.patch.object(State, "client", lambda self: client):
        return CliRunner().invoke(cli, ["requests", *args], catch_exceptions=False)


def test_fetch_follows_cursors_up_to_the_limit_or_to_the_end() -> None:
    client = FakeClient(total=10)
    rows, log = cli_requests.fetch(client, {"model": "nova-micro", "owner": None}, 7)
    assert [r["request_id"] for r in rows] == [f"r{n}" for n in range(7)] and log["has_more"]
    assert client.calls[0] == {"model": "nova-micro", "limit": 7} and client.calls[-1]["limit"] == 1
    rows, log = cli_requests.fetch(FakeClient(total=10), {}, None)
    assert len(rows) == 10 and not log["has_more"]


class RoundClient(FakeClient):
    """A gateway whose cursor goes round: every page says to go on from the same place."""

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        return {**super().get(path, {**params, "cursor": 0}), "has_more": True, "next_cursor": "3"}


def test_a_cursor_that_goes_round_stops_the_listing_with_a_clear_error() -> None:
    import pytest

    from cli.client import GatewayClient
    from cli.errors import CliError

    with pytest.raises(CliError, match="same page cursor twice"):
        cli_requests.fetch(RoundClient(total=10), {}, None)
    gateway = GatewayClient.__new__(GatewayClient)  # no profile needed: get is the fake's
    gateway.get = lambda path, params: RoundClient(total=10).get("/admin/requests", {"limit": 3})  # type: ignore[method-assign]
    with pytest.raises(CliError, match="same page cursor twice"):
        list(gateway.pages("/admin/keys"))
    result = run(RoundClient(total=10), "--all")
    assert result.exit_code == 1 and "same page cursor twice" in result.output


def test_csv_writes_every_column_and_defuses_formulas() -> None:
    result = run(FakeClient(total=2), "--csv", "--all")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(cli_requests.CSV_COLUMNS)
    assert rows[0]["key_name"] == "'=cmd|' /C calc'!A0" and rows[0]["cost_usd"] == "0.0000031"


def test_json_is_one_document_and_the_table_says_when_more_exist() -> None:
    result = run(FakeClient(total=5), "--json", "--limit", "2")
    document = json.loads(result.stdout)
    assert [r["request_id"] for r in document["data"]] == ["r0", "r1"] and document["has_more"]
    table = run(FakeClient(total=5), "--limit", "2")
    assert "\tr1\n" in table.stdout  # a pipe gets tab-separated rows
    assert "More requests exist" in table.stderr
    rows, log = cli_requests.fetch(FakeClient(total=1), {}, 1)
    assert "no prompt or answer is stored" in cli_requests._table(rows, log).title


def test_csv_and_json_together_are_a_usage_error() -> None:
    assert run(FakeClient(total=1), "--csv", "--json").exit_code == 2


def test_the_cli_writes_the_gateways_columns_in_the_gateways_order() -> None:
    # The CLI installs without chalicelib, so it keeps its own copy of the gateway's list.
    from chalicelib.admin.requests import COLUMNS

    assert cli_requests.CSV_COLUMNS == COLUMNS
