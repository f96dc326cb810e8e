"""Framework-neutral HTTP: the requests the edge hands routes, the answers routes give back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Headers of a streamed answer (server-sent events) and of a whole JSON one, for every protocol.
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
JSON_HEADERS = {"Content-Type": "application/json"}


def combined_headers(headers: Mapping[str, str], multi: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A request's headers by lower-cased name, a repeated header's values joined with ``, `` (RFC 9110 5.3).

    API Gateway keeps only a repeated header's last value in ``headers`` and all of them in
    ``multiValueHeaders``: reading ``headers`` alone, the last of two ``Authorization`` headers won
    silently. Joined, whoever reads a header sees every value (the key store refuses two keys).
    """
    combined = {str(name).lower(): str(value) for name, value in headers.items()}
    every: dict[str, list[str]] = {}
    for name, values in (multi or {}).items():  # names differing in case only are one header
        if isinstance(values, list):
            every.setdefault(str(name).lower(), []).extend(str(value) for value in values)
    for name, values in every.items():
        if len(values) > 1:
            combined[name] = ", ".join(values)
    return combined


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request, as every entry point (the Chalice app, the streaming function) hands it to a route."""

    method: str
    #: As the entry point has them: Chalice's case-insensitive mapping, or lower-cased names.
    headers: Mapping[str, str]
    body: bytes | str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    #: The path's parameters (``{"model_id": …}`` for ``/v1/models/{model_id}``).
    params: Mapping[str, str] = field(default_factory=dict)
    #: The path the caller sent, stage included (API Gateway's ``requestContext.path``), when known.
    path: str | None = None
    #: API Gateway's own id for the request (in its logs too), when there is one.
    gateway_request_id: str | None = None
    #: Unix time by which the whole answer must be out; set by the streaming function, whose routes
    #: may run for minutes (the buffered ones end inside API Gateway's 29 s).
    deadline: float | None = None


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
    Whoever sends the body must call ``close()`` once it is sent, or when it stops
    early (the client went away, the function is out of time): the producer then
    stops the upstream call and bills what was generated, and a model answer's
    bill is stored then (after its end has left, so the caller does not wait).
    """

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]
    #: What stops the upstream and bills (``Turn.close``). Closing a generator that has not started
    #: runs none of its code, its ``finally`` included: without this, an answer closed before its first
    #: chunk would be billed only when garbage-collected, or never if the process ends first.
    on_close: Callable[[], None] | None = None
    #: The whole body, when it is known before anything is sent (a JSON answer; ``None`` for a
    #: stream). ``chunks`` yields the same bytes; a sender may instead send it with its length, in
    #: one write, and still closes the result after.
    body: bytes | None = None

    @classmethod
    def whole(
        cls, status: int, headers: dict[str, str], body: bytes, on_close: Callable[[], None] | None = None
    ) -> StreamingResult:
        """An answer whose body is complete before it is sent."""
        return cls(status, headers, iter([body]), on_close, body)

    def close(self) -> None:
        """Stop producing (idempotent); runs the producer's clean-up and billing."""
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        finally:
            if self.on_close is not None:
                self.on_close()
