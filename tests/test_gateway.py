"""The gateway against the Bedrock emulator through LiteLLM's real Bedrock code path."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.catalog import load_catalog
from chalicelib.conversation.events import Completion
from chalicelib.gateway import Gateway, UpstreamConfig
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai_chat.parse import parse_chat_request
from chalicelib.protocols.openai_chat.render import render_completion, stream_chunks
from chalicelib.service.service import ModelService, Turn
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.usage import TokenUsage
from local.bedrock_emulator import count_tokens
from local.bedrock_emulator.directives import DIRECTIVES, FAULTS
from tests.conftest import CountingEmulator
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


@dataclass
class Outcome:
    """What a client got (``body``: the completion, or the SSE text) and what was billed."""

    body: Any
    usage: TokenUsage
    status: str


_BILLING: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _billing(aws: Any) -> None:
    """Each test bills to a fresh moto-backed ledger, through the real core and meter."""
    from tests.conftest import TABLE_NAMES

    _BILLING["meter"] = Meter(Ledger(aws.Table(TABLE_NAMES["UsageTable"])))
    _BILLING["key"] = KeyStore(aws.Table(TABLE_NAMES["KeysTable"])).create(owner_sub="owner-1", name="gateway")[0]


def run(gateway: Gateway, *, seconds_left: float = 60, **body) -> Outcome:
    """One chat completion through the core (admit → Bedrock → bill) and the OpenAI renderer."""
    body.setdefault("model", "nova-micro")
    body.setdefault("messages", [{"role": "user", "content": "Hello there"}])
    request = parse_chat_request(body)
    service = ModelService(catalog=lambda: CATALOG, gateway=gateway, meter=_BILLING["meter"])
    turn = service.converse(_BILLING["key"], request.conversation, deadline=time.time() + seconds_left, surface="test")
    events = list(turn)
    entry = events[-1].entry
    ids = {"id": "chatcmpl-test", "created": 1_700_000_000, "model": request.conversation.model}
    replay = Turn(turn.request_id, turn.model, turn.headers, iter(events), turn.started)
    if request.conversation.stream:
        rendered: Any = b"".join(stream_chunks(replay, request, ids)).decode()
    else:
        completion = Completion.of(events)
        if completion.error is not None:
            raise completion.error
        rendered = render_completion(completion, ids)
    return Outcome(rendered, entry.usage, entry.status)


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


def test_litellms_chunks_are_read_as_getattr_reads_them() -> None:
    # GIVEN LiteLLM's own chunk classes: fields set, fields it dropped, extras, class attributes,
    # and objects that are not pydantic models at all
    from types import SimpleNamespace

    from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage

    from chalicelib.gateway import events

    full = ModelResponseStream(
        choices=[
            StreamingChoices(
                delta=Delta(
                    content="hi",
                    reasoning_content="r",
                    thinking_blocks=[{"type": "thinking", "thinking": "t", "signature": "s"}],
                    tool_calls=[{"id": "c1", "index": 0, "function": {"name": "f", "arguments": "{}"}}],
                ),
                finish_reason="stop",
            )
        ],
        usage=Usage(prompt_tokens=3, completion_tokens=4),
        provider_specific_fields={"trace": {"guardrail": {}}},
    )
    bare = ModelResponseStream(choices=[StreamingChoices(delta=Delta())])
    objects: list[Any] = [full, bare, SimpleNamespace(content="x"), {"text": "y"}, None]
    for chunk in (full, bare):
        choice = chunk.choices[0]
        objects += [choice, choice.delta, *(choice.delta.tool_calls or [])]
        objects += [call.function for call in choice.delta.tool_calls or []]
    names = [
        "usage", "provider_specific_fields", "choices", "delta", "finish_reason", "content", "reasoning_content",
        "thinking_blocks", "tool_calls", "index", "id", "function", "name", "arguments", "model_dump", "json",
    ]  # fmt: skip
    # THEN every read is what getattr(…, None) gives: a value, or None where the attribute is absent
    for obj in objects:
        for name in names:
            assert events._field(obj, name) == getattr(obj, name, None), (type(obj).__name__, name)
    assert events._field(full, "usage").completion_tokens == 4
    assert events._field(full.choices[0].delta, "content") == "hi"


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


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_upstream_failures_map_to_openai_statuses(gateway: Gateway, fault: str) -> None:
    # The status each fault directive is documented to get (README's table, #emulator:help) is what callers get.
    status = int(re.search(r"\(the gateway .*answers (\d{3})\)", DIRECTIVES[fault].does).group(1))  # type: ignore[union-attr]
    for stream in (False, True):
        with pytest.raises(errors.AppError) as caught:
            run(gateway, messages=[{"role": "user", "content": f"hi #emulator:{fault}"}], stream=stream)
        assert caught.value.status_code == status
    if status == 429:
        assert caught.value.headers["Retry-After"].isdigit()


def test_slow_upstream_times_out_as_504(gateway: Gateway) -> None:
    # The upstream gets the time left before the deadline, minus the margin kept to bill.
    with pytest.raises(errors.UpstreamTimeout):
        run(gateway, seconds_left=5, messages=[{"role": "user", "content": "hi #emulator:sleep=3"}])


def test_stream_cut_midway_ends_with_an_error_event_and_is_billed(gateway: Gateway) -> None:
    outcome = run(gateway, messages=[{"role": "user", "content": "Tell me more #emulator:cut"}], stream=True)
    events = sse_events(outcome.body)
    assert events[-1] != "[DONE]"
    error = json.loads(events[-1])
    assert_valid("ErrorResponse", error)
    # The message names the problem, not our dependencies' classes.
    assert error["error"]["code"] == "upstream_connection_error"
    assert not re.search(r"litellm|Error\b|Exception|Original exception", error["error"]["message"])
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


# -- the whole chat surface: what reaches Bedrock, and what comes back -----------------------

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}


@pytest.fixture(scope="module")
def recorder():
    """A private emulator whose recorded requests show what LiteLLM sent to Bedrock."""
    from local.bedrock_emulator import start_emulator

    server, url = start_emulator(host="127.0.0.1", port=0)
    yield server, Gateway(UpstreamConfig(region="us-east-1", endpoint_url=url, timeout_seconds=5))
    server.shutdown()


def sent(recorder, gateway_call) -> tuple[dict, object]:
    server, gateway = recorder
    before = len(server.requests)
    outcome = gateway_call(gateway)
    assert len(server.requests) == before + 1
    return server.requests[-1].json(), outcome


def chunks_of(outcome) -> list[dict]:
    chunks = [json.loads(e) for e in sse_events(outcome.body)[:-1]]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    return chunks


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_offers_bedrock_no_tools(recorder, stream: bool) -> None:
    # GIVEN a prompt that would make the model call get_weather
    # WHEN tool_choice is "none" (Converse has no "none"; LiteLLM would refuse or send "auto")
    body, outcome = sent(
        recorder,
        lambda g: run(
            g,
            messages=[{"role": "user", "content": "Use get_weather for Paris #emulator:tool"}],
            tools=[WEATHER_TOOL],
            tool_choice="none",
            stream=stream,
        ),
    )
    # THEN Bedrock saw no toolConfig and the answer is text without tool calls
    assert "toolConfig" not in body
    if stream:
        chunks = chunks_of(outcome)
        assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks if c["choices"])
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        message = outcome.body["choices"][0]["message"]
        assert "tool_calls" not in message and message["content"].startswith("You said")
        assert outcome.body["choices"][0]["finish_reason"] == "stop"


def test_tool_history_stays_valid_without_tools(recorder) -> None:
    # GIVEN a finished tool round trip in the history, and tool_choice "none" for the next turn
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        {"role": "user", "content": "Summarise."},
    ]
    body, outcome = sent(recorder, lambda g: run(g, messages=history, tools=[WEATHER_TOOL], tool_choice="none"))
    # THEN Bedrock got text only (it refuses toolUse blocks without toolConfig), nothing lost
    assert "toolConfig" not in body
    blocks = [block for message in body["messages"] for block in message["content"]]
    assert all(set(block) == {"text"} for block in blocks)
    text = json.dumps(body["messages"])
    assert "Let me check." in text and "get_weather" in text and "sunny, 21 C" in text and "call_1" in text
    assert outcome.body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("tool_choice", "bedrock_choice"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_time"}}, {"tool": {"name": "get_time"}}),
    ],
)
def test_tool_choice_maps_to_bedrock(recorder, tool_choice, bedrock_choice) -> None:
    body, outcome = sent(
        recorder,
        lambda g: run(
            g,
            messages=[{"role": "user", "content": "What now?"}],
            tools=[WEATHER_TOOL, TIME_TOOL],
            tool_choice=tool_choice,
        ),
    )
    assert body["toolConfig"]["toolChoice"] == bedrock_choice
    calls = outcome.body["choices"][0]["message"].get("tool_calls", [])
    if tool_choice == "auto":
        assert calls == []  # nothing in the prompt asks for a tool
    else:
        assert len(calls) == 1 and outcome.body["choices"][0]["finish_reason"] == "tool_calls"
        assert calls[0]["function"]["name"] == ("get_time" if isinstance(tool_choice, dict) else "get_weather")


def test_parallel_tool_calls_stream_with_dense_indexes_and_ids(gateway: Gateway) -> None:
    outcome = run(
        gateway,
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Weather and time please #emulator:parallel"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
    )
    calls = [call for c in chunks_of(outcome) for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert sorted({call["index"] for call in calls}) == [0, 1]
    starts = [call for call in calls if "id" in call]
    assert [call["index"] for call in starts] == [0, 1]
    assert [call["function"]["name"] for call in starts] == ["get_weather", "get_time"]
    assert len({call["id"] for call in starts}) == 2
    for index in (0, 1):
        json.loads("".join(c["function"].get("arguments", "") for c in calls if c["index"] == index))
    plain = run(
        gateway,
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Weather and time please #emulator:parallel"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
    ).body["choices"][0]["message"]
    assert plain["content"] and [c["id"] for c in plain["tool_calls"]] == [c["id"] for c in starts]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_yields_one_call(gateway: Gateway, stream: bool) -> None:
    outcome = run(
        gateway,
        messages=[{"role": "user", "content": "Weather and time please #emulator:parallel"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        parallel_tool_calls=False,
        stream=stream,
    )
    if stream:
        calls = [call for c in chunks_of(outcome) for call in c["choices"][0]["delta"].get("tool_calls", [])]
        assert {call["index"] for call in calls} == {0}
        assert [call["function"]["name"] for call in calls if "id" in call] == ["get_weather"]
    else:
        assert len(outcome.body["choices"][0]["message"]["tool_calls"]) == 1
        assert_valid("CreateChatCompletionResponse", outcome.body)


@pytest.mark.parametrize("model", ["nova-micro", "claude-haiku-4-5"])
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_parses_and_validates(gateway: Gateway, model: str, stream: bool) -> None:
    from jsonschema import validate

    outcome = run(
        gateway,
        model=model,
        messages=[{"role": "user", "content": "Describe Ada"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
        stream=stream,
    )
    if stream:
        chunks = chunks_of(outcome)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        text = outcome.body["choices"][0]["message"]["content"]
        finish = outcome.body["choices"][0]["finish_reason"]
    validate(json.loads(text), PERSON_SCHEMA)
    assert finish == "stop"  # the JSON tool call Bedrock may use underneath is not a tool call to the client


def test_json_object_is_an_instruction_and_needs_the_word_json(recorder) -> None:
    body, _ = sent(
        recorder,
        lambda g: run(
            g, messages=[{"role": "user", "content": "Give me JSON"}], response_format={"type": "json_object"}
        ),
    )
    assert "JSON object" in body["system"][0]["text"]
    with pytest.raises(errors.InvalidRequest, match="json"):
        run(recorder[1], messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"})


def test_reasoning_content_on_message_and_deltas(gateway: Gateway) -> None:
    plain = run(gateway, model="claude-haiku-4-5", reasoning_effort="low").body
    message = plain["choices"][0]["message"]
    assert message["reasoning_content"] and message["content"] == 'You said: "Hello there"'
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == count_tokens(message["reasoning_content"])
    assert_valid("CreateChatCompletionResponse", plain)
    chunks = chunks_of(
        run(
            gateway,
            model="claude-haiku-4-5",
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    first_text = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all(not d.get("reasoning_content") for d in deltas[first_text:])  # reasoning comes first
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_an_effort_whose_thinking_budget_would_not_fit_max_tokens_is_fitted_to_it(gateway: Gateway) -> None:
    # "high" is a 4,096-token thinking budget on Claude 4.5; Bedrock refuses max_tokens at or under it.
    fitted = run(gateway, model="claude-haiku-4-5", reasoning_effort="high", max_tokens=2000).body
    assert fitted["choices"][0]["message"]["reasoning_content"]  # still thinks, within what was asked
    # Below the smallest budget Bedrock takes (1,024), the answer comes without thinking rather than a 400.
    plain = run(gateway, model="claude-haiku-4-5", reasoning_effort="low", max_tokens=500).body
    assert plain["choices"][0]["message"].get("reasoning_content") is None
    assert plain["choices"][0]["message"]["content"]
    # An effort that fits is passed as it is.
    roomy = run(gateway, model="claude-haiku-4-5", reasoning_effort="high", max_tokens=8000).body
    assert roomy["choices"][0]["message"]["reasoning_content"]


def test_forcing_a_tool_while_reasoning_is_a_clear_400(gateway: Gateway) -> None:
    with pytest.raises(errors.InvalidRequest, match="reasoning") as caught:
        run(gateway, model="claude-haiku-4-5", reasoning_effort="low", tools=[WEATHER_TOOL], tool_choice="required")
    assert caught.value.param == "tool_choice"


def test_finish_reason_length_and_stop_sequence(gateway: Gateway) -> None:
    cut = run(gateway, messages=[{"role": "user", "content": "one two three four five"}], max_tokens=3).body
    assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 3
    stopped = run(gateway, messages=[{"role": "user", "content": "one two three"}], stop=["two"]).body
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["choices"][0]["message"]["content"] == 'You said: "one '


def test_cached_tokens_in_the_stream_usage_chunk(gateway: Gateway) -> None:
    chunks = chunks_of(
        run(
            gateway,
            messages=[{"role": "user", "content": "Hi #emulator:cache_read=40 #emulator:cache_write=8"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 40, "cache_write_tokens": 8}
    # The emulator counts the directives as prompt text, as Bedrock would count any text.
    assert usage["prompt_tokens"] == count_tokens("Hi #emulator:cache_read=40 #emulator:cache_write=8") + 48


def test_stream_error_from_bedrock_ends_with_a_readable_error_event(gateway: Gateway) -> None:
    outcome = run(gateway, messages=[{"role": "user", "content": "Tell me #emulator:stream_error"}], stream=True)
    events = sse_events(outcome.body)
    error = json.loads(events[-1])
    assert_valid("ErrorResponse", error)
    assert error["error"]["type"] == "api_error" and "[DONE]" not in events
    assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert outcome.status == "partial" and outcome.usage.input_tokens > 0


def test_multipart_user_content_and_images_reach_bedrock(recorder) -> None:
    import base64 as b64

    png = "data:image/png;base64," + b64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
    body, outcome = sent(
        recorder,
        lambda g: run(
            g,
            model="nova-lite",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": png}},
                    ],
                },
            ],
        ),
    )
    assert body["system"] == [{"text": "Be brief."}]
    assert [list(block) for block in body["messages"][0]["content"]] == [["text"], ["image"]]
    assert "an image (png" in outcome.body["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            "litellm.MidStreamFallbackError: litellm.APIConnectionError: BedrockException - peer closed connection "
            "without sending complete message body (incomplete chunked read) Original exception: APIConnectionError",
            "The connection to Bedrock broke off",
        ),
        (
            "litellm.UnsupportedParamsError: Bedrock doesn't support tool_choice=none. To drop it from the call, "
            "set `litellm.drop_params = True.",
            "Bedrock doesn't support tool_choice=none",
        ),
        ('litellm.BadRequestError: BedrockException - {"message": "Input is too long."}', "Input is too long."),
    ],
)
def test_upstream_error_messages_never_name_our_dependencies(raised: str, expected: str) -> None:
    from chalicelib.gateway import map_upstream_error

    class FakeLiteLLMError(Exception):
        status_code = 400

    error = map_upstream_error(FakeLiteLLMError(raised))
    assert expected in error.message
    assert not re.search(r"litellm|drop_params|Error\b|Exception", error.message), error.message


def test_a_stalled_read_is_a_timeout_whatever_its_class_is_called() -> None:
    # httpx's ReadTimeout (the provider stream waiting for its next chunk) is a 504, not a 502.
    import httpx

    from chalicelib.gateway import map_upstream_error

    assert isinstance(map_upstream_error(httpx.ReadTimeout("The read operation timed out")), errors.UpstreamTimeout)


def test_an_answer_still_running_at_the_deadline_is_cut_with_an_error_event_and_billed(
    gateway: Gateway, service_logs
) -> None:
    # 8 s left: the stream runs until 3 s (kept to bill) before the deadline, then stops cleanly.
    from chalicelib.gateway import load_litellm

    load_litellm()  # its first import takes seconds: run alone, it would eat the 8 s before the call
    started = time.monotonic()
    outcome = run(
        gateway,
        seconds_left=8,
        messages=[{"role": "user", "content": "hi #emulator:tokens=30 #emulator:chunk_delay=2"}],
        stream=True,
    )
    assert time.monotonic() - started < 15  # the whole answer would take ~28 s
    events = sse_events(outcome.body)
    error = json.loads(events[-1])["error"]
    assert error["code"] == "answer_time_limit" and "[DONE]" not in events
    assert outcome.status == "partial" and 0 < outcome.usage.output_tokens < 30
    # AND the request's log line carries the failure the template counts (AnswersCutAtTimeLimit)
    [line] = [json.loads(text) for text in service_logs.lines() if '"chat completion"' in text]
    assert (line["outcome"], line["failure"]) == ("cut", "answer_time_limit")


@pytest.mark.parametrize("stream", [False, True])
def test_a_bedrock_answer_is_read_on_the_callers_thread(gateway: Gateway, monkeypatch, stream: bool) -> None:
    # Bedrock is called through a client of ours whose reads end at the deadline themselves
    # (gateway/read_deadline.py): no reader thread, no hand-over per chunk. An httpx or httpcore
    # that no longer lets the client be bounded fails here, not as a silent slower path.
    from chalicelib.conversation import deadline

    handed: list[object] = []
    readers = deadline._Readers()
    monkeypatch.setattr(readers, "run", handed.append)
    monkeypatch.setattr(deadline, "_READERS", readers)
    outcome = run(gateway, stream=stream, messages=[{"role": "user", "content": "hi #emulator:tokens=20"}])
    assert outcome.status == "ok" and outcome.usage.output_tokens == 20
    assert handed == []


def test_a_stream_that_stalls_near_the_deadline_is_cut_at_the_deadline(gateway: Gateway) -> None:
    # The first piece comes 5 s in, the next 5 s later. The cut-off is 3 s before the deadline (at
    # 6.5 s): the answer must end there, not when the next piece (or a read timeout) wakes it up at
    # 10 s, or on Lambda the function would die before it bills.
    from chalicelib.gateway import load_litellm

    load_litellm()  # its first import takes seconds; not part of what is timed
    started = time.monotonic()
    outcome = run(
        gateway,
        seconds_left=9.5,
        messages=[{"role": "user", "content": "hi #emulator:tokens=9 #emulator:chunk_delay=5"}],
        stream=True,
    )
    elapsed = time.monotonic() - started
    error = json.loads(sse_events(outcome.body)[-1])["error"]
    assert error["code"] == "answer_time_limit"
    assert elapsed < 8.5, elapsed  # the cut-off, plus billing; not the second piece's 10 s
    assert outcome.status == "partial" and outcome.usage.output_tokens > 0


# -- what a call the gateway did not see to its end is billed (issue 20) -------------------------


def png_of(width: int, height: int) -> str:
    """A ``data:`` URL of a PNG whose header says ``width`` × ``height`` (what a size estimate reads)."""
    import base64 as b64
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    ihdr = struct.pack(">I", len(header)) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return "data:image/png;base64," + b64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr + iend).decode()


#: Tools of the size coding agents send (Claude Code: ~20k tokens of them each request).
BIG_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"workspace_tool_{n}",
            "description": "Reads, searches or edits files in the user's workspace and reports what it did. " * 12,
            "parameters": {
                "type": "object",
                "properties": {
                    f"argument_{m}": {"type": "string", "description": f"The {m}th input, as the user wrote it."}
                    for m in range(12)
                },
                "required": ["argument_0"],
            },
        },
    }
    for n in range(8)
]
REPORT_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "report",
        "schema": {
            "type": "object",
            "properties": {
                f"finding_{m}": {"type": "string", "description": "One finding of the review, in a sentence or two."}
                for m in range(60)
            },
            "required": ["finding_0"],
            "additionalProperties": False,
        },
    },
}


def carrying(what: str, text: str) -> dict[str, Any]:
    """A Claude request whose prompt is mostly ``what``: tool definitions, an output schema or an image."""
    if what == "tools":
        return {"model": "claude-haiku-4-5", "tools": BIG_TOOLS, "messages": [{"role": "user", "content": text}]}
    if what == "response_format":
        return {
            "model": "claude-haiku-4-5",
            "response_format": REPORT_SCHEMA,
            "messages": [{"role": "user", "content": text}],
        }
    # 1000 × 750 px: 1,000 tokens by Claude's rule (one per 750 px), what the emulator bills an image
    image = {"type": "image_url", "image_url": {"url": png_of(1000, 750)}}
    content = [{"type": "text", "text": text}, image]
    return {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": content}]}


def entries() -> list[dict[str, Any]]:
    return _BILLING["meter"]._ledger.entries_for_key(_BILLING["key"].key_id)


def last_entry(seen: int) -> dict[str, Any]:
    """The entry billed after the ``seen`` first ones (entries of one second are in no given order)."""
    now = entries()
    assert len(now) == seen + 1, now
    return next(e for e in now if e["request_id"] not in {n["request_id"] for n in now if n["status"] == "ok"})


def converse(gateway: Gateway, *, seconds_left: float = 60, hold: bool = False, **body: Any) -> Turn:
    service = ModelService(catalog=lambda: CATALOG, gateway=gateway, meter=_BILLING["meter"])
    conversation = parse_chat_request({"model": "nova-micro", **body}).conversation
    deadline = time.time() + seconds_left
    return service.converse(_BILLING["key"], conversation, deadline=deadline, surface="test", hold=hold)


# -- a held bill: settled as the answer ends, stored once it is out (the streaming function) -----


@pytest.mark.parametrize("stream", [False, True])
def test_a_held_bill_is_settled_with_the_answer_and_stored_when_the_turn_finishes(
    gateway: Gateway, service_logs: Any, stream: bool
) -> None:
    # GIVEN a turn started with hold, read to its end: the usage report and the cost are there
    turn = converse(gateway, hold=True, stream=stream, messages=[{"role": "user", "content": "hi #emulator:tokens=7"}])
    [*_, billed] = list(turn)
    assert billed.entry.usage.output_tokens == 7 and billed.entry.cost > 0
    # THEN nothing is stored or logged yet: the caller does not wait for the ledger's PutItem
    assert entries() == []
    assert not [line for line in service_logs.lines() if '"chat completion"' in line]
    # WHEN the turn finishes (twice: idempotent) THEN the entry is stored once, as billed, and logged
    turn.finish()
    turn.finish()
    [stored] = entries()
    assert (stored["request_id"], stored["cost"], stored["output_tokens"]) == (turn.request_id, billed.entry.cost, 7)
    [line] = [json.loads(text) for text in service_logs.lines() if '"chat completion"' in text]
    assert line["cost_usd"] == str(billed.entry.cost)


def test_a_held_turn_closed_early_is_billed_and_stored_when_it_finishes(gateway: Gateway) -> None:
    turn = converse(gateway, hold=True, stream=True, messages=[{"role": "user", "content": "Go #emulator:tokens=120"}])
    next(iter(turn))
    turn.close()  # what a renderer does when its caller hangs up
    assert entries() == []
    turn.finish()
    [billed] = entries()
    assert billed["status"] == "partial" and billed["output_tokens"] > 0


def test_a_held_call_that_fails_before_any_output_is_stored_before_the_error_is_raised(gateway: Gateway) -> None:
    # A call given up on before its first token is billed its prompt; there is no turn to finish.
    with pytest.raises(errors.UpstreamTimeout):
        converse(gateway, hold=True, seconds_left=5, messages=[{"role": "user", "content": "hi #emulator:sleep=3"}])
    [billed] = entries()
    assert billed["status"] == "partial" and billed["input_tokens"] > 0


def test_a_held_bill_that_cannot_be_stored_is_logged_for_reconcile(gateway: Gateway, service_logs: Any) -> None:
    from chalicelib.accounting.ledger import UNRECORDED_EVENT

    turn = converse(gateway, hold=True, messages=[{"role": "user", "content": "hi #emulator:tokens=3"}])
    [*_, billed] = list(turn)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug in the ledger")

    _BILLING["meter"]._ledger.record = broken
    turn.finish()
    logged = [json.loads(text) for text in service_logs.lines() if UNRECORDED_EVENT in text]
    assert [line["entry"]["request_id"] for line in logged] == [billed.entry.request_id]
    # The call's own log line is still written.
    assert [line for line in service_logs.lines() if '"chat completion"' in line]


@pytest.mark.parametrize("what", ["tools", "image"])
def test_a_cut_stream_bills_the_whole_prompt_bedrock_counts(gateway: Gateway, what: str) -> None:
    # GIVEN what the same prompt is billed when the answer completes
    whole = run(gateway, **carrying(what, "Tell me more")).usage.input_tokens
    assert whole > 900
    # WHEN the stream is cut before Bedrock's usage report THEN the estimate counts the whole prompt
    cut = run(gateway, stream=True, **carrying(what, "Tell me more #emulator:cut"))
    assert cut.status == "partial"
    assert 0.7 * whole <= cut.usage.input_tokens <= 1.4 * whole, (cut.usage, whole)


def hang_up_after_one_event(gateway: Gateway, **body: Any) -> None:
    turn = converse(gateway, **body)
    next(iter(turn))
    turn.close()


@pytest.mark.parametrize("ending", ["cut", "stream_error", "answer_time_limit", "hang_up"])
def test_every_way_an_answer_breaks_off_bills_the_tool_definitions(gateway: Gateway, ending: str) -> None:
    whole = run(gateway, **carrying("tools", "Go on")).usage.input_tokens
    if ending == "hang_up":
        hang_up_after_one_event(gateway, stream=True, **carrying("tools", "Go on #emulator:tokens=60"))
    elif ending == "answer_time_limit":
        from chalicelib.gateway import load_litellm

        load_litellm()
        body = carrying("tools", "Go on #emulator:tokens=60 #emulator:chunk_delay=1")
        run(gateway, seconds_left=5, stream=True, **body)
    else:
        run(gateway, stream=True, **carrying("tools", f"Go on #emulator:{ending}"))
    billed = last_entry(1)
    assert billed["status"] == "partial"
    assert 0.7 * whole <= billed["input_tokens"] <= 1.4 * whole, (billed["input_tokens"], whole)


def test_a_caller_that_hangs_up_is_billed_for_what_was_read_ahead_of_it(gateway: Gateway) -> None:
    # GIVEN Bedrock sends a whole 120-token answer at once, while the caller has taken one piece
    turn = converse(gateway, stream=True, messages=[{"role": "user", "content": "Go #emulator:tokens=120"}])
    next(iter(turn))
    time.sleep(0.5)  # the reader has read the rest ahead, Bedrock's usage report included
    # WHEN the caller hangs up THEN the bill is Bedrock's own count, not the piece the caller took
    turn.close()
    [billed] = entries()
    assert billed["output_tokens"] == 120


def test_a_whole_answer_outliving_its_deadline_is_billed_for_what_was_generated(gateway: Gateway) -> None:
    # GIVEN a non-streamed request whose answer takes ~30 s, with 6 s left (the cut-off is 3 s before)
    from chalicelib.gateway import load_litellm

    load_litellm()
    started = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as caught:
        run(
            gateway,
            seconds_left=6,
            messages=[{"role": "user", "content": "hi #emulator:tokens=30 #emulator:chunk_delay=1"}],
        )
    # THEN the caller gets a 504 at the deadline, and what Bedrock generated until then is billed
    assert time.monotonic() - started < 6
    [billed] = entries()
    assert billed["status"] == "partial" and 0 < billed["output_tokens"] < 30
    assert Decimal(caught.value.headers["x-pennyworth-cost-usd"]) == billed["cost"] > 0
    assert caught.value.headers["x-request-id"] == billed["request_id"]


def test_a_call_given_up_before_its_first_token_is_billed_its_prompt(gateway: Gateway) -> None:
    # Bedrock received the prompt and read it; the gateway stopped waiting before any output came.
    with pytest.raises(errors.UpstreamTimeout):
        run(gateway, seconds_left=5, messages=[{"role": "user", "content": "hi #emulator:sleep=3"}])
    [billed] = entries()
    assert billed["status"] == "partial" and billed["input_tokens"] > 0
    assert billed["output_tokens"] == 0


def test_a_call_bedrock_refuses_is_not_billed(gateway: Gateway) -> None:
    with pytest.raises(errors.RateLimited):
        run(gateway, messages=[{"role": "user", "content": "hi #emulator:throttle"}])
    assert entries() == []


def test_litellm_reads_a_json_schema_answer_whole_so_closing_it_cannot_stop_bedrock(recorder) -> None:
    # What Gateway.reads_whole rests on: LiteLLM sends a json_schema request as Converse (not
    # ConverseStream) and fakes the stream, on every model, reasoning or not.
    server, gateway = recorder
    for model in ("nova-micro", "claude-haiku-4-5"):
        run(gateway, stream=True, max_tokens=2000, **{**carrying("response_format", "Report"), "model": model})
        assert server.requests[-1].operation == "converse", server.requests[-1].operation
    run(gateway, stream=True, max_tokens=2000, **carrying("tools", "Report"))
    assert server.requests[-1].operation == "converse-stream"


def test_a_json_schema_answer_given_up_on_bills_its_schema_and_the_most_bedrock_may_generate(gateway: Gateway) -> None:
    # GIVEN what the prompt is billed whole
    whole = run(gateway, max_tokens=700, **carrying("response_format", "Report")).usage.input_tokens
    assert whole > 900
    # WHEN the gateway gives up before the answer (read whole by LiteLLM) arrives
    with pytest.raises(errors.UpstreamTimeout):
        run(gateway, seconds_left=5, max_tokens=700, **carrying("response_format", "Report #emulator:sleep=3"))
    # THEN Bedrock, which goes on generating for nobody, is assumed to charge the whole answer it may make
    billed = last_entry(1)
    assert billed["status"] == "partial" and billed["output_tokens"] == 700
    assert 0.7 * whole <= billed["input_tokens"] <= 1.4 * whole, (billed["input_tokens"], whole)


def test_calls_share_one_connection_to_bedrock(counting_emulator: CountingEmulator) -> None:
    """Each request's timeout is what is left of its deadline: LiteLLM, which caches its clients by
    their timeout, built a new client per call and opened (and kept open) a new connection each
    time: a TLS handshake to Bedrock per request in AWS. The gateway's own client keeps one pool."""
    config = UpstreamConfig(region="us-east-1", endpoint_url=counting_emulator.url, timeout_seconds=5)
    gateway = Gateway(config)
    for seconds_left in (60, 50, 40, 30):
        outcome = run(gateway, seconds_left=seconds_left)
        assert outcome.status == "ok"
    assert len(counting_emulator.accepted) == 1, counting_emulator.accepted


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"stream": True},
        # LiteLLM sends this one as Converse (a whole answer)
        {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
    ],
    ids=["whole", "streamed", "json_schema"],
)
def test_a_refused_admission_sends_nothing_to_bedrock(
    counting_emulator: CountingEmulator, aws: Any, body: dict[str, Any]
) -> None:
    """A budget too small for the call refuses it: no connection reaches Bedrock, the caller gets the
    refusal with its request id, and nothing is reserved or billed."""
    from tests.conftest import TABLE_NAMES

    gateway = Gateway(UpstreamConfig(region="us-east-1", endpoint_url=counting_emulator.url, timeout_seconds=5))
    key = KeyStore(aws.Table(TABLE_NAMES["KeysTable"])).create(
        owner_sub="owner-poor", name="poor", monthly_budget_usd=Decimal("0.000001")
    )[0]
    service = ModelService(catalog=lambda: CATALOG, gateway=gateway, meter=_BILLING["meter"])
    request = parse_chat_request({"model": "nova-micro", "messages": [{"role": "user", "content": "Hi"}], **body})
    with pytest.raises(errors.QuotaExceeded):
        service.converse(key, request.conversation, deadline=time.time() + 60, surface="test")
    assert counting_emulator.accepted == []
    usage = aws.Table(TABLE_NAMES["UsageTable"]).scan()["Items"]
    assert not [item for item in usage if key.key_id in json.dumps(item, default=str)]
    # AND a key that can pay reaches Bedrock through the same gateway
    run(gateway)
    assert len(counting_emulator.accepted) == 1


def _closing_emulator(mode: str) -> tuple[Any, str, list[Any]]:
    """The emulator behind a server that closes kept-alive connections: ``idle`` after each answer
    (an upstream's idle timeout, seen by the client before its next request), ``racing`` when the
    next request arrives on one (the timeout firing as the request is sent: no answer at all)."""
    from local.bedrock_emulator import start_emulator
    from local.bedrock_emulator.server import BedrockHandler

    accepted: list[Any] = []

    class Closing(BedrockHandler):
        def handle(self) -> None:
            accepted.append(self.client_address)
            self.handle_one_request()
            if mode == "racing" and not self.close_connection:
                self.rfile.readline()  # the next request's first line arrives, and the connection closes
            # Returning closes the connection without Connection: close, as an idle timeout does.

    server, base_url = start_emulator(host="127.0.0.1", port=0)
    server.RequestHandlerClass = Closing
    return server, base_url, accepted


@pytest.mark.parametrize("mode", ["idle", "racing"])
def test_an_upstream_that_closes_kept_connections_never_fails_the_next_request(mode: str) -> None:
    """One connection is kept per warm function now: when the upstream (or a load balancer before
    it) closes it while idle, the next request must still be answered, by a new connection."""
    server, base_url, accepted = _closing_emulator(mode)
    try:
        gateway = Gateway(UpstreamConfig(region="us-east-1", endpoint_url=base_url, timeout_seconds=5))
        for stream in (False, True, False, True):
            outcome = run(gateway, stream=stream)
            assert outcome.status == "ok"
            time.sleep(0.05)  # idle long enough for the close to reach the client
        assert len(accepted) >= 4
    finally:
        server.shutdown()


def test_a_call_admitted_before_a_guardrail_price_version_starts_is_billed_at_the_one_before(gateway: Gateway) -> None:
    """The edge of a new guardrail price version (here exactly at a month's start): a call admitted a
    second before it and settled after it is reserved and billed at the earlier prices, and its entry
    says so; the next call, admitted at the version's first second, is billed at the new ones."""
    from dataclasses import replace

    from chalicelib.catalog import Catalog
    from chalicelib.catalog.guardrail_prices import GuardrailPriceVersion
    from chalicelib.catalog.prices import guardrail_prices
    from chalicelib.shared.guardrails import GuardrailPrices
    from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID

    starts = 1_798_761_600.0  # 2027-01-01T00:00:00Z
    new = {counter: Decimal("0.5") for counter in guardrail_prices("us-east-1").per_unit}
    version = GuardrailPriceVersion(1, "2027-01-01T00:00:00Z", GuardrailPrices(new, version=1))
    catalog = Catalog(list(CATALOG), guardrail_prices=(version,))
    key = replace(_BILLING["key"], guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    now = {"t": starts - 1}
    meter = _BILLING["meter"]

    class AdmitThenCross:
        """The meter, with the clock crossing the version's start right after admission."""

        def __getattr__(self, name: str) -> Any:
            return getattr(meter, name)

        def admit(self, *args: Any, **kwargs: Any) -> Any:
            ticket = meter.admit(*args, **kwargs)
            now["t"] = starts + 1
            return ticket

    service = ModelService(catalog=lambda: catalog, gateway=gateway, meter=AdmitThenCross(), clock=lambda: now["t"])
    billed = []
    for _ in range(2):
        conversation = parse_chat_request({"model": "nova-micro", "messages": [{"role": "user", "content": "Hi"}]})
        turn = service.converse(key, conversation.conversation, deadline=now["t"] + 60, surface="test")
        billed.append(list(turn)[-1].entry)
        now["t"] = starts  # the next call is admitted at the version's first second
    before, after = billed
    assert before.guardrail_units and after.guardrail_units
    assert before.guardrail_price_version == 0 and after.guardrail_price_version == 1
    old = guardrail_prices("us-east-1").per_unit
    assert before.guardrail_usd == sum(old[c] * n for c, n in before.guardrail_units.items())
    assert after.guardrail_usd == sum(Decimal("0.5") * n for n in after.guardrail_units.values())


def test_the_shared_client_imports_litellm_through_the_loader() -> None:
    """The kept client is made before the first completion: importing LiteLLM for it must go
    through ``load_litellm`` (offline, the collector paused, the tokenizer deferred), not around it."""
    import os
    import subprocess
    import sys

    script = (
        "from chalicelib.gateway.loader import DeferredEncoding\n"
        "from chalicelib.gateway.providers import Bedrock, Upstream\n"
        "Bedrock(region='us-east-1', endpoint_url=None).client(Upstream('bedrock', 'bedrock/converse/x'))\n"
        "import litellm.main\n"
        "print(isinstance(litellm.main._encoding_cache, DeferredEncoding), litellm.suppress_debug_info)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]


def test_litellm_parses_its_bundled_price_file_once_for_its_bedrock_flags_and_capability_checks() -> None:
    """LiteLLM's Bedrock model flags read the bundled price file through the copy its capability checks
    cached (one 3.5 MB parse on a cold chat, not two): the same content as they read before."""
    import os
    import subprocess
    import sys

    script = (
        "import json\n"
        "from litellm.llms.bedrock import common_utils\n"
        "from litellm.litellm_core_utils.get_model_cost_map import GetModelCostMap\n"
        "own = common_utils._get_local_model_cost_map\n"
        "from chalicelib.gateway.loader import load_litellm\n"
        "litellm = load_litellm()\n"
        "import litellm.utils as utils\n"
        "shared = common_utils._get_local_model_cost_map\n"
        "print(json.dumps([shared is utils.get_bundled_model_cost_map, own is not shared,\n"
        "    own() == shared() == GetModelCostMap.load_local_model_cost_map(), len(shared()) > 1000]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [True, True, True, True]


def test_litellm_fetches_nothing_on_its_own() -> None:
    """LiteLLM downloads a Hugging Face tokenizer to count a Llama's or a Cohere's tokens (in its own
    cost of an answer, too) and fetches Anthropic's beta-header table, each on first use: a first call
    to an OpenAI-compatible Llama stalled 28 s with the internet out of reach. Loaded the gateway's way,
    it uses its bundled copies or falls back, and never opens a connection."""
    import os
    import subprocess
    import sys

    script = (
        "import json, socket\n"
        "tried = []\n"
        "def refuse(*args, **kwargs):\n"
        "    tried.append(repr(args[:2]))\n"
        "    raise OSError('no network in this test')\n"
        "socket.getaddrinfo = refuse\n"
        "socket.socket.connect = refuse\n"
        "from chalicelib.gateway.loader import load_litellm\n"
        "litellm = load_litellm()\n"
        "counts = [litellm.token_counter(model=m, text='hello world, how are you') for m in (\n"
        "    'openai/llama-3.1-8b', 'bedrock/us.meta.llama3-1-8b-instruct-v1:0', 'bedrock/cohere.command-r-v1:0',\n"
        "    'bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0')]\n"
        "from litellm.anthropic_beta_headers_manager import get_beta_headers_config\n"
        "config = get_beta_headers_config('https://example.com/beta.json')\n"
        "print(json.dumps({'tried': tried, 'counts': counts, 'config': bool(config)}))\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("LITELLM_OFFLINE_MODE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tried"] == [] and result["config"]
    assert all(count > 0 for count in result["counts"])
