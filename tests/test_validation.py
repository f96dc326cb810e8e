from __future__ import annotations

import base64
import json

import pytest

from chalicelib.errors import InvalidRequest, PayloadTooLarge
from chalicelib.validation import CHAT_PARAMETERS, parse_chat_request, parse_json_body

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def chat(**extra):
    return {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_minimal_request() -> None:
    request = parse_chat_request(chat())
    assert request.model == "nova-micro" and not request.stream and request.options == {}


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
    assert request.has_images


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
    assert request.messages[0]["role"] == "system"
    assert request.include_usage and request.options == {"max_tokens": 50}


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
    assert request.options["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert request.options["response_format"]["json_schema"]["strict"] is True
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
