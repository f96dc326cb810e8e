"""``Gateway``: calls a model's upstream (Bedrock, or an OpenAI-compatible API) through LiteLLM.

Every call goes through one seam: the model's ``Target`` and its provider adapter
(``chalicelib/gateway/providers.py``) give LiteLLM the model string, where to call and how to
sign in; chat, embeddings and token counts are the same for every provider.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.conversation.events import Event
from chalicelib.conversation.request import Conversation, EmbeddingRequest
from chalicelib.gateway.embeddings import (
    EmbeddingOutcome,
    embedding_dimensions,
    embedding_limits,
    embedding_texts,
    encode_embedding,
)
from chalicelib.gateway.events import StreamTranslator, completion_events
from chalicelib.gateway.loader import load_litellm
from chalicelib.gateway.prompts import BedrockPrompt
from chalicelib.gateway.providers import Bedrock, OpenAICompatible, Provider, Target, target_of
from chalicelib.gateway.thinking import fit_thinking
from chalicelib.gateway.upstream import map_upstream_error
from chalicelib.shared.usage import TokenUsage

CompletionFn = Callable[..., Any]
EmbeddingFn = Callable[..., Any]
#: Titan embeds one text per InvokeModel call; this many run at once.
_EMBEDDING_CONCURRENCY = 8


@dataclass(frozen=True)
class UpstreamConfig:
    """Where and how to reach Bedrock (the stack's region), and how long a buffered call may take."""

    region: str
    endpoint_url: str | None
    timeout_seconds: float


def _no_secrets(name: str) -> str:
    raise errors.UpstreamError(f"No provider keys are configured (needed: {name}).", code="provider_key_unavailable")


class Gateway:
    """Calls a model's upstream through LiteLLM and speaks OpenAI back.

    ``secret`` reads a provider key by its SSM parameter name (``secrets.ParameterSecrets``).
    """

    def __init__(
        self,
        upstream: UpstreamConfig,
        completion: CompletionFn | None = None,
        embedding: EmbeddingFn | None = None,
        *,
        secret: Callable[[str], str] = _no_secrets,
    ) -> None:
        self._upstream = upstream
        self._completion = completion
        self._embedding = embedding
        self._providers: dict[str, Provider] = {
            "bedrock": Bedrock(region=upstream.region, endpoint_url=upstream.endpoint_url),
            "openai": OpenAICompatible(secret=secret),
        }

    def target(self, model: ModelEntry) -> Target:
        """The upstream ``model`` is served by."""
        return target_of(model)

    def prompt(self, conversation: Conversation, model: ModelEntry) -> BedrockPrompt:
        """What ``model``'s provider is sent for ``conversation``: built once per call, bounded by admission."""
        return self._provider(model).prompt(conversation)

    def _provider(self, model: ModelEntry) -> Provider:
        provider = self._providers.get(model.provider)
        if provider is None:
            raise errors.InternalError(f"No provider adapter for '{model.provider}'.")
        return provider

    def _complete(self, **kwargs: Any) -> Any:
        if self._completion is None:
            self._completion = load_litellm().completion
        return self._completion(**kwargs)

    def _embed(self, **kwargs: Any) -> Any:
        if self._embedding is None:
            self._embedding = load_litellm().embedding
        return self._embedding(**kwargs)

    def chat(
        self,
        conversation: Conversation,
        model: ModelEntry,
        prompt: BedrockPrompt,
        *,
        timeout_seconds: float | None = None,
    ) -> Iterator[Event]:
        """Call Bedrock for one conversation (streamed or not); its answer as events, as they arrive.

        ``prompt`` is the conversation's ``bedrock_prompt``, built once by the caller.

        The call is made here, so a failure before any output raises at once; a stream that
        fails later raises from the iterator. Closing the iterator closes the upstream stream
        (Bedrock stops generating). ``timeout_seconds`` (default: the configured upstream timeout)
        bounds the wait for the answer, and for a stream each wait for the next chunk.

        Raises
        ------
        AppError
            Upstream failures, mapped to the caller-facing errors.
        """
        kwargs = self._kwargs(conversation, model, prompt, timeout_seconds)
        max_tool_calls = 1 if conversation.parallel_tool_calls is False else None
        label, hide = self._provider(model).label, kwargs.get("api_key")
        try:
            response = self._complete(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every upstream failure is mapped
            raise map_upstream_error(exc, label, hide=hide) from None
        if not conversation.stream:
            return completion_events(response, max_tool_calls)
        return _upstream_stream(response, StreamTranslator(max_tool_calls), label, hide)

    def estimate_usage(self, prompt: BedrockPrompt, produced: str) -> TokenUsage:
        """Token counts for a stream cut before Bedrock reported usage: the prompt and what was produced.

        Counted with LiteLLM's local tokenizer (an estimate; the ledger entry is marked partial).
        """
        litellm = load_litellm()
        tokens = litellm.token_counter(model="", messages=prompt[0])
        output = litellm.token_counter(model="", text=produced, count_response_tokens=True) if produced else 0
        return TokenUsage(input_tokens=int(tokens), output_tokens=int(output))

    def _timeout(self, timeout_seconds: float | None) -> float:
        # An explicit deadline (the streaming routes: the function's remaining time) wins; the
        # configured timeout is for the buffered routes, which must answer inside API Gateway's 29 s.
        if timeout_seconds is None:
            return self._upstream.timeout_seconds
        return max(0.1, timeout_seconds)

    def _kwargs(
        self, conversation: Conversation, model: ModelEntry, prompt: BedrockPrompt, timeout_seconds: float | None
    ) -> dict[str, Any]:
        messages, options = prompt
        options = fit_thinking(options, model)
        target = self.target(model)
        kwargs: dict[str, Any] = {
            "model": target.model,
            "messages": messages,
            "stream": conversation.stream,
            "timeout": self._timeout(timeout_seconds),
            "num_retries": 0,
            **self._provider(model).options(target),
            **options,
        }
        if conversation.stream:
            # Always ask for usage: billing needs it even when the client did not.
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs

    def embed(
        self,
        request: EmbeddingRequest,
        model: ModelEntry,
        *,
        texts: list[str] | None = None,
        timeout_seconds: float | None = None,
    ) -> EmbeddingOutcome:
        """Embed every input with a Bedrock embedding model and shape OpenAI's ``list`` answer.

        ``texts`` are the inputs already checked by ``embedding_texts`` (computed when
        not given). Inputs are sent in the model's batch size (Titan: one per call, concurrently;
        Cohere: up to 96). When a batch fails after others succeeded, the outcome
        carries the error and the usage of what Bedrock did embed, so it is billed.

        Raises
        ------
        InvalidRequest
            Inputs over the model's limits, undecodable token arrays, or unsupported ``dimensions``.
        """
        limits = embedding_limits(model)
        texts = embedding_texts(request, limits) if texts is None else texts
        target = self.target(model)
        provider = self._provider(model)
        kwargs: dict[str, Any] = {
            "model": target.model,
            "timeout": self._timeout(timeout_seconds),
            "num_retries": 0,
            **provider.options(target),
        }
        dimensions = embedding_dimensions(request, model)
        if dimensions is not None and (len(model.dimensions) > 1 or model.provider != "bedrock"):
            # Only a model with a choice takes the parameter (Cohere v3 refuses it).
            kwargs["dimensions"] = dimensions
        batches = [texts[i : i + limits.batch_size] for i in range(0, len(texts), limits.batch_size)]

        def run(batch: list[str]) -> tuple[list[list[float]], int] | Exception:
            try:
                response = self._embed(input=batch, **kwargs)
            except Exception as exc:  # noqa: BLE001 - mapped by the caller
                return exc
            vectors = [list(item["embedding"]) for item in sorted(response.data, key=lambda d: d["index"])]
            tokens = int(getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0)
            return vectors, tokens

        if len(batches) == 1:
            results = [run(batches[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(_EMBEDDING_CONCURRENCY, len(batches))) as pool:
                results = list(pool.map(run, batches))
        failures = [r for r in results if isinstance(r, Exception)]
        tokens = sum(r[1] for r in results if not isinstance(r, Exception))
        usage = TokenUsage(input_tokens=tokens)
        if failures:
            error = map_upstream_error(failures[0], provider.label, hide=kwargs.get("api_key"))
            return EmbeddingOutcome(body={}, usage=usage, error=error)
        vectors = [vector for r in results if not isinstance(r, Exception) for vector in r[0]]
        if len(vectors) != len(texts):
            return EmbeddingOutcome(
                body={},
                usage=usage,
                error=errors.UpstreamError(
                    f"{provider.label} returned {len(vectors)} embeddings for {len(texts)} inputs."
                ),
            )
        data = [
            {"object": "embedding", "index": index, "embedding": encode_embedding(vector, request.encoding_format)}
            for index, vector in enumerate(vectors)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return EmbeddingOutcome(body=body, usage=usage, extra={"dimensions": len(vectors[0]) if vectors else 0})

    def count_tokens(self, model: ModelEntry, *, messages: list[dict[str, Any]] | None = None, text: str = "") -> int:
        """LiteLLM's local estimate of a prompt's tokens for ``model`` (no Bedrock call)."""
        litellm = load_litellm()
        if messages is not None:
            return int(litellm.token_counter(model=model.litellm_model, messages=messages))
        return int(litellm.token_counter(model=model.litellm_model, text=text))


def _upstream_stream(
    response: Any, translator: StreamTranslator, label: str = "Bedrock", hide: str | None = None
) -> Iterator[Event]:
    """The translated events of a LiteLLM stream; failures mapped; the stream closed however it ends.

    Read from the provider's own chunk iterator (``completion_stream``: LiteLLM's parsed
    ConverseStream events) rather than the ``CustomStreamWrapper`` around it: the wrapper keeps
    every chunk for its logging (~3.7 KB each, so memory grows with the answer) and spends ~3.5 ms
    of CPU per chunk on callbacks, rules and loop detection the gateway does not use (measured
    over 3,000 chunks: 11 s and 11 MB through the wrapper, 0.85 s and flat without it).
    """
    try:
        yield from translator.events(getattr(response, "completion_stream", None) or response)
    except Exception as exc:  # noqa: BLE001 - every upstream failure is mapped
        raise map_upstream_error(exc, label, hide=hide) from None
    finally:
        close = getattr(response, "close", None) or getattr(getattr(response, "completion_stream", None), "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
