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
from chalicelib.accounting.ledger import UsageEntry
from chalicelib.accounting.metering import Meter, prompt_token_bound
from chalicelib.catalog.catalog import Catalog, ModelEntry
from chalicelib.core.body import parse_json_body
from chalicelib.core.http import HttpResult
from chalicelib.gateway import (
    ChatOutcome,
    Gateway,
    bedrock_prompt,
    embedding_limits,
    embedding_texts,
    now_seconds,
)
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.observability import logger
from chalicelib.protocols.openai_validation import (
    ChatRequest,
    EmbeddingRequest,
    parse_chat_request,
    parse_embedding_request,
)


@dataclass
class ChatRun:
    """One billed chat completion: its answer, ledger entry and the headers to send."""

    request_id: str
    model: ModelEntry
    outcome: ChatOutcome
    entry: UsageEntry
    latency_ms: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class EmbeddingRun:
    """One billed embeddings call."""

    request_id: str
    model: ModelEntry
    body: dict[str, Any]
    entry: UsageEntry
    latency_ms: int
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
        key = self._keys.authenticate(headers)
        request = parse_chat_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        run = self.run_chat(key, request, started=started)
        headers_out = {"x-request-id": run.request_id, **run.headers}
        if run.outcome.streamed:
            headers_out.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        return HttpResult(run.outcome.body, headers=headers_out)

    def run_chat(
        self,
        key: KeyRecord,
        request: ChatRequest,
        *,
        started: float | None = None,
        timeout_seconds: float | None = None,
        surface: str = "openai",
    ) -> ChatRun:
        """Admit, call Bedrock, bill: one chat completion for an authenticated key (routes and MCP tools).

        Raises
        ------
        AppError
            Unknown or disallowed model, refused admission, or an upstream failure
            (the reservation is released and the admission headers ride on the error).
        """
        started = time.perf_counter() if started is None else started
        request_id = uuid.uuid4().hex
        entry = self._catalog().resolve(request.model, mode="chat")
        self._check_allowed(key, entry.id, request.model)
        log = {
            "request_id": request_id,
            "key_id": key.key_id,
            "model": entry.id,
            "stream": request.stream,
            "surface": surface,
        }
        ticket = self._meter.admit(
            key,
            entry,
            input_tokens=prompt_token_bound(*bedrock_prompt(request)),
            max_output_tokens=request.options.get("max_tokens"),
        )
        try:
            outcome = self._gateway.chat(
                request,
                entry,
                completion_id=f"chatcmpl-{request_id}",
                created=now_seconds(),
                timeout_seconds=timeout_seconds,
            )
        except errors.AppError as exc:
            self._meter.release(ticket)
            exc.headers.update(ticket.headers)
            exc.context.update(log, latency_ms=_ms(started))
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
        return ChatRun(request_id, entry, outcome, usage_entry, latency_ms, headers=dict(ticket.headers))

    def embeddings(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /v1/embeddings``: validate, embed with Bedrock, bill, answer."""
        started = time.perf_counter()
        key = self._keys.authenticate(headers)
        request = parse_embedding_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        run = self.run_embeddings(key, request, started=started)
        return HttpResult(run.body, headers={"x-request-id": run.request_id, **run.headers})

    def run_embeddings(
        self,
        key: KeyRecord,
        request: EmbeddingRequest,
        *,
        started: float | None = None,
        timeout_seconds: float | None = None,
        surface: str = "openai",
    ) -> EmbeddingRun:
        """Admit, embed, bill: one embeddings call for an authenticated key (routes and MCP tools).

        Raises
        ------
        AppError
            Unknown or disallowed model, inputs over the model's limits, refused
            admission, or an upstream failure (what Bedrock did embed is still billed).
        """
        started = time.perf_counter() if started is None else started
        request_id = uuid.uuid4().hex
        entry = self._catalog().resolve(request.model, mode="embedding")
        self._check_allowed(key, entry.id, request.model)
        texts = embedding_texts(request, embedding_limits(entry))
        log = {"request_id": request_id, "key_id": key.key_id, "model": entry.id, "surface": surface}
        # A token is at least one UTF-8 byte (as in metering.prompt_token_bound), so bytes bound the tokens.
        ticket = self._meter.admit(key, entry, input_tokens=sum(len(t.encode()) for t in texts), max_output_tokens=0)
        try:
            outcome = self._gateway.embed(request, entry, texts=texts, timeout_seconds=timeout_seconds)
        except errors.AppError as exc:
            self._meter.release(ticket)
            exc.headers.update(ticket.headers)
            raise
        latency_ms = _ms(started)
        if outcome.error is not None and not outcome.usage.input_tokens:
            self._meter.release(ticket)
        else:
            usage_entry = self._meter.settle(
                ticket,
                request_id=request_id,
                operation="embedding",
                usage=outcome.usage,
                latency_ms=latency_ms,
                status="ok" if outcome.error is None else "partial",
            )
        if outcome.error is not None:
            outcome.error.headers.update(ticket.headers)
            outcome.error.context.update(log, latency_ms=latency_ms)
            raise outcome.error
        logger.info(
            "embeddings",
            extra={
                **log,
                "status": 200,
                "inputs": len(texts),
                "latency_ms": latency_ms,
                "input_tokens": outcome.usage.input_tokens,
                "cost_usd": str(usage_entry.cost),
            },
        )
        return EmbeddingRun(request_id, entry, outcome.body, usage_entry, latency_ms, headers=dict(ticket.headers))

    def usable_models(self, key: KeyRecord, mode: str | None = None) -> list[ModelEntry]:
        """The catalog models ``key`` may call, in catalog order (optionally one mode)."""
        return [m for m in self._catalog() if key.allows_model(m.id) and (mode is None or m.mode == mode)]

    def resolve_model(self, key: KeyRecord, name: str, *, mode: str | None = None) -> ModelEntry:
        """The catalog entry for ``name`` if ``key`` may use it.

        Raises
        ------
        NotFound
            No such model (of that mode).
        PermissionDenied
            The key may not use it.
        """
        entry = self._catalog().resolve(name, mode=mode)
        self._check_allowed(key, entry.id, name)
        return entry

    def key_status_for(self, key: KeyRecord) -> dict[str, Any]:
        """The key's limits, spend and remaining budget (the ``Meter``'s view)."""
        return self._meter.key_status(key)

    def count_tokens(self, model: ModelEntry, *, messages: list[dict[str, Any]] | None = None, text: str = "") -> int:
        """A local estimate of a prompt's tokens for ``model`` (no Bedrock call, nothing billed)."""
        return self._gateway.count_tokens(model, messages=messages, text=text)

    @staticmethod
    def _check_allowed(key: KeyRecord, model_id: str, requested: str) -> None:
        if not key.allows_model(model_id):
            raise errors.PermissionDenied(
                f"This API key is not allowed to use the model '{requested}'.",
                param="model",
                code="model_not_allowed",
            )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
