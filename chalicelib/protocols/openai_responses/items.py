"""Responses ``input`` (a string or items) and ``instructions`` → the core's messages.

Items the client ran or said become chat-dialect messages: ``message`` items
by role (``system``/``developer`` and ``instructions`` merge into the one system
prompt, first), ``function_call``/``custom_tool_call`` items into the assistant
turn's ``tool_calls``, their ``*_output`` items into ``tool`` messages.
Consecutive assistant-side items (text, calls, reasoning) form one assistant
turn, as Bedrock wants. ``additional_tools`` items add tools.

``reasoning`` items come back with the ``encrypted_content`` this gateway put
in them (``reasoning_token``): a Claude thinking block and its signature (or a
redacted block), replayed to Bedrock as the turn's ``thinking_blocks``. That is
what lets a Claude model that reasons keep calling tools across requests
(Bedrock wants the turn's thinking back, signature intact; a forged or edited
block fails Bedrock's signature check). Reasoning items without our token
(OpenAI's, or from another model) are dropped: nothing else can be replayed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.protocols import params
from chalicelib.protocols.openai_responses.tools import Toolset, bedrock_name
from chalicelib.shared.body import parse_json

#: Marks (and versions) the ``encrypted_content`` tokens this gateway writes.
TOKEN_PREFIX = "pw1."  # noqa: S105 - a format marker, not a secret
_ROLES = ("user", "assistant", "system", "developer")
_REFUSED_ITEMS = {
    "item_reference": "stored items cannot be referenced: this gateway is stateless; send the item itself",
    "compaction": "server-side compaction is not available",
    "compaction_trigger": "server-side compaction is not available",
}


def reasoning_token(model: str, block: Mapping[str, Any]) -> str:
    """The ``encrypted_content`` of one reasoning item: its thinking block, for ``model``, opaque to clients.

    Not encrypted: the thinking text is the client's already, and Bedrock verifies the
    signature it carries when the block is replayed.
    """
    payload = json.dumps({"model": model, "block": dict(block)}, separators=(",", ":"), ensure_ascii=False)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _thinking_block(token: Any, model: str, at: str) -> dict[str, Any] | None:
    """The thinking block in one of our tokens, if it was made for ``model``; None for anyone else's."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        return None
    body = token[len(TOKEN_PREFIX) :]
    try:
        payload = parse_json(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        block = payload["block"]
        kind = block["type"]
        valid = (kind == "thinking" and isinstance(block["thinking"], str) and isinstance(block["signature"], str)) or (
            kind == "redacted_thinking" and isinstance(block["data"], str)
        )
    except (binascii.Error, ValueError, KeyError, TypeError, InvalidRequest):
        valid = False
    if not valid:
        raise InvalidRequest(
            f"{at}.encrypted_content is not a reasoning item this gateway produced (it is damaged); "
            "send it back unchanged or leave the reasoning item out.",
            param=f"{at}.encrypted_content",
        )
    if payload.get("model") != model:
        return None  # another model's thinking cannot be replayed to this one
    if kind == "thinking":
        return {"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]}
    return {"type": "redacted_thinking", "data": block["data"]}


class _Builder:
    def __init__(self, model: str, toolset: Toolset) -> None:
        self.model = model
        self.toolset = toolset
        self.system: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.assistant: dict[str, Any] | None = None
        self.has_images = False

    def flush(self) -> None:
        turn, self.assistant = self.assistant, None
        if turn is None or not (turn["content"] or turn.get("tool_calls")):
            return  # a turn of thinking alone is not a message Bedrock takes
        if not turn["content"]:
            turn["content"] = None
        self.messages.append(turn)

    def open_assistant(self) -> dict[str, Any]:
        if self.assistant is None:
            self.assistant = {"role": "assistant", "content": []}
        return self.assistant

    def item(self, item: Any, at: str) -> None:
        if not isinstance(item, dict):
            raise InvalidRequest(f"{at} must be an object.", param=at)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self.message(item, at)
        elif kind in ("function_call", "custom_tool_call"):
            self.call(item, kind, at)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.flush()
            call_id = _string(item, "call_id", at)
            self.messages.append({"role": "tool", "tool_call_id": call_id, "content": self.output(item, at)})
        elif kind == "reasoning":
            block = _thinking_block(item.get("encrypted_content"), self.model, at)
            if block is not None:
                self.open_assistant().setdefault("thinking_blocks", []).append(block)
        elif kind == "additional_tools":
            self.toolset.add(item.get("tools"), f"{at}.tools")
        elif isinstance(kind, str) and kind in _REFUSED_ITEMS:  # a list or object is unhashable
            raise InvalidRequest(f"{at}: {_REFUSED_ITEMS[kind]}.", param=f"{at}.type", code="unsupported_item")
        elif isinstance(kind, str):
            raise InvalidRequest(
                f"{at}: input items of type '{kind}' are not supported; this gateway takes message, "
                "function_call, function_call_output, custom_tool_call, custom_tool_call_output, reasoning "
                "and additional_tools items.",
                param=f"{at}.type",
                code="unsupported_item",
            )
        else:
            raise InvalidRequest(f"{at} must have a 'type' (or be a message with a 'role').", param=at)

    def message(self, item: Mapping[str, Any], at: str) -> None:
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequest(f"{at}.role must be one of {list(_ROLES)}, got {role!r}.", param=f"{at}.role")
        parts = self.content(item.get("content"), role, f"{at}.content")
        if role in ("system", "developer"):
            self.system.extend(parts)
        elif role == "assistant":
            self.open_assistant()["content"].extend(parts)
        elif not parts:
            raise InvalidRequest(
                f"{at}.content is empty; a user message needs text or an image.", param=f"{at}.content"
            )
        else:
            self.flush()
            self.messages.append({"role": "user", "content": parts})

    def call(self, item: Mapping[str, Any], kind: str, at: str) -> None:
        call_id = _string(item, "call_id", at)
        name = _string(item, "name", at)
        namespace = item.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise InvalidRequest(f"{at}.namespace must be a string.", param=f"{at}.namespace")
        if kind == "function_call":
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                raise InvalidRequest(f"{at}.arguments must be a string (JSON).", param=f"{at}.arguments")
        else:
            arguments = json.dumps({"input": _string(item, "input", at, empty=True)}, ensure_ascii=False)
        call = {"id": call_id, "type": "function", "function": {"name": bedrock_name(name, namespace)}}
        call["function"]["arguments"] = arguments or "{}"
        self.open_assistant().setdefault("tool_calls", []).append(call)

    def content(self, value: Any, role: str, at: str) -> list[dict[str, Any]]:
        if isinstance(value, str):
            return [{"type": "text", "text": value}] if value else []
        if not isinstance(value, list):
            raise InvalidRequest(f"{at} must be a string or an array of content parts.", param=at)
        parts = []
        for number, part in enumerate(value):
            where = f"{at}[{number}]"
            kind = part.get("type") if isinstance(part, dict) else None
            text_kinds = ("output_text", "refusal", "input_text") if role == "assistant" else ("input_text",)
            if kind in text_kinds:
                text = part.get("refusal" if kind == "refusal" else "text")
                if not isinstance(text, str):
                    raise InvalidRequest(f"{where}.text must be a string.", param=f"{where}.text")
                if text:
                    parts.append({"type": "text", "text": text})
            elif kind == "input_image" and role == "user":
                parts.append(self.image(part, where))
            else:
                raise InvalidRequest(
                    f"{where}: content parts of type {kind!r} are not supported in a {role} message"
                    f"{' (files: send their text as input_text)' if kind == 'input_file' else ''}.",
                    param=f"{where}.type",
                )
        return parts

    def output(self, item: Mapping[str, Any], at: str) -> str | list[dict[str, Any]]:
        value = item.get("output")
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise InvalidRequest(f"{at}.output must be a string or an array of content parts.", param=f"{at}.output")
        parts = []
        for number, part in enumerate(value):
            where = f"{at}.output[{number}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind == "input_image":
                parts.append(self.image(part, where))
            else:
                raise InvalidRequest(
                    f"{where}: tool output parts must be input_text or input_image, got {kind!r}.", param=where
                )
        return parts

    def image(self, part: Mapping[str, Any], where: str) -> dict[str, Any]:
        if part.get("file_id") is not None and part.get("image_url") is None:
            raise InvalidRequest(
                f"{where}: images by file_id need OpenAI's file storage; send a data URL in image_url.",
                param=f"{where}.file_id",
            )
        url = params.image_url(part.get("image_url"), where)
        if part.get("detail") in ("auto", "low", "high"):
            url["detail"] = part["detail"]
        self.has_images = True
        return {"type": "image_url", "image_url": url}


def _string(item: Mapping[str, Any], name: str, at: str, *, empty: bool = False) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not (value or empty):
        raise InvalidRequest(f"{at}.{name} must be a {'' if empty else 'non-empty '}string.", param=f"{at}.{name}")
    return value


def parse_input(
    value: Any, instructions: str | None, *, model: str, toolset: Toolset
) -> tuple[list[dict[str, Any]], bool]:
    """The messages for ``input`` and ``instructions`` (system first), and whether they carry images.

    Raises
    ------
    InvalidRequest
        A malformed or unsupported item or content part, named by its path (``input[3].content[0]``).
    """
    builder = _Builder(model, toolset)
    if instructions:
        builder.system.append({"type": "text", "text": instructions})
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be empty.", param="input")
        builder.messages.append({"role": "user", "content": value})
    elif isinstance(value, list):
        for number, item in enumerate(value):
            builder.item(item, f"input[{number}]")
        builder.flush()
    elif value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    else:
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    if not builder.messages:
        raise InvalidRequest("'input' must contain at least one user message.", param="input")
    system = [{"role": "system", "content": builder.system}] if builder.system else []
    return system + builder.messages, builder.has_images
