"""OpenAI embeddings request bodies (``POST /v1/embeddings``, the MCP ``embed`` tool) → an ``EmbeddingRequest``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.conversation.request import EmbeddingInput, EmbeddingRequest
from chalicelib.errors import InvalidRequest
from chalicelib.protocols import params
from chalicelib.protocols.params import IGNORED, PASSED

#: Policy per embeddings parameter (OpenAI's ``CreateEmbeddingRequest``); the compatibility doc mirrors it.
EMBEDDING_PARAMETERS: dict[str, str] = {
    "model": PASSED,
    "input": PASSED,
    "dimensions": PASSED,
    "encoding_format": PASSED,
    "user": IGNORED,
}
#: Inputs per embeddings request. OpenAI allows 2048, but Titan embeds one text per Bedrock call,
#: so the gateway's bound keeps a full request well inside API Gateway's 29 s.
MAX_EMBEDDING_INPUTS = 128
ENCODING_FORMATS = ("float", "base64")


def parse_embedding_request(body: Mapping[str, Any]) -> EmbeddingRequest:
    """Validate an embeddings body (shape only; per-model limits are the gateway's).

    Raises
    ------
    InvalidRequest
        A missing, unknown or malformed parameter; ``param`` names it.
    """
    present = params.checked(body, EMBEDDING_PARAMETERS, harmless={}, why={})
    model = present.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("You must provide a model parameter.", param="model")
    inputs = _embedding_inputs(present.get("input"))
    encoding_format = present.get("encoding_format", "float")
    if encoding_format not in ENCODING_FORMATS:
        raise InvalidRequest(
            f"'encoding_format' must be 'float' or 'base64', got {encoding_format!r}.",
            param="encoding_format",
        )
    dimensions = params.integer(present, "dimensions", minimum=1) if "dimensions" in present else None
    user = present.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    return EmbeddingRequest(
        model=model, inputs=inputs, encoding_format=encoding_format, dimensions=dimensions, user=user
    )


def _embedding_inputs(value: Any) -> tuple[EmbeddingInput, ...]:
    if value is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(_is_token(v) for v in value):
        value = [value]  # one token array, not many one-token inputs
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a non-empty string, an array of strings, or an array of token arrays.", param="input"
        )
    if len(value) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(
            f"'input' has {len(value)} items; this gateway embeds at most {MAX_EMBEDDING_INPUTS} per request.",
            param="input",
            code="too_many_inputs",
        )
    inputs: list[EmbeddingInput] = []
    for index, item in enumerate(value):
        at = f"input[{index}]"
        if isinstance(item, str):
            if not item.strip():
                raise InvalidRequest(f"{at} is empty; every input must contain text.", param=at)
            inputs.append(item)
        elif isinstance(item, list) and item and all(_is_token(v) for v in item):
            inputs.append(tuple(item))
        else:
            raise InvalidRequest(
                f"{at} must be a non-empty string or a non-empty array of token ids (integers >= 0).", param=at
            )
    return tuple(inputs)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
