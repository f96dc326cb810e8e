"""Calls the streaming routes the way API Gateway (and the local front) does: an event in, chunks out.

Mirrors the parts of Chalice's test client the tests use (``status_code``,
``headers``, ``body``, ``json_body``) and also keeps every chunk with the time
it was produced, so streaming tests can see what left when.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.streaming.handler import handle
from local.front import api_gateway_event


class Headers(dict):
    """Response headers, looked up case-insensitively (keys are stored lower-cased)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass
class StreamResponse:
    status_code: int
    headers: Headers
    chunks: list[bytes] = field(default_factory=list)
    #: Seconds from the call to each chunk (the handler's own pace, no network in between).
    times: list[float] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def json_body(self) -> Any:
        return json.loads(self.body)

    def sse(self) -> list[str]:
        """The ``data:`` payloads of a server-sent-events body, in order."""
        text = self.body.decode()
        assert text.endswith("\n\n"), text[-200:]
        events = [block for block in text.split("\n\n") if block]
        assert all(event.startswith("data: ") for event in events), events
        return [event[len("data: ") :] for event in events]


class StreamClient:
    """``post(path, headers=…, body=…)`` against ``chalicelib.streaming.handler``."""

    def __init__(self, timeout_seconds: float = 300) -> None:
        self.timeout_seconds = timeout_seconds

    def post(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        *,
        stop_after: int | None = None,
    ) -> StreamResponse:
        """Send one request; read the whole body, or only ``stop_after`` chunks and then hang up."""
        started = time.monotonic()
        raw = body.encode() if isinstance(body, str) else body
        event = api_gateway_event("POST", path, "", dict(headers or {}), raw)
        result = handle(event, deadline=time.time() + self.timeout_seconds)
        response = StreamResponse(result.status, Headers({k.lower(): v for k, v in result.headers.items()}))
        try:
            for chunk in result.chunks:
                response.chunks.append(chunk)
                response.times.append(time.monotonic() - started)
                if stop_after is not None and len(response.chunks) >= stop_after:
                    break
        finally:
            result.close()
        return response


def in_process_transport(httpx: Any, timeout_seconds: float = 300) -> Any:
    """A transport of the ``httpx`` module given that answers the streaming routes in process, for the SDKs.

    ``OpenAI(base_url="http://gateway.test/v1", http_client=httpx.Client(transport=in_process_transport(httpx)))``
    runs the SDK's own parsing (its error events included) over what the handler streams. (The
    anthropic SDK brings its own fork of the module, ``httpx2``.)
    """

    def serve(request: httpx.Request) -> httpx.Response:
        event = api_gateway_event(
            request.method, request.url.path, request.url.query.decode(), dict(request.headers), request.content
        )
        result = handle(event, deadline=time.time() + timeout_seconds)
        try:
            body = b"".join(result.chunks)
        finally:
            result.close()
        return httpx.Response(result.status, headers=result.headers, content=body)

    return httpx.MockTransport(serve)
