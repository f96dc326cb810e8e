"""LiteLLM's stream chunks (ConverseStream, parsed) turned into the core's events."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib.conversation.events import (
    Event,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.shared.usage import TokenUsage

_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}


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
        cache_write_1h_tokens=min(cache_write, long_cache_writes(usage)),
    )


def long_cache_writes(usage: Any) -> int:
    """Cache writes Bedrock reported with a 1-hour TTL (its ``cacheDetails``, as LiteLLM splits them).

    LiteLLM gives the split only when it accounts for every write; without one (a model or
    response without ``cacheDetails``) every write is a 5-minute one, Bedrock's default TTL.
    """
    details = getattr(getattr(usage, "prompt_tokens_details", None), "cache_creation_token_details", None)
    return int(getattr(details, "ephemeral_1h_input_tokens", 0) or 0)


def usage_report(usage: Any, trace: Any = None) -> UsageReport:
    details = getattr(usage, "completion_tokens_details", None)
    reasoning = int(getattr(details, "reasoning_tokens", 0) or 0)
    return UsageReport(usage_from_litellm(usage), reasoning_tokens=reasoning, guardrail_units=guardrail_units(trace))


def guardrail_units(trace: Any) -> dict[str, int]:
    """The text units a guardrail's trace reports, per usage counter, summed over every assessment.

    Bedrock's trace (``trace.guardrail``) holds the prompt's assessment per guardrail
    (``inputAssessment``: ``{id: assessment}``) and the answer's (``outputAssessments``:
    ``{id: [assessment, …]}``, one per chunk it assessed); each assessment's
    ``invocationMetrics.usage`` counts what Bedrock bills.
    """
    guardrail = trace.get("guardrail") if isinstance(trace, dict) else None
    if not isinstance(guardrail, dict):
        return {}
    assessments: list[Any] = list((guardrail.get("inputAssessment") or {}).values())
    for items in (guardrail.get("outputAssessments") or {}).values():
        assessments.extend(items if isinstance(items, list) else [items])
    totals: dict[str, int] = {}
    for assessment in assessments:
        metrics = assessment.get("invocationMetrics") if isinstance(assessment, dict) else None
        usage = metrics.get("usage") if isinstance(metrics, dict) else None
        for counter, count in (usage or {}).items():
            if counter.endswith("Units") and isinstance(count, int) and not isinstance(count, bool) and count > 0:
                totals[counter] = totals.get(counter, 0) + count
    return totals


def _field(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)``, without pydantic's slow way of saying a field is absent.

    LiteLLM's chunks, choices, deltas and tool calls are pydantic models that keep most values as
    extras and drop the fields they leave unset: reading an absent one goes through pydantic's
    ``__getattr__``, which builds and raises an ``AttributeError`` (dozens per answer, each several
    times a present field's cost). A pydantic model's values are read from its storage instead
    (its fields, then its extras); an attribute of its class (a property, a method) and any other
    object are read with ``getattr``.
    """
    stored = getattr(obj, "__dict__", None)
    extras = getattr(obj, "__pydantic_extra__", _NOT_PYDANTIC)
    if stored is None or extras is _NOT_PYDANTIC:
        return getattr(obj, name, None)
    if name in stored:
        return stored[name]
    if extras and name in extras:
        return extras[name]
    on_class = _ON_CLASS.get((type(obj), name))
    if on_class is None:
        on_class = _ON_CLASS[type(obj), name] = any(name in cls.__dict__ for cls in type(obj).__mro__)
    return getattr(obj, name, None) if on_class else None


_NOT_PYDANTIC = object()
#: Whether a class (or a base) defines an attribute: (class, name) → bool, for the few LiteLLM reads.
_ON_CLASS: dict[tuple[type, str], bool] = {}


def finish_reason(value: Any, has_tool_calls: bool) -> str:
    """OpenAI's finish reason for what LiteLLM reported (a call made means ``tool_calls``)."""
    if has_tool_calls:
        return "tool_calls"
    return value if value in _FINISH_REASONS else "stop"


class StreamTranslator:
    """Turns LiteLLM stream chunks into events, with dense 0-based tool-call indexes."""

    def __init__(self, max_tool_calls: int | None = None) -> None:
        self._max_tool_calls = max_tool_calls
        self._tool_index: dict[Any, int] = {}
        self._calls = 0
        self._started: set[int] = set()
        self._last_tool: int | None = None
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.trace: Any = None

    def events(self, chunks: Iterable[Any]) -> Iterator[Event]:
        """Content events as chunks arrive; then ``Finished`` and ``UsageReport`` once the stream is done.

        A stream that ends without a finish reason yields neither: the caller decides it was cut.
        """
        for chunk in chunks:
            yield from self.feed(chunk)
        if self.finish_reason is not None:
            yield Finished(finish_reason(self.finish_reason, bool(self._calls)))
            if self.usage is not None:
                yield usage_report(self.usage, self.trace)

    def feed(self, chunk: Any) -> Iterator[Event]:
        if isinstance(chunk, dict):
            # LiteLLM's generic chunk (Bedrock's messageStart, or a provider it does not parse further).
            if chunk.get("text"):
                yield TextDelta(chunk["text"])
            if chunk.get("finish_reason"):
                self.finish_reason = chunk["finish_reason"]
            return
        usage = _field(chunk, "usage")
        if usage is not None:
            self.usage = usage
        extra = _field(chunk, "provider_specific_fields")
        if isinstance(extra, dict) and extra.get("trace"):
            self.trace = extra["trace"]  # a guardrail's assessments, with the text units it used
        for choice in _field(chunk, "choices") or []:
            delta = _field(choice, "delta")
            blocks = _field(delta, "thinking_blocks") or []
            for block in blocks:
                if block.get("type") == "redacted_thinking":
                    yield ReasoningDelta(redacted=block.get("data") or "")
                elif block.get("signature"):
                    yield ReasoningDelta(text=block.get("thinking") or "", signature=block["signature"])
            reasoning = _field(delta, "reasoning_content")
            if reasoning and not any(b.get("signature") for b in blocks):
                yield ReasoningDelta(text=reasoning)
            content = _field(delta, "content")
            if content:
                yield TextDelta(content)
            for call in _field(delta, "tool_calls") or []:
                yield from self._tool_events(call)
            reason = _field(choice, "finish_reason")
            if reason:
                self.finish_reason = reason

    def _tool_events(self, call: Any) -> Iterator[Event]:
        upstream_index = _field(call, "index")
        call_id = _field(call, "id")
        function = _field(call, "function")
        name = _field(function, "name")
        arguments = _field(function, "arguments") or ""
        if call_id and call_id not in self._tool_index:
            # A new call: the next dense index, whatever LiteLLM numbered it.
            index = self._calls
            self._calls += 1
            self._tool_index[call_id] = index
            if upstream_index is not None:
                self._tool_index[("upstream", upstream_index)] = index
            self._last_tool = index
            if self._max_tool_calls is None or index < self._max_tool_calls:
                self._started.add(index)
                yield ToolCallStart(index, call_id, name or "")
        else:
            index = self._tool_index.get(call_id) if call_id else self._tool_index.get(("upstream", upstream_index))
            if index is None:
                index = self._last_tool if self._last_tool is not None else 0
            self._last_tool = index
        if arguments and index in self._started:
            yield ToolCallDelta(index, arguments)
