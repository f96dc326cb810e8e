"""Deterministic answers to validated Converse requests: content, stop reason and usage."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .content import LastTurn, signature_for
from .converse_request import ConverseRequest, ToolSpec
from .directives import Directives, help_text, strip_directives
from .errors import validation
from .guardrails import trace as guardrail_trace
from .schema_values import example_value
from .tokens import count_tokens, end_of_token, truncate_to_tokens

FILLER_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do")
_TOOL_RESULT_CAP = 300
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class TextBlock:
    """An assistant text block."""

    text: str


@dataclass(frozen=True)
class ReasoningBlock:
    """A reasoningContent block with its signature."""

    text: str
    signature: str


@dataclass(frozen=True)
class ToolUseBlock:
    """A toolUse block."""

    tool_use_id: str
    name: str
    input: Mapping[str, object]


Block = TextBlock | ReasoningBlock | ToolUseBlock


@dataclass(frozen=True)
class Answer:
    """The model's reply with everything needed for both Converse and ConverseStream."""

    blocks: tuple[Block, ...]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_read: int | None
    cache_write: int | None
    latency_ms: int
    additional_fields: Mapping[str, object] | None
    #: The guardrail's trace (``{"guardrail": …}``), when the request asked for one with trace enabled.
    trace: Mapping[str, object] | None = None
    #: How the cache writes split by TTL (Bedrock's ``cacheDetails``): (ttl, tokens) pairs.
    cache_details: tuple[tuple[str, int], ...] = ()

    def usage(self) -> dict[str, int]:
        """TokenUsage; totalTokens also counts cache reads and writes, as Bedrock does."""
        usage = {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens}
        total = self.input_tokens + self.output_tokens
        if self.cache_read is not None:
            usage["cacheReadInputTokens"] = self.cache_read
            total += self.cache_read
        if self.cache_write is not None:
            usage["cacheWriteInputTokens"] = self.cache_write
            total += self.cache_write
        usage["totalTokens"] = total
        if self.cache_details:
            usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": tokens} for ttl, tokens in self.cache_details]
        return usage

    def converse_body(self) -> dict[str, object]:
        """The Converse response JSON."""
        body: dict[str, object] = {
            "output": {"message": {"role": "assistant", "content": [block_json(b) for b in self.blocks]}},
            "stopReason": self.stop_reason,
            "usage": self.usage(),
            "metrics": {"latencyMs": self.latency_ms},
        }
        if self.additional_fields is not None:
            body["additionalModelResponseFields"] = self.additional_fields
        if self.trace is not None:
            body["trace"] = self.trace
        return body


def block_json(block: Block) -> dict[str, object]:
    """A content block as Converse JSON."""
    if isinstance(block, TextBlock):
        return {"text": block.text}
    if isinstance(block, ReasoningBlock):
        return {"reasoningContent": {"reasoningText": {"text": block.text, "signature": block.signature}}}
    return {"toolUse": {"toolUseId": block.tool_use_id, "name": block.name, "input": dict(block.input)}}


def _digest(*parts: object) -> bytes:
    """sha256 of the parts joined with '|'."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()


def tool_use_id(*parts: object) -> str:
    """A deterministic 'tooluse_' id of 22 alphanumerics, like Bedrock's."""
    number = int.from_bytes(_digest(*parts), "big")
    chars = []
    for _ in range(22):
        number, rest = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[rest])
    return "tooluse_" + "".join(chars)


def filler_text(count: int) -> str:
    """Exactly count tokens of filler words."""
    return " ".join(FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(count))


def _mentions(text: str, name: str) -> bool:
    """True when text names the tool as a whole word (case-insensitive)."""
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(name)}(?![A-Za-z0-9_-])", text, re.IGNORECASE) is not None


def _choose_tools(req: ConverseRequest, found: Directives, raw_last: str) -> list[ToolSpec]:
    """The tools the model calls this turn (empty when it answers in text)."""
    if not req.tools:
        return []
    by_name = {t.name: t for t in req.tools}
    mentioned = next((t for t in req.tools if _mentions(raw_last, t.name)), None)
    if found.tool_name is not None and found.tool_name not in by_name:
        raise validation(f"#emulator:tool={found.tool_name} names no tool in toolConfig.tools ({', '.join(by_name)}).")
    if req.tool_choice == "tool" and req.tool_choice_name is not None:
        first = by_name[req.tool_choice_name]
    elif req.tool_choice == "any" or found.tool or found.parallel:
        first = by_name.get(found.tool_name or "") or mentioned or req.tools[0]
    elif req.last_user.tool_results or mentioned is None:
        return []
    else:
        first = mentioned
    if not found.parallel:
        return [first]
    if req.tool_choice == "tool":
        return [first, first]
    second = next((t for t in req.tools if t.name != first.name), first)
    return [first, second]


def _describe_media(last: LastTurn) -> list[str]:
    """Phrases for the images and documents of the last user message."""
    items = [f"an image ({fmt}, {size} bytes)" for fmt, size in last.images]
    items += [f'a document "{name}" ({fmt}, {size} bytes)' for name, fmt, size in last.documents]
    return items


def _echo(prompt: str, last: LastTurn) -> str:
    """The default reply: the user's words quoted back, plus any media."""
    media = _describe_media(last)
    if last.texts or not media:
        text = f'You said: "{prompt}"'
        return text + (f" You also sent {' and '.join(media)}." if media else "")
    return f"You sent {' and '.join(media)}."


def _tool_summary(last: LastTurn) -> str:
    """A reply summarising the toolResult blocks of the last user message."""
    parts = []
    for name, status, content in last.tool_results:
        shown = content if len(content) <= _TOOL_RESULT_CAP else content[:_TOOL_RESULT_CAP] + "..."
        verb = "failed with" if status == "error" else "returned"
        parts.append(f"Tool {name} {verb}: {shown}")
    return " ".join(parts)


def _main_text(req: ConverseRequest, found: Directives, prompt: str, tools: Sequence[ToolSpec]) -> str | None:
    """The text block of the reply, or None when the reply has no text."""
    if found.help:
        return help_text()
    if found.tokens is not None:
        return filler_text(found.tokens)
    if tools:
        if req.model.provider == "anthropic" and req.tool_choice not in ("any", "tool"):
            names = list(dict.fromkeys(t.name for t in tools))
            return f"I'll use the {' and '.join(names)} tool{'s' if len(names) > 1 else ''}."
        return None
    if req.output_schema is not None:
        return json.dumps(example_value(req.output_schema, prompt), ensure_ascii=False)
    if req.last_user.tool_results and not req.last_user.texts:
        return _tool_summary(req.last_user)
    return _echo(prompt, req.last_user)


def _reasoning_text(prompt: str, tools: Sequence[ToolSpec]) -> str:
    """The reasoning the model 'thinks' before answering."""
    plan = f"I will call {tools[0].name} to answer." if tools else "I will answer by quoting it back."
    return f'The user said: "{prompt}". {plan}'


def _cut_text(text: str, budget: int, stops: Sequence[str]) -> tuple[str, str | None, str | None]:
    """Apply stop sequences and the token budget: (kept text, stop reason or None, matched stop)."""
    stop_at, matched = None, None
    for seq in stops:
        at = text.find(seq)
        if at >= 0 and (stop_at is None or at < stop_at):
            stop_at, matched = at, seq
    budget_end = end_of_token(text, budget)
    # Whichever completes first while generating wins: the budget's last token or the stop sequence.
    if (
        budget_end is not None
        and count_tokens(text) > budget
        and (stop_at is None or budget_end < stop_at + len(matched or ""))
    ):
        return text[:budget_end], "max_tokens", None
    if stop_at is not None:
        return text[:stop_at], "stop_sequence", matched
    return text, None, None


def _select_paths(source: Mapping[str, object], paths: Sequence[str]) -> dict[str, object] | None:
    """The parts of source named by JSON pointers, nested as in source."""
    out: dict[str, object] = {}
    for path in paths:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
        node: object = source
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is None or not keys:
            continue
        target = out
        for key in keys[:-1]:
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            target = child
        target[keys[-1]] = node
    return out or None


def compose(req: ConverseRequest, found: Directives) -> Answer:
    """Build the deterministic answer for a validated request, as its guardrail (if any) lets it out."""
    call = req.guardrail
    if call is None:
        return _model_answer(req, found)
    if found.guardrail == "input":
        # The prompt is blocked before the model sees it: no tokens, no answer to assess.
        return Answer(
            blocks=(TextBlock(call.spec.blocked_input),),
            stop_reason="guardrail_intervened",
            input_tokens=0,
            output_tokens=0,
            reasoning_tokens=0,
            cache_read=None,
            cache_write=None,
            latency_ms=30,
            additional_fields=None,
            trace=guardrail_trace(call, req.guarded_characters, None, blocked_input=True, blocked_output=False)
            if call.trace
            else None,
        )
    answer = _model_answer(req, found)
    produced = sum(len(_block_text(block)) for block in answer.blocks)
    blocked = found.guardrail == "output"
    traced = (
        guardrail_trace(call, req.guarded_characters, produced, blocked_input=False, blocked_output=blocked)
        if call.trace
        else None
    )
    if not blocked:
        return replace(answer, trace=traced)
    # Generated (and billed) in full, then withheld: the guardrail's message goes out instead.
    return replace(
        answer, blocks=(TextBlock(call.spec.blocked_output),), stop_reason="guardrail_intervened", trace=traced
    )


def _block_text(block: Block) -> str:
    if isinstance(block, ToolUseBlock):
        return json.dumps(dict(block.input), ensure_ascii=False)
    return block.text


def _model_answer(req: ConverseRequest, found: Directives) -> Answer:
    """The model's own answer to a validated request."""
    raw_last = " ".join(req.last_user.texts)
    prompt = strip_directives(raw_last)
    string_source = prompt or strip_directives(" ".join(req.user_texts))
    tools = [] if found.help else _choose_tools(req, found, raw_last)
    planned: list[Block] = []
    if req.thinking:
        planned.append(ReasoningBlock(_reasoning_text(prompt, tools), ""))
    main = _main_text(req, found, prompt, tools)
    if main:
        planned.append(TextBlock(main))
    for i, tool in enumerate(tools):
        tool_input = example_value(tool.schema, string_source)
        input_obj = tool_input if isinstance(tool_input, Mapping) else {"value": tool_input}
        planned.append(
            ToolUseBlock(
                tool_use_id(req.model.model_id, req.input_tokens, raw_last, tool.name, i), tool.name, input_obj
            )
        )

    budget = req.max_tokens
    blocks: list[Block] = []
    stop_reason, matched = ("tool_use" if tools else "end_turn"), None
    reasoning_tokens = 0
    for block in planned:
        if isinstance(block, ReasoningBlock):
            text = truncate_to_tokens(block.text, budget)
            reasoning_tokens = count_tokens(text)
            budget -= reasoning_tokens
            blocks.append(ReasoningBlock(text, signature_for(text)))
            if text != block.text:
                stop_reason = "max_tokens"
                break
        elif isinstance(block, TextBlock):
            text, cut_reason, matched = _cut_text(block.text, budget, req.stop_sequences)
            budget -= count_tokens(text)
            if text:
                blocks.append(TextBlock(text))
            if cut_reason is not None:
                stop_reason = cut_reason
                break
        else:
            cost = count_tokens(json.dumps(dict(block.input), ensure_ascii=False))
            if cost > budget:
                stop_reason = "max_tokens"
                break
            budget -= cost
            blocks.append(block)
    output_tokens = req.max_tokens - budget
    additional = None
    if req.model.provider == "anthropic" and req.response_field_paths:
        native = {
            "stop_reason": stop_reason,
            "stop_sequence": matched,
            "usage": {
                "input_tokens": req.input_tokens,
                "output_tokens": output_tokens,
                "output_tokens_details": {"thinking_tokens": reasoning_tokens},
            },
        }
        additional = _select_paths(native, req.response_field_paths)
    return Answer(
        blocks=tuple(blocks),
        stop_reason=stop_reason,
        input_tokens=req.input_tokens,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning_tokens,
        cache_read=found.cache_read,
        cache_write=_cache_writes(found),
        latency_ms=40 + 3 * output_tokens + int(found.sleep * 1000),
        additional_fields=additional,
        cache_details=_cache_details(req, found),
    )


def _cache_writes(found: Directives) -> int | None:
    if found.cache_write is None and found.cache_write_1h is None:
        return None
    return (found.cache_write or 0) + (found.cache_write_1h or 0)


def _cache_details(req: ConverseRequest, found: Directives) -> tuple[tuple[str, int], ...]:
    """The writes by TTL: ``cache_write`` at the request's cache-point TTL ("1h" if a point asks for it),
    ``cache_write_1h`` at an hour; none without writes or cache points (what Bedrock omits too)."""
    if _cache_writes(found) is None or not (req.cache_ttls or found.cache_write_1h):
        return ()
    details: dict[str, int] = {}
    if found.cache_write:
        ttl = "1h" if "1h" in req.cache_ttls else "5m"
        details[ttl] = found.cache_write
    if found.cache_write_1h:
        details["1h"] = details.get("1h", 0) + found.cache_write_1h
    return tuple(details.items())
