"""``/v1/messages`` and ``/v1/messages/count_tokens`` as API Gateway calls them: moto, the emulator, the ledger."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from chalicelib import wiring
from chalicelib.keys.store import KeyStore
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.stream_client import StreamClient, StreamResponse

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
HAIKU = "claude-haiku-4-5"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_MAX_BODY_BYTES", "200000")
    wiring.reset()


@pytest.fixture
def key(env: None, keys_table: Any) -> tuple[Any, str]:
    return KeyStore(keys_table).create(owner_sub="owner-1", owner_email="o@example.com", name="claude")


def post(
    plaintext: str | None,
    payload: Any,
    *,
    path: str = "/v1/messages",
    headers: dict[str, str] | None = None,
    **options: Any,
) -> StreamResponse:
    raw = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    sent = {"x-api-key": plaintext or "", "anthropic-version": "2023-06-01", "content-type": "application/json"}
    return StreamClient(**options).post(path, headers=headers if headers is not None else sent, body=raw)


def hello(model: str = HAIKU, text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 2048, "messages": [{"role": "user", "content": text}], **extra}


def events_of(response: StreamResponse) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in response.body.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_a_message_is_answered_validated_and_billed_exactly(key: tuple) -> None:
    record, plaintext = key
    response = post(plaintext, hello())
    assert response.status_code == 200, response.body
    message = Message.model_validate(response.json_body)
    assert message.model == HAIKU and message.content[0].type == "text" and message.stop_reason == "end_turn"
    entries = wiring.ledger().entries_for_key(record.key_id)
    assert len(entries) == 1 and entries[0]["request_id"] == response.headers["request-id"]
    prices = wiring.catalog().resolve(HAIKU).prices
    expected = compute_cost(prices, billed_usage(message))
    assert entries[0]["cost"] == expected == Decimal(response.headers["x-pennyworth-cost-usd"])
    assert Decimal(response.json_body["usage"]["cost_usd"]) == expected


def billed_usage(message: Message) -> TokenUsage:
    usage = message.usage
    return TokenUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
    )


def test_a_stream_is_anthropics_event_sequence_with_the_billed_usage(key: tuple) -> None:
    record, plaintext = key
    response = post(plaintext, hello(text="Tell me #emulator:tokens=12 #emulator:cache_read=50", stream=True))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = events_of(response)
    assert [name for name, _ in events][:3] == ["message_start", "ping", "content_block_start"]
    assert [name for name, _ in events][-2:] == ["message_delta", "message_stop"]
    for name, payload in events:
        assert payload["type"] == name
        if name != "ping":
            STREAM_EVENT.validate_python(payload)
    usage = events[-2][1]["usage"]
    assert usage["cache_read_input_tokens"] == 50 and usage["output_tokens"] == 12
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["cost"] == Decimal(usage["cost_usd"])


def test_stream_deltas_leave_as_they_are_generated(key: tuple) -> None:
    _, plaintext = key
    response = post(plaintext, hello(text="Tell me #emulator:tokens=20 #emulator:chunk_delay=0.15", stream=True))
    deltas = [
        time
        for chunk, time in zip(response.chunks, response.times, strict=True)
        if b"content_block_delta" in chunk and b"text_delta" in chunk
    ]
    assert len(deltas) >= 4 and deltas[-1] - deltas[0] > 0.4, deltas


def test_thinking_and_a_tool_call_round_trip_with_the_signature(key: tuple) -> None:
    # GIVEN a turn with thinking that calls a tool
    _, plaintext = key
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = hello(
        text="What is the weather in Paris? Use get_weather.",
        tools=tools,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    response = post(plaintext, first)
    assert response.status_code == 200, response.body
    message = Message.model_validate(response.json_body)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.stop_reason == "tool_use" and message.content[0].signature
    call = message.content[2]
    # WHEN the client sends the assistant turn back, as Claude Code does, with the tool's result
    history = [
        *first["messages"],
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
    ]
    second = post(plaintext, {**first, "messages": history, "stream": True})
    # THEN Bedrock accepts the signed thinking and answers from the tool's result
    assert second.status_code == 200, second.body
    text = "".join(p["delta"].get("text", "") for n, p in events_of(second) if n == "content_block_delta")
    assert "sunny, 21 C" in text
    # AND a tampered signature is Bedrock's 400, in Anthropic's envelope
    history[1]["content"][0]["signature"] = "forged"
    forged = post(plaintext, {**first, "messages": history})
    assert forged.status_code == 400
    assert ErrorResponse.model_validate(forged.json_body).error.type == "invalid_request_error"
    assert "signature" in forged.json_body["error"]["message"]


def test_streamed_tool_input_arrives_as_input_json_deltas(key: tuple) -> None:
    _, plaintext = key
    tools = [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    response = post(plaintext, hello(text="ls #emulator:tool=Bash", tools=tools, stream=True))
    events = events_of(response)
    [start] = [p for n, p in events if n == "content_block_start" and p["content_block"]["type"] == "tool_use"]
    assert start["content_block"]["input"] == {} and start["content_block"]["name"] == "Bash"
    pieces = [
        p["delta"]["partial_json"] for n, p in events if n == "content_block_delta" and p["index"] == start["index"]
    ]
    assert json.loads("".join(pieces)) == {"command": "ls"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_model_that_cannot_think_answers_claude_codes_requests(key: tuple) -> None:
    # Claude Code asks any unknown model for adaptive thinking and 32,000 tokens (nova-lite makes 10,000)
    record, plaintext = key
    response = post(plaintext, hello("nova-lite", max_tokens=32000, thinking={"type": "adaptive"}))
    assert response.status_code == 200, response.body
    assert [b.type for b in Message.model_validate(response.json_body).content] == ["text"]


def test_count_tokens_is_a_free_local_estimate(key: tuple) -> None:
    record, plaintext = key
    small = post(
        plaintext, {"model": HAIKU, "messages": [{"role": "user", "content": "foo"}]}, path="/v1/messages/count_tokens"
    )
    assert small.status_code == 200, small.body
    big_body = {
        "model": "claude-haiku-4-5-20251001",  # the Anthropic id Claude Code sends, a catalog alias
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "foo " * 200}],
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
    }
    big = post(plaintext, big_body, path="/v1/messages/count_tokens")
    counts = [MessageTokensCount.model_validate(r.json_body).input_tokens for r in (small, big)]
    assert 0 < counts[0] < 20 and counts[1] > 200
    assert wiring.ledger().entries_for_key(record.key_id) == []


@pytest.mark.parametrize(
    ("payload", "status", "kind"),
    [
        (b"{not json", 400, "invalid_request_error"),
        ({"model": HAIKU, "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error"),
        (hello(top_logprobs=3), 400, "invalid_request_error"),
        (hello("gpt-4o"), 404, "not_found_error"),
        (hello("titan-embed-text-v2"), 404, "not_found_error"),
        (hello(text="please #emulator:throttle"), 429, "rate_limit_error"),
        (hello(text="please #emulator:error"), 502, "api_error"),
        (hello(text="please #emulator:unavailable"), 503, "overloaded_error"),
    ],
)
def test_errors_are_anthropic_envelopes(key: tuple, payload: Any, status: int, kind: str) -> None:
    _, plaintext = key
    response = post(plaintext, payload)
    assert response.status_code == status, response.body
    assert ErrorResponse.model_validate(response.json_body).error.type == kind
    # One id everywhere Anthropic's SDKs and a support request look, refused before the model call or not.
    assert response.json_body["request_id"] == response.headers["request-id"] == response.headers["x-request-id"]


def test_a_body_over_the_limit_is_request_too_large(key: tuple) -> None:
    _, plaintext = key
    response = post(plaintext, hello(text="x" * 300_000))
    assert response.status_code == 413
    assert response.json_body["error"]["type"] == "request_too_large"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "pw-aaaaaaaaaaaa-" + "A" * 40},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "sk-ant-api03-not-ours"},
    ],
)
def test_missing_or_invalid_keys_are_401_authentication_errors(env: None, headers: dict[str, str]) -> None:
    response = post(None, hello(), headers=headers)
    assert response.status_code == 401
    assert ErrorResponse.model_validate(response.json_body).error.type == "authentication_error"
    assert response.json_body["request_id"] == response.headers["request-id"] == response.headers["x-request-id"]


def test_bearer_works_too_but_two_different_keys_do_not(key: tuple, keys_table: Any) -> None:
    _, plaintext = key
    assert post(None, hello(), headers={"authorization": f"Bearer {plaintext}"}).status_code == 200
    _, other = KeyStore(keys_table).create(owner_sub="owner-2")
    both = post(None, hello(), headers={"authorization": f"Bearer {plaintext}", "x-api-key": other})
    assert both.status_code == 401 and both.json_body["error"]["type"] == "authentication_error"
    # the OpenAI routes still read the bearer token only
    chat = StreamClient().post(
        "/v1/chat/completions",
        headers={"x-api-key": plaintext},
        body=json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}),
    )
    assert chat.status_code == 401


def test_versions_and_betas(key: tuple) -> None:
    _, plaintext = key
    base = {"x-api-key": plaintext}
    unknown_betas = {**base, "anthropic-beta": "claude-code-20250219,some-future-beta-2030-01-01"}
    assert post(None, hello(), headers=unknown_betas).status_code == 200
    assert post(None, hello(), headers=base).status_code == 200  # no version header: 2023-06-01
    newer = post(None, hello(), headers={**base, "anthropic-version": "2026-10-21"})
    assert newer.status_code == 200  # what the new SDKs send
    sampled = post(None, hello(temperature=0.5), headers={**base, "anthropic-version": "2026-10-21"})
    assert sampled.status_code == 400 and "temperature" in sampled.json_body["error"]["message"]
    for version in ("2099-01-01", "2023-01-01"):
        bad = post(None, hello(), headers={**base, "anthropic-version": version})
        assert bad.status_code == 400 and "anthropic-version" in bad.json_body["error"]["message"]
    junk = post(None, hello(), headers={**base, "anthropic-beta": "a b c"})
    assert junk.status_code == 400


def test_a_spent_budget_is_a_429_that_says_not_to_retry(env: None, keys_table: Any, usage_table: Any) -> None:
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("0.0000001"))
    response = post(plaintext, hello(max_tokens=50))
    assert response.status_code == 429
    error = ErrorResponse.model_validate(response.json_body)
    assert error.error.type == "billing_error" and "budget" in error.error.message
    assert response.headers["x-should-retry"] == "false"
    assert wiring.ledger().entries_for_key(record.key_id) == []


def test_a_rate_limited_key_gets_retry_after(env: None, keys_table: Any) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", rpm_limit=1)
    assert post(plaintext, hello()).status_code == 200
    limited = post(plaintext, hello())
    assert limited.status_code == 429 and limited.json_body["error"]["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "x-should-retry" not in limited.headers


def test_a_stream_cut_by_bedrock_ends_with_an_error_event_and_bills_what_was_made(key: tuple) -> None:
    record, plaintext = key
    response = post(plaintext, hello(text="Tell me #emulator:tokens=40 #emulator:stream_error", stream=True))
    assert response.status_code == 200
    name, payload = events_of(response)[-1]
    assert name == "error"
    assert ErrorResponse.model_validate(payload).error.type in ("api_error", "overloaded_error")
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["status"] == "partial"


@pytest.fixture(scope="module")
def recorder():
    """A private emulator whose recorded requests show what reached Bedrock."""
    from local.bedrock_emulator import start_emulator

    server, url = start_emulator(host="127.0.0.1", port=0)
    yield server, url
    server.shutdown()


def test_what_reaches_bedrock_for_a_claude_code_tool_turn(
    recorder: Any, monkeypatch: pytest.MonkeyPatch, aws: Any, keys_table: Any
) -> None:
    # GIVEN Claude Code's second request of a tool turn (shapes as captured from 2.1.332)
    server, url = recorder
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", url)
    wiring.reset()
    _, plaintext = KeyStore(keys_table).create(owner_sub="o")
    from local.bedrock_emulator.content import signature_for

    thought = "I will call Read to answer."
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    request = {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 32000,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 31999, "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.334;"},
            {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "show me a.png"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": thought, "signature": signature_for(thought)},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "a.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
                        ],
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
        ],
        "tools": [
            {"name": "Read", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}},
            {"name": "DeferredToolPlaceholder", "input_schema": {"type": "object"}, "defer_loading": True},
        ],
    }
    # WHEN it goes through the gateway
    response = post(plaintext, request)
    assert response.status_code == 200, response.body
    sent = server.requests[-1].json()
    # THEN Bedrock got the signed thinking back, the image inside the tool result, every cache point,
    # no billing-attribution line and no deferred placeholder
    system = sent["system"]
    assert system == [{"text": "You are a Claude agent."}, {"cachePoint": {"type": "default"}}]
    assistant, results = sent["messages"][1:]
    assert assistant["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": thought, "signature": signature_for(thought)}}
    }
    assert results["content"][0]["toolResult"]["content"][0]["image"]["format"] == "png"
    assert results["content"][1] == {"cachePoint": {"type": "default"}}
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == ["Read"]
    assert sent["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 31999}
    text = "".join(p["delta"].get("text", "") for n, p in events_of(response) if n == "content_block_delta")
    assert "Tool Read returned: an image (png" in text


def test_a_cut_stream_error_carries_its_bill_to_the_anthropic_sdk(key: tuple) -> None:
    import anthropic
    import httpx2

    from tests.stream_client import in_process_transport

    record, plaintext = key
    client = anthropic.Anthropic(
        base_url="http://gateway.test",
        api_key=plaintext,
        max_retries=0,
        http_client=httpx2.Client(transport=in_process_transport(httpx2)),
    )
    with pytest.raises(anthropic.APIError) as caught:
        for _ in client.messages.create(**hello(text="Tell me more #emulator:cut"), stream=True):
            pass
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    usage = caught.value.body["usage"]
    assert entry["status"] == "partial" and Decimal(usage["cost_usd"]) == entry["cost"] > 0
    assert (usage["input_tokens"], usage["output_tokens"]) == (entry["input_tokens"], entry["output_tokens"])


def test_a_cut_message_bills_its_tool_definitions(key: tuple) -> None:
    # Claude Code sends ~20k tokens of tools a request: a cut answer is billed for them too.
    record, plaintext = key
    tools = [
        {
            "name": f"workspace_tool_{n}",
            "description": "Reads, searches or edits files in the user's workspace and reports what it did. " * 12,
            "input_schema": {
                "type": "object",
                "properties": {f"argument_{m}": {"type": "string", "description": "An input."} for m in range(12)},
            },
        }
        for n in range(8)
    ]
    assert post(plaintext, hello(text="Go on", tools=tools)).status_code == 200
    whole = int(wiring.ledger().entries_for_key(record.key_id)[0]["input_tokens"])
    assert post(plaintext, hello(text="Go on #emulator:cut", tools=tools, stream=True)).status_code == 200
    [cut] = [e for e in wiring.ledger().entries_for_key(record.key_id) if e["status"] == "partial"]
    assert 0.7 * whole <= cut["input_tokens"] <= 1.4 * whole, (cut["input_tokens"], whole)


def test_count_tokens_counts_against_the_keys_request_limit_and_stays_free(env: None, keys_table: Any) -> None:
    # GIVEN a key limited to 2 requests a minute
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", rpm_limit=2)
    body = {"model": HAIKU, "messages": [{"role": "user", "content": "foo"}]}
    answers = [post(plaintext, body, path="/v1/messages/count_tokens") for _ in range(3)]
    # THEN the third call in the minute is refused like any request, and none of them is billed
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert answers[2].json_body["error"]["type"] == "rate_limit_error" and answers[2].headers["Retry-After"]
    assert post(plaintext, hello()).status_code == 429  # the minute is spent for messages too
    assert wiring.ledger().entries_for_key(record.key_id) == []
