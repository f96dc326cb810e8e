"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API over the core.

Authenticate (``x-api-key`` or ``Authorization: Bearer``), check the
``anthropic-version``, parse (``parse``), converse through the core, render
(``render``). Betas (``anthropic-beta``) never refuse a request by
themselves: what a beta unlocks arrives as body fields and content blocks,
and those are checked one by one, so an unknown beta is recorded in the log
line and otherwise ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from chalicelib import errors
from chalicelib.catalog.catalog import ModelEntry
from chalicelib.conversation.events import Completion
from chalicelib.conversation.request import Conversation, Reasoning
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.anthropic.parse import (
    API_VERSIONS,
    MIN_THINKING_BUDGET,
    parse_count_tokens_request,
    parse_messages_request,
)
from chalicelib.protocols.anthropic.render import render_message, stream_events
from chalicelib.service.service import ModelService
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.http import JSON_HEADERS, SSE_HEADERS, StreamingResult
from chalicelib.shared.money import usd

_BETA = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_MAX_BETAS = 64


class Messages:
    """The Messages API routes: authenticate, parse, converse, render."""

    def __init__(
        self, *, keys: KeyStore, models: ModelService, max_body_bytes: int, surface: str = "anthropic"
    ) -> None:
        self._keys = keys
        self._models = models
        self._max_body_bytes = max_body_bytes
        self._surface = surface

    def create(self, headers: Mapping[str, str], raw_body: bytes | str | None, deadline: float) -> StreamingResult:
        """``POST /v1/messages``: server-sent events as they are generated, or one ``message``.

        Raises
        ------
        AppError
            Before any byte is sent: a bad key, version or body, refused admission, an upstream failure.
        """
        key = self._keys.authenticate(headers, accept_x_api_key=True)
        version, betas = _version(headers), _betas(headers)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes)
        request = parse_messages_request(body, betas=betas, version=version)
        conversation = request.conversation
        turn = self._models.converse(key, conversation, deadline=deadline, surface=self._surface, fit=fitted)
        ids = {"id": f"msg_{turn.request_id}", "model": conversation.model}
        out_headers = {**turn.headers, "request-id": turn.request_id}
        if conversation.stream:
            return StreamingResult(200, {**out_headers, **SSE_HEADERS}, stream_events(turn, ids), on_close=turn.close)
        completion = Completion.of(turn)
        if completion.error is not None:
            raise completion.error  # billed already (partial); a whole answer cannot end in an error event
        assert completion.entry is not None
        out_headers.update(JSON_HEADERS)
        out_headers["x-pennyworth-cost-usd"] = usd(completion.entry.cost) or "0"
        return StreamingResult(200, out_headers, iter([_json(render_message(completion, ids))]))

    def count_tokens(
        self, headers: Mapping[str, str], raw_body: bytes | str | None, deadline: float
    ) -> StreamingResult:
        """``POST /v1/messages/count_tokens``: the prompt's input tokens, estimated locally (free, no Bedrock call).

        Raises
        ------
        AppError
            A bad key, version or body, or a model the key may not use.
        """
        key = self._keys.authenticate(headers, accept_x_api_key=True)
        _version(headers)
        conversation = parse_count_tokens_request(
            parse_json_body(raw_body, max_bytes=self._max_body_bytes), betas=_betas(headers)
        )
        model = self._models.resolve_model(key, conversation.model, mode="chat")
        tokens = self._models.count_tokens(model, messages=conversation.messages)
        if conversation.tools:
            tokens += self._models.count_tokens(model, text=json.dumps(conversation.tools, ensure_ascii=False))
        return StreamingResult(200, dict(JSON_HEADERS), iter([_json({"input_tokens": tokens})]))


def fitted(conversation: Conversation, model: ModelEntry) -> Conversation:
    """The conversation fitted to the catalog model, the way Anthropic clients need it.

    Claude Code asks for thinking and 32,000 output tokens whatever the model: a model
    that cannot think answers without thinking, and ``max_tokens`` is lowered to the
    model's maximum (a maximum, so nothing the model could produce is lost).
    """
    if conversation.reasoning is not None and not model.supports_reasoning:
        conversation = conversation.but(reasoning=None)
    limit = model.max_output_tokens
    if limit and conversation.max_tokens and conversation.max_tokens > limit:
        conversation = conversation.but(max_tokens=limit)
        budget = conversation.reasoning.budget_tokens if conversation.reasoning else None
        if budget and budget >= limit:
            if limit - 1 < MIN_THINKING_BUDGET:
                raise errors.InvalidRequest(
                    f"The model '{conversation.model}' produces at most {limit} tokens, too few for thinking.",
                    param="thinking",
                )
            conversation = conversation.but(reasoning=Reasoning(budget_tokens=limit - 1))
    return conversation


def _version(headers: Mapping[str, str]) -> str:
    """The ``anthropic-version`` asked for (2023-06-01 when absent).

    Raises
    ------
    InvalidRequest
        A version this gateway does not speak (2023-01-01's streaming format, or one Anthropic never published).
    """
    version = next((v.strip() for k, v in headers.items() if k.lower() == "anthropic-version"), None)
    if version is None:
        return API_VERSIONS[0]
    if version not in API_VERSIONS:
        raise errors.InvalidRequest(
            f"anthropic-version: {version[:40]!r} is not supported; this gateway speaks {' and '.join(API_VERSIONS)}.",
            param="anthropic-version",
        )
    return version


def _betas(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The ``anthropic-beta`` values (comma-separated, repeatable).

    Raises
    ------
    InvalidRequest
        A malformed beta list.
    """
    raw = ",".join(v for k, v in headers.items() if k.lower() == "anthropic-beta")
    betas = tuple(dict.fromkeys(b.strip() for b in raw.split(",") if b.strip()))
    if len(betas) > _MAX_BETAS or not all(_BETA.match(b) for b in betas):
        raise errors.InvalidRequest(
            "anthropic-beta: expected a comma-separated list of beta names.", param="anthropic-beta"
        )
    return betas


def for_anthropic_clients(exc: errors.AppError) -> errors.AppError:
    """Headers Anthropic's SDKs act on: ``request-id``, and no retrying a spent budget.

    Applied by the route's error translation (``streaming.routes``) to every error, once its
    ``x-request-id`` is known, including refusals from before the model call.
    """
    if "x-request-id" in exc.headers:
        exc.headers.setdefault("request-id", exc.headers["x-request-id"])
    if isinstance(exc, errors.QuotaExceeded):
        # The Stainless SDKs (and so Claude Code) retry every 429 unless told not to.
        exc.headers["x-should-retry"] = "false"
    return exc


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
