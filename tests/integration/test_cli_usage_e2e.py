"""``pennyworth usage``, ``budget``, ``report`` and ``ledger`` against the real local stack."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import openai
import pytest

from chalicelib.accounting.ledger import UNRECORDED_EVENT
from chalicelib.catalog import load_catalog
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.usage import TokenUsage
from tests.factories import usage_entry
from tests.integration.test_cli_e2e import pw, pw_json
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def call(dev_info: dict[str, Any], secret: str, text: str, **extra: Any) -> Decimal:
    client = openai.OpenAI(base_url=dev_info["base_url"], api_key=secret, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="nova-micro", messages=[{"role": "user", "content": text}], **extra
    )
    return Decimal(raw.headers["x-pennyworth-cost-usd"])


def test_a_newcomer_sees_cost_hits_a_budget_and_reads_the_report(project, dev_info) -> None:
    # GIVEN an admin logged in with the CLI and a key with a few calls on it
    pw("login", input="")
    key = pw_json("keys", "create", "--name", "usage-demo")
    spent = sum(call(dev_info, key["secret"], f"hello {n}") for n in range(3))

    # WHEN they read their usage THEN the CLI shows exactly what the responses cost (once aggregated)
    def mine() -> dict[str, Any]:
        rows = pw_json("usage", "--group-by", "key")["data"]
        return next((r for r in rows if r["group"] == key["key_id"]), {"requests": 0})

    row = eventually(mine, lambda r: r["requests"] >= 3)
    assert Decimal(row["cost_usd"]) == spent and row["requests"] == 3
    table = pw("usage", "--group-by", "key", "--chart").stdout
    assert "usage-demo" in table and "█" in table and f"${row['cost_usd']}" in table
    rows = list(csv.DictReader(io.StringIO(pw("usage", "--csv").stdout)))
    assert any(r["group"] == key["key_id"] and Decimal(r["cost_usd"]) == spent for r in rows)

    # WHEN the key's budget is (nearly) spent THEN the next call is a clear 429
    budget = (spent + Decimal("0.000001")).quantize(Decimal("0.000001"))  # budgets have at most 6 decimals
    pw("keys", "update", key["key_id"], "--budget", str(budget))
    with pytest.raises(openai.RateLimitError) as caught:
        call(dev_info, key["secret"], "one more", max_tokens=100)
    assert caught.value.type == "insufficient_quota" and "budget" in str(caught.value)

    # WHEN they run yesterday's report THEN it is sent once, and the notification can be read
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    first = pw("report", "run", "--day", yesterday)
    assert f"daily cost report for {yesterday}" in first.stdout
    assert "Sent: nothing new" not in first.output
    assert "Sent: nothing new" in pw("report", "run", "--day", yesterday).output
    corrected = pw("report", "run", "--day", yesterday, "--force")
    assert "corrected (revision 2)" in corrected.stdout and "Sent (revision 2): metrics" in corrected.output
    assert f"report for {yesterday}" in pw("report", "show", yesterday).stdout
    sqs = boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=dev_info["aws_endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=dev_info["report_inbox_url"],
                                                     MaxNumberOfMessages=10).get("Messages", [])]  # fmt: skip
    assert [b for b in bodies if yesterday in b]


def test_owner_budgets_and_reconcile_from_the_cli(project, dev_info, tmp_path) -> None:
    pw("login", input="")
    shown = pw_json("budget", "set", dev_info["admin_username"], "12.50")
    assert shown["monthly_budget_usd"] == "12.5"
    assert pw_json("budget", "show")["monthly_budget_usd"] == "12.5"
    assert pw_json("budget", "set", dev_info["admin_username"], "none")["monthly_budget_usd"] is None
    assert pw("budget", "set", dev_info["admin_username"], "lots", ok=False).exit_code == 1

    key = pw_json("keys", "create", "--name", "reconcile-demo")
    entry = usage_entry(
        request_id="cli-reconcile-1",
        key_id=key["key_id"],
        owner_sub=pw_json("keys", "show", key["key_id"])["owner"]["sub"],
        usage=TokenUsage(1000, 1000),
        prices=load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro").prices,
        at=datetime.now(UTC),
    )
    logs = tmp_path / "unrecorded.txt"
    logs.write_text("noise\n" + json.dumps({"event": UNRECORDED_EVENT, "entry": entry.to_json()}) + "\n")
    result = pw_json("ledger", "reconcile", str(logs))
    assert result["entries"] == 1 and result["recorded"] == 1 and Decimal(result["cost_usd"]) == entry.cost
    assert pw_json("ledger", "reconcile", str(logs))["recorded"] == 1  # idempotent
    # A bad line is refused by line number, the others still go in, and the exit status says so.
    bad = {**entry.to_json(), "request_id": "cli-reconcile-2", "cost": "-1"}
    logs.write_text(logs.read_text() + json.dumps({"event": UNRECORDED_EVENT, "entry": bad}) + "\n")
    refused = pw("ledger", "reconcile", str(logs), ok=False)
    assert refused.exit_code == 1 and f"{logs.name}:3: 'cost' must be from 0" in refused.stderr
