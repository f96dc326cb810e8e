"""``pennyworth requests`` against the real local stack: the request log as a table, JSON and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import openai
import pytest

from tests.integration.test_cli_e2e import pw, pw_json
from tests.waiting import eventually

pytestmark = pytest.mark.integration

FORMULA_NAME = '=HYPERLINK("https://evil.example","click")'


def test_the_request_log_lists_exports_and_filters_what_was_billed(project: Any, dev_info: dict[str, Any]) -> None:
    # GIVEN a key named like a spreadsheet formula, used twice from the openai SDK
    pw("login", input="")
    key = pw_json("keys", "create", "--name", FORMULA_NAME)
    client = openai.OpenAI(base_url=dev_info["base_url"], api_key=key["secret"], max_retries=0, timeout=30)
    ids = []
    for n in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="nova-micro", messages=[{"role": "user", "content": f"request log {n}"}]
        )
        ids.append(raw.headers["x-request-id"])
    # WHEN the admin reads the log of that key THEN both requests are there, newest first, as billed
    log = eventually(lambda: pw_json("requests", "--key", key["prefix"]), lambda log: len(log["data"]) >= 2)
    assert sorted(row["request_id"] for row in log["data"]) == sorted(ids)  # within a second: by id
    assert {row["protocol"] for row in log["data"]} == {"openai"}
    assert {row["key_name"] for row in log["data"]} == {FORMULA_NAME}
    # AND the CSV export keeps the name as text a spreadsheet will not run
    rows = list(csv.DictReader(io.StringIO(pw("requests", "--key", key["key_id"], "--csv", "--all").stdout)))
    assert [row["request_id"] for row in rows] == [row["request_id"] for row in log["data"]]
    assert {row["key_name"] for row in rows} == {"'" + FORMULA_NAME}
    assert all(row["cost_usd"] and not row["cost_usd"].startswith("'") for row in rows)
    # AND the table says nothing of what was asked, because nothing of it is stored
    table = pw("requests", "--key", key["key_id"]).stdout
    assert ids[0] in table and "request log 0" not in table
    # AND a filter that matches nothing answers an empty log, not an error
    assert pw_json("requests", "--key", key["key_id"], "--status", "partial")["data"] == []
