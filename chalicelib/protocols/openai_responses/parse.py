"""Parse and validate a ``POST /v1/responses`` body (OpenAI's ``CreateResponse``) into a ``Conversation``.

Every parameter of ``CreateResponse`` has a policy in ``RESPONSES_PARAMETERS``
(mirrored by docs/openai-compatibility.md, checked against OpenAI's spec by
tests): *passed*, *ignored* (validated, changes nothing), or *refused* with a
400 naming it unless it carries its harmless default. Unknown parameters are
refused, as OpenAI does. The gateway is stateless: nothing is stored, so what
needs a stored response (``previous_response_id``, ``conversation``, ``prompt``,
``background``) is refused and clients send the whole conversation in ``input``
with ``store: false`` (as Codex does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.conversation.request import REASONING_EFFORTS, Conversation, Reasoning
from chalicelib.errors import InvalidRequest
from chalicelib.protocols import params
from chalicelib.protocols.openai_responses.items import parse_input
from chalicelib.protocols.openai_responses.tools import Toolset, parse_tool_choice
from chalicelib.protocols.params import IGNORED, MAX_OUTPUT_TOKENS, PASSED, REFUSED_UNLESS_DEFAULT

#: Policy per ``CreateResponse`` parameter; the compatibility doc mirrors this table.
RESPONSES_PARAMETERS: dict[str, str] = {
    "model": PASSED,
    "input": PASSED,
    "instructions": PASSED,
    "stream": PASSED,
    "max_output_tokens": PASSED,
    "temperature": PASSED,
    "top_p": PASSED,
    "tools": PASSED,
    "tool_choice": PASSED,
    "parallel_tool_calls": PASSED,
    "text": PASSED,
    "reasoning": PASSED,
    "include": PASSED,
    "metadata": IGNORED,
    "user": IGNORED,
    "safety_identifier": IGNORED,
    "prompt_cache_key": IGNORED,
    "prompt_cache_retention": IGNORED,
    "prompt_cache_options": IGNORED,
    "service_tier": IGNORED,
    "store": IGNORED,
    "stream_options": IGNORED,
    "max_tool_calls": IGNORED,
    "previous_response_id": REFUSED_UNLESS_DEFAULT,
    "conversation": REFUSED_UNLESS_DEFAULT,
    "prompt": REFUSED_UNLESS_DEFAULT,
    "background": REFUSED_UNLESS_DEFAULT,
    "context_management": REFUSED_UNLESS_DEFAULT,
    "truncation": REFUSED_UNLESS_DEFAULT,
    "top_logprobs": REFUSED_UNLESS_DEFAULT,
    "moderation": REFUSED_UNLESS_DEFAULT,
}
#: Sent by real clients though not in OpenAI's spec (Codex: ``client_metadata``); ignored.
CLIENT_EXTENSIONS: dict[str, str] = {"client_metadata": IGNORED}

_HARMLESS_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "background": (False,),
    "truncation": ("disabled",),
    "top_logprobs": (0,),
}
_WHY_REFUSED = {
    "previous_response_id": "this gateway is stateless and stores no responses; send the whole conversation in "
    "'input' (with store: false, reasoning items keep their encrypted_content)",
    "conversation": "this gateway is stateless and keeps no conversations; send the whole conversation in 'input'",
    "prompt": "stored prompt templates live at OpenAI; send the prompt in 'instructions' and 'input'",
    "background": "background responses need stored responses; this gateway is stateless",
    "context_management": "server-side context management (compaction) is not available",
    "truncation": "the gateway does not drop input to fit the context window; only 'disabled' is supported",
    "top_logprobs": "Bedrock does not return log probabilities",
    "moderation": "OpenAI moderation is not available; use Bedrock Guardrails on the account instead",
}
#: ``include`` values: what can be included, and what is accepted because it concerns nothing we produce.
_INCLUDE_PASSED = ("reasoning.encrypted_content",)
_INCLUDE_IGNORED = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
)
_SUMMARIES = ("auto", "concise", "detailed")


@dataclass(frozen=True)
class ResponsesRequest:
    """A validated Responses request: the conversation, how to render its answer, what to echo."""

    conversation: Conversation
    toolset: Toolset
    #: The request's settings a ``Response`` object repeats (instructions, tools, metadata, …).
    echo: dict[str, Any] = field(default_factory=dict)
    #: ``include`` asks for ``reasoning.encrypted_content`` (the replayable thinking block).
    encrypted_reasoning: bool = False
    #: ``reasoning.summary`` is set: reasoning text arrives as the item's summary, else as its content.
    reasoning_summary: bool = False

    @property
    def dropped_tools(self) -> tuple[str, ...]:
        """The hosted tools the request offered (by type): dropped, since Bedrock cannot run them."""
        return tuple(self.toolset.dropped)


def parse_responses_request(body: Mapping[str, Any]) -> ResponsesRequest:
    """Validate a ``CreateResponse`` body and translate it for the core.

    Raises
    ------
    InvalidRequest
        Any parameter that is missing, malformed, out of range, unknown or unsupported; ``param`` names it.
    """
    present = params.checked(
        body,
        RESPONSES_PARAMETERS,
        harmless=_HARMLESS_DEFAULTS,
        why=_WHY_REFUSED,
        refused=params.OPENAI_REFUSED + ".",
        also=CLIENT_EXTENSIONS,
    )

    model = present.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("You must provide a model parameter.", param="model")
    instructions = present.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", param="instructions")
    toolset = Toolset()
    if "tools" in present:
        toolset.add(present["tools"], "tools")
    messages, has_images = parse_input(present.get("input"), instructions, model=model, toolset=toolset)
    stream = params.boolean(present, "stream", False)
    if "stream_options" in present:
        if not isinstance(present["stream_options"], dict):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is true.", param="stream_options"
            )
        params.boolean(present["stream_options"], "include_obfuscation", True, prefix="stream_options.")

    tools = toolset.tools or None
    tool_choice: Any = None
    if "tool_choice" in present:
        tool_choice, narrowed = parse_tool_choice(present["tool_choice"], toolset)
        if narrowed is not None:
            tools = narrowed
    parallel = params.boolean(present, "parallel_tool_calls", True) if "parallel_tool_calls" in present else None
    max_tokens = None
    if "max_output_tokens" in present:
        max_tokens = params.integer(present, "max_output_tokens", minimum=16, maximum=MAX_OUTPUT_TOKENS)
    sampling = {name: params.number(present, name, 0.0, 1.0) for name in ("temperature", "top_p") if name in present}
    response_format, text_echo = _text(present.get("text"), messages)
    effort, summary, reasoning_echo = _reasoning(present.get("reasoning"))
    encrypted = _include(present.get("include"))
    params.strings(present, "user", "safety_identifier", "prompt_cache_key", "service_tier", "prompt_cache_retention")
    for name in ("prompt_cache_options", "client_metadata"):
        if name in present and not isinstance(present[name], dict):
            raise InvalidRequest(f"'{name}' must be an object.", param=name)
    if "store" in present:
        params.boolean(present, "store", True)
    if "max_tool_calls" in present:
        params.integer(present, "max_tool_calls", minimum=1)
    params.metadata(present)

    conversation = Conversation(
        model=model,
        messages=messages,
        stream=stream,
        max_tokens=max_tokens,
        temperature=sampling.get("temperature"),
        top_p=sampling.get("top_p"),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        reasoning=Reasoning(effort=effort) if effort is not None else None,
        user=present.get("user") or present.get("safety_identifier"),
        has_images=has_images,
        annotations={
            "reasoning_param": "reasoning.effort",
            "max_tokens_param": "max_output_tokens",
            **({"dropped_tools": list(toolset.dropped)} if toolset.dropped else {}),
        },
    )
    echo = {
        "instructions": instructions,
        "metadata": present.get("metadata", {}),
        "tools": toolset.echo,
        "tool_choice": present.get("tool_choice", "auto"),
        "parallel_tool_calls": present.get("parallel_tool_calls", True),
        "temperature": sampling.get("temperature"),
        "top_p": sampling.get("top_p"),
        "max_output_tokens": max_tokens,
        "text": text_echo,
        "reasoning": reasoning_echo,
        "truncation": "disabled",
        "store": False,
        "background": False,
        "previous_response_id": None,
        "service_tier": "default",
    }
    for name in ("user", "safety_identifier", "prompt_cache_key"):
        if name in present:
            echo[name] = present[name]
    return ResponsesRequest(
        conversation, toolset, echo=echo, encrypted_reasoning=encrypted, reasoning_summary=summary is not None
    )


def _text(value: Any, messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``text`` → the core's response format, and the ``text`` a Response echoes."""
    if value is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(value, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    for name in value:
        if name not in ("format", "verbosity"):
            raise InvalidRequest(f"Unrecognized argument 'text.{name}'.", param=f"text.{name}")
    if value.get("verbosity") not in (None, "low", "medium", "high"):
        raise InvalidRequest("'text.verbosity' must be 'low', 'medium' or 'high'.", param="text.verbosity")
    form = value.get("format") or {"type": "text"}
    kind = form.get("type") if isinstance(form, dict) else None
    echo = {"format": form, **({"verbosity": value["verbosity"]} if value.get("verbosity") else {})}
    if kind == "text":
        return None, echo
    if kind == "json_object":
        if not params.mentions_json(messages):
            # OpenAI's own rule: JSON mode without asking for JSON makes models ramble.
            raise InvalidRequest(
                "'input' must contain the word 'json' in some form, to use 'text.format' of type 'json_object'.",
                param="input",
            )
        return {"type": "json_object"}, echo
    if kind == "json_schema":
        name, schema = form.get("name"), form.get("schema")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("text.format.name is required for a json_schema format.", param="text.format.name")
        if not isinstance(schema, dict):
            raise InvalidRequest("text.format.schema must be a JSON Schema object.", param="text.format.schema")
        strict = form.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise InvalidRequest("text.format.strict must be a boolean.", param="text.format.strict")
        spec: dict[str, Any] = {"name": name, "schema": schema, "strict": bool(strict)}
        if isinstance(form.get("description"), str):
            spec["description"] = form["description"]
        return {"type": "json_schema", "json_schema": spec}, echo
    raise InvalidRequest("text.format.type must be 'text', 'json_object' or 'json_schema'.", param="text.format")


def _reasoning(value: Any) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """``reasoning`` → (effort for the core, summary wanted, what a Response echoes)."""
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise InvalidRequest("'reasoning' must be an object.", param="reasoning")
    for name in value:
        if name not in ("effort", "summary", "generate_summary", "context", "mode"):
            raise InvalidRequest(f"Unrecognized argument 'reasoning.{name}'.", param=f"reasoning.{name}")
    effort = value.get("effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning.effort' must be one of {list(REASONING_EFFORTS)} on this gateway, got {effort!r}.",
            param="reasoning.effort",
            code="unsupported_value" if effort in ("xhigh", "max") else None,
        )
    summary = value.get("summary", value.get("generate_summary"))
    for name in ("summary", "generate_summary"):
        if value.get(name) not in (None, *_SUMMARIES):
            raise InvalidRequest(f"'reasoning.{name}' must be one of {list(_SUMMARIES)}.", param=f"reasoning.{name}")
    if value.get("context") not in (None, "auto", "current_turn", "all_turns"):
        raise InvalidRequest(
            "'reasoning.context' must be 'auto', 'current_turn' or 'all_turns'.", param="reasoning.context"
        )
    if value.get("mode") not in (None, "standard"):
        raise InvalidRequest(
            "'reasoning.mode': only 'standard' is supported.", param="reasoning.mode", code="unsupported_value"
        )
    return effort, summary, {"effort": effort, "summary": summary}


def _include(value: Any) -> bool:
    """``include`` validated; whether it asks for the replayable reasoning (``encrypted_content``)."""
    if value is None:
        return False
    if not isinstance(value, list):
        raise InvalidRequest("'include' must be an array.", param="include")
    for number, entry in enumerate(value):
        if entry == "message.output_text.logprobs":
            raise InvalidRequest(
                "Unsupported value in 'include': Bedrock does not return log probabilities.",
                param=f"include[{number}]",
                code="unsupported_value",
            )
        if entry not in _INCLUDE_PASSED + _INCLUDE_IGNORED:
            raise InvalidRequest(f"include[{number}]: unknown value {entry!r}.", param=f"include[{number}]")
    return "reasoning.encrypted_content" in value
