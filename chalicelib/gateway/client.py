"""``Gateway``: calls a model's upstream (Bedrock, or an OpenAI-compatible API) through LiteLLM.

A chat call goes through one seam: the core hands ``Gateway.chat`` the conversation and a
``CallPolicy`` (its ordered ``Target``s: catalog model, region, guardrail; the retry rules);
``Resilience`` walks it (retries, fallbacks, cooldowns), each attempt made through the target's
provider adapter (``chalicelib/gateway/providers.py``: LiteLLM's model string, where to call,
how to sign in), and the answer comes back as ``Served``: the target that answered and its
events. The bill follows that target.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
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
from chalicelib.gateway.events import StreamTranslator
from chalicelib.gateway.loader import load_litellm
from chalicelib.gateway.policy import CallPolicy, Target
from chalicelib.gateway.prompts import IMAGE_TOKEN_BOUND, BedrockPrompt, prompt_input
from chalicelib.gateway.providers import Bedrock, OpenAICompatible, Provider, call_timeout
from chalicelib.gateway.read_deadline import Receipt, reads_until
from chalicelib.gateway.resilience import Attempt, Resilience, Served
from chalicelib.gateway.thinking import fit_thinking
from chalicelib.gateway.upstream import map_upstream_error
from chalicelib.shared.usage import TokenUsage

CompletionFn = Callable[..., Any]
EmbeddingFn = Callable[..., Any]
#: What a chat template adds around each message, in the estimate of a cut call's prompt.
_ESTIMATE_MESSAGE_TOKENS = 3
#: Titan embeds one text per InvokeModel call; this many run at once.
_EMBEDDING_CONCURRENCY = 8


@dataclass(frozen=True)
class UpstreamConfig:
    """Where and how to reach Bedrock (the stack's region), and how long a buffered call may take."""

    region: str
    endpoint_url: str | None
    timeout_seconds: float


@dataclass
class _Batch:
    """One embeddings call: its texts and what came of it."""

    texts: list[str]
    vectors: list[list[float]] | None = None
    tokens: int = 0
    error: errors.AppError | None = None
    #: False when the deadline passed before the call was made (nothing reached Bedrock).
    sent: bool = True

    @property
    def timed_out(self) -> bool:
        return isinstance(self.error, errors.UpstreamTimeout)


def _tokens(text: str) -> int:
    """Tokens of ``text`` with LiteLLM's local tokenizer (cl100k_base): an estimate of Bedrock's count."""
    if not text:
        return 0
    load_litellm()
    from litellm.litellm_core_utils.default_encoding import encoding

    return len(encoding.encode(text, disallowed_special=()))


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
        resilience: Resilience | None = None,
    ) -> None:
        self._upstream = upstream
        self._completion = completion
        self._embedding = embedding
        self._providers: dict[str, Provider] = {
            "bedrock": Bedrock(region=upstream.region, endpoint_url=upstream.endpoint_url),
            "openai": OpenAICompatible(secret=secret),
        }
        #: Cooldowns and the retry quota live as long as this gateway: one warm function.
        self.resilience = resilience or Resilience()

    @property
    def region(self) -> str:
        """The stack's Bedrock region: where a Bedrock model without its own region is called."""
        return self._upstream.region

    def target(self, model: ModelEntry) -> Target:
        """The target ``model`` alone is served by (no fallback, no guardrail): embeddings, token counts."""
        return Target(model, self.region_of(model))

    def region_of(self, model: ModelEntry) -> str | None:
        """Where a call to ``model`` goes: a Bedrock model's own region or the stack's; None for other providers."""
        return (model.region or self._upstream.region) if model.provider == "bedrock" else None

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
        policy: CallPolicy,
        prompt: BedrockPrompt,
        *,
        stop_at: float,
        attempts: list[Attempt] | None = None,
    ) -> Served:
        """Call the policy's targets for one conversation until one starts answering; who answered, and its events.

        ``prompt`` is what the policy's providers are sent (``prompt``), built once by the caller;
        ``stop_at`` (a ``time.time()``) is when the upstream call must be over: each attempt waits at
        most until then (to start, and for each next chunk), and no retry starts that could not
        finish by then. ``attempts``, when given, receives each attempt as it ends (so a caller can
        bill the target a failed call was last sent to).

        Bedrock is always called with ConverseStream, even when the client asked for one whole
        answer: a call the gateway gives up on (a deadline, a client gone) is then closed, which
        stops Bedrock, and the bill counts what was generated up to then. With Converse, Bedrock
        would go on generating, and billing, an answer nobody waits for (``bench/whole_answers.py``
        measures the price: ~0.03 ms of CPU per token read, overlapping the generation).

        The first event of the answer is read here, so a failure before any output raises at
        once (after the retries and fallbacks the policy allows); a stream that fails later
        raises from the events, and is never retried. Closing the events closes the upstream
        stream.

        Raises
        ------
        AppError
            Upstream failures, mapped to the caller-facing errors.
        """
        max_tool_calls = 1 if conversation.parallel_tool_calls is False else None
        secrets: dict[str, str | None] = {}
        receipts: dict[str, Receipt] = {}

        def start(target: Target, timeout: float) -> Iterator[Event]:
            kwargs = self._kwargs(target, prompt, timeout)
            label, hide = self._provider(target.model).label, kwargs.get("api_key")
            secrets[target.key] = hide
            # Through a client of ours, every read of the answer ends by the deadline itself.
            with reads_until(timeout) as receipt:
                response = self._complete(**kwargs)
            receipts[target.key] = receipt
            raw = StreamTranslator(max_tool_calls).events(getattr(response, "completion_stream", None) or response)
            try:
                first = next(raw)
            except StopIteration:
                _close_response(response)
                return iter(())
            except BaseException:
                _close_response(response)
                raise
            return _upstream_stream(first, raw, response, label, hide)

        def mapped(exc: Exception, target: Target) -> errors.AppError:
            label = self._provider(target.model).label
            return map_upstream_error(exc, label, hide=secrets.get(target.key))

        served = self.resilience.run(policy, stop_at, start, attempts, mapped)
        receipt = receipts.get(served.target.key)
        if receipt is not None and receipt.bounded:
            served.bounded_reads = receipt
        return served

    def reads_whole(self, prompt: BedrockPrompt) -> bool:
        """Whether LiteLLM reads this answer whole before handing over any of it, so closing cannot stop Bedrock.

        LiteLLM sends a request with a ``json_schema`` ``response_format`` as Converse and fakes the
        stream from the whole answer (every model of the catalog, reasoning or not; a test checks it):
        a call given up on before that answer came goes on generating on Bedrock, unseen.
        """
        response_format = prompt[1].get("response_format")
        return isinstance(response_format, dict) and response_format.get("type") == "json_schema"

    def estimate_usage(self, prompt: BedrockPrompt, produced: str) -> TokenUsage:
        """Token counts for a call cut before Bedrock reported usage: the whole prompt and what was produced.

        The prompt is counted as Bedrock counts it (``prompt_input``: messages, tool definitions,
        the output schema, images), its text with LiteLLM's local tokenizer and its images by
        their size. An estimate: the ledger entry is marked partial.
        """
        content = prompt_input(prompt)
        input_tokens = sum(_tokens(text) for text in content.texts)
        input_tokens += sum(image_tokens(url) for url in content.images)
        input_tokens += _ESTIMATE_MESSAGE_TOKENS * content.messages
        return TokenUsage(input_tokens=input_tokens, output_tokens=_tokens(produced))

    def _timeout(self, timeout_seconds: float | None) -> float:
        # An explicit deadline (the streaming routes: the function's remaining time) wins; the
        # configured timeout is for the buffered routes, which must answer inside API Gateway's 29 s.
        if timeout_seconds is None:
            return self._upstream.timeout_seconds
        return max(0.1, timeout_seconds)

    def _kwargs(self, target: Target, prompt: BedrockPrompt, timeout_seconds: float | None) -> dict[str, Any]:
        messages, options = prompt
        options = fit_thinking(options, target.model)
        upstream = target.upstream
        kwargs: dict[str, Any] = {
            "model": upstream.model,
            "messages": messages,
            "stream": True,
            # Billing needs the usage report whether or not the client asked for it.
            "stream_options": {"include_usage": True},
            "timeout": self._timeout(timeout_seconds),
            # Retries are the policy's (resilience.py), within the request's deadline.
            "num_retries": 0,
            **self._provider(target.model).options(upstream),
            "client": self._provider(target.model).client(upstream),
            **options,
        }
        if target.guardrail is not None:
            kwargs["guardrailConfig"] = target.guardrail.config()
        return kwargs

    def embed(
        self,
        request: EmbeddingRequest,
        model: ModelEntry,
        *,
        texts: list[str] | None = None,
        stop_at: float | None = None,
    ) -> EmbeddingOutcome:
        """Embed every input with a Bedrock embedding model and shape OpenAI's ``list`` answer.

        ``texts`` are the inputs already checked by ``embedding_texts`` (computed when
        not given). Inputs are sent in the model's batch size (Titan: one per call, 8 at once;
        Cohere: up to 96). ``stop_at`` (Unix time) is when the whole request must be done: no call
        starts after it, none waits past it, and each gets at most what is left (else each gets the
        configured upstream timeout). When a batch fails, or time runs out, the outcome carries the
        error and the usage to bill: what Bedrock embedded, and an estimate of the calls it was
        still running (it bills them; calls never sent are not billed).

        Raises
        ------
        InvalidRequest
            Inputs over the model's limits, undecodable token arrays, or unsupported ``dimensions``.
        """
        limits = embedding_limits(model)
        texts = embedding_texts(request, limits) if texts is None else texts
        upstream = self.target(model).upstream
        provider = self._provider(model)
        kwargs: dict[str, Any] = {
            "model": upstream.model,
            "num_retries": 0,
            **provider.options(upstream),
            # One kept pool for every batch and request (not a client, and a connection, per timeout).
            "client": provider.client(upstream),
        }
        dimensions = embedding_dimensions(request, model)
        if dimensions is not None and (len(model.dimensions) > 1 or model.provider != "bedrock"):
            # Only a model with a choice takes the parameter (Cohere v3 refuses it).
            kwargs["dimensions"] = dimensions
        batches = [texts[i : i + limits.batch_size] for i in range(0, len(texts), limits.batch_size)]

        def run(batch: list[str]) -> _Batch:
            timeout = self._upstream.timeout_seconds
            if stop_at is not None:
                timeout = min(timeout, stop_at - time.time())
                if timeout <= 0:
                    return _Batch(batch, sent=False)
            try:
                with call_timeout(max(0.1, timeout)):
                    response = self._embed(input=batch, timeout=max(0.1, timeout), **kwargs)
            except Exception as exc:  # noqa: BLE001 - mapped below
                return _Batch(batch, error=map_upstream_error(exc, provider.label, hide=kwargs.get("api_key")))
            vectors = [list(item["embedding"]) for item in sorted(response.data, key=lambda d: d["index"])]
            tokens = int(getattr(getattr(response, "usage", None), "prompt_tokens", 0) or 0)
            return _Batch(batch, vectors=vectors, tokens=tokens)

        pool = ThreadPoolExecutor(max_workers=min(_EMBEDDING_CONCURRENCY, len(batches)))
        futures = [pool.submit(run, batch) for batch in batches]
        wait(futures, timeout=None if stop_at is None else max(0.0, stop_at - time.time()))
        # Calls not started yet are cancelled; calls in flight are left to end on their own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
        results = [
            f.result() if f.done() and not f.cancelled() else _Batch(batch, sent=not f.cancelled())
            for f, batch in zip(futures, batches, strict=True)
        ]
        # A call in flight, or one that timed out, reached Bedrock, which embeds and bills it: estimated.
        tokens = sum(r.tokens if r.vectors is not None else self._text_tokens(r) for r in results)
        usage = TokenUsage(input_tokens=tokens)
        unfinished = [r for r in results if r.vectors is None and (r.error is None or r.timed_out)]
        if unfinished:
            embedded = sum(len(r.texts) for r in results if r.vectors is not None)
            error: errors.AppError = errors.UpstreamTimeout(
                f"The embeddings ran out of this request's time: {embedded} of {len(texts)} inputs were "
                "embedded (and billed); send fewer inputs per request.",
                code="embedding_time_limit",
            )
            return EmbeddingOutcome(body={}, usage=usage, error=error)
        failure = next((r.error for r in results if r.error is not None), None)
        if failure is not None:
            return EmbeddingOutcome(body={}, usage=usage, error=failure)
        vectors = [vector for r in results for vector in r.vectors or []]
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

    @staticmethod
    def _text_tokens(batch: _Batch) -> int:
        """Tokens Bedrock bills for a batch whose count it never reported: estimated if it reached Bedrock."""
        if not batch.sent or (batch.error is not None and not batch.timed_out):
            return 0
        return sum(_tokens(text) for text in batch.texts)

    def count_tokens(self, model: ModelEntry, *, messages: list[dict[str, Any]] | None = None, text: str = "") -> int:
        """LiteLLM's local estimate of a prompt's tokens for ``model`` (no Bedrock call)."""
        litellm = load_litellm()
        if messages is not None:
            return int(litellm.token_counter(model=model.litellm_model, messages=messages))
        return int(litellm.token_counter(model=model.litellm_model, text=text))


#: Claude's image rule (Bedrock's other models are close): an image is fitted within 1,568 px on its long
#: side and 1.15 megapixels, then costs one token per 750 pixels; ~1,600 tokens at most.
_IMAGE_LONG_SIDE = 1_568
_IMAGE_PIXELS = 1_150_000
_PIXELS_PER_TOKEN = 750


def image_tokens(url: str) -> int:
    """An estimate of an image's input tokens from its size (a ``data:`` URL); the bound when unreadable."""
    if not url.startswith("data:") or "," not in url:
        return IMAGE_TOKEN_BOUND
    from litellm.litellm_core_utils.token_counter import get_image_dimensions

    try:
        width, height = get_image_dimensions(url)  # a data: URL is decoded, never fetched
    except Exception:  # noqa: BLE001 - an image LiteLLM cannot measure costs the bound
        return IMAGE_TOKEN_BOUND
    if width <= 0 or height <= 0:
        return IMAGE_TOKEN_BOUND
    scale = min(1.0, _IMAGE_LONG_SIDE / max(width, height), math.sqrt(_IMAGE_PIXELS / (width * height)))
    return max(1, math.ceil(width * height * scale * scale / _PIXELS_PER_TOKEN))


def _upstream_stream(
    first: Event, rest: Iterator[Event], response: Any, label: str = "Bedrock", hide: str | None = None
) -> Iterator[Event]:
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
        raise map_upstream_error(exc, label, hide=hide) from None
    finally:
        _close_response(response)


def _close_response(response: Any) -> None:
    close = getattr(response, "close", None) or getattr(getattr(response, "completion_stream", None), "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
