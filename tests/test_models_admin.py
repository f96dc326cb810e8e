"""The model catalog's admin API: a live catalog changed without a deploy, every change audited.

Through Chalice's test client (moto for DynamoDB and Cognito, the Bedrock emulator), with
model calls through the streaming entry point, as on AWS.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.catalog.prices import bundled_price_map, prices_from_map
from chalicelib.keys.store import KeyStore
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.admin_fixtures import Api
from tests.cognito_helpers import User
from tests.stream_client import StreamClient

NOVA_PRO = "us.amazon.nova-pro-v1:0"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, emulator_url: str, admin_client: Client) -> Client:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    return admin_client


@pytest.fixture
def admin_key(client: Client, keys_table: Any, admin: User) -> tuple[Any, str]:
    return KeyStore(keys_table).create(owner_sub=admin.sub, owner_email=admin.email, name="admin's key")


def chat(secret: str, model: str, text: str = "Hello", **extra: Any) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps(body),
    )


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.body
    return response.json_body["error"]


def entries(usage_table: Any, key_id: str) -> list[dict[str, Any]]:
    from chalicelib.accounting.ledger import Ledger

    return Ledger(usage_table).entries_for_key(key_id)


def test_a_model_added_at_run_time_answers_at_once_and_is_billed_at_the_maps_prices(
    as_admin: Api, admin_key: tuple[Any, str], usage_table: Any
) -> None:
    # GIVEN a catalog seeded from the file, which has no Nova Pro
    record, secret = admin_key
    assert error_of(chat(secret, "nova-pro"), 404)["code"] == "model_not_found"
    # WHEN an admin adds it without prices
    added = as_admin.call("post", "/admin/models", {"alias": "nova-pro", "provider": "bedrock", "model_id": NOVA_PRO})
    # THEN it is priced from LiteLLM's pinned map, exactly, as version 1
    assert added.status_code == 201, added.body
    expected = prices_from_map(bundled_price_map()[NOVA_PRO])
    assert added.json_body["prices"]["input"] == expected.per_million()["input"]
    assert added.json_body["price_versions"][0]["source"].startswith("litellm ")
    # AND a caller uses it at once, billed at those prices to the last digit
    answer = chat(secret, "nova-pro", "Hello pro")
    assert answer.status_code == 200, answer.body
    [entry] = entries(usage_table, record.key_id)
    usage = TokenUsage(input_tokens=int(entry["input_tokens"]), output_tokens=int(entry["output_tokens"]))
    assert Decimal(entry["cost"]) == compute_cost(expected, usage)
    assert (entry["model"], int(entry["price_version"])) == ("nova-pro", 1)
    assert entry["served_by"] == f"bedrock/converse/{NOVA_PRO}"


def test_a_price_change_is_a_new_version_and_usage_explains_both(
    as_admin: Api, admin_key: tuple[Any, str], usage_table: Any, drain: Any
) -> None:
    # GIVEN a model billed once at its first prices
    record, secret = admin_key
    prices = {"input": "0.50", "output": "1.50"}
    added = as_admin.call(
        "post", "/admin/models", {"alias": "nova-pro", "provider": "bedrock", "model_id": NOVA_PRO, "prices": prices}
    )
    assert added.status_code == 201, added.body
    assert chat(secret, "nova-pro").status_code == 200
    # WHEN an admin changes its prices
    changed = as_admin.call("patch", "/admin/models/nova-pro", {"prices": {"input": "2", "output": "3"}})
    assert changed.status_code == 200, changed.body
    assert [v["version"] for v in changed.json_body["price_versions"]] == [1, 2]
    assert chat(secret, "nova-pro").status_code == 200
    # THEN each bill names the version that priced it, and costs exactly that version's prices
    # (entries of one second sort by request id, not by time: take them by version)
    by_version = {int(e["price_version"]): e for e in entries(usage_table, record.key_id)}
    first, second = by_version[1], by_version[2]
    for entry, (inp, out) in ((first, ("0.50", "1.50")), (second, ("2", "3"))):
        expected = Decimal(inp) / 1_000_000 * int(entry["input_tokens"]) + Decimal(out) / 1_000_000 * int(
            entry["output_tokens"]
        )
        assert Decimal(entry["cost"]) == expected
    # AND usage by price shows both versions, each with its prices and what it billed
    drain(usage_table)
    report = as_admin.call("get", "/admin/usage?group_by=price").json_body
    rows = {row["group"]: row for row in report["data"] if row["model"] == "nova-pro"}
    assert set(rows) == {"nova-pro#1", "nova-pro#2"}
    assert rows["nova-pro#1"]["prices"]["input"] == "0.5" and rows["nova-pro#2"]["prices"]["input"] == "2"
    assert rows["nova-pro#1"]["cost_usd"] == str(Decimal(first["cost"]).normalize())


def nova_pro(**extra: Any) -> dict[str, Any]:
    return {"alias": "x", "provider": "bedrock", "model_id": NOVA_PRO, **extra}


def priced(**rates: Any) -> dict[str, Any]:
    return nova_pro(prices={"input": "1", "output": "1", **rates})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"alias": "x", "provider": "azure-magic", "model_id": "m"}, "provider"),
        (nova_pro(alias="nova-micro"), "alias"),
        (nova_pro(aliases=["claude-haiku-4-5-20251001"]), "aliases"),
        (nova_pro(model_id="us.amazon.nova-micro-v1:0"), "model_id"),
        (priced(input="-1"), "prices.input"),
        (priced(input="1e-3"), "prices.input"),
        (priced(output="abc"), "prices.output"),
        (priced(output=True), "prices.output"),
        (priced(input="1500"), "prices.input"),
        (
            priced(tiers=[{"above_input_tokens": 200000, "input": "2"}, {"above_input_tokens": 100000, "input": "3"}]),
            "prices.tiers[1].above_input_tokens",
        ),
        (nova_pro(capabilities={"max_output_tokens": 8000, "context_window": 4000}), "capabilities.context_window"),
        (nova_pro(alias="x\x1b[2J"), "alias"),
        (nova_pro(note="ok\u202eevil"), "note"),
        (nova_pro(aliases=["y\n"]), "aliases[0]"),
        ({"alias": "mystery", "provider": "bedrock", "model_id": "amazon.nova-mystery-v9:0"}, "prices"),
        ({"alias": "x", "provider": "openai", "model_id": "llama3"}, "base_url"),
        (nova_pro(colour="red"), "colour"),
    ],
)
def test_bad_models_are_400s_naming_the_field(as_admin: Api, body: dict[str, Any], param: str) -> None:
    # WHEN an admin sends a bad model THEN it is a 400 naming the field, and nothing changed
    before = as_admin.call("get", "/admin/models").json_body["catalog_version"]
    error = error_of(as_admin.call("post", "/admin/models", body), 400)
    assert error["param"] == param, error
    assert as_admin.call("get", "/admin/models").json_body["catalog_version"] == before


def test_an_absurd_price_needs_force(as_admin: Api) -> None:
    body = {"alias": "dear", "provider": "bedrock", "model_id": NOVA_PRO, "prices": {"input": "1500", "output": "1"}}
    assert error_of(as_admin.call("post", "/admin/models", body), 400)["code"] == "price_over_limit"
    added = as_admin.call("post", "/admin/models", {**body, "force": True})
    assert added.status_code == 201 and added.json_body["prices"]["input"] == "1500"


def test_a_bedrock_model_outside_the_stacks_families_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, client: Client, as_admin: Api
) -> None:
    # GIVEN a stack whose role may invoke Anthropic models only
    monkeypatch.setenv("PENNYWORTH_ALLOWED_BEDROCK_MODELS", "anthropic.*")
    wiring.reset()
    # WHEN an admin adds a Nova model THEN the API refuses it, saying a wider deploy is needed
    error = error_of(
        as_admin.call("post", "/admin/models", {"alias": "p", "provider": "bedrock", "model_id": NOVA_PRO}), 400
    )
    assert error["code"] == "model_not_allowed_by_stack" and error["param"] == "model_id"
    assert "AllowedBedrockModels" in error["message"] and "amazon.nova-pro-v1:0" in error["message"]


def test_disabling_takes_a_model_out_of_service_and_enabling_brings_it_back(
    as_admin: Api, admin_key: tuple[Any, str]
) -> None:
    _, secret = admin_key
    assert as_admin.call("patch", "/admin/models/nova-lite", {"enabled": False}).status_code == 200
    assert error_of(chat(secret, "nova-lite"), 404)["code"] == "model_not_found"
    listed = {m["id"]: m for m in as_admin.call("get", "/admin/models").json_body["data"]}
    assert listed["nova-lite"]["enabled"] is False
    assert as_admin.call("patch", "/admin/models/nova-lite", {"enabled": True}).status_code == 200
    assert chat(secret, "nova-lite").status_code == 200


def test_users_see_the_served_models_and_their_prices_but_cannot_change_them(as_alice: Api, as_admin: Api) -> None:
    as_admin.call("patch", "/admin/models/nova-lite", {"enabled": False})
    listing = as_alice.call("get", "/admin/models").json_body["data"]
    names = [m["id"] for m in listing]
    assert "nova-micro" in names and "nova-lite" not in names
    assert "provider" not in listing[0] and listing[0]["prices"]["input"]
    for method, path, body in (
        ("post", "/admin/models", {"alias": "x", "provider": "bedrock", "model_id": NOVA_PRO}),
        ("patch", "/admin/models/nova-micro", {"enabled": False}),
        ("delete", "/admin/models/nova-micro", None),
        ("post", "/admin/models/nova-micro/test", {}),
    ):
        assert error_of(as_alice.call(method, path, body), 403)["code"] == "admin_only"


def test_removing_a_model_keys_name_is_refused_with_the_keys_unless_forced(
    as_admin: Api, keys_table: Any, aws: Any
) -> None:
    # GIVEN two keys allowing nova-lite (one of them only nova-lite)
    store = KeyStore(keys_table)
    both, _ = store.create(owner_sub="o", allowed_models=["nova-micro", "nova-lite"])
    only, _ = store.create(owner_sub="o", allowed_models=["nova-lite"])
    # WHEN an admin removes it THEN it is refused, naming the keys
    error = error_of(as_admin.call("delete", "/admin/models/nova-lite"), 409)
    assert error["code"] == "model_in_use" and both.key_id in error["message"] and only.key_id in error["message"]
    # WHEN forced THEN it is gone from the catalog and from their allowlists (never widened to every model)
    removed = as_admin.call("delete", "/admin/models/nova-lite?force=true")
    assert removed.status_code == 200 and set(removed.json_body["keys_changed"]) == {both.key_id, only.key_id}
    assert store.get(both.key_id).allowed_models == ("nova-micro",)
    assert store.get(only.key_id).allowed_models == ()
    assert "nova-lite" not in [m["id"] for m in as_admin.call("get", "/admin/models").json_body["data"]]
    # AND each key's change and the removal are audited, before and after
    key_events = as_admin.call("get", f"/admin/keys/{both.key_id}/audit").json_body["data"]
    assert key_events[-1]["changes"]["allowed_models"] == {"from": ["nova-micro", "nova-lite"], "to": ["nova-micro"]}
    model_events = as_admin.call("get", "/admin/models/nova-lite/audit").json_body["data"]
    assert model_events[-1]["action"] == "removed" and model_events[-1]["subject"] == {
        "kind": "model",
        "id": "nova-lite",
    }
    assert model_events[-1]["changes"]["enabled"] == {"from": True, "to": False}


def test_every_change_is_audited_with_before_and_after(as_admin: Api) -> None:
    as_admin.call("post", "/admin/models", {"alias": "nova-pro", "provider": "bedrock", "model_id": NOVA_PRO})
    as_admin.call(
        "patch", "/admin/models/nova-pro", {"note": "for the data team", "prices": {"input": "1", "output": "2"}}
    )
    events = as_admin.call("get", "/admin/models/nova-pro/audit").json_body["data"]
    assert [e["action"] for e in events] == ["added", "updated"]
    assert events[0]["changes"]["alias"] == {"from": None, "to": "nova-pro"}
    assert events[1]["changes"]["note"] == {"from": "", "to": "for the data team"}
    assert len(events[1]["changes"]["price_versions"]["to"]) == 2
    assert events[1]["actor"]["email"] == "admin@example.com"
    # The day's audit log has them too, beside the keys' events.
    day = as_admin.call("get", "/admin/audit").json_body["data"]
    assert {("model", "nova-pro")} <= {(e["subject"]["kind"], e["subject"]["id"]) for e in day}


def test_a_removed_alias_added_again_keeps_its_price_history(as_admin: Api) -> None:
    body = {"alias": "nova-pro", "provider": "bedrock", "model_id": NOVA_PRO, "prices": {"input": "1", "output": "2"}}
    as_admin.call("post", "/admin/models", body)
    assert as_admin.call("delete", "/admin/models/nova-pro").status_code == 200
    again = as_admin.call("post", "/admin/models", {**body, "prices": {"input": "3", "output": "4"}})
    assert again.status_code == 201, again.body
    assert [(v["version"], v["input"]) for v in again.json_body["price_versions"]] == [(1, "1"), (2, "3")]


def test_the_model_test_bills_the_admins_own_key_and_reports_the_exact_cost(
    as_admin: Api, admin_key: tuple[Any, str], usage_table: Any
) -> None:
    record, _ = admin_key
    result = as_admin.call("post", "/admin/models/nova-micro/test", {})
    assert result.status_code == 200, result.body
    body = result.json_body
    assert body["ok"] is True and body["status"] == 200 and body["key_id"] == record.key_id
    assert body["latency_ms"] >= 0 and body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    [entry] = entries(usage_table, record.key_id)
    assert body["cost_usd"] == str(Decimal(entry["cost"]).normalize()) and body["price_version"] == 1
    events = as_admin.call("get", "/admin/models/nova-micro/audit").json_body["data"]
    assert events[-1]["action"] == "tested" and events[-1]["details"]["cost_usd"] == body["cost_usd"]


def test_the_model_test_needs_a_key_and_reports_an_upstream_refusal(
    as_admin: Api, keys_table: Any, admin: User
) -> None:
    # GIVEN an admin without keys
    error = error_of(as_admin.call("post", "/admin/models/nova-micro/test", {}), 400)
    assert error["code"] == "no_key_for_test"
    # WHEN a system key is named and the upstream refuses (the emulator's model without access)
    system, _ = KeyStore(keys_table).create(owner_sub="system", name="model tests")
    as_admin.call("post", "/admin/models", {"alias": "llama", "provider": "bedrock", "model_id": "meta.llama9-v1:0",
                                            "prices": {"input": "1", "output": "1"}})  # fmt: skip
    result = as_admin.call("post", "/admin/models/llama/test", {"key_id": system.key_id}).json_body
    # THEN the outcome is reported, not raised
    assert result["ok"] is False and result["status"] >= 400 and result["error"]["code"]


def test_an_unreadable_item_takes_only_its_model_out_of_service(
    as_admin: Api, admin_key: tuple[Any, str], aws: Any, service_logs: Any
) -> None:
    # GIVEN a catalog item edited by hand into nonsense
    _, secret = admin_key
    assert chat(secret, "nova-lite").status_code == 200
    table = aws.Table("pennyworth-local-catalog")
    table.update_item(Key={"pk": "MODEL", "sk": "nova-lite"}, UpdateExpression="SET price_versions = :x",
                      ExpressionAttributeValues={":x": "free beer"})  # fmt: skip
    table.update_item(Key={"pk": "CATALOG", "sk": "STATE"}, UpdateExpression="ADD version :one",
                      ExpressionAttributeValues={":one": 1})  # fmt: skip
    wiring.live_catalog().refresh()
    # THEN that model answers 503 and every other model is served
    error = error_of(chat(secret, "nova-lite"), 503)
    assert error["code"] == "model_unavailable"
    assert chat(secret, "nova-micro").status_code == 200
    # AND the log says which (the alarm's metric counts these lines), and admins see it listed as unreadable
    lines = [json.loads(line) for line in service_logs.lines()]
    assert any(line.get("event") == "catalog_item_unreadable" and line["model"] == "nova-lite" for line in lines)
    listed = {m["id"]: m for m in as_admin.call("get", "/admin/models").json_body["data"]}
    assert listed["nova-lite"]["status"] == "unreadable"
    # WHEN an admin fixes it THEN a change without prices is refused with the reason, one with prices serves it
    refused = error_of(as_admin.call("patch", "/admin/models/nova-lite", {"note": "fixed"}), 400)
    assert refused["param"] == "prices" and "cannot be read" in refused["message"]
    fixed = as_admin.call("patch", "/admin/models/nova-lite", {"prices": {"input": "0.06", "output": "0.24"}})
    assert fixed.status_code == 200, fixed.body
    assert [v["version"] for v in fixed.json_body["price_versions"]] == [2]  # never reusing an old number
    assert chat(secret, "nova-lite").status_code == 200


def test_a_model_added_on_another_function_is_served_on_its_first_request(
    client: Client, admin_key: tuple[Any, str], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.catalog import Rules, live
    from chalicelib.catalog.entry import new_document

    monkeypatch.setattr(live, "MISS_RECHECK_SECONDS", 0.0)  # the snapshot below is a second old, not a moment
    # GIVEN this function's snapshot, just read (it would not look at the table again for 10 s)
    _, secret = admin_key
    assert chat(secret, "nova-micro").status_code == 200
    # WHEN another function's admin adds a model (straight into the table: this snapshot is not told)
    store = wiring.catalog_store()
    stored = store.read()
    document = new_document({"alias": "nova-pro", "provider": "bedrock", "model_id": NOVA_PRO},
                            rules=Rules(region="us-east-1"), price_map=bundled_price_map, now="2026-12-01T00:00:00Z",
                            actor="elsewhere")  # fmt: skip
    store.put({**document, "position": 99}, read_version=stored.version, previous=None)
    # THEN the first request naming it is answered, not refused
    assert chat(secret, "nova-pro").status_code == 200
