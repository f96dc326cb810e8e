"""Upstream failures (Bedrock's, or an OpenAI-compatible API's), as LiteLLM raises them, as caller-facing errors."""

from __future__ import annotations

import json
import re

from chalicelib import errors
from chalicelib.observability import logger

_UPSTREAM_RETRY_AFTER_SECONDS = 2


def map_upstream_error(exc: Exception, upstream: str = "Bedrock", *, hide: str | None = None) -> errors.AppError:
    """Translate a LiteLLM exception from ``upstream`` (how messages name it) into the caller-facing error.

    ``hide``: a secret the call carried (a provider key), never repeated in a message or log
    line even if the upstream echoed it back.

    Decided on Bedrock's HTTP status (LiteLLM keeps it on ``status_code``),
    because LiteLLM's class names are coarse: it raises ``BadRequestError``
    for Bedrock's 424 ``ModelErrorException``, which is not the caller's fault.
    """
    if isinstance(exc, errors.AppError):
        return exc
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    text = str(exc)
    said = str(getattr(exc, "message", None) or text)
    if hide and len(hide) >= 4:
        text, said = text.replace(hide, "[redacted]"), said.replace(hide, "[redacted]")
    bedrock_says = _bedrock_message(said)
    if bedrock_says is None:
        # Not Bedrock's own words (a broken connection, a client-side failure): what LiteLLM
        # says names its own classes and internals, which mean nothing to the caller. Log it.
        logger.warning("upstream failure without a Bedrock message", extra={"error": name, "detail": text[:2000]})
    if bedrock_says is None and _connection_broke(name, text):
        return errors.UpstreamError(
            f"The connection to {upstream} broke off before the answer was complete; retry the request.",
            code="upstream_connection_error",
        )
    detail = bedrock_says or _without_internals(text) or (f"HTTP {status}" if status else "no details")
    timed_out = name.endswith(("Timeout", "TimeoutError", "TimeoutException")) or isinstance(exc, TimeoutError)
    if timed_out or status in (408, 504):
        return errors.UpstreamTimeout(f"{upstream} did not answer in time; retry the request.")
    if status == 429 or name == "RateLimitError":
        return errors.RateLimited(
            f"{upstream} is throttling requests for this model; retry shortly. ({detail})",
            retry_after=_UPSTREAM_RETRY_AFTER_SECONDS,
            code="upstream_throttled",
        )
    if bedrock_says is not None and "guardrail" in bedrock_says.lower() and status in (400, 404):
        # Not the caller's request: the operator's guardrail configuration. Nothing is served without it.
        return errors.UpstreamError(
            f"The guardrail configured for this model or key cannot be applied ({detail}); "
            "an admin must correct the guardrail's id or version.",
            code="guardrail_unavailable",
        )
    if status in (400, 413, 422) or name == "ContextWindowExceededError":
        return errors.InvalidRequest(f"{upstream} rejected the request: {detail}", code="upstream_validation_error")
    if status in (401, 403):
        return errors.UpstreamError(
            "The gateway is not allowed to call this model on Bedrock (check model access and IAM)."
            if upstream == "Bedrock"
            else f"{upstream} refused the gateway's API key for this model (check the key in SSM).",
            code="upstream_access_denied",
        )
    if status == 404:
        return errors.UpstreamError(
            "Bedrock does not offer this model in the gateway's region or account."
            if upstream == "Bedrock"
            else f"{upstream} does not offer this model (check the model's model_id and base_url).",
            code="upstream_model_unavailable",
        )
    if status == 503:
        return errors.ServiceUnavailable(f"{upstream} is unavailable: {detail}")
    return errors.UpstreamError(f"{upstream} failed to answer: {detail}")


def _bedrock_message(text: str) -> str | None:
    """The upstream's own error message (the ``message`` of its JSON error body), if the exception carries it."""
    start = text.find("{")
    while start >= 0:
        try:
            inner, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            inner = None
        if isinstance(inner, dict) and isinstance(inner.get("message"), str) and inner["message"].strip():
            return inner["message"].strip()[:500]
        start = text.find("{", start + 1)
    return None


_INTERNALS = re.compile(
    r"(?:\blitellm\.[\w.]+(?::\s*)?)"  # litellm.BadRequestError: / litellm.drop_params
    r"|(?:\b\w*(?:Error|Exception)\b(?:\s*[-:]\s*)?)"  # class names: BedrockException - , APIConnectionError:
    r"|(?:To drop it from the call.*$)"  # LiteLLM's own advice about its own settings
    r"|(?:Original exception:.*$)",
    re.DOTALL,
)


def _without_internals(text: str) -> str:
    """A LiteLLM message without LiteLLM's (or Python's) names in it; empty if nothing else is left."""
    cleaned = " ".join(_INTERNALS.sub(" ", text).split()).strip(" -:.")
    return cleaned[:300]


_CONNECTION_SIGNS = (
    "APIConnectionError",
    "peer closed",
    "incomplete chunked read",
    "Connection reset",
    "RemoteProtocol",
)


def _connection_broke(name: str, text: str) -> bool:
    return any(sign in f"{name} {text}" for sign in _CONNECTION_SIGNS)
