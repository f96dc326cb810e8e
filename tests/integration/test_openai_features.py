"""Every chat and embeddings feature through the official openai SDK against the running local stack."""

from __future__ import annotations

import base64
import json

import openai
import pytest
from jsonschema import validate
from pydantic import BaseModel

from tests.openai_schema import assert_valid

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}
# A 1x1 PNG, inline: the gateway never downloads images.
PNG = "data:image/png;base64," + (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def dump(model) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


def collect(stream) -> tuple[list, str, dict[int, dict], str | None]:
    """Chunks, text, tool calls by index (as clients rebuild them) and the finish reason."""
    chunks = list(stream)
    text, calls, finish = "", {}, None
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", dump(chunk))
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            slot["id"] = call.id or slot["id"]
            slot["name"] = (call.function.name if call.function else None) or slot["name"]
            slot["arguments"] += (call.function.arguments if call.function else "") or ""
        finish = chunk.choices[0].finish_reason or finish
    return chunks, text, calls, finish


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(openai_client, stream: bool) -> None:
    messages = [{"role": "user", "content": "Use get_weather: what is the weather in Paris?"}]
    # 1. the model asks for the tool, with text beside the call (Claude explains first)
    if stream:
        _, text, calls, finish = collect(
            openai_client.chat.completions.create(
                model="claude-haiku-4-5", messages=messages, tools=[WEATHER], stream=True
            )
        )
        assert list(calls) == [0]
        call = {
            "id": calls[0]["id"],
            "type": "function",
            "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]},
        }
    else:
        reply = openai_client.chat.completions.create(model="claude-haiku-4-5", messages=messages, tools=[WEATHER])
        assert_valid("CreateChatCompletionResponse", dump(reply))
        text, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
        call = reply.choices[0].message.tool_calls[0].model_dump()
    assert finish == "tool_calls" and text and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    # 2. the client runs it and sends the result back; the model answers in text
    messages += [
        {"role": "assistant", "content": text, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    final = openai_client.chat.completions.create(model="claude-haiku-4-5", messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop" and "sunny, 21 C" in final.choices[0].message.content
    # 3. the same history with tool_choice "none" (Bedrock has no such choice): text only
    plain = openai_client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[*messages, {"role": "user", "content": "Use get_weather again for Rome"}],
        tools=[WEATHER],
        tool_choice="none",
    )
    assert plain.choices[0].message.tool_calls is None and plain.choices[0].finish_reason == "stop"


def test_parallel_and_forced_tool_calls(openai_client) -> None:
    _, _, calls, finish = collect(
        openai_client.chat.completions.create(
            model="nova-micro",
            messages=[{"role": "user", "content": "Weather and time #emulator:parallel"}],
            tools=[WEATHER, TIME],
            stream=True,
        )
    )
    assert finish == "tool_calls" and sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"] and calls[0]["id"] != calls[1]["id"]
    single = openai_client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "user", "content": "Weather and time #emulator:parallel"}],
        tools=[WEATHER, TIME],
        parallel_tool_calls=False,
    )
    assert len(single.choices[0].message.tool_calls) == 1
    forced = openai_client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "user", "content": "Anything"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert forced.choices[0].message.tool_calls[0].function.name == "get_time"


class Person(BaseModel):
    name: str
    age: int
    languages: list[str]


@pytest.mark.parametrize("model", ["nova-micro", "claude-haiku-4-5"])
def test_json_schema_output_is_parsed_by_the_sdk(openai_client, model: str) -> None:
    completion = openai_client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Describe Ada Lovelace"}], response_format=Person
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    validate(json.loads(completion.choices[0].message.content), Person.model_json_schema())
    with openai_client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "Describe Ada Lovelace"}], response_format=Person
    ) as stream:
        streamed = stream.get_final_completion().choices[0].message.parsed
    assert streamed == person


def test_image_input_as_a_data_url(openai_client) -> None:
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": PNG}}]
    for model in ("nova-lite", "claude-haiku-4-5"):
        reply = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
        assert "an image (png" in reply.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="data URL") as caught:
        openai_client.chat.completions.create(
            model="nova-lite",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
            ],
        )
    assert caught.value.code == "image_url_not_supported"
    with pytest.raises(openai.BadRequestError, match="image input"):
        openai_client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": content}])


def test_reasoning_is_exposed_as_reasoning_content(openai_client) -> None:
    reply = openai_client.chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "Think first"}], reasoning_effort="low"
    )
    message = reply.choices[0].message
    assert message.reasoning_content and message.content == 'You said: "Think first"'  # extra field, kept by the SDK
    assert reply.usage.completion_tokens_details.reasoning_tokens > 0
    chunks = list(
        openai_client.chat.completions.create(
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": "Think first"}],
            reasoning_effort="low",
            stream=True,
        )
    )
    streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert streamed == message.reasoning_content


def test_every_ignored_parameter_is_accepted(openai_client) -> None:
    reply = openai_client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        user="user-42",
        metadata={"team": "search"},
        seed=7,
        max_completion_tokens=20,
        temperature=0.3,
        top_p=0.9,
        stop=["\n\n"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, text, _, finish = collect(reply)
    assert text == 'You said: "Hi"' and finish == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_cached_tokens_are_reported(openai_client) -> None:
    reply = openai_client.chat.completions.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "Again #emulator:cache_read=500"}]
    )
    assert reply.usage.prompt_tokens_details.cached_tokens == 500


def test_a_stream_failing_midway_raises_an_api_error(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Tell me #emulator:stream_error"}], stream=True
    )
    with pytest.raises(openai.APIError, match="Bedrock"):
        list(stream)


def test_embeddings_float_and_base64(openai_client) -> None:
    # The SDK asks for base64 by default and decodes it; float is asked for explicitly.
    default = openai_client.embeddings.create(model="titan-embed-text-v2", input=["first text", "second"])
    explicit = openai_client.embeddings.create(
        model="titan-embed-text-v2", input=["first text", "second"], encoding_format="float"
    )
    assert_valid("CreateEmbeddingResponse", dump(explicit))
    assert [d.index for d in default.data] == [0, 1] and len(default.data[0].embedding) == 1024
    assert default.data[0].embedding == pytest.approx(explicit.data[0].embedding, abs=1e-6)
    assert default.usage.prompt_tokens == explicit.usage.prompt_tokens > 0
    small = openai_client.embeddings.create(model="titan-embed-text-v2", input="short", dimensions=256)
    assert len(small.data[0].embedding) == 256
    raw = openai_client.embeddings.with_raw_response.create(
        model="cohere-embed-english-v3", input="raw", encoding_format="base64"
    ).http_response.json()
    assert len(base64.b64decode(raw["data"][0]["embedding"])) == 1024 * 4
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        openai_client.embeddings.create(model="cohere-embed-english-v3", input="x", dimensions=256)
