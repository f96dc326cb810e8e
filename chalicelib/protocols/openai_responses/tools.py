"""Responses tools and ``tool_choice`` → the core's function tools, and Bedrock's names back.

Bedrock runs one kind of tool: a function with a JSON Schema. The Responses
API has three kinds a client runs itself, and all three become one:

* ``function``: as is.
* ``custom`` (freeform: the model writes raw text, e.g. Codex's ``apply_patch``):
  a function taking one string, ``input``; its ``format`` (a grammar) cannot be
  enforced by Bedrock, so its definition is appended to the description.
* ``namespace``: its functions and custom tools, each named
  ``<namespace>__<name>`` for Bedrock (Bedrock names are flat).

``Toolset.ref`` turns the name Bedrock calls back into the kind, name and
namespace the client declared. Every other tool type runs on OpenAI's servers
(web search, file search, code interpreter, computer use, image generation,
remote MCP, hosted shells). A client that only *offers* one (Codex offers web
search by default) gets its answer without it: the tool is dropped, and named in
the answer's ``x-pennyworth-dropped-tools`` header. A request that *forces* one
(``tool_choice``), or nests one in a namespace, is refused with a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import InvalidRequest

#: Joins a namespace and a tool name into one Bedrock tool name.
NAMESPACE_SEPARATOR = "__"
_BEDROCK_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_EMPTY_SCHEMA = {"type": "object", "properties": {}}
#: What Bedrock is offered for a custom (freeform) tool.
CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as raw text."}},
    "required": ["input"],
    "additionalProperties": False,
}
#: Tool types that run on OpenAI's side; each gets a 400 naming it.
HOSTED_TOOLS = {
    "web_search": "web search",
    "web_search_2025_08_26": "web search",
    "web_search_preview": "web search",
    "web_search_preview_2025_03_11": "web search",
    "file_search": "file search over OpenAI vector stores",
    "code_interpreter": "OpenAI's code interpreter",
    "computer": "computer use",
    "computer_use_preview": "computer use",
    "image_generation": "image generation",
    "mcp": "remote MCP servers called by OpenAI",
    "local_shell": "the local_shell tool (a Codex-model-only tool)",
    "shell": "OpenAI's hosted shell",
    "apply_patch": "the built-in apply_patch tool",
    "tool_search": "tool search",
    "programmatic_tool_calling": "programmatic tool calling",
}


@dataclass(frozen=True)
class ToolRef:
    """One client tool as Bedrock knows it: its kind (``function``/``custom``), name and namespace."""

    kind: str
    name: str
    namespace: str | None = None

    @property
    def bedrock_name(self) -> str:
        return bedrock_name(self.name, self.namespace)


def bedrock_name(name: str, namespace: str | None) -> str:
    """The flat Bedrock name of a (possibly namespaced) tool."""
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


@dataclass
class Toolset:
    """The tools a request offers, in the core's dialect, and how to name their calls back."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    refs: dict[str, ToolRef] = field(default_factory=dict)
    #: The request's ``tools`` as a Response repeats them (a function's ``strict`` and ``parameters`` always set).
    echo: list[dict[str, Any]] = field(default_factory=list)
    #: The hosted tools the request offered, by type, in order: dropped (Bedrock cannot run them).
    dropped: list[str] = field(default_factory=list)

    def ref(self, name: str) -> ToolRef:
        """The client's tool behind the name Bedrock called (an unknown name stays a function)."""
        return self.refs.get(name) or ToolRef("function", name)

    def add(self, value: Any, where: str) -> None:
        """Add a ``tools`` array (the request's, or an ``additional_tools`` item's)."""
        if not isinstance(value, list):
            raise InvalidRequest(f"'{where}' must be an array of tools.", param=where)
        for number, tool in enumerate(value):
            self._add_tool(tool, f"{where}[{number}]", namespace=None)
        if where == "tools":
            self.echo = [_echo(tool) for tool in value]

    def _add_tool(self, tool: Any, at: str, *, namespace: str | None) -> None:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "namespace" and namespace is None:
            self._add_namespace(tool, at)
        elif kind in ("function", "custom"):
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"{at}.name must be a non-empty string.", param=f"{at}.name")
            ref = ToolRef(kind, name, namespace)
            flat = ref.bedrock_name
            if not _BEDROCK_NAME.match(flat):
                shown = f"'{namespace}{NAMESPACE_SEPARATOR}{name}' (namespace and name)" if namespace else f"'{name}'"
                raise InvalidRequest(
                    f"{at}.name: Bedrock tool names must match ^[a-zA-Z0-9_-]{{1,64}}$; {shown} does not.",
                    param=f"{at}.name",
                )
            if flat in self.refs:
                raise InvalidRequest(f"{at}: the tool name '{flat}' is used twice.", param=f"{at}.name")
            self.refs[flat] = ref
            self.tools.append(_function_tool(tool, flat, at) if kind == "function" else _custom_tool(tool, flat, at))
        elif isinstance(kind, str) and kind in HOSTED_TOOLS and namespace is None:  # a list is unhashable
            # Offered, not forced: the model answers without it (what a model without the tool does).
            if kind not in self.dropped:
                self.dropped.append(kind)
        elif isinstance(kind, str) and kind in HOSTED_TOOLS:
            raise InvalidRequest(
                f"{at}: tools of type '{kind}' are not supported: {HOSTED_TOOLS[kind]} runs on OpenAI's servers, "
                "which this gateway does not call; Bedrock models can only call function and custom tools.",
                param=f"{at}.type",
                code="unsupported_tool",
            )
        else:
            allowed = "'function' or 'custom'" if namespace else "'function', 'custom' or 'namespace'"
            raise InvalidRequest(f"{at}.type must be {allowed}, got {kind!r}.", param=f"{at}.type")

    def _add_namespace(self, tool: Mapping[str, Any], at: str) -> None:
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{at}.name must be a non-empty string.", param=f"{at}.name")
        members = tool.get("tools")
        if not isinstance(members, list) or not members:
            raise InvalidRequest(f"{at}.tools must be a non-empty array.", param=f"{at}.tools")
        for number, member in enumerate(members):
            self._add_tool(member, f"{at}.tools[{number}]", namespace=name)


def _echo(tool: dict[str, Any]) -> dict[str, Any]:
    if tool["type"] == "function":
        return {**tool, "parameters": tool.get("parameters"), "strict": tool.get("strict")}
    if tool["type"] == "namespace":
        return {**tool, "tools": [_echo(member) for member in tool["tools"]]}
    return dict(tool)


def _description(tool: Mapping[str, Any], at: str) -> str | None:
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"{at}.description must be a string.", param=f"{at}.description")
    return description or None


def _function_tool(tool: Mapping[str, Any], flat: str, at: str) -> dict[str, Any]:
    parameters = tool.get("parameters")
    if parameters is None or parameters == {}:
        parameters = dict(_EMPTY_SCHEMA)
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"{at}.parameters must be a JSON Schema object.", param=f"{at}.parameters")
    if "strict" in tool and tool["strict"] is not None and not isinstance(tool["strict"], bool):
        raise InvalidRequest(f"{at}.strict must be a boolean.", param=f"{at}.strict")
    function: dict[str, Any] = {"name": flat, "parameters": parameters}
    description = _description(tool, at)
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _custom_tool(tool: Mapping[str, Any], flat: str, at: str) -> dict[str, Any]:
    description = _description(tool, at) or ""
    form = tool.get("format")
    if form is not None:
        kind = form.get("type") if isinstance(form, dict) else None
        if kind == "grammar":
            syntax, definition = form.get("syntax"), form.get("definition")
            if syntax not in ("lark", "regex") or not isinstance(definition, str):
                raise InvalidRequest(
                    f"{at}.format: a grammar needs 'syntax' ('lark' or 'regex') and a 'definition' string.",
                    param=f"{at}.format",
                )
            # Bedrock cannot constrain generation to a grammar: the model is told it instead.
            description += f"\n\nThe input must match this {syntax} grammar:\n{definition}"
        elif kind != "text":
            raise InvalidRequest(f"{at}.format.type must be 'text' or 'grammar'.", param=f"{at}.format")
    function: dict[str, Any] = {"name": flat, "parameters": CUSTOM_INPUT_SCHEMA}
    if description.strip():
        function["description"] = description.strip()
    return {"type": "function", "function": function}


def parse_tool_choice(value: Any, toolset: Toolset) -> tuple[str | dict[str, Any], list[dict[str, Any]] | None]:
    """``tool_choice`` → the core's tool choice, and the narrowed tool list for ``allowed_tools``.

    Raises
    ------
    InvalidRequest
        A malformed choice, a tool that is not offered, or a hosted tool type.
    """
    if value in ("none", "auto", "required"):
        if value == "required" and not toolset.tools:
            hosted = f" (the hosted tools it offers, {', '.join(toolset.dropped)}, run on OpenAI's servers)"
            raise InvalidRequest(
                f"tool_choice 'required' needs function or custom 'tools'{hosted if toolset.dropped else ''}.",
                param="tool_choice",
                code="unsupported_tool" if toolset.dropped else None,
            )
        return value, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("function", "custom"):
        return {"type": "function", "function": {"name": _find(toolset, kind, value.get("name"))}}, None
    if kind == "allowed_tools":
        mode, allowed = value.get("mode"), value.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list) or not allowed:
            raise InvalidRequest(
                "tool_choice allowed_tools needs 'mode' ('auto' or 'required') and a non-empty 'tools' array.",
                param="tool_choice",
            )
        names = set()
        for number, entry in enumerate(allowed):
            entry_kind = entry.get("type") if isinstance(entry, dict) else None
            if entry_kind not in ("function", "custom"):
                raise InvalidRequest(
                    f"tool_choice.tools[{number}] must name a function or custom tool.",
                    param=f"tool_choice.tools[{number}]",
                )
            names.add(_find(toolset, entry_kind, entry.get("name"), param=f"tool_choice.tools[{number}]"))
        return mode, [t for t in toolset.tools if t["function"]["name"] in names]
    if isinstance(kind, str) and (kind in HOSTED_TOOLS or kind.startswith(("web_search", "file_search", "mcp"))):
        raise InvalidRequest(
            f"tool_choice: '{kind}' is a tool OpenAI runs, which this gateway does not call; Bedrock models can "
            "only call function and custom tools (a hosted tool merely offered in 'tools' is dropped).",
            param="tool_choice",
            code="unsupported_tool",
        )
    raise InvalidRequest(
        "'tool_choice' must be 'none', 'auto', 'required', {\"type\": \"function\", \"name\": ...}, "
        '{"type": "custom", "name": ...} or {"type": "allowed_tools", ...}.',
        param="tool_choice",
    )


def _find(toolset: Toolset, kind: str, name: Any, *, param: str = "tool_choice") -> str:
    """The Bedrock name of the offered tool of that kind and name (a top-level one first)."""
    matches = [flat for flat, ref in toolset.refs.items() if ref.kind == kind and ref.name == name]
    top_level = [flat for flat in matches if toolset.refs[flat].namespace is None]
    if top_level:
        return top_level[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvalidRequest(f"{param} names the {kind} tool {name!r}, which is not in 'tools'.", param=param)
    raise InvalidRequest(f"{param}: {name!r} is in several namespaces; it cannot be forced by name.", param=param)
