"""One row of the route table: where a route is, who serves it, what it calls, how it is described."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.shared.http import HttpRequest, HttpResult, StreamingResult

#: What a route calls: the request in, its answer out (an ``AppError`` raised for a refusal).
Serve = Callable[[HttpRequest], HttpResult | StreamingResult]


@dataclass(frozen=True)
class Endpoint:
    """One operation: where it is, who may call it, what serves it, what goes in and what comes out."""

    method: str
    path: str
    summary: str
    tag: str
    auth: str | None = None  # "api_key", "cognito" or None
    # -- how it is served
    #: The route's name: the Chalice view's, and the ``route`` of its request log line.
    name: str = ""
    serve: Serve | None = None
    #: Served by the streaming function (an answer may stream for minutes); else by the Chalice app, buffered.
    streamed: bool = False
    #: Whose error envelope its errors travel in: ``openai`` or ``anthropic`` (``chalicelib/edge/answers.py``).
    envelope: str = "openai"
    #: The route reads its body whatever its Content-Type (so a wrong one gets the route's own error,
    #: not Chalice's 415).
    any_content_type: bool = False
    # -- how it is described (``chalicelib/edge/openapi.py``)
    body: dict[str, Any] | None = None  # JSON schema of the request body
    body_required: bool = True
    response: dict[str, Any] | None = None  # JSON schema of the success body
    status: int = 200
    errors: tuple[int, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: bool = False  # also answers text/event-stream (stream: true)
    media_types: tuple[str, ...] = ("application/json",)  # of the success body
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)  # status → a full response object
