"""Anthropic Messages API request bodies → the core's ``Conversation``, before anything is called or billed.

Every body parameter of ``POST /v1/messages`` and ``/v1/messages/count_tokens``
has a policy here (``MESSAGES_PARAMETERS``, mirrored by
docs/anthropic-compatibility.md): *passed* to the model, *ignored*
(documented, harmless), or *refused* with a 400 naming it. Unknown
parameters are refused, as Anthropic's API does ("Extra inputs are not
permitted"). Content blocks and message fields get the same treatment.

The messages themselves are translated by ``messages.translate``, in one
call; this module handles the request around them: tools (with deferred loading),
tool choice, thinking and effort, output format, sampling and limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.catalog import ModelEntry
from chalicelib.conversation.request import Conversation, Reasoning
from chalicelib.errors import InvalidRequest
from chalicelib.protocols import params
from chalicelib.protocols.anthropic.messages import translate
from chalicelib.protocols.anthropic.values import cache_control, effort_of, only
from chalicelib.protocols.params import IGNORED, PASSED, REFUSED_UNLESS_DEFAULT

#: Policy per ``POST /v1/messages`` body parameter; docs/anthropic-compatibility.md mirrors it.
MESSAGES_PARAMETERS: dict[str, str] = {
    "model": PASSED,
    "messages": PASSED,
    "max_tokens": PASSED,
    "system": PASSED,
    "stream": PASSED,
    "stop_sequences": PASSED,
    "temperature": PASSED,
    "top_p": PASSED,
    "top_k": PASSED,
    "tools": PASSED,
    "tool_choice": PASSED,
    "thinking": PASSED,
    "output_config": PASSED,
    "cache_control": PASSED,
    "metadata": IGNORED,
    "context_management": IGNORED,
    "service_tier": IGNORED,
    "speed": REFUSED_UNLESS_DEFAULT,
    "inference_geo": REFUSED_UNLESS_DEFAULT,
    "container": REFUSED_UNLESS_DEFAULT,
    "mcp_servers": REFUSED_UNLESS_DEFAULT,
    "diagnostics": REFUSED_UNLESS_DEFAULT,
    "compaction": REFUSED_UNLESS_DEFAULT,
    "fallbacks": REFUSED_UNLESS_DEFAULT,
    "fallback_credit_token": REFUSED_UNLESS_DEFAULT,
    "billing_policy": REFUSED_UNLESS_DEFAULT,
    "thread": REFUSED_UNLESS_DEFAULT,
}
#: ``POST /v1/messages/count_tokens`` takes the request without the generation settings.
COUNT_TOKENS_PARAMETERS: dict[str, str] = {
    name: MESSAGES_PARAMETERS[name]
    for name in (
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "cache_control",
        "context_management",
        "speed",
        "mcp_servers",
    )
}

# The value each refused parameter may still carry, because it asks for nothing.
_HARMLESS_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "speed": ("standard",),
    "mcp_servers": ([],),
    "fallbacks": ([],),
}
_WHY_REFUSED = {
    "speed": "fast mode is an Anthropic API feature; Bedrock serves the standard speed.",
    "inference_geo": "the catalog decides where Bedrock runs the model (its inference profile).",
    "container": "code execution containers are not available on Bedrock.",
    "mcp_servers": "the MCP connector is not available; connect MCP servers in your client.",
    "diagnostics": "prompt-cache diagnostics are not available on Bedrock.",
    "compaction": "server-side compaction is not available on Bedrock.",
    "fallbacks": "model fallbacks are not available; choose one catalog model.",
    "fallback_credit_token": "model fallbacks are not available; choose one catalog model.",
    "billing_policy": "billing is per pennyworth key.",
    "thread": "server-side threads are not available; send the whole conversation.",
}
#: The Messages API versions spoken (``anthropic-version``); an absent header means the first.
API_VERSIONS = ("2023-06-01", "2026-10-21")
#: Sampling parameters that version 2026-10-21 removed (Anthropic answers a 400 even at their defaults).
REMOVED_IN_2026_10_21 = ("temperature", "top_p", "top_k")
#: Anthropic's default effort for adaptive thinking.
DEFAULT_EFFORT = "high"
MIN_THINKING_BUDGET = 1024
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BETA = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_MAX_BETAS = 64
_TOOL_FIELDS = {"name", "description", "input_schema", "cache_control", "type", "strict", "defer_loading"}
_TOOL_IGNORED_FIELDS = {"input_examples", "eager_input_streaming", "allowed_callers"}


@dataclass(frozen=True)
class MessagesRequest:
    """A validated Messages request: the conversation, and what the answer must say about it."""

    conversation: Conversation
    #: The tools offered after deferred-loading was applied (names), for logging.
    tool_names: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)


def parse_messages_request(
    body: Mapping[str, Any], *, betas: tuple[str, ...] = (), version: str = API_VERSIONS[0]
) -> MessagesRequest:
    """Validate a ``POST /v1/messages`` body (of API ``version``) and translate it into a ``Conversation``.

    Raises
    ------
    InvalidRequest
        A parameter that is missing, malformed, out of range, unknown or refused; the message names it.
    """
    present = _checked(body, MESSAGES_PARAMETERS)
    if version != API_VERSIONS[0]:
        for name in REMOVED_IN_2026_10_21:
            if name in body:
                raise InvalidRequest(
                    f"{name}: removed in anthropic-version {version}; send anthropic-version: 2023-06-01 to use it.",
                    param=name,
                )
    max_tokens = present.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required", param="max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise InvalidRequest("max_tokens: Input should be a valid integer", param="max_tokens")
    if max_tokens < 1:
        raise InvalidRequest(
            "max_tokens: must be at least 1 (a max_tokens of 0 only warms Anthropic's prompt cache; "
            "Bedrock has no such call).",
            param="max_tokens",
        )
    stream = present.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean", param="stream")
    conversation = _conversation(present, max_tokens=max_tokens, stream=stream, betas=betas)
    for name, upper in (("temperature", 1.0), ("top_p", 1.0)):
        if name in present:
            conversation = conversation.but(**{name: _number(present[name], name, 0.0, upper)})
    if "top_k" in present:
        conversation = conversation.but(top_k=_integer(present["top_k"], "top_k", minimum=1))
    if "stop_sequences" in present:
        conversation = conversation.but(stop=_stop_sequences(present["stop_sequences"]))
    if "metadata" in present:
        conversation = conversation.but(user=_metadata_user(present["metadata"]))
    if "context_management" in present:
        _context_management(present["context_management"])
    if "service_tier" in present and present["service_tier"] not in ("auto", "standard_only"):
        raise InvalidRequest("service_tier: Input should be 'auto' or 'standard_only'", param="service_tier")
    return MessagesRequest(conversation, tool_names=tuple(t["function"]["name"] for t in conversation.tools or ()))


def parse_count_tokens_request(body: Mapping[str, Any], *, betas: tuple[str, ...] = ()) -> Conversation:
    """Validate a ``POST /v1/messages/count_tokens`` body; the conversation whose prompt is counted.

    Raises
    ------
    InvalidRequest
        As ``parse_messages_request``.
    """
    present = _checked(body, COUNT_TOKENS_PARAMETERS)
    return _conversation(present, max_tokens=None, stream=False, betas=betas)


def _checked(body: Mapping[str, Any], policies: Mapping[str, str]) -> dict[str, Any]:
    return params.checked(
        body,
        policies,
        harmless=_HARMLESS_DEFAULTS,
        why=_WHY_REFUSED,
        unknown="{name}: Extra inputs are not permitted",
        refused="{name}: not supported by this gateway: {why}",
    )


def _conversation(
    present: Mapping[str, Any], *, max_tokens: int | None, stream: bool, betas: tuple[str, ...]
) -> Conversation:
    model = present.get("model")
    if model is None:
        raise InvalidRequest("model: Field required", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Input should be a non-empty string", param="model")
    translated = translate(present)
    messages = translated.messages
    if "cache_control" in present:
        _mark_last_block(messages, cache_control(present["cache_control"], "cache_control"))
    tools = _tools(present["tools"], referenced=translated.referenced_tools) if "tools" in present else None
    tool_choice, parallel = _tool_choice(present["tool_choice"], tools) if "tool_choice" in present else (None, None)
    if not tools and tool_choice != "none":
        tool_choice, parallel = None, None
    reasoning, effort_source = _reasoning(present, max_tokens, translated.turn_effort)
    annotations: dict[str, Any] = {"reasoning_param": "thinking"}
    if betas:
        annotations["anthropic_betas"] = ",".join(betas)
    if effort_source and effort_source != "default":
        annotations["effort_from"] = effort_source
    return Conversation(
        model=model,
        messages=messages,
        stream=stream,
        max_tokens=max_tokens,
        tools=tools or None,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=_response_format(present.get("output_config")),
        reasoning=reasoning,
        has_images=translated.has_images,
        annotations=annotations,
    )


# -- headers, and the model's limits ---------------------------------------------------------


def api_version(headers: Mapping[str, str]) -> str:
    """The ``anthropic-version`` asked for (2023-06-01 when absent).

    Raises
    ------
    InvalidRequest
        A version this gateway does not speak (2023-01-01's streaming format, or one Anthropic never published).
    """
    version = next((v.strip() for k, v in headers.items() if k.lower() == "anthropic-version"), None)
    if version is None:
        return API_VERSIONS[0]
    if version not in API_VERSIONS:
        raise InvalidRequest(
            f"anthropic-version: {version[:40]!r} is not supported; this gateway speaks {' and '.join(API_VERSIONS)}.",
            param="anthropic-version",
        )
    return version


def beta_names(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The ``anthropic-beta`` values (comma-separated, repeatable).

    Raises
    ------
    InvalidRequest
        A malformed beta list.
    """
    raw = ",".join(v for k, v in headers.items() if k.lower() == "anthropic-beta")
    betas = tuple(dict.fromkeys(b.strip() for b in raw.split(",") if b.strip()))
    if len(betas) > _MAX_BETAS or not all(_BETA.match(b) for b in betas):
        raise InvalidRequest("anthropic-beta: expected a comma-separated list of beta names.", param="anthropic-beta")
    return betas


def fit_to_model(conversation: Conversation, model: ModelEntry) -> Conversation:
    """The conversation fitted to the catalog model, the way Anthropic clients need it.

    Claude Code asks for thinking and 32,000 output tokens whatever the model: a model
    that cannot think answers without thinking, and ``max_tokens`` is lowered to the
    model's maximum (a maximum, so nothing the model could produce is lost).
    """
    if conversation.reasoning is not None and not model.supports_reasoning:
        conversation = conversation.but(reasoning=None)
    limit = model.max_output_tokens
    if limit and conversation.max_tokens and conversation.max_tokens > limit:
        conversation = conversation.but(max_tokens=limit)
        budget = conversation.reasoning.budget_tokens if conversation.reasoning else None
        if budget and budget >= limit:
            if limit - 1 < MIN_THINKING_BUDGET:
                raise InvalidRequest(
                    f"The model '{conversation.model}' produces at most {limit} tokens, too few for thinking.",
                    param="thinking",
                )
            conversation = conversation.but(reasoning=Reasoning(budget_tokens=limit - 1))
    return conversation


# -- tools --------------------------------------------------------------------------------------


def _tools(value: Any, *, referenced: frozenset[str]) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidRequest("tools: Input should be a valid list", param="tools")
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, tool in enumerate(value):
        at = f"tools.{i}"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"{at}: Input should be an object", param=at)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"{at}: the server tool '{kind}' is not supported: Bedrock runs no tools; define a custom tool "
                "(name, description, input_schema) and run it in your client.",
                param=at,
                code="unsupported_tool",
            )
        for name in tool:
            if name not in _TOOL_FIELDS | _TOOL_IGNORED_FIELDS:
                raise InvalidRequest(f"{at}.{name}: Extra inputs are not permitted", param=f"{at}.{name}")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidRequest(
                f"{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'", param=f"{at}.name"
            )
        if name in names:
            raise InvalidRequest(f"{at}.name: tool names must be unique ('{name}' is used twice)", param=f"{at}.name")
        names.add(name)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidRequest(
                f'{at}.input_schema: Input should be a JSON Schema object with "type": "object"',
                param=f"{at}.input_schema",
            )
        deferred = tool.get("defer_loading", False)
        if not isinstance(deferred, bool):
            raise InvalidRequest(f"{at}.defer_loading: Input should be a valid boolean", param=f"{at}.defer_loading")
        if deferred and name not in referenced:
            # Anthropic keeps a deferred tool out of the model's context until a tool_reference
            # (or a call) loads it; Bedrock has no such thing, so the gateway does the same.
            continue
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        elif tool.get("description") is not None:
            raise InvalidRequest(f"{at}.description: Input should be a valid string", param=f"{at}.description")
        entry: dict[str, Any] = {"type": "function", "function": function}
        if "cache_control" in tool:
            entry["cache_control"] = cache_control(tool["cache_control"], f"{at}.cache_control")
        tools.append(entry)
    return tools


def _tool_choice(value: Any, tools: list[dict[str, Any]] | None) -> tuple[Any, bool | None]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", param="tool_choice")
    allowed = {"type", "disable_parallel_tool_use"} | ({"name"} if kind == "tool" else set())
    only(value, allowed, "tool_choice")
    disable = value.get("disable_parallel_tool_use", False)
    if not isinstance(disable, bool):
        raise InvalidRequest(
            "tool_choice.disable_parallel_tool_use: Input should be a valid boolean",
            param="tool_choice.disable_parallel_tool_use",
        )
    parallel = False if disable else None
    if kind == "none":
        return "none", None
    if kind == "auto":
        return "auto", parallel
    if not tools:
        raise InvalidRequest(f"tool_choice: '{kind}' needs at least one tool in 'tools'", param="tool_choice")
    if kind == "any":
        return "required", parallel
    name = value.get("name")
    if not isinstance(name, str) or name not in {t["function"]["name"] for t in tools}:
        raise InvalidRequest(f"tool_choice.name: the tool {name!r} is not in 'tools'", param="tool_choice.name")
    return {"type": "function", "function": {"name": name}}, parallel


# -- thinking, effort, output format ------------------------------------------------------------


def _reasoning(
    present: Mapping[str, Any], max_tokens: int | None, turn_effort: str | None
) -> tuple[Reasoning | None, str | None]:
    thinking = present.get("thinking")
    config = present.get("output_config")
    if config is not None and (not isinstance(config, dict) or set(config) - {"effort", "format"}):
        raise InvalidRequest("output_config: only 'effort' and 'format' are supported", param="output_config")
    effort = (
        effort_of(config["effort"], "output_config.effort") if config and config.get("effort") is not None else None
    )
    source = "output_config" if effort else None
    if turn_effort is not None:
        effort, source = turn_effort, "system_message"
    if thinking is None:
        return None, None
    if not isinstance(thinking, dict):
        raise InvalidRequest("thinking: Input should be an object", param="thinking")
    kind = thinking.get("type")
    if kind == "disabled":
        only(thinking, {"type"}, "thinking")
        return None, None
    if kind == "adaptive":
        only(thinking, {"type", "display"}, "thinking")
        _display(thinking)
        return Reasoning(effort=effort or DEFAULT_EFFORT), source or "default"
    if kind != "enabled":
        raise InvalidRequest(
            "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'", param="thinking.type"
        )
    only(thinking, {"type", "budget_tokens", "display"}, "thinking")
    _display(thinking)
    budget = _integer(thinking.get("budget_tokens"), "thinking.budget_tokens", minimum=MIN_THINKING_BUDGET)
    if max_tokens is not None and budget >= max_tokens:
        raise InvalidRequest(
            f"max_tokens must be greater than thinking.budget_tokens (got {max_tokens} and {budget}).",
            param="thinking.budget_tokens",
        )
    return Reasoning(budget_tokens=budget), None


def _display(thinking: Mapping[str, Any]) -> None:
    if thinking.get("display") not in (None, "summarized", "omitted"):
        raise InvalidRequest("thinking.display: Input should be 'summarized' or 'omitted'", param="thinking.display")


def _response_format(config: Any) -> dict[str, Any] | None:
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequest(
            'output_config.format: Input should be {"type": "json_schema", "schema": {...}}',
            param="output_config.format",
        )
    only(fmt, {"type", "schema"}, "output_config.format")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}


# -- small validators ---------------------------------------------------------------------------


def _mark_last_block(messages: list[dict[str, Any]], control: dict[str, Any]) -> None:
    """Top-level ``cache_control``: a cache point after the last block of the request."""
    last = messages[-1]
    content = last.get("content")
    if last["role"] == "tool":
        last["cache_control"] = control
    elif isinstance(content, str):
        last["content"] = [{"type": "text", "text": content, "cache_control": control}]
    elif content:
        content[-1] = {**content[-1], "cache_control": control}


def _stop_sequences(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() for s in value):
        raise InvalidRequest(
            "stop_sequences: Input should be a list of strings that are not blank", param="stop_sequences"
        )
    return tuple(value)


def _metadata_user(value: Any) -> str | None:
    if not isinstance(value, dict):
        raise InvalidRequest("metadata: Input should be an object", param="metadata")
    only(value, {"user_id"}, "metadata")
    user = value.get("user_id")
    if user is not None and (not isinstance(user, str) or len(user) > 512):
        raise InvalidRequest(
            "metadata.user_id: Input should be a string of at most 512 characters", param="metadata.user_id"
        )
    return user


def _context_management(value: Any) -> None:
    edits = value.get("edits", []) if isinstance(value, dict) else None
    if not isinstance(edits, list) or not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in edits):
        raise InvalidRequest(
            'context_management: Input should be {"edits": [{"type": ...}, ...]}', param="context_management"
        )


def _integer(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name}: Input should be a valid integer", param=name)
    if value < minimum:
        raise InvalidRequest(f"{name}: Input should be greater than or equal to {minimum}", param=name)
    return value


def _number(value: Any, name: str, lower: float, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"{name}: Input should be a valid number", param=name)
    if not lower <= value <= upper:
        raise InvalidRequest(f"{name}: Input should be between {lower:g} and {upper:g} (got {value})", param=name)
    return float(value)
