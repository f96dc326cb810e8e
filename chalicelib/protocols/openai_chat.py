"""``POST /v1/chat/completions``: OpenAI's chat completions over the core, streamed as generated.

Parsing is ``openai_validation.parse_chat_request`` (every parameter has a
policy); this module renders the core's events back: a ``chat.completion``
object, or ``chat.completion.chunk`` server-sent events written the moment
each event arrives, ending with ``data: [DONE]`` (or an error event when the
answer broke off). Since headers leave before the cost is known, a streamed
answer carries its exact cost in the usage chunk (``usage.cost_usd``, a
decimal string; sent when the client asks for ``stream_options.include_usage``),
as does a whole answer (plus the ``x-pennyworth-cost-usd`` header).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib.conversation.events import (
    Billed,
    Completion,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai_validation import ChatCompletionRequest, parse_chat_request
from chalicelib.service.service import ModelService, Turn
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.http import JSON_HEADERS, SSE_HEADERS, StreamingResult
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage, UsageEntry


class ChatCompletions:
    """The chat completions route: authenticate, parse, converse, render."""

    def __init__(self, *, keys: KeyStore, models: ModelService, max_body_bytes: int, surface: str = "openai") -> None:
        self._keys = keys
        self._models = models
        self._max_body_bytes = max_body_bytes
        self._surface = surface

    def handle(self, headers: Mapping[str, str], raw_body: bytes | str | None, deadline: float) -> StreamingResult:
        """Answer one request: SSE chunks as they are generated, or one JSON completion.

        Raises
        ------
        AppError
            Before any byte is sent: a bad key or body, refused admission, an upstream failure.
        """
        key = self._keys.authenticate(headers)
        request = parse_chat_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        turn = self._models.converse(key, request.conversation, deadline=deadline, surface=self._surface)
        ids = {"id": f"chatcmpl-{turn.request_id}", "created": int(time.time()), "model": request.conversation.model}
        if request.conversation.stream:
            chunks = stream_chunks(turn, request, ids)
            return StreamingResult(200, {**turn.headers, **SSE_HEADERS}, chunks, on_close=turn.close)
        completion = Completion.of(turn)
        if completion.error is not None:
            raise completion.error  # billed already (partial); a whole answer cannot end in an error event
        assert completion.entry is not None
        body = render_completion(completion, ids)
        headers_out = {**turn.headers, **JSON_HEADERS, "x-pennyworth-cost-usd": usd(completion.entry.cost) or "0"}
        return StreamingResult(200, headers_out, iter([_json(body)]))


def render_completion(completion: Completion, ids: Mapping[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` object for a whole answer."""
    calls = completion.tool_calls
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if (completion.text or not calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ]
    if completion.reasoning:
        message["reasoning_content"] = completion.reasoning
    return {
        "id": ids["id"],
        "object": "chat.completion",
        "created": ids["created"],
        "model": ids["model"],
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": completion.finish_reason or "stop"}
        ],
        "usage": usage_to_openai(completion.usage, completion.reasoning_tokens, completion.entry),
    }


def stream_chunks(turn: Turn, request: ChatCompletionRequest, ids: Mapping[str, Any]) -> Iterator[bytes]:
    """``chat.completion.chunk`` events, each sent as soon as its event arrives."""
    base = {"id": ids["id"], "object": "chat.completion.chunk", "created": ids["created"], "model": ids["model"]}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**base, "choices": [choice]})

    reasoning_tokens = 0
    try:
        yield chunk({"role": "assistant", "content": ""})
        for event in turn:
            match event:
                case TextDelta(text=text):
                    yield chunk({"content": text})
                case ReasoningDelta(text=text) if text:
                    yield chunk({"reasoning_content": text})
                case ToolCallStart(index=index, call_id=call_id, name=name):
                    call = {"index": index, "id": call_id, "type": "function"}
                    yield chunk({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]})
                case ToolCallDelta(index=index, arguments=arguments):
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
                case Finished(reason=reason):
                    yield chunk({}, reason)
                case UsageReport(reasoning_tokens=tokens):
                    reasoning_tokens = tokens
                case Billed(entry=entry):
                    if request.include_usage:
                        usage = usage_to_openai(entry.usage, reasoning_tokens, entry)
                        yield _sse({**base, "choices": [], "usage": usage})
                    yield b"data: [DONE]\n\n"
                case Failed(error=error):
                    yield _sse(error.to_body())
    finally:
        turn.close()


def usage_to_openai(usage: TokenUsage, reasoning_tokens: int = 0, entry: UsageEntry | None = None) -> dict[str, Any]:
    """OpenAI's ``usage`` object (``prompt_tokens`` includes cached tokens, as OpenAI's does), plus the cost."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }
    if entry is not None:
        out["cost_usd"] = usd(entry.cost) or "0"
    return out


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
