"""InvokeModel for the embedding models: Titan Text Embeddings v2 and Cohere Embed v3."""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import malformed, validation
from .models import ModelSpec
from .tokens import count_tokens

TITAN_MAX_CHARS = 50_000
TITAN_TYPES = frozenset({"float", "binary"})
COHERE_MAX_TEXTS = 96
COHERE_MAX_CHARS = 2_048
COHERE_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
COHERE_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary"})
COHERE_TRUNCATE = frozenset({"NONE", "START", "END"})

_TITAN_KEYS = frozenset({"inputText", "dimensions", "normalize", "embeddingTypes"})
_COHERE_KEYS = frozenset({"texts", "images", "input_type", "truncate", "embedding_types"})


@dataclass(frozen=True)
class EmbeddingResult:
    """The InvokeModel JSON body and the input token count for the response headers."""

    body: Mapping[str, object]
    input_tokens: int


def vector(model_id: str, text: str, dims: int, normalize: bool) -> list[float]:
    """A vector seeded from a hash of model and text; unit length when normalize is set."""
    seed = int.from_bytes(hashlib.sha256(f"{model_id}|{text}".encode()).digest(), "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    if not normalize:
        # Un-normalised Titan vectors are not unit length; keep them visibly different.
        return [v / 10 for v in values]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _reject_extra_keys(body: Mapping[str, object], allowed: frozenset[str]) -> None:
    """Bedrock's schema check: unknown request keys are not permitted."""
    for key in body:
        if key not in allowed:
            raise malformed(f"#: extraneous key [{key}] is not permitted")


def titan_v2(model: ModelSpec, body: Mapping[str, object]) -> EmbeddingResult:
    """Titan Text Embeddings v2: one inputText, 256/512/1024 dims, optional binary."""
    _reject_extra_keys(body, _TITAN_KEYS)
    text = body.get("inputText")
    if text is None:
        raise malformed("#: required key [inputText] not found")
    if not isinstance(text, str):
        raise malformed("#/inputText: expected type: String")
    if not text:
        raise malformed("#/inputText: expected minLength: 1, actual: 0")
    if len(text) > TITAN_MAX_CHARS:
        raise malformed(f"#/inputText: expected maxLength: {TITAN_MAX_CHARS}, actual: {len(text)}")
    tokens = count_tokens(text)
    if tokens > model.max_input_tokens:
        raise validation(
            f"400 Bad Request: Too many input tokens. Max input tokens: {model.max_input_tokens}, "
            f"request input token count: {tokens}"
        )
    dims = body.get("dimensions", 1024)
    if not isinstance(dims, int) or isinstance(dims, bool) or dims not in model.embedding_dims:
        raise malformed(f"#/dimensions: {dims} is not a valid enum value (allowed: 256, 512, 1024)")
    normalize = body.get("normalize", True)
    if not isinstance(normalize, bool):
        raise malformed("#/normalize: expected type: Boolean")
    types = body.get("embeddingTypes", ["float"])
    if not isinstance(types, list) or not types or any(t not in TITAN_TYPES for t in types):
        raise malformed("#/embeddingTypes: expected a non-empty list of [float, binary]")
    floats = vector(model.model_id, text, dims, normalize)
    by_type: dict[str, object] = {}
    out: dict[str, object] = {}
    if "float" in types:
        by_type["float"] = floats
        out["embedding"] = floats
    if "binary" in types:
        by_type["binary"] = [1 if v > 0 else 0 for v in floats]
    out["embeddingsByType"] = by_type
    out["inputTextTokenCount"] = tokens
    return EmbeddingResult(out, tokens)


def _quantize(values: Sequence[float], kind: str) -> list[float] | list[int]:
    """Cohere's embedding types derived from the float vector."""
    if kind == "float":
        return list(values)
    peak = max(abs(v) for v in values) or 1.0
    signed = [max(-128, min(127, round(v / peak * 127))) for v in values]
    if kind == "int8":
        return signed
    if kind == "uint8":
        return [v + 128 for v in signed]
    bits = [1 if v > 0 else 0 for v in values]
    packed = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)]
    return packed if kind == "ubinary" else [b - 256 if b > 127 else b for b in packed]


def cohere_v3(model: ModelSpec, body: Mapping[str, object]) -> EmbeddingResult:
    """Cohere Embed v3: up to 96 texts of at most 2048 characters, 1024 dims."""
    _reject_extra_keys(body, _COHERE_KEYS)
    if "images" in body:
        raise validation("The bedrock emulator supports only text input for Cohere embeddings.")
    input_type = body.get("input_type")
    if input_type is None:
        raise malformed("#: required key [input_type] not found")
    if input_type not in COHERE_INPUT_TYPES:
        raise malformed(f"#/input_type: {input_type} is not a valid enum value")
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise malformed(
            "#: required key [texts] not found" if texts is None else "#/texts: expected type: JSONArray of String"
        )
    if not texts:
        raise malformed("#/texts: expected minimum item count: 1, found: 0")
    if len(texts) > COHERE_MAX_TEXTS:
        raise malformed(f"#/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {len(texts)}")
    for i, text in enumerate(texts):
        if len(text) > COHERE_MAX_CHARS:
            raise malformed(f"#/texts/{i}: expected maxLength: {COHERE_MAX_CHARS}, actual: {len(text)}")
    truncate = body.get("truncate", "NONE")
    if truncate not in COHERE_TRUNCATE:
        raise malformed(f"#/truncate: {truncate} is not a valid enum value")
    types = body.get("embedding_types")
    if types is not None and (not isinstance(types, list) or not types or any(t not in COHERE_TYPES for t in types)):
        raise malformed(f"#/embedding_types: expected a non-empty list of {sorted(COHERE_TYPES)}")
    dims = model.embedding_dims[0]
    floats = [vector(model.model_id, t, dims, True) for t in texts]
    digest = hashlib.sha256("\x00".join([model.model_id, *texts]).encode("utf-8")).digest()
    out: dict[str, object] = {"id": str(uuid.UUID(bytes=digest[:16], version=4)), "texts": list(texts)}
    if types is None:
        out["response_type"] = "embeddings_floats"
        out["embeddings"] = floats
    else:
        out["response_type"] = "embeddings_by_type"
        out["embeddings"] = {kind: [_quantize(v, kind) for v in floats] for kind in dict.fromkeys(types)}
    return EmbeddingResult(out, sum(count_tokens(t) for t in texts))


def invoke_embedding(model: ModelSpec, body: Mapping[str, object]) -> EmbeddingResult:
    """Dispatch InvokeModel to the model family's handler."""
    if model.embedding_family == "titan-v2":
        return titan_v2(model, body)
    if model.embedding_family == "cohere-v3":
        return cohere_v3(model, body)
    raise validation(
        f"The bedrock emulator implements InvokeModel only for embedding models; use Converse for {model.model_id}."
    )


def embedding_texts(body: Mapping[str, object]) -> list[str]:
    """The input texts (where directives may hide) of an embedding request, best effort."""
    if isinstance(body.get("inputText"), str):
        return [str(body["inputText"])]
    texts = body.get("texts")
    return [t for t in texts if isinstance(t, str)] if isinstance(texts, list) else []
