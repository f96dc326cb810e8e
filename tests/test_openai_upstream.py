"""A model served by an OpenAI-compatible upstream: every protocol, streamed and not, with tools, billed.

The emulator's OpenAI-compatible mode (``/openai/v1``) stands in for vLLM, Ollama or OpenAI; its
API key lives in SSM Parameter Store (moto) as a SecureString, where a deployed stack keeps it.
The key is read at run time and never appears in an answer, a log line, the ledger or the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.keys.store import KeyStore
from tests.admin_fixtures import Api
from tests.stream_client import StreamClient

PROVIDER_KEY = "sk-local-upstream-0123456789abcdef"
PARAMETER = "/pennyworth/local/providers/local-llm"
PRICES = {"input": "0.20", "output": "0.60"}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The emulator in its OpenAI-compatible mode, wanting its own key."""
    from local.bedrock_emulator import start_emulator

    server, base_url = start_emulator(openai_key=PROVIDER_KEY)
    yield f"{base_url}/openai/v1"
    server.shutdown()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, emulator_url: str, admin_client: Client) -> Client:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    return admin_client


@pytest.fixture
def ssm(client: Client) -> Any:
    import boto3

    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=PARAMETER, Value=PROVIDER_KEY, Type="SecureString")
    return ssm


@pytest.fixture
def model(as_admin: Api, ssm: Any, upstream: str) -> dict[str, Any]:
    body = {
        "alias": "local-llama",
        "provider": "openai",
        "model_id": "llama-3.1-8b",
        "base_url": upstream,
        "api_key_parameter": PARAMETER,
        "prices": PRICES,
        "capabilities": {"tools": True, "max_output_tokens": 4096, "context_window": 128000},
    }
    added = as_admin.call("post", "/admin/models", body)
    assert added.status_code == 201, added.body
    return added.json_body


@pytest.fixture
def key(keys_table: Any, model: dict[str, Any]) -> tuple[Any, str]:
    return KeyStore(keys_table).create(owner_sub="owner-1", name="local llm")


def post(path: str, secret: str, body: dict[str, Any], *, anthropic: bool = False) -> Any:
    headers = {"Content-Type": "application/json"}
    headers.update(
        {"x-api-key": secret, "anthropic-version": "2023-06-01"} if anthropic else {"Authorization": f"Bearer {secret}"}
    )
    return StreamClient().post(path, headers=headers, body=json.dumps(body))


def billed(key_id: str) -> list[dict[str, Any]]:
    return wiring.ledger().entries_for_key(key_id)


def assert_billed_at_the_models_prices(entry: dict[str, Any]) -> None:
    expected = Decimal(PRICES["input"]) / 1_000_000 * int(entry["input_tokens"]) + Decimal(
        PRICES["output"]
    ) / 1_000_000 * int(entry["output_tokens"])
    assert int(entry["input_tokens"]) > 0 and int(entry["output_tokens"]) > 0
    assert Decimal(entry["cost"]) == expected
    assert entry["served_by"] == "openai/llama-3.1-8b" and int(entry["price_version"]) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_with_and_without_tools(key: tuple[Any, str], stream: bool) -> None:
    record, secret = key
    plain = post("/v1/chat/completions", secret, {"model": "local-llama", "stream": stream,
                 "messages": [{"role": "user", "content": "Hello upstream"}]})  # fmt: skip
    assert plain.status_code == 200, plain.body
    text = (
        "".join(
            json.loads(c)["choices"][0]["delta"].get("content") or ""
            for c in plain.sse()[:-1]
            if json.loads(c)["choices"]
        )
        if stream
        else plain.json_body["choices"][0]["message"]["content"]
    )
    assert text == 'You said: "Hello upstream"'
    tools = post("/v1/chat/completions", secret, {"model": "local-llama", "stream": stream, "tools": [TOOL],
                 "messages": [{"role": "user", "content": "What is the get_weather in Paris?"}]})  # fmt: skip
    assert tools.status_code == 200, tools.body
    if stream:
        deltas = [json.loads(c) for c in tools.sse()[:-1]]
        calls = [
            d["choices"][0]["delta"]["tool_calls"]
            for d in deltas
            if d["choices"] and d["choices"][0]["delta"].get("tool_calls")
        ]
        assert calls[0][0]["function"]["name"] == "get_weather"
        arguments = "".join(c[0]["function"].get("arguments") or "" for c in calls)
        assert "city" in json.loads(arguments)
    else:
        [call] = tools.json_body["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
    entries = billed(record.key_id)
    assert len(entries) == 2
    for entry in entries:
        assert_billed_at_the_models_prices(entry)


@pytest.mark.parametrize("stream", [False, True])
def test_responses(key: tuple[Any, str], stream: bool) -> None:
    record, secret = key
    response = post("/v1/responses", secret, {"model": "local-llama", "input": "Hello responses", "stream": stream})
    assert response.status_code == 200, response.body
    if stream:
        events = [json.loads(b.split("\ndata: ", 1)[1]) for b in response.body.decode().split("\n\n") if b]
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == 'You said: "Hello responses"'
    else:
        assert response.json_body["output"][0]["content"][0]["text"] == 'You said: "Hello responses"'
    [entry] = billed(record.key_id)
    assert_billed_at_the_models_prices(entry)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_with_tools(key: tuple[Any, str], stream: bool) -> None:
    record, secret = key
    tool = {"name": "get_weather", "description": "Weather", "input_schema": TOOL["function"]["parameters"]}
    body = {"model": "local-llama", "max_tokens": 256, "stream": stream, "tools": [tool],
            "messages": [{"role": "user", "content": "Use get_weather for Oslo"}]}  # fmt: skip
    response = post("/v1/messages", secret, body, anthropic=True)
    assert response.status_code == 200, response.body
    if stream:
        blocks = [json.loads(part.split("\ndata: ")[1]) for part in response.body.decode().split("\n\n") if part]
        starts = [b["content_block"] for b in blocks if b["type"] == "content_block_start"]
        assert any(s["type"] == "tool_use" and s["name"] == "get_weather" for s in starts)
        assert blocks[-1]["type"] == "message_stop"
    else:
        message = response.json_body
        assert message["stop_reason"] == "tool_use"
        assert any(b["type"] == "tool_use" and "city" in b["input"] for b in message["content"])
    [entry] = billed(record.key_id)
    assert_billed_at_the_models_prices(entry)


def test_the_mcp_chat_tool(client: Client, key: tuple[Any, str]) -> None:
    record, secret = key
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "chat", "arguments": {"model": "local-llama", "prompt": "Hello MCP"}}}  # fmt: skip
    response = client.http.post(
        "/mcp", headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, body=json.dumps(body)
    )
    result = response.json_body["result"]
    assert not result.get("isError"), result
    assert result["structuredContent"]["text"] == 'You said: "Hello MCP"'
    [entry] = billed(record.key_id)
    assert_billed_at_the_models_prices(entry)


def test_a_cut_stream_is_billed_and_ends_in_an_error_the_client_can_see(key: tuple[Any, str]) -> None:
    record, secret = key
    response = post("/v1/chat/completions", secret, {"model": "local-llama", "stream": True,
                    "messages": [{"role": "user", "content": "#emulator:tokens=40 #emulator:cut"}]})  # fmt: skip
    assert response.status_code == 200
    assert "error" in response.sse()[-2] or "error" in response.sse()[-1]
    [entry] = billed(record.key_id)
    assert entry["status"] == "partial" and Decimal(entry["cost"]) > 0


def test_the_key_is_read_from_ssm_at_run_time_and_never_shown(
    key: tuple[Any, str], ssm: Any, as_admin: Api, service_logs: Any, aws: Any
) -> None:
    record, secret = key
    assert (
        post(
            "/v1/chat/completions", secret, {"model": "local-llama", "messages": [{"role": "user", "content": "hi"}]}
        ).status_code
        == 200
    )
    # GIVEN the key in SSM replaced by a wrong one, and the cached key forgotten (a warm function would
    # pick the new one up within its cache time)
    ssm.put_parameter(Name=PARAMETER, Value="sk-wrong-key-for-the-upstream", Type="SecureString", Overwrite=True)
    wiring.provider_secrets()._cache.clear()
    refused = post(
        "/v1/chat/completions", secret, {"model": "local-llama", "messages": [{"role": "user", "content": "hi"}]}
    )
    # THEN the upstream's refusal is a 502 that names the problem, not the key
    assert refused.status_code == 502 and refused.json_body["error"]["code"] == "upstream_access_denied"
    # AND neither key is anywhere a person or a log can read it
    seen = "\n".join(service_logs.lines()) + refused.body.decode()
    seen += json.dumps(billed(record.key_id), default=str)
    seen += json.dumps(as_admin.call("get", "/admin/models/local-llama/audit").json_body)
    seen += json.dumps(as_admin.call("get", "/admin/models/local-llama").json_body)
    assert PROVIDER_KEY not in seen and "sk-wrong-key-for-the-upstream" not in seen


@pytest.mark.parametrize(
    ("parameter", "why"),
    [("/pennyworth/local/providers/missing", "ParameterNotFound"), ("/elsewhere/key", "ProviderKeyPrefix")],
)
def test_a_provider_key_that_cannot_be_read_is_refused_when_the_model_is_added(
    as_admin: Api, ssm: Any, upstream: str, parameter: str, why: str
) -> None:
    body = {"alias": "x", "provider": "openai", "model_id": "m", "base_url": upstream, "api_key_parameter": parameter,
            "prices": PRICES}  # fmt: skip
    response = as_admin.call("post", "/admin/models", body)
    assert response.status_code == 400 and response.json_body["error"]["param"] == "api_key_parameter"
    assert why in response.json_body["error"]["message"]


def test_each_upstream_key_keeps_its_own_client_and_a_rotated_key_gets_a_new_one() -> None:
    """Clients were kept per base URL only: two models at one base URL with different keys (two
    OpenAI projects) replaced each other's client on every alternate call, a new connection and TLS
    handshake each time, and the replaced client's connections were left open."""
    from chalicelib.gateway.providers import OpenAICompatible, Upstream

    values = {"/p/a": "sk-a", "/p/b": "sk-b", "/p/c": "sk-c"}
    provider = OpenAICompatible(secret=lambda name: values[name])

    def client(base_url: str, parameter: str) -> Any:
        return provider.client(Upstream("openai", "openai/m", base_url=base_url, credentials=parameter))

    first = client("https://one.example/v1", "/p/a")
    other = client("https://one.example/v1", "/p/b")
    assert client("https://one.example/v1", "/p/a") is first and client("https://one.example/v1", "/p/b") is other
    assert (first.api_key, other.api_key) == ("sk-a", "sk-b")
    # A key is sent only to its own base URL
    elsewhere = client("https://two.example/v1", "/p/c")
    assert str(elsewhere.base_url).startswith("https://two.example/v1") and elsewhere.api_key == "sk-c"
    assert str(first.base_url).startswith("https://one.example/v1")
    # A rotated key (the SSM value changed) is used from the next call on
    values["/p/a"] = "sk-a-rotated"
    rotated = client("https://one.example/v1", "/p/a")
    assert rotated is not first and rotated.api_key == "sk-a-rotated"
    assert client("https://one.example/v1", "/p/b") is other


def test_embeddings_from_an_openai_compatible_upstream_go_through_its_kept_client(
    client: Client, as_admin: Api, ssm: Any, upstream: str, keys_table: Any
) -> None:
    # GIVEN an embedding model served by an OpenAI-compatible upstream, its key in SSM
    body = {
        "alias": "local-embed",
        "provider": "openai",
        "model_id": "embed-small",
        "base_url": upstream,
        "api_key_parameter": PARAMETER,
        "mode": "embedding",
        "dimensions": [16],
        "prices": {"input": "0.02"},
    }
    added = as_admin.call("post", "/admin/models", body)
    assert added.status_code == 201, added.body
    record, secret = KeyStore(keys_table).create(owner_sub="owner-1", name="embeddings")
    kept = wiring.gateway()._providers["openai"]
    # WHEN it embeds twice (each request with its own deadline, so its own timeout)
    for text in ("first text", "second text"):
        response = client.http.post(
            "/v1/embeddings",
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            body=json.dumps({"model": "local-embed", "input": [text, "another"]}),
        )
        assert response.status_code == 200, response.body
        assert [len(d["embedding"]) for d in response.json_body["data"]] == [16, 16]
    # THEN both went through one SDK client for that base URL and key, and each is billed
    assert len(kept._clients) == 1
    entries = billed(record.key_id)
    assert len(entries) == 2 and all(int(e["input_tokens"]) > 0 for e in entries)
    assert all(e["served_by"] == "openai/embed-small" for e in entries)


def test_a_refused_admission_sends_nothing_to_an_openai_compatible_upstream(
    as_admin: Api, ssm: Any, keys_table: Any
) -> None:
    """A key whose budget cannot cover the call is refused before LiteLLM is called: the
    OpenAI-compatible upstream (which bills per request) sees nothing."""
    from tests.conftest import counted_emulator

    with counted_emulator(openai_key=PROVIDER_KEY) as upstream:
        body = {
            "alias": "counted-llama",
            "provider": "openai",
            "model_id": "llama-3.1-8b",
            "base_url": f"{upstream.url}/openai/v1",
            "api_key_parameter": PARAMETER,
            "prices": PRICES,
        }
        assert as_admin.call("post", "/admin/models", body).status_code == 201
        _, poor = KeyStore(keys_table).create(owner_sub="owner-poor", monthly_budget_usd=Decimal("0.000001"))
        _, rich = KeyStore(keys_table).create(owner_sub="owner-rich", name="rich")
        chat = {"model": "counted-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50}
        # WHEN a key whose budget cannot cover the call asks
        refused = post("/v1/chat/completions", poor, chat)
        # THEN it is refused, and the upstream saw nothing; an admitted call does reach it
        assert refused.status_code == 429 and refused.json_body["error"]["code"] == "insufficient_quota"
        assert upstream.accepted == []
        assert post("/v1/chat/completions", rich, chat).status_code == 200
        assert len(upstream.accepted) == 1
