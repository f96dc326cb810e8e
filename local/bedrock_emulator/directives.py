"""Parsing of the `#emulator:` fault-injection and behaviour directives found in prompts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import BedrockError, validation

DIRECTIVE_PATTERN = re.compile(r"#emulator:([A-Za-z0-9_]+)(?:=(\S*))?")

MAX_SLEEP_SECONDS = 60.0
MAX_CHUNK_DELAY_SECONDS = 5.0

# Directive -> (error name, message) for the ones that just fail the request.
FAULTS: dict[str, tuple[str, str]] = {
    "throttle": ("ThrottlingException", "Too many requests, please wait before trying again."),
    "error": (
        "ModelErrorException",
        "The system encountered an unexpected error during processing. Try your request again.",
    ),
    "error500": ("InternalServerException", "The server encountered an internal error. Try your request again."),
    "unavailable": ("ServiceUnavailableException", "Bedrock is unable to process your request."),
    "timeout": ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    "denied": ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "not_ready": ("ModelNotReadyException", "The model is not ready to serve inference requests. Try again later."),
    "too_long": ("ValidationException", "Input is too long for requested model."),
}

_FLAGS = frozenset({"cut", "cut_clean", "stream_error", "parallel"})
_NUMBERS = frozenset({"sleep", "chunk_delay"})
_COUNTS = frozenset({"cache_read", "cache_write", "cache_write_1h", "tokens"})
KNOWN = frozenset(FAULTS) | _FLAGS | _NUMBERS | _COUNTS | {"tool"}


@dataclass
class Directives:
    """Everything the `#emulator:` directives of one request ask for."""

    fault: str | None = None
    sleep: float = 0.0
    chunk_delay: float = 0.0
    cut: bool = False
    cut_clean: bool = False
    stream_error: bool = False
    parallel: bool = False
    tool: bool = False
    tool_name: str | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    tokens: int | None = None


def strip_directives(text: str) -> str:
    """Text with every directive removed and whitespace collapsed."""
    return " ".join(DIRECTIVE_PATTERN.sub(" ", text).split())


def _number(name: str, raw: str | None, cap: float) -> float:
    """A non-negative float directive value, capped."""
    try:
        value = float(raw or "")
    except ValueError:
        raise validation(f"#emulator:{name} needs a number of seconds, e.g. #emulator:{name}=0.5") from None
    if value < 0 or value != value:
        raise validation(f"#emulator:{name} must be >= 0")
    return min(value, cap)


def _count(name: str, raw: str | None) -> int:
    """A non-negative integer directive value."""
    if raw is None or not raw.isdigit():
        raise validation(f"#emulator:{name} needs a whole number, e.g. #emulator:{name}=100")
    return int(raw)


def _apply(found: Directives, name: str, raw: str | None) -> None:
    """Record one directive occurrence."""
    if name in FAULTS:
        found.fault = found.fault or name
    elif name in _FLAGS:
        setattr(found, name, True)
    elif name == "sleep":
        found.sleep = _number(name, raw, MAX_SLEEP_SECONDS)
    elif name == "chunk_delay":
        found.chunk_delay = _number(name, raw, MAX_CHUNK_DELAY_SECONDS)
    elif name in _COUNTS:
        setattr(found, name, _count(name, raw))
    elif name == "tool":
        found.tool = True
        found.tool_name = raw or found.tool_name


def parse_directives(fault_texts: Iterable[str], last_user_texts: Iterable[str]) -> Directives:
    """Directives from every user text; tool/parallel count only in the last user message."""
    found = Directives()
    for text in fault_texts:
        for match in DIRECTIVE_PATTERN.finditer(text):
            name, raw = match.group(1), match.group(2)
            if name not in KNOWN:
                raise validation(f"Unknown emulator directive #emulator:{name}; known: {', '.join(sorted(KNOWN))}.")
            if name not in {"tool", "parallel"}:
                _apply(found, name, raw)
    for text in last_user_texts:
        for match in DIRECTIVE_PATTERN.finditer(text):
            if match.group(1) in {"tool", "parallel"}:
                _apply(found, match.group(1), match.group(2))
    return found


def raise_fault(found: Directives) -> None:
    """Raise the requested fault, if any."""
    if found.fault is None:
        return
    name, message = FAULTS[found.fault]
    extra: dict[str, object] = {"originalStatusCode": 500} if name == "ModelErrorException" else {}
    raise BedrockError(name, message, **extra)
