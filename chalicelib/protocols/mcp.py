"""The ``/mcp`` endpoint: MCP over Streamable HTTP, in its stateless form (one POST, one JSON answer).

Lambda behind API Gateway cannot hold a stream open or remember a session, so:

* every POST is answered with one ``application/json`` body: a JSON-RPC response,
  or an array of them for a batch; a POST holding only notifications or
  responses gets ``202 Accepted`` and no body;
* ``GET`` (the server-to-client SSE stream) and ``DELETE`` (ending a session)
  get ``405`` at once; no ``Mcp-Session-Id`` is issued or required;
* the ``Accept`` header is not checked (clients send many variants; none gets a 406);
* protocol versions 2024-11-05 through 2025-11-25 are negotiated in ``initialize``;
  JSON-RPC batches are accepted where the version has them (2025-03-26, and
  requests without an ``MCP-Protocol-Version`` header, which the spec says to
  treat as 2025-03-26);
* JSON-RPC errors travel with HTTP 200 (older SDK clients hang on a 4xx);
  only a missing/invalid key (401 + ``WWW-Authenticate: Bearer``), a wrong
  method (405) and an unsupported ``MCP-Protocol-Version`` header (400, as the
  spec demands) are HTTP errors.

Tool failures (bad arguments, throttling, an exhausted budget, …) are tool
results with ``isError: true``, so the model calling the tool can read them.
Billed tools go through ``ModelService.converse``/``embed``: the same
admission, Bedrock call and ledger as ``/v1``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import TokenUsage, compute_cost
from chalicelib.catalog.catalog import ModelEntry
from chalicelib.core.body import parse_json
from chalicelib.core.events import Completion
from chalicelib.core.http import HttpResult
from chalicelib.core.service import ModelService
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.observability import logger
from chalicelib.protocols.openai_validation import parse_chat_request, parse_embedding_request

#: Oldest to newest; ``initialize`` answers with the client's version when listed, else the newest.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
#: JSON-RPC batching was added in 2025-03-26 and removed in 2025-06-18.
_BATCHLESS_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})
SERVER_INFO = {"name": "pennyworth", "title": "pennyworth (Amazon Bedrock gateway)", "version": "0.1.0"}

#: The whole POST must finish inside API Gateway's 29 s; a chat tool call gets at most
#: ``CHAT_DEADLINE_SECONDS`` of it, and none once less than ``_MIN_CALL_SECONDS`` is left.
REQUEST_BUDGET_SECONDS = 24.0
CHAT_DEADLINE_SECONDS = 20.0
_MIN_CALL_SECONDS = 2.0

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
_UNAUTHORIZED = -32001

_JSON = {"Content-Type": "application/json"}


class ProtocolError(Exception):
    """A JSON-RPC error to answer with (kept inside this module: it is not a caller-facing AppError)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass
class _Call:
    """What one POST carries across its messages: the caller and the time left."""

    key: KeyRecord
    deadline: float
    version: str | None


class McpServer:
    """Answers ``/mcp`` POSTs for authenticated keys; framework-neutral like ``OpenAIService``."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        service: ModelService,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._service = service
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._tools: dict[str, Callable[[_Call, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
            "chat": self._chat,
            "list_models": self._list_models,
            "embed": self._embed,
            "get_usage": self._get_usage,
            "count_tokens": self._count_tokens,
        }

    def handle(self, method: str, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """Answer one HTTP request to ``/mcp``."""
        if method.upper() != "POST":
            return HttpResult(
                _error_response(
                    None,
                    ProtocolError(
                        INVALID_REQUEST,
                        f"Method Not Allowed: this stateless MCP server has no SSE stream or session ({method} /mcp); "
                        "POST JSON-RPC messages instead.",
                    ),
                ),
                status=405,
                headers={**_JSON, "Allow": "POST"},
            )
        try:
            key = self._keys.authenticate(headers)
        except errors.AuthenticationFailed as exc:
            body = _error_response(None, ProtocolError(_UNAUTHORIZED, exc.message))
            return HttpResult(body, status=401, headers={**_JSON, **exc.headers})
        version = _header(headers, "mcp-protocol-version")
        if version is not None and version not in PROTOCOL_VERSIONS:
            error = ProtocolError(
                INVALID_REQUEST,
                f"Unsupported MCP-Protocol-Version: {version}. Supported: {', '.join(PROTOCOL_VERSIONS)}.",
                {"supported": list(PROTOCOL_VERSIONS), "requested": version},
            )
            return HttpResult(_error_response(None, error), status=400, headers=_JSON)
        call = _Call(key=key, deadline=self._clock() + REQUEST_BUDGET_SECONDS, version=version)
        try:
            message = _parse_body(raw_body, self._max_body_bytes)
        except ProtocolError as exc:
            return HttpResult(_error_response(None, exc), headers=_JSON)
        if isinstance(message, list):
            answer: Any = self._batch(call, message)
        else:
            answer = self._message(call, message, in_batch=False)
        if answer is None or answer == []:
            return HttpResult("", status=202)
        return HttpResult(answer, headers=_JSON)

    def _batch(self, call: _Call, messages: list[Any]) -> Any:
        if not messages:
            return _error_response(None, ProtocolError(INVALID_REQUEST, "An empty JSON-RPC batch is not a request."))
        if call.version in _BATCHLESS_VERSIONS:
            return _error_response(
                None,
                ProtocolError(
                    INVALID_REQUEST,
                    f"JSON-RPC batches are not part of MCP protocol version {call.version}; send one message per POST.",
                ),
            )
        answers = [self._message(call, message, in_batch=True) for message in messages]
        return [answer for answer in answers if answer is not None]

    def _message(self, call: _Call, message: Any, *, in_batch: bool) -> dict[str, Any] | None:
        """One JSON-RPC message → its response, or None for notifications and client responses."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error_response(
                None, ProtocolError(INVALID_REQUEST, 'A JSON-RPC 2.0 message needs "jsonrpc": "2.0".')
            )
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return None  # a client's answer to a server request; this server sends none
        if "id" not in message:
            return None  # a notification (notifications/initialized, cancelled, …): nothing to answer
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            return _error_response(None, ProtocolError(INVALID_REQUEST, "A request id must be a string or an integer."))
        if not isinstance(method, str):
            return _error_response(request_id, ProtocolError(INVALID_REQUEST, "A request needs a string 'method'."))
        params = message.get("params", {})
        started = time.perf_counter()
        try:
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise ProtocolError(INVALID_PARAMS, "'params' must be an object.")
            if method == "initialize" and in_batch:
                raise ProtocolError(INVALID_REQUEST, "initialize must not be part of a JSON-RPC batch.")
            result = self._dispatch(call, method, params)
        except ProtocolError as exc:
            return _error_response(request_id, exc)
        except Exception:
            logger.exception("mcp request failed", extra={"method": method, "key_id": call.key.key_id})
            return _error_response(request_id, ProtocolError(INTERNAL_ERROR, "The gateway hit an internal error."))
        logger.info(
            "mcp request",
            extra={
                "method": method,
                "tool": params.get("name") if method == "tools/call" else None,
                "is_error": result.get("isError"),
                "key_id": call.key.key_id,
                "latency_ms": int((time.perf_counter() - started) * 1000),
            },
        )
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    def _dispatch(self, call: _Call, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            return self._initialize(params)
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS}
        if method == "tools/call":
            return self._call_tool(call, params)
        raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}. This server offers tools only.")

    @staticmethod
    def _initialize(params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise ProtocolError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string).")
        return {
            "protocolVersion": requested if requested in PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": (
                "pennyworth runs Amazon Bedrock models for you, billed to your API key. "
                "Call list_models first to see what this key may use and what it costs; "
                "count_tokens estimates a prompt's cost before you chat; get_usage shows your spend."
            ),
        }

    def _call_tool(self, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name!r}. Tools: {', '.join(self._tools)}.")
        arguments = params.get("arguments")
        arguments = {} if arguments is None else arguments
        try:
            _check_arguments(name, arguments)
            text, structured = tool(call, arguments)
        except errors.AppError as exc:
            return _tool_error(exc)
        return {"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": False}

    # -- tools -----------------------------------------------------------------------------

    def _time_left(self, call: _Call) -> float:
        left = call.deadline - self._clock()
        if left < _MIN_CALL_SECONDS:
            raise errors.UpstreamTimeout(
                "Not enough time is left in this HTTP request for another model call; send it in its own request.",
                code="mcp_request_budget_spent",
            )
        return left

    def _chat(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        model = args.get("model") or self._default_model(call.key, "chat")
        messages: list[dict[str, Any]] = []
        if args.get("system"):
            messages.append({"role": "system", "content": args["system"]})
        if ("prompt" in args) == ("messages" in args):
            raise errors.InvalidRequest("Give either 'prompt' or 'messages' (not both, not neither).", param="prompt")
        messages += args["messages"] if "messages" in args else [{"role": "user", "content": args["prompt"]}]
        body: dict[str, Any] = {"model": model, "messages": messages}
        for name in ("max_tokens", "temperature"):
            if name in args:
                body[name] = args[name]
        conversation = parse_chat_request(body).conversation
        deadline = time.time() + min(CHAT_DEADLINE_SECONDS, self._time_left(call) - 1)
        turn = self._service.converse(call.key, conversation, deadline=deadline, surface="mcp")
        completion = Completion.of(turn)
        if completion.error is not None:
            raise completion.error  # what was generated is billed (partial)
        assert completion.entry is not None
        text = completion.text
        structured = {
            "model": turn.model.id,
            "text": text,
            "finish_reason": completion.finish_reason or "stop",
            "usage": _usage(completion.entry.usage),
            "cost_usd": _money(completion.entry.cost),
            "latency_ms": completion.entry.latency_ms,
            "request_id": turn.request_id,
        }
        return text, structured

    def _embed(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": args.get("model") or self._default_model(call.key, "embedding")}
        body["input"] = args.get("input")
        if "dimensions" in args:
            body["dimensions"] = args["dimensions"]
        request = parse_embedding_request(body)
        run = self._service.embed(call.key, request, timeout_seconds=self._time_left(call) - 1, surface="mcp")
        vectors = [item["embedding"] for item in run.body["data"]]
        structured = {
            "model": run.model.id,
            "dimensions": len(vectors[0]),
            "embeddings": vectors,
            "usage": {"input_tokens": run.entry.usage.input_tokens},
            "cost_usd": _money(run.entry.cost),
            "latency_ms": run.latency_ms,
            "request_id": run.request_id,
        }
        return json.dumps(structured), structured

    def _list_models(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        mode = args.get("mode")
        models = [_describe_model(m) for m in self._service.usable_models(call.key, mode)]
        structured = {"models": models}
        return json.dumps(structured), structured

    def _get_usage(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        status = self._service.key_status(call.key)
        budget, usage = status["budget"], status["usage"]
        remaining = budget.get("remaining_usd")
        text = (
            f"Key {status['prefix']} in {usage['period']}: {usage['requests']} requests, "
            f"{usage['input_tokens']} input and {usage['output_tokens']} output tokens, "
            f"${budget['spent_usd']} spent"
            + (f" of ${budget['monthly_usd']} (${remaining} left)." if remaining is not None else " (no budget set).")
        )
        return text, status

    def _count_tokens(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        model = self._service.resolve_model(call.key, args.get("model") or self._default_model(call.key, "chat"))
        if ("text" in args) == ("messages" in args):
            raise errors.InvalidRequest("Give either 'text' or 'messages' (not both, not neither).", param="text")
        if "messages" in args:
            messages = parse_chat_request({"model": model.id, "messages": args["messages"]}).conversation.messages
            tokens = self._service.count_tokens(model, messages=messages)
        else:
            tokens = self._service.count_tokens(model, text=args["text"])
        output = args.get("max_output_tokens", 0 if model.mode == "embedding" else model.max_output_tokens or 0)
        input_cost = compute_cost(model.prices, TokenUsage(input_tokens=tokens))
        output_cost = compute_cost(model.prices, TokenUsage(output_tokens=output))
        structured = {
            "model": model.id,
            "input_tokens": tokens,
            "estimate": True,
            "cost_usd": {
                "input": _money(input_cost),
                "max_output": _money(output_cost),
                "max_total": _money(input_cost + output_cost),
            },
            "max_output_tokens": output,
            "prices_usd_per_million_tokens": model.prices.per_million(),
        }
        text = (
            f"About {tokens} input tokens for {model.id}: ${structured['cost_usd']['input']} of input; "
            f"at most ${structured['cost_usd']['max_total']} with {output} output tokens. "
            "(An estimate from a local tokenizer; Bedrock bills its own count.)"
        )
        return text, structured

    def _default_model(self, key: KeyRecord, mode: str) -> str:
        usable = self._service.usable_models(key, mode)
        if not usable:
            raise errors.PermissionDenied(f"This API key may not use any {mode} model.", code="model_not_allowed")
        return usable[0].id


def _parse_body(raw: bytes | str | None, max_bytes: int) -> Any:
    if raw is None or len(raw) == 0:
        raise ProtocolError(INVALID_REQUEST, "The request body is empty; POST a JSON-RPC message.")
    if len(raw) > max_bytes:
        raise ProtocolError(INVALID_REQUEST, f"The request body is {len(raw)} bytes; the limit is {max_bytes}.")
    try:
        return parse_json(raw)
    except errors.InvalidRequest as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc.message}") from None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value.strip() for key, value in headers.items() if key.lower() == name), None)


def _error_response(request_id: Any, error: ProtocolError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def _tool_error(exc: errors.AppError) -> dict[str, Any]:
    text = f"Error ({exc.status_code} {exc.code or exc.error_type}): {exc.message}"
    retry_after = exc.headers.get("Retry-After")
    if retry_after:
        text += f" Retry after {retry_after} s."
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _check_arguments(name: str, arguments: Any) -> None:
    """Validate tool arguments against the tool's ``inputSchema``.

    Raises
    ------
    InvalidRequest
        The arguments do not match; the message names the first problem.
    """
    if not isinstance(arguments, dict):
        raise errors.InvalidRequest("Tool arguments must be an object.", param="arguments")
    problem = next(_schema_problems(_SCHEMAS[name], arguments, ()), None)
    if problem is not None:
        path, message = problem
        where = "/".join(str(part) for part in path) or "arguments"
        raise errors.InvalidRequest(f"Invalid argument {where}: {message}", param=where)


#: The JSON Schema keywords ``_schema_problems`` checks: all the tools' input schemas use (a test
#: keeps it so). Importing jsonschema for them cost a cold MCP call more than the check itself.
SCHEMA_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "enum", "minLength", "minimum", "maximum"}
    | {"items", "minItems", "oneOf", "description"}
)
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    # JSON Schema's integer is any number with no fraction (1.0 included); booleans are not numbers.
    "integer": lambda value: (
        not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    ),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
}


def _schema_problems(schema: Mapping[str, Any], value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple, str]]:
    """The ways ``value`` breaks ``schema`` (the subset of JSON Schema 2020-12 in ``SCHEMA_KEYWORDS``)."""
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        yield path, f"{value!r} is not of type {kind!r}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"{value!r} is not one of {schema['enum']!r}"
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        yield path, f"{value!r} is too short (at least {schema['minLength']} characters)"
    if _JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            yield path, f"{value!r} is less than the minimum of {schema['minimum']!r}"
        if "maximum" in schema and value > schema["maximum"]:
            yield path, f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield path, f"{value!r} should have at least {schema['minItems']} item(s)"
        for index, item in enumerate(value):
            yield from _schema_problems(schema.get("items", {}), item, (*path, index))
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                yield path, f"{key!r} is a required property"
        properties = schema.get("properties", {})
        extra = [key for key in value if key not in properties]
        if schema.get("additionalProperties", True) is False and extra:
            yield path, f"Additional properties are not allowed ({', '.join(map(repr, extra))} unexpected)"
        for key, item in value.items():
            if key in properties:
                yield from _schema_problems(properties[key], item, (*path, key))
    if "oneOf" in schema:
        matching = sum(next(_schema_problems(option, value, path), None) is None for option in schema["oneOf"])
        if matching != 1:
            yield path, f"{value!r} is not valid under exactly one of the accepted forms"


def _describe_model(model: ModelEntry) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": model.id,
        "mode": model.mode,
        "owned_by": model.owned_by,
        "bedrock_model_id": model.bedrock_model_id,
        "input_modalities": list(model.input_modalities),
        "prices_usd_per_million_tokens": model.prices.per_million(),
    }
    if model.mode == "chat":
        described.update(
            supports_tools=model.supports_tools,
            supports_reasoning=model.supports_reasoning,
            max_output_tokens=model.max_output_tokens,
        )
    else:
        described.update(dimensions=list(model.dimensions), default_dimensions=model.default_dimensions)
    return described


def _usage(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }


def _money(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f") if value else "0"


_MESSAGES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "description": 'OpenAI-style chat messages, e.g. [{"role": "user", "content": "Hi"}].',
    "items": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
            "content": {"type": "string"},
        },
        "required": ["role", "content"],
    },
}
_MODEL_ARG = {"type": "string", "description": "A model id from list_models (default: the first this key may use)."}
_MONEY = {"type": "string", "description": "Exact USD, as a decimal string."}
_USAGE_SCHEMA = {
    "type": "object",
    "properties": {
        name: {"type": "integer"}
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    },
}

_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "prompt": {"type": "string", "minLength": 1, "description": "The user's message."},
            "messages": _MESSAGES_SCHEMA,
            "system": {"type": "string", "description": "A system prompt."},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "additionalProperties": False,
    },
    "list_models": {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["chat", "embedding"]}},
        "additionalProperties": False,
    },
    "embed": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "input": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                ],
                "description": "A text or a list of texts to embed.",
            },
            "dimensions": {"type": "integer", "description": "Vector size, where the model offers a choice."},
        },
        "required": ["input"],
        "additionalProperties": False,
    },
    "get_usage": {"type": "object", "properties": {}, "additionalProperties": False},
    "count_tokens": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "text": {"type": "string"},
            "messages": _MESSAGES_SCHEMA,
            "max_output_tokens": {
                "type": "integer",
                "minimum": 0,
                "description": "Output tokens to price in (default: the model's maximum).",
            },
        },
        "additionalProperties": False,
    },
}

_OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "text": {"type": "string"},
            "finish_reason": {"type": "string"},
            "usage": _USAGE_SCHEMA,
            "cost_usd": _MONEY,
            "latency_ms": {"type": "integer"},
            "request_id": {"type": "string"},
        },
        "required": ["model", "text", "finish_reason", "usage", "cost_usd", "latency_ms"],
    },
    "list_models": {
        "type": "object",
        "properties": {"models": {"type": "array", "items": {"type": "object"}}},
        "required": ["models"],
    },
    "embed": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "dimensions": {"type": "integer"},
            "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "usage": {"type": "object", "properties": {"input_tokens": {"type": "integer"}}},
            "cost_usd": _MONEY,
            "latency_ms": {"type": "integer"},
            "request_id": {"type": "string"},
        },
        "required": ["model", "dimensions", "embeddings", "usage", "cost_usd"],
    },
    "get_usage": {
        "type": "object",
        "properties": {
            "key_id": {"type": "string"},
            "prefix": {"type": "string"},
            "budget": {"type": "object"},
            "usage": {"type": "object"},
            "limits": {"type": "object"},
        },
        "required": ["key_id", "budget", "usage"],
    },
    "count_tokens": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "input_tokens": {"type": "integer"},
            "estimate": {"type": "boolean"},
            "cost_usd": {
                "type": "object",
                "properties": {"input": _MONEY, "max_output": _MONEY, "max_total": _MONEY},
                "required": ["input", "max_output", "max_total"],
            },
            "max_output_tokens": {"type": "integer"},
            "prices_usd_per_million_tokens": {"type": "object"},
        },
        "required": ["model", "input_tokens", "cost_usd"],
    },
}

_DESCRIPTIONS = {
    "chat": (
        "Ask a Bedrock chat model. Give 'prompt' (or OpenAI-style 'messages'), optionally 'system', "
        "'max_tokens', 'temperature'. Returns the answer, with usage, cost and latency. Billed to your key."
    ),
    "list_models": "The models this API key may use, with their modalities and prices (USD per million tokens).",
    "embed": "Embedding vectors for one text or a list of texts (Titan, Cohere). Billed to your key.",
    "get_usage": "This API key's spend, tokens and requests this month, its limits and remaining budget.",
    "count_tokens": (
        "Estimate a prompt's tokens for a model and what a call would cost (input, and at most with "
        "max_output_tokens of output). Nothing is called or billed."
    ),
}
_TITLES = {
    "chat": "Chat with a Bedrock model",
    "list_models": "List models",
    "embed": "Embed texts",
    "get_usage": "Get my usage",
    "count_tokens": "Count tokens and estimate cost",
}
_READ_ONLY = {"list_models", "get_usage", "count_tokens"}

#: The ``tools/list`` answer (the same for every protocol version: older clients ignore newer fields).
TOOLS: list[dict[str, Any]] = [
    {
        "name": name,
        "title": _TITLES[name],
        "description": _DESCRIPTIONS[name],
        "inputSchema": _SCHEMAS[name],
        "outputSchema": _OUTPUT_SCHEMAS[name],
        "annotations": {
            "title": _TITLES[name],
            "readOnlyHint": name in _READ_ONLY,
            "openWorldHint": name not in _READ_ONLY,
        },
    }
    for name in ("chat", "list_models", "embed", "get_usage", "count_tokens")
]
