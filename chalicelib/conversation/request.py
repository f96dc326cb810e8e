"""The one internal request every protocol adapter translates into: a ``Conversation``.

OpenAI chat completions, the OpenAI Responses API, Anthropic's Messages API and
the MCP ``chat`` tool each parse their own wire format into this shape; the model
service admits, calls, bills and streams it once, and the adapter renders the
answer back. Adding a protocol means adding one adapter package, nothing below it.

Messages are kept in the chat-completions dialect that LiteLLM takes as input,
because that is what finally reaches Bedrock; a second internal dialect would
only add a translation. What an adapter may put in ``messages``:

* ``{"role": "system", "content": str | [text parts]}``, first (adapters merge
  system prompts there; Bedrock has one system block list); one further on
  (Claude Code's per-turn instructions) is sent where it stands, and LiteLLM
  turns it into a user turn in place;
* ``{"role": "user", "content": str | [parts]}`` with parts
  ``{"type": "text", "text": str}`` and
  ``{"type": "image_url", "image_url": {"url": "data:image/…;base64,…"}}``;
* ``{"role": "assistant", "content": str | [text parts] | None,
  "tool_calls": [{"id", "type": "function", "function": {"name", "arguments": json str}}],
  "thinking_blocks": [{"type": "thinking", "thinking": str, "signature": str} |
  {"type": "redacted_thinking", "data": str}]}`` (``tool_calls`` and
  ``thinking_blocks`` optional);
* ``{"role": "tool", "tool_call_id": str, "content": str | [text and image parts]}`` (an image a
  tool returned reaches Bedrock inside the tool result; set ``has_images``).

Any content part (text or image), a tool message and a tool definition may
carry ``"cache_control": {"type": "ephemeral"}``: a Bedrock cache point after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: How hard a reasoning model may think, in OpenAI's words (``reasoning_effort``).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


@dataclass(frozen=True)
class Reasoning:
    """Extended thinking: an OpenAI-style effort, or an Anthropic-style token budget (one of the two)."""

    effort: str | None = None
    budget_tokens: int | None = None

    @property
    def enabled(self) -> bool:
        return (self.effort is not None and self.effort != "none") or bool(self.budget_tokens)


@dataclass(frozen=True)
class Conversation:
    """One model request, whatever protocol it arrived in (validated by its adapter)."""

    #: The model as the caller named it (a catalog alias, a Bedrock id, an Anthropic id).
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    #: ``[{"type": "function", "function": {"name", "description"?, "parameters"}}]``.
    tools: list[dict[str, Any]] | None = None
    #: ``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function": {"name": …}}``.
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    #: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``.
    response_format: dict[str, Any] | None = None
    reasoning: Reasoning | None = None
    #: Who the caller says the end user is (logged, never sent to Bedrock).
    user: str | None = None
    has_images: bool = False
    #: Adapter-specific notes for the log line (e.g. the Anthropic betas a client asked for).
    annotations: dict[str, Any] = field(default_factory=dict)

    def but(self, **changes: Any) -> Conversation:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @property
    def thinks(self) -> bool:
        return self.reasoning is not None and self.reasoning.enabled

    @property
    def forces_tool(self) -> bool:
        return self.tool_choice == "required" or isinstance(self.tool_choice, dict)


EmbeddingInput = str | tuple[int, ...]


@dataclass(frozen=True)
class EmbeddingRequest:
    """A validated embeddings request; token-array inputs stay token ids until the gateway decodes them."""

    model: str
    inputs: tuple[EmbeddingInput, ...]
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
