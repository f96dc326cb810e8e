"""Admission and billing against moto: rate limits, budgets, reservations."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger, TokenUsage
from chalicelib.accounting.metering import Meter, worst_case_cost
from chalicelib.catalog.catalog import load_catalog
from chalicelib.keys.store import KeyStore
from chalicelib.settings import DEFAULT_CATALOG

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
NOVA = CATALOG.resolve("nova-micro")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def meter(usage_table, clock) -> Meter:
    return Meter(Ledger(usage_table), clock=clock)


def make_key(keys_table, **limits):
    record, _ = KeyStore(keys_table).create(owner_sub="owner-1", **limits)
    return record


def bill(meter: Meter, ticket, request_id: str, *, input_tokens=10, output_tokens=20):
    return meter.settle(
        ticket,
        request_id=request_id,
        operation="chat",
        usage=TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        latency_ms=5,
        status="ok",
    )


def test_no_limits_means_no_admission_writes(meter, keys_table, usage_table) -> None:
    ticket = meter.admit(make_key(keys_table), NOVA, input_tokens=10, max_output_tokens=None)
    assert ticket.headers == {} and ticket.reserved_key_usd == 0
    assert usage_table.scan()["Items"] == []


def test_rpm_limit_refuses_the_extra_request_until_the_next_window(meter, keys_table, clock) -> None:
    key = make_key(keys_table, rpm_limit=3)
    for expected_remaining in (2, 1, 0):
        ticket = meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(expected_remaining)
    with pytest.raises(errors.RateLimited) as caught:
        meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)
    assert caught.value.status_code == 429
    assert caught.value.headers["Retry-After"] == "55"
    assert caught.value.headers["x-ratelimit-limit-requests"] == "3"
    clock.now += timedelta(seconds=60)
    assert meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)


def test_tpm_counts_the_estimate_then_the_real_tokens(meter, keys_table) -> None:
    key = make_key(keys_table, tpm_limit=100)
    with pytest.raises(errors.RateLimited, match="Request too large"):
        meter.admit(key, NOVA, input_tokens=90, max_output_tokens=20)
    ticket = meter.admit(key, NOVA, input_tokens=40, max_output_tokens=40)  # counts 80
    bill(meter, ticket, "r1", input_tokens=10, output_tokens=10)  # really 20: 60 given back
    second = meter.admit(key, NOVA, input_tokens=40, max_output_tokens=40)
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"  # 20 + 80 = 100
    with pytest.raises(errors.RateLimited):
        meter.admit(key, NOVA, input_tokens=1, max_output_tokens=None)


def test_key_budget_reserves_the_worst_case_and_bills_the_real_cost(meter, keys_table) -> None:
    worst = worst_case_cost(NOVA, 100, 100)
    key = make_key(keys_table, monthly_budget_usd=worst * 3)
    tickets = [meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100) for _ in range(3)]
    with pytest.raises(errors.QuotaExceeded) as caught:
        meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    assert caught.value.to_body()["error"]["type"] == "insufficient_quota"
    assert caught.value.status_code == 429
    # Billing the real (smaller) cost frees room; releasing a failed call frees all of it.
    entry = bill(meter, tickets[0], "r1", input_tokens=10, output_tokens=10)
    meter.release(tickets[1])
    assert meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    status = meter.key_status(key)
    assert Decimal(status["budget"]["spent_usd"]) == entry.cost
    assert Decimal(status["budget"]["reserved_usd"]) == worst * 2
    assert Decimal(status["budget"]["remaining_usd"]) == worst * 3 - entry.cost - worst * 2


def test_a_request_whose_worst_case_exceeds_the_whole_budget_is_refused_on_a_fresh_month(meter, keys_table) -> None:
    key = make_key(keys_table, monthly_budget_usd=worst_case_cost(NOVA, 10, 10) / 2)
    with pytest.raises(errors.QuotaExceeded):
        meter.admit(key, NOVA, input_tokens=10, max_output_tokens=10)


def test_owner_budget_covers_all_the_owners_keys(meter, keys_table) -> None:
    first, second = make_key(keys_table), make_key(keys_table)
    worst = worst_case_cost(NOVA, 50, 50)
    meter.set_owner_budget("owner-1", worst * 2, actor="admin")
    meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)
    meter.admit(second, NOVA, input_tokens=50, max_output_tokens=50)
    with pytest.raises(errors.QuotaExceeded, match="key owner"):
        meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)
    meter.set_owner_budget("owner-1", None, actor="admin")
    assert meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)


def test_worst_case_uses_the_models_maximum_output_when_max_tokens_is_absent() -> None:
    haiku = CATALOG.resolve("claude-haiku-4-5")
    assert worst_case_cost(haiku, 0, None) == haiku.prices.output * haiku.max_output_tokens


def test_concurrent_requests_never_overrun_the_budget(meter, keys_table, usage_table, atomic_moto) -> None:
    # GIVEN a budget for about 10 worst-case requests, and 40 concurrent callers
    worst = worst_case_cost(NOVA, 200, 200)
    key = make_key(keys_table, monthly_budget_usd=worst * 10)

    def call(number: int) -> str:
        try:
            ticket = meter.admit(key, NOVA, input_tokens=200, max_output_tokens=200)
        except errors.QuotaExceeded:
            return "refused"
        bill(meter, ticket, f"r{number}", input_tokens=200, output_tokens=200)
        return "billed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(40)))
    # THEN spend never passes the budget, and the ledger agrees with the aggregate
    ledger = Ledger(usage_table)
    entries = ledger.entries_for_key(key.key_id)
    spent = sum((item["cost"] for item in entries), Decimal(0))
    assert outcomes.count("billed") == len(entries) == 10
    assert spent <= key.monthly_budget_usd
    month = ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")
    assert month["cost"] == spent == month["committed"]


def test_prompt_bound_counts_bytes_images_tools_and_overhead() -> None:
    from chalicelib.accounting.metering import IMAGE_TOKEN_BOUND, MESSAGE_OVERHEAD_TOKENS, prompt_token_bound

    # GIVEN text whose characters are several bytes each (a CJK character is 3 UTF-8 bytes)
    messages = [
        {"role": "system", "content": "日本"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    bound = prompt_token_bound(messages, {"tools": tools})
    assert bound == 6 + 2 + IMAGE_TOKEN_BOUND + len(json.dumps(tools)) + 2 * MESSAGE_OVERHEAD_TOKENS
