"""The live catalog end to end on the real local stack, as issue 18's walkthrough goes, without editing code.

``pennyworth models add`` of a model the seed file does not have, calls to it from the openai
SDK, a price change, and ``pennyworth usage`` explaining both prices; then a model served by the
stack's OpenAI-compatible upstream (its key in SSM), streamed with tools; the model test.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from chalicelib.catalog.live import MISS_RECHECK_SECONDS
from cli.main import cli
from tests.integration import stack_data

pytestmark = pytest.mark.integration


def pw(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli, ["--local", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def pw_json(*args: str) -> Any:
    return json.loads(pw(*args, "--json").stdout)


def sdk(dev_info: dict[str, Any], secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=dev_info["base_url"], api_key=secret, max_retries=0, timeout=30)


def wait_for_usage(group: str, requests: int) -> dict[str, Any]:
    """The usage row of ``group`` once the aggregator has applied ``requests`` of its bills."""
    deadline = time.monotonic() + 20
    while True:
        rows = {r["group"]: r for r in pw_json("usage", "--group-by", "price")["data"]}
        if group in rows and rows[group]["requests"] >= requests or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def test_a_model_added_priced_repriced_and_explained_without_touching_code(
    project: Any, dev_info: dict[str, Any], stack: Any
) -> None:
    pw("login")
    key_id, secret = stack_data.new_key(stack, "models-e2e", name="models e2e")
    client = sdk(dev_info, secret)
    # A model the seed catalog does not have is unknown ...
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "hi"}])
    # ... until an admin adds it, priced from LiteLLM's pinned map
    added = pw_json("models", "add", "nova-pro", "--provider", "bedrock", "--model-id", "us.amazon.nova-pro-v1:0",
                    "--note", "added by the e2e walkthrough")  # fmt: skip
    first = added["prices"]
    assert added["price_versions"][0]["source"].startswith("litellm")
    # A function that refused the name rechecks the table at most once a second (docs/models.md):
    # a machine fast enough to add the model within that second would see the refusal once more.
    time.sleep(MISS_RECHECK_SECONDS)
    # The openai SDK uses it at once (the streaming function has its own snapshot: first request rechecks)
    reply = client.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "Hello Pro"}])
    assert reply.choices[0].message.content == 'You said: "Hello Pro"'
    # The admin changes its price: a new version, from now
    changed = pw_json("models", "update", "nova-pro", "--input-price", "1.00", "--output-price", "4.00")
    assert [v["version"] for v in changed["price_versions"]] == [1, 2]
    # Within the propagation bound every function bills at the new price
    deadline = time.monotonic() + 35
    calls = 1
    while True:
        client.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "Hello again"}])
        calls += 1
        entries = stack_data.entries(stack, key_id, calls)  # each bill is stored just after its answer leaves
        if int(entries[-1]["price_version"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert int(entries[-1]["price_version"]) == 2
    # And usage explains both bills: each version with the rates it billed at
    rows = wait_for_usage("nova-pro#2", 1)
    assert rows["nova-pro#1"]["prices"]["input"] == first["input"]
    assert rows["nova-pro#2"]["prices"]["input"] == "1"
    for version in (1, 2):
        billed = sum(Decimal(e["cost"]) for e in entries if int(e["price_version"]) == version)
        assert Decimal(rows[f"nova-pro#{version}"]["cost_usd"]) == billed
    table = pw("usage", "--group-by", "price").stdout
    assert "nova-pro v1" in table and "nova-pro v2 ($1 in / $4 out per M)" in table
    # The model test: status, latency, tokens and the exact cost, billed to a stated key
    test = pw_json("models", "test", "nova-pro", "--key", key_id)
    assert test["ok"] and test["status"] == 200 and test["usage"]["input_tokens"] > 0 and test["price_version"] == 2
    # Entries sort by the second, then by request id: within a second "the last" is not the newest.
    [probe] = [e for e in stack_data.entries(stack, key_id) if e["request_id"] == test["request_id"]]
    assert Decimal(test["cost_usd"]) == Decimal(probe["cost"])
    # Removing it while a key names it is refused; the model added here is then removed
    pw("models", "remove", "nova-pro", "--yes")
    assert "nova-pro" not in [m["id"] for m in pw_json("models", "list")["data"]]


def test_a_model_of_the_local_openai_compatible_upstream_streams_with_tools(
    project: Any, dev_info: dict[str, Any], stack: Any
) -> None:
    pw("login")
    upstream = dev_info["openai_upstream"]
    pw("models", "add", "local-llama", "--provider", "openai", "--model-id", "llama-3.1-8b",
       "--base-url", upstream["base_url"], "--api-key-parameter", upstream["api_key_parameter"],
       "--input-price", "0.20", "--output-price", "0.60", "--tools")  # fmt: skip
    key_id, secret = stack_data.new_key(stack, "upstream-e2e", name="upstream e2e")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
    stream = sdk(dev_info, secret).chat.completions.create(
        model="local-llama",
        messages=[{"role": "user", "content": "Use get_weather for Lisbon"}],
        tools=[tool],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert calls[0][0].function.name == "get_weather"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    [entry] = stack_data.entries(stack, key_id, 1)
    expected = Decimal("0.20") / 1_000_000 * int(entry["input_tokens"]) + Decimal("0.60") / 1_000_000 * int(
        entry["output_tokens"]
    )
    assert Decimal(entry["cost"]) == expected and entry["served_by"] == "openai/llama-3.1-8b"
    pw("models", "remove", "local-llama", "--yes")
