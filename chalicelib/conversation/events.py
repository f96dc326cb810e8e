"""The one internal stream of events a model answer is made of, and its accumulation.

The gateway turns Bedrock's answer (streamed or not) into these events; the
model service adds exactly one closing event (``Billed`` or ``Failed``) once the call is
billed; each protocol adapter renders them in its own wire format, chunk by
chunk, or accumulates them with ``Completion`` for a non-streamed answer.

Order, as a protocol needs it: content events (reasoning, text, tool calls, in
the order the model produced them), then ``Finished``, then ``UsageReport``,
then ``Billed``. A stream cut short ends with ``Failed`` instead of
``Finished`` (usage and billing still happen: ``Failed.entry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalicelib.shared.usage import TokenUsage

if TYPE_CHECKING:
    from chalicelib.errors import AppError
    from chalicelib.shared.usage import UsageEntry


@dataclass(frozen=True)
class TextDelta:
    """More answer text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """More reasoning ("thinking") text; the block's ``signature`` arrives on its last delta.

    ``redacted`` carries an encrypted thinking block instead of text (Anthropic models).
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(frozen=True)
class ToolCallStart:
    """A new tool call; ``index`` is dense and 0-based in the order calls start."""

    index: int
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    """More of a tool call's arguments (a JSON text, in pieces)."""

    index: int
    arguments: str


@dataclass(frozen=True)
class Finished:
    """The model finished: ``stop``, ``length``, ``tool_calls`` or ``content_filter``.

    ``stop_sequence`` is the stop sequence that ended the answer, when Bedrock says which.
    """

    reason: str
    stop_sequence: str | None = None


@dataclass(frozen=True)
class UsageReport:
    """Bedrock's token counts for the whole call (``estimated`` when the stream was cut before it reported).

    ``guardrail_units`` are the text units a guardrail assessed, by Bedrock's usage counter
    (``contentPolicyUnits``, …), summed over the prompt's and the answer's assessments.
    """

    usage: TokenUsage
    reasoning_tokens: int = 0
    estimated: bool = False
    guardrail_units: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Billed:
    """The call is over and billed: the last event of a complete answer."""

    entry: UsageEntry


@dataclass(frozen=True)
class Failed:
    """The answer broke off (upstream failure, cut stream, out of time): the last event.

    What was generated before is billed (``entry``, status ``partial``) unless
    nothing billable was produced (``entry`` is None).
    """

    error: AppError
    entry: UsageEntry | None = None


Event = TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | Finished | UsageReport | Billed | Failed


@dataclass
class Block:
    """One piece of a finished answer, in the order the model produced them."""

    kind: str  # "reasoning", "text" or "tool_call"
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    call_id: str = ""
    name: str = ""

    @property
    def arguments(self) -> str:
        """A tool call's arguments (its JSON text)."""
        return self.text


@dataclass
class Completion:
    """A whole answer, accumulated from events (non-streamed answers, MCP, tests)."""

    blocks: list[Block] = field(default_factory=list)
    finish_reason: str | None = None
    stop_sequence: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    reasoning_tokens: int = 0
    entry: UsageEntry | None = None
    error: AppError | None = None

    def add(self, event: Event) -> None:
        """Fold one event in."""
        match event:
            case TextDelta(text=text):
                self._open("text").text += text
            case ReasoningDelta():
                if event.redacted is not None:
                    self.blocks.append(Block("reasoning", redacted=event.redacted))
                    return
                block = self._open("reasoning")
                block.text += event.text
                if event.signature:
                    block.signature = event.signature
            case ToolCallStart(call_id=call_id, name=name):
                self.blocks.append(Block("tool_call", call_id=call_id, name=name))
            case ToolCallDelta(index=index, arguments=arguments):
                self.tool_calls[index].text += arguments
            case Finished(reason=reason, stop_sequence=stop_sequence):
                self.finish_reason, self.stop_sequence = reason, stop_sequence
            case UsageReport(usage=usage, reasoning_tokens=reasoning_tokens):
                self.usage, self.reasoning_tokens = usage, reasoning_tokens
            case Billed(entry=entry):
                self.entry = entry
            case Failed(error=error, entry=entry):
                self.error, self.entry = error, entry

    def _open(self, kind: str) -> Block:
        # Consecutive deltas of one kind extend one block; a signed reasoning block is closed.
        last = self.blocks[-1] if self.blocks else None
        if last is None or last.kind != kind or last.signature is not None or last.redacted is not None:
            last = Block(kind)
            self.blocks.append(last)
        return last

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks if b.kind == "text")

    @property
    def reasoning(self) -> str:
        return "".join(b.text for b in self.blocks if b.kind == "reasoning")

    @property
    def tool_calls(self) -> list[Block]:
        return [b for b in self.blocks if b.kind == "tool_call"]

    @classmethod
    def of(cls, events: Any) -> Completion:
        """Accumulate every event of an iterable."""
        completion = cls()
        for event in events:
            completion.add(event)
        return completion
