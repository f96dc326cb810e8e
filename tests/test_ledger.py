from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

from botocore.exceptions import ClientError

from chalicelib.accounting.ledger import (
    UNRECORDED_EVENT,
    Ledger,
    TokenUsage,
    compute_cost,
    new_entry,
    parse_reconcile_lines,
)
from chalicelib.catalog.catalog import Prices
from tests.factories import NOVA_PRICES, usage_entry

PRICES = NOVA_PRICES
AT = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def entry(request_id: str = "r1", key_id: str = "k1", **usage: int):
    return usage_entry(request_id=request_id, key_id=key_id, usage=TokenUsage(**usage) if usage else None)


def test_cost_is_exact_decimal() -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_tokens=100)
    assert compute_cost(PRICES, usage) == Decimal("0.0000350") + Decimal("0.0000700") + Decimal("0.0000175") + Decimal(
        "0.0000035"
    )
    assert usage.prompt_tokens == 3100


def test_record_writes_entry_and_every_aggregate_exactly(usage_table) -> None:
    ledger = Ledger(usage_table)
    entries = [entry(f"r{i}", input_tokens=i * 7 + 1, output_tokens=i * 13 + 2) for i in range(25)]
    for e in entries:
        assert ledger.record(e)
    total = sum((e.cost for e in entries), Decimal(0))
    stored = ledger.entries_for_key("k1")
    assert len(stored) == 25
    assert sum((item["cost"] for item in stored), Decimal(0)) == total
    for scope in ("KEY#k1", "OWNER#owner-1", "MODEL#nova-micro", "ALL"):
        for period in ("DAY#2026-11-26", "MONTH#2026-11"):
            aggregate = ledger.aggregate(scope, period)
            assert aggregate["cost"] == total, (scope, period)
            assert aggregate["requests"] == 25
            assert aggregate["input_tokens"] == sum(e.usage.input_tokens for e in entries)


def test_replaying_an_entry_does_not_double_count(usage_table) -> None:
    ledger = Ledger(usage_table)
    e = entry()
    assert ledger.record(e) and ledger.record(e)
    assert ledger.aggregate("KEY#k1", "MONTH#2026-11")["requests"] == 1


def test_persistent_failure_is_logged_for_reconcile_then_replayed(usage_table, service_logs) -> None:
    ledger = Ledger(usage_table, backoff_seconds=0)
    e = entry()
    failure = ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "TransactWriteItems")
    with mock.patch.object(ledger._client, "transact_write_items", side_effect=failure) as call:
        assert ledger.record(e) is False
    assert call.call_count == 3
    lines = service_logs.lines()
    logged = [json.loads(line) for line in lines if UNRECORDED_EVENT in line]
    assert logged and logged[0]["level"] == "ERROR"
    replayed = parse_reconcile_lines(lines)
    assert replayed == [e]
    assert ledger.record(replayed[0])
    assert ledger.aggregate("ALL", "DAY#2026-11-26")["cost"] == e.cost


def test_entry_json_round_trip_keeps_cost_exact() -> None:
    e = entry(input_tokens=3, output_tokens=7, cache_read_tokens=11)
    data = json.loads(json.dumps(e.to_json()))
    assert isinstance(data["cost"], str)
    assert type(e).from_json(data) == e


def test_usage_groups_by_key_owner_model_and_day(usage_table) -> None:
    from datetime import date, timedelta

    ledger = Ledger(usage_table)

    def at(day: int, key: str, owner: str, model: str, tokens: int, n: int):
        e = new_entry(
            request_id=f"{day}-{key}-{n}",
            key_id=key,
            owner_sub=owner,
            model=model,
            bedrock_model_id="x",
            operation="chat",
            usage=TokenUsage(input_tokens=tokens, output_tokens=tokens),
            prices=PRICES,
            latency_ms=1,
            status="ok",
            at=AT + timedelta(days=day),
        )
        assert ledger.record(e)
        return e

    entries = [
        at(0, "k1", "alice", "nova-micro", 10, 0),
        at(0, "k1", "alice", "claude", 20, 1),
        at(1, "k2", "alice", "nova-micro", 30, 0),
        at(1, "k3", "bob", "nova-micro", 40, 0),
        at(3, "k3", "bob", "claude", 50, 0),  # outside the range below
    ]
    first, last = date(2026, 11, 26), date(2026, 11, 27)
    cost = {e.request_id: e.cost for e in entries}

    by_key = {r["group"]: r for r in ledger.usage(first, last, "key")}
    assert by_key["k1"]["cost"] == cost["0-k1-0"] + cost["0-k1-1"] and by_key["k1"]["requests"] == 2
    assert set(by_key) == {"k1", "k2", "k3"}
    by_day = ledger.usage(first, last, "day")
    assert [r["group"] for r in by_day] == ["2026-11-26", "2026-11-27"]
    assert sum(r["cost"] for r in by_day) == sum(cost[e.request_id] for e in entries[:4])
    assert {r["group"] for r in ledger.usage(first, last, "owner")} == {"alice", "bob"}

    # Self-service: only alice's keys, including by model (summed from her entries).
    mine = {r["group"]: r for r in ledger.usage(first, last, "model", key_ids=["k1", "k2"])}
    assert mine["nova-micro"]["cost"] == cost["0-k1-0"] + cost["1-k2-0"] and mine["claude"]["requests"] == 1
    assert [r["group"] for r in ledger.usage(first, last, "day", key_ids=["k1", "k2"])] == ["2026-11-26", "2026-11-27"]


def test_tiny_costs_in_exponent_notation_are_stored_exactly(usage_table) -> None:
    # GIVEN a one-token Titan-priced request: 2E-8 USD, which Decimal writes in exponent form
    cheap = Prices(input=Decimal("2e-08"), output=Decimal(0), cache_read=Decimal(0), cache_write=Decimal(0))
    e = usage_entry(
        request_id="tiny",
        key_id="k9",
        model="titan",
        operation="embedding",
        usage=TokenUsage(input_tokens=1),
        prices=cheap,
    )
    assert str(e.cost) == "2E-8"
    ledger = Ledger(usage_table)
    assert ledger.record(e) and ledger.record(e)
    assert ledger.aggregate("KEY#k9", "DAY#2026-11-26")["cost"] == Decimal("0.00000002")
