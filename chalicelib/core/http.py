"""Framework-neutral HTTP answers: what services return and the edge turns into responses."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Headers of a streamed answer (server-sent events) and of a whole JSON one, for every protocol.
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class HttpResult:
    """A framework-neutral HTTP answer."""

    body: dict[str, Any] | str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamingResult:
    """An HTTP answer whose body leaves chunk by chunk, as it is produced.

    ``status`` and ``headers`` are final before the first chunk is asked for.
    Whoever sends the body must call ``close()`` when it stops early (the client
    went away, the function is out of time): the producer then stops the
    upstream call and bills what was generated.
    """

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]

    def close(self) -> None:
        """Stop producing (idempotent); runs the producer's clean-up and billing."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
