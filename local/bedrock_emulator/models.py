"""The emulator's model registry and model-id resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import BedrockError, validation

Kind = Literal["chat", "embedding"]
Reasoning = Literal["anthropic", "nova"] | None
EmbeddingFamily = Literal["titan-v2", "cohere-v3"] | None

# Geography prefixes of cross-region inference profile ids ("us.amazon.nova-micro-v1:0").
PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "jp", "au", "ca", "us-gov"})

# The prefixes accepted for every model unless strict profile checking is on.
LENIENT_PREFIXES = frozenset({"us", "eu", "apac", "global"})


@dataclass(frozen=True)
class ModelSpec:
    """What the emulator knows about one Bedrock model."""

    model_id: str
    kind: Kind
    provider: str
    modalities: frozenset[str] = frozenset({"text"})
    tools: bool = False
    forced_tool_choice: bool = False
    reasoning: Reasoning = None
    structured_output: bool = False
    max_output_tokens: int = 0
    context_window: int = 0
    embedding_dims: tuple[int, ...] = ()
    embedding_family: EmbeddingFamily = None
    max_input_tokens: int = 0
    # Geographies with a real inference profile; used only in strict mode.
    profiles: frozenset[str] = frozenset()
    # True when the base id has no on-demand throughput (real Bedrock demands a profile id).
    profile_only: bool = False


_TEXT = frozenset({"text"})
_TEXT_IMAGE = frozenset({"text", "image"})
_NOVA_PROFILES = frozenset({"us", "eu", "apac"})
_CLAUDE_PROFILES = frozenset({"us", "eu", "apac", "global", "jp", "au"})


def _nova(model_id: str, modalities: frozenset[str], context_window: int) -> ModelSpec:
    """A first-generation Amazon Nova chat model."""
    return ModelSpec(
        model_id=model_id,
        kind="chat",
        provider="amazon",
        modalities=modalities,
        tools=True,
        forced_tool_choice=True,
        max_output_tokens=10_000,
        context_window=context_window,
        profiles=_NOVA_PROFILES,
    )


def _claude(model_id: str, max_output_tokens: int = 64_000) -> ModelSpec:
    """A Claude 4.5 or 5.5 chat model (profile-only, thinking, native structured output)."""
    return ModelSpec(
        model_id=model_id,
        kind="chat",
        provider="anthropic",
        modalities=_TEXT_IMAGE,
        tools=True,
        forced_tool_choice=True,
        reasoning="anthropic",
        structured_output=True,
        max_output_tokens=max_output_tokens,
        context_window=200_000,
        profiles=_CLAUDE_PROFILES,
        profile_only=True,
    )


def _cohere(model_id: str) -> ModelSpec:
    """A Cohere Embed v3 model."""
    return ModelSpec(
        model_id=model_id,
        kind="embedding",
        provider="cohere",
        embedding_dims=(1024,),
        embedding_family="cohere-v3",
    )


MODELS: dict[str, ModelSpec] = {
    spec.model_id: spec
    for spec in (
        _nova("amazon.nova-micro-v1:0", _TEXT, 128_000),
        _nova("amazon.nova-lite-v1:0", _TEXT_IMAGE, 300_000),
        _nova("amazon.nova-pro-v1:0", _TEXT_IMAGE, 300_000),
        ModelSpec(
            model_id="amazon.nova-2-lite-v1:0",
            kind="chat",
            provider="amazon",
            modalities=_TEXT_IMAGE,
            tools=True,
            forced_tool_choice=True,
            reasoning="nova",
            max_output_tokens=65_535,
            context_window=1_000_000,
            profiles=frozenset({"us", "eu", "apac", "global"}),
            profile_only=True,
        ),
        _claude("anthropic.claude-haiku-4-5-20251001-v1:0"),
        _claude("anthropic.claude-sonnet-4-5-20250929-v1:0"),
        # The Claude 5.5 family (the models Claude Code asks for by default): no version suffix.
        _claude("anthropic.claude-haiku-5-5", max_output_tokens=128_000),
        _claude("anthropic.claude-sonnet-5-5", max_output_tokens=128_000),
        _claude("anthropic.claude-opus-5-5", max_output_tokens=128_000),
        ModelSpec(
            model_id="meta.llama3-3-70b-instruct-v1:0",
            kind="chat",
            provider="meta",
            modalities=_TEXT,
            tools=True,
            forced_tool_choice=False,
            max_output_tokens=8_192,
            context_window=128_000,
            profiles=frozenset({"us"}),
            profile_only=True,
        ),
        ModelSpec(
            model_id="amazon.titan-embed-text-v2:0",
            kind="embedding",
            provider="amazon",
            embedding_dims=(1024, 512, 256),
            embedding_family="titan-v2",
            max_input_tokens=8_192,
        ),
        _cohere("cohere.embed-english-v3"),
        _cohere("cohere.embed-multilingual-v3"),
    )
}


def _strip_arn(model_id: str) -> str:
    """Resource part of a foundation-model or inference-profile ARN, else the id unchanged."""
    if model_id.startswith("arn:") and "/" in model_id:
        return model_id.rsplit("/", 1)[1]
    return model_id


def _not_found(model_id: str) -> BedrockError:
    """ResourceNotFoundException naming the known ids (LiteLLM keys on the first sentence)."""
    known = ", ".join(sorted(MODELS))
    return BedrockError(
        "ResourceNotFoundException",
        f"The provided model identifier is invalid. Model '{model_id}' is not known to the "
        f"bedrock emulator; known base ids (optionally prefixed us./eu./apac./global.): {known}.",
    )


def resolve_model(model_id: str, *, strict_profiles: bool = False) -> ModelSpec:
    """Registry entry for a base id, inference-profile id or ARN; raises ResourceNotFound/Validation."""
    bare = _strip_arn(model_id)
    if bare in MODELS:
        spec = MODELS[bare]
        if strict_profiles and spec.profile_only:
            raise validation(
                f"Invocation of model ID {bare} with on-demand throughput isn't supported. Retry your "
                "request with the ID or ARN of an inference profile that contains this model."
            )
        return spec
    prefix, _, rest = bare.partition(".")
    spec_or_none = MODELS.get(rest) if prefix in PROFILE_PREFIXES else None
    if spec_or_none is None:
        raise _not_found(model_id)
    allowed = spec_or_none.profiles if strict_profiles else LENIENT_PREFIXES | spec_or_none.profiles
    if prefix not in allowed:
        raise _not_found(model_id)
    return spec_or_none
