"""The core's events → Responses stream events and ``Response`` objects, checked against OpenAI's spec."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chalicelib.conversation.events import (
    Billed,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.errors import RateLimited, UpstreamError
from chalicelib.protocols.openai_responses.items import parse_input
from chalicelib.protocols.openai_responses.parse import parse_responses_request
from chalicelib.protocols.openai_responses.render import ResponseWriter, custom_input, sse
from chalicelib.protocols.openai_responses.tools import Toolset
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage
from tests.factories import usage_entry
from tests.openai_schema import assert_valid, assert_valid_stream_event

ENTRY = usage_entry(usage=TokenUsage(input_tokens=10, output_tokens=20, cache_read_tokens=5, cache_write_tokens=3))
TOOLS = [
    {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files."},
    {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}],
    },
]


def run(events, **body):
    """Feed events through a writer; every stream event and the final Response, all spec-validated."""
    request = parse_responses_request({"model": "claude-haiku-4-5", "input": "hi", "stream": True, **body})
    writer = ResponseWriter(request, "resp_abc", created_at=1_796_000_000)
    stream = writer.start()
    for event in events:
        stream.extend(writer.feed(event))
    for event in stream:
        assert_valid_stream_event(event)
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    assert_valid("Response", writer.response)
    return stream, writer


def types(stream):
    return [e["type"] for e in stream]


def test_a_text_answer_has_openais_event_sequence_and_usage_with_the_cost() -> None:
    stream, writer = run([TextDelta("Hel"), TextDelta("lo"), Finished("stop"), UsageReport(ENTRY.usage), Billed(ENTRY)])
    assert types(stream) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = stream[-1]["response"]
    assert final == writer.response and final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"] == {
        "input_tokens": 18,
        "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 3},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 38,
        "cost_usd": usd(ENTRY.cost),
        "served_model": ENTRY.model,  # the model that answered (a fallback, when not the one asked for)
    }
    assert Decimal(final["usage"]["cost_usd"]) == ENTRY.cost
    # The created/in-progress snapshots were taken before any output.
    assert stream[0]["response"]["output"] == [] and stream[0]["response"]["status"] == "in_progress"


def test_reasoning_then_text_then_tool_calls_are_separate_items_in_model_order() -> None:
    events = [
        ReasoningDelta("think"),
        ReasoningDelta(" more", signature="sig"),
        TextDelta("Calling."),
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ": 1}"),
        ToolCallStart(1, "call_2", "agents__spawn"),
        ToolCallStart(2, "call_3", "apply_patch"),
        ToolCallDelta(2, '{"input": "*** Begin Patch\\n"}'),
        Finished("tool_calls"),
        UsageReport(ENTRY.usage, reasoning_tokens=7),
        Billed(ENTRY),
    ]
    stream, writer = run(
        events, tools=TOOLS, reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"]
    )
    output = writer.response["output"]
    assert [item["type"] for item in output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "custom_tool_call",
    ]
    reasoning, _, weather, spawn, patch = output
    assert reasoning["summary"] == [{"type": "summary_text", "text": "think more"}]
    assert reasoning["encrypted_content"].startswith("pw1.")
    assert weather == {
        "id": weather["id"],
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"a": 1}',
        "status": "completed",
    }
    # A namespaced function comes back under its own name and namespace; no arguments means "{}".
    assert (spawn["name"], spawn["namespace"], spawn["arguments"]) == ("spawn", "agents", "{}")
    assert patch["input"] == "*** Begin Patch\n" and "arguments" not in patch
    assert writer.response["usage"]["output_tokens_details"]["reasoning_tokens"] == 7
    assert "response.reasoning_summary_text.delta" in types(stream)
    assert "response.custom_tool_call_input.done" in types(stream)
    assert len({item["id"] for item in output}) == 5


def test_the_encrypted_reasoning_goes_back_in_as_the_turns_thinking_block() -> None:
    stream, writer = run(
        [ReasoningDelta("plan", signature="SIG"), ToolCallStart(0, "c1", "get_weather"), Finished("tool_calls")],
        tools=TOOLS,
        include=["reasoning.encrypted_content"],
    )
    reasoning, call = writer.response["output"]
    next_input = [
        {"role": "user", "content": "weather?"},
        reasoning,
        call,
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ]
    messages, _ = parse_input(next_input, None, model="claude-haiku-4-5", toolset=Toolset())
    assistant = messages[1]
    assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "plan", "signature": "SIG"}]
    assert assistant["tool_calls"][0]["id"] == "c1"
    # Another model cannot replay this model's thinking: dropped.
    messages, _ = parse_input(next_input, None, model="nova-lite", toolset=Toolset())
    assert "thinking_blocks" not in messages[1]


def test_without_a_summary_reasoning_is_the_items_content() -> None:
    stream, writer = run([ReasoningDelta("hmm"), TextDelta("ok"), Finished("stop"), Billed(ENTRY)])
    reasoning = writer.response["output"][0]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "hmm"}] and reasoning["summary"] == []
    assert "encrypted_content" not in reasoning  # not asked for
    assert "response.reasoning_text.delta" in types(stream)


def test_redacted_thinking_is_an_item_with_only_encrypted_content() -> None:
    _, writer = run(
        [ReasoningDelta(redacted="ENCRYPTED"), TextDelta("ok"), Finished("stop"), Billed(ENTRY)],
        include=["reasoning.encrypted_content"],
    )
    reasoning = writer.response["output"][0]
    assert reasoning["summary"] == [] and reasoning["encrypted_content"].startswith("pw1.")
    messages, _ = parse_input(
        [reasoning, {"role": "user", "content": "again"}], None, model="claude-haiku-4-5", toolset=Toolset()
    )
    assert messages[0]["role"] == "user"  # a turn of thinking alone is not sent


def test_hitting_max_output_tokens_is_an_incomplete_response() -> None:
    stream, writer = run([TextDelta("cut"), Finished("length"), Billed(ENTRY)])
    assert stream[-1]["type"] == "response.incomplete"
    assert writer.response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert writer.response["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize(
    ("error", "code"), [(UpstreamError("boom"), "server_error"), (RateLimited("slow"), "rate_limit_exceeded")]
)
def test_an_answer_that_breaks_off_ends_with_response_failed_and_is_billed(error, code) -> None:
    stream, writer = run([TextDelta("par"), Failed(error, ENTRY)])
    assert types(stream)[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.failed",
    ]
    failed = stream[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": code, "message": error.message}
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["usage"]["cost_usd"]
    assert writer.error is error


def test_custom_input_is_the_string_bedrock_was_asked_for_or_the_raw_text() -> None:
    assert custom_input('{"input": "a\\nb"}') == "a\nb"
    assert custom_input("not json") == "not json"
    assert custom_input('{"other": 1}') == '{"other": 1}'


def test_sse_frames_name_the_event() -> None:
    frame = sse({"type": "response.created", "sequence_number": 0}).decode()
    assert frame.startswith("event: response.created\ndata: {") and frame.endswith("\n\n")
    assert json.loads(frame.split("data: ", 1)[1])["sequence_number"] == 0
