"""LiteLLM → Bedrock: the only module that imports LiteLLM.

LiteLLM is imported on first use, not at import time (it costs seconds and
~200 MB), with ``LITELLM_LOCAL_MODEL_COST_MAP`` forced so it never fetches
prices from the network. The completion function is injectable so tests and
the benchmark can swap it. Responses are rebuilt field by field into OpenAI's
shapes rather than passed through, so what clients receive is what
OpenAI's schema says, whatever LiteLLM's objects carry.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.ledger import TokenUsage
from chalicelib.validation import ChatRequest, EmbeddingRequest

CompletionFn = Callable[..., Any]
EmbeddingFn = Callable[..., Any]
_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
_UPSTREAM_RETRY_AFTER_SECONDS = 2
#: Bedrock has no JSON mode: ``json_object`` becomes this instruction (OpenAI also requires the
#: prompt to ask for JSON). ``json_schema`` is enforced by Bedrock itself.
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it, no code fences."
)
#: Titan embeds one text per InvokeModel call; this many run at once.
_EMBEDDING_CONCURRENCY = 8


def load_litellm() -> Any:
    """Import LiteLLM once, offline and quiet.

    The cyclic garbage collector is paused during the import: LiteLLM builds
    ~500,000 objects (thousands of pydantic models) and the collector would
    rescan them again and again, a quarter of the cold import (measured by
    bench/cold_start.py). ``gc.freeze()`` then moves them to the permanent
    generation, so later collections skip them too; they live as long as the
    process anyway.
    """
    import gc

    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    collecting = gc.isenabled()
    gc.disable()
    try:
        import litellm
    finally:
        gc.freeze()
        if collecting:
            gc.enable()

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm


@dataclass
class ChatOutcome:
    """What one chat call produced: the body to send, and what to bill."""

    body: dict[str, Any] | str
    usage: TokenUsage
    status: str = "ok"
    finish_reason: str | None = None
    streamed: bool = False
    error: errors.AppError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    ) -> None:
        self._upstream = upstream
        self._completion = completion
        self._embedding = embedding

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
        request: ChatRequest,
        model: ModelEntry,
        *,
        completion_id: str,
        created: int,
        timeout_seconds: float | None = None,
    ) -> ChatOutcome:
        """Run one chat completion (streamed or not) and shape the OpenAI answer.

        ``timeout_seconds`` shortens the upstream deadline (never lengthens it).

        Raises
        ------
        AppError
            Upstream failures before any output, mapped to OpenAI statuses.
        """
        check_capabilities(request, model)
        kwargs = self._kwargs(request, model, timeout_seconds)
        max_tool_calls = 1 if request.options.get("parallel_tool_calls") is False else None
        try:
            response = self._complete(**kwargs)
            if not request.stream:
                return _shape_completion(response, request.model, completion_id, created, max_tool_calls)
        except Exception as exc:  # noqa: BLE001 - every upstream failure is mapped
            raise map_upstream_error(exc) from exc
        return _shape_stream(response, request, completion_id, created, max_tool_calls)

    def _timeout(self, timeout_seconds: float | None) -> float:
        if timeout_seconds is None:
            return self._upstream.timeout_seconds
        return max(0.1, min(self._upstream.timeout_seconds, timeout_seconds))

    def _kwargs(self, request: ChatRequest, model: ModelEntry, timeout_seconds: float | None) -> dict[str, Any]:
        messages, options = bedrock_prompt(request)
        kwargs: dict[str, Any] = {
            "model": model.litellm_model,
            "messages": messages,
            "stream": request.stream,
            "timeout": self._timeout(timeout_seconds),
            "num_retries": 0,
            "aws_region_name": self._upstream.region,
            **options,
        }
        if self._upstream.endpoint_url:
            kwargs["aws_bedrock_runtime_endpoint"] = self._upstream.endpoint_url
        if request.stream:
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


@dataclass
class EmbeddingOutcome:
    """What one embeddings call produced: the body, the tokens to bill, and a failure if any."""

    body: dict[str, Any]
    usage: TokenUsage
    error: errors.AppError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmbeddingLimits:
    """Bedrock's per-family limits for embedding input."""

    max_chars: int
    batch_size: int


def embedding_limits(model: ModelEntry) -> EmbeddingLimits:
    """The limits of ``model``'s family (Bedrock's documented maxima)."""
    if "cohere.embed" in model.bedrock_model_id:
        return EmbeddingLimits(max_chars=2_048, batch_size=96)
    # Titan (and anything unknown): one inputText per call, up to 50,000 characters.
    return EmbeddingLimits(max_chars=50_000, batch_size=1)


def embedding_texts(request: EmbeddingRequest, limits: EmbeddingLimits) -> list[str]:
    """The inputs as texts (token arrays decoded), each checked against the model's size limit.

    Raises
    ------
    InvalidRequest
        An input over the limit, or a token array that is not valid ``cl100k_base``.
    """
    texts = []
    for index, item in enumerate(request.inputs):
        at = f"input[{index}]"
        text = item if isinstance(item, str) else decode_tokens(item, at)
        if len(text) > limits.max_chars:
            raise errors.InvalidRequest(
                f"{at} is {len(text)} characters; the model '{request.model}' accepts at most "
                f"{limits.max_chars} per input. Split it into smaller inputs.",
                param=at,
                code="input_too_long",
            )
        texts.append(text)
    return texts


def decode_tokens(tokens: Sequence[int], at: str) -> str:
    """Text of a token array in ``cl100k_base``, the encoding OpenAI's clients tokenise with.

    Raises
    ------
    InvalidRequest
        A token id outside the encoding, or tokens that decode to nothing.
    """
    load_litellm()
    from litellm.litellm_core_utils.default_encoding import encoding

    try:
        if max(tokens) >= encoding.n_vocab:
            raise ValueError("token id out of range")
        text = encoding.decode(list(tokens))
    except (ValueError, KeyError):
        raise errors.InvalidRequest(
            f"{at} holds token ids that are not valid cl100k_base tokens; send text instead.",
            param=at,
            code="invalid_tokens",
        ) from None
    if not text.strip():
        raise errors.InvalidRequest(f"{at} decodes to empty text.", param=at)
    return text


def embedding_dimensions(request: EmbeddingRequest, model: ModelEntry) -> int | None:
    """The requested ``dimensions`` if ``model`` offers them.

    Raises
    ------
    InvalidRequest
        ``dimensions`` the model cannot produce.
    """
    if request.dimensions is None:
        return None
    if request.dimensions not in model.dimensions:
        offered = ", ".join(str(d) for d in sorted(model.dimensions)) or "none"
        raise errors.InvalidRequest(
            f"The model '{request.model}' cannot produce {request.dimensions} dimensions; it supports: {offered}.",
            param="dimensions",
            code="unsupported_dimensions",
        )
    return request.dimensions


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32 (what the SDKs decode)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def flatten_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier tool calls and results as plain text, for a request that offers Bedrock no tools.

    A call becomes a line of the assistant's turn, a result a user turn; the model
    still sees what happened, and Bedrock needs no ``toolConfig``.
    """
    if not any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return messages
    names = {call["id"]: call["function"]["name"] for m in messages for call in m.get("tool_calls") or []}
    flattened = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            lines = [_text_of(message.get("content"))]
            lines += [
                f"[called tool {call['function']['name']} (call id {call['id']}) "
                f"with arguments {call['function']['arguments']}]"
                for call in message["tool_calls"]
            ]
            flattened.append({"role": "assistant", "content": "\n".join(line for line in lines if line)})
        elif message["role"] == "tool":
            call_id = message["tool_call_id"]
            label = f"result of tool {names.get(call_id, 'unknown')} (call id {call_id})"
            flattened.append({"role": "user", "content": f"[{label}]: {_text_of(message.get('content'))}"})
        else:
            flattened.append(message)
    return flattened


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def bedrock_prompt(request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and options handed to LiteLLM, after the gateway's own Bedrock adaptations.

    Admission bounds the prompt's tokens on these, since they are what Bedrock counts.
    """
    options = dict(request.options)
    messages = request.messages
    if options.get("tool_choice") == "none":
        # Converse has no "none" (LiteLLM would refuse it, or with drop_params send "auto"):
        # a model that is offered no tools cannot call one.
        for name in ("tools", "tool_choice"):
            options.pop(name, None)
    if not options.get("tools"):
        # Bedrock refuses toolUse/toolResult blocks without a toolConfig, so earlier
        # tool turns are kept as text; parallel_tool_calls means nothing without tools.
        options.pop("parallel_tool_calls", None)
        messages = flatten_tool_history(messages)
    if options.get("response_format") == {"type": "json_object"}:
        del options["response_format"]
        messages = [{"role": "system", "content": JSON_OBJECT_INSTRUCTION}, *messages]
    return messages, options


def check_capabilities(request: ChatRequest, model: ModelEntry) -> None:
    """Refuse, before calling Bedrock, what the model cannot do."""
    if request.has_images and "image" not in model.input_modalities:
        raise errors.InvalidRequest(
            f"The model '{request.model}' does not accept image input.", param="messages", code="unsupported_input"
        )
    if "reasoning_effort" in request.options and not model.supports_reasoning:
        raise errors.InvalidRequest(
            f"Unsupported parameter: 'reasoning_effort' is not supported with the model '{request.model}'.",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    if request.options.get("tools") and not model.supports_tools:
        raise errors.InvalidRequest(
            f"The model '{request.model}' does not support tools.", param="tools", code="unsupported_parameter"
        )
    forced = request.options.get("tool_choice") == "required" or isinstance(request.options.get("tool_choice"), dict)
    if forced and _thinks(request) and "anthropic." in model.bedrock_model_id:
        # LiteLLM would quietly downgrade to "auto"; the caller asked for a guaranteed call.
        raise errors.InvalidRequest(
            f"The model '{request.model}' cannot be forced to call a tool while reasoning (a Bedrock rule): "
            "use tool_choice 'auto' or drop reasoning_effort.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    limit = model.max_output_tokens
    wanted = request.options.get("max_tokens")
    if limit and wanted and wanted > limit:
        raise errors.InvalidRequest(
            f"max_tokens is too large: {wanted}. "
            f"The model '{request.model}' supports at most {limit} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )


def _thinks(request: ChatRequest) -> bool:
    return request.options.get("reasoning_effort") not in (None, "none")


def map_upstream_error(exc: Exception) -> errors.AppError:
    """Translate a LiteLLM/Bedrock exception into the caller-facing error.

    Decided on Bedrock's HTTP status (LiteLLM keeps it on ``status_code``),
    because LiteLLM's class names are coarse: it raises ``BadRequestError``
    for Bedrock's 424 ``ModelErrorException``, which is not the caller's fault.
    """
    if isinstance(exc, errors.AppError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    detail = _clean_message(exc)
    if name in ("Timeout", "APITimeoutError") or isinstance(exc, TimeoutError) or status in (408, 504):
        return errors.UpstreamTimeout("Bedrock did not answer in time; retry the request.")
    if status == 429 or name == "RateLimitError":
        return errors.RateLimited(
            f"Bedrock is throttling requests for this model; retry shortly. ({detail})",
            retry_after=_UPSTREAM_RETRY_AFTER_SECONDS,
            code="upstream_throttled",
        )
    if status in (400, 413, 422) or name == "ContextWindowExceededError":
        return errors.InvalidRequest(f"Bedrock rejected the request: {detail}", code="upstream_validation_error")
    if status in (401, 403):
        return errors.UpstreamError(
            "The gateway is not allowed to call this model on Bedrock (check model access and IAM).",
            code="upstream_access_denied",
        )
    if status == 404:
        return errors.UpstreamError(
            "Bedrock does not offer this model in the gateway's region or account.", code="upstream_model_unavailable"
        )
    if status == 503:
        return errors.ServiceUnavailable(f"Bedrock is unavailable: {detail}")
    return errors.UpstreamError(f"Bedrock failed to answer: {detail}")


def _clean_message(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc)
    for noise in ("litellm.", "BedrockException - ", "BedrockException: "):
        text = text.replace(noise, "")
    try:
        inner = json.loads(text[text.index("{") :]) if "{" in text else None
    except ValueError:
        inner = None
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        text = inner["message"]
    return text.strip()[:500]


def usage_from_litellm(usage: Any) -> TokenUsage:
    """Bedrock's billable token counts from a LiteLLM ``Usage`` object."""
    if usage is None:
        return TokenUsage()
    cache_read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    cache_write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    return TokenUsage(
        input_tokens=max(0, prompt - cache_read - cache_write),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def usage_to_openai(usage: TokenUsage, reasoning_tokens: int = 0) -> dict[str, Any]:
    """OpenAI's ``usage`` object (``prompt_tokens`` includes cached tokens, as OpenAI's does)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def _reasoning_tokens(usage: Any) -> int:
    details = getattr(usage, "completion_tokens_details", None)
    return int(getattr(details, "reasoning_tokens", 0) or 0)


def _finish_reason(value: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return value if value in _FINISH_REASONS else "stop"


def _tool_calls(raw: Iterable[Any] | None) -> list[dict[str, Any]]:
    calls = []
    for call in raw or []:
        function = getattr(call, "function", None)
        calls.append(
            {
                "id": getattr(call, "id", None) or f"call_{len(calls)}",
                "type": "function",
                "function": {
                    "name": getattr(function, "name", "") or "",
                    "arguments": getattr(function, "arguments", "") or "{}",
                },
            }
        )
    return calls


def _shape_completion(
    response: Any, model_name: str, completion_id: str, created: int, max_tool_calls: int | None = None
) -> ChatOutcome:
    choice = response.choices[0]
    message = choice.message
    # parallel_tool_calls=false: Bedrock cannot be told so for every model; the gateway keeps the first call.
    tool_calls = _tool_calls(getattr(message, "tool_calls", None))[:max_tool_calls]
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": message.content if (message.content or not tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if out_message["content"] is None and not tool_calls:
        out_message["content"] = ""
    if tool_calls:
        out_message["tool_calls"] = tool_calls
    reasoning = getattr(message, "reasoning_content", None)
    if reasoning:
        out_message["reasoning_content"] = reasoning
    usage = usage_from_litellm(getattr(response, "usage", None))
    finish = _finish_reason(choice.finish_reason, bool(tool_calls))
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": [{"index": 0, "message": out_message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_to_openai(usage, _reasoning_tokens(getattr(response, "usage", None))),
    }
    return ChatOutcome(body=body, usage=usage, finish_reason=finish)


class _StreamShaper:
    """Turns LiteLLM stream chunks into OpenAI chunk dicts with dense tool indexes."""

    def __init__(self, model_name: str, completion_id: str, created: int, max_tool_calls: int | None = None) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name}
        self._max_tool_calls = max_tool_calls
        self.chunks: list[dict[str, Any]] = [self._chunk({"role": "assistant", "content": ""})]
        self._tool_index: dict[Any, int] = {}
        self._last_tool: int | None = None
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.text_parts: list[str] = []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self._base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._tool_index)

    def feed(self, chunk: Any) -> None:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            delta = choice.delta
            out: dict[str, Any] = {}
            reasoning = getattr(delta, "reasoning_content", None)
            if reasoning:
                out["reasoning_content"] = reasoning
                self.text_parts.append(reasoning)
            if getattr(delta, "content", None):
                out["content"] = delta.content
                self.text_parts.append(delta.content)
            deltas = (self._tool_delta(call) for call in getattr(delta, "tool_calls", None) or [])
            calls = [d for d in deltas if self._max_tool_calls is None or d["index"] < self._max_tool_calls]
            if calls:
                out["tool_calls"] = calls
            if out:
                self.chunks.append(self._chunk(out))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def _tool_delta(self, call: Any) -> dict[str, Any]:
        upstream_index = getattr(call, "index", None)
        call_id = getattr(call, "id", None)
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None) or ""
        if call_id and call_id not in self._tool_index:
            # A new call: the next dense 0-based index, whatever LiteLLM numbered it.
            index = len({v for v in self._tool_index.values()})
            self._tool_index[call_id] = index
            if upstream_index is not None:
                self._tool_index[("upstream", upstream_index)] = index
        else:
            index = self._tool_index.get(call_id) if call_id else self._tool_index.get(("upstream", upstream_index))
            if index is None:
                index = self._last_tool if self._last_tool is not None else 0
        self._last_tool = index
        self.text_parts.append(arguments)
        delta: dict[str, Any] = {"index": index}
        if call_id and name:
            delta.update({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
        else:
            delta["function"] = {"arguments": arguments}
        return delta

    def finish(self) -> str:
        finish = _finish_reason(self.finish_reason, self.has_tool_calls)
        self.chunks.append(self._chunk({}, finish))
        return finish

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": usage}


def _shape_stream(
    response: Any, request: ChatRequest, completion_id: str, created: int, max_tool_calls: int | None = None
) -> ChatOutcome:
    shaper = _StreamShaper(request.model, completion_id, created, max_tool_calls)
    failure: errors.AppError | None = None
    try:
        for chunk in response:
            shaper.feed(chunk)
    except Exception as exc:  # noqa: BLE001 - mapped below
        failure = map_upstream_error(exc)
        if len(shaper.chunks) == 1:
            raise failure from exc
    truncated = failure is None and shaper.finish_reason is None
    if truncated:
        failure = errors.UpstreamError(
            "The Bedrock stream ended before the model finished; the answer is incomplete.",
            code="upstream_stream_cut",
        )
    if shaper.usage is not None:
        usage = usage_from_litellm(shaper.usage)
    else:
        # Cut before Bedrock's metadata event: bill what was sent and produced,
        # counted with LiteLLM's tokenizer (an estimate, flagged in the ledger).
        usage = estimate_usage(request, "".join(shaper.text_parts))
    status = "ok"
    if failure is None:
        finish = shaper.finish()
        if request.include_usage:
            shaper.chunks.append(shaper.usage_chunk(usage_to_openai(usage, _reasoning_tokens(shaper.usage))))
    else:
        finish = None
        status = "partial"
    lines = [f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n" for chunk in shaper.chunks]
    if failure is not None:
        lines.append(f"data: {json.dumps(failure.to_body(), separators=(',', ':'))}\n\n")
    else:
        lines.append("data: [DONE]\n\n")
    return ChatOutcome(
        body="".join(lines),
        usage=usage,
        status=status,
        finish_reason=finish,
        streamed=True,
        error=failure,
        extra={"produced_text": "".join(shaper.text_parts), "usage_reported": shaper.usage is not None},
    )


def estimate_usage(request: ChatRequest, produced: str) -> TokenUsage:
    """Token counts for a stream Bedrock cut before reporting usage."""
    litellm = load_litellm()
    prompt = litellm.token_counter(model="", messages=request.messages)
    output = litellm.token_counter(model="", text=produced, count_response_tokens=True) if produced else 0
    return TokenUsage(input_tokens=int(prompt), output_tokens=int(output))


def now_seconds() -> int:
    """Unix time in whole seconds (OpenAI's ``created``)."""
    return int(time.time())
