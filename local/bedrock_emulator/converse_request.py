"""Validation of Converse / ConverseStream request bodies: inference, tools, reasoning, output format."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .content import (
    START_WITH_USER,
    LastTurn,
    Walker,
    check_alternation,
    check_tool_pairing,
    constraint,
    require_dict,
    walk_messages,
    walk_system,
)
from .errors import validation
from .guardrails import GuardrailCall, parse_guardrail_config
from .models import ModelSpec
from .tokens import count_tokens

MIN_THINKING_BUDGET = 1024
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolSpec:
    """One tool from toolConfig.tools."""

    name: str
    description: str
    schema: object


@dataclass
class ConverseRequest:
    """A validated Converse request."""

    model: ModelSpec
    max_tokens: int
    stop_sequences: list[str]
    tools: list[ToolSpec]
    tool_choice: str | None
    tool_choice_name: str | None
    thinking: bool
    output_schema: object | None
    response_field_paths: list[str]
    input_tokens: int
    user_texts: list[str]
    last_user: LastTurn
    #: The guardrail the request asks for, and the characters it assesses in the prompt.
    guardrail: GuardrailCall | None = None
    guarded_characters: int = 0
    #: The TTLs of the request's cache points ("5m" unless a cachePoint says "1h").
    cache_ttls: frozenset[str] = frozenset()


def _inference(config: object, model: ModelSpec) -> tuple[int, list[str]]:
    """maxTokens (default: the model's maximum) and stopSequences, range-checked."""
    inference = require_dict(config if config is not None else {}, "inferenceConfig")
    max_tokens = inference.get("maxTokens", model.max_output_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise constraint("inferenceConfig.maxTokens", max_tokens, "Member must have value greater than or equal to 1")
    if max_tokens > model.max_output_tokens:
        raise validation(
            f"The maximum tokens you requested exceeds the model limit of {model.max_output_tokens}. "
            f"Try again with a maximum tokens value that is lower than {model.max_output_tokens}."
        )
    for key in ("temperature", "topP"):
        value = inference.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise constraint(f"inferenceConfig.{key}", value, "Member must have value between 0 and 1 (inclusive)")
    stops = inference.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise validation("inferenceConfig.stopSequences must be a list of non-empty strings.")
    return max_tokens, [str(s) for s in stops]


def _tool_config(walker: Walker, config: object, model: ModelSpec) -> tuple[list[ToolSpec], str | None, str | None]:
    """Tools (counted as input tokens) and the tool choice, checked against the model."""
    if config is None:
        return [], None, None
    cfg = require_dict(config, "toolConfig")
    if not model.tools:
        raise validation(f"This model ({model.model_id}) doesn't support tool use.")
    raw_tools = cfg.get("tools")
    if not isinstance(raw_tools, list) or not raw_tools:
        raise validation("The toolConfig.tools field must contain at least one tool.")
    tools: list[ToolSpec] = []
    for i, raw in enumerate(raw_tools):
        entry = require_dict(raw, f"toolConfig.tools.{i}")
        if "cachePoint" in entry:
            continue
        spec = require_dict(entry.get("toolSpec"), f"toolConfig.tools.{i}.toolSpec")
        name = spec.get("name")
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
            raise constraint(
                f"toolConfig.tools.{i}.member.toolSpec.name",
                name,
                "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ (1-64 characters)",
            )
        if any(t.name == name for t in tools):
            raise validation(f"The toolConfig.tools field contains the tool name {name} more than once.")
        schema_holder = require_dict(spec.get("inputSchema"), f"toolConfig.tools.{i}.toolSpec.inputSchema")
        schema = schema_holder.get("json")
        if not isinstance(schema, Mapping):
            raise validation(f"The inputSchema.json of tool {name} must be a JSON schema object.")
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise validation(f"The description of tool {name} must be a string.")
        walker.tokens += count_tokens(name) + count_tokens(description)
        walker.json_value(schema)
        tools.append(ToolSpec(name=name, description=description, schema=schema))
    choice_raw = cfg.get("toolChoice")
    if choice_raw is None:
        return tools, None, None
    choice = require_dict(choice_raw, "toolConfig.toolChoice")
    if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
        raise validation("toolConfig.toolChoice must have exactly one of auto, any or tool.")
    kind = next(iter(choice))
    if kind != "auto" and not model.forced_tool_choice:
        raise validation(
            f"This model doesn't support the toolConfig.toolChoice.{kind} field. "
            f"Remove toolConfig.toolChoice.{kind} and try again."
        )
    if kind != "tool":
        return tools, kind, None
    wanted = require_dict(choice["tool"], "toolConfig.toolChoice.tool").get("name")
    if not any(t.name == wanted for t in tools):
        raise validation(
            f"The tool {wanted} named in toolConfig.toolChoice.tool is not defined in toolConfig.tools "
            f"(defined: {', '.join(t.name for t in tools)})."
        )
    return tools, kind, str(wanted)


def _reasoning_requested(fields: object, model: ModelSpec, max_tokens: int) -> bool:
    """Whether additionalModelRequestFields turns reasoning on; checks it fits the model."""
    if fields is None:
        return False
    extra = require_dict(fields, "additionalModelRequestFields")
    thinking, reasoning_config = extra.get("thinking"), extra.get("reasoningConfig")
    if thinking is not None and model.reasoning != "anthropic":
        raise validation(
            "The model returned the following errors: Malformed input request: #: extraneous key [thinking] "
            f"is not permitted ({model.model_id} has no extended thinking)."
        )
    if reasoning_config is not None and model.reasoning != "nova":
        raise validation(
            "The model returned the following errors: Malformed input request: #: extraneous key [reasoningConfig] "
            f"is not permitted ({model.model_id} has no reasoningConfig)."
        )
    if thinking is not None:
        cfg = require_dict(thinking, "additionalModelRequestFields.thinking")
        kind = cfg.get("type")
        if kind == "adaptive":
            return True
        if kind != "enabled":
            return False
        budget = cfg.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
            raise validation(
                "The model returned the following errors: thinking.enabled.budget_tokens: "
                f"Input should be greater than or equal to {MIN_THINKING_BUDGET}"
            )
        if max_tokens <= budget:
            raise validation(
                "The model returned the following errors: `max_tokens` must be greater than `thinking.budget_tokens`."
            )
        return True
    if reasoning_config is not None:
        return require_dict(reasoning_config, "additionalModelRequestFields.reasoningConfig").get("type") == "enabled"
    return False


def _output_schema(walker: Walker, config: object, model: ModelSpec) -> object | None:
    """The JSON schema of outputConfig.textFormat (native structured output), if any."""
    if config is None:
        return None
    text_format = require_dict(config, "outputConfig").get("textFormat")
    if text_format is None:
        return None
    fmt = require_dict(text_format, "outputConfig.textFormat")
    if not model.structured_output:
        raise validation(f"This model ({model.model_id}) doesn't support the outputConfig.textFormat field.")
    if fmt.get("type") != "json_schema":
        raise validation("outputConfig.textFormat.type must be json_schema.")
    structure = require_dict(fmt.get("structure"), "outputConfig.textFormat.structure")
    json_schema = require_dict(structure.get("jsonSchema"), "outputConfig.textFormat.structure.jsonSchema")
    raw = json_schema.get("schema")
    try:
        schema = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        schema = None
    if not isinstance(schema, Mapping):
        raise validation(
            "outputConfig.textFormat.structure.jsonSchema.schema must be a JSON schema object encoded as a string."
        )
    walker.tokens += count_tokens(str(raw))
    return schema


def parse_converse(body: Mapping[str, object], model: ModelSpec) -> ConverseRequest:
    """Validate a Converse body like Bedrock does and count its input tokens."""
    if model.kind != "chat":
        raise validation(f"The model {model.model_id} doesn't support the Converse API; use InvokeModel.")
    messages = body.get("messages")
    if messages is None:
        raise validation(
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: "
            "Member must not be null"
        )
    if not isinstance(messages, list):
        raise validation("The messages field must be a list of Message objects.")
    if not messages:
        raise validation(START_WITH_USER)
    check_alternation(messages)
    typed = [require_dict(m, f"messages.{i}") for i, m in enumerate(messages)]
    walker = Walker(model)
    max_tokens, stops = _inference(body.get("inferenceConfig"), model)
    walk_system(walker, body.get("system"))
    last = walk_messages(walker, typed)
    tools, choice, choice_name = _tool_config(walker, body.get("toolConfig"), model)
    if walker.uses_tools and not tools:
        raise validation("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    check_tool_pairing(typed)
    thinking = _reasoning_requested(body.get("additionalModelRequestFields"), model, max_tokens)
    if thinking and model.reasoning == "anthropic" and choice in ("any", "tool"):
        raise validation(
            "The model returned the following errors: Thinking may not be enabled when tool_choice forces tool use."
        )
    output_schema = _output_schema(walker, body.get("outputConfig"), model)
    paths = body.get("additionalModelResponseFieldPaths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise validation("additionalModelResponseFieldPaths must be a list of JSON pointers such as /stop_sequence.")
    if walker.tokens > model.context_window:
        raise validation(
            f"Input is too long for requested model. The request has {walker.tokens} input tokens; "
            f"{model.model_id} accepts at most {model.context_window}."
        )
    guardrail = parse_guardrail_config(body.get("guardrailConfig"))
    assessed = walker.guarded_texts or walker.user_texts
    return ConverseRequest(
        guardrail=guardrail,
        guarded_characters=sum(len(text) for text in assessed),
        model=model,
        max_tokens=max_tokens,
        stop_sequences=stops,
        tools=tools,
        tool_choice=choice,
        tool_choice_name=choice_name,
        thinking=thinking,
        output_schema=output_schema,
        response_field_paths=[str(p) for p in paths],
        input_tokens=walker.tokens,
        user_texts=walker.user_texts,
        last_user=last,
        cache_ttls=frozenset(_cache_ttls(body)),
    )


_CACHE_TTLS = ("5m", "1h")


def _cache_ttls(value: object) -> list[str]:
    """The TTL of every cachePoint in the request (system, messages, tools), checked like Bedrock's enum."""
    found: list[str] = []
    if isinstance(value, Mapping):
        point = value.get("cachePoint")
        if isinstance(point, Mapping):
            if point.get("type") != "default":
                raise validation("cachePoint.type must be 'default'.")
            ttl = point.get("ttl", "5m")
            if ttl not in _CACHE_TTLS:
                raise constraint("cachePoint.ttl", ttl, "Member must satisfy enum value set: [5m, 1h]")
            found.append(str(ttl))
        for inner in value.values():
            found += _cache_ttls(inner)
    elif isinstance(value, list):
        for inner in value:
            found += _cache_ttls(inner)
    return found
