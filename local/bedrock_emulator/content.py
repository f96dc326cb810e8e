"""Validation of Converse message and system content blocks, with input-token counting."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import BedrockError, validation
from .models import ModelSpec
from .tokens import IMAGE_TOKENS, count_tokens, document_tokens

IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
DOCUMENT_FORMATS = frozenset({"pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"})
MAX_IMAGE_BYTES = 3_750_000

# Real Bedrock wording; LiteLLM matches on the first sentence of START_WITH_USER.
START_WITH_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user message."
)
TOO_MANY_RESULTS = (
    "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
)

# Content blocks that exist in the Converse API but none of the emulated models accept.
_UNSUPPORTED_BLOCKS = frozenset({"video", "audio", "citationsContent", "searchResult", "toolAddition", "toolRemoval"})
_KNOWN_BLOCKS = frozenset(
    {"text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint", "guardContent"}
)
_ROLE_BLOCKS = {
    "user": frozenset({"text", "image", "document", "toolResult", "cachePoint", "guardContent"}),
    "assistant": frozenset({"text", "toolUse", "reasoningContent", "cachePoint"}),
}

# Magic bytes that must open an image of each format.
_IMAGE_MAGIC: Mapping[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
}


def signature_for(text: str) -> str:
    """The deterministic opaque signature of a reasoning text (what Bedrock checks on replay)."""
    return base64.b64encode(hashlib.sha256(f"signature|{text}".encode()).digest() * 3).decode("ascii")


@dataclass
class LastTurn:
    """What the last user message carries, for composing the answer."""

    texts: list[str] = field(default_factory=list)
    images: list[tuple[str, int]] = field(default_factory=list)
    documents: list[tuple[str, str, int]] = field(default_factory=list)
    tool_results: list[tuple[str, str, str]] = field(default_factory=list)


def require_dict(value: object, where: str) -> Mapping[str, object]:
    """value as a JSON object, else ValidationException."""
    if not isinstance(value, Mapping):
        raise validation(f"The {where} field must be a JSON object.")
    return value


def constraint(where: str, value: object, rule: str) -> BedrockError:
    """Bedrock's '1 validation error detected' message."""
    return validation(f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy constraint: {rule}")


def _decode_bytes(raw: object, where: str) -> bytes:
    """Base64 blob from the JSON body (botocore sends blobs base64-encoded)."""
    if not isinstance(raw, str):
        raise validation(f"The {where} field must be a base64-encoded string.")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise validation(f"The {where} field is not valid base64.") from None
    if not data:
        raise validation(f"The {where} field is empty.")
    return data


class Walker:
    """Walks messages, system and tools once: validates them and counts input tokens."""

    def __init__(self, model: ModelSpec) -> None:
        self.model = model
        self.tokens = 0
        self.user_texts: list[str] = []
        self.tool_names_by_id: dict[str, str] = {}
        self.uses_tools = False
        #: Texts in guardContent blocks: with a guardrail, only these are assessed (when there are any).
        self.guarded_texts: list[str] = []

    def text(self, value: object, where: str, role: str | None) -> str:
        """A non-blank text field."""
        if not isinstance(value, str):
            raise validation(f"The text field at {where} must be a string.")
        if not value.strip():
            raise validation(
                f"The text field in the ContentBlock object at {where} is blank. "
                "Add text to the text field, and try again."
            )
        self.tokens += count_tokens(value)
        if role == "user":
            self.user_texts.append(value)
        return value

    def image(self, value: object, where: str) -> tuple[str, int]:
        """An image block: supported by the model, known format, valid base64 of that format."""
        if "image" not in self.model.modalities:
            raise validation(
                f"This model doesn't support the image content block that you provided ({where}). "
                f"{self.model.model_id} accepts text only. Try again with a supported content block."
            )
        block = require_dict(value, where)
        fmt = block.get("format")
        if fmt not in IMAGE_FORMATS:
            raise constraint(f"{where}.format", fmt, f"Member must satisfy enum value set: {sorted(IMAGE_FORMATS)}")
        source = require_dict(block.get("source"), f"{where}.source")
        if "bytes" not in source:
            raise validation(f"The emulator supports only image.source.bytes (at {where}.source).")
        data = _decode_bytes(source["bytes"], f"{where}.source.bytes")
        if len(data) > MAX_IMAGE_BYTES:
            raise validation(f"The image at {where} is {len(data)} bytes; the maximum is {MAX_IMAGE_BYTES} bytes.")
        if not data.startswith(_IMAGE_MAGIC[str(fmt)]) or (fmt == "webp" and data[8:12] != b"WEBP"):
            raise validation(f"Could not process image at {where}: the bytes are not a valid {fmt} image.")
        self.tokens += IMAGE_TOKENS
        return str(fmt), len(data)

    def document(self, value: object, where: str) -> tuple[str, str, int]:
        """A document block with a name, a known format and bytes or text."""
        block = require_dict(value, where)
        fmt = block.get("format", "txt")
        if fmt not in DOCUMENT_FORMATS:
            raise constraint(f"{where}.format", fmt, f"Member must satisfy enum value set: {sorted(DOCUMENT_FORMATS)}")
        name = block.get("name")
        if not isinstance(name, str) or not name.strip():
            raise validation(f"The document at {where} needs a non-empty name.")
        source = require_dict(block.get("source"), f"{where}.source")
        if "bytes" in source:
            data = _decode_bytes(source["bytes"], f"{where}.source.bytes")
        elif isinstance(source.get("text"), str):
            data = str(source["text"]).encode("utf-8")
            fmt = "txt"
        else:
            raise validation(f"The document at {where} needs source.bytes or source.text.")
        self.tokens += count_tokens(name) + document_tokens(str(fmt), data)
        return name, str(fmt), len(data)

    def reasoning(self, value: object, where: str) -> None:
        """An assistant reasoningContent block; Claude's must carry the signature it was sent with."""
        reasoning = require_dict(value, where)
        text_block = reasoning.get("reasoningText")
        if not isinstance(text_block, Mapping) or not isinstance(text_block.get("text"), str):
            return
        text = str(text_block["text"])
        self.tokens += count_tokens(text)
        if self.model.reasoning != "anthropic":
            return
        signature = text_block.get("signature")
        if not isinstance(signature, str) or not signature:
            raise validation(f"The model returned the following errors: {where}.thinking.signature: Field required")
        if signature != signature_for(text):
            raise validation(
                f"The model returned the following errors: {where}: Invalid `signature` in `thinking` block"
            )

    def json_value(self, value: object) -> str:
        """Serialized JSON, counted as tokens."""
        text = json.dumps(value, ensure_ascii=False)
        self.tokens += count_tokens(text)
        return text

    def tool_use(self, value: object, where: str) -> None:
        """An assistant toolUse block."""
        block = require_dict(value, where)
        tool_id, name = block.get("toolUseId"), block.get("name")
        if not isinstance(tool_id, str) or not tool_id or not isinstance(name, str) or not name:
            raise validation(f"The toolUse block at {where} needs toolUseId and name.")
        if not isinstance(block.get("input"), Mapping):
            raise validation(f"The input of the toolUse block at {where} must be a JSON object.")
        self.uses_tools = True
        self.tool_names_by_id[tool_id] = name
        self.tokens += count_tokens(name)
        self.json_value(block["input"])

    def tool_result(self, value: object, where: str) -> tuple[str, str, str]:
        """A user toolResult block; returns (tool name, status, content as text)."""
        block = require_dict(value, where)
        tool_id = block.get("toolUseId")
        if not isinstance(tool_id, str) or not tool_id:
            raise validation(f"The toolResult block at {where} needs a toolUseId.")
        status = block.get("status", "success")
        if status not in ("success", "error"):
            raise constraint(f"{where}.status", status, "Member must satisfy enum value set: [success, error]")
        content = block.get("content", [])
        if not isinstance(content, list):
            raise validation(f"The content of the toolResult block at {where} must be a list.")
        parts: list[str] = []
        for i, item in enumerate(content):
            part = require_dict(item, f"{where}.content.{i}")
            if len(part) != 1:
                raise validation(f"Each toolResult content block at {where}.content.{i} must have exactly one member.")
            kind, inner = next(iter(part.items()))
            if kind == "text":
                parts.append(self.text(inner, f"{where}.content.{i}", None))
            elif kind == "json":
                parts.append(self.json_value(inner))
            elif kind == "image":
                fmt, size = self.image(inner, f"{where}.content.{i}.image")
                parts.append(f"an image ({fmt}, {size} bytes)")
            elif kind == "document":
                name, fmt, size = self.document(inner, f"{where}.content.{i}.document")
                parts.append(f'a document "{name}" ({fmt}, {size} bytes)')
            else:
                raise validation(f"Unsupported toolResult content block '{kind}' at {where}.content.{i}.")
        self.uses_tools = True
        return self.tool_names_by_id.get(tool_id, tool_id), str(status), " ".join(parts)


def check_alternation(messages: list[object]) -> None:
    """Roles must be user/assistant, start with user and alternate."""
    previous: object = None
    for i, message in enumerate(messages):
        msg = require_dict(message, f"messages.{i}")
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise constraint(f"messages.{i}.member.role", role, "Member must satisfy enum value set: [user, assistant]")
        if i == 0 and role != "user":
            raise validation(START_WITH_USER)
        if role == previous:
            raise validation(
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                f"alternates between user and assistant roles and try again. (messages.{i - 1} and messages.{i} "
                f"are both {role})"
            )
        previous = role


def _tool_ids(message: Mapping[str, object], kind: str) -> list[str]:
    """toolUseIds of the toolUse or toolResult blocks of one message."""
    content = message.get("content")
    ids: list[str] = []
    for block in content if isinstance(content, list) else []:
        inner = block.get(kind) if isinstance(block, Mapping) else None
        if isinstance(inner, Mapping) and isinstance(inner.get("toolUseId"), str):
            ids.append(str(inner["toolUseId"]))
    return ids


def check_tool_pairing(messages: list[Mapping[str, object]]) -> None:
    """Each assistant toolUse must be answered by a toolResult in the next user turn, and vice versa."""
    for i in range(1, len(messages)):
        if messages[i].get("role") != "user":
            continue
        results = _tool_ids(messages[i], "toolResult")
        uses = _tool_ids(messages[i - 1], "toolUse")
        if len(results) > len(uses):
            raise validation(TOO_MANY_RESULTS.format(i=i))
        missing = [u for u in uses if u not in results]
        if missing:
            raise validation(
                f"Expected toolResult blocks at messages.{i}.content for the following Ids: {', '.join(missing)}"
            )
    if messages and messages[0].get("role") == "user" and _tool_ids(messages[0], "toolResult"):
        raise validation(TOO_MANY_RESULTS.format(i=0))


def walk_messages(walker: Walker, messages: list[Mapping[str, object]]) -> LastTurn:
    """Validate every content block and gather what the last user message carries."""
    last = LastTurn()
    last_user_index = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    for i, message in enumerate(messages):
        role = str(message["role"])
        content = message.get("content")
        if not isinstance(content, list) or not content:
            raise validation(
                f"The content field in the Message object at messages.{i} is empty. "
                "Add a ContentBlock object to the content field and try again."
            )
        is_last = i == last_user_index
        for j, raw in enumerate(content):
            where = f"messages.{i}.content.{j}"
            block = require_dict(raw, where)
            if len(block) != 1:
                raise validation(f"The ContentBlock at {where} must have exactly one member, got {sorted(block)}.")
            kind, value = next(iter(block.items()))
            if kind in _UNSUPPORTED_BLOCKS:
                raise validation(f"This model doesn't support the {kind} content block that you provided ({where}).")
            if kind not in _KNOWN_BLOCKS:
                raise validation(
                    f"Unknown content block type '{kind}' at {where}. Valid types: {', '.join(sorted(_KNOWN_BLOCKS))}."
                )
            if kind not in _ROLE_BLOCKS[role]:
                raise validation(f"A {role} message can't contain a {kind} content block ({where}).")
            if kind == "text":
                text = walker.text(value, where, role)
                if is_last:
                    last.texts.append(text)
            elif kind == "guardContent":
                inner = require_dict(require_dict(value, where).get("text"), f"{where}.text")
                text = walker.text(inner.get("text"), f"{where}.text", role)
                walker.guarded_texts.append(text)
                if is_last:
                    last.texts.append(text)
            elif kind == "image":
                image = walker.image(value, f"{where}.image")
                if is_last:
                    last.images.append(image)
            elif kind == "document":
                doc = walker.document(value, f"{where}.document")
                if is_last:
                    last.documents.append(doc)
            elif kind == "toolUse":
                walker.tool_use(value, where)
            elif kind == "toolResult":
                result = walker.tool_result(value, where)
                if is_last:
                    last.tool_results.append(result)
            elif kind == "reasoningContent":
                walker.reasoning(value, where)
    return last


def walk_system(walker: Walker, system: object) -> None:
    """System blocks: text, cachePoint or guardContent."""
    if system is None:
        return
    if not isinstance(system, list):
        raise validation("The system field must be a list of SystemContentBlock objects.")
    for i, raw in enumerate(system):
        block = require_dict(raw, f"system.{i}")
        if len(block) != 1:
            raise validation(f"The SystemContentBlock at system.{i} must have exactly one member.")
        kind, value = next(iter(block.items()))
        if kind == "text":
            walker.text(value, f"system.{i}", None)
        elif kind == "guardContent":
            inner = require_dict(require_dict(value, f"system.{i}").get("text"), f"system.{i}.text")
            walker.guarded_texts.append(walker.text(inner.get("text"), f"system.{i}.text", None))
        elif kind != "cachePoint":
            raise validation(
                f"Unknown system content block type '{kind}' at system.{i}. "
                "Valid types: text, cachePoint, guardContent."
            )
