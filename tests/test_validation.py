from __future__ import annotations

import base64
import json

import pytest

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.protocols.openai.parse import EMBEDDING_PARAMETERS, MAX_EMBEDDING_INPUTS, parse_embedding_request
from chalicelib.protocols.openai_chat.parse import CHAT_PARAMETERS, parse_chat_request
from chalicelib.shared.body import parse_json_body

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def chat(**extra):
    return {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_minimal_request() -> None:
    request = parse_chat_request(chat()).conversation
    assert request.model == "nova-micro" and not request.stream
    assert request.max_tokens is None and request.tools is None and request.response_format is None


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", InvalidRequest),
        (b"{not json", InvalidRequest),
        (b"[1, 2]", InvalidRequest),
        (b"\xff\xfe", InvalidRequest),
        (b"x" * 101, PayloadTooLarge),
    ],
)
def test_bad_bodies(raw: bytes, error: type) -> None:
    with pytest.raises(error):
        parse_json_body(raw, max_bytes=100)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": 3, "messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
        ({"model": "m", "messages": [{"role": "system", "content": "only system"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (chat(temperature=1.5), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=-0.1), "top_p"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(max_tokens=10, max_completion_tokens=20), "max_tokens"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(stop=""), "stop"),
        (chat(n=2), "n"),
        (chat(logprobs=True), "logprobs"),
        (chat(frequency_penalty=0.5), "frequency_penalty"),
        (chat(functions=[{"name": "f"}]), "functions"),
        (chat(wizardry=True), "wizardry"),
        (chat(tool_choice="required"), "tool_choice"),
        (chat(tools=[{"type": "retrieval"}]), "tools[0]"),
        (chat(tools=[{"type": "function", "function": {"name": "bad name!"}}]), "tools[0].function.name"),
        (chat(response_format={"type": "xml"}), "response_format"),
        (chat(reasoning_effort="extreme"), "reasoning_effort"),
        (chat(metadata={"k": 1}), "metadata"),
        (chat(response_format={"type": "json_object"}), "messages"),
        (chat(seed="7"), "seed"),
        (chat(safety_identifier=3), "safety_identifier"),
        (chat(stream_options={"include_usage": "yes"}, stream=True), "stream_options.include_usage"),
        (chat(parallel_tool_calls="no"), "parallel_tool_calls"),
        (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="sometimes"), "tool_choice"),
    ],
)
def test_invalid_requests_name_the_parameter(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body)
    assert caught.value.param == param
    assert caught.value.status_code == 400


def test_remote_image_urls_are_refused_with_a_clear_reason() -> None:
    body = chat(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    )
    with pytest.raises(InvalidRequest, match="data URL") as caught:
        parse_chat_request(body)
    assert caught.value.code == "image_url_not_supported"


def test_data_url_images_pass_and_are_flagged() -> None:
    request = parse_chat_request(
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": PNG}}],
                }
            ]
        )
    )
    assert request.conversation.has_images


def test_developer_becomes_system_and_harmless_defaults_pass() -> None:
    request = parse_chat_request(
        chat(
            messages=[{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}],
            n=1,
            logprobs=False,
            seed=7,
            user="u-1",
            store=False,
            presence_penalty=0,
            stop=None,
            stream=True,
            stream_options={"include_usage": True},
            max_completion_tokens=50,
        )
    )
    assert request.conversation.messages[0]["role"] == "system"
    assert request.include_usage and request.conversation.max_tokens == 50
    assert request.conversation.temperature is None and request.conversation.tools is None


def test_tools_and_formats_are_normalised() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    request = parse_chat_request(
        chat(
            tools=[tool],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
        )
    )
    assert request.conversation.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert request.conversation.response_format["json_schema"]["strict"] is True
    with pytest.raises(InvalidRequest, match="not in 'tools'"):
        parse_chat_request(chat(tools=[tool], tool_choice={"type": "function", "function": {"name": "nope"}}))


def test_every_openai_chat_parameter_has_a_policy() -> None:
    # The official spec's CreateChatCompletionRequest properties are all classified.
    from tests.openai_schema import components

    schema = components()["schemas"]["CreateChatCompletionRequest"]
    names: set[str] = set()
    for part in schema.get("allOf", [schema]):
        resolved = part
        if "$ref" in part:
            resolved = components()["schemas"][part["$ref"].rsplit("/", 1)[1]]
        names |= set(resolved.get("properties", {}))
    missing = names - set(CHAT_PARAMETERS)
    assert not missing, f"unclassified OpenAI parameters: {sorted(missing)}"
    assert json.dumps(CHAT_PARAMETERS)


def test_json_object_is_accepted_when_the_messages_ask_for_json() -> None:
    request = parse_chat_request(
        chat(
            messages=[{"role": "user", "content": [{"type": "text", "text": "Answer in JSON"}]}],
            response_format={"type": "json_object"},
        )
    )
    assert request.conversation.response_format == {"type": "json_object"}


def test_assistant_tool_calls_and_tool_results_are_normalised() -> None:
    request = parse_chat_request(
        chat(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": ""}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sunny"}]},
            ]
        )
    )
    assistant, tool = request.conversation.messages[1], request.conversation.messages[2]
    assert assistant["content"] is None and assistant["tool_calls"][0]["function"]["arguments"] == "{}"
    assert tool == {"role": "tool", "content": [{"type": "text", "text": "sunny"}], "tool_call_id": "c1"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", ("hello",)),
        (["a", "b"], ("a", "b")),
        ([1, 2, 3], ((1, 2, 3),)),
        ([[1, 2], [3]], ((1, 2), (3,))),
    ],
)
def test_embedding_inputs_in_every_openai_form(value, expected) -> None:
    request = parse_embedding_request({"model": "titan-embed-text-v2", "input": value})
    assert request.inputs == expected and request.encoding_format == "float" and request.dimensions is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ""}, "input[0]"),
        ({"model": "m", "input": ["ok", "  "]}, "input[1]"),
        ({"model": "m", "input": ["ok", 3]}, "input[1]"),
        ({"model": "m", "input": [[1, -2]]}, "input[0]"),
        ({"model": "m", "input": [[]]}, "input[0]"),
        ({"model": "m", "input": [True]}, "input[0]"),
        ({"model": "m", "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": "256"}, "dimensions"),
        ({"model": "m", "input": "x", "user": 1}, "user"),
        ({"model": "m", "input": "x", "input_type": "query"}, "input_type"),
    ],
)
def test_invalid_embedding_requests_name_the_parameter(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_embedding_request(body)
    assert caught.value.param == param


def test_every_openai_embedding_parameter_has_a_policy() -> None:
    from tests.openai_schema import components

    names = set(components()["schemas"]["CreateEmbeddingRequest"]["properties"])
    assert names == set(EMBEDDING_PARAMETERS)
