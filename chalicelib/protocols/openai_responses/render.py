"""The core's events → a ``Response`` object and the Responses stream events that build it.

One ``ResponseWriter`` serves both answers: a stream sends every event it
returns the moment the core's event arrives; a whole answer feeds it the same
events and keeps the final ``Response``. So both agree to the byte on ids,
items and usage.

The event sequence is OpenAI's: ``response.created``, ``response.in_progress``;
per output item ``response.output_item.added``, its part/delta/done events,
``response.output_item.done``; then ``response.completed`` (or
``response.incomplete`` when the model hit ``max_output_tokens`` or a content
filter, ``response.failed`` when the answer broke off). Every event has a
``sequence_number``. The final response's ``usage`` carries the exact cost
billed, ``usage.cost_usd`` (a decimal string).

Reasoning arrives as its item's ``summary`` when the request set
``reasoning.summary`` (Claude's visible thinking on Bedrock is already a
summary), else as its ``content`` (``reasoning_text``). With ``include:
["reasoning.encrypted_content"]`` a signed or redacted thinking block also
rides in ``encrypted_content``, for the client to send back.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

from chalicelib.conversation.events import (
    Billed,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.errors import AppError, RateLimited
from chalicelib.protocols.openai_responses.items import reasoning_token
from chalicelib.protocols.openai_responses.parse import ResponsesRequest
from chalicelib.shared.money import usd
from chalicelib.shared.usage import UsageEntry

_ID_PREFIX = {"message": "msg", "reasoning": "rs", "function_call": "fc", "custom_tool_call": "ctc"}
#: Why a response is ``incomplete``, by the core's finish reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass
class _Open:
    """The output item being generated."""

    index: int
    item: dict[str, Any]
    text: str = ""
    signature: str | None = None
    #: A redacted thinking block (it has no text, only Anthropic's encrypted data).
    redacted: str | None = None
    tool_index: int | None = None


class ResponseWriter:
    """Builds one ``Response`` from the core's events, returning the stream events on the way."""

    def __init__(self, request: ResponsesRequest, response_id: str, *, created_at: int | None = None) -> None:
        self._request = request
        self._model = request.conversation.model
        self.response: dict[str, Any] = {
            "id": response_id,
            "object": "response",
            "created_at": created_at if created_at is not None else int(time.time()),
            "status": "in_progress",
            "model": self._model,
            "output": [],
            "error": None,
            "incomplete_details": None,
            **copy.deepcopy(request.echo),
        }
        self._sequence = 0
        self._open: _Open | None = None
        self._finish: str | None = None
        self._reasoning_tokens = 0
        #: The error a ``Failed`` event ended the answer with (a whole answer raises it).
        self.error: AppError | None = None
        self.entry: UsageEntry | None = None

    # -- the lifecycle ---------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        return [self._snapshot("response.created"), self._snapshot("response.in_progress")]

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """The stream events one core event makes (possibly none)."""
        out: list[dict[str, Any]] = []
        match event:
            case TextDelta(text=text):
                if self._kind() != "message":
                    self._close(out)
                    self._open_message(out)
                self._text(out, text)
            case ReasoningDelta(redacted=redacted) if redacted is not None:
                self._close(out)
                self._open_reasoning(out)
                assert self._open is not None
                self._open.redacted = redacted
                self._close(out)
            case ReasoningDelta(text=text, signature=signature):
                if self._kind() != "reasoning":
                    self._close(out)
                    self._open_reasoning(out)
                if text:
                    self._text(out, text)
                if signature:
                    assert self._open is not None
                    self._open.signature = signature
                    self._close(out)  # a signed thinking block is whole
            case ToolCallStart(index=index, call_id=call_id, name=name):
                self._close(out)
                self._open_call(out, index, call_id, name)
            case ToolCallDelta(index=index, arguments=arguments):
                if self._open is not None and self._open.tool_index == index:
                    self._arguments(out, arguments)
            case Finished(reason=reason):
                self._finish = reason
                self._close(out, "incomplete" if reason in _INCOMPLETE else "completed")
            case UsageReport(reasoning_tokens=tokens):
                self._reasoning_tokens = tokens
            case Billed(entry=entry):
                out.append(self._end(entry))
            case Failed(error=error, entry=entry):
                self._close(out, "incomplete")
                self.error = error
                out.append(self._end(entry, error))
        return out

    def _end(self, entry: UsageEntry | None, error: AppError | None = None) -> dict[str, Any]:
        self.entry = entry
        response = self.response
        if entry is not None:
            response["usage"] = usage_of(entry, self._reasoning_tokens)
        if error is not None:
            response["status"] = "failed"
            code = "rate_limit_exceeded" if isinstance(error, RateLimited) else "server_error"
            response["error"] = {"code": code, "message": error.message}
            return self._snapshot("response.failed")
        response["completed_at"] = int(time.time())
        reason = _INCOMPLETE.get(self._finish or "")
        if reason is not None:
            response["status"] = "incomplete"
            response["incomplete_details"] = {"reason": reason}
            return self._snapshot("response.incomplete")
        response["status"] = "completed"
        return self._snapshot("response.completed")

    # -- items -----------------------------------------------------------------------------------

    def _kind(self) -> str | None:
        return self._open.item["type"] if self._open is not None else None

    def _add(self, out: list[dict[str, Any]], item: dict[str, Any], **extra: Any) -> _Open:
        index = len(self.response["output"])
        item = {"id": f"{_ID_PREFIX[item['type']]}_{self.response['id'][5:]}{index:03d}", **item}
        self.response["output"].append(item)
        self._open = _Open(index, item, **extra)
        out.append(self._event("response.output_item.added", output_index=index, item=_public(item)))
        return self._open

    def _open_message(self, out: list[dict[str, Any]]) -> None:
        item = self._add(out, {"type": "message", "role": "assistant", "status": "in_progress", "content": []})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        out.append(self._event("response.content_part.added", **self._at(item), content_index=0, part=part))

    def _open_reasoning(self, out: list[dict[str, Any]]) -> None:
        item: dict[str, Any] = {"type": "reasoning", "summary": []}
        if not self._request.reasoning_summary:
            item["content"] = []
        if self._request.encrypted_reasoning:
            item["encrypted_content"] = None
        self._add(out, item)

    def _open_call(self, out: list[dict[str, Any]], index: int, call_id: str, name: str) -> None:
        ref = self._request.toolset.ref(name)
        item: dict[str, Any] = {"type": "function_call" if ref.kind == "function" else "custom_tool_call"}
        item.update(call_id=call_id, name=ref.name)
        if ref.namespace:
            item["namespace"] = ref.namespace
        if ref.kind == "function":
            item.update(arguments="", status="in_progress")
        else:
            item["input"] = ""
        self._add(out, item, tool_index=index)

    def _at(self, item: _Open) -> dict[str, Any]:
        return {"item_id": item.item["id"], "output_index": item.index}

    def _text(self, out: list[dict[str, Any]], text: str) -> None:
        item = self._open
        assert item is not None
        if item.item["type"] == "message":
            out.append(self._event("response.output_text.delta", **self._at(item), content_index=0, delta=text))
            out[-1]["logprobs"] = []
        elif self._request.reasoning_summary:
            if not item.text:
                part = {"type": "summary_text", "text": ""}
                out.append(
                    self._event("response.reasoning_summary_part.added", **self._at(item), summary_index=0, part=part)
                )
            out.append(
                self._event("response.reasoning_summary_text.delta", **self._at(item), summary_index=0, delta=text)
            )
        else:
            if not item.text:
                part = {"type": "reasoning_text", "text": ""}
                out.append(self._event("response.content_part.added", **self._at(item), content_index=0, part=part))
            out.append(self._event("response.reasoning_text.delta", **self._at(item), content_index=0, delta=text))
        item.text += text

    def _arguments(self, out: list[dict[str, Any]], arguments: str) -> None:
        item = self._open
        assert item is not None
        item.text += arguments
        if item.item["type"] == "function_call":
            out.append(self._event("response.function_call_arguments.delta", **self._at(item), delta=arguments))
        # A custom tool's input is a string inside the JSON Bedrock streams: sent whole when the call ends.

    def _close(self, out: list[dict[str, Any]], status: str = "completed") -> None:
        item, self._open = self._open, None
        if item is None:
            return
        final = item.item
        at = self._at(item)
        kind = final["type"]
        if kind == "message":
            out.append(self._event("response.output_text.done", **at, content_index=0, text=item.text, logprobs=[]))
            part = {"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}
            out.append(self._event("response.content_part.done", **at, content_index=0, part=part))
            final.update(status=status, content=[part])
        elif kind == "reasoning":
            self._close_reasoning(out, item)
        elif kind == "function_call":
            arguments = item.text or "{}"
            out.append(
                self._event("response.function_call_arguments.done", **at, name=final["name"], arguments=arguments)
            )
            final.update(arguments=arguments, status=status)
        else:
            final["input"] = custom_input(item.text)
            if final["input"]:
                out.append(self._event("response.custom_tool_call_input.delta", **at, delta=final["input"]))
            out.append(self._event("response.custom_tool_call_input.done", **at, input=final["input"]))
        # ``final`` is the response's own output item, completed in place.
        out.append(self._event("response.output_item.done", output_index=item.index, item=_public(final)))

    def _close_reasoning(self, out: list[dict[str, Any]], item: _Open) -> None:
        final, at = item.item, self._at(item)
        if item.text and self._request.reasoning_summary:
            part = {"type": "summary_text", "text": item.text}
            out.append(self._event("response.reasoning_summary_text.done", **at, summary_index=0, text=item.text))
            out.append(self._event("response.reasoning_summary_part.done", **at, summary_index=0, part=part))
            final["summary"] = [part]
        elif item.text:
            part = {"type": "reasoning_text", "text": item.text}
            out.append(self._event("response.reasoning_text.done", **at, content_index=0, text=item.text))
            out.append(self._event("response.content_part.done", **at, content_index=0, part=part))
            final["content"] = [part]
        block = None
        if item.redacted is not None:
            block = {"type": "redacted_thinking", "data": item.redacted}
        elif item.signature:
            block = {"type": "thinking", "thinking": item.text, "signature": item.signature}
        if self._request.encrypted_reasoning and block is not None:
            final["encrypted_content"] = reasoning_token(self._model, block)

    # -- events ----------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event

    def _snapshot(self, kind: str) -> dict[str, Any]:
        return self._event(kind, response=copy.deepcopy(self.response))


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of an item as it stands (later deltas must not change what an event already said)."""
    return copy.deepcopy(item)


def custom_input(arguments: str) -> str:
    """A custom (freeform) tool's raw input, from the one-string JSON Bedrock produced."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments  # not the JSON the model was asked for: its text is the best input there is
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def usage_of(entry: UsageEntry, reasoning_tokens: int = 0) -> dict[str, Any]:
    """A ``ResponseUsage`` for what was billed (``input_tokens`` includes cached tokens), plus ``cost_usd``."""
    usage = entry.usage
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "cost_usd": usd(entry.cost) or "0",
        **entry.served_fields(),
    }


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event, named by its type as OpenAI names them."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
