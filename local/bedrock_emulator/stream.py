"""The ConverseStream event sequence for an answer, in real Bedrock's order."""

from __future__ import annotations

import json
from collections.abc import Mapping

from .answers import Answer, ReasoningBlock, TextBlock, ToolUseBlock
from .tokens import split_for_stream

Event = tuple[str, Mapping[str, object]]

_TOOL_INPUT_FRAGMENT_CHARS = 16


def _fragments(text: str, size: int) -> list[str]:
    """text in consecutive slices of size characters."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_events(answer: Answer) -> list[Event]:
    """messageStart, per-block [start] deltas stop, messageStop, metadata."""
    events: list[Event] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(answer.blocks):
        # Bedrock sends contentBlockStart only for toolUse; text and reasoning start with a delta.
        if isinstance(block, TextBlock):
            for piece in split_for_stream(block.text):
                events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}}))
        elif isinstance(block, ReasoningBlock):
            for piece in split_for_stream(block.text):
                events.append(
                    ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": piece}}})
                )
            events.append(
                (
                    "contentBlockDelta",
                    {"contentBlockIndex": index, "delta": {"reasoningContent": {"signature": block.signature}}},
                )
            )
        elif isinstance(block, ToolUseBlock):
            start = {"toolUse": {"toolUseId": block.tool_use_id, "name": block.name}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            raw = json.dumps(dict(block.input), ensure_ascii=False)
            for piece in _fragments(raw, _TOOL_INPUT_FRAGMENT_CHARS):
                events.append(
                    ("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}})
                )
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    stop: dict[str, object] = {"stopReason": answer.stop_reason}
    if answer.additional_fields is not None:
        stop["additionalModelResponseFields"] = answer.additional_fields
    events.append(("messageStop", stop))
    metadata: dict[str, object] = {"usage": answer.usage(), "metrics": {"latencyMs": answer.latency_ms}}
    if answer.trace is not None:
        metadata["trace"] = answer.trace
    events.append(("metadata", metadata))
    return events


def cut_point(events: list[Event]) -> int:
    """How many events a cut stream sends: messageStart plus about half the first block's deltas."""
    first_stop = next((i for i, (name, _) in enumerate(events) if name == "contentBlockStop"), None)
    if first_stop is None:
        return 1
    content_events = first_stop - 1
    return 1 + max(1, content_events // 2)
