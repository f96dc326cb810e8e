"""The `#emulator:` directives a prompt may carry: faults, timing, streams, tools, caching, guardrails, help.

``DIRECTIVES`` is the one list: the parser knows these names, ``#emulator:help``
answers with them, and the README's table (checked by
``tests/local/test_bedrock_emulator.py``) documents them.

A fault may be aimed (``only``: one model id, geography or region, so a fallback can be seen
answering) and made occasional (``rate``: a fraction of the requests, at random), which is how
``bench/resilience.py`` throttles 30% of the requests to one target.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import BedrockError, validation
from .models import PROFILE_PREFIXES

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
#: Faults that are not an error answer: the connection is reset before any byte of the answer.
RESETS = frozenset({"reset"})
GUARDRAIL_SIDES = ("input", "output")


@dataclass(frozen=True)
class Directive:
    """One directive: how it is written, and what it does."""

    usage: str
    does: str


#: Every directive, in the order the help lists them. A fault's text names the HTTP status the
#: gateway answers its callers with (``chalicelib/gateway/upstream.py``), not Bedrock's own.
DIRECTIVES: dict[str, Directive] = {
    "help": Directive("#emulator:help", "Answer with this list instead of quoting the prompt"),
    "tokens": Directive("#emulator:tokens=N", "Answer with exactly N tokens of filler text"),
    "chunk_delay": Directive(
        "#emulator:chunk_delay=S",
        f"Streams: wait S seconds between chunks (at most {MAX_CHUNK_DELAY_SECONDS:g}), to watch an answer arrive",
    ),
    "sleep": Directive(
        "#emulator:sleep=S", f"Wait S seconds before answering (at most {MAX_SLEEP_SECONDS:g}): a slow model"
    ),
    "cut": Directive("#emulator:cut", "Streams: the connection drops half-way through the answer"),
    "cut_clean": Directive("#emulator:cut_clean", "Streams: the stream ends half-way, without its final events"),
    "stream_error": Directive(
        "#emulator:stream_error", "Streams: Bedrock's modelStreamErrorException half-way through the answer"
    ),
    "tool": Directive(
        "#emulator:tool[=NAME]",
        "In the last user message: call the first tool the request offers (or NAME) instead of answering",
    ),
    "parallel": Directive("#emulator:parallel", "In the last user message: call two tools at once"),
    "cache_read": Directive("#emulator:cache_read=N", "Report N more input tokens, read from the prompt cache"),
    "cache_write": Directive(
        "#emulator:cache_write=N",
        "Report N more input tokens, written to the prompt cache (at the request's cache-point TTL: 1h if one asks)",
    ),
    "cache_write_1h": Directive(
        "#emulator:cache_write_1h=N", "Report N more input tokens, written to the prompt cache for an hour"
    ),
    "throttle": Directive(
        "#emulator:throttle",
        "Fail: ThrottlingException (the gateway moves to the model's next fallback at once; with none left, "
        "it answers 429)",
    ),
    "error": Directive("#emulator:error", "Fail: ModelErrorException (the gateway answers 502)"),
    "error500": Directive(
        "#emulator:error500", "Fail: InternalServerException (the gateway retries, then answers 503)"
    ),
    "unavailable": Directive(
        "#emulator:unavailable", "Fail: ServiceUnavailableException (the gateway retries, then answers 503)"
    ),
    "timeout": Directive("#emulator:timeout", "Fail: ModelTimeoutException (the gateway answers 504)"),
    "denied": Directive("#emulator:denied", "Fail: AccessDeniedException (the gateway answers 502)"),
    "not_ready": Directive(
        "#emulator:not_ready", "Fail: ModelNotReadyException (the gateway retries, then answers 429)"
    ),
    "too_long": Directive("#emulator:too_long", "Fail: ValidationException, input too long (the gateway answers 400)"),
    "reset": Directive(
        "#emulator:reset", "Fail: the connection is reset before any byte of the answer (the gateway retries it)"
    ),
    "only": Directive(
        "#emulator:only=TARGET",
        "The faults asked for hit only requests for TARGET: a model id, a geography (us, global) or a region; "
        "several, comma-separated",
    ),
    "rate": Directive("#emulator:rate=P", "The faults asked for hit a fraction P (0 to 1) of the requests, at random"),
    "retry_after": Directive(
        "#emulator:retry_after=S",
        "A throttle carries Retry-After: S (Bedrock's Converse sends none; the gateway then cools the target "
        "down that long)",
    ),
    "guardrail": Directive(
        "#emulator:guardrail=SIDE",
        "With a guardrail on the request: it blocks the prompt (SIDE input) or the answer once generated (SIDE output)",
    ),
}

_FLAGS = frozenset({"cut", "cut_clean", "stream_error", "parallel", "help"})
_NUMBERS = frozenset({"sleep", "chunk_delay", "retry_after"})
_COUNTS = frozenset({"cache_read", "cache_write", "cache_write_1h", "tokens"})
KNOWN = frozenset(DIRECTIVES)


def help_text() -> str:
    """The answer to ``#emulator:help``: every directive, one per line."""
    lines = ["The Bedrock emulator's directives (put them in a user message):"]
    lines += [f"{d.usage}: {d.does}." for d in DIRECTIVES.values()]
    return "\n".join(lines)


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
    help: bool = False
    tool: bool = False
    tool_name: str | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    cache_write_1h: int | None = None
    tokens: int | None = None
    retry_after: float = 0.0
    rate: float = 1.0
    only: tuple[str, ...] = ()
    guardrail: str | None = None
    #: Set by ``aim``: whether the faults hit this request (its target, its draw of ``rate``).
    hits: bool = field(default=True)

    def aim(self, model_id: str, region: str | None, draw: float | None = None) -> None:
        """Decide whether this request's faults hit it: its target matches ``only`` and it is drawn by ``rate``."""
        if self.only and not any(_matches(target, model_id, region) for target in self.only):
            self.hits = False
            return
        if self.rate < 1.0:
            self.hits = (random.random() if draw is None else draw) < self.rate


def _matches(target: str, model_id: str, region: str | None) -> bool:
    """True when ``target`` names the model id, its base id, its geography, or the request's region."""
    bare = model_id.rsplit("/", 1)[1] if model_id.startswith("arn:") and "/" in model_id else model_id
    prefix, dot, base = bare.partition(".")
    if target in (bare, model_id) or target == region:
        return True
    return bool(dot) and prefix in PROFILE_PREFIXES and target in (prefix, base)


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


def _fraction(raw: str | None) -> float:
    """A probability from 0 to 1."""
    try:
        value = float(raw or "")
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise validation("#emulator:rate needs a fraction from 0 to 1, e.g. #emulator:rate=0.3")
    return value


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
    elif name == "retry_after":
        found.retry_after = _number(name, raw, MAX_SLEEP_SECONDS)
    elif name in RESETS:
        found.fault = found.fault or name
    elif name == "rate":
        found.rate = _fraction(raw)
    elif name == "only":
        targets = tuple(t for t in (raw or "").split(",") if t)
        if not targets:
            raise validation("#emulator:only needs a target, e.g. #emulator:only=us or #emulator:only=us-east-1")
        found.only = found.only + targets
    elif name == "guardrail":
        if raw not in GUARDRAIL_SIDES:
            raise validation(
                "#emulator:guardrail needs a side: #emulator:guardrail=input or #emulator:guardrail=output"
            )
        found.guardrail = raw
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
                raise validation(
                    f"Unknown emulator directive #emulator:{name}; known: {', '.join(sorted(KNOWN))} "
                    "(#emulator:help answers with what each does)."
                )
            if name not in {"tool", "parallel"}:
                _apply(found, name, raw)
    for text in last_user_texts:
        for match in DIRECTIVE_PATTERN.finditer(text):
            if match.group(1) in {"tool", "parallel"}:
                _apply(found, match.group(1), match.group(2))
    return found


def raise_fault(found: Directives) -> None:
    """Raise the requested error fault, if any hits this request (``reset`` is the server's to do)."""
    if found.fault is None or found.fault in RESETS or not found.hits:
        return
    name, message = FAULTS[found.fault]
    extra: dict[str, object] = {"originalStatusCode": 500} if name == "ModelErrorException" else {}
    headers = {"Retry-After": f"{found.retry_after:g}"} if name == "ThrottlingException" and found.retry_after else {}
    raise BedrockError(name, message, headers=headers, **extra)


def resets(found: Directives) -> bool:
    """True when this request's connection is to be reset before any byte of the answer."""
    return found.fault in RESETS and found.hits
