"""What reaches Bedrock: capability checks, JSON mode, tool history without tools."""

from __future__ import annotations

from typing import Any

from chalicelib import errors
from chalicelib.catalog.catalog import ModelEntry
from chalicelib.protocols.openai_validation import ChatRequest

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


def bedrock_prompt(request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and options handed to LiteLLM, after the gateway's own Bedrock adaptations.

    Admission bounds the prompt's tokens on these, since they are what Bedrock counts.
    """
    options = dict(request.options)
    messages = request.messages
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


def check_capabilities(request: ChatRequest, model: ModelEntry) -> None:
    """Refuse, before calling Bedrock, what the model cannot do."""
    if request.has_images and "image" not in model.input_modalities:
        raise errors.InvalidRequest(
            f"The model '{request.model}' does not accept image input.", param="messages", code="unsupported_input"
        )
    if "reasoning_effort" in request.options and not model.supports_reasoning:
        raise errors.InvalidRequest(
            f"Unsupported parameter: 'reasoning_effort' is not supported with the model '{request.model}'.",
            param="reasoning_effort",
            code="unsupported_parameter",
        )
    if request.options.get("tools") and not model.supports_tools:
        raise errors.InvalidRequest(
            f"The model '{request.model}' does not support tools.", param="tools", code="unsupported_parameter"
        )
    forced = request.options.get("tool_choice") == "required" or isinstance(request.options.get("tool_choice"), dict)
    if forced and _thinks(request) and "anthropic." in model.bedrock_model_id:
        # LiteLLM would quietly downgrade to "auto"; the caller asked for a guaranteed call.
        raise errors.InvalidRequest(
            f"The model '{request.model}' cannot be forced to call a tool while reasoning (a Bedrock rule): "
            "use tool_choice 'auto' or drop reasoning_effort.",
            param="tool_choice",
            code="unsupported_parameter",
        )
    limit = model.max_output_tokens
    wanted = request.options.get("max_tokens")
    if limit and wanted and wanted > limit:
        raise errors.InvalidRequest(
            f"max_tokens is too large: {wanted}. "
            f"The model '{request.model}' supports at most {limit} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )


def _thinks(request: ChatRequest) -> bool:
    return request.options.get("reasoning_effort") not in (None, "none")
