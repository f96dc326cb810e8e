"""Hostile JSON on every surface: deep nesting, lone surrogates, huge numbers. Each is a 400 (or a
JSON-RPC error on /mcp), never a 500: the one parser (chalicelib/shared/body.py) refuses them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import errors
from chalicelib.keys.store import KeyStore, encode_cursor
from chalicelib.shared import body
from tests.admin_fixtures import Api

DEEP = "[" * 2000 + "]" * 2000  # 4 KB: far under any size limit
SURROGATE_ESCAPED = '"\\ud800"'  # the JSON text of a lone high surrogate
HUGE_INT = "9" * 5000


def nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "[]" + "}" * (depth - 1)


# -- the parser ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"x": ' + DEEP + "}", "nested"),
        ("{" + '"a": {' * 200 + "}" * 201, "nested"),
        ('{"x": ' + SURROGATE_ESCAPED + "}", "surrogate"),
        ('{"x": ["ok", {"y": "\\udfff tail"}]}', "surrogate"),
        ('{"\\ud800": 1}', "surrogate"),
        ('{"x": "\xed\xa0\x80"}'.encode("latin-1"), "UTF-8"),  # a surrogate encoded as UTF-8 bytes
        ('{"id": ' + HUGE_INT + "}", "digits"),
        ('{"id": -' + "1" * 40 + "}", "digits"),
        ('{"x": NaN}', "not a valid JSON number"),
        ('{"x": -Infinity}', "not a valid JSON number"),
        ('{"x": 1e400}', "out of range"),
        ('{"x": 1e999999999}', "out of range"),  # a valid Decimal, a gigabyte of digits once printed
    ],
)
def test_hostile_bodies_are_invalid_requests(raw: Any, fragment: str, exact: bool) -> None:
    with pytest.raises(errors.InvalidRequest, match=fragment):
        body.parse_json_body(raw, max_bytes=1_000_000, exact_numbers=exact)


def test_what_real_requests_carry_still_parses() -> None:
    raw = json.dumps(
        {
            "s": "héllo 👋 \u200d",  # non-ASCII, astral and joiner characters are fine
            "n": [0, -1, 10**30, 1.5, 1e300],
            "deep": json.loads(nested(body.MAX_DEPTH - 1)),
        }
    )
    parsed = body.parse_json_body(raw, max_bytes=1_000_000)
    assert parsed["s"] == "héllo 👋 \u200d" and parsed["n"][2] == 10**30


def test_the_depth_limit_is_exact() -> None:
    assert body.parse_json(nested(body.MAX_DEPTH))
    with pytest.raises(errors.InvalidRequest, match="nested"):
        body.parse_json(nested(body.MAX_DEPTH + 1))


def test_a_bare_value_can_be_parsed_for_protocols_that_allow_it() -> None:
    assert body.parse_json("[1, 2]") == [1, 2]


def test_a_deep_cursor_is_a_400(keys_table: Any) -> None:
    cursor = encode_cursor({"key_id": json.loads(nested(body.MAX_DEPTH + 5))})  # type: ignore[dict-item]
    store = KeyStore(keys_table)
    with pytest.raises(errors.InvalidRequest, match="cursor"):
        store.list_keys(cursor=cursor)
    import base64

    deep = base64.urlsafe_b64encode(DEEP.encode()).decode()
    with pytest.raises(errors.InvalidRequest, match="cursor"):
        store.list_keys(cursor=deep)


def test_every_cursor_and_token_the_gateway_made_refuses_a_deep_one_as_a_400() -> None:
    import base64

    from chalicelib.protocols.openai_responses.items import TOKEN_PREFIX, _thinking_block
    from chalicelib.shared.pages import decode_position

    deep = base64.urlsafe_b64encode(DEEP.encode()).decode()
    # The request log's and usage views' cursors
    with pytest.raises(errors.InvalidRequest, match="cursor"):
        decode_position(deep, lambda _position: True)
    # A Responses reasoning item's encrypted_content (the caller sends it back)
    with pytest.raises(errors.InvalidRequest, match="encrypted_content"):
        _thinking_block(TOKEN_PREFIX + deep, "claude-haiku-4-5", "input[0]")


# -- every route --------------------------------------------------------------------------------


@pytest.fixture
def key(keys_table: Any) -> tuple:
    return KeyStore(keys_table).create(owner_sub="owner-1", name="hostile")


def _key_headers(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}


HOSTILE_VALUES = {
    "deep": DEEP,
    "surrogate": SURROGATE_ESCAPED,
    "huge_int": HUGE_INT,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_VALUES))
@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/chat/completions", '{"model": "nova-micro", "messages": [{"role": "user", "content": %s}]}'),
        ("/v1/embeddings", '{"model": "titan-embed-text-v2", "input": %s}'),
    ],
)
def test_v1_routes_answer_400_envelopes(
    client: Client, stream_client: Any, key: tuple, path: str, template: str, kind: str
) -> None:
    from chalicelib.edge.routes import STREAM_PATHS

    _, plaintext = key
    body = template % HOSTILE_VALUES[kind]
    if ("POST", path) in STREAM_PATHS:  # served by the streaming function, not the Chalice app
        response = stream_client.post(path, _key_headers(plaintext), body)
    else:
        response = client.http.post(path, headers=_key_headers(plaintext), body=body)
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("kind", sorted(HOSTILE_VALUES))
@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("post", "/admin/keys", '{"name": %s}'),
        ("patch", "/admin/keys/{key_id}", '{"metadata": {"team": %s}}'),
        ("post", "/admin/keys/{key_id}/revoke", '{"reason": %s}'),
        ("post", "/admin/keys/import", '{"keys": [{"id": "a", "name": %s}]}'),
        ("put", "/admin/owners/me/budget", '{"monthly_budget_usd": %s}'),
        ("post", "/admin/ledger/reconcile", '{"lines": [%s]}'),
    ],
)
def test_admin_routes_answer_400_envelopes(as_admin: Api, method: str, path: str, template: str, kind: str) -> None:
    created = as_admin.call("post", "/admin/keys", {"name": "target"}).json_body
    response = as_admin.call(method, path.format(key_id=created["key_id"]), template % HOSTILE_VALUES[kind])
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["type"] == "invalid_request_error"
    # Nothing was changed by the refused request.
    after = as_admin.call("get", f"/admin/keys/{created['key_id']}").json_body
    assert after["status"] == "active" and after["name"] == "target" and after["metadata"] == {}


def _mcp(client: Client, plaintext: str, raw: str) -> Any:
    headers = {**_key_headers(plaintext), "Accept": "application/json, text/event-stream"}
    return client.http.post("/mcp", headers=headers, body=raw)


CHAT_CALL = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "chat", "arguments": VALUE}}'
PING = '{"jsonrpc": "2.0", "id": VALUE, "method": "ping"}'


@pytest.mark.parametrize(
    "raw",
    [
        DEEP,
        CHAT_CALL.replace("VALUE", DEEP),
        PING.replace("VALUE", HUGE_INT),
        CHAT_CALL.replace("VALUE", '{"prompt": ' + SURROGATE_ESCAPED + "}"),
        PING.replace("VALUE", SURROGATE_ESCAPED),
    ],
)
def test_mcp_answers_json_rpc_errors(client: Client, key: tuple, raw: str) -> None:
    _, plaintext = key
    response = _mcp(client, plaintext, raw)
    assert response.status_code == 200, response.body
    answer = response.json_body
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None
    assert answer["error"]["code"] in (-32700, -32600)


# -- the same class elsewhere: JSON in tokens, log lines and files --------------------------------


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_a_deeply_nested_token_header_is_a_401_not_a_500(as_admin: Api) -> None:
    token = f"{_b64(DEEP)}.{_b64('{}')}.sig"
    response = as_admin.client.http.get("/admin/keys", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.body
    assert response.json_body["error"]["code"] == "invalid_token"


def test_a_deeply_nested_reconcile_line_is_not_a_500(as_admin: Api) -> None:
    response = as_admin.call("post", "/admin/ledger/reconcile", {"lines": [DEEP, '{"event": ' + DEEP + "}"]})
    assert response.status_code < 500, response.body


def test_chalice_local_survives_a_deeply_nested_token() -> None:
    from chalice.local import LocalGatewayAuthorizer

    from local.chalice_local import tolerate_non_jwt_authorization

    tolerate_non_jwt_authorization()
    authorizer = LocalGatewayAuthorizer(app_object=None)  # type: ignore[arg-type]
    assert authorizer._decode_jwt_payload(f"{_b64('{}')}.{_b64(DEEP)}.sig") == {}


def test_cli_import_of_a_deeply_nested_file_is_a_clean_error(tmp_path: Any) -> None:
    from cli.errors import CliError
    from cli.keys import read_rows

    path = tmp_path / "keys.json"
    path.write_text(DEEP)
    with pytest.raises(CliError, match="JSON"):
        read_rows(path, "json")


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ('{"max_tokens": 1e400}', "max_tokens"),
        ('{"max_tokens": ' + "1" * 41 + "}", "max_tokens"),
        ('{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages"),
        ('{"tools": ' + "[" * 100 + "]" * 100 + "}", "tools"),
        ('{"\\ud800": 1}', None),
    ],
)
def test_a_refusal_names_the_top_level_field(raw: str, param: str | None) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        body.parse_json(raw)
    assert refused.value.param == param


# -- a value of the wrong JSON type anywhere in a model request ---------------------------------

IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOL_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}
#: One body per parser that uses every field it reads (each alone is a valid request).
RICH_BODIES: dict[str, dict[str, Any]] = {
    "messages": {
        "model": "m",
        "max_tokens": 4000,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "find", "input": {"q": "x"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": False,
                        "content": [
                            {"type": "text", "text": "found"},
                            {"type": "tool_reference", "tool_name": "later"},
                        ],
                    }
                ],
            },
            {"role": "system", "content": "now", "output_config": {"effort": "low"}},
        ],
        "tools": [
            {"name": "find", "description": "d", "input_schema": TOOL_SCHEMA, "cache_control": {"type": "ephemeral"}},
            {"name": "later", "input_schema": TOOL_SCHEMA, "defer_loading": True},
        ],
        "tool_choice": {"type": "tool", "name": "find", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2000, "display": "summarized"},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": TOOL_SCHEMA}},
        "metadata": {"user_id": "u"},
        "stop_sequences": ["STOP"],
        "top_k": 5,
        "service_tier": "auto",
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "cache_control": {"type": "ephemeral"},
    },
    "responses": {
        "model": "m",
        "instructions": "be brief",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "hi"},
                    {"type": "input_image", "image_url": (f"data:image/png;base64,{IMAGE}"), "detail": "auto"},
                ],
            },
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": None},
            {"type": "function_call", "call_id": "c1", "name": "find", "arguments": '{"q": "x"}'},
            {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "found"}]},
            {"type": "custom_tool_call", "call_id": "c2", "name": "patch", "input": "x"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
        ],
        "tools": [
            {"type": "function", "name": "find", "description": "d", "parameters": TOOL_SCHEMA, "strict": False},
            {"type": "custom", "name": "patch", "description": "d", "format": {"type": "text"}},
            {
                "type": "namespace",
                "name": "ns",
                "description": "d",
                "tools": [{"type": "function", "name": "inner", "parameters": TOOL_SCHEMA}],
            },
        ],
        "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "find"}]},
        "parallel_tool_calls": True,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "out", "schema": TOOL_SCHEMA}, "verbosity": "low"},
        "include": ["reasoning.encrypted_content"],
        "metadata": {"k": "v"},
        "max_output_tokens": 100,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "truncation": "disabled",
    },
    "chat": {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE}", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "find", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "found"},
        ],
        "tools": [{"type": "function", "function": {"name": "find", "description": "d", "parameters": TOOL_SCHEMA}}],
        "tool_choice": {"type": "function", "function": {"name": "find"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": TOOL_SCHEMA}},
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["STOP"],
        "metadata": {"k": "v"},
        "max_completion_tokens": 100,
        "user": "u",
    },
    "embeddings": {"model": "m", "input": ["a", "b"], "encoding_format": "float", "dimensions": 256, "user": "u"},
}
WRONG_TYPES = [[], {}, [1], None, 1.5, True, "x"]


def _parsers() -> dict[str, Any]:
    from chalicelib.protocols.anthropic.parse import parse_messages_request
    from chalicelib.protocols.openai.parse import parse_embedding_request
    from chalicelib.protocols.openai_chat.parse import parse_chat_request
    from chalicelib.protocols.openai_responses.parse import parse_responses_request

    return {
        "messages": parse_messages_request,
        "responses": parse_responses_request,
        "chat": parse_chat_request,
        "embeddings": parse_embedding_request,
    }


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value inside ``value`` (containers too: each may be replaced whole)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found = [path] if path else []
    for key, child in children:
        found += _leaves(child, (*path, key))
    return found


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(value))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copy


@pytest.mark.parametrize("surface", sorted(RICH_BODIES))
def test_a_wrong_type_anywhere_in_a_model_request_is_a_400_not_a_crash(surface: str) -> None:
    # GIVEN a valid request that uses every field its parser reads
    parse, rich = _parsers()[surface], RICH_BODIES[surface]
    parse(rich)
    crashes = []
    # WHEN any value in it is replaced by one of another JSON type (a list or an object where a
    # name is looked up in a table: unhashable, the TypeError of `value in {...}`)
    for path in _leaves(rich):
        for wrong in WRONG_TYPES:
            try:
                parse(_replaced(rich, path, wrong))
            except errors.InvalidRequest:
                pass
            except Exception as exc:  # noqa: BLE001 - any other exception is the defect under test
                crashes.append(f"{'.'.join(map(str, path))} = {wrong!r}: {type(exc).__name__}: {exc}")
    # THEN the parser accepts it or refuses it with a 400, and never raises anything else
    assert crashes == []


# -- true/false where a number goes, and numbers where a boolean goes (bool == int in Python) ----

CHAT_BASE = {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}
RESPONSES_BASE = {"model": "nova-micro", "input": "hi"}
MESSAGES_BASE = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _protocol_parsers() -> dict[str, Any]:
    from chalicelib.protocols.anthropic.parse import parse_messages_request
    from chalicelib.protocols.openai.parse import parse_embedding_request
    from chalicelib.protocols.openai_chat.parse import parse_chat_request
    from chalicelib.protocols.openai_responses.parse import parse_responses_request

    return {
        "chat": (parse_chat_request, CHAT_BASE),
        "responses": (parse_responses_request, RESPONSES_BASE),
        "messages": (lambda body: parse_messages_request(body, betas=(), version="2023-06-01"), MESSAGES_BASE),
        "embeddings": (parse_embedding_request, {"model": "titan-embed-text-v2", "input": "hi"}),
    }


#: Every numeric parameter each parser reads (a number, including the harmless defaults 0 and 1).
NUMBERS = {
    "chat": [
        "n", "max_tokens", "max_completion_tokens", "temperature", "top_p", "presence_penalty",
        "frequency_penalty", "seed", "top_logprobs",
    ],
    "responses": ["max_output_tokens", "temperature", "top_p", "top_logprobs", "max_tool_calls"],
    "messages": ["max_tokens", "temperature", "top_p", "top_k"],
    "embeddings": ["dimensions"],
}  # fmt: skip
#: Every boolean parameter each parser reads.
BOOLEANS = {
    "chat": ["stream", "logprobs", "parallel_tool_calls", "store"],
    "responses": ["stream", "background", "parallel_tool_calls", "store"],
    "messages": ["stream"],
    "embeddings": [],
}


@pytest.mark.parametrize(
    ("protocol", "name", "value"),
    [(p, n, v) for p, names in NUMBERS.items() for n in names for v in (True, False)]
    + [(p, n, v) for p, names in BOOLEANS.items() for n in names for v in (0, 1)],
)
def test_a_boolean_is_no_number_and_a_number_no_boolean(protocol: str, name: str, value: Any) -> None:
    parse, base = _protocol_parsers()[protocol]
    with pytest.raises(errors.InvalidRequest) as caught:
        parse({**base, name: value})
    assert caught.value.param == name, caught.value.message


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/keys", {"name": "n", "rpm_limit": True}, "rpm_limit"),
        ("/admin/keys", {"name": "n", "tpm_limit": False}, "tpm_limit"),
        ("/admin/keys", {"name": "n", "monthly_budget_usd": True}, "monthly_budget_usd"),
        ("/admin/keys/{key_id}/rotate", {"grace_seconds": True}, "grace_seconds"),
        ("/admin/reports/daily", {"force": 1}, "force"),
    ],
)
def test_admin_bodies_refuse_booleans_as_numbers(as_admin: Api, path: str, body: dict, param: str) -> None:
    created = as_admin.call("post", "/admin/keys", {"name": "target"}).json_body
    response = as_admin.call("post", path.format(key_id=created["key_id"]), body)
    assert response.status_code == 400, response.json_body
    assert response.json_body["error"]["param"] == param


def test_an_owner_budget_refuses_a_boolean(as_admin: Api) -> None:
    response = as_admin.call("put", "/admin/owners/me/budget", {"monthly_budget_usd": True})
    assert response.status_code == 400 and response.json_body["error"]["param"] == "monthly_budget_usd"


@pytest.mark.parametrize(
    ("tool", "arguments", "param"),
    [
        ("chat", {"prompt": "x", "max_tokens": True}, "max_tokens"),
        ("chat", {"prompt": "x", "temperature": False}, "temperature"),
        ("embed", {"input": "x", "dimensions": True}, "dimensions"),
        ("count_tokens", {"text": "x", "max_output_tokens": True}, "max_output_tokens"),
    ],
)
def test_mcp_tool_arguments_refuse_booleans_as_numbers(tool: str, arguments: dict, param: str) -> None:
    from chalicelib.protocols.mcp.parse import check_arguments

    with pytest.raises(errors.InvalidRequest) as caught:
        check_arguments(tool, arguments)
    assert caught.value.param == param
