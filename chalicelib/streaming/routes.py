"""The routes served by the streaming function (and by ``make dev``'s local front).

Every other route stays on the Chalice app (``app.py``). ``tools/package.py``
reads this table to point these API Gateway methods at the streaming function
with ``responseTransferMode: STREAM``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.shared.http import StreamingResult

#: headers (lower-cased), raw body, deadline (Unix seconds) → the answer.
RouteHandler = Callable[[Mapping[str, str], bytes | str | None, float], StreamingResult]


@dataclass(frozen=True)
class StreamRoute:
    """One streaming route: where it is, what answers it, how its errors look."""

    name: str
    method: str
    path: str
    handler: RouteHandler
    #: The error envelope of the route's protocol; it may add the protocol's own headers to ``exc.headers``.
    error_body: Callable[[errors.AppError], Any]


def _openai_error(exc: errors.AppError) -> Any:
    return exc.to_body()


def _anthropic_error(exc: errors.AppError) -> Any:
    from chalicelib.protocols.anthropic import error_body, for_anthropic_clients

    return error_body(for_anthropic_clients(exc))


def routes() -> list[StreamRoute]:
    """Every streaming route (imported late: the adapters pull in the whole service)."""
    from chalicelib import wiring

    return [
        StreamRoute(
            "chat_completions",
            "POST",
            "/v1/chat/completions",
            lambda headers, body, deadline: wiring.chat_adapter().handle(headers, body, deadline),
            _openai_error,
        ),
        StreamRoute(
            "messages",
            "POST",
            "/v1/messages",
            lambda headers, body, deadline: wiring.messages_adapter().create(headers, body, deadline),
            _anthropic_error,
        ),
        StreamRoute(
            "messages_count_tokens",
            "POST",
            "/v1/messages/count_tokens",
            lambda headers, body, deadline: wiring.messages_adapter().count_tokens(headers, body, deadline),
            _anthropic_error,
        ),
        StreamRoute(
            "responses",
            "POST",
            "/v1/responses",
            lambda headers, body, deadline: wiring.responses_adapter().handle(headers, body, deadline),
            _openai_error,
        ),
    ]


#: (method, path) of every streaming route, without building any of them (packaging and the local front).
STREAM_PATHS: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
)


def error_body_for(path: str) -> Callable[[errors.AppError], Any]:
    """The error envelope of the protocol served at ``path``, whatever the method (OpenAI's elsewhere)."""
    path = path.rstrip("/") or "/"
    return next((r.error_body for r in routes() if r.path == path), _openai_error)


def find_route(method: str, path: str) -> StreamRoute | None:
    """The route for ``method path`` (a trailing slash is tolerated), or None."""
    path = path.rstrip("/") or "/"
    return next((r for r in routes() if r.method == method and r.path == path), None)
