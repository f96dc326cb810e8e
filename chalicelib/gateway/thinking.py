"""A reasoning effort fitted to the caller's ``max_tokens`` on Claude models with fixed thinking budgets.

LiteLLM turns an OpenAI-style ``reasoning_effort`` into a fixed Anthropic thinking budget on
Claude models without adaptive thinking (``"high"`` is 4,096 tokens), and Bedrock refuses a
``max_tokens`` at or under the budget: a caller asking for ``reasoning_effort: "high"`` and
``max_tokens: 2000`` got a 400 about a ``budget_tokens`` they never sent. Here the budget LiteLLM
would choose is capped below ``max_tokens`` (with LiteLLM's own rule for it), and when even the
smallest budget Bedrock takes does not fit, the answer comes without thinking. An explicit
budget (Anthropic's ``thinking.budget_tokens``) is the caller's and is never changed.
"""

from __future__ import annotations

from typing import Any

from chalicelib.catalog import ModelEntry


def fit_thinking(options: dict[str, Any], model: ModelEntry) -> dict[str, Any]:
    """``options`` (LiteLLM's keyword arguments) with the effort's thinking budget under ``max_tokens``.

    Imports LiteLLM's Anthropic configuration: call it only where LiteLLM is loaded anyway.
    """
    effort, max_tokens = options.get("reasoning_effort"), options.get("max_tokens")
    if model.provider != "bedrock" or model.owned_by != "anthropic" or effort in (None, "none") or max_tokens is None:
        return options
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig

    thinking = AnthropicConfig.map_reasoning_effort(effort, model=model.bedrock_model_id, custom_llm_provider="bedrock")
    if thinking is None or thinking.get("type") != "enabled":
        return options  # adaptive thinking has no fixed budget: nothing to fit
    fitted = AnthropicConfig.cap_thinking_budget_to_max_tokens(thinking, max_tokens)
    if fitted == thinking:
        return options
    rest = {name: value for name, value in options.items() if name != "reasoning_effort"}
    return rest if fitted is None else {**rest, "thinking": dict(fitted)}
