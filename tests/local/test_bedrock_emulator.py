"""The Bedrock emulator against botocore's real parsers and LiteLLM's real Bedrock code path."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import boto3  # noqa: E402
import jsonschema  # noqa: E402
import litellm  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.eventstream import EventStreamBuffer  # noqa: E402
from botocore.exceptions import EventStreamError  # noqa: E402

from local.bedrock_emulator import IMAGE_TOKENS, count_tokens, start_emulator  # noqa: E402
from local.bedrock_emulator.directives import DIRECTIVES, help_text, parse_directives  # noqa: E402
from local.bedrock_emulator.eventstream import encode_event  # noqa: E402
from local.bedrock_emulator.server import EmulatorServer  # noqa: E402

NOVA_MICRO = "us.amazon.nova-micro-v1:0"
NOVA_LITE = "us.amazon.nova-lite-v1:0"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LLAMA = "us.meta.llama3-3-70b-instruct-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
REPO_ROOT = Path(__file__).resolve().parents[2]

# A 1x1 transparent PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "when": {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}, "required": ["date"]},
        "exact": {"type": "boolean"},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "kind": {"const": "forecast"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]},
        "ref": {"$ref": "#/$defs/place"},
    },
    "required": ["city", "days", "ref"],
    "additionalProperties": False,
    "$defs": {"place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
}
WEATHER_TOOL = {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": WEATHER_SCHEMA}}}
TIME_TOOL = {
    "toolSpec": {
        "name": "get_time",
        "description": "Time",
        "inputSchema": {"json": {"type": "object", "properties": {"zone": {"type": "string"}}}},
    }
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[EmulatorServer, str]]:
    """One in-process emulator on a free port for this module."""
    server, base_url = start_emulator(host="127.0.0.1", port=0)
    yield server, base_url
    server.shutdown()


@pytest.fixture(scope="module")
def base_url(emulator: tuple[EmulatorServer, str]) -> str:
    return emulator[1]


@pytest.fixture(scope="module")
def client(base_url: str) -> Any:
    """A real boto3 bedrock-runtime client pointed at the emulator, without retries."""
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=base_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def llm(base_url: str) -> dict[str, str]:
    """LiteLLM keyword arguments that route Bedrock calls to the emulator."""
    return {
        "aws_bedrock_runtime_endpoint": base_url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region_name": "us-east-1",
    }


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def raw_post(base_url: str, path: str, body: object, *, signed: bool = True) -> tuple[int, Mapping[str, str], Any]:
    """POST without botocore (so its client-side validation cannot interfere); fake SigV4 header."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Amz-Date"] = "20250101T000000Z"
        headers["Authorization"] = (
            "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/bedrock/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00"
        )
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def converse_path(model_id: str, stream: bool = False) -> str:
    return f"/model/{urllib.request.quote(model_id, safe='')}/converse{'-stream' if stream else ''}"


def collect_stream(response: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) pairs from botocore's decoded EventStream."""
    return [next(iter(event.items())) for event in response["stream"]]


# --- boto3: Converse ------------------------------------------------------------------------------


def test_converse_echoes_prompt_with_honest_usage(client: Any, emulator: tuple[EmulatorServer, str]) -> None:
    prompt = "Hello, emulator! How are you?"
    response = client.converse(modelId=NOVA_MICRO, messages=[user(prompt)])
    text = response["output"]["message"]["content"][0]["text"]
    assert text == f'You said: "{prompt}"'
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {
        "inputTokens": count_tokens(prompt),
        "outputTokens": count_tokens(text),
        "totalTokens": count_tokens(prompt) + count_tokens(text),
    }
    assert isinstance(response["metrics"]["latencyMs"], int)
    recorded = emulator[0].requests[-1]
    assert recorded.path == "/model/us.amazon.nova-micro-v1%3A0/converse"
    assert recorded.model_id == NOVA_MICRO


def test_tokenizer_rule() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("don't stop_now 42") == 5
    assert count_tokens("  ") == 0


def test_input_tokens_cover_system_history_and_tools(client: Any) -> None:
    messages = [user("first question"), {"role": "assistant", "content": [{"text": "first answer"}]}, user("second")]
    response = client.converse(
        modelId=NOVA_MICRO,
        system=[{"text": "Be terse."}],
        messages=messages,
        toolConfig={"tools": [WEATHER_TOOL]},
    )
    expected = sum(map(count_tokens, ["Be terse.", "first question", "first answer", "second"]))
    expected += count_tokens("get_weather") + count_tokens("Weather") + count_tokens(json.dumps(WEATHER_SCHEMA))
    assert response["usage"]["inputTokens"] == expected


def test_max_tokens_truncates(client: Any) -> None:
    response = client.converse(modelId=NOVA_MICRO, messages=[user("one two three")], inferenceConfig={"maxTokens": 3})
    assert response["output"]["message"]["content"][0]["text"] == "You said:"
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] == 3


def test_stop_sequence(client: Any) -> None:
    response = client.converse(
        modelId=NOVA_MICRO, messages=[user("alpha STOP beta")], inferenceConfig={"stopSequences": ["STOP"]}
    )
    assert response["output"]["message"]["content"][0]["text"] == 'You said: "alpha '
    assert response["stopReason"] == "stop_sequence"


def test_tokens_and_cache_directives(client: Any) -> None:
    prompt = "fill #emulator:tokens=25 #emulator:cache_read=100 #emulator:cache_write=7"
    response = client.converse(modelId=HAIKU, messages=[user(prompt)])
    usage = response["usage"]
    assert usage["outputTokens"] == 25
    assert count_tokens(response["output"]["message"]["content"][0]["text"]) == 25
    assert usage["cacheReadInputTokens"] == 100
    assert usage["cacheWriteInputTokens"] == 7
    assert usage["totalTokens"] == usage["inputTokens"] + 25 + 107
    capped = client.converse(modelId=HAIKU, messages=[user("#emulator:tokens=25")], inferenceConfig={"maxTokens": 10})
    assert capped["usage"]["outputTokens"] == 10
    assert capped["stopReason"] == "max_tokens"


def test_image_block(client: Any) -> None:
    image = {"image": {"format": "png", "source": {"bytes": PNG_1X1}}}
    response = client.converse(
        modelId=NOVA_LITE, messages=[{"role": "user", "content": [{"text": "What is this?"}, image]}]
    )
    text = response["output"]["message"]["content"][0]["text"]
    assert f"an image (png, {len(PNG_1X1)} bytes)" in text
    assert response["usage"]["inputTokens"] == count_tokens("What is this?") + IMAGE_TOKENS
    with pytest.raises(client.exceptions.ValidationException, match="image"):
        client.converse(modelId=NOVA_MICRO, messages=[{"role": "user", "content": [{"text": "x"}, image]}])
    not_png = {"image": {"format": "png", "source": {"bytes": b"GIF89a-not-a-png"}}}
    with pytest.raises(client.exceptions.ValidationException, match="not a valid png"):
        client.converse(modelId=NOVA_LITE, messages=[{"role": "user", "content": [not_png]}])


def test_reasoning_block_comes_first(client: Any) -> None:
    response = client.converse(
        modelId=HAIKU,
        messages=[user("think")],
        inferenceConfig={"maxTokens": 4000},
        additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
    )
    content = response["output"]["message"]["content"]
    reasoning = content[0]["reasoningContent"]["reasoningText"]
    assert reasoning["text"] and reasoning["signature"]
    assert content[1]["text"] == 'You said: "think"'
    assert response["usage"]["outputTokens"] == count_tokens(reasoning["text"]) + count_tokens(content[1]["text"])


def test_forced_tool_input_satisfies_schema(client: Any) -> None:
    response = client.converse(
        modelId=NOVA_MICRO,
        messages=[user("Weather in Paris please")],
        toolConfig={"tools": [WEATHER_TOOL, TIME_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
    )
    assert response["stopReason"] == "tool_use"
    [block] = response["output"]["message"]["content"]
    tool_use = block["toolUse"]
    assert tool_use["name"] == "get_weather"
    assert tool_use["toolUseId"].startswith("tooluse_")
    jsonschema.validate(tool_use["input"], WEATHER_SCHEMA)
    assert tool_use["input"]["city"] == "Weather in Paris please"
    assert response["usage"]["outputTokens"] == count_tokens(json.dumps(tool_use["input"]))


def test_auto_tool_choice(client: Any) -> None:
    tools = {"tools": [WEATHER_TOOL, TIME_TOOL], "toolChoice": {"auto": {}}}
    plain = client.converse(modelId=NOVA_MICRO, messages=[user("just chat")], toolConfig=tools)
    assert plain["stopReason"] == "end_turn"
    named = client.converse(modelId=NOVA_MICRO, messages=[user("please call get_time")], toolConfig=tools)
    assert [b["toolUse"]["name"] for b in named["output"]["message"]["content"]] == ["get_time"]
    claude = client.converse(modelId=HAIKU, messages=[user("go #emulator:parallel")], toolConfig=tools)
    content = claude["output"]["message"]["content"]
    assert content[0]["text"] == "I'll use the get_weather and get_time tools."
    assert [b["toolUse"]["name"] for b in content[1:]] == ["get_weather", "get_time"]
    assert content[1]["toolUse"]["toolUseId"] != content[2]["toolUse"]["toolUseId"]


def test_tool_result_is_summarised(client: Any) -> None:
    first = client.converse(modelId=NOVA_MICRO, messages=[user("#emulator:tool")], toolConfig={"tools": [WEATHER_TOOL]})
    tool_use = first["output"]["message"]["content"][0]["toolUse"]
    result = {"toolResult": {"toolUseId": tool_use["toolUseId"], "content": [{"json": {"sky": "sunny"}}]}}
    second = client.converse(
        modelId=NOVA_MICRO,
        messages=[user("#emulator:tool"), first["output"]["message"], {"role": "user", "content": [result]}],
        toolConfig={"tools": [WEATHER_TOOL]},
    )
    assert second["output"]["message"]["content"][0]["text"] == 'Tool get_weather returned: {"sky": "sunny"}'
    assert second["stopReason"] == "end_turn"


# --- boto3: ConverseStream ------------------------------------------------------------------------


def test_converse_stream_matches_converse(client: Any) -> None:
    prompt = "Streaming is realistic when the text arrives in several pieces."
    whole = client.converse(modelId=NOVA_MICRO, messages=[user(prompt)])
    events = collect_stream(client.converse_stream(modelId=NOVA_MICRO, messages=[user(prompt)]))
    names = [name for name, _ in events]
    assert names[0] == "messageStart" and events[0][1] == {"role": "assistant"}
    assert names[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(names[1:-3]) == {"contentBlockDelta"} and len(names[1:-3]) > 3
    text = "".join(payload["delta"]["text"] for name, payload in events if name == "contentBlockDelta")
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2][1]["stopReason"] == "end_turn"
    assert events[-1][1]["usage"] == whole["usage"]
    assert "latencyMs" in events[-1][1]["metrics"]


def test_converse_stream_tool_use_and_reasoning(client: Any) -> None:
    events = collect_stream(
        client.converse_stream(
            modelId=HAIKU,
            messages=[user("Weather in Oslo? call get_weather")],
            inferenceConfig={"maxTokens": 2000},
            toolConfig={"tools": [WEATHER_TOOL]},
            additionalModelRequestFields={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    )
    reasoning = [
        p["delta"]["reasoningContent"] for n, p in events if n == "contentBlockDelta" and p["contentBlockIndex"] == 0
    ]
    assert "text" in reasoning[0] and "signature" in reasoning[-1]
    starts = [p for n, p in events if n == "contentBlockStart"]
    assert starts == [
        {
            "contentBlockIndex": 2,
            "start": {"toolUse": {"toolUseId": starts[0]["start"]["toolUse"]["toolUseId"], "name": "get_weather"}},
        }
    ]
    fragments = [
        p["delta"]["toolUse"]["input"] for n, p in events if n == "contentBlockDelta" and p["contentBlockIndex"] == 2
    ]
    assert len(fragments) > 1
    jsonschema.validate(json.loads("".join(fragments)), WEATHER_SCHEMA)
    assert [p for n, p in events if n == "messageStop"] == [{"stopReason": "tool_use"}]


def test_stream_error_event_and_chunk_delay(client: Any) -> None:
    broken = client.converse_stream(modelId=NOVA_MICRO, messages=[user("one two three four #emulator:stream_error")])
    seen: list[str] = []
    with pytest.raises(EventStreamError, match="modelStreamErrorException"):
        for event in broken["stream"]:
            seen.append(next(iter(event)))
    assert seen[0] == "messageStart" and "messageStop" not in seen
    started = time.monotonic()
    slow = collect_stream(client.converse_stream(modelId=NOVA_MICRO, messages=[user("a b #emulator:chunk_delay=0.02")]))
    assert time.monotonic() - started >= 0.02 * (len(slow) - 1)


def test_event_stream_framing_roundtrips_through_botocore() -> None:
    frame = encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    buffer = EventStreamBuffer()
    buffer.add_data(frame[:7])
    assert list(buffer) == []
    buffer.add_data(frame[7:])
    [message] = list(buffer)
    assert message.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(message.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}


# --- boto3: InvokeModel embeddings ----------------------------------------------------------------


def invoke(client: Any, model_id: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
    response = client.invoke_model(modelId=model_id, body=json.dumps(body))
    return json.loads(response["body"].read()), response["ResponseMetadata"]["HTTPHeaders"]


def test_titan_embeddings(client: Any) -> None:
    body, headers = invoke(client, TITAN, {"inputText": "Hello embeddings world", "dimensions": 256})
    vector = body["embedding"]
    assert len(vector) == 256 and body["embeddingsByType"]["float"] == vector
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)
    assert body["inputTextTokenCount"] == 3
    assert headers["x-amzn-bedrock-input-token-count"] == "3"
    assert headers["x-amzn-bedrock-output-token-count"] == "0"
    again, _ = invoke(client, TITAN, {"inputText": "Hello embeddings world", "dimensions": 256})
    other, _ = invoke(client, TITAN, {"inputText": "Something else"})
    assert again["embedding"] == vector and len(other["embedding"]) == 1024 and other["embedding"][:256] != vector
    raw, _ = invoke(client, TITAN, {"inputText": "x", "normalize": False, "embeddingTypes": ["binary"]})
    assert "embedding" not in raw and set(raw["embeddingsByType"]["binary"]) <= {0, 1}
    with pytest.raises(client.exceptions.ValidationException, match="maxLength: 50000"):
        invoke(client, TITAN, {"inputText": "a" * 50_001})
    with pytest.raises(client.exceptions.ValidationException, match="Too many input tokens"):
        invoke(client, TITAN, {"inputText": "a " * 8_193})
    with pytest.raises(client.exceptions.ValidationException, match="dimensions"):
        invoke(client, TITAN, {"inputText": "x", "dimensions": 300})


def test_cohere_embeddings(client: Any) -> None:
    texts = ["first text", "second text here"]
    body, headers = invoke(client, COHERE, {"texts": texts, "input_type": "search_document"})
    assert body["response_type"] == "embeddings_floats" and body["texts"] == texts and body["id"]
    assert [len(v) for v in body["embeddings"]] == [1024, 1024]
    assert headers["x-amzn-bedrock-input-token-count"] == "5"
    typed, _ = invoke(client, COHERE, {"texts": texts, "input_type": "search_query", "embedding_types": ["int8"]})
    assert typed["response_type"] == "embeddings_by_type"
    assert all(-128 <= x <= 127 for x in typed["embeddings"]["int8"][0])
    with pytest.raises(client.exceptions.ValidationException, match="maximum item count: 96"):
        invoke(client, COHERE, {"texts": ["x"] * 97, "input_type": "search_document"})
    with pytest.raises(client.exceptions.ValidationException, match="maxLength: 2048"):
        invoke(client, COHERE, {"texts": ["x" * 2049], "input_type": "search_document"})
    with pytest.raises(client.exceptions.ValidationException, match="input_type"):
        invoke(client, COHERE, {"texts": ["x"]})


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "exception", "status"),
    [
        ("throttle", "ThrottlingException", 429),
        ("error", "ModelErrorException", 424),
        ("error500", "InternalServerException", 500),
        ("unavailable", "ServiceUnavailableException", 503),
        ("timeout", "ModelTimeoutException", 408),
        ("denied", "AccessDeniedException", 403),
    ],
)
def test_fault_directives_raise_modelled_errors(client: Any, directive: str, exception: str, status: int) -> None:
    with pytest.raises(getattr(client.exceptions, exception)) as info:
        client.converse(modelId=NOVA_MICRO, messages=[user(f"hi #emulator:{directive}")])
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_unknown_model_and_embedding_faults(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="model identifier is invalid"):
        client.converse(modelId="us.amazon.nova-nano-v9:0", messages=[user("hi")])
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, TITAN, {"inputText": "#emulator:throttle"})


def test_unsigned_and_wrongly_scoped_requests_are_rejected(base_url: str) -> None:
    status, headers, body = raw_post(base_url, converse_path(NOVA_MICRO), {"messages": [user("hi")]}, signed=False)
    assert status == 403
    assert headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException:")
    assert body == {"message": "Missing Authentication Token"}
    request = urllib.request.Request(
        base_url + converse_path(NOVA_MICRO),
        data=json.dumps({"messages": [user("hi")]}).encode(),
        headers={
            "X-Amz-Date": "20250101T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/bedrock-runtime/aws4_request, "
            "SignedHeaders=host, Signature=00",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        ({}, "Member must not be null"),
        ({"messages": []}, "must start with a user message"),
        ({"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, "must start with a user message"),
        ({"messages": [user("a"), user("b")]}, "must alternate"),
        ({"messages": [{"role": "user", "content": []}]}, "is empty"),
        ({"messages": [user(" ")]}, "is blank"),
        ({"messages": [{"role": "user", "content": [{"sticker": {}}]}]}, "Unknown content block type 'sticker'"),
        ({"messages": [user("x")], "inferenceConfig": {"maxTokens": 0}}, "greater than or equal to 1"),
        ({"messages": [user("x")], "inferenceConfig": {"maxTokens": 10_001}}, "model limit of 10000"),
        ({"messages": [user("x")], "inferenceConfig": {"temperature": 1.5}}, "inferenceConfig.temperature"),
        ({"messages": [user("x")], "inferenceConfig": {"topP": -0.1}}, "inferenceConfig.topP"),
        (
            {
                "messages": [user("x")],
                "toolConfig": {"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "nope"}}},
            },
            "nope named in toolConfig.toolChoice.tool is not defined",
        ),
        (
            {
                "messages": [
                    user("x"),
                    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
                ]
            },
            "toolConfig field must be defined",
        ),
        (
            {
                "messages": [user("x")],
                "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2000}},
            },
            "extraneous key [thinking]",
        ),
        ({"messages": [user("x #emulator:bogus")]}, "Unknown emulator directive"),
    ],
)
def test_converse_validation(base_url: str, body: object, message: str) -> None:
    status, headers, payload = raw_post(base_url, converse_path(NOVA_MICRO), body)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    assert message in payload["message"]


def test_llama_rejects_forced_tool_choice(base_url: str) -> None:
    body = {"messages": [user("x")], "toolConfig": {"tools": [WEATHER_TOOL], "toolChoice": {"any": {}}}}
    status, _, payload = raw_post(base_url, converse_path(LLAMA), body)
    assert status == 400 and "toolChoice.any" in payload["message"]


def test_sleep_directive_delays_answer(client: Any) -> None:
    started = time.monotonic()
    response = client.converse(modelId=NOVA_MICRO, messages=[user("wait #emulator:sleep=0.3")])
    assert time.monotonic() - started >= 0.3
    assert response["metrics"]["latencyMs"] >= 300


def test_strict_profiles_mode() -> None:
    server, base_url = start_emulator(strict_profiles=True)
    try:
        status, _, body = raw_post(
            base_url, converse_path("anthropic.claude-haiku-4-5-20251001-v1:0"), {"messages": [user("x")]}
        )
        assert status == 400 and "on-demand throughput isn't supported" in body["message"]
        assert raw_post(base_url, converse_path("global.amazon.nova-micro-v1:0"), {"messages": [user("x")]})[0] == 404
        assert raw_post(base_url, converse_path("global." + HAIKU[3:]), {"messages": [user("x")]})[0] == 200
    finally:
        server.shutdown()


def test_ping_and_cli() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.bedrock_emulator", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().strip()
        assert line.startswith("bedrock emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with urllib.request.urlopen(url + "/ping", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=5)


# --- LiteLLM end to end ---------------------------------------------------------------------------


def test_litellm_completion(llm: dict[str, str]) -> None:
    prompt = "Hello from LiteLLM, emulator."
    response = litellm.completion(
        model=f"bedrock/converse/{NOVA_MICRO}", messages=[{"role": "user", "content": prompt}], **llm
    )
    content = response.choices[0].message.content
    assert content == f'You said: "{prompt}"'
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == count_tokens(prompt)
    assert response.usage.completion_tokens == count_tokens(content)


def test_litellm_streaming(llm: dict[str, str]) -> None:
    prompt = "Stream this sentence back to me, please."
    chunks = list(
        litellm.completion(
            model=f"bedrock/converse/{NOVA_MICRO}",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
            **llm,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f'You said: "{prompt}"'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (count_tokens(prompt), count_tokens(text))


def test_litellm_forced_tool_call(llm: dict[str, str]) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
        }
    ]
    response = litellm.completion(
        model=f"bedrock/converse/{NOVA_MICRO}",
        messages=[{"role": "user", "content": "Weather in Rome"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        **llm,
    )
    [call] = response.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("tooluse_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)
    assert response.choices[0].finish_reason == "tool_calls"


def test_litellm_streamed_tool_call(llm: dict[str, str]) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
        }
    ]
    chunks = list(
        litellm.completion(
            model=f"bedrock/converse/{HAIKU}",
            messages=[{"role": "user", "content": "Use get_weather for Rome"}],
            tools=tools,
            stream=True,
            **llm,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    arguments = "".join(tc.function.arguments or "" for c in chunks for tc in c.choices[0].delta.tool_calls or [])
    assert text == "I'll use the get_weather tool."
    jsonschema.validate(json.loads(arguments), WEATHER_SCHEMA)


@pytest.mark.parametrize("model", [NOVA_MICRO, HAIKU])
def test_litellm_response_format_json_schema(llm: dict[str, str], model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = litellm.completion(
        model=f"bedrock/converse/{model}",
        messages=[{"role": "user", "content": "Ada Lovelace"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        **llm,
    )
    value = json.loads(response.choices[0].message.content)
    jsonschema.validate(value, schema)
    assert value["name"] == "Ada Lovelace"


def test_litellm_reasoning(llm: dict[str, str]) -> None:
    response = litellm.completion(
        model=f"bedrock/converse/{HAIKU}",
        messages=[{"role": "user", "content": "ponder"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        **llm,
    )
    message = response.choices[0].message
    assert message.content == 'You said: "ponder"'
    assert message.reasoning_content.startswith('The user said: "ponder".')
    details = response.usage.completion_tokens_details
    assert details.reasoning_tokens == count_tokens(message.reasoning_content)
    assert response.usage.completion_tokens == count_tokens(message.reasoning_content) + count_tokens(message.content)


def test_litellm_embeddings(llm: dict[str, str]) -> None:
    inputs = ["first input", "second input text"]
    titan = litellm.embedding(model=f"bedrock/{TITAN}", input=inputs, dimensions=512, **llm)
    assert [len(row["embedding"]) for row in titan.data] == [512, 512]
    assert titan.usage.prompt_tokens == sum(map(count_tokens, inputs))
    cohere = litellm.embedding(model=f"bedrock/{COHERE}", input=inputs, **llm)
    assert [len(row["embedding"]) for row in cohere.data] == [1024, 1024]
    # LiteLLM counts Cohere text tokens itself (tiktoken) and ignores X-Amzn-Bedrock-Input-Token-Count.
    assert cohere.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("prompt", "model", "error", "status"),
    [
        ("#emulator:throttle", NOVA_MICRO, litellm.RateLimitError, 429),
        # ModelErrorException is HTTP 424, which LiteLLM files under BadRequestError.
        ("#emulator:error", NOVA_MICRO, litellm.BadRequestError, 424),
        # LiteLLM maps Bedrock's 500 to ServiceUnavailableError (503).
        ("#emulator:error500", NOVA_MICRO, litellm.ServiceUnavailableError, 503),
        ("#emulator:too_long", NOVA_MICRO, litellm.ContextWindowExceededError, 400),
        ("hi", "us.amazon.nova-nano-v9:0", litellm.NotFoundError, 404),
    ],
)
def test_litellm_error_mapping(llm: dict[str, str], prompt: str, model: str, error: type, status: int) -> None:
    with pytest.raises(error) as info:
        litellm.completion(model=f"bedrock/converse/{model}", messages=[{"role": "user", "content": prompt}], **llm)
    assert info.value.status_code == status


def test_litellm_mid_stream_error_event(llm: dict[str, str]) -> None:
    with pytest.raises(litellm.BadRequestError, match="modelStreamErrorException") as info:
        for _ in litellm.completion(
            model=f"bedrock/converse/{NOVA_MICRO}",
            messages=[{"role": "user", "content": "one two three #emulator:stream_error"}],
            stream=True,
            **llm,
        ):
            pass
    assert info.value.status_code == 424


@pytest.mark.parametrize(
    ("directive", "reason"),
    [("cut", "incomplete chunked read"), ("cut_clean", "Stream ended before a finish_reason was received")],
)
def test_litellm_cut_stream_raises_after_partial_text(llm: dict[str, str], directive: str, reason: str) -> None:
    received: list[str] = []
    with pytest.raises(litellm.ServiceUnavailableError, match=reason) as info:
        for chunk in litellm.completion(
            model=f"bedrock/converse/{NOVA_MICRO}",
            messages=[{"role": "user", "content": f"one two three four five six seven #emulator:{directive}"}],
            stream=True,
            **llm,
        ):
            received.append(chunk.choices[0].delta.content or "")
    # LiteLLM wraps the failure in MidStreamFallbackError (a ServiceUnavailableError, HTTP 503).
    assert type(info.value).__name__ == "MidStreamFallbackError"
    assert "".join(received).startswith("You said:")


# --- the directives: one list, answered by #emulator:help and documented in the README ----------


def test_help_answers_with_every_directive(client: Any) -> None:
    # WHEN a prompt asks for help, with tools on offer that would otherwise be called
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
    messages = [user("get_weather? #emulator:help")]
    whole = client.converse(modelId=NOVA_MICRO, messages=messages, toolConfig=tools)
    streamed = collect_stream(client.converse_stream(modelId=NOVA_MICRO, messages=messages, toolConfig=tools))
    # THEN the answer is the list, whole and streamed, naming every directive
    text = whole["output"]["message"]["content"][0]["text"]
    assert text == help_text() and whole["stopReason"] == "end_turn"
    assert "".join(p["delta"].get("text", "") for name, p in streamed if name == "contentBlockDelta") == text
    for name, directive in DIRECTIVES.items():
        assert f"\n{directive.usage}: " in text, name


def test_an_unknown_directive_points_at_help(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="#emulator:help answers with what each does"):
        client.converse(modelId=NOVA_MICRO, messages=[user("hi #emulator:throtle")])


def test_every_directive_parses_and_the_readme_documents_each() -> None:
    for name, directive in DIRECTIVES.items():
        written = directive.usage.split("[", 1)[0].replace("=SIDE", "=input").replace("=TARGET", "=us")
        written = written.replace("=N", "=3").replace("=S", "=0.5").replace("=P", "=0.5")
        parse_directives([written], [written])  # no "unknown directive"
        assert written.removeprefix("#emulator:").split("=", 1)[0] == name
    readme = (REPO_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(#emulator:[^`]+)` \| (.+) \|$", readme, flags=re.M)
    assert rows == [(d.usage, f"{d.does}.") for d in DIRECTIVES.values()]


# --- failures aimed at one target, at a rate; connection resets; guardrails (issue 21) ------------


def client_in(base_url: str, region: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=base_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_a_fault_aimed_at_one_target_spares_the_others(client: Any, base_url: str) -> None:
    # GIVEN a throttle aimed at the US geography
    messages = [user("hi #emulator:throttle #emulator:only=us")]
    # THEN the US profile is throttled, the global profile of the same model answers
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse(modelId=HAIKU, messages=messages)
    answer = client.converse(modelId="global.anthropic.claude-haiku-4-5-20251001-v1:0", messages=messages)
    assert answer["stopReason"] == "end_turn"
    # AND a fault aimed at a region hits the calls signed for that region only
    aimed = [user("hi #emulator:unavailable #emulator:only=us-west-2")]
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        client_in(base_url, "us-west-2").converse(modelId=NOVA_MICRO, messages=aimed)
    assert client.converse(modelId=NOVA_MICRO, messages=aimed)["stopReason"] == "end_turn"


def test_a_fault_at_a_rate_hits_that_fraction_of_requests() -> None:
    server, url = start_emulator(seed=1)
    try:
        runtime = client_in(url, "us-east-1")
        failed = 0
        for _ in range(200):
            try:
                runtime.converse(modelId=NOVA_MICRO, messages=[user("hi #emulator:throttle #emulator:rate=0.3")])
            except runtime.exceptions.ThrottlingException:
                failed += 1
    finally:
        server.shutdown()
    assert 40 <= failed <= 80  # 30% of 200, give or take


def test_a_throttle_carries_a_retry_hint_only_when_asked(base_url: str) -> None:
    path = converse_path(NOVA_MICRO)
    status, headers, _ = raw_post(base_url, path, {"messages": [user("hi #emulator:throttle")]})
    assert status == 429 and "Retry-After" not in headers  # as Bedrock's Converse: no hint
    status, headers, _ = raw_post(base_url, path, {"messages": [user("hi #emulator:throttle #emulator:retry_after=4")]})
    assert status == 429 and headers["Retry-After"] == "4"


def test_a_reset_drops_the_connection_before_any_byte(base_url: str) -> None:
    with pytest.raises((ConnectionResetError, urllib.error.URLError, http_client_errors())):
        raw_post(base_url, converse_path(NOVA_MICRO), {"messages": [user("hi #emulator:reset")]})


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.RemoteDisconnected


GUARDRAIL = {"guardrailIdentifier": "pennyworthdemo", "guardrailVersion": "1", "trace": "enabled"}


def test_a_guardrail_reports_its_text_units_in_the_trace(client: Any) -> None:
    text = "x" * 1500
    answer = client.converse(modelId=NOVA_MICRO, messages=[user(text)], guardrailConfig=GUARDRAIL)
    trace = answer["trace"]["guardrail"]
    units = trace["inputAssessment"]["pennyworthdemo"]["invocationMetrics"]["usage"]
    assert units["contentPolicyUnits"] == 2 and units["topicPolicyUnits"] == 2  # 1,500 characters: 2 units
    assert units["contextualGroundingPolicyUnits"] == 0  # a policy the guardrail does not have
    output = trace["outputAssessments"]["pennyworthdemo"][0]["invocationMetrics"]["usage"]
    produced = sum(len(block["text"]) for block in answer["output"]["message"]["content"])
    assert output["wordPolicyUnits"] == math.ceil(produced / 1000)
    # The stream's metadata event carries the same trace
    streamed = collect_stream(
        client.converse_stream(modelId=NOVA_MICRO, messages=[user(text)], guardrailConfig=GUARDRAIL)
    )
    metadata = next(payload for name, payload in streamed if name == "metadata")
    assert metadata["trace"]["guardrail"]["inputAssessment"]["pennyworthdemo"]["invocationMetrics"]["usage"] == units


def test_a_guardrail_blocks_the_prompt_or_the_answer(client: Any) -> None:
    blocked = client.converse(
        modelId=NOVA_MICRO, messages=[user("hi #emulator:guardrail=input")], guardrailConfig=GUARDRAIL
    )
    assert blocked["stopReason"] == "guardrail_intervened"
    assert blocked["usage"]["inputTokens"] == blocked["usage"]["outputTokens"] == 0
    assert "outputAssessments" not in blocked["trace"]["guardrail"]
    withheld = client.converse(
        modelId=NOVA_MICRO, messages=[user("hi #emulator:guardrail=output")], guardrailConfig=GUARDRAIL
    )
    assert withheld["stopReason"] == "guardrail_intervened" and withheld["usage"]["outputTokens"] > 0
    assert "withheld" in withheld["output"]["message"]["content"][0]["text"]
    # Without a guardrail on the request, the directive does nothing
    plain = client.converse(modelId=NOVA_MICRO, messages=[user("hi #emulator:guardrail=input")])
    assert plain["stopReason"] == "end_turn" and "trace" not in plain


def test_only_guarded_content_is_assessed_when_there_is_some(client: Any) -> None:
    messages = [{"role": "user", "content": [{"text": "y" * 3000}, {"guardContent": {"text": {"text": "z" * 10}}}]}]
    answer = client.converse(modelId=NOVA_MICRO, messages=messages, guardrailConfig=GUARDRAIL)
    usage = answer["trace"]["guardrail"]["inputAssessment"]["pennyworthdemo"]["invocationMetrics"]["usage"]
    assert usage["contentPolicyUnits"] == 1


def test_an_unknown_guardrail_is_refused_and_the_control_plane_knows_the_demo_one(client: Any, base_url: str) -> None:
    with pytest.raises(client.exceptions.ValidationException, match="guardrail"):
        client.converse(
            modelId=NOVA_MICRO,
            messages=[user("hi")],
            guardrailConfig={"guardrailIdentifier": "nope", "guardrailVersion": "1"},
        )
    control = boto3.client(
        "bedrock",
        region_name="eu-west-1",
        endpoint_url=base_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    found = control.get_guardrail(guardrailIdentifier="pennyworthdemo", guardrailVersion="1")
    assert found["status"] == "READY" and found["guardrailArn"].startswith("arn:aws:bedrock:eu-west-1:")
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_guardrail(guardrailIdentifier="pennyworthdemo", guardrailVersion="7")
