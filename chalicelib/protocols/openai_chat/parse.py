"""OpenAI chat completions request bodies → the internal ``Conversation``, before anything is called or billed.

Every parameter OpenAI defines for chat completions has an explicit policy
here (see ``CHAT_PARAMETERS`` and docs/openai-compatibility.md): *passed* to
the model, *accepted and ignored* (documented, harmless), or *refused* with a
400 that names it. Unknown parameters are refused like OpenAI does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.conversation.request import REASONING_EFFORTS, Conversation, Reasoning
from chalicelib.errors import InvalidRequest
from chalicelib.protocols import params
from chalicelib.protocols.params import IGNORED, MAX_OUTPUT_TOKENS, PASSED, REFUSED_UNLESS_DEFAULT

#: Policy per chat-completions parameter; the compatibility doc mirrors this table.
CHAT_PARAMETERS: dict[str, str] = {
    "model": PASSED,
    "messages": PASSED,
    "stream": PASSED,
    "stream_options": PASSED,
    "max_tokens": PASSED,
    "max_completion_tokens": PASSED,
    "temperature": PASSED,
    "top_p": PASSED,
    "stop": PASSED,
    "tools": PASSED,
    "tool_choice": PASSED,
    "parallel_tool_calls": PASSED,
    "response_format": PASSED,
    "reasoning_effort": PASSED,
    "user": IGNORED,
    "safety_identifier": IGNORED,
    "metadata": IGNORED,
    "seed": IGNORED,
    "store": IGNORED,
    "service_tier": IGNORED,
    "prompt_cache_key": IGNORED,
    "prompt_cache_retention": IGNORED,
    "verbosity": IGNORED,
    "n": REFUSED_UNLESS_DEFAULT,
    "logprobs": REFUSED_UNLESS_DEFAULT,
    "top_logprobs": REFUSED_UNLESS_DEFAULT,
    "logit_bias": REFUSED_UNLESS_DEFAULT,
    "presence_penalty": REFUSED_UNLESS_DEFAULT,
    "frequency_penalty": REFUSED_UNLESS_DEFAULT,
    "modalities": REFUSED_UNLESS_DEFAULT,
    "audio": REFUSED_UNLESS_DEFAULT,
    "prediction": REFUSED_UNLESS_DEFAULT,
    "web_search_options": REFUSED_UNLESS_DEFAULT,
    "functions": REFUSED_UNLESS_DEFAULT,
    "function_call": REFUSED_UNLESS_DEFAULT,
    "moderation": REFUSED_UNLESS_DEFAULT,
}

# The value each refused parameter may still carry, because it asks for nothing.
_HARMLESS_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "logit_bias": ({},),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "modalities": (["text"],),
    "functions": ([],),
}
_WHY_REFUSED = {
    "n": "Bedrock returns one choice per request; send n=1 or leave it out.",
    "logprobs": "Bedrock does not return log probabilities.",
    "top_logprobs": "Bedrock does not return log probabilities.",
    "logit_bias": "Bedrock models do not support logit bias.",
    "presence_penalty": "Bedrock's Converse API has no presence penalty.",
    "frequency_penalty": "Bedrock's Converse API has no frequency penalty.",
    "modalities": "only text output is supported.",
    "audio": "audio output is not supported.",
    "prediction": "predicted outputs are not supported.",
    "web_search_options": "web search is not supported.",
    "functions": "the deprecated 'functions' API is not supported; use 'tools'.",
    "function_call": "the deprecated 'function_call' API is not supported; use 'tool_choice'.",
    "moderation": "OpenAI moderation is not available; use Bedrock Guardrails on the account instead.",
}
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True)
class ChatCompletionRequest:
    """A validated chat completion request: the conversation, and how the client wants the stream."""

    conversation: Conversation
    include_usage: bool = False


def parse_chat_request(body: Mapping[str, Any]) -> ChatCompletionRequest:
    """Validate a chat completions body and normalise it for the gateway.

    Raises
    ------
    InvalidRequest
        Any parameter that is missing, of the wrong type, out of range,
        unknown or unsupported; ``param`` names it.
    """
    present = params.checked(body, CHAT_PARAMETERS, harmless=_HARMLESS_DEFAULTS, why=_WHY_REFUSED)

    model = present.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("You must provide a model parameter.", param="model")
    messages, has_images = _messages(present.get("messages"))
    stream = params.boolean(present, "stream", False)
    include_usage = False
    if "stream_options" in present:
        stream_options = params.an_object(present, "stream_options")
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is true.",
                param="stream_options",
            )
        include_usage = params.boolean(stream_options, "include_usage", False, prefix="stream_options.")

    options: dict[str, Any] = {}
    max_tokens = _max_tokens(present)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    for name, upper in (("temperature", 1.0), ("top_p", 1.0)):
        if name in present:
            options[name] = params.number(present, name, 0.0, upper)
    if "stop" in present:
        options["stop"] = _stop(present["stop"])
    if "tools" in present:
        options["tools"] = _tools(present["tools"])
    if "tool_choice" in present:
        options["tool_choice"] = _tool_choice(present["tool_choice"], options.get("tools"))
    if "parallel_tool_calls" in present:
        options["parallel_tool_calls"] = params.boolean(present, "parallel_tool_calls", True)
    if "response_format" in present:
        response_format = _response_format(present["response_format"])
        if response_format is not None:
            options["response_format"] = response_format
        if response_format == {"type": "json_object"} and not params.mentions_json(messages):
            # OpenAI's own rule: JSON mode without asking for JSON makes models ramble.
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                param="messages",
            )
    if "reasoning_effort" in present:
        effort = present["reasoning_effort"]
        if effort not in REASONING_EFFORTS:
            raise InvalidRequest(
                f"'reasoning_effort' must be one of {sorted(REASONING_EFFORTS)}.",
                param="reasoning_effort",
            )
        options["reasoning_effort"] = effort
    user = present.get("user")
    # Ignored parameters are still OpenAI's types: a wrong one is a 400 there, so it is here.
    params.strings(present, "user", "safety_identifier", "prompt_cache_key", "service_tier", "verbosity")
    params.strings(present, "prompt_cache_retention")
    params.boolean(present, "store", False)
    if "seed" in present:
        params.integer(present, "seed", minimum=-(2**63))
    params.metadata(present)
    conversation = Conversation(
        model=model,
        messages=messages,
        stream=stream,
        max_tokens=options.get("max_tokens"),
        temperature=options.get("temperature"),
        top_p=options.get("top_p"),
        stop=tuple(options.get("stop") or ()),
        tools=options.get("tools"),
        tool_choice=options.get("tool_choice"),
        parallel_tool_calls=options.get("parallel_tool_calls"),
        response_format=options.get("response_format"),
        reasoning=Reasoning(effort=options["reasoning_effort"]) if "reasoning_effort" in options else None,
        user=user,
        has_images=has_images,
    )
    return ChatCompletionRequest(conversation, include_usage=include_usage)


def _messages(value: Any) -> tuple[list[dict[str, Any]], bool]:
    if value is None:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    normalised: list[dict[str, Any]] = []
    has_images = False
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object.", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # a list or object: unhashable, a TypeError in a set
            raise InvalidRequest(f"{where}.role must be one of {sorted(_ROLES)}, got {role!r}.", param=f"{where}.role")
        content, images = _content(message.get("content"), role, where, message)
        has_images = has_images or images
        out: dict[str, Any] = {"role": "system" if role == "developer" else role, "content": content}
        if isinstance(message.get("name"), str):
            out["name"] = message["name"]
        if role == "assistant" and message.get("tool_calls") is not None:
            out["tool_calls"] = _assistant_tool_calls(message["tool_calls"], where)
            if content in ("", None):
                out["content"] = None
        if role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise InvalidRequest(
                    f"{where}.tool_call_id is required for role 'tool'.", param=f"{where}.tool_call_id"
                )
            out["tool_call_id"] = tool_call_id
        normalised.append(out)
    if all(m["role"] == "system" for m in normalised):
        raise InvalidRequest("'messages' must contain at least one user message.", param="messages")
    return normalised, has_images


def _content(value: Any, role: str, where: str, message: Mapping[str, Any]) -> tuple[Any, bool]:
    if value is None:
        if role == "assistant" and message.get("tool_calls"):
            return None, False
        raise InvalidRequest(f"{where}.content is required.", param=f"{where}.content")
    if isinstance(value, str):
        return value, False
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            f"{where}.content must be a string or a non-empty array of content parts.",
            param=f"{where}.content",
        )
    parts: list[dict[str, Any]] = []
    has_images = False
    for number, part in enumerate(value):
        at = f"{where}.content[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image_url" and role == "user":
            parts.append({"type": "image_url", "image_url": params.image_url(part.get("image_url"), at)})
            has_images = True
        elif kind in ("image_url", "input_audio", "file", "refusal"):
            raise InvalidRequest(
                f"{at}: content parts of type '{kind}' are not supported for role '{role}'.",
                param=at,
            )
        else:
            raise InvalidRequest(
                f'{at} must be a content part like {{"type": "text", "text": "..."}}.',
                param=at,
            )
    return parts, has_images


def _assistant_tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}.tool_calls must be an array.", param=f"{where}.tool_calls")
    calls = []
    for number, call in enumerate(value):
        at = f"{where}.tool_calls[{number}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments", ""), str)
        ):
            raise InvalidRequest(
                f"{at} must have an 'id' and a 'function' with 'name' and 'arguments' (a JSON string).",
                param=at,
            )
        calls.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": function.get("arguments") or "{}"},
            }
        )
    return calls


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    tools = []
    names: set[str] = set()
    for number, tool in enumerate(value):
        at = f"tools[{number}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise InvalidRequest(
                f'{at} must be {{"type": "function", "function": {{...}}}}; only function tools are supported.',
                param=at,
            )
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidRequest(f"{at}.function.name must match ^[a-zA-Z0-9_-]{{1,64}}$.", param=f"{at}.function.name")
        if name in names:
            raise InvalidRequest(f"{at}: the tool name '{name}' is used twice.", param=f"{at}.function.name")
        names.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise InvalidRequest(
                f"{at}.function.parameters must be a JSON Schema object.", param=f"{at}.function.parameters"
            )
        clean = {"name": name, "parameters": parameters}
        if isinstance(function.get("description"), str):
            clean["description"] = function["description"]
        tools.append({"type": "function", "function": clean})
    return tools


def _tool_choice(value: Any, tools: list[dict[str, Any]] | None) -> Any:
    if value in ("none", "auto", "required"):
        if value != "none" and not tools:
            raise InvalidRequest(f"tool_choice '{value}' needs 'tools'.", param="tool_choice")
        return value
    function = value.get("function") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(function, dict):
        names = {t["function"]["name"] for t in tools or []}
        if not isinstance(function.get("name"), str) or function["name"] not in names:
            raise InvalidRequest(
                f"tool_choice names the function {function.get('name')!r}, which is not in 'tools'.",
                param="tool_choice",
            )
        return {"type": "function", "function": {"name": function["name"]}}
    raise InvalidRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
        param="tool_choice",
    )


def _response_format(value: Any) -> dict[str, Any] | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest(
                "response_format.json_schema must be an object with a 'name' and a 'schema'.",
                param="response_format.json_schema",
            )
        schema = spec.get("schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
        clean = {"name": spec["name"], "schema": schema, "strict": bool(spec.get("strict", False))}
        if isinstance(spec.get("description"), str):
            clean["description"] = spec["description"]
        return {"type": "json_schema", "json_schema": clean}
    raise InvalidRequest(
        "response_format.type must be 'text', 'json_object' or 'json_schema'.", param="response_format"
    )


def _max_tokens(present: Mapping[str, Any]) -> int | None:
    values = {
        # No model writes anywhere near 2**31 tokens; the model's own limit is checked before admission.
        name: params.integer(present, name, minimum=1, maximum=MAX_OUTPUT_TOKENS)
        for name in ("max_completion_tokens", "max_tokens")
        if name in present
    }
    if len(values) == 2 and values["max_tokens"] != values["max_completion_tokens"]:
        raise InvalidRequest(
            "Send 'max_completion_tokens' or 'max_tokens', not both with different values.",
            param="max_tokens",
        )
    return next(iter(values.values()), None)


def _stop(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or not 0 < len(stops) <= MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise InvalidRequest(
            f"'stop' must be a non-empty string or an array of 1 to {MAX_STOP_SEQUENCES} non-empty strings.",
            param="stop",
        )
    return stops
