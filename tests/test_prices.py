"""The full price model, to the last digit against LiteLLM's pinned price map: tiers, 1-hour cache writes.

Every expected figure is the map's own number (``Decimal(repr(float))``: the exact decimal LiteLLM
wrote) times the tokens: never a figure computed by the code under test.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.accounting.metering import asks_long_cache, worst_case_cost
from chalicelib.catalog import load_catalog
from chalicelib.catalog.prices import bundled_price_map
from chalicelib.keys.store import KeyStore
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.stream_client import StreamClient

MAP = bundled_price_map()
CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
HAIKU_45 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
HAIKU_55 = "us.anthropic.claude-haiku-5-5"
SONNET_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def rate(model_id: str, key: str) -> Decimal:
    """A rate exactly as the pinned map writes it."""
    return Decimal(repr(float(MAP[model_id][key])))


def test_a_prompt_above_a_tier_is_billed_at_the_tiers_rates_for_every_token() -> None:
    # GIVEN Claude Haiku 5.5 (5x above 100k input tokens) and a prompt of 90,000 new + 20,000 cached tokens
    prices = CATALOG.resolve("claude-haiku-5-5").prices
    usage = TokenUsage(input_tokens=90_000, output_tokens=1_000, cache_read_tokens=20_000)
    # THEN every token is billed at the tier's rates, output included
    expected = (
        rate(HAIKU_55, "input_cost_per_token_above_100k_tokens") * 90_000
        + rate(HAIKU_55, "output_cost_per_token_above_100k_tokens") * 1_000
        + rate(HAIKU_55, "cache_read_input_token_cost_above_100k_tokens") * 20_000
    )
    assert compute_cost(prices, usage) == expected == Decimal("0.05335")
    # AND the base price would have been a fifth of it (the bug this fixes)
    base = rate(HAIKU_55, "input_cost_per_token") * 90_000 + rate(HAIKU_55, "output_cost_per_token") * 1_000
    assert base + rate(HAIKU_55, "cache_read_input_token_cost") * 20_000 == Decimal("0.01067")


@pytest.mark.parametrize(("prompt", "tier"), [(100_000, False), (100_001, True)])
def test_the_tier_starts_above_its_threshold_counting_every_input_token(prompt: int, tier: bool) -> None:
    prices = CATALOG.resolve("claude-haiku-5-5").prices
    usage = TokenUsage(input_tokens=prompt - 30_000, cache_read_tokens=10_000, cache_write_tokens=20_000)
    suffix = "_above_100k_tokens" if tier else ""
    expected = (
        rate(HAIKU_55, f"input_cost_per_token{suffix}") * (prompt - 30_000)
        + rate(HAIKU_55, f"cache_read_input_token_cost{suffix}") * 10_000
        + rate(HAIKU_55, f"cache_creation_input_token_cost{suffix}") * 20_000
    )
    assert compute_cost(prices, usage) == expected


def test_sonnet_above_200k_tokens_with_a_one_hour_cache_write_to_the_last_digit() -> None:
    prices = CATALOG.resolve("claude-sonnet-4-5").prices
    usage = TokenUsage(
        input_tokens=150_000,
        output_tokens=2_000,
        cache_read_tokens=40_000,
        cache_write_tokens=15_000,
        cache_write_1h_tokens=10_000,
    )
    expected = (
        rate(SONNET_45, "input_cost_per_token_above_200k_tokens") * 150_000
        + rate(SONNET_45, "output_cost_per_token_above_200k_tokens") * 2_000
        + rate(SONNET_45, "cache_read_input_token_cost_above_200k_tokens") * 40_000
        + rate(SONNET_45, "cache_creation_input_token_cost_above_200k_tokens") * 5_000
        + rate(SONNET_45, "cache_creation_input_token_cost_above_1hr_above_200k_tokens") * 10_000
    )
    assert compute_cost(prices, usage) == expected == Decimal("1.23915")


def test_one_hour_cache_writes_are_billed_at_their_own_price() -> None:
    # GIVEN Claude Haiku 4.5 writing 10,000 tokens to the cache for an hour
    prices = CATALOG.resolve("claude-haiku-4-5").prices
    usage = TokenUsage(input_tokens=100, output_tokens=50, cache_write_tokens=10_000, cache_write_1h_tokens=10_000)
    expected = (
        rate(HAIKU_45, "input_cost_per_token") * 100
        + rate(HAIKU_45, "output_cost_per_token") * 50
        + rate(HAIKU_45, "cache_creation_input_token_cost_above_1hr") * 10_000
    )
    assert compute_cost(prices, usage) == expected == Decimal("0.022385")
    # AND at the 5-minute price it would be 37.5% low on the writes (the bug this fixes)
    five = rate(HAIKU_45, "cache_creation_input_token_cost") * 10_000
    one_hour = rate(HAIKU_45, "cache_creation_input_token_cost_above_1hr") * 10_000
    assert (one_hour - five) / one_hour == Decimal("0.375")


def test_the_worst_case_takes_the_tier_a_prompt_may_reach_and_the_one_hour_write_when_asked() -> None:
    model = CATALOG.resolve("claude-haiku-5-5")
    # A prompt bounded below the threshold: base rates, the dearest input-side one (a 5-minute write).
    assert worst_case_cost(model, 50_000, 1_000) == (
        rate(HAIKU_55, "cache_creation_input_token_cost") * 50_000 + rate(HAIKU_55, "output_cost_per_token") * 1_000
    )
    # A bound above it: the tier's rates; asking for 1-hour writes: the 1-hour write price.
    assert worst_case_cost(model, 150_000, 1_000, long_cache=True) == (
        rate(HAIKU_55, "cache_creation_input_token_cost_above_1hr_above_100k_tokens") * 150_000
        + rate(HAIKU_55, "output_cost_per_token_above_100k_tokens") * 1_000
    )


def test_a_prompt_asks_for_long_cache_writes_only_with_a_one_hour_cache_point() -> None:
    five = [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]
    hour = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        }
    ]
    tools = {"tools": [{"type": "function", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    assert (asks_long_cache(five), asks_long_cache(hour), asks_long_cache(five, tools)) == (False, True, True)


# -- through the whole path: the emulator reports Bedrock's cacheDetails, the ledger bills them ----------


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str, keys_table: Any) -> tuple[Any, str]:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_MAX_BODY_BYTES", "200000")
    wiring.reset()
    return KeyStore(keys_table).create(owner_sub="owner-1", name="cache")


def messages(secret: str, body: dict[str, Any]) -> Any:
    headers = {"x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    return StreamClient().post("/v1/messages", headers=headers, body=json.dumps(body))


@pytest.mark.parametrize("stream", [False, True])
def test_a_one_hour_cache_write_bedrock_reports_is_billed_at_the_one_hour_price(
    key: tuple[Any, str], stream: bool
) -> None:
    # GIVEN a Messages request with a 1-hour cache point, to which Bedrock reports 5,000 written tokens
    record, secret = key
    text = "A long system prompt to keep #emulator:cache_write=5000"
    block = {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": [block]}],
    }
    # WHEN it is answered
    response = messages(secret, body)
    assert response.status_code == 200, response.body
    # THEN the ledger has the writes as 1-hour writes, billed at the map's 1-hour price to the last digit
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert (int(entry["cache_write_tokens"]), int(entry["cache_write_1h_tokens"])) == (5_000, 5_000)
    expected = (
        rate(HAIKU_45, "input_cost_per_token") * int(entry["input_tokens"])
        + rate(HAIKU_45, "output_cost_per_token") * int(entry["output_tokens"])
        + rate(HAIKU_45, "cache_creation_input_token_cost_above_1hr") * 5_000
    )
    assert Decimal(entry["cost"]) == expected
    # AND the caller is told the writes by TTL, as Anthropic's API does
    if not stream:
        assert response.json_body["usage"]["cache_creation"] == {
            "ephemeral_5m_input_tokens": 0,
            "ephemeral_1h_input_tokens": 5_000,
        }


def test_a_long_prompt_is_billed_at_the_tier_it_falls_in_through_the_whole_path(key: tuple[Any, str]) -> None:
    # GIVEN a Haiku 5.5 prompt whose cached part takes it above 100,000 input tokens
    record, secret = key
    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Summarise it #emulator:cache_read=100000"}],
    }
    response = messages(secret, body)
    assert response.status_code == 200, response.body
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    # THEN every token is billed at the tier's rates
    expected = (
        rate(HAIKU_55, "input_cost_per_token_above_100k_tokens") * int(entry["input_tokens"])
        + rate(HAIKU_55, "output_cost_per_token_above_100k_tokens") * int(entry["output_tokens"])
        + rate(HAIKU_55, "cache_read_input_token_cost_above_100k_tokens") * 100_000
    )
    assert Decimal(entry["cost"]) == expected
