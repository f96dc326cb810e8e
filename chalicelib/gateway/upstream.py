"""Bedrock failures, as LiteLLM raises them, turned into the caller-facing errors."""

from __future__ import annotations

import json

from chalicelib import errors

_UPSTREAM_RETRY_AFTER_SECONDS = 2


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
