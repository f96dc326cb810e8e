"""LiteLLM → Bedrock: the only module that imports LiteLLM.

LiteLLM is imported on first use, not at import time (it costs seconds and
~200 MB), with ``LITELLM_LOCAL_MODEL_COST_MAP`` forced so it never fetches
prices from the network. The completion function is injectable so tests and
the benchmark can swap it. Responses are rebuilt field by field into OpenAI's
shapes rather than passed through, so what clients receive is what
OpenAI's schema says, whatever LiteLLM's objects carry.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.ledger import TokenUsage
from chalicelib.validation import ChatRequest

CompletionFn = Callable[..., Any]
_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
_UPSTREAM_RETRY_AFTER_SECONDS = 2


def load_litellm() -> Any:
    """Import LiteLLM once, offline and quiet."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

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

    def __init__(self, upstream: UpstreamConfig, completion: CompletionFn | None = None) -> None:
        self._upstream = upstream
        self._completion = completion

    def _complete(self, **kwargs: Any) -> Any:
        if self._completion is None:
            self._completion = load_litellm().completion
        return self._completion(**kwargs)

    def chat(self, request: ChatRequest, model: ModelEntry, *, completion_id: str, created: int) -> ChatOutcome:
        """Run one chat completion (streamed or not) and shape the OpenAI answer.

        Raises
        ------
        AppError
            Upstream failures before any output, mapped to OpenAI statuses.
        """
        check_capabilities(request, model)
        kwargs = self._kwargs(request, model)
        try:
            response = self._complete(**kwargs)
            if not request.stream:
                return _shape_completion(response, request.model, completion_id, created)
        except Exception as exc:  # noqa: BLE001 - every upstream failure is mapped
            raise map_upstream_error(exc) from exc
        return _shape_stream(response, request, completion_id, created)

    def _kwargs(self, request: ChatRequest, model: ModelEntry) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": model.litellm_model,
            "messages": request.messages,
            "stream": request.stream,
            "timeout": self._upstream.timeout_seconds,
            "num_retries": 0,
            "aws_region_name": self._upstream.region,
            **request.options,
        }
        if self._upstream.endpoint_url:
            kwargs["aws_bedrock_runtime_endpoint"] = self._upstream.endpoint_url
        if request.stream:
            # Always ask for usage: billing needs it even when the client did not.
            kwargs["stream_options"] = {"include_usage": True}
        return kwargs


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
    limit = model.max_output_tokens
    wanted = request.options.get("max_tokens")
    if limit and wanted and wanted > limit:
        raise errors.InvalidRequest(
            f"max_tokens is too large: {wanted}. "
            f"The model '{request.model}' supports at most {limit} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )


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


def _shape_completion(response: Any, model_name: str, completion_id: str, created: int) -> ChatOutcome:
    choice = response.choices[0]
    message = choice.message
    tool_calls = _tool_calls(getattr(message, "tool_calls", None))
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

    def __init__(self, model_name: str, completion_id: str, created: int) -> None:
        self._base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name}
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
            calls = [self._tool_delta(call) for call in getattr(delta, "tool_calls", None) or []]
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


def _shape_stream(response: Any, request: ChatRequest, completion_id: str, created: int) -> ChatOutcome:
    shaper = _StreamShaper(request.model, completion_id, created)
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
