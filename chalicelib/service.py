"""The OpenAI surface: one function per route, each authenticate → validate → call → bill.

``app.py`` calls exactly one method here per route and turns the returned
``HttpResult`` (or a raised ``AppError``) into a response. Dependencies are
injected so tests can run the whole path against moto and the emulator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.catalog import Catalog
from chalicelib.gateway import Gateway, now_seconds
from chalicelib.keys import KeyRecord, KeyStore
from chalicelib.metering import Meter
from chalicelib.observability import logger
from chalicelib.validation import ChatRequest, parse_chat_request, parse_json_body


@dataclass
class HttpResult:
    """A framework-neutral HTTP answer."""

    body: dict[str, Any] | str
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class OpenAIService:
    """Implements ``/v1/*`` over injected keys, catalog, gateway and ledger."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        catalog: Callable[[], Catalog],
        gateway: Gateway,
        meter: Meter,
        max_body_bytes: int,
    ) -> None:
        self._keys = keys
        self._catalog = catalog
        self._gateway = gateway
        self._meter = meter
        self._max_body_bytes = max_body_bytes

    def list_models(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /v1/models``: the catalog, narrowed to the key's allowlist."""
        key = self._keys.authenticate(headers)
        models = [m.to_openai() for m in self._catalog() if key.allows_model(m.id)]
        return HttpResult({"object": "list", "data": models})

    def get_model(self, headers: Mapping[str, str], model_id: str) -> HttpResult:
        """``GET /v1/models/{id}``: one catalog model the key may use."""
        key = self._keys.authenticate(headers)
        entry = self._catalog().resolve(model_id)
        self._check_allowed(key, entry.id, model_id)
        return HttpResult(entry.to_openai())

    def key_status(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /v1/key``: the calling key's limits, spend and remaining budget (no admin rights needed)."""
        return HttpResult(self._meter.key_status(self._keys.authenticate(headers)))

    def chat_completions(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /v1/chat/completions``: validate, call Bedrock, bill, answer."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        key = self._keys.authenticate(headers)
        request = parse_chat_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        entry = self._catalog().resolve(request.model, mode="chat")
        self._check_allowed(key, entry.id, request.model)
        log = {"request_id": request_id, "key_id": key.key_id, "model": entry.id, "stream": request.stream}
        ticket = self._meter.admit(
            key, entry, input_tokens=estimate_input_tokens(request), max_output_tokens=request.options.get("max_tokens")
        )
        try:
            outcome = self._gateway.chat(request, entry, completion_id=f"chatcmpl-{request_id}", created=now_seconds())
        except errors.AppError as exc:
            self._meter.release(ticket)
            exc.headers.update(ticket.headers)
            logger.info(
                "chat completion failed",
                extra={**log, "status": exc.status_code, "error_code": exc.code, "latency_ms": _ms(started)},
            )
            raise
        latency_ms = _ms(started)
        usage_entry = self._meter.settle(
            ticket,
            request_id=request_id,
            operation="chat",
            usage=outcome.usage,
            latency_ms=latency_ms,
            status=outcome.status,
        )
        logger.info(
            "chat completion",
            extra={
                **log,
                "status": 200,
                "outcome": outcome.status,
                "finish_reason": outcome.finish_reason,
                "latency_ms": latency_ms,
                "input_tokens": outcome.usage.input_tokens,
                "output_tokens": outcome.usage.output_tokens,
                "cache_read_tokens": outcome.usage.cache_read_tokens,
                "cache_write_tokens": outcome.usage.cache_write_tokens,
                "cost_usd": str(usage_entry.cost),
            },
        )
        headers_out = {"x-request-id": request_id, **ticket.headers}
        if outcome.streamed:
            headers_out.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        return HttpResult(outcome.body, headers=headers_out)

    @staticmethod
    def _check_allowed(key: KeyRecord, model_id: str, requested: str) -> None:
        if not key.allows_model(model_id):
            raise errors.PermissionDenied(
                f"This API key is not allowed to use the model '{requested}'.",
                param="model",
                code="model_not_allowed",
            )


def estimate_input_tokens(request: ChatRequest) -> int:
    """An upper bound of the prompt's tokens, for admission (a token is at least one character)."""
    images = 0
    characters = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            characters += len(content)
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                images += 1
            else:
                characters += len(part.get("text", ""))
        characters += len(str(message.get("tool_calls") or ""))
    characters += len(str(request.options.get("tools") or "")) + len(str(request.options.get("response_format") or ""))
    return characters + images * IMAGE_TOKEN_BOUND


#: Bedrock bills an image at most ~1,600 tokens (Claude: 1.15 MP / 750); reserve a little more.
IMAGE_TOKEN_BOUND = 2_000


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
