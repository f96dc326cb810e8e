"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API over the model service.

Authenticate (``x-api-key`` or ``Authorization: Bearer``), check the
``anthropic-version``, parse (``parse``), converse through the model service,
render (``render``). Betas (``anthropic-beta``) never refuse a request by
themselves: what a beta unlocks arrives as body fields and content blocks,
and those are checked one by one, so an unknown beta is recorded in the log
line and otherwise ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib.catalog import ModelEntry
from chalicelib.conversation.request import Conversation
from chalicelib.protocols.anthropic.parse import (
    MessagesRequest,
    api_version,
    beta_names,
    fit_to_model,
    parse_count_tokens_request,
    parse_messages_request,
)
from chalicelib.protocols.anthropic.render import render_message, stream_events
from chalicelib.protocols.route import ModelRoute, Route, completed
from chalicelib.service.service import Turn
from chalicelib.shared.http import JSON_HEADERS, HttpRequest, StreamingResult
from chalicelib.shared.usage import UsageEntry


class Messages(ModelRoute[MessagesRequest]):
    """``POST /v1/messages``: server-sent events as they are generated, or one ``message``."""

    surface = "anthropic"
    accepts_x_api_key = True

    def read_headers(self, headers: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
        return api_version(headers), beta_names(headers)

    def parse(self, body: dict[str, Any], context: tuple[str, tuple[str, ...]]) -> MessagesRequest:
        version, betas = context
        return parse_messages_request(body, betas=betas, version=version)

    def fit(self, conversation: Conversation, model: ModelEntry) -> Conversation:
        return fit_to_model(conversation, model)

    def answer_headers(self, turn: Turn, request: MessagesRequest) -> dict[str, str]:
        return {"request-id": turn.request_id}

    def stream(self, turn: Turn, request: MessagesRequest) -> Iterator[bytes]:
        return stream_events(turn, _ids(turn, request))

    def whole(self, turn: Turn, request: MessagesRequest) -> tuple[Any, UsageEntry | None]:
        completion = completed(turn)
        return render_message(completion, _ids(turn, request)), completion.entry


class CountTokens(Route):
    """``POST /v1/messages/count_tokens``: the prompt's input tokens, estimated locally.

    Free (no Bedrock call, nothing billed), but a request against the key's requests per minute.
    """

    accepts_x_api_key = True

    def handle(self, request: HttpRequest) -> StreamingResult:
        """Count one prompt's tokens.

        Raises
        ------
        AppError
            A bad key, version or body, a model the key may not use, or the key's request limit.
        """
        key = self.key(request)
        api_version(request.headers)
        conversation = parse_count_tokens_request(self.body(request), betas=beta_names(request.headers))
        model = self._models.resolve_model(key, conversation.model, mode="chat")
        headers = self._models.admit_count(key, model)
        tokens = self._models.count_tokens(model, messages=conversation.messages)
        if conversation.tools:
            tokens += self._models.count_tokens(model, text=json.dumps(conversation.tools, ensure_ascii=False))
        body = json.dumps({"input_tokens": tokens}, separators=(",", ":"), ensure_ascii=False).encode()
        return StreamingResult.whole(200, {**headers, **JSON_HEADERS}, body)


def _ids(turn: Turn, request: MessagesRequest) -> dict[str, str]:
    return {"id": f"msg_{turn.request_id}", "model": request.conversation.model}
