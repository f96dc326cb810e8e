"""Guardrail prices as operator data: set by admins through the API, versioned, audited, billed to the last digit.

Every expected figure is the price an admin typed (USD per 1,000 text units) times the units the
emulator's guardrail reported, never a figure computed by the code under test.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.accounting.ledger import entry_from_item
from chalicelib.catalog.prices import guardrail_prices as map_prices
from chalicelib.shared.usage import UsageEntry
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID
from tests.admin_fixtures import Api
from tests.stream_client import StreamClient
from tests.test_admin import assert_error

DEMO = {"id": DEMO_GUARDRAIL_ID, "version": "1"}
PATH = "/admin/guardrail-prices"


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_GUARDRAILS", DEMO_GUARDRAIL_ID)
    wiring.reset()


def entries(key_id: str) -> list[UsageEntry]:
    """The key's ledger entries, oldest first."""
    found = [entry_from_item(item) for item in wiring.ledger().entries_for_key(key_id)]
    return sorted(found, key=lambda e: e.timestamp)


def blocked_call(secret: str) -> dict[str, Any]:
    answer = StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "max_tokens": 50,
                         "messages": [{"role": "user", "content": "Hi #emulator:guardrail=input"}]}),
    )  # fmt: skip
    assert answer.status_code == 200, answer.body
    return {"body": json.loads(answer.body), "cost": Decimal(answer.headers["x-pennyworth-cost-usd"]),
            "request_id": answer.headers["x-request-id"]}  # fmt: skip


def test_an_edited_guardrail_price_bills_to_the_last_digit_and_the_entry_names_its_version(
    guarded: None, as_admin: Api
) -> None:
    # GIVEN a key carrying the demo guardrail, billed at LiteLLM's prices at first
    key = as_admin.call("post", "/admin/keys", {"guardrail": DEMO}).json_body
    before = blocked_call(key["secret"])
    [entry] = entries(key["key_id"])
    assert entry.request_id == before["request_id"] and entry.guardrail_price_version == 0
    assert entry.guardrail_usd == sum(map_prices("us-east-1").per_unit[c] * n for c, n in entry.guardrail_units.items())
    # WHEN an admin sets the content and topic prices (per 1,000 units), the other counters carried over
    changed = as_admin.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "0.123456789",
                                                               "topicPolicyUnits": "2"}})  # fmt: skip
    assert changed.status_code == 200, changed.body
    assert changed.json_body["in_force"]["version"] == 1
    in_force = changed.json_body["in_force"]["per_1000_units"]
    assert in_force["contentPolicyUnits"] == "0.123456789" and in_force["topicPolicyUnits"] == "2"
    assert in_force["sensitiveInformationPolicyUnits"] == "0.1"  # LiteLLM's, carried over
    # THEN the next call is billed at them, to the last digit, and its entry names version 1
    after = blocked_call(key["secret"])
    [entry] = [e for e in entries(key["key_id"]) if e.request_id == after["request_id"]]
    units = entry.guardrail_units
    assert units == {"contentPolicyUnits": 1, "topicPolicyUnits": 1, "wordPolicyUnits": 1,
                     "sensitiveInformationPolicyUnits": 1}  # fmt: skip
    expected = Decimal("0.000123456789") + Decimal("0.002") + Decimal("0") + Decimal("0.0001")
    assert entry.guardrail_usd == expected == after["cost"] == entry.cost
    assert entry.guardrail_price_version == 1
    assert after["body"]["usage"]["guardrail_cost_usd"] == "0.002223456789"
    assert before["cost"] != after["cost"]
    # AND the change is audited, before and after
    shown = as_admin.call("get", PATH).json_body
    [event] = shown["audit"]
    assert event["action"] == "set" and event["subject"] == {"kind": "prices", "id": "guardrails"}
    assert event["changes"]["per_1000_units"]["to"]["topicPolicyUnits"] == "2"
    assert event["changes"]["per_1000_units"]["from"]["topicPolicyUnits"] == "0.15"


def test_admission_reserves_the_guardrails_worst_case_at_the_live_price(guarded: None, as_admin: Api) -> None:
    # GIVEN a key with a budget that covers one call at LiteLLM's guardrail prices
    key = as_admin.call("post", "/admin/keys", {"guardrail": DEMO, "monthly_budget_usd": "0.05"}).json_body
    assert blocked_call(key["secret"])["cost"] > 0
    # WHEN an admin prices every guardrail counter at $100 per 1,000 units
    dear = {counter: "100" for counter in map_prices("us-east-1").per_unit}
    assert as_admin.call("patch", PATH, {"per_1000_units": dear}).status_code == 200
    # THEN the call's worst case no longer fits the budget: refused before Bedrock is called
    answer = StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key['secret']}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    assert answer.status_code == 429 and json.loads(answer.body)["error"]["type"] == "insufficient_quota"


def test_a_future_version_applies_only_from_its_time(guarded: None, as_admin: Api) -> None:
    later = as_admin.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "9"},
                                          "effective_from": "2099-01-01T00:00:00Z"})  # fmt: skip
    assert later.status_code == 200
    assert later.json_body["in_force"]["version"] == 0  # LiteLLM's map until 2099
    assert later.json_body["versions"][0]["effective_from"] == "2099-01-01T00:00:00Z"
    key = as_admin.call("post", "/admin/keys", {"guardrail": DEMO}).json_body
    blocked_call(key["secret"])
    assert entries(key["key_id"])[0].guardrail_price_version == 0
    # A version cannot start before the one before it, nor in the past
    assert_error(as_admin.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "1"},
                                               "effective_from": "2098-01-01T00:00:00Z"}), 400,
                 param="effective_from")  # fmt: skip
    assert_error(as_admin.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "1"},
                                               "effective_from": "2020-01-01T00:00:00Z"}), 400,
                 param="effective_from")  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"per_1000_units": {"contentPolicyUnits": "-1"}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"contentPolicyUnits": 0.15}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"contentPolicyUnits": "0.1.5"}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"contentPolicyUnits": "١"}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"contentPolicyUnits": "0.1234567890123"}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"contentPolicyUnits": "101"}}, "per_1000_units.contentPolicyUnits"),
        ({"per_1000_units": {"evil\x1b[2JUnits": "1"}}, "per_1000_units"),
        ({"per_1000_units": {"content\u202ePolicyUnits": "1"}}, "per_1000_units"),
        ({"per_1000_units": {"x" * 300 + "Units": "1"}}, "per_1000_units"),
        ({"per_1000_units": {f"c{i}Units": "1" for i in range(17)}}, "per_1000_units"),
        ({"per_1000_units": {}}, "per_1000_units"),
        ({"per_1000_units": "0.15"}, "per_1000_units"),
        ({"per_1000_units": {"contentPolicyUnits": "1"}, "force": "yes"}, "force"),
        ({"per_1000_units": {"contentPolicyUnits": "1"}, "colour": "red"}, "colour"),
        ({"per_1000_units": {"contentPolicyUnits": "1"}, "effective_from": "tomorrow"}, "effective_from"),
    ],
)
def test_bad_guardrail_prices_are_a_400_naming_the_field_and_change_nothing(
    guarded: None, as_admin: Api, body: dict[str, Any], param: str
) -> None:
    error = assert_error(as_admin.call("patch", PATH, body), 400, param=param)
    assert "\x1b" not in error["message"] and "\u202e" not in error["message"]
    shown = as_admin.call("get", PATH).json_body
    assert shown["versions"] == [] and shown["audit"] == []


def test_a_price_over_the_sanity_bound_needs_force_and_only_admins_see_or_set_prices(
    guarded: None, as_admin: Api, as_alice: Api
) -> None:
    forced = as_admin.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "150"}, "force": True})
    assert forced.status_code == 200 and forced.json_body["in_force"]["per_1000_units"]["contentPolicyUnits"] == "150"
    # Dropping every counter would leave a guardrail unpriced: refused
    every = {counter: None for counter in forced.json_body["in_force"]["per_1000_units"]}
    assert_error(as_admin.call("patch", PATH, {"per_1000_units": every}), 400, param="per_1000_units")
    assert_error(as_alice.call("get", PATH), 403, "admin_only")
    assert_error(as_alice.call("patch", PATH, {"per_1000_units": {"contentPolicyUnits": "0"}}), 403, "admin_only")
    assert len(as_admin.call("get", PATH).json_body["versions"]) == 1
