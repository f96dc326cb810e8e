"""Anthropic messages and content blocks → the chat-completions messages of ``Conversation``, in one call.

``tool_result`` blocks become ``tool`` messages where they stand, ``tool_use``
blocks ``tool_calls``, ``thinking``/``redacted_thinking`` blocks
``thinking_blocks`` (with their signatures, so Bedrock can verify them next
turn), images data URLs, and ``cache_control`` stays on the part it marks.
Every block type and field has a policy: translated, or a 400 naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.protocols.anthropic.values import cache_control, effort_of, only

#: Bedrock's image formats (Anthropic's media types).
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: How Claude Code's system block for Anthropic's billing attribution starts.
BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"


@dataclass(frozen=True)
class Translated:
    """A request's ``system`` and ``messages`` as chat-completions messages, and what they tell the request."""

    messages: list[dict[str, Any]]
    has_images: bool
    #: Tool names a ``tool_reference`` or an earlier ``tool_use`` has loaded (deferred loading).
    referenced_tools: frozenset[str]
    #: The effort a per-turn ``system`` message set last (``output_config.effort``), if any.
    turn_effort: str | None


def translate(present: Mapping[str, Any]) -> Translated:
    """The ``system`` prompt and ``messages`` of a request body, translated.

    Raises
    ------
    InvalidRequest
        A message or content block that is missing, malformed or unsupported; the message names its path.
    """
    translator = _Translator()
    messages: list[dict[str, Any]] = []
    if "system" in present:
        system = translator.system(present["system"])
        if system is not None:
            messages.append(system)
    messages += translator.messages(present.get("messages"))
    return Translated(messages, translator.has_images, frozenset(translator.referenced_tools), translator.turn_effort)


class _Translator:
    """Anthropic messages → chat-completions messages, gathering what the request as a whole needs."""

    def __init__(self) -> None:
        self.has_images = False
        #: Tool names a ``tool_reference`` or an earlier ``tool_use`` has loaded (deferred loading).
        self.referenced_tools: set[str] = set()
        #: The effort a per-turn ``system`` message set last (``output_config.effort``), if any.
        self.turn_effort: str | None = None

    def system(self, value: Any) -> dict[str, Any] | None:
        if isinstance(value, str):
            return {"role": "system", "content": value} if value.strip() else None
        if not isinstance(value, list):
            raise InvalidRequest("system: Input should be a string or a list of text blocks", param="system")
        parts = [self._text_block(block, f"system.{i}") for i, block in enumerate(value)]
        # Claude Code's attribution line for Anthropic's billing is metadata, not an instruction (LiteLLM
        # drops it for Bedrock too); dropping it also keeps the cached prefix the same across versions.
        parts = [p for p in parts if not p["text"].startswith(BILLING_HEADER_PREFIX)]
        return {"role": "system", "content": parts} if parts else None

    def messages(self, value: Any) -> list[dict[str, Any]]:
        if value is None:
            raise InvalidRequest("messages: Field required", param="messages")
        if not isinstance(value, list) or not value:
            raise InvalidRequest("messages: at least one message is required", param="messages")
        out: list[dict[str, Any]] = []
        for i, message in enumerate(value):
            where = f"messages.{i}"
            if not isinstance(message, dict):
                raise InvalidRequest(f"{where}: Input should be an object", param=where)
            role = message.get("role")
            allowed = {"role", "content", "output_config"} if role == "system" else {"role", "content"}
            for name in message:
                if name not in allowed:
                    raise InvalidRequest(f"{where}.{name}: Extra inputs are not permitted", param=f"{where}.{name}")
            content = message.get("content")
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            if not isinstance(content, list):
                raise InvalidRequest(
                    f"{where}.content: Input should be a string or a list of content blocks", param=f"{where}.content"
                )
            if role == "user":
                out += self._user(content, where)
            elif role == "assistant":
                out += self._assistant(content, where)
            elif role == "system":
                out += self._turn_system(message, content, where)
            else:
                raise InvalidRequest(
                    f"{where}.role: Input should be 'user', 'assistant' or 'system'", param=f"{where}.role"
                )
        if not any(m["role"] in ("user", "tool") for m in out):
            raise InvalidRequest("messages: at least one user message is required", param="messages")
        return out

    # -- user turns: text, images, tool results ---------------------------------------------------

    def _user(self, blocks: list[Any], where: str) -> list[dict[str, Any]]:
        # Tool results become ``tool`` messages, in place; the text around them stays a user turn.
        out: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block_type(block, at)
            if kind == "tool_result":
                if parts:
                    out.append({"role": "user", "content": parts})
                    parts = []
                out.append(self._tool_result(block, at))
            elif kind == "text":
                parts.append(self._text_block(block, at))
            elif kind == "image":
                parts.append(self._image(block, at))
            else:
                raise unsupported_block(kind, at, "user")
        if parts:
            out.append({"role": "user", "content": parts})
        if not out:
            raise InvalidRequest(
                f"{where}.content: a message needs at least one content block", param=f"{where}.content"
            )
        return out

    def _tool_result(self, block: Mapping[str, Any], at: str) -> dict[str, Any]:
        only(block, {"type", "tool_use_id", "content", "is_error", "cache_control"}, at)
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"{at}.tool_use_id: Field required", param=f"{at}.tool_use_id")
        if not isinstance(block.get("is_error", False), bool):
            raise InvalidRequest(f"{at}.is_error: Input should be a valid boolean", param=f"{at}.is_error")
        content = block.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            for k, inner in enumerate(content):
                inner_at = f"{at}.content.{k}"
                kind = block_type(inner, inner_at)
                if kind == "text":
                    text = self._text_block(inner, inner_at)
                    if text["text"] or "cache_control" in text:
                        parts.append(text)
                elif kind == "image":
                    parts.append(self._image(inner, inner_at))
                elif kind == "tool_reference":
                    # Deferred tool loading: the named tool is offered to the model from now on.
                    only(inner, {"type", "tool_name"}, inner_at)
                    name = inner.get("tool_name")
                    if not isinstance(name, str) or not name:
                        raise InvalidRequest(f"{inner_at}.tool_name: Field required", param=f"{inner_at}.tool_name")
                    self.referenced_tools.add(name)
                    parts.append({"type": "text", "text": f"Tool {name} loaded."})
                else:
                    raise unsupported_block(kind, inner_at, "tool_result")
        elif content is not None:
            raise InvalidRequest(
                f"{at}.content: Input should be a string or a list of content blocks", param=f"{at}.content"
            )
        message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": parts}
        if "cache_control" in block:
            # On the message, so it holds for an empty result too: a cache point after the result.
            message["cache_control"] = cache_control(block["cache_control"], f"{at}.cache_control")
        return message

    def _image(self, block: Mapping[str, Any], at: str) -> dict[str, Any]:
        only(block, {"type", "source", "cache_control"}, at)
        source = block.get("source")
        kind = source.get("type") if isinstance(source, dict) else None
        if kind in ("url", "file"):
            raise InvalidRequest(
                f"{at}.source: images of source type '{kind}' are not supported: the gateway never downloads. "
                'Send the image inline: {"type": "base64", "media_type": "image/png", "data": "..."}.',
                param=f"{at}.source",
                code="unsupported_image_source",
            )
        if kind != "base64" or not isinstance(source, dict):
            raise InvalidRequest(
                f'{at}.source: Input should be {{"type": "base64", "media_type": ..., "data": ...}}',
                param=f"{at}.source",
            )
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                f"{at}.source.media_type: Input should be one of {', '.join(IMAGE_MEDIA_TYPES)}",
                param=f"{at}.source.media_type",
            )
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"{at}.source.data: Field required", param=f"{at}.source.data")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(
                f"{at}.source.data: the image data is not valid base64", param=f"{at}.source.data"
            ) from None
        self.has_images = True
        part: dict[str, Any] = {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
        if "cache_control" in block:
            part["cache_control"] = cache_control(block["cache_control"], f"{at}.cache_control")
        return part

    def _text_block(self, block: Any, at: str) -> dict[str, Any]:
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f'{at}: Input should be a text block {{"type": "text", "text": ...}}', param=at)
        only(block, {"type", "text", "cache_control", "citations"}, at)
        text = block.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"{at}.text: Input should be a valid string", param=f"{at}.text")
        if block.get("citations"):
            raise InvalidRequest(f"{at}.citations: citations are not supported", param=f"{at}.citations")
        part: dict[str, Any] = {"type": "text", "text": text}
        if "cache_control" in block:
            part["cache_control"] = cache_control(block["cache_control"], f"{at}.cache_control")
        return part

    # -- assistant turns: thinking, text, tool calls ----------------------------------------------

    def _assistant(self, blocks: list[Any], where: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        thinking: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at = f"{where}.content.{j}"
            kind = block_type(block, at)
            if kind == "text":
                part = self._text_block(block, at)
                if part["text"] or "cache_control" in part:
                    parts.append(part)
            elif kind == "thinking":
                only(block, {"type", "thinking", "signature", "cache_control"}, at)
                text, signature = block.get("thinking"), block.get("signature")
                if not isinstance(text, str) or not isinstance(signature, str):
                    raise InvalidRequest(f"{at}: a thinking block needs 'thinking' and 'signature' strings", param=at)
                if signature:
                    # An unsigned block cannot be verified by any model: it is dropped, as Anthropic would refuse it.
                    thinking.append({"type": "thinking", "thinking": text, "signature": signature})
            elif kind == "redacted_thinking":
                only(block, {"type", "data", "cache_control"}, at)
                data = block.get("data")
                if not isinstance(data, str) or not data:
                    raise InvalidRequest(f"{at}.data: Field required", param=f"{at}.data")
                thinking.append({"type": "redacted_thinking", "data": data})
            elif kind == "tool_use":
                calls.append(self._tool_use(block, at))
            else:
                raise unsupported_block(kind, at, "assistant")
        message: dict[str, Any] = {"role": "assistant", "content": parts or ("" if not calls else None)}
        if calls:
            message["tool_calls"] = calls
        if thinking:
            message["thinking_blocks"] = thinking
        return [message]

    def _tool_use(self, block: Mapping[str, Any], at: str) -> dict[str, Any]:
        only(block, {"type", "id", "name", "input", "cache_control", "caller"}, at)
        call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"{at}.id: Field required", param=f"{at}.id")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{at}.name: Field required", param=f"{at}.name")
        if not isinstance(arguments, dict):
            raise InvalidRequest(f"{at}.input: Input should be an object", param=f"{at}.input")
        self.referenced_tools.add(name)
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
        }

    # -- per-turn system messages (Claude Code's mid-conversation instructions) -------------------

    def _turn_system(self, message: Mapping[str, Any], blocks: list[Any], where: str) -> list[dict[str, Any]]:
        if "output_config" in message:
            config = message["output_config"]
            if not isinstance(config, dict) or set(config) - {"effort"}:
                raise InvalidRequest(
                    f"{where}.output_config: only 'effort' may be set per turn", param=f"{where}.output_config"
                )
            if config.get("effort") is not None:
                self.turn_effort = effort_of(config["effort"], f"{where}.output_config.effort")
        parts = [self._text_block(block, f"{where}.content.{j}") for j, block in enumerate(blocks)]
        parts = [p for p in parts if p["text"].strip() or "cache_control" in p]
        # Sent where it stands; LiteLLM turns a mid-conversation system entry into a user turn in place.
        return [{"role": "system", "content": parts}] if parts else []


def block_type(block: Any, at: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise InvalidRequest(f"{at}: Input should be a content block with a 'type'", param=at)
    return kind


def unsupported_block(kind: str, at: str, where: str) -> InvalidRequest:
    return InvalidRequest(
        f"{at}: content blocks of type '{kind}' are not supported in a {where} message by this gateway.",
        param=at,
        code="unsupported_content",
    )
