"""Embedding requests: input limits, token-array decoding, dimensions, base64 encoding."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.conversation.request import EmbeddingRequest
from chalicelib.gateway.loader import load_litellm
from chalicelib.shared.usage import TokenUsage


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
    if model.provider != "bedrock":
        # OpenAI's API takes up to 2,048 inputs of 8,192 tokens; a smaller batch keeps each call short.
        return EmbeddingLimits(max_chars=32_000, batch_size=256)
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
