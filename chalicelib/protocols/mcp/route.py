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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.observability import logger
from chalicelib.protocols.mcp.parse import (
    BATCHLESS_VERSIONS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSIONS,
    UNAUTHORIZED,
    ProtocolError,
    check_arguments,
    header,
    parse_body,
)
from chalicelib.protocols.mcp.render import SERVER_INFO, TOOLS, describe_model, error_response, tool_error, usage_body
from chalicelib.protocols.openai.parse import parse_embedding_request
from chalicelib.protocols.openai_chat.parse import parse_chat_request
from chalicelib.protocols.route import Route, completed
from chalicelib.service.service import ModelService
from chalicelib.shared.http import HttpRequest, HttpResult
from chalicelib.shared.money import compute_cost, usd
from chalicelib.shared.usage import TokenUsage

#: The whole POST must finish inside API Gateway's 29 s; a chat tool call gets at most
#: ``CHAT_DEADLINE_SECONDS`` of it, and none once less than ``_MIN_CALL_SECONDS`` is left.
REQUEST_BUDGET_SECONDS = 24.0
CHAT_DEADLINE_SECONDS = 20.0
_MIN_CALL_SECONDS = 2.0


_JSON = {"Content-Type": "application/json"}


@dataclass
class _Call:
    """What one POST carries across its messages: the caller and the time left."""

    key: KeyRecord
    deadline: float
    version: str | None


class McpServer(Route):
    """Answers ``/mcp`` (every method) for authenticated keys; tools call the model service."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        models: ModelService,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(keys=keys, models=models, max_body_bytes=max_body_bytes)
        self._clock = clock
        self._tools: dict[str, Callable[[_Call, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
            "chat": self._chat,
            "list_models": self._list_models,
            "embed": self._embed,
            "get_usage": self._get_usage,
            "count_tokens": self._count_tokens,
        }

    def handle(self, request: HttpRequest) -> HttpResult:
        """Answer one HTTP request to ``/mcp``."""
        method, headers = request.method, request.headers
        if method.upper() != "POST":
            return HttpResult(
                error_response(
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
            key = self.key(request)
        except errors.AuthenticationFailed as exc:
            body = error_response(None, ProtocolError(UNAUTHORIZED, exc.message))
            return HttpResult(body, status=401, headers={**_JSON, **exc.headers})
        version = header(headers, "mcp-protocol-version")
        if version is not None and version not in PROTOCOL_VERSIONS:
            error = ProtocolError(
                INVALID_REQUEST,
                f"Unsupported MCP-Protocol-Version: {version}. Supported: {', '.join(PROTOCOL_VERSIONS)}.",
                {"supported": list(PROTOCOL_VERSIONS), "requested": version},
            )
            return HttpResult(error_response(None, error), status=400, headers=_JSON)
        budget = REQUEST_BUDGET_SECONDS
        if request.deadline is not None:
            budget = min(budget, request.deadline - time.time())
        call = _Call(key=key, deadline=self._clock() + budget, version=version)
        try:
            message = parse_body(request.body, self._max_body_bytes)
        except ProtocolError as exc:
            return HttpResult(error_response(None, exc), headers=_JSON)
        if isinstance(message, list):
            answer: Any = self._batch(call, message)
        else:
            answer = self._message(call, message, in_batch=False)
        if answer is None or answer == []:
            return HttpResult("", status=202)
        return HttpResult(answer, headers=_JSON)

    def _batch(self, call: _Call, messages: list[Any]) -> Any:
        if not messages:
            return error_response(None, ProtocolError(INVALID_REQUEST, "An empty JSON-RPC batch is not a request."))
        if call.version in BATCHLESS_VERSIONS:
            return error_response(
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
            return error_response(
                None, ProtocolError(INVALID_REQUEST, 'A JSON-RPC 2.0 message needs "jsonrpc": "2.0".')
            )
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return None  # a client's answer to a server request; this server sends none
        if "id" not in message:
            return None  # a notification (notifications/initialized, cancelled, …): nothing to answer
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            return error_response(None, ProtocolError(INVALID_REQUEST, "A request id must be a string or an integer."))
        if not isinstance(method, str):
            return error_response(request_id, ProtocolError(INVALID_REQUEST, "A request needs a string 'method'."))
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
            return error_response(request_id, exc)
        except Exception:
            logger.exception("mcp request failed", extra={"method": method, "key_id": call.key.key_id})
            return error_response(request_id, ProtocolError(INTERNAL_ERROR, "The gateway hit an internal error."))
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
            check_arguments(name, arguments)
            text, structured = tool(call, arguments)
        except errors.AppError as exc:
            return tool_error(exc)
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
        turn = self._models.converse(call.key, conversation, deadline=deadline, surface="mcp")
        completion = completed(turn)  # a turn that broke off raises: what was generated is billed (partial)
        assert completion.entry is not None
        text = completion.text
        if completion.finish_reason == "content_filter":
            # A guardrail intervened: a tool error, as MCP clients show a refusal (billed all the same).
            raise errors.InvalidRequest(
                f"A guardrail intervened and the answer was withheld: {text!r} "
                f"(billed ${usd(completion.entry.cost) or '0'}; request id {turn.request_id}).",
                code="content_filter",
            )
        structured = {
            "model": turn.model.id,
            "text": text,
            "finish_reason": completion.finish_reason or "stop",
            "usage": usage_body(completion.entry.usage),
            "cost_usd": usd(completion.entry.cost),
            "latency_ms": completion.entry.latency_ms,
            "request_id": turn.request_id,
            **completion.entry.served_fields(),
        }
        return text, structured

    def _embed(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": args.get("model") or self._default_model(call.key, "embedding")}
        body["input"] = args.get("input")
        if "dimensions" in args:
            body["dimensions"] = args["dimensions"]
        request = parse_embedding_request(body)
        deadline = time.time() + self._time_left(call) - 1
        run = self._models.embed(call.key, request, deadline=deadline, surface="mcp")
        vectors = [item["embedding"] for item in run.body["data"]]
        structured = {
            "model": run.model.id,
            "dimensions": len(vectors[0]),
            "embeddings": vectors,
            "usage": {"input_tokens": run.entry.usage.input_tokens},
            "cost_usd": usd(run.entry.cost),
            "latency_ms": run.latency_ms,
            "request_id": run.request_id,
        }
        return json.dumps(structured), structured

    def _list_models(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        mode = args.get("mode")
        models = [describe_model(m) for m in self._models.usable_models(call.key, mode)]
        structured = {"models": models}
        return json.dumps(structured), structured

    def _get_usage(self, call: _Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        status = self._models.key_status(call.key)
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
        model = self._models.resolve_model(call.key, args.get("model") or self._default_model(call.key, "chat"))
        if ("text" in args) == ("messages" in args):
            raise errors.InvalidRequest("Give either 'text' or 'messages' (not both, not neither).", param="text")
        self._models.admit_count(call.key, model)  # free, but a request against the key's limit
        if "messages" in args:
            messages = parse_chat_request({"model": model.id, "messages": args["messages"]}).conversation.messages
            tokens = self._models.count_tokens(model, messages=messages)
        else:
            tokens = self._models.count_tokens(model, text=args["text"])
        output = args.get("max_output_tokens", 0 if model.mode == "embedding" else model.max_output_tokens or 0)
        # Both at the tier the prompt falls in: a long prompt makes its output dearer too.
        input_cost = compute_cost(model.prices, TokenUsage(input_tokens=tokens))
        output_cost = compute_cost(model.prices, TokenUsage(input_tokens=tokens, output_tokens=output)) - input_cost
        structured = {
            "model": model.id,
            "input_tokens": tokens,
            "estimate": True,
            "cost_usd": {
                "input": usd(input_cost),
                "max_output": usd(output_cost),
                "max_total": usd(input_cost + output_cost),
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
        usable = self._models.usable_models(key, mode)
        if not usable:
            raise errors.PermissionDenied(f"This API key may not use any {mode} model.", code="model_not_allowed")
        return usable[0].id
