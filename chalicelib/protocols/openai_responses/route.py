"""``POST /v1/responses``: authenticate, parse, converse, render (a stream, or one ``Response``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chalicelib.protocols.openai_responses.parse import ResponsesRequest, parse_responses_request
from chalicelib.protocols.openai_responses.render import ResponseWriter, sse
from chalicelib.protocols.route import ModelRoute
from chalicelib.service.service import Turn
from chalicelib.shared.usage import UsageEntry


class Responses(ModelRoute[ResponsesRequest]):
    """The Responses route over the model service: stateless, billed like chat completions."""

    surface = "responses"

    def parse(self, body: dict[str, Any], context: Any) -> ResponsesRequest:
        return parse_responses_request(body)

    def answer_headers(self, turn: Turn, request: ResponsesRequest) -> dict[str, str]:
        # Hosted tools the client only offered (Codex: web search) were dropped: say which.
        return {"x-pennyworth-dropped-tools": ", ".join(request.dropped_tools)} if request.dropped_tools else {}

    def stream(self, turn: Turn, request: ResponsesRequest) -> Iterator[bytes]:
        """Every stream event, each sent as soon as the event that makes it arrives."""
        writer = ResponseWriter(request, f"resp_{turn.request_id}")
        try:
            for event in writer.start():
                yield sse(event)
            for turn_event in turn:
                for event in writer.feed(turn_event):
                    yield sse(event)
        finally:
            turn.close()

    def whole(self, turn: Turn, request: ResponsesRequest) -> tuple[Any, UsageEntry | None]:
        writer = ResponseWriter(request, f"resp_{turn.request_id}")
        for event in turn:
            writer.feed(event)
        if writer.error is not None:
            raise writer.error  # billed already (partial); a whole answer cannot end in an error event
        return writer.response, writer.entry
