"""Exact accounting through the running stack, under concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import openai
import pytest

from tests.integration import stack_data
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def new_key(stack, **limits) -> tuple[str, str]:
    return stack_data.new_key(stack, "acct-owner", **limits)


def client_for(stack, plaintext: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=plaintext, max_retries=0, timeout=60)


def test_200_concurrent_requests_bill_exactly(stack) -> None:
    # GIVEN a fresh key and 200 requests of varied sizes, 16 at a time
    key_id, plaintext = new_key(stack)
    client = client_for(stack, plaintext)

    def call(n: int) -> Decimal:
        raw = client.chat.completions.with_raw_response.create(
            model="nova-micro" if n % 3 else "claude-haiku-4-5",
            messages=[
                {"role": "user", "content": f"request {n} " + "word " * (n % 17) + f"#emulator:tokens={n % 50 + 1}"}
            ],
            stream=n % 4 == 0,
            **({"stream_options": {"include_usage": True}} if n % 4 == 0 else {}),
        )
        if n % 4 == 0:
            # Headers leave before a stream is billed: its cost rides in the usage chunk.
            usage = [chunk.usage for chunk in raw.parse() if chunk.usage is not None]
            return Decimal(usage[-1].model_extra["cost_usd"])
        return Decimal(raw.headers["x-pennyworth-cost-usd"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        costs = list(pool.map(call, range(200)))
    # THEN the ledger's entries, the aggregates and the responses agree to the last digit
    ledger = stack_data.ledger(stack)
    entries = stack_data.entries(stack, key_id, 200)
    assert len(entries) == 200
    entry_sum = sum((e["cost"] for e in entries), Decimal(0))
    month = entries[0]["timestamp"][:7]
    # The aggregates follow from the table's stream (the local aggregator process), within its delay.
    aggregate = eventually(lambda: ledger.aggregate(f"KEY#{key_id}", f"MONTH#{month}"), lambda a: a["requests"] >= 200)
    assert entry_sum == aggregate["cost"] == sum(costs, Decimal(0))
    assert aggregate["requests"] == 200
    assert len({str(c) for c in costs}) > 20  # the sizes really varied


def test_concurrent_requests_on_a_nearly_spent_key_never_overrun(stack) -> None:
    # GIVEN a budget that fits about five worst-case requests (max_tokens=20 on nova-micro)
    from chalicelib.accounting.metering import worst_case_cost
    from chalicelib.catalog import load_catalog
    from chalicelib.settings import DEFAULT_CATALOG

    nova = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro")
    prompt = "spend #emulator:tokens=20"
    budget = worst_case_cost(nova, len(prompt.encode()) + 64, 20) * 5
    key_id, plaintext = new_key(stack, monthly_budget_usd=budget)
    client = client_for(stack, plaintext)

    def call(_: int) -> str:
        try:
            client.chat.completions.create(
                model="nova-micro", messages=[{"role": "user", "content": prompt}], max_tokens=20
            )
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.type == "insufficient_quota"
            return "refused"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(call, range(30)))
    # THEN spend stays within the budget, and refused callers got a clear 429
    month = f"MONTH#{datetime.now(UTC):%Y-%m}"
    ledger = stack_data.ledger(stack)
    billed = sum((e["cost"] for e in stack_data.entries(stack, key_id, outcomes.count("ok"))), Decimal(0))
    totals = eventually(lambda: ledger.aggregate(f"KEY#{key_id}", month), lambda a: a["cost"] == billed)
    assert outcomes.count("ok") >= 5 and "refused" in outcomes
    assert totals["cost"] == billed <= budget
    # Once aggregated, every reservation has become its cost: nothing is held any more.
    assert totals["committed"] == billed
    status = client.with_options(max_retries=0).get("/key", cast_to=object)
    assert Decimal(status["budget"]["spent_usd"]) == billed and status["budget"]["reserved_usd"] == "0"
