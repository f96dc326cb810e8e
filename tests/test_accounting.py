"""Usage reports, owner budgets, the report route and reconcile through the admin API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from chalicelib import wiring
from chalicelib.accounting.ledger import UNRECORDED_EVENT, TokenUsage
from chalicelib.keys.store import KeyStore
from tests.admin_fixtures import Api
from tests.factories import usage_entry
from tests.stream_client import StreamClient

TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture
def client(admin_client):
    return admin_client


def chat(client, plaintext: str, text: str = "hello") -> dict:
    response = StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": text}]}),
    )
    assert response.status_code == 200, response.body
    return {"cost": Decimal(response.headers["x-pennyworth-cost-usd"])}


def test_admins_see_everyone_and_users_only_themselves(
    client, as_admin: Api, as_alice: Api, as_bob: Api, alice, bob, keys_table, emulator_url, monkeypatch
) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    store = KeyStore(keys_table)
    alice_key, alice_secret = store.create(owner_sub=alice.sub, owner_email=alice.email, name="alice-laptop")
    _, bob_secret = store.create(owner_sub=bob.sub, owner_email=bob.email)
    spent_alice = sum(chat(client, alice_secret, f"hi {n}")["cost"] for n in range(3))
    spent_bob = chat(client, bob_secret)["cost"]

    everyone = as_admin.call("get", f"/admin/usage?from={TODAY}&to={TODAY}&group_by=owner").json_body
    assert everyone["scope"] == "all"
    assert {row["group"]: Decimal(row["cost_usd"]) for row in everyone["data"]} == {
        alice.sub: spent_alice,
        bob.sub: spent_bob,
    }
    assert Decimal(everyone["total"]["cost_usd"]) == spent_alice + spent_bob
    assert everyone["total"]["requests"] == 4 and isinstance(everyone["total"]["requests"], int)
    # owners are named by e-mail, as people know them (the sub stays the group)
    emails = {row["group"]: row["owner_email"] for row in everyone["data"]}
    assert emails == {alice.sub: alice.email, bob.sub: bob.email}
    hers = as_admin.call("get", f"/admin/usage?owner={alice.email}&group_by=owner").json_body
    assert (hers["scope"], hers["scope_email"]) == (alice.sub, alice.email)
    assert hers["data"][0]["owner_email"] == alice.email

    mine = as_alice.call("get", "/admin/usage?group_by=key").json_body
    assert mine["scope"] == alice.sub
    assert [(row["group"], row["name"], row["requests"]) for row in mine["data"]] == [
        (alice_key.key_id, "alice-laptop", 3)
    ]
    by_model = as_alice.call("get", "/admin/usage?group_by=model").json_body["data"]
    assert by_model[0]["group"] == "nova-micro" and Decimal(by_model[0]["cost_usd"]) == spent_alice
    peek = as_alice.call("get", f"/admin/usage?owner={bob.email}")
    assert peek.status_code == 403


def test_usage_query_errors_are_400s(as_admin: Api) -> None:
    for query, param in [
        ("group_by=colour", "group_by"),
        ("from=yesterday", "from"),
        ("from=2026-11-02&to=2026-11-01", "to"),
        ("from=2024-01-01&to=2026-01-01", "from"),
    ]:
        response = as_admin.call("get", f"/admin/usage?{query}")
        assert response.status_code == 400 and response.json_body["error"]["param"] == param


def test_owner_budget_is_set_by_admins_and_enforced(
    client, as_admin: Api, as_alice: Api, alice, keys_table, emulator_url, monkeypatch
) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    _, secret = KeyStore(keys_table).create(owner_sub=alice.sub, owner_email=alice.email)
    assert as_alice.call("put", "/admin/owners/me/budget", {"monthly_budget_usd": "1"}).status_code == 403
    set_ = as_admin.call("put", f"/admin/owners/{alice.email}/budget", {"monthly_budget_usd": "0.000001"})
    assert set_.status_code == 200 and set_.json_body["monthly_budget_usd"] == "0.000001"
    refused = StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
    )
    assert refused.status_code == 429 and refused.json_body["error"]["type"] == "insufficient_quota"
    assert as_alice.call("get", "/admin/owners/me/budget").json_body["monthly_budget_usd"] == "0.000001"
    shown = as_admin.call("get", f"/admin/owners/{alice.sub}/budget").json_body
    assert (shown["owner"], shown["owner_email"]) == (alice.sub, alice.email)
    bad = as_admin.call("put", f"/admin/owners/{alice.email}/budget", {"monthly_budget_usd": "lots"})
    assert bad.status_code == 400 and bad.json_body["error"]["param"] == "monthly_budget_usd"
    cleared = as_admin.call("put", f"/admin/owners/{alice.sub}/budget", {"monthly_budget_usd": None})
    assert cleared.json_body["monthly_budget_usd"] is None


def test_reports_and_reconcile_are_for_admins(as_admin: Api, as_alice: Api, usage_table) -> None:
    assert as_alice.call("post", "/admin/reports/daily", {}).status_code == 403
    ran = as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15"})
    assert ran.status_code == 200 and "daily cost report for 2026-01-15" in ran.json_body["notification"]
    assert as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15"}).json_body["sent"] == []
    stored = as_admin.call("get", "/admin/reports/daily/2026-01-15").json_body
    assert stored["report"]["day"] == "2026-01-15"
    assert as_admin.call("get", "/admin/reports/daily/2026-01-16").status_code == 404
    assert as_admin.call("post", "/admin/reports/daily", {"day": "tomorrow"}).status_code == 400

    entry = usage_entry(
        request_id="lost-1",
        owner_sub="o1",
        usage=TokenUsage(input_tokens=100, output_tokens=100),
        prices=wiring.catalog().resolve("nova-micro").prices,
        at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    line = json.dumps({"level": "ERROR", "event": UNRECORDED_EVENT, "entry": entry.to_json()})
    assert as_alice.call("post", "/admin/ledger/reconcile", {"lines": [line]}).status_code == 403
    replay = as_admin.call("post", "/admin/ledger/reconcile", {"lines": ["noise", line, line]}).json_body
    assert replay["entries"] == 2 and replay["recorded"] == 2 and replay["failed"] == []
    assert wiring.ledger().aggregate("KEY#k1", "MONTH#2026-11")["cost"] == entry.cost  # once, not twice
