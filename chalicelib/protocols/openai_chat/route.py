"""``POST /v1/chat/completions``: OpenAI's chat completions over the model service, streamed as generated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from chalicelib.protocols.openai_chat.parse import ChatCompletionRequest, parse_chat_request
from chalicelib.protocols.openai_chat.render import render_completion, stream_chunks
from chalicelib.protocols.route import ModelRoute, completed
from chalicelib.service.service import Turn
from chalicelib.shared.usage import UsageEntry


class ChatCompletions(ModelRoute[ChatCompletionRequest]):
    """The chat completions route: authenticate, parse, converse, render."""

    surface = "openai"
    ascii_json = True

    def parse(self, body: dict[str, Any], context: Any) -> ChatCompletionRequest:
        return parse_chat_request(body)

    def stream(self, turn: Turn, request: ChatCompletionRequest) -> Iterator[bytes]:
        return stream_chunks(turn, request, _ids(turn, request))

    def whole(self, turn: Turn, request: ChatCompletionRequest) -> tuple[Any, UsageEntry | None]:
        completion = completed(turn)
        return render_completion(completion, _ids(turn, request)), completion.entry


def _ids(turn: Turn, request: ChatCompletionRequest) -> dict[str, Any]:
    return {"id": f"chatcmpl-{turn.request_id}", "created": int(time.time()), "model": request.conversation.model}
