"""``POST /v1/responses`` as API Gateway calls it: moto for DynamoDB, the emulator for Bedrock.

Every body and every stream event is validated against OpenAI's spec; billing is
checked against the ledger, exactly as for chat completions.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

from chalicelib import wiring
from chalicelib.keys.store import KeyStore
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.openai_schema import assert_valid, assert_valid_stream_event
from tests.stream_client import StreamClient, StreamResponse

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def bedrock():
    """A private emulator: its recorded requests show what reached Bedrock."""
    from local.bedrock_emulator import start_emulator

    server, url = start_emulator(host="127.0.0.1", port=0)
    yield server, url
    server.shutdown()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, aws, bedrock) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", bedrock[1])
    monkeypatch.setenv("PENNYWORTH_MAX_BODY_BYTES", "200000")
    wiring.reset()


@pytest.fixture
def key(env, keys_table) -> tuple:
    return KeyStore(keys_table).create(owner_sub="owner-1", owner_email="o@example.com", name="test")


def post(plaintext: str | None, body, *, headers: dict | None = None, stop_after: int | None = None) -> StreamResponse:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = headers if headers is not None else {"Authorization": f"Bearer {plaintext}"}
    return StreamClient().post("/v1/responses", headers=headers, body=raw, stop_after=stop_after)


def events_of(response: StreamResponse) -> list[dict]:
    """The stream's events, each checked: named frames, valid against the spec, numbered in order."""
    assert response.headers["Content-Type"].startswith("text/event-stream")
    text = response.body.decode()
    frames = [frame for frame in text.split("\n\n") if frame]
    events = []
    for frame in frames:
        name, data = frame.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        assert_valid_stream_event(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def ledger_entries(key_id: str) -> list[dict]:
    return wiring.ledger().entries_for_key(key_id)


def last_bedrock_request(bedrock) -> dict:
    return bedrock[0].requests[-1].json()


def test_a_response_is_answered_validated_and_billed_exactly(key) -> None:
    record, plaintext = key
    response = post(plaintext, {"model": "nova-micro", "input": "Hello there", "metadata": {"team": "a"}})
    assert response.status_code == 200, response.body
    body = response.json_body
    assert_valid("Response", body)
    assert body["status"] == "completed" and body["metadata"] == {"team": "a"}
    assert body["output"][0]["content"][0]["text"] == 'You said: "Hello there"'
    [entry] = ledger_entries(record.key_id)
    usage = TokenUsage(input_tokens=body["usage"]["input_tokens"], output_tokens=body["usage"]["output_tokens"])
    assert entry["cost"] == compute_cost(wiring.catalog().resolve("nova-micro").prices, usage)
    assert Decimal(body["usage"]["cost_usd"]) == entry["cost"] == Decimal(response.headers["x-pennyworth-cost-usd"])
    assert entry["request_id"] == response.headers["x-request-id"] and body["id"] == f"resp_{entry['request_id']}"


def test_a_streamed_response_has_the_documented_events_and_the_billed_cost(key) -> None:
    record, plaintext = key
    response = post(plaintext, {"model": "nova-micro", "input": "Stream me", "stream": True})
    assert response.status_code == 200
    events = events_of(response)
    kinds = [e["type"] for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    assert_valid("Response", final)
    assert final["output"][0]["content"][0]["text"] == text == 'You said: "Stream me"'
    [entry] = ledger_entries(record.key_id)
    assert Decimal(final["usage"]["cost_usd"]) == entry["cost"] > 0
    assert entry["request_id"] == response.headers["x-request-id"]


def test_deltas_leave_as_bedrock_produces_them(key) -> None:
    _, plaintext = key
    body = {"model": "nova-micro", "input": "go #emulator:tokens=40 #emulator:chunk_delay=0.05", "stream": True}
    response = post(plaintext, body)
    events = events_of(response)
    delta_times = [t for t, e in zip(response.times, events, strict=True) if e["type"] == "response.output_text.delta"]
    assert len(delta_times) >= 10
    # Paced at 50 ms a chunk: the first delta is out long before the last (not buffered to the end).
    assert delta_times[-1] - delta_times[0] > 0.3


def test_a_function_tool_round_trip(key, bedrock) -> None:
    _, plaintext = key
    first = post(
        plaintext, {"model": "nova-lite", "input": "What is the weather in Paris? get_weather", "tools": [WEATHER]}
    )
    assert first.status_code == 200, first.body
    assert_valid("Response", first.json_body)
    [call] = [item for item in first.json_body["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"]
    sent = last_bedrock_request(bedrock)
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    follow_up = {
        "model": "nova-lite",
        "tools": [WEATHER],
        "input": [
            {"role": "user", "content": "What is the weather in Paris? get_weather"},
            *first.json_body["output"],
            {"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees and sunny"},
        ],
        "stream": True,
    }
    second = post(plaintext, follow_up)
    events = events_of(second)
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert "18 degrees and sunny" in final["output"][0]["content"][0]["text"]


def test_namespaced_and_custom_tools_reach_bedrock_as_functions_and_come_back_as_declared(key, bedrock) -> None:
    _, plaintext = key
    tools = [
        {"type": "custom", "name": "apply_patch", "description": "Patch files."},
        {
            "type": "namespace",
            "name": "agents",
            "description": "Sub-agents.",
            "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}],
        },
    ]
    response = post(plaintext, {"model": "nova-lite", "input": "please agents__spawn", "tools": tools, "stream": True})
    events = events_of(response)
    [spawn] = [
        e["item"] for e in events if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    ]
    assert (spawn["name"], spawn["namespace"]) == ("spawn", "agents")
    names = [t["toolSpec"]["name"] for t in last_bedrock_request(bedrock)["toolConfig"]["tools"]]
    assert names == ["apply_patch", "agents__spawn"]
    forced = post(
        plaintext,
        {
            "model": "nova-lite",
            "input": "patch it",
            "tools": tools,
            "tool_choice": {"type": "custom", "name": "apply_patch"},
        },
    )
    [patch] = [item for item in forced.json_body["output"] if item["type"] == "custom_tool_call"]
    assert_valid("Response", forced.json_body)
    assert isinstance(patch["input"], str) and patch["name"] == "apply_patch"
    # The custom call and its output go back as a Bedrock toolUse/toolResult pair.
    again = post(
        plaintext,
        {
            "model": "nova-lite",
            "tools": tools,
            "input": [
                {"role": "user", "content": "patch it"},
                patch,
                {"type": "custom_tool_call_output", "call_id": patch["call_id"], "output": "applied"},
            ],
        },
    )
    assert again.status_code == 200, again.body
    messages = last_bedrock_request(bedrock)["messages"]
    assert messages[1]["content"][-1]["toolUse"]["input"] == {"input": patch["input"]}
    assert "applied" in again.json_body["output"][0]["content"][0]["text"]


def test_claude_thinking_round_trips_through_encrypted_content(key, bedrock) -> None:
    _, plaintext = key
    common = {
        "model": "claude-haiku-4-5",
        "tools": [WEATHER],
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "max_output_tokens": 4000,
        "stream": True,
    }
    first = events_of(post(plaintext, {**common, "input": "Weather in Oslo? get_weather"}))
    final = first[-1]["response"]
    kinds = [item["type"] for item in final["output"]]
    assert kinds[0] == "reasoning" and "function_call" in kinds
    reasoning = final["output"][0]
    assert reasoning["summary"][0]["text"] and reasoning["encrypted_content"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    call = next(item for item in final["output"] if item["type"] == "function_call")
    events_of(
        post(
            plaintext,
            {
                **common,
                "input": [
                    {"role": "user", "content": "Weather in Oslo? get_weather"},
                    *final["output"],
                    {"type": "function_call_output", "call_id": call["call_id"], "output": "cold"},
                ],
            },
        )
    )
    assistant = last_bedrock_request(bedrock)["messages"][1]
    thinking = assistant["content"][0]["reasoningContent"]["reasoningText"]
    assert thinking["text"] == reasoning["summary"][0]["text"] and thinking["signature"]


def test_structured_output_is_json_matching_the_schema(key) -> None:
    _, plaintext = key
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    text = {"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}}
    response = post(plaintext, {"model": "claude-haiku-4-5", "input": "Ada, 36", "text": text})
    assert response.status_code == 200, response.body
    assert_valid("Response", response.json_body)
    value = json.loads(response.json_body["output"][0]["content"][0]["text"])
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    assert response.json_body["text"] == text


def test_images_reach_bedrock_from_messages_and_tool_outputs(key, bedrock) -> None:
    _, plaintext = key
    response = post(
        plaintext,
        {
            "model": "nova-lite",
            "tools": [WEATHER],
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Look"}, {"type": "input_image", "image_url": PNG}],
                },
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [{"type": "input_image", "image_url": PNG}],
                },
            ],
        },
    )
    assert response.status_code == 200, response.body
    messages = last_bedrock_request(bedrock)["messages"]
    assert "image" in messages[0]["content"][1]
    assert "image" in messages[2]["content"][0]["toolResult"]["content"][0]
    text_only = post(
        plaintext,
        {"model": "nova-micro", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": PNG}]}]},
    )
    assert text_only.status_code == 400 and text_only.json_body["error"]["code"] == "unsupported_input"


def test_max_output_tokens_makes_an_incomplete_response(key) -> None:
    _, plaintext = key
    response = post(plaintext, {"model": "nova-micro", "input": "x #emulator:tokens=100", "max_output_tokens": 16})
    body = response.json_body
    assert_valid("Response", body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 16


def test_a_stream_that_breaks_off_ends_with_response_failed_and_bills_what_was_made(key) -> None:
    record, plaintext = key
    response = post(
        plaintext, {"model": "nova-micro", "input": "x #emulator:tokens=60 #emulator:stream_error", "stream": True}
    )
    assert response.status_code == 200
    events = events_of(response)
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    [entry] = ledger_entries(record.key_id)
    assert entry["status"] == "partial" and Decimal(failed["usage"]["cost_usd"]) == entry["cost"] > 0


def test_a_client_that_hangs_up_is_billed_for_what_was_generated(key) -> None:
    record, plaintext = key
    body = {"model": "nova-micro", "input": "x #emulator:tokens=200 #emulator:chunk_delay=0.02", "stream": True}
    post(plaintext, body, stop_after=6)
    [entry] = ledger_entries(record.key_id)
    assert entry["status"] == "partial" and entry["cost"] > 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, None),
        ({"model": "nova-micro"}, 400, None),
        ({"model": "gpt-5", "input": "hi"}, 404, "model_not_found"),
        ({"model": "titan-embed-text-v2", "input": "hi"}, 404, "model_not_found"),
        ({"model": "nova-micro", "input": "x" * 300_000}, 413, "request_too_large"),
        ({"model": "nova-micro", "input": "hi", "previous_response_id": "resp_1"}, 400, "unsupported_parameter"),
        (
            {
                "model": "nova-micro",
                "input": "hi",
                "tools": [{"type": "web_search"}],
                "tool_choice": {"type": "web_search"},
            },
            400,
            "unsupported_tool",
        ),
        ({"model": "nova-micro", "input": "hi", "reasoning": {"effort": "high"}}, 400, "unsupported_parameter"),
        ({"model": "nova-micro", "input": "hi", "max_output_tokens": 1_000_000}, 400, "invalid_value"),
        ({"model": "nova-micro", "input": "please #emulator:throttle"}, 429, "upstream_throttled"),
        ({"model": "nova-micro", "input": "please #emulator:error", "stream": True}, 502, "upstream_error"),
    ],
)
def test_errors_are_openai_envelopes_with_the_right_status(key, body, status, code) -> None:
    record, plaintext = key
    response = post(plaintext, body)
    assert response.status_code == status, response.body
    assert_valid("ErrorResponse", response.json_body)
    if code:
        assert response.json_body["error"]["code"] == code
    if status == 429:
        assert int(response.headers["Retry-After"]) >= 1
    assert ledger_entries(record.key_id) == []


def test_the_reasoning_error_names_the_responses_parameter(key) -> None:
    _, plaintext = key
    response = post(plaintext, {"model": "nova-micro", "input": "hi", "reasoning": {"effort": "high"}})
    assert response.json_body["error"]["param"] == "reasoning.effort"


def test_a_missing_key_is_a_401(env) -> None:
    response = post(None, {"model": "nova-micro", "input": "hi"}, headers={})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert_valid("ErrorResponse", response.json_body)


def test_budgets_and_rate_limits_apply_as_for_chat_completions(env, keys_table) -> None:
    _, broke = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("0.0000001"))
    response = post(broke, {"model": "nova-micro", "input": "hi", "max_output_tokens": 50})
    assert response.status_code == 429 and response.json_body["error"]["code"] == "insufficient_quota"
    record, limited = KeyStore(keys_table).create(owner_sub="o", rpm_limit=1)
    assert post(limited, {"model": "nova-micro", "input": "hi"}).status_code == 200
    refused = post(limited, {"model": "nova-micro", "input": "again", "stream": True})
    assert refused.status_code == 429 and refused.json_body["error"]["type"] == "rate_limit_error"
    assert len(ledger_entries(record.key_id)) == 1


def test_the_allowlist_applies(env, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["nova-micro"])
    response = post(plaintext, {"model": "claude-haiku-4-5", "input": "hi"})
    assert response.status_code == 403 and response.json_body["error"]["code"] == "model_not_allowed"


def test_a_stalled_upstream_is_cut_at_the_deadline_and_billed_its_prompt(key) -> None:
    # 5 s left for the whole answer: Bedrock gets what is left minus the billing margin, then a 504.
    # Bedrock had the prompt and read it: the gateway gave up, so the prompt is billed (partial).
    record, plaintext = key
    raw = json.dumps({"model": "nova-micro", "input": "slow #emulator:sleep=4", "stream": True})
    response = StreamClient(timeout_seconds=5).post(
        "/v1/responses", headers={"Authorization": f"Bearer {plaintext}"}, body=raw
    )
    assert response.status_code == 504 and response.json_body["error"]["code"] == "upstream_timeout"
    assert_valid("ErrorResponse", response.json_body)
    [entry] = ledger_entries(record.key_id)
    assert entry["status"] == "partial" and entry["input_tokens"] > 0 and entry["output_tokens"] == 0
    assert Decimal(response.headers["x-pennyworth-cost-usd"]) == entry["cost"]


def test_hosted_tools_offered_are_dropped_and_named_in_a_header(key) -> None:
    record, plaintext = key
    body = {"model": "nova-micro", "input": "hi", "tools": [{"type": "web_search"}, {"type": "file_search"}]}
    for stream in (False, True):
        response = post(plaintext, {**body, "stream": stream})
        assert response.status_code == 200, response.body
        assert response.headers["x-pennyworth-dropped-tools"] == "web_search, file_search"
    plain = post(plaintext, {"model": "nova-micro", "input": "hi"})
    assert "x-pennyworth-dropped-tools" not in plain.headers
