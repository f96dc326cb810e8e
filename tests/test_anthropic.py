"""The Messages API adapter's translations: Anthropic bodies → ``Conversation``, events → Anthropic answers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from chalicelib import errors
from chalicelib.conversation.events import (
    Billed,
    Completion,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.conversation.request import Reasoning
from chalicelib.keys.store import api_key_token
from chalicelib.protocols.anthropic.parse import (
    COUNT_TOKENS_PARAMETERS,
    MESSAGES_PARAMETERS,
    parse_count_tokens_request,
    parse_messages_request,
)
from chalicelib.protocols.anthropic.render import error_body, render_message, stream_events
from chalicelib.shared.usage import TokenUsage
from tests.factories import usage_entry

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
KEY = "pw-abcdefghijkl-" + "A" * 40


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}], **fields}


def refused(payload: dict[str, Any], param: str, match: str | None = None) -> errors.InvalidRequest:
    with pytest.raises(errors.InvalidRequest, match=match) as caught:
        parse_messages_request(payload)
    assert caught.value.param == param, caught.value.message
    return caught.value


# -- requests -----------------------------------------------------------------------------------


def test_a_claude_code_turn_becomes_one_conversation() -> None:
    # GIVEN what Claude Code 2.1.332 sends on its default model (trimmed, shapes as captured)
    request = {
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332.334; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nAttribution…\n</system-reminder>\n"},
                    {"type": "text", "text": "Reply with the word pong", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {"role": "system", "content": "# Environment\n…", "output_config": {"effort": "low"}},
        ],
        "tools": [
            {"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {}}},
            {"name": "DeferredToolPlaceholder", "input_schema": {"type": "object"}, "defer_loading": True},
        ],
        "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }
    # WHEN it is parsed
    conversation = parse_messages_request(request, betas=("claude-code-20250219",)).conversation
    # THEN the billing line is gone, cache points stay where they were, the per-turn system message
    # stays in place and sets the effort, and the deferred placeholder is not offered
    assert conversation.messages == [
        {
            "role": "system",
            "content": [{"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nAttribution…\n</system-reminder>\n"},
                {"type": "text", "text": "Reply with the word pong", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "# Environment\n…"}]},
    ]
    assert [t["function"]["name"] for t in conversation.tools] == ["Bash"]
    assert conversation.reasoning == Reasoning(effort="low")
    assert conversation.stream and conversation.max_tokens == 128000
    assert conversation.user == request["metadata"]["user_id"]
    assert conversation.annotations["anthropic_betas"] == "claude-code-20250219"


def test_a_tool_round_trip_keeps_thinking_signatures_and_cache_points() -> None:
    conversation = parse_messages_request(
        body(
            messages=[
                {"role": "user", "content": "run it"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
                        {"type": "redacted_thinking", "data": "ZW5j"},
                        {"type": "text", "text": "I will run it."},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "echo hi"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi\n", "is_error": False},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [{"type": "text", "text": "<tool_use_error>no</tool_use_error>"}],
                            "is_error": True,
                            "cache_control": {"type": "ephemeral"},
                        },
                        {"type": "text", "text": "go on"},
                    ],
                },
            ],
            tools=[
                {"name": "Bash", "input_schema": {"type": "object"}},
                {"name": "Read", "input_schema": {"type": "object"}},
            ],
        )
    ).conversation
    assistant, first, second, user = conversation.messages[1:]
    assert assistant == {
        "role": "assistant",
        "content": [{"type": "text", "text": "I will run it."}],
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "echo hi"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "Read", "arguments": "{}"}},
        ],
        "thinking_blocks": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "ZW5j"},
        ],
    }
    assert first == {"role": "tool", "tool_call_id": "toolu_1", "content": [{"type": "text", "text": "hi\n"}]}
    assert second["cache_control"] == {"type": "ephemeral"} and second["tool_call_id"] == "toolu_2"
    assert user == {"role": "user", "content": [{"type": "text", "text": "go on"}]}


def test_a_tool_reference_loads_its_deferred_tool() -> None:
    tools = [
        {"name": "ToolSearch", "input_schema": {"type": "object"}},
        {"name": "WebFetch", "input_schema": {"type": "object"}, "defer_loading": True},
        {"name": "Cron", "input_schema": {"type": "object"}, "defer_loading": True},
    ]
    messages = [
        {"role": "user", "content": "find web fetch"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "tool_reference", "tool_name": "WebFetch"}],
                },
                {"type": "text", "text": "Tool loaded."},
            ],
        },
    ]
    conversation = parse_messages_request(body(messages=messages, tools=tools)).conversation
    assert [t["function"]["name"] for t in conversation.tools] == ["ToolSearch", "WebFetch"]
    assert conversation.messages[2]["content"] == [{"type": "text", "text": "Tool WebFetch loaded."}]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any"}, "required", None),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}, None),
        ({"type": "none"}, "none", None),
    ],
)
def test_tool_choice_maps_to_the_cores_choice(choice: dict, expected: Any, parallel: bool | None) -> None:
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    conversation = parse_messages_request(body(tools=tools, tool_choice=choice)).conversation
    assert conversation.tool_choice == expected and conversation.parallel_tool_calls is parallel


def test_thinking_budgets_and_efforts() -> None:
    enabled = parse_messages_request(body(max_tokens=2000, thinking={"type": "enabled", "budget_tokens": 1024}))
    assert enabled.conversation.reasoning == Reasoning(budget_tokens=1024)
    adaptive = parse_messages_request(body(thinking={"type": "adaptive"}))
    assert adaptive.conversation.reasoning == Reasoning(effort="high")  # Anthropic's default effort
    capped = parse_messages_request(body(thinking={"type": "adaptive"}, output_config={"effort": "max"}))
    assert capped.conversation.reasoning == Reasoning(effort="high")
    assert parse_messages_request(body(thinking={"type": "disabled"})).conversation.reasoning is None
    # effort alone does not turn thinking on
    assert parse_messages_request(body(output_config={"effort": "low"})).conversation.reasoning is None
    refused(body(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}), "thinking.budget_tokens")
    refused(body(thinking={"type": "enabled", "budget_tokens": 1000}), "thinking.budget_tokens")
    refused(body(thinking={"type": "enabled", "budget_tokens": True}), "thinking.budget_tokens")
    refused(body(thinking={"type": "sometimes"}), "thinking.type")
    refused(body(thinking={"type": "adaptive"}, output_config={"effort": "extreme"}), "output_config.effort")


def test_json_schema_output_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    parsed = parse_messages_request(body(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert parsed.conversation.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    refused(body(output_config={"format": {"type": "xml"}}), "output_config.format")


def test_images_are_inline_base64_only() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    parsed = parse_messages_request(
        body(messages=[{"role": "user", "content": [image, {"type": "text", "text": "?"}]}])
    )
    assert parsed.conversation.has_images
    assert parsed.conversation.messages[0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    url = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    error = refused(
        body(messages=[{"role": "user", "content": [url]}]), "messages.0.content.0.source", "never downloads"
    )
    assert error.code == "unsupported_image_source"
    broken = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}
    refused(body(messages=[{"role": "user", "content": [broken]}]), "messages.0.content.0.source.data")
    svg = {"type": "image", "source": {"type": "base64", "media_type": "image/svg+xml", "data": PNG}}
    refused(body(messages=[{"role": "user", "content": [svg]}]), "messages.0.content.0.source.media_type")


def test_top_level_cache_control_marks_the_last_block() -> None:
    parsed = parse_messages_request(body(cache_control={"type": "ephemeral", "ttl": "1h"}))
    assert parsed.conversation.messages[-1]["content"] == [
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    refused(body(cache_control={"type": "persistent"}), "cache_control")


def test_generation_settings_are_passed() -> None:
    conversation = parse_messages_request(
        body(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END"], service_tier="auto", speed="standard")
    ).conversation
    assert (conversation.temperature, conversation.top_p, conversation.top_k) == (0.2, 0.9, 40)
    assert conversation.stop == ("END",)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_tokens=True), "max_tokens"),
        (body(max_tokens="10"), "max_tokens"),
        (body(model=""), "model"),
        (body(messages=[]), "messages"),
        (body(messages=[{"role": "assistant", "content": "only me"}]), "messages"),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages.0.role"),
        (body(messages=[{"role": "user", "content": "x", "name": "n"}]), "messages.0.name"),
        (body(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]), "messages.0.content.0"),
        (body(messages=[{"role": "user", "content": [{"text": "no type"}]}]), "messages.0.content.0"),
        (body(temperature=1.5), "temperature"),
        (body(top_k=0), "top_k"),
        (body(stop_sequences=["  "]), "stop_sequences"),
        (body(stop_sequences="END"), "stop_sequences"),
        (body(metadata={"user_id": "u", "tenant": "t"}), "metadata.tenant"),
        (body(stream="yes"), "stream"),
        (body(service_tier="priority"), "service_tier"),
        (body(context_management={"edits": "all"}), "context_management"),
        (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0"),
        (body(tools=[{"name": "bad name", "input_schema": {"type": "object"}}]), "tools.0.name"),
        (body(tools=[{"name": "t", "input_schema": {"type": "string"}}]), "tools.0.input_schema"),
        (body(tools=[{"name": "t", "input_schema": {"type": "object"}, "extra": 1}]), "tools.0.extra"),
        (
            body(
                tool_choice={"type": "tool", "name": "missing"},
                tools=[{"name": "t", "input_schema": {"type": "object"}}],
            ),
            "tool_choice.name",
        ),
        (body(tool_choice={"type": "any"}), "tool_choice"),
        (body(frequency_penalty=0.5), "frequency_penalty"),
        (body(container="c1"), "container"),
        (body(speed="fast"), "speed"),
        (body(inference_geo="eu"), "inference_geo"),
        (body(mcp_servers=[{"type": "url", "url": "https://x", "name": "x"}]), "mcp_servers"),
    ],
)
def test_bad_or_unsupported_requests_are_400s_naming_the_parameter(payload: dict, param: str) -> None:
    refused(payload, param)


def test_version_2026_10_21_has_no_sampling_parameters() -> None:
    # The new SDKs send anthropic-version 2026-10-21, where Anthropic answers these with a 400 (even at defaults).
    for name, value in (("temperature", 1), ("top_p", 0.9), ("top_k", 5)):
        with pytest.raises(errors.InvalidRequest, match="2023-06-01") as caught:
            parse_messages_request(body(**{name: value}), version="2026-10-21")
        assert caught.value.param == name
        parse_messages_request(body(**{name: value}), version="2023-06-01")  # Claude Code's version keeps them


def test_unsigned_thinking_is_dropped_and_whitespace_text_skipped() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "t", "signature": ""}, {"type": "text", "text": "ok"}],
        },
        {"role": "user", "content": "y"},
    ]
    assistant = parse_messages_request(body(messages=messages)).conversation.messages[1]
    assert "thinking_blocks" not in assistant and assistant["content"] == [{"type": "text", "text": "ok"}]


def test_hostile_inputs_are_bounded_or_refused_cleanly() -> None:
    # Deeply nested schemas are the model's business, not a crash; absurd numbers are refused.
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"x": deep}}
    assert parse_messages_request(body(tools=[{"name": "t", "input_schema": deep}])).conversation.tools
    refused(body(max_tokens=10**30, thinking={"type": "enabled", "budget_tokens": 10**40}), "thinking.budget_tokens")
    refused(body(temperature=float("nan")), "temperature")
    refused(body(messages=[{"role": "user", "content": [[["nested"]]]}]), "messages.0.content.0")


def test_count_tokens_takes_no_generation_settings() -> None:
    conversation = parse_count_tokens_request(
        {"model": "m", "messages": [{"role": "user", "content": "foo"}], "tools": []}
    )
    assert conversation.max_tokens is None and conversation.tools is None
    with pytest.raises(errors.InvalidRequest, match="max_tokens"):
        parse_count_tokens_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5})
    assert set(COUNT_TOKENS_PARAMETERS) < set(MESSAGES_PARAMETERS)


# -- keys ---------------------------------------------------------------------------------------


def test_x_api_key_is_read_only_where_accepted_and_never_guessed_between() -> None:
    other = "pw-mnopqrstuvwx-" + "B" * 40
    assert api_key_token({"x-api-key": KEY}) is None  # the OpenAI routes keep Bearer only
    assert api_key_token({"X-Api-Key": KEY}, accept_x_api_key=True) == KEY
    assert api_key_token({"authorization": f"Bearer {KEY}"}, accept_x_api_key=True) == KEY
    both = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    assert api_key_token(both, accept_x_api_key=True) == KEY
    # another provider's key beside ours gives way to ours
    assert api_key_token({"authorization": f"Bearer {KEY}", "x-api-key": "sk-ant-xyz"}, accept_x_api_key=True) == KEY
    assert api_key_token({"authorization": "Bearer sk-ant-xyz", "x-api-key": KEY}, accept_x_api_key=True) == KEY
    with pytest.raises(errors.AuthenticationFailed) as caught:
        api_key_token({"authorization": f"Bearer {KEY}", "x-api-key": other}, accept_x_api_key=True)
    assert caught.value.code == "ambiguous_api_key" and KEY not in caught.value.message


# -- answers ------------------------------------------------------------------------------------


def billed(**usage: int) -> Billed:
    tokens = TokenUsage(**usage)
    return Billed(usage_entry(usage=tokens, model="claude-haiku-4-5"))


def answer_events() -> list[Any]:
    return [
        ReasoningDelta(text="Think"),
        ReasoningDelta(text="ing.", signature="sig=="),
        ReasoningDelta(redacted="b64=="),
        TextDelta("Hello"),
        TextDelta(" there"),
        ToolCallStart(0, "tooluse_1", "Bash"),
        ToolCallDelta(0, '{"command"'),
        ToolCallDelta(0, ': "ls"}'),
        Finished("tool_calls"),
        UsageReport(TokenUsage(input_tokens=5, output_tokens=30, cache_read_tokens=100), reasoning_tokens=12),
        billed(input_tokens=5, output_tokens=30, cache_read_tokens=100, cache_write_tokens=7),
    ]


def test_a_whole_answer_is_a_valid_message_with_its_cost() -> None:
    rendered = render_message(Completion.of(answer_events()), {"id": "msg_1", "model": "claude-haiku-4-5"})
    message = Message.model_validate(rendered)
    assert [block.type for block in message.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    assert message.content[0].signature == "sig==" and message.content[0].thinking == "Thinking."
    assert message.content[3].input == {"command": "ls"}
    assert message.stop_reason == "tool_use"
    usage = rendered["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (
        5,
        100,
        7,
    )
    assert usage["output_tokens_details"] == {"thinking_tokens": 12}
    assert Decimal(usage["cost_usd"]) == Completion.of(answer_events()).entry.cost


class FakeTurn:
    def __init__(self, events: list[Any]) -> None:
        self.events = iter(events)
        self.closed = False

    def __iter__(self):
        return self.events

    def close(self) -> None:
        self.closed = True


def sse(chunks: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    text = b"".join(chunks).decode()
    out = []
    for block in text.split("\n\n"):
        if block:
            name, data = block.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            out.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return out


def test_a_stream_follows_anthropics_event_sequence_and_validates() -> None:
    turn = FakeTurn(answer_events())
    events = sse(list(stream_events(turn, {"id": "msg_1", "model": "claude-haiku-4-5"})))
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    for name, payload in events:
        assert payload["type"] == name
        if name != "ping":
            STREAM_EVENT.validate_python(payload)
    starts = [p["content_block"]["type"] for n, p in events if n == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text", "tool_use"]
    # every block is stopped, in order, before the message ends
    stops = [p["index"] for n, p in events if n == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    deltas = [p["delta"] for n, p in events if n == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "sig=="} in deltas
    assert "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta") == '{"command": "ls"}'
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"]["cache_creation_input_tokens"] == 7 and "cost_usd" in final["usage"]
    assert turn.closed


def test_a_stream_that_breaks_off_ends_with_an_error_event() -> None:
    failure = errors.UpstreamError("Bedrock failed mid-answer.", headers={"x-request-id": "r9"})
    turn = FakeTurn([TextDelta("Hel"), Failed(failure, None)])
    events = sse(list(stream_events(turn, {"id": "msg_1", "model": "m"})))
    assert events[-1][0] == "error"
    error = ErrorResponse.model_validate(events[-1][1])
    assert error.error.type == "api_error" and error.request_id == "r9"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (errors.InvalidRequest("bad"), "invalid_request_error"),
        (errors.AuthenticationFailed("who"), "authentication_error"),
        (errors.PermissionDenied("no"), "permission_error"),
        (errors.NotFound("none"), "not_found_error"),
        (errors.RateLimited("slow", retry_after=3), "rate_limit_error"),
        (errors.QuotaExceeded("spent"), "billing_error"),
        (errors.UpstreamError("bedrock"), "api_error"),
        (errors.ServiceUnavailable("down"), "overloaded_error"),
        (errors.UpstreamTimeout("late"), "timeout_error"),
        (errors.InternalError("bug"), "api_error"),
    ],
)
def test_errors_use_anthropics_envelope_and_types(error: errors.AppError, kind: str) -> None:
    envelope = error_body(error)
    assert ErrorResponse.model_validate(envelope).error.type == kind
    assert envelope["error"]["message"] == error.message


def test_a_payload_too_large_is_request_too_large() -> None:
    # Anthropic's documented type for a 413 (the SDK's union does not list it, so it is checked by hand).
    envelope = error_body(errors.PayloadTooLarge("big"))
    assert envelope == {"type": "error", "error": {"type": "request_too_large", "message": "big"}, "request_id": None}
