"""The emulator's second mode: an OpenAI-compatible upstream (what vLLM, Ollama or OpenAI itself serve).

Served under ``/openai/v1`` of the same server: ``POST /chat/completions`` (streamed as SSE
with ``stream_options.include_usage``, or whole), ``POST /embeddings``, ``GET /models``. It
answers like the Bedrock side (the user's words quoted back, tools called with arguments
from their schema, the same ``#emulator:`` directives, the same honest token counts), so the
gateway's OpenAI-compatible provider is tested offline end to end. A server started with an
API key (``--openai-key``) refuses any other as OpenAI does (401 ``invalid_api_key``).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .answers import _cut_text, filler_text, tool_use_id
from .directives import parse_directives, raise_fault, strip_directives
from .errors import BedrockError
from .schema_values import example_value
from .tokens import count_tokens, split_for_stream

PREFIX = "/openai/v1"
MAX_OUTPUT_TOKENS = 8_192
_STATUS_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 429: "rate_limit_error"}  # fmt: skip


class OpenAIError(Exception):
    """An error answer in OpenAI's envelope."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = _STATUS_TYPES.get(self.status, "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def from_bedrock(error: BedrockError) -> OpenAIError:
    """A directive's fault, as an OpenAI-compatible server would answer it."""
    status = {424: 500, 408: 504}.get(error.status, error.status)
    return OpenAIError(status, error.message, code=error.name)


@dataclass
class Reply:
    """A composed answer: text or tool calls, why it stopped, and its token counts."""

    text: str | None
    calls: list[dict[str, Any]]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    directives: Any = None
    chunks: list[dict[str, Any]] = field(default_factory=list)


def check_key(headers: Mapping[str, str], expected: str | None) -> None:
    """Refuse a request without the server's key (when it has one)."""
    if expected is None:
        return
    auth = headers.get("Authorization") or ""
    if auth != f"Bearer {expected}":
        raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return []


def compose(body: Mapping[str, Any]) -> Reply:
    """The deterministic answer to a chat completion request (validated like OpenAI's API)."""
    messages = body.get("messages")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise OpenAIError(400, f"Invalid value for 'messages[{index}].role'.", param=f"messages[{index}].role")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or MAX_OUTPUT_TOKENS
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_OUTPUT_TOKENS:
        raise OpenAIError(400, f"max_tokens must be from 1 to {MAX_OUTPUT_TOKENS}.", param="max_tokens")
    tools = body.get("tools") or []
    user_texts = [t for m in messages if m.get("role") == "user" for t in _texts(m.get("content"))]
    last = messages[-1]
    last_texts = _texts(last.get("content")) if last.get("role") == "user" else []
    found = parse_directives(user_texts, last_texts)
    raise_fault(found)
    if found.sleep:
        time.sleep(found.sleep)
    prompt_tokens = sum(count_tokens(t) for m in messages for t in _texts(m.get("content")))
    prompt_tokens += sum(count_tokens(json.dumps(m.get("tool_calls"))) for m in messages if m.get("tool_calls"))
    prompt_tokens += count_tokens(json.dumps(tools)) if tools else 0
    prompt_tokens += 4 * len(messages) + (found.cache_read or 0)
    raw_last = " ".join(last_texts)
    prompt = strip_directives(raw_last)
    calls = _calls(body, tools, found, raw_last, prompt, last)
    if calls:
        arguments = sum(count_tokens(c["function"]["arguments"]) for c in calls)
        return Reply(None, calls, "tool_calls", prompt_tokens, arguments, found.cache_read or 0, found)
    if found.tokens is not None:
        text = filler_text(found.tokens)
    elif last.get("role") == "tool":
        text = f"Tool returned: {' '.join(_texts(last.get('content')))[:300]}"
    else:
        text = f'You said: "{prompt}"'
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else list(stops)
    kept, reason, _ = _cut_text(text, limit, stops)
    finish = "length" if reason == "max_tokens" else "stop"
    return Reply(kept, [], finish, prompt_tokens, count_tokens(kept), found.cache_read or 0, found)


def _calls(
    body: Mapping[str, Any], tools: list[Any], found: Any, raw_last: str, prompt: str, last: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if not tools or body.get("tool_choice") == "none" or last.get("role") == "tool":
        return []
    named = {t["function"]["name"]: t["function"] for t in tools if isinstance(t, dict) and "function" in t}
    choice = body.get("tool_choice")
    chosen = None
    if isinstance(choice, dict):
        chosen = named.get(choice.get("function", {}).get("name"))
    elif choice == "required" or found.tool:
        chosen = named.get(found.tool_name or "") or next(iter(named.values()), None)
    else:
        chosen = next((f for name, f in named.items() if name.lower() in raw_last.lower()), None)
    if chosen is None:
        return []
    value = example_value(chosen.get("parameters") or {"type": "object"}, prompt)
    arguments = value if isinstance(value, dict) else {"value": value}
    call_id = "call_" + tool_use_id(body["model"], raw_last, chosen["name"]).removeprefix("tooluse_")
    return [
        {"id": call_id, "type": "function", "function": {"name": chosen["name"], "arguments": json.dumps(arguments)}}
    ]


def usage_of(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }


def completion_body(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.calls:
        message["tool_calls"] = reply.calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason, "logprobs": None}],
        "usage": usage_of(reply),
    }


def stream_chunks(body: Mapping[str, Any], reply: Reply) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order (usage last when asked)."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body["model"]}  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    for piece in split_for_stream(reply.text or ""):
        chunks.append(chunk({"content": piece}))
    for index, call in enumerate(reply.calls):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        chunks.append(chunk({"tool_calls": [head]}))
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), 16):
            piece = arguments[start : start + 16]
            chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, reply.finish_reason))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage_of(reply)})
    return chunks


def sse(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for item in chunks:
        yield f"data: {json.dumps(item)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def embeddings_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Deterministic unit vectors, one per input; usage counts their tokens."""
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise OpenAIError(400, "'input' must be a non-empty string or array of strings.", param="input")
    dims = body.get("dimensions") or 16
    if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 4096:
        raise OpenAIError(400, "'dimensions' must be from 1 to 4096.", param="dimensions")
    raise_fault(parse_directives(inputs, []))
    data = []
    for index, text in enumerate(inputs):
        seed = hashlib.sha256(f"{body.get('model')}|{text}".encode()).digest()
        raw = [(seed[i % len(seed)] - 128) / 128 for i in range(dims)]
        norm = sum(v * v for v in raw) ** 0.5 or 1.0
        data.append({"object": "embedding", "index": index, "embedding": [v / norm for v in raw]})
    tokens = sum(count_tokens(t) for t in inputs)
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def models_body(models: tuple[str, ...]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "emulator"} for m in models],
    }
