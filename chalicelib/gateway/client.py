"""``Gateway``: calls Bedrock through LiteLLM for chat, embeddings and token counts.

A chat call goes through one seam: the core hands ``Gateway.chat`` the conversation and a
``CallPolicy`` (its ordered targets, their guardrails, the retry rules); ``Resilience`` walks
it (retries, fallbacks, cooldowns) and the answer comes back as ``Served``: the target that
answered and its events. The bill follows that target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.catalog.catalog import ModelEntry
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
from chalicelib.gateway.policy import CallPolicy, Target
from chalicelib.gateway.prompts import BedrockPrompt
from chalicelib.gateway.resilience import Resilience, Served
from chalicelib.gateway.thinking import fit_thinking
from chalicelib.gateway.upstream import map_upstream_error
from chalicelib.shared.usage import TokenUsage

CompletionFn = Callable[..., Any]
EmbeddingFn = Callable[..., Any]
#: Titan embeds one text per InvokeModel call; this many run at once.
_EMBEDDING_CONCURRENCY = 8


@dataclass(frozen=True)
class UpstreamConfig:
    """Where and how to reach Bedrock."""

    region: str
    endpoint_url: str | None
    timeout_seconds: float


class Gateway:
    """Calls Bedrock through LiteLLM and speaks OpenAI back."""

    def __init__(
        self,
        upstream: UpstreamConfig,
        completion: CompletionFn | None = None,
        embedding: EmbeddingFn | None = None,
        *,
        resilience: Resilience | None = None,
    ) -> None:
        self._upstream = upstream
        self._completion = completion
        self._embedding = embedding
        #: Cooldowns and the retry quota live as long as this gateway: one warm function.
        self.resilience = resilience or Resilience()

    @property
    def region(self) -> str:
        """The stack's Bedrock region: where a model without its own region is called."""
        return self._upstream.region

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
        policy: CallPolicy,
        prompt: BedrockPrompt,
        *,
        stop_at: float,
    ) -> Served:
        """Call the policy's targets for one conversation (streamed or not) until one starts answering.

        ``prompt`` is the conversation's ``bedrock_prompt``, built once by the caller; ``stop_at``
        (a ``time.time()``) is when the upstream call must be over: each attempt waits at most
        until then, and no retry starts that could not finish by then.

        The first event of the answer is read here, so a failure before any output raises at
        once (after the retries and fallbacks the policy allows); a stream that fails later
        raises from the events. Closing the events closes the upstream stream (Bedrock stops
        generating).

        Raises
        ------
        AppError
            Upstream failures, mapped to the caller-facing errors.
        """
        max_tool_calls = 1 if conversation.parallel_tool_calls is False else None

        def start(target: Target, timeout: float) -> Iterator[Event]:
            response = self._complete(**self._kwargs(conversation, target, prompt, timeout))
            if not conversation.stream:
                return completion_events(response, max_tool_calls)
            raw = StreamTranslator(max_tool_calls).events(getattr(response, "completion_stream", None) or response)
            try:
                first = next(raw)
            except StopIteration:
                _close_response(response)
                return iter(())
            except BaseException:
                _close_response(response)
                raise
            return _upstream_stream(first, raw, response)

        return self.resilience.run(policy, stop_at, start)

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
        self, conversation: Conversation, target: Target, prompt: BedrockPrompt, timeout_seconds: float | None
    ) -> dict[str, Any]:
        messages, options = prompt
        options = fit_thinking(options, target.model)
        kwargs: dict[str, Any] = {
            "model": target.model.litellm_model,
            "messages": messages,
            "stream": conversation.stream,
            "timeout": self._timeout(timeout_seconds),
            # Retries are the policy's (resilience.py), within the request's deadline.
            "num_retries": 0,
            "aws_region_name": target.region,
            **options,
        }
        if target.guardrail is not None:
            kwargs["guardrailConfig"] = target.guardrail.config()
        if self._upstream.endpoint_url:
            kwargs["aws_bedrock_runtime_endpoint"] = self._upstream.endpoint_url
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
        kwargs: dict[str, Any] = {
            "model": model.litellm_model,
            "timeout": self._timeout(timeout_seconds),
            "num_retries": 0,
            "aws_region_name": self._upstream.region,
        }
        if self._upstream.endpoint_url:
            kwargs["aws_bedrock_runtime_endpoint"] = self._upstream.endpoint_url
        dimensions = embedding_dimensions(request, model)
        if dimensions is not None and len(model.dimensions) > 1:
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
            return EmbeddingOutcome(body={}, usage=usage, error=map_upstream_error(failures[0]))
        vectors = [vector for r in results if not isinstance(r, Exception) for vector in r[0]]
        if len(vectors) != len(texts):
            return EmbeddingOutcome(
                body={},
                usage=usage,
                error=errors.UpstreamError(f"Bedrock returned {len(vectors)} embeddings for {len(texts)} inputs."),
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


def _upstream_stream(first: Event, rest: Iterator[Event], response: Any) -> Iterator[Event]:
    """A started LiteLLM stream's translated events (``first`` already read); failures mapped; closed however it ends.

    Read from the provider's own chunk iterator (``completion_stream``: LiteLLM's parsed
    ConverseStream events) rather than the ``CustomStreamWrapper`` around it: the wrapper keeps
    every chunk for its logging (~3.7 KB each, so memory grows with the answer) and spends ~3.5 ms
    of CPU per chunk on callbacks, rules and loop detection the gateway does not use (measured
    over 3,000 chunks: 11 s and 11 MB through the wrapper, 0.85 s and flat without it).
    """
    try:
        yield first
        yield from rest
    except Exception as exc:  # noqa: BLE001 - every upstream failure is mapped
        raise map_upstream_error(exc) from exc
    finally:
        _close_response(response)


def _close_response(response: Any) -> None:
    close = getattr(response, "close", None) or getattr(getattr(response, "completion_stream", None), "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
