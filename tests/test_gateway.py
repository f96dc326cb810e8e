"""The gateway against the Bedrock emulator through LiteLLM's real Bedrock code path."""

from __future__ import annotations

import json

import pytest

from chalicelib import errors
from chalicelib.catalog import load_catalog
from chalicelib.gateway import Gateway, UpstreamConfig
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.validation import parse_chat_request
from local.bedrock_emulator import count_tokens
from tests.openai_schema import assert_valid

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def gateway(emulator_url: str) -> Gateway:
    return Gateway(UpstreamConfig(region="us-east-1", endpoint_url=emulator_url, timeout_seconds=5))


def run(gateway: Gateway, **body):
    body.setdefault("model", "nova-micro")
    body.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    request = parse_chat_request(body)
    return gateway.chat(request, CATALOG.resolve(request.model), completion_id="chatcmpl-test", created=1_700_000_000)


def sse_events(body: str) -> list[str]:
    assert body.endswith("\n\n")
    events = [block for block in body.split("\n\n") if block]
    assert all(event.startswith("data: ") for event in events)
    return [event[len("data: ") :] for event in events]


def test_completion_is_openai_shaped_with_honest_usage(gateway: Gateway) -> None:
    outcome = run(gateway)
    body = outcome.body
    assert_valid("CreateChatCompletionResponse", body)
    assert body["choices"][0]["message"]["content"] == 'You said: "Hello there"'
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == count_tokens("Hello there")
    assert body["usage"]["completion_tokens"] == count_tokens('You said: "Hello there"')
    assert outcome.usage.output_tokens == body["usage"]["completion_tokens"]


def test_stream_matches_the_completion_and_every_chunk_validates(gateway: Gateway) -> None:
    plain = run(gateway).body["choices"][0]["message"]["content"]
    outcome = run(gateway, stream=True, stream_options={"include_usage": True})
    events = sse_events(outcome.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == plain
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == outcome.usage.output_tokens


def test_usage_chunk_only_when_asked_but_always_billed(gateway: Gateway) -> None:
    outcome = run(gateway, stream=True)
    chunks = [json.loads(e) for e in sse_events(outcome.body)[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert outcome.usage.output_tokens > 0


def test_streamed_tool_call_keeps_text_and_dense_indexes(gateway: Gateway) -> None:
    outcome = run(
        gateway,
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Use get_weather: what is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        stream=True,
    )
    chunks = [json.loads(e) for e in sse_events(outcome.body)[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert {call["index"] for call in calls} == {0}
    assert calls[0]["id"] and calls[0]["function"]["name"] == "get_weather"
    arguments = json.loads("".join(call["function"].get("arguments", "") for call in calls))
    assert isinstance(arguments["city"], str)
    assert "".join(d.get("content") or "" for d in deltas).strip()  # Claude's text beside the call survives
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_cached_tokens_are_reported_and_billed_separately(gateway: Gateway) -> None:
    outcome = run(gateway, messages=[{"role": "user", "content": "Hi #emulator:cache_read=100"}])
    usage = outcome.body["usage"]
    assert outcome.usage.cache_read_tokens == 100
    assert usage["prompt_tokens_details"]["cached_tokens"] == 100
    assert usage["prompt_tokens"] == outcome.usage.input_tokens + 100


@pytest.mark.parametrize(
    ("directive", "error", "status"),
    [
        ("#emulator:throttle", errors.RateLimited, 429),
        ("#emulator:error", errors.UpstreamError, 502),
        ("#emulator:unavailable", errors.ServiceUnavailable, 503),
    ],
)
def test_upstream_failures_map_to_openai_statuses(gateway: Gateway, directive: str, error: type, status: int) -> None:
    for stream in (False, True):
        with pytest.raises(error) as caught:
            run(gateway, messages=[{"role": "user", "content": f"hi {directive}"}], stream=stream)
        assert caught.value.status_code == status
    if status == 429:
        assert caught.value.headers["Retry-After"].isdigit()


def test_slow_upstream_times_out_as_504(emulator_url: str) -> None:
    gateway = Gateway(UpstreamConfig(region="us-east-1", endpoint_url=emulator_url, timeout_seconds=1))
    with pytest.raises(errors.UpstreamTimeout):
        run(gateway, messages=[{"role": "user", "content": "hi #emulator:sleep=3"}])


def test_stream_cut_midway_ends_with_an_error_event_and_is_billed(gateway: Gateway) -> None:
    outcome = run(gateway, messages=[{"role": "user", "content": "Tell me more #emulator:cut"}], stream=True)
    events = sse_events(outcome.body)
    assert events[-1] != "[DONE]"
    error = json.loads(events[-1])
    assert_valid("ErrorResponse", error)
    assert outcome.status == "partial"
    assert outcome.usage.input_tokens > 0 and outcome.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "model": "nova-micro",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                    }
                ],
            },
            "messages",
        ),
        ({"model": "nova-micro", "reasoning_effort": "low"}, "reasoning_effort"),
        ({"model": "nova-micro", "max_tokens": 1_000_000}, "max_tokens"),
    ],
)
def test_capabilities_are_checked_before_calling_bedrock(gateway: Gateway, body: dict, param: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        run(gateway, **body)
    assert caught.value.param == param
