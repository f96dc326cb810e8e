"""The official ``anthropic`` SDK against the running stack: every answer checked by the SDK's own types.

The SDK builds its objects without validating them, so each test also
validates the raw JSON (``Message.model_validate``) and every raw stream
event (``RawMessageStreamEvent``).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from tests.integration import stack_data
from tests.integration.stack_data import entries

pytestmark = pytest.mark.integration

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
MODEL = "claude-haiku-4-5"


def new_key(stack: Any, **limits: Any) -> tuple[str, str]:
    return stack_data.new_key(stack, "anthropic-sdk", name="sdk", **limits)


def sdk(stack: Any, plaintext: str) -> anthropic.Anthropic:
    # The gateway root, as ANTHROPIC_BASE_URL: the SDK adds /v1/messages itself.
    return anthropic.Anthropic(base_url=stack.api_url, api_key=plaintext, max_retries=0, timeout=60)


def test_create_is_a_valid_message_billed_as_it_says(stack: Any) -> None:
    key_id, plaintext = new_key(stack)
    raw = sdk(stack, plaintext).messages.with_raw_response.create(
        model=MODEL,
        max_tokens=256,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hello #emulator:cache_read=40 #emulator:cache_write=8"}],
    )
    body = raw.http_response.json()
    message = Message.model_validate(body)
    assert message.content[0].type == "text" and message.stop_reason == "end_turn"
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (40, 8)
    [entry] = entries(stack, key_id, 1)
    assert entry["cost"] == Decimal(body["usage"]["cost_usd"]) == Decimal(raw.headers["x-pennyworth-cost-usd"])
    assert entry["request_id"] == raw.request_id  # the SDK reads Anthropic's request-id header


def test_stream_arrives_as_generated_and_every_event_validates(stack: Any) -> None:
    key_id, plaintext = new_key(stack)
    client = sdk(stack, plaintext)
    prompt = "Tell me a story #emulator:tokens=30 #emulator:chunk_delay=0.4"
    started = time.monotonic()
    arrivals: list[float] = []
    events: list[dict[str, Any]] = []
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=256, stream=True, messages=[{"role": "user", "content": prompt}]
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = json.loads(line.removeprefix("data: "))
                events.append(payload)
                if payload["type"] == "content_block_delta":
                    arrivals.append(time.monotonic() - started)
    total = time.monotonic() - started
    for payload in events:
        if payload["type"] != "ping":
            STREAM_EVENT.validate_python(payload)
    # 10 pieces 0.4 s apart: the first well before the last (a buffered answer arrives all at once)
    assert len(arrivals) >= 5 and arrivals[-1] - arrivals[0] > 2.5 and total - arrivals[0] > 2.5, arrivals
    final = events[-2]
    assert final["type"] == "message_delta" and final["usage"]["output_tokens"] == 30
    [entry] = entries(stack, key_id, 1)
    assert entry["cost"] == Decimal(final["usage"]["cost_usd"])
    # and the SDK's own stream helper accumulates the same answer
    with client.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Hi"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == 'You said: "Hi"' and message.usage.output_tokens > 0


def test_tools_and_thinking_round_trip_through_the_sdk(stack: Any) -> None:
    _, plaintext = new_key(stack)
    client = sdk(stack, plaintext)
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "Paris weather? Use get_weather."}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = client.messages.create(model=MODEL, max_tokens=2048, tools=tools, thinking=thinking, messages=messages)
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use"] and first.stop_reason == "tool_use"
    call = first.content[-1]
    messages += [
        {"role": "assistant", "content": first.content},  # the SDK's own objects, signature included
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
    ]
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=2048, tools=tools, thinking=thinking, messages=messages
    )
    second = Message.model_validate(raw.http_response.json())
    assert second.stop_reason == "end_turn" and "sunny, 21 C" in second.content[-1].text


def test_count_tokens(stack: Any) -> None:
    key_id, plaintext = new_key(stack)
    counted = sdk(stack, plaintext).messages.count_tokens(
        model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "word " * 100}]
    )
    assert 100 <= counted.input_tokens < 200
    assert entries(stack, key_id) == []


def test_errors_are_the_sdks_exceptions_with_anthropics_envelope(stack: Any) -> None:
    _, plaintext = new_key(stack)
    client = sdk(stack, plaintext)
    cases = [
        (anthropic.AuthenticationError, dict(client=sdk(stack, "pw-aaaaaaaaaaaa-" + "A" * 40))),
        (anthropic.NotFoundError, dict(model="gpt-4o")),
        (anthropic.BadRequestError, dict(max_tokens=0)),
        (anthropic.RateLimitError, dict(content="slow down #emulator:throttle")),
    ]
    for expected, change in cases:
        caller = change.pop("client", client)
        arguments = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        if "content" in change:
            arguments["messages"] = [{"role": "user", "content": change.pop("content")}]
        with pytest.raises(expected) as caught:
            caller.messages.create(**{**arguments, **change})
        ErrorResponse.model_validate(caught.value.body)


def test_a_spent_budget_is_refused_before_bedrock_and_not_retried(stack: Any) -> None:
    key_id, plaintext = new_key(stack, monthly_budget_usd=Decimal("0.0000001"))
    client = anthropic.Anthropic(base_url=stack.api_url, api_key=plaintext, max_retries=5, timeout=30)
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 3  # x-should-retry: false stops the SDK's five retries
    assert ErrorResponse.model_validate(caught.value.body).error.type == "billing_error"
    assert entries(stack, key_id) == []
