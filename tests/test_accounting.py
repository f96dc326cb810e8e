"""Usage reports, owner budgets, the report route and reconcile through the admin API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from chalicelib import wiring
from chalicelib.accounting.ledger import UNRECORDED_EVENT, Ledger
from chalicelib.keys.store import KeyStore
from chalicelib.shared.usage import TokenUsage
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
    client, as_admin: Api, as_alice: Api, as_bob: Api, alice, bob, keys_table, usage_table, emulator_url, monkeypatch,
    drain,
) -> None:  # fmt: skip
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    store = KeyStore(keys_table)
    alice_key, alice_secret = store.create(owner_sub=alice.sub, owner_email=alice.email, name="alice-laptop")
    _, bob_secret = store.create(owner_sub=bob.sub, owner_email=bob.email)
    spent_alice = sum(chat(client, alice_secret, f"hi {n}")["cost"] for n in range(3))
    spent_bob = chat(client, bob_secret)["cost"]
    drain(usage_table)  # the aggregator's work (a Lambda on the table's stream on AWS)

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
    # The month by key, the costliest first only (the console's page): named, and the month's totals
    month = f"from={TODAY[:8]}01&to={TODAY}&group_by=key"
    every = as_admin.call("get", f"/admin/usage?{month}").json_body
    first = as_admin.call("get", f"/admin/usage?{month}&limit=1").json_body
    assert (first["groups"], first["has_more"], every["groups"], every["has_more"]) == (2, True, 2, False)
    assert first["data"] == every["data"][:1] and first["total"] == every["total"]
    assert first["data"][0]["name"] == "alice-laptop" and first["data"][0]["owner_email"] == alice.email


def test_usage_query_errors_are_400s(as_admin: Api) -> None:
    for query, param in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("group_by=colour", "group_by"),
        ("from=yesterday", "from"),
        ("from=2026-11-02&to=2026-11-01", "to"),
        ("from=2024-01-01&to=2026-01-01", "from"),
        ("from=20260101", "from"),
        ("to=2026-W01-1", "to"),
        ("from=0001-01-01&to=0001-01-02", "from"),
        ("form=2026-11-01", "form"),  # a typo must not silently report the default range
        ("key_id=abc", "key_id"),
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


def test_reports_and_reconcile_are_for_admins(as_admin: Api, as_alice: Api, keys_table, usage_table, drain) -> None:
    assert as_alice.call("post", "/admin/reports/daily", {}).status_code == 403
    ran = as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15"})
    assert ran.status_code == 200 and "daily cost report for 2026-01-15" in ran.json_body["notification"]
    assert as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15"}).json_body["sent"] == []
    stored = as_admin.call("get", "/admin/reports/daily/2026-01-15").json_body
    assert stored["report"]["day"] == "2026-01-15"
    assert as_admin.call("get", "/admin/reports/daily/2026-01-16").status_code == 404
    assert as_admin.call("post", "/admin/reports/daily", {"day": "tomorrow"}).status_code == 400
    # Year 1 used to reach the trailing week's date arithmetic and overflow: a 500.
    assert as_admin.call("post", "/admin/reports/daily", {"day": "0001-01-01"}).status_code == 400
    assert as_admin.call("get", "/admin/reports/daily/20260115").status_code == 400

    alice_key, _ = KeyStore(keys_table).create(owner_sub="o1")
    entry = usage_entry(
        request_id="lost-1",
        key_id=alice_key.key_id,
        owner_sub="o1",
        usage=TokenUsage(input_tokens=100, output_tokens=100),
        prices=wiring.catalog().resolve("nova-micro").prices,
        at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    line = json.dumps({"level": "ERROR", "event": UNRECORDED_EVENT, "entry": entry.to_json()})
    assert as_alice.call("post", "/admin/ledger/reconcile", {"lines": [line]}).status_code == 403
    replay = as_admin.call("post", "/admin/ledger/reconcile", {"lines": ["noise", line, line]}).json_body
    assert replay["entries"] == 2 and replay["recorded"] == 2 and replay["failed"] == []
    assert replay["rejected"] == [] and replay["skipped"] == 1
    drain(usage_table)
    month = wiring.ledger().aggregate(f"KEY#{alice_key.key_id}", "MONTH#2026-11")
    assert month["cost"] == entry.cost and month["requests"] == 1  # once, not twice


def test_a_forced_report_rerun_through_the_api(as_admin: Api) -> None:
    assert as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15"}).json_body["revision"] == 1
    again = as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15", "force": True}).json_body
    assert again["revision"] == 2 and "corrected (revision 2)" in again["notification"]
    assert as_admin.call("get", "/admin/reports/daily/2026-01-15").json_body["revision"] == 2
    bad = as_admin.call("post", "/admin/reports/daily", {"day": "2026-01-15", "force": "yes"})
    assert bad.status_code == 400 and bad.json_body["error"]["param"] == "force"


def test_reconcile_validates_every_line_and_reports_the_bad_ones(as_admin: Api, keys_table, usage_table, drain) -> None:
    # GIVEN one good line among lines an attacker or a bad export could produce
    key, _ = KeyStore(keys_table).create(owner_sub="o1")
    good = usage_entry(request_id="good", key_id=key.key_id, owner_sub="o1", at=datetime(2026, 11, 20, tzinfo=UTC))

    def line(**changes) -> str:
        data = {**good.to_json(), **changes}
        return json.dumps({"event": UNRECORDED_EVENT, "entry": {k: v for k, v in data.items() if v != "DROP"}})

    lines = [
        line(),
        json.dumps({"event": UNRECORDED_EVENT, "entry": {}}),
        json.dumps({"event": UNRECORDED_EVENT}),
        line(request_id="neg", cost="-1"),
        line(request_id="float", cost=0.5),
        line(request_id="nan", cost="NaN"),
        line(request_id="nokey", key_id="zzzzzzzzzzzz"),
        line(request_id="owner", owner_sub="someone-else"),
        line(request_id="when", timestamp="x"),
        line(request_id="future", timestamp="2999-01-01T00:00:00Z"),
        line(request_id="tokens", usage={"input_tokens": -5}),
        line(request_id="bool", latency_ms=True),
        line(request_id="extra", **{"admin\u001b[2J": True}),
        line(request_id="", key_id=key.key_id),
        line(request_id="status", status="free"),
        line(request_id="month", budget_month="2026-13"),
        line(request_id="\u001b[2J"),
        line(request_id="missing", cost="DROP"),
        line(request_id="digits", budget_month="\u0662\u0660\u0662\u0666-11"),  # Arabic-Indic 2026
        line(request_id="later", budget_month="2026-12"),  # billed in November for a December budget
        line(request_id="stale", budget_month="2026-05"),  # admitted months before it was billed
        "[" * 5000,
        "not json",
    ]
    response = as_admin.call("post", "/admin/ledger/reconcile", {"lines": lines})
    # THEN the good line is recorded and each bad one is named with its line number and reason
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["recorded"] == 1 and body["entries"] == 1 and body["skipped"] == 2
    assert [r["line"] for r in body["rejected"]] == list(range(2, 22))
    reasons = {r["line"]: r["error"] for r in body["rejected"]}
    assert "non-empty object" in reasons[2] and "from 0 to" in reasons[4] and "unknown key" in reasons[7]
    assert "does not belong" in reasons[8] and "ISO 8601" in reasons[9] and "unknown field" in reasons[13]
    assert "\x1b" not in reasons[13] and "\\x1b" in reasons[13]  # quoted, never raw
    assert "budget_month" in reasons[19] and "budget_month" in reasons[20] and "budget_month" in reasons[21]
    drain(usage_table)
    assert Ledger(usage_table).aggregate("ALL", "MONTH#2026-11")["cost"] == good.cost
    assert [e["request_id"] for e in Ledger(usage_table).entries_for_key(key.key_id)] == ["good"]


def test_reconcile_gives_back_no_more_than_admission_still_holds(as_admin: Api, keys_table, usage_table, drain) -> None:
    # GIVEN a $1 key whose request reserved its worst case and then could not be billed (logged instead)
    key, _ = KeyStore(keys_table).create(owner_sub="o1", monthly_budget_usd=Decimal("1"))
    meter, ledger = wiring.meter(), wiring.ledger()
    clock_before = datetime.now(UTC)
    ticket = meter.admit(key, wiring.catalog().resolve("nova-micro"), input_tokens=100, max_output_tokens=100)
    lost = usage_entry(
        request_id="lost", key_id=key.key_id, owner_sub="o1", at=clock_before,
        reserved={f"KEY#{key.key_id}": ticket.reserved_key_usd}, budget_month=ticket.month,
    )  # fmt: skip

    def line(entry_json: dict) -> str:
        return json.dumps({"event": UNRECORDED_EVENT, "entry": entry_json})

    # WHEN a hostile or corrupted line claims a far bigger reservation, or the same request again
    # under another timestamp (a second entry, whose release would be given back twice)
    inflated = {**lost.to_json(), "request_id": "inflated", "reserved": {f"KEY#{key.key_id}": "999999"}}
    # (a line logged before teams existed names its key's reservation in its own field)
    legacy = {**lost.to_json(), "request_id": "legacy", "reserved_key_usd": "999999"}
    del legacy["reserved"]
    lines = [line(inflated), line(legacy), line(lost.to_json())]
    body = as_admin.call("post", "/admin/ledger/reconcile", {"lines": lines}).json_body
    # THEN the inflated lines are refused with their reason, and the true one recorded
    assert [r["line"] for r in body["rejected"]] == [1, 2]
    assert all("held" in rejected["error"] for rejected in body["rejected"])
    assert body["recorded"] == 1
    drain(usage_table)
    again = {**lost.to_json(), "request_id": "lost", "timestamp": "2020-01-01T00:00:00Z"}
    body = as_admin.call("post", "/admin/ledger/reconcile", {"lines": [line(again)]}).json_body
    assert [r["line"] for r in body["rejected"]] == [1]
    drain(usage_table)
    # AND the month's committed is exactly the billed cost: never below it, so the budget still binds
    month = ledger.aggregate(f"KEY#{key.key_id}", f"MONTH#{ticket.month}")
    assert month["committed"] == lost.cost


def test_reconcile_accepts_a_request_admitted_last_year_and_billed_after_midnight() -> None:
    from chalicelib.accounting.reconcile import InvalidEntry, parse_entry

    now = datetime(2027, 1, 1, 0, 10, tzinfo=UTC)
    entry = usage_entry(at=datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC), budget_month="2026-12").to_json()
    assert parse_entry(entry, now=now).reservation_month == "2026-12"
    with pytest.raises(InvalidEntry, match="budget_month"):
        parse_entry({**entry, "budget_month": "2027-02"}, now=now)
