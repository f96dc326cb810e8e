"""LiteLLM's answers rebuilt field by field into OpenAI's shapes (completions, chunks, usage)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import TokenUsage
from chalicelib.gateway.loader import load_litellm
from chalicelib.gateway.upstream import map_upstream_error
from chalicelib.protocols.openai_validation import ChatRequest

_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}


@dataclass
class ChatOutcome:
    """What one chat call produced: the body to send, and what to bill."""

    body: dict[str, Any] | str
    usage: TokenUsage
    status: str = "ok"
    finish_reason: str | None = None
    streamed: bool = False
    error: errors.AppError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def usage_from_litellm(usage: Any) -> TokenUsage:
    """Bedrock's billable token counts from a LiteLLM ``Usage`` object."""
    if usage is None:
        return TokenUsage()
    cache_read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    cache_write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cache_read - cache_write),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def usage_to_openai(usage: TokenUsage, reasoning_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's ``usage`` object (``prompt_tokens`` includes cached tokens, as OpenAI's does)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def _reasoning_tokens(usage: Any) -> int:
    details = getattr(usage, "completion_tokens_details", None)
    return int(getattr(details, "reasoning_tokens", 0) or 0)


def _finish_reason(value: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return value if value in _FINISH_REASONS else "stop"


def _tool_calls(raw: Iterable[Any] | None) -> list[dict[str, Any]]:
    calls = []
    for call in raw or []:
        function = getattr(call, "function", None)
        calls.append(
            {
                "id": getattr(call, "id", None) or f"call_{len(calls)}",
                "type": "function",
                "function": {
                    "name": getattr(function, "name", "") or "",
                    "arguments": getattr(function, "arguments", "") or "{}",
                },
            }
        )
    return calls


def shape_completion(
    response: Any, model_name: str, completion_id: str, created: int, max_tool_calls: int | None = None
) -> ChatOutcome:
    choice = response.choices[0]
    message = choice.message
    # parallel_tool_calls=false: Bedrock cannot be told so for every model; the gateway keeps the first call.
    tool_calls = _tool_calls(getattr(message, "tool_calls", None))[:max_tool_calls]
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": message.content if (message.content or not tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if out_message["content"] is None and not tool_calls:
        out_message["content"] = ""
    if tool_calls:
        out_message["tool_calls"] = tool_calls
    reasoning = getattr(message, "reasoning_content", None)
    if reasoning:
        out_message["reasoning_content"] = reasoning
    usage = usage_from_litellm(getattr(response, "usage", None))
    finish = _finish_reason(choice.finish_reason, bool(tool_calls))
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": [{"index": 0, "message": out_message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_to_openai(usage, _reasoning_tokens(getattr(response, "usage", None))),
    }
    return ChatOutcome(body=body, usage=usage, finish_reason=finish)


class _StreamShaper:
    """Turns LiteLLM stream chunks into OpenAI chunk dicts with dense tool indexes."""

    def __init__(self, model_name: str, completion_id: str, created: int, max_tool_calls: int | None = None) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name}
        self._max_tool_calls = max_tool_calls
        self.chunks: list[dict[str, Any]] = [self._chunk({"role": "assistant", "content": ""})]
        self._tool_index: dict[Any, int] = {}
        self._last_tool: int | None = None
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.text_parts: list[str] = []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._tool_index)

    def feed(self, chunk: Any) -> None:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            delta = choice.delta
            out: dict[str, Any] = {}
            reasoning = getattr(delta, "reasoning_content", None)
            if reasoning:
                out["reasoning_content"] = reasoning
                self.text_parts.append(reasoning)
            if getattr(delta, "content", None):
                out["content"] = delta.content
                self.text_parts.append(delta.content)
            deltas = (self._tool_delta(call) for call in getattr(delta, "tool_calls", None) or [])
            calls = [d for d in deltas if self._max_tool_calls is None or d["index"] < self._max_tool_calls]
            if calls:
                out["tool_calls"] = calls
            if out:
                self.chunks.append(self._chunk(out))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def _tool_delta(self, call: Any) -> dict[str, Any]:
        upstream_index = getattr(call, "index", None)
        call_id = getattr(call, "id", None)
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None) or ""
        if call_id and call_id not in self._tool_index:
            # A new call: the next dense 0-based index, whatever LiteLLM numbered it.
            index = len({v for v in self._tool_index.values()})
            self._tool_index[call_id] = index
            if upstream_index is not None:
                self._tool_index[("upstream", upstream_index)] = index
        else:
            index = self._tool_index.get(call_id) if call_id else self._tool_index.get(("upstream", upstream_index))
            if index is None:
                index = self._last_tool if self._last_tool is not None else 0
        self._last_tool = index
        self.text_parts.append(arguments)
        delta: dict[str, Any] = {"index": index}
        if call_id and name:
            delta.update({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        else:
            delta["function"] = {"arguments": arguments}
        return delta

    def finish(self) -> str:
        finish = _finish_reason(self.finish_reason, self.has_tool_calls)
        self.chunks.append(self._chunk({}, finish))
        return finish

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage}


def shape_stream(
    response: Any, request: ChatRequest, completion_id: str, created: int, max_tool_calls: int | None = None
) -> ChatOutcome:
    shaper = _StreamShaper(request.model, completion_id, created, max_tool_calls)
    failure: errors.AppError | None = None
    try:
        for chunk in response:
            shaper.feed(chunk)
    except Exception as exc:  # noqa: BLE001 - mapped below
        failure = map_upstream_error(exc)
        if len(shaper.chunks) == 1:
            raise failure from exc
    truncated = failure is None and shaper.finish_reason is None
    if truncated:
        failure = errors.UpstreamError(
            "The Bedrock stream ended before the model finished; the answer is incomplete.",
            code="upstream_stream_cut",
        )
    if shaper.usage is not None:
        usage = usage_from_litellm(shaper.usage)
    else:
        # Cut before Bedrock's metadata event: bill what was sent and produced,
        # counted with LiteLLM's tokenizer (an estimate, flagged in the ledger).
        usage = estimate_usage(request, "".join(shaper.text_parts))
    status = "ok"
    if failure is None:
        finish = shaper.finish()
        if request.include_usage:
            shaper.chunks.append(shaper.usage_chunk(usage_to_openai(usage, _reasoning_tokens(shaper.usage))))
    else:
        finish = None
        status = "partial"
    lines = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in shaper.chunks]
    if failure is not None:
        lines.append(f"data: {json.dumps(failure.to_body(), separators=(',', ':'))}\n\n")
    else:
        lines.append("data: [DONE]\n\n")
    return ChatOutcome(
        body="".join(lines),
        usage=usage,
        status=status,
        finish_reason=finish,
        streamed=True,
        error=failure,
        extra={"produced_text": "".join(shaper.text_parts), "usage_reported": shaper.usage is not None},
    )


def estimate_usage(request: ChatRequest, produced: str) -> TokenUsage:
    """Token counts for a stream Bedrock cut before reporting usage."""
    litellm = load_litellm()
    prompt = litellm.token_counter(model="", messages=request.messages)
    output = litellm.token_counter(model="", text=produced, count_response_tokens=True) if produced else 0
    return TokenUsage(input_tokens=int(prompt), output_tokens=int(output))


def now_seconds() -> int:
    """Unix time in whole seconds (OpenAI's ``created``)."""
    return int(time.time())
