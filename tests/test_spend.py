"""GET /admin/spend: "My spend" in one call, the same figures as the three usage reports it replaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.accounting.ledger import Ledger
from chalicelib.shared.usage import TokenUsage
from tests.admin_fixtures import Api
from tests.cognito_helpers import User
from tests.factories import usage_entry

NOW = datetime.now(UTC).replace(microsecond=0)


def test_a_month_of_spend_is_the_three_usage_reports_and_the_budget(
    as_alice: Api, as_admin: Api, alice: User, usage_table: Any, drain: Any
) -> None:
    keys = [as_alice.call("post", "/admin/keys", {"name": f"k{n}"}).json_body for n in range(2)]
    ledger = Ledger(usage_table)
    for n in range(9):
        key = keys[n % 2]
        ledger.record(
            usage_entry(
                request_id=f"r{n}",
                key_id=key["key_id"],
                owner_sub=key["owner"]["sub"],
                model=("nova-micro", "claude-haiku-4-5")[n % 3 == 0],
                usage=TokenUsage(input_tokens=100 + n, output_tokens=n),
                at=NOW - timedelta(minutes=n),
            )  # fmt: skip
        )
    drain(usage_table)
    as_admin.call("put", f"/admin/owners/{alice.email}/budget", {"monthly_budget_usd": "5"})
    spend = as_alice.call("get", "/admin/spend").json_body
    usage = {
        group: as_alice.call("get", f"/admin/usage?group_by={group}&owner={alice.sub}").json_body
        for group in ("day", "model", "key")
    }
    assert spend["month"] == NOW.strftime("%Y-%m") and spend["owner_email"] == alice.email
    assert spend["by_day"] == usage["day"]["data"] and spend["by_model"] == usage["model"]["data"]
    assert spend["by_key"] == usage["key"]["data"] and spend["total"] == usage["day"]["total"]
    assert spend["total"]["requests"] == 9 and {r["group"] for r in spend["by_model"]} == {
        "nova-micro",
        "claude-haiku-4-5",
    }
    assert spend["budget"]["monthly_budget_usd"] == "5" and spend["budget"]["spent_usd"] == spend["total"]["cost_usd"]
    # An admin reads anyone's; last month has no budget figure (budgets are this month's)
    assert as_admin.call("get", f"/admin/spend?owner={alice.email}").json_body["by_key"] == spend["by_key"]
    last_month = (NOW.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    assert as_alice.call("get", f"/admin/spend?month={last_month}").json_body["budget"] is None


def test_spend_refuses_other_people_and_bad_months(as_alice: Api, as_bob: Api) -> None:
    refused = as_alice.call("get", "/admin/spend?owner=bob@example.com")
    assert refused.status_code == 403 and refused.json_body["error"]["code"] == "admin_only"
    next_month = (NOW.replace(day=28) + timedelta(days=4)).strftime("%Y-%m")
    for month in ("2026-13", "nov", "2019-12", next_month, "2026-1"):
        answer = as_alice.call("get", f"/admin/spend?month={month}")
        assert answer.status_code == 400 and answer.json_body["error"]["param"] == "month", month
