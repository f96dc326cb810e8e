"""MCP requests: the JSON-RPC body, the protocol versions, and each tool's arguments against its schema.

Failures are ``ProtocolError``s (a JSON-RPC error code and message), except a tool's
bad arguments, which are an ``InvalidRequest`` the tool answers as its result
(``isError``), so the model calling it can read what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib import errors
from chalicelib.shared.body import parse_json

#: Oldest to newest; ``initialize`` answers with the client's version when listed, else the newest.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
#: JSON-RPC batching was added in 2025-03-26 and removed in 2025-06-18.
BATCHLESS_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001


class ProtocolError(Exception):
    """A JSON-RPC error to answer with (kept inside the MCP adapter: it is not a caller-facing AppError)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def parse_body(raw: bytes | str | None, max_bytes: int) -> Any:
    if raw is None or len(raw) == 0:
        raise ProtocolError(INVALID_REQUEST, "The request body is empty; POST a JSON-RPC message.")
    if len(raw) > max_bytes:
        raise ProtocolError(INVALID_REQUEST, f"The request body is {len(raw)} bytes; the limit is {max_bytes}.")
    try:
        return parse_json(raw)
    except errors.InvalidRequest as exc:
        raise ProtocolError(PARSE_ERROR, f"Parse error: {exc.message}") from None


def header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value.strip() for key, value in headers.items() if key.lower() == name), None)


def check_arguments(name: str, arguments: Any) -> None:
    """Validate tool arguments against the tool's ``inputSchema``.

    Raises
    ------
    InvalidRequest
        The arguments do not match; the message names the first problem.
    """
    if not isinstance(arguments, dict):
        raise errors.InvalidRequest("Tool arguments must be an object.", param="arguments")
    # jsonschema is pinned in requirements.txt (a LiteLLM dependency); loaded only when a tool runs.
    from jsonschema import Draft202012Validator

    problem = next(
        iter(_VALIDATORS.setdefault(name, Draft202012Validator(INPUT_SCHEMAS[name])).iter_errors(arguments)), None
    )
    if problem is not None:
        where = "/".join(str(part) for part in problem.absolute_path) or "arguments"
        raise errors.InvalidRequest(f"Invalid argument {where}: {problem.message}", param=where)


_MESSAGES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "description": 'OpenAI-style chat messages, e.g. [{"role": "user", "content": "Hi"}].',
    "items": {
        "type": "object",
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
            "content": {"type": "string"},
        },
        "required": ["role", "content"],
    },
}
_MODEL_ARG = {"type": "string", "description": "A model id from list_models (default: the first this key may use)."}

#: Each tool's ``inputSchema``.
INPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "prompt": {"type": "string", "minLength": 1, "description": "The user's message."},
            "messages": _MESSAGES_SCHEMA,
            "system": {"type": "string", "description": "A system prompt."},
            "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "additionalProperties": False,
    },
    "list_models": {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["chat", "embedding"]}},
        "additionalProperties": False,
    },
    "embed": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "input": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                ],
                "description": "A text or a list of texts to embed.",
            },
            "dimensions": {"type": "integer", "description": "Vector size, where the model offers a choice."},
        },
        "required": ["input"],
        "additionalProperties": False,
    },
    "get_usage": {"type": "object", "properties": {}, "additionalProperties": False},
    "count_tokens": {
        "type": "object",
        "properties": {
            "model": _MODEL_ARG,
            "text": {"type": "string"},
            "messages": _MESSAGES_SCHEMA,
            "max_output_tokens": {
                "type": "integer",
                "minimum": 0,
                "description": "Output tokens to price in (default: the model's maximum).",
            },
        },
        "additionalProperties": False,
    },
}
_VALIDATORS: dict[str, Any] = {}
