"""The turn's events → OpenAI's chat completions: a ``chat.completion``, or its chunks as they arrive.

A whole answer is a ``chat.completion`` object; a streamed one is
``chat.completion.chunk`` server-sent events written the moment each event
arrives, ending with ``data: [DONE]`` (or an error event when the answer
broke off). Since headers leave before the cost is known, a streamed
answer carries its exact cost in the usage chunk (``usage.cost_usd``, a
decimal string; sent when the client asks for ``stream_options.include_usage``)
or, when it broke off, in its error event (``error.usage``), as does a whole
answer (plus the ``x-pennyworth-cost-usd`` header).
"""

from __future__ import annotations

import json
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
from chalicelib.errors import AppError
from chalicelib.protocols.openai_chat.parse import ChatCompletionRequest
from chalicelib.service.service import Turn
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage, UsageEntry


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
                case Failed(error=error, entry=entry):
                    yield _sse(failed_body(error, entry, reasoning_tokens))
    finally:
        turn.close()


def failed_body(error: AppError, entry: UsageEntry | None, reasoning_tokens: int = 0) -> dict[str, Any]:
    """The error event ending a cut stream: OpenAI's error, with what was billed (``usage``) inside it.

    Inside ``error``, because that is what the official SDKs hand the caller (``APIError.body``
    in Python, ``error`` in Node); the Responses API's ``response.failed`` carries it the same way.
    """
    body = error.to_body()
    if entry is not None:
        body["error"]["usage"] = usage_to_openai(entry.usage, reasoning_tokens, entry)
    return body


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
        out.update(entry.served_fields())
    return out


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
