"""LiteLLM → Bedrock: the only package that imports LiteLLM.

LiteLLM is imported on first use, not at import time (it costs seconds and
~200 MB), with ``LITELLM_LOCAL_MODEL_COST_MAP`` forced so it never fetches
prices from the network (``loader``). The completion and embedding functions
are injectable so tests and the benchmark can swap them (``client``).
Answers become the core's events (``events``), whatever LiteLLM's objects
carry, so every protocol adapter renders the same facts. ``prompts`` decides
what reaches Bedrock, ``embeddings`` the embedding specifics, ``upstream``
how failures map, ``policy`` what the core hands a call (its targets, guardrails, retry rules)
and ``resilience`` how the gateway walks it (retries, fallbacks, cooldowns).
"""

from chalicelib.gateway.client import Gateway, UpstreamConfig
from chalicelib.gateway.embeddings import EmbeddingOutcome, embedding_limits, embedding_texts
from chalicelib.gateway.loader import load_litellm
from chalicelib.gateway.policy import CallPolicy, RetryRules, Target
from chalicelib.gateway.prompts import BedrockPrompt, PromptInput, bedrock_prompt, check_capabilities, prompt_input
from chalicelib.gateway.resilience import Attempt, Resilience, Served
from chalicelib.gateway.upstream import map_upstream_error

__all__ = [
    "Attempt",
    "BedrockPrompt",
    "CallPolicy",
    "Resilience",
    "RetryRules",
    "Served",
    "Target",
    "EmbeddingOutcome",
    "Gateway",
    "PromptInput",
    "UpstreamConfig",
    "bedrock_prompt",
    "check_capabilities",
    "embedding_limits",
    "embedding_texts",
    "load_litellm",
    "map_upstream_error",
    "prompt_input",
]
