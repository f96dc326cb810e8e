"""What reaches Bedrock: capability checks, JSON mode, tool history without tools, and what it counts as input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.catalog import ModelEntry
from chalicelib.conversation.request import Conversation

#: Bedrock has no JSON mode: ``json_object`` becomes this instruction (OpenAI also requires the
#: prompt to ask for JSON). ``json_schema`` is enforced by Bedrock itself.
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose before or after it, no code fences."
)


def flatten_tool_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier tool calls and results as plain text, for a request that offers Bedrock no tools.

    A call becomes a line of the assistant's turn, a result a user turn; the model
    still sees what happened, and Bedrock needs no ``toolConfig``.
    """
    if not any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return messages
    names = {call["id"]: call["function"]["name"] for m in messages for call in m.get("tool_calls") or []}
    flattened = []
    for message in messages:
        if message["role"] == "assistant" and message.get("tool_calls"):
            lines = [_text_of(message.get("content"))]
            lines += [
                f"[called tool {call['function']['name']} (call id {call['id']}) "
                f"with arguments {call['function']['arguments']}]"
                for call in message["tool_calls"]
            ]
            flattened.append({"role": "assistant", "content": "\n".join(line for line in lines if line)})
        elif message["role"] == "tool":
            call_id = message["tool_call_id"]
            label = f"result of tool {names.get(call_id, 'unknown')} (call id {call_id})"
            flattened.append({"role": "user", "content": f"[{label}]: {_text_of(message.get('content'))}"})
        else:
            flattened.append(message)
    return flattened


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


#: The messages and options LiteLLM is handed for one conversation (``bedrock_prompt``).
BedrockPrompt = tuple[list[dict[str, Any]], dict[str, Any]]


def bedrock_prompt(conversation: Conversation) -> BedrockPrompt:
    """The messages and options handed to LiteLLM, after the gateway's own Bedrock adaptations.

    Built once per call (``ModelService.converse``): admission bounds the prompt's tokens on
    these, since they are what Bedrock counts, and ``Gateway.chat`` sends them.
    """
    options = litellm_options(conversation)
    messages = conversation.messages
    if options.get("tool_choice") == "none":
        # Converse has no "none" (LiteLLM would refuse it, or with drop_params send "auto"):
        # a model that is offered no tools cannot call one.
        for name in ("tools", "tool_choice"):
            options.pop(name, None)
    if not options.get("tools"):
        # Bedrock refuses toolUse/toolResult blocks without a toolConfig, so earlier
        # tool turns are kept as text; parallel_tool_calls means nothing without tools.
        options.pop("parallel_tool_calls", None)
        messages = flatten_tool_history(messages)
    if options.get("response_format") == {"type": "json_object"}:
        del options["response_format"]
        messages = [{"role": "system", "content": JSON_OBJECT_INSTRUCTION}, *messages]
    return messages, options


#: Bedrock bills an image at most ~1,600 tokens (Claude: 1.15 MP / 750); the bound reserves a little more.
IMAGE_TOKEN_BOUND = 2_000
#: Role markers and separators a model's chat template adds around each message (the bound's share).
MESSAGE_OVERHEAD_TOKENS = 8


@dataclass(frozen=True)
class PromptInput:
    """Everything of a Bedrock prompt that Bedrock counts as input tokens.

    ``texts``: each message's text, earlier tool calls and thinking, tool results, the tool
    definitions and the output schema (a ``response_format``); ``images``: each image's URL (a
    ``data:`` URL), wherever it sits. Admission bounds this (``token_bound``), and a call cut
    before Bedrock reported its usage is billed on an estimate of this (``Gateway.estimate_usage``),
    so the two can never disagree on what a prompt holds.
    """

    texts: tuple[str, ...]
    images: tuple[str, ...]
    messages: int

    @property
    def token_bound(self) -> int:
        """An upper bound of the input tokens: UTF-8 bytes (a byte-level BPE token is at least one byte)."""
        size = sum(len(text.encode()) for text in self.texts)
        return size + len(self.images) * IMAGE_TOKEN_BOUND + MESSAGE_OVERHEAD_TOKENS * self.messages


def prompt_input(prompt: BedrockPrompt) -> PromptInput:
    """What of ``prompt`` (``bedrock_prompt``'s messages and options) Bedrock counts as input."""
    messages, options = prompt
    texts: list[str] = []
    images: list[str] = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else [{"type": "text", "text": content or ""}]:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "image_url":
                image = part.get("image_url")
                images.append(str(image.get("url", "")) if isinstance(image, dict) else str(image or ""))
            elif part.get("text"):
                texts.append(str(part["text"]))
        if message.get("tool_calls"):
            texts.append(json.dumps(message["tool_calls"], ensure_ascii=False))
        for block in message.get("thinking_blocks") or []:
            # Earlier reasoning sent back is input too; its signature is a check, not text the model reads.
            texts.append(str(block.get("thinking") or block.get("data") or ""))
    for name in ("tools", "response_format"):
        if options.get(name):
            texts.append(json.dumps(options[name], ensure_ascii=False))
    return PromptInput(tuple(texts), tuple(images), len(messages))


def litellm_options(conversation: Conversation) -> dict[str, Any]:
    """The conversation's generation options as LiteLLM's keyword arguments."""
    options: dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p", "top_k", "tools", "tool_choice", "parallel_tool_calls"):
        value = getattr(conversation, name)
        if value is not None:
            options[name] = value
    if conversation.stop:
        options["stop"] = list(conversation.stop)
    if conversation.response_format is not None:
        options["response_format"] = conversation.response_format
    reasoning = conversation.reasoning
    if reasoning is not None and reasoning.budget_tokens:
        options["thinking"] = {"type": "enabled", "budget_tokens": reasoning.budget_tokens}
    elif reasoning is not None and reasoning.enabled:
        options["reasoning_effort"] = reasoning.effort
    return options


def check_capabilities(conversation: Conversation, model: ModelEntry) -> None:
    """Refuse, before admission and before calling Bedrock, what the model cannot do.

    Raises
    ------
    InvalidRequest
        Images for a text-only model, reasoning or tools the model lacks, a tool forced while
        reasoning on Claude, or more output tokens than the model can produce.
    """
    if conversation.has_images and "image" not in model.input_modalities:
        raise errors.InvalidRequest(
            f"The model '{conversation.model}' does not accept image input.",
            param="messages",
            code="unsupported_input",
        )
    if conversation.reasoning is not None and not model.supports_reasoning:
        name = conversation.annotations.get("reasoning_param", "reasoning_effort")
        if conversation.thinks or conversation.reasoning.budget_tokens:
            raise errors.InvalidRequest(
                f"Unsupported parameter: '{name}' is not supported with the model '{conversation.model}'.",
                param=name,
                code="unsupported_parameter",
            )
    if conversation.tools and not model.supports_tools:
        raise errors.InvalidRequest(
            f"The model '{conversation.model}' does not support tools.", param="tools", code="unsupported_parameter"
        )
    if conversation.forces_tool and conversation.thinks and "anthropic." in model.bedrock_model_id:
        # LiteLLM would quietly downgrade to "auto"; the caller asked for a guaranteed call.
        raise errors.InvalidRequest(
            f"The model '{conversation.model}' cannot be forced to call a tool while reasoning (a Bedrock rule): "
            "let the model choose (tool_choice auto) or turn reasoning off.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    limit = model.max_output_tokens
    wanted = conversation.max_tokens
    if limit and wanted and wanted > limit:
        name = conversation.annotations.get("max_tokens_param", "max_tokens")
        raise errors.InvalidRequest(
            f"{name} is too large: {wanted}. The model '{conversation.model}' supports at most {limit} output tokens.",
            param=name,
            code="invalid_value",
        )
