"""``POST /v1/responses``: authenticate, parse, converse, render (a stream, or one ``Response``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai_responses.render import ResponseWriter, sse
from chalicelib.protocols.openai_responses.request import parse_responses_request
from chalicelib.service.service import ModelService, Turn
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.http import JSON_HEADERS, SSE_HEADERS, StreamingResult
from chalicelib.shared.money import usd


class Responses:
    """The Responses route over the core: stateless, billed like chat completions."""

    def __init__(
        self, *, keys: KeyStore, models: ModelService, max_body_bytes: int, surface: str = "responses"
    ) -> None:
        self._keys = keys
        self._models = models
        self._max_body_bytes = max_body_bytes
        self._surface = surface

    def handle(self, headers: Mapping[str, str], raw_body: bytes | str | None, deadline: float) -> StreamingResult:
        """Answer one request: Responses stream events as they are generated, or one ``Response`` object.

        Raises
        ------
        AppError
            Before any byte is sent: a bad key or body, refused admission, an upstream failure.
        """
        key = self._keys.authenticate(headers)
        request = parse_responses_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        turn = self._models.converse(key, request.conversation, deadline=deadline, surface=self._surface)
        writer = ResponseWriter(request, f"resp_{turn.request_id}")
        if request.conversation.stream:
            return StreamingResult(200, {**turn.headers, **SSE_HEADERS}, _stream(turn, writer), on_close=turn.close)
        try:
            for event in turn:
                writer.feed(event)
        finally:
            turn.close()
        if writer.error is not None:
            raise writer.error  # billed already (partial); a whole answer cannot end in an error event
        cost = usd(writer.entry.cost) if writer.entry is not None else None
        headers_out = {**turn.headers, **JSON_HEADERS, "x-pennyworth-cost-usd": cost or "0"}
        return StreamingResult(200, headers_out, iter([_json(writer.response)]))


def _stream(turn: Turn, writer: ResponseWriter) -> Iterator[bytes]:
    """Every stream event, each sent as soon as the core's event that makes it arrives."""
    try:
        for event in writer.start():
            yield sse(event)
        for core_event in turn:
            for event in writer.feed(core_event):
                yield sse(event)
    finally:
        turn.close()


def _json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
