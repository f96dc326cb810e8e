"""MCP answers: JSON-RPC responses and errors, tool results (an error as ``isError``), the tool list.

``TOOLS`` is the ``tools/list`` answer: each tool's name, title, description, input
schema (``parse.INPUT_SCHEMAS``), output schema and hints.
"""

from __future__ import annotations

from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.protocols.mcp.parse import INPUT_SCHEMAS, ProtocolError
from chalicelib.shared.usage import TokenUsage

SERVER_INFO = {"name": "pennyworth", "title": "pennyworth (Amazon Bedrock gateway)", "version": "0.1.0"}


def error_response(request_id: Any, error: ProtocolError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def tool_error(exc: errors.AppError) -> dict[str, Any]:
    text = f"Error ({exc.status_code} {exc.code or exc.error_type}): {exc.message}"
    retry_after = exc.headers.get("Retry-After")
    if retry_after:
        text += f" Retry after {retry_after} s."
    billed = exc.headers.get("x-pennyworth-cost-usd")
    if billed:
        # A call that broke off or was given up on is billed for what Bedrock generated.
        text += f" Billed ${billed} for what was generated (request {exc.headers.get('x-request-id')})."
    return {"content": [{"type": "text", "text": text}], "isError": True}


def describe_model(model: ModelEntry) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": model.id,
        "mode": model.mode,
        "owned_by": model.owned_by,
        "bedrock_model_id": model.bedrock_model_id,
        "input_modalities": list(model.input_modalities),
        "prices_usd_per_million_tokens": model.prices.per_million(),
    }
    if model.mode == "chat":
        described.update(
            supports_tools=model.supports_tools,
            supports_reasoning=model.supports_reasoning,
            max_output_tokens=model.max_output_tokens,
        )
    else:
        described.update(dimensions=list(model.dimensions), default_dimensions=model.default_dimensions)
    return described


def usage_body(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }


_MONEY = {"type": "string", "description": "Exact USD, as a decimal string."}
_USAGE_SCHEMA = {
    "type": "object",
    "properties": {
        name: {"type": "integer"}
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    },
}

_OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "chat": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "text": {"type": "string"},
            "finish_reason": {"type": "string"},
            "usage": _USAGE_SCHEMA,
            "cost_usd": _MONEY,
            "latency_ms": {"type": "integer"},
            "request_id": {"type": "string"},
            "served_model": {"type": "string", "description": "The model that answered (a fallback, if not 'model')."},
            "served_by": {"type": "string", "description": "The upstream that answered: <Bedrock model id>@<region>."},
            "guardrail_text_units": {"type": "integer"},
            "guardrail_cost_usd": _MONEY,
        },
        "required": ["model", "text", "finish_reason", "usage", "cost_usd", "latency_ms"],
    },
    "list_models": {
        "type": "object",
        "properties": {"models": {"type": "array", "items": {"type": "object"}}},
        "required": ["models"],
    },
    "embed": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "dimensions": {"type": "integer"},
            "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "usage": {"type": "object", "properties": {"input_tokens": {"type": "integer"}}},
            "cost_usd": _MONEY,
            "latency_ms": {"type": "integer"},
            "request_id": {"type": "string"},
        },
        "required": ["model", "dimensions", "embeddings", "usage", "cost_usd"],
    },
    "get_usage": {
        "type": "object",
        "properties": {
            "key_id": {"type": "string"},
            "prefix": {"type": "string"},
            "budget": {"type": "object"},
            "usage": {"type": "object"},
            "limits": {"type": "object"},
        },
        "required": ["key_id", "budget", "usage"],
    },
    "count_tokens": {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "input_tokens": {"type": "integer"},
            "estimate": {"type": "boolean"},
            "cost_usd": {
                "type": "object",
                "properties": {"input": _MONEY, "max_output": _MONEY, "max_total": _MONEY},
                "required": ["input", "max_output", "max_total"],
            },
            "max_output_tokens": {"type": "integer"},
            "prices_usd_per_million_tokens": {"type": "object"},
        },
        "required": ["model", "input_tokens", "cost_usd"],
    },
}

_DESCRIPTIONS = {
    "chat": (
        "Ask a Bedrock chat model. Give 'prompt' (or OpenAI-style 'messages'), optionally 'system', "
        "'max_tokens', 'temperature'. Returns the answer, with usage, cost and latency. Billed to your key."
    ),
    "list_models": "The models this API key may use, with their modalities and prices (USD per million tokens).",
    "embed": "Embedding vectors for one text or a list of texts (Titan, Cohere). Billed to your key.",
    "get_usage": "This API key's spend, tokens and requests this month, its limits and remaining budget.",
    "count_tokens": (
        "Estimate a prompt's tokens for a model and what a call would cost (input, and at most with "
        "max_output_tokens of output). Nothing is called or billed."
    ),
}
_TITLES = {
    "chat": "Chat with a Bedrock model",
    "list_models": "List models",
    "embed": "Embed texts",
    "get_usage": "Get my usage",
    "count_tokens": "Count tokens and estimate cost",
}
_READ_ONLY = {"list_models", "get_usage", "count_tokens"}

#: The ``tools/list`` answer (the same for every protocol version: older clients ignore newer fields).
TOOLS: list[dict[str, Any]] = [
    {
        "name": name,
        "title": _TITLES[name],
        "description": _DESCRIPTIONS[name],
        "inputSchema": INPUT_SCHEMAS[name],
        "outputSchema": _OUTPUT_SCHEMAS[name],
        "annotations": {
            "title": _TITLES[name],
            "readOnlyHint": name in _READ_ONLY,
            "openWorldHint": name not in _READ_ONLY,
        },
    }
    for name in ("chat", "list_models", "embed", "get_usage", "count_tokens")
]
