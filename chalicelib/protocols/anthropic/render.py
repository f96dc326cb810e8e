"""The core's events → Anthropic's answers: a ``message`` object, server-sent events, the error envelope.

A streamed answer follows Anthropic's sequence: ``message_start``, ``ping``,
then per content block ``content_block_start`` / ``content_block_delta``
(``thinking_delta``, ``signature_delta``, ``text_delta``,
``input_json_delta``) / ``content_block_stop``, then ``message_delta`` (stop
reason and the final usage) and ``message_stop``. Each event is written the
moment the model's event arrives. Bedrock reports token counts only at the
end, so ``message_start`` carries zeros and ``message_delta`` the billed
counts (input, cache reads and writes, output), as Anthropic's own
``message_delta`` does. An answer that breaks off ends with ``event: error``.

The exact cost rides in ``usage.cost_usd`` (a decimal string; clients ignore
fields they do not know), and in the ``x-pennyworth-cost-usd`` header of a
whole answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib import errors
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
from chalicelib.service.service import Turn
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage, UsageEntry

#: The core's finish reasons → Anthropic's ``stop_reason``.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
#: Anthropic's error ``type`` for each HTTP status the gateway answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(exc: errors.AppError) -> dict[str, Any]:
    """Anthropic's error envelope: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    kind = "billing_error" if isinstance(exc, errors.QuotaExceeded) else ERROR_TYPES.get(exc.status_code, "api_error")
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": exc.message}}
    request_id = exc.headers.get("x-request-id")
    body["request_id"] = request_id
    return body


def stop_reason(finished: Finished | None) -> str:
    if finished is None:
        return "end_turn"
    if finished.stop_sequence:
        return "stop_sequence"
    return STOP_REASONS.get(finished.reason, "end_turn")


def usage_body(usage: TokenUsage, reasoning_tokens: int = 0, entry: UsageEntry | None = None) -> dict[str, Any]:
    """Anthropic's ``usage``: ``input_tokens`` excludes cache reads and writes (as Bedrock's), plus the cost."""
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_write_tokens:
        # The writes by TTL, as Anthropic reports them (each TTL has its own price).
        long = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - long,
            "ephemeral_1h_input_tokens": long,
        }
    if reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": min(reasoning_tokens, usage.output_tokens)}
    if entry is not None:
        out["cost_usd"] = usd(entry.cost) or "0"
        out.update(entry.served_fields())
    return out


def render_message(completion: Completion, ids: Mapping[str, str]) -> dict[str, Any]:
    """A whole ``message`` object."""
    content: list[dict[str, Any]] = []
    for block in completion.blocks:
        if block.kind == "text":
            content.append({"type": "text", "text": block.text})
        elif block.kind == "reasoning" and block.redacted is not None:
            content.append({"type": "redacted_thinking", "data": block.redacted})
        elif block.kind == "reasoning":
            content.append({"type": "thinking", "thinking": block.text, "signature": block.signature or ""})
        else:
            content.append(
                {"type": "tool_use", "id": block.call_id, "name": block.name, "input": _input(block.arguments)}
            )
    finished = Finished(completion.finish_reason or "stop", completion.stop_sequence)
    return {
        "id": ids["id"],
        "type": "message",
        "role": "assistant",
        "model": ids["model"],
        "content": content,
        "stop_reason": stop_reason(finished),
        "stop_sequence": completion.stop_sequence,
        "usage": usage_body(
            completion.entry.usage if completion.entry else completion.usage,
            completion.reasoning_tokens,
            completion.entry,
        ),
    }


def stream_events(turn: Turn, ids: Mapping[str, str]) -> Iterator[bytes]:
    """Anthropic's server-sent events, each written as soon as the model's event arrives."""
    blocks = _Blocks()
    finished: Finished | None = None
    reasoning_tokens = 0
    try:
        start = {
            "id": ids["id"],
            "type": "message",
            "role": "assistant",
            "model": ids["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(TokenUsage()),
        }
        yield _sse("message_start", {"type": "message_start", "message": start})
        yield _sse("ping", {"type": "ping"})
        for event in turn:
            match event:
                case TextDelta(text=text):
                    yield from blocks.open("text", {"type": "text", "text": ""})
                    yield blocks.delta({"type": "text_delta", "text": text})
                case ReasoningDelta(redacted=str() as data):
                    yield from blocks.close()
                    yield from blocks.open("redacted", {"type": "redacted_thinking", "data": data}, fresh=True)
                    yield from blocks.close()
                case ReasoningDelta(text=text, signature=signature):
                    yield from blocks.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                    if text:
                        yield blocks.delta({"type": "thinking_delta", "thinking": text})
                    if signature:
                        yield blocks.delta({"type": "signature_delta", "signature": signature})
                        yield from blocks.close()  # a signed block is complete
                case ToolCallStart(index=index, call_id=call_id, name=name):
                    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
                    yield from blocks.open(f"tool:{index}", block, fresh=True)
                case ToolCallDelta(index=index, arguments=arguments):
                    yield from blocks.delta_for(
                        f"tool:{index}", {"type": "input_json_delta", "partial_json": arguments}
                    )
                case Finished():
                    finished = event
                    yield from blocks.close()
                case UsageReport(reasoning_tokens=tokens):
                    reasoning_tokens = tokens
                case Billed(entry=entry):
                    delta = {
                        "stop_reason": stop_reason(finished),
                        "stop_sequence": finished.stop_sequence if finished else None,
                    }
                    usage = usage_body(entry.usage, reasoning_tokens, entry)
                    yield _sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
                    yield _sse("message_stop", {"type": "message_stop"})
                case Failed(error=error, entry=entry):
                    body = error_body(error)
                    if entry is not None:
                        # What was billed, as message_delta would have said it (the SDKs hand the whole
                        # event to the caller: ``APIError.body``).
                        body["usage"] = usage_body(entry.usage, reasoning_tokens, entry)
                    yield _sse("error", body)
    finally:
        turn.close()


class _Blocks:
    """Which content block is open, and the indexes Anthropic numbers them with."""

    def __init__(self) -> None:
        self._count = 0
        self._open: tuple[str, int] | None = None
        self._indexes: dict[str, int] = {}

    def open(self, key: str, block: dict[str, Any], *, fresh: bool = False) -> Iterator[bytes]:
        if self._open is not None and self._open[0] == key and not fresh:
            return
        yield from self.close()
        index = self._count
        self._count += 1
        self._open = (key, index)
        self._indexes[key] = index
        yield _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})

    def close(self) -> Iterator[bytes]:
        if self._open is not None:
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": self._open[1]})
            self._open = None

    def delta(self, delta: dict[str, Any]) -> bytes:
        assert self._open is not None
        return _sse("content_block_delta", {"type": "content_block_delta", "index": self._open[1], "delta": delta})

    def delta_for(self, key: str, delta: dict[str, Any]) -> Iterator[bytes]:
        # Bedrock streams one block at a time, so this is the open block; a delta for another
        # block keeps that block's index (clients accumulate by index).
        index = self._indexes.get(key)
        if index is not None:
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _input(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def for_anthropic_clients(exc: errors.AppError) -> errors.AppError:
    """Headers Anthropic's SDKs act on: ``request-id``, and no retrying a spent budget.

    Applied by the edge's error translation (``chalicelib/edge/answers.py``) to every error, once its
    ``x-request-id`` is known, including refusals from before the model call.
    """
    if "x-request-id" in exc.headers:
        exc.headers.setdefault("request-id", exc.headers["x-request-id"])
    if isinstance(exc, errors.QuotaExceeded):
        # The Stainless SDKs (and so Claude Code) retry every 429 unless told not to.
        exc.headers["x-should-retry"] = "false"
    return exc
