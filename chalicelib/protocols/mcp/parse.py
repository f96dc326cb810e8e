"""MCP requests: the JSON-RPC body, the protocol versions, and each tool's arguments against its schema.

Failures are ``ProtocolError``s (a JSON-RPC error code and message), except a tool's
bad arguments, which are an ``InvalidRequest`` the tool answers as its result
(``isError``), so the model calling it can read what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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
    """Validate tool arguments against the tool's ``inputSchema`` (``schema_problems``).

    Raises
    ------
    InvalidRequest
        The arguments do not match; the message names the first problem.
    """
    if not isinstance(arguments, dict):
        raise errors.InvalidRequest("Tool arguments must be an object.", param="arguments")
    problem = next(schema_problems(INPUT_SCHEMAS[name], arguments, ()), None)
    if problem is not None:
        path, message = problem
        where = "/".join(str(part) for part in path) or "arguments"
        raise errors.InvalidRequest(f"Invalid argument {where}: {message}", param=where)


#: The JSON Schema keywords ``schema_problems`` checks: all the tools' input schemas use (a test
#: keeps it so). Importing jsonschema for them cost a cold MCP call more than the check itself.
SCHEMA_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "enum", "minLength", "minimum", "maximum"}
    | {"items", "minItems", "oneOf", "description"}
)
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    # JSON Schema's integer is any number with no fraction (1.0 included); booleans are not numbers.
    "integer": lambda value: (
        not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    ),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
}


def schema_problems(schema: Mapping[str, Any], value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple, str]]:
    """The ways ``value`` breaks ``schema`` (the subset of JSON Schema 2020-12 in ``SCHEMA_KEYWORDS``)."""
    kind = schema.get("type")
    if kind is not None and not _JSON_TYPES[kind](value):
        yield path, f"{value!r} is not of type {kind!r}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"{value!r} is not one of {schema['enum']!r}"
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        yield path, f"{value!r} is too short (at least {schema['minLength']} characters)"
    if _JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            yield path, f"{value!r} is less than the minimum of {schema['minimum']!r}"
        if "maximum" in schema and value > schema["maximum"]:
            yield path, f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield path, f"{value!r} should have at least {schema['minItems']} item(s)"
        for index, item in enumerate(value):
            yield from schema_problems(schema.get("items", {}), item, (*path, index))
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                yield path, f"{key!r} is a required property"
        properties = schema.get("properties", {})
        extra = [key for key in value if key not in properties]
        if schema.get("additionalProperties", True) is False and extra:
            yield path, f"Additional properties are not allowed ({', '.join(map(repr, extra))} unexpected)"
        for key, item in value.items():
            if key in properties:
                yield from schema_problems(properties[key], item, (*path, key))
    if "oneOf" in schema:
        matching = sum(next(schema_problems(option, value, path), None) is None for option in schema["oneOf"])
        if matching != 1:
            yield path, f"{value!r} is not valid under exactly one of the accepted forms"


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
