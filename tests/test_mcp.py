"""``/mcp`` through Chalice's test client: the stateless Streamable HTTP transport, JSON-RPC, and each tool."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator

from chalicelib import wiring
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.mcp import parse as mcp_parse
from chalicelib.protocols.mcp import render as mcp_render
from chalicelib.protocols.mcp import route as mcp_route
from chalicelib.shared.http import HttpRequest
from chalicelib.shared.money import compute_cost, usd
from chalicelib.shared.usage import TokenUsage
from local.bedrock_emulator import count_tokens

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}
_ids = itertools.count(100)


@pytest.fixture
def key(keys_table) -> tuple:
    return KeyStore(keys_table).create(owner_sub="owner-1", name="mcp")


def post(client: Client, plaintext: str | None, payload, headers: dict[str, str] | None = None):
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **(headers or {})}
    if plaintext is not None:
        sent["Authorization"] = f"Bearer {plaintext}"
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return client.http.post("/mcp", headers=sent, body=body)


def rpc(client: Client, plaintext: str, method: str, params: dict | None = None, **headers) -> dict:
    message = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    if params is not None:
        message["params"] = params
    response = post(client, plaintext, message, headers)
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == "application/json"
    body = response.json_body
    assert body["jsonrpc"] == "2.0" and body["id"] == message["id"]
    return body


def call_tool(client: Client, plaintext: str, name: str, arguments: dict | None = None) -> dict:
    body = rpc(client, plaintext, "tools/call", {"name": name, "arguments": arguments or {}})
    assert "result" in body, body
    return body["result"]


def output_schema(name: str) -> dict:
    return next(tool["outputSchema"] for tool in mcp_render.TOOLS if tool["name"] == name)


def ok(result: dict, tool: str) -> dict:
    assert result["isError"] is False, result
    Draft202012Validator(output_schema(tool)).validate(result["structuredContent"])
    assert result["content"][0]["type"] == "text" and result["content"][0]["text"]
    return result["structuredContent"]


def failed(result: dict) -> str:
    assert result["isError"] is True, result
    return result["content"][0]["text"]


# -- transport ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", mcp_parse.PROTOCOL_VERSIONS)
def test_initialize_negotiates_each_supported_version_without_a_session(client: Client, key, version: str) -> None:
    _, plaintext = key
    payload = {**INIT, "params": {**INIT["params"], "protocolVersion": version}}
    response = post(client, plaintext, payload)
    assert response.status_code == 200
    result = response.json_body["result"]
    assert result["protocolVersion"] == version
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "pennyworth"
    assert not any(name.lower() == "mcp-session-id" for name in response.headers)


def test_an_unknown_client_version_gets_the_latest(client: Client, key) -> None:
    _, plaintext = key
    result = rpc(client, plaintext, "initialize", {**INIT["params"], "protocolVersion": "2099-01-01"})["result"]
    assert result["protocolVersion"] == mcp_parse.LATEST_PROTOCOL_VERSION == "2025-11-25"


@pytest.mark.parametrize(
    "accept", [None, "application/json", "text/event-stream", "application/json, text/event-stream", "*/*", "text/html"]
)
def test_any_accept_header_gets_json_never_406(client: Client, key, accept: str | None) -> None:
    _, plaintext = key
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    response = client.http.post("/mcp", headers=headers, body=json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
    assert response.status_code == 200
    assert response.json_body == {"jsonrpc": "2.0", "id": 7, "result": {}}


def test_notifications_and_client_responses_get_202_and_no_body(client: Client, key) -> None:
    _, plaintext = key
    for payload in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
        {"jsonrpc": "2.0", "id": 9, "result": {}},
    ):
        response = post(client, plaintext, payload)
        assert response.status_code == 202 and response.body == b""


@pytest.mark.parametrize("method", ["get", "delete"])
def test_get_and_delete_are_405_at_once(client: Client, method: str) -> None:
    response = getattr(client.http, method)("/mcp", headers={"Accept": "text/event-stream"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize("authorization", [None, "Bearer pw-aaaaaaaaaaaa-" + "A" * 40, "Basic dXNlcjpwYXNz"])
def test_missing_or_invalid_keys_are_401_with_www_authenticate(client: Client, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = client.http.post("/mcp", headers=headers, body=json.dumps(INIT))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json_body["error"]["code"] == -32001


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", mcp_parse.PARSE_ERROR),
        (b"", mcp_parse.INVALID_REQUEST),
        ({"id": 1, "method": "ping"}, mcp_parse.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, mcp_parse.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": 3}, mcp_parse.INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}, mcp_parse.METHOD_NOT_FOUND),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}, mcp_parse.INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "rm_rf"}}, mcp_parse.INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, mcp_parse.INVALID_PARAMS),
    ],
)
def test_protocol_errors_are_json_rpc_errors_with_http_200(client: Client, key, payload, code: int) -> None:
    _, plaintext = key
    response = post(client, plaintext, payload)
    assert response.status_code == 200
    assert response.json_body["error"]["code"] == code
    assert response.json_body["jsonrpc"] == "2.0" and "id" in response.json_body


def test_an_unsupported_protocol_version_header_is_a_400(client: Client, key) -> None:
    _, plaintext = key
    response = post(
        client, plaintext, {"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"MCP-Protocol-Version": "1999-01-01"}
    )
    assert response.status_code == 400
    assert response.json_body["error"]["data"]["supported"] == list(mcp_parse.PROTOCOL_VERSIONS)


@pytest.mark.parametrize("header", [{}, {"MCP-Protocol-Version": "2025-03-26"}])
def test_batches_where_the_version_has_them(client: Client, key, header: dict) -> None:
    _, plaintext = key
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/list"},
        {"jsonrpc": "2.0", "id": "c", "method": "nope"},
        {**INIT, "id": "d"},
    ]
    response = post(client, plaintext, batch, header)
    assert response.status_code == 200
    answers = {answer["id"]: answer for answer in response.json_body}
    assert set(answers) == {"a", "b", "c", "d"}  # nothing for the notification
    assert answers["a"]["result"] == {} and len(answers["b"]["result"]["tools"]) == 5
    assert answers["c"]["error"]["code"] == mcp_parse.METHOD_NOT_FOUND
    assert answers["d"]["error"]["code"] == mcp_parse.INVALID_REQUEST  # initialize may not be batched
    only_notifications = post(client, plaintext, [{"jsonrpc": "2.0", "method": "notifications/initialized"}], header)
    assert only_notifications.status_code == 202
    empty = post(client, plaintext, [], header)
    assert empty.json_body["error"]["code"] == mcp_parse.INVALID_REQUEST


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_batches_are_refused_where_the_version_removed_them(client: Client, key, version: str) -> None:
    _, plaintext = key
    response = post(
        client, plaintext, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], {"MCP-Protocol-Version": version}
    )
    assert response.status_code == 200
    assert (
        response.json_body["error"]["code"] == mcp_parse.INVALID_REQUEST
        and "batch" in response.json_body["error"]["message"]
    )


# -- tools -------------------------------------------------------------------------------------


def test_tools_list_describes_every_tool(client: Client, key) -> None:
    _, plaintext = key
    tools = rpc(client, plaintext, "tools/list")["result"]["tools"]
    assert [tool["name"] for tool in tools] == ["chat", "list_models", "embed", "get_usage", "count_tokens"]
    for tool in tools:
        Draft202012Validator.check_schema(tool["inputSchema"])
        Draft202012Validator.check_schema(tool["outputSchema"])
        assert tool["inputSchema"]["type"] == "object" and tool["description"]


def test_chat_answers_and_is_billed_like_the_openai_route(client: Client, key) -> None:
    record, plaintext = key
    result = ok(call_tool(client, plaintext, "chat", {"prompt": "Hello MCP", "max_tokens": 50}), "chat")
    assert (
        result["text"]
        == 'You said: "Hello MCP"'
        == call_tool(client, plaintext, "chat", {"prompt": "Hello MCP"})["content"][0]["text"]
    )
    assert result["model"] == "nova-micro" and result["finish_reason"] == "stop"
    entries = wiring.ledger().entries_for_key(record.key_id)
    assert len(entries) == 2 and result["request_id"] in {e["request_id"] for e in entries}
    usage = TokenUsage(input_tokens=count_tokens("Hello MCP"), output_tokens=count_tokens('You said: "Hello MCP"'))
    expected = compute_cost(wiring.catalog().resolve("nova-micro").prices, usage)
    assert Decimal(result["cost_usd"]) == expected == entries[0]["cost"]


def test_chat_with_messages_system_and_a_model(client: Client, key) -> None:
    _, plaintext = key
    result = ok(
        call_tool(
            client,
            plaintext,
            "chat",
            {
                "model": "claude-haiku-4-5",
                "system": "Be terse.",
                "messages": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "second"},
                ],
                "temperature": 0.2,
            },
        ),
        "chat",
    )
    assert result["model"] == "claude-haiku-4-5" and result["text"] == 'You said: "second"'


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({}, "prompt"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "not both"),
        ({"prompt": "a", "temperature": 2}, "temperature"),
        ({"prompt": "a", "colour": "red"}, "colour"),
        ({"prompt": "a", "model": "gpt-4o"}, "404"),
        ({"prompt": "a", "model": "titan-embed-text-v2"}, "404"),
        ({"prompt": "slow down #emulator:throttle"}, "429"),
        ({"prompt": "boom #emulator:error"}, "502"),
    ],
)
def test_chat_failures_are_is_error_results(client: Client, key, arguments: dict, fragment: str) -> None:
    record, plaintext = key
    assert fragment in failed(call_tool(client, plaintext, "chat", arguments))
    assert wiring.ledger().entries_for_key(record.key_id) == []


def test_a_spent_budget_is_an_is_error_result(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("0.0000001"))
    text = failed(call_tool(client, plaintext, "chat", {"prompt": "expensive"}))
    assert "429" in text and "budget" in text.lower()


def test_a_slow_model_hits_the_deadline_as_an_is_error_result(client: Client, key, monkeypatch) -> None:
    # A chat tool call gets CHAT_DEADLINE_SECONDS, less the margin the core keeps to bill.
    monkeypatch.setattr(mcp_route, "CHAT_DEADLINE_SECONDS", 5.0)
    _, plaintext = key
    assert "504" in failed(call_tool(client, plaintext, "chat", {"prompt": "slow #emulator:sleep=3"}))


def test_a_chat_answer_outliving_its_deadline_is_billed_for_what_bedrock_generated(
    client: Client, key, monkeypatch
) -> None:
    # GIVEN a chat tool call with 6 s (3 of them kept to bill) and an answer that takes ~30 s
    monkeypatch.setattr(mcp_route, "CHAT_DEADLINE_SECONDS", 6.0)
    record, plaintext = key
    prompt = "long #emulator:tokens=30 #emulator:chunk_delay=1"
    # WHEN the gateway gives up THEN what Bedrock generated until then is billed, and the tool says so
    text = failed(call_tool(client, plaintext, "chat", {"prompt": prompt}))
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert "504" in text and entry["status"] == "partial" and 0 < entry["output_tokens"] < 30
    assert f"${usd(entry['cost'])}" in text and entry["request_id"] in text


def test_no_model_call_starts_once_the_request_budget_is_spent(aws, emulator_url, monkeypatch, key) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    _, plaintext = key
    now = iter([0.0, mcp_route.REQUEST_BUDGET_SECONDS - 1.0])  # the POST starts, then the tool call comes late
    server = mcp_route.McpServer(
        keys=wiring.key_store(), models=wiring.model_service(), max_body_bytes=10_000, clock=lambda: next(now)
    )
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "chat", "arguments": {"prompt": "x"}},
    }
    result = server.handle(HttpRequest("POST", {"Authorization": f"Bearer {plaintext}"}, json.dumps(message))).body[
        "result"
    ]
    assert "own request" in failed(result)


def test_list_models_follows_the_allowlist_with_prices(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["nova-micro", "titan-embed-text-v2"])
    models = ok(call_tool(client, plaintext, "list_models"), "list_models")["models"]
    assert [m["id"] for m in models] == ["nova-micro", "titan-embed-text-v2"]
    assert models[0]["prices_usd_per_million_tokens"]["input"] == "0.035"
    assert models[1]["dimensions"] == [256, 512, 1024] and models[1]["mode"] == "embedding"
    chat_only = ok(call_tool(client, plaintext, "list_models", {"mode": "chat"}), "list_models")["models"]
    assert [m["id"] for m in chat_only] == ["nova-micro"]
    assert "403" in failed(call_tool(client, plaintext, "chat", {"prompt": "x", "model": "claude-haiku-4-5"}))


def test_embed_returns_vectors_and_is_billed(client: Client, key) -> None:
    record, plaintext = key
    result = ok(
        call_tool(
            client, plaintext, "embed", {"input": ["alpha beta gamma", "delta epsilon zeta eta"], "dimensions": 256}
        ),
        "embed",
    )
    assert result["model"] == "titan-embed-text-v2" and result["dimensions"] == 256
    assert len(result["embeddings"]) == 2 and {len(v) for v in result["embeddings"]} == {256}
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["operation"] == "embedding" and entry["input_tokens"] == count_tokens(
        "alpha beta gamma delta epsilon zeta eta"
    )
    assert "unsupported_dimensions" in failed(call_tool(client, plaintext, "embed", {"input": "x", "dimensions": 3}))
    assert "input" in failed(call_tool(client, plaintext, "embed", {"input": []}))


def test_get_usage_reports_this_keys_spend(client: Client, keys_table, usage_table, drain) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("5"))
    before = ok(call_tool(client, plaintext, "get_usage"), "get_usage")
    assert before["usage"]["requests"] == 0 and before["budget"]["remaining_usd"] == "5"
    cost = Decimal(
        ok(call_tool(client, plaintext, "chat", {"prompt": "count me", "max_tokens": 20}), "chat")["cost_usd"]
    )
    drain(usage_table)  # the aggregator's work (within a second or so on AWS)
    after = call_tool(client, plaintext, "get_usage")
    status = ok(after, "get_usage")
    assert status["usage"]["requests"] == 1 and Decimal(status["budget"]["spent_usd"]) == cost
    assert Decimal(status["budget"]["remaining_usd"]) == Decimal(5) - cost
    assert "$5" in after["content"][0]["text"]


def test_count_tokens_counts_against_the_keys_request_limit(client: Client, keys_table) -> None:
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", rpm_limit=2)
    results = [call_tool(client, plaintext, "count_tokens", {"text": "hello"}) for _ in range(3)]
    assert [r["isError"] for r in results] == [False, False, True]
    assert "429" in failed(results[2]) and "Retry after" in failed(results[2])
    assert wiring.ledger().entries_for_key(record.key_id) == []


def test_count_tokens_estimates_cost_from_catalog_prices(client: Client, key) -> None:
    record, plaintext = key
    result = ok(
        call_tool(
            client,
            plaintext,
            "count_tokens",
            {"model": "claude-haiku-4-5", "text": "How much is this?", "max_output_tokens": 100},
        ),
        "count_tokens",
    )
    prices = wiring.catalog().resolve("claude-haiku-4-5").prices
    tokens = result["input_tokens"]
    assert 3 <= tokens <= 10 and result["estimate"] is True
    assert Decimal(result["cost_usd"]["input"]) == prices.input * tokens
    assert Decimal(result["cost_usd"]["max_total"]) == prices.input * tokens + prices.output * 100
    messages = ok(
        call_tool(client, plaintext, "count_tokens", {"messages": [{"role": "user", "content": "How much is this?"}]}),
        "count_tokens",
    )
    assert messages["model"] == "nova-micro" and messages["input_tokens"] >= tokens
    assert "not both" in failed(call_tool(client, plaintext, "count_tokens", {}))
    assert wiring.ledger().entries_for_key(record.key_id) == []  # nothing called, nothing billed


# -- argument validation (no jsonschema at run time) ----------------------------------------


def _keywords(schema: dict) -> set[str]:
    found = set(schema)
    for key, value in schema.items():
        if key == "properties":
            for each in value.values():
                found |= _keywords(each)
        elif key == "items":
            found |= _keywords(value)
        elif key == "oneOf":
            for each in value:
                found |= _keywords(each)
    return found


def test_every_keyword_the_tools_input_schemas_use_is_checked() -> None:
    # Adding a keyword (a "pattern", a "maxLength") to a tool's schema must come with its check.
    for name, schema in mcp_parse.INPUT_SCHEMAS.items():
        assert _keywords(schema) <= mcp_parse.SCHEMA_KEYWORDS, name


HOSTILE_ARGUMENTS = [
    {},
    {"prompt": "hi"},
    {"prompt": ""},
    {"prompt": 3},
    {"prompt": None},
    {"prompt": "hi", "max_tokens": 0},
    {"prompt": "hi", "max_tokens": 1},
    {"prompt": "hi", "max_tokens": 1.0},
    {"prompt": "hi", "max_tokens": 1.5},
    {"prompt": "hi", "max_tokens": True},
    {"prompt": "hi", "temperature": 1},
    {"prompt": "hi", "temperature": 1.01},
    {"prompt": "hi", "temperature": -0.0},
    {"prompt": "hi", "temperature": "0.5"},
    {"prompt": "hi", "colour": "red"},
    {"messages": []},
    {"messages": [{"role": "user", "content": "x"}]},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user"}]},
    {"messages": [{"role": "user", "content": ["x"]}]},
    {"messages": [{"role": "user", "content": "x", "name": "n"}]},
    {"messages": ["user"]},
    {"messages": {"role": "user"}},
    {"mode": "chat"},
    {"mode": "embeddings"},
    {"mode": None},
    {"input": "x"},
    {"input": ""},
    {"input": []},
    {"input": ["x", ""]},
    {"input": ["x", "y"]},
    {"input": [1]},
    {"input": 1},
    {"input": "x", "dimensions": 256},
    {"input": "x", "dimensions": "256"},
    {"text": "x", "max_output_tokens": 0},
    {"text": "x", "max_output_tokens": -1},
    {"text": 1},
    {"model": 1},
    {"model": "nova-micro", "prompt": "x", "system": "be brief"},
]


@pytest.mark.parametrize("tool", sorted(mcp_parse.INPUT_SCHEMAS))
def test_argument_checks_agree_with_json_schema_itself(tool: str) -> None:
    # jsonschema is the reference; the gateway no longer imports it.
    reference = Draft202012Validator(mcp_parse.INPUT_SCHEMAS[tool])
    for arguments in HOSTILE_ARGUMENTS:
        ours = next(mcp_parse.schema_problems(mcp_parse.INPUT_SCHEMAS[tool], arguments, ()), None)
        assert (ours is None) == reference.is_valid(arguments), (tool, arguments, ours)


def test_a_guardrail_intervention_is_a_tool_error_naming_its_charge(client: Client, keys_table) -> None:
    # GIVEN a key that carries the emulator's demo guardrail
    _, plaintext = KeyStore(keys_table).create(
        owner_sub="owner-1", name="guarded", guardrail={"id": "pennyworthdemo", "version": "1"}
    )
    # WHEN the chat tool's prompt is blocked by it THEN the result is a tool error, billed, saying so
    text = failed(
        call_tool(client, plaintext, "chat", {"prompt": "Hi #emulator:guardrail=input", "model": "nova-micro"})
    )
    assert "guardrail intervened" in text and "billed $" in text and "request id" in text
    # AND an answer it lets through names who served it and what the guardrail cost
    answer = ok(call_tool(client, plaintext, "chat", {"prompt": "Hi", "model": "nova-micro"}), "chat")
    assert answer["served_model"] == "nova-micro" and answer["served_by"].endswith("@us-east-1")
    assert answer["guardrail_text_units"] > 0 and Decimal(answer["guardrail_cost_usd"]) > 0
