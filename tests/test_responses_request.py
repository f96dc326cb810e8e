"""Parsing ``CreateResponse`` bodies into the core's ``Conversation``: every parameter, item and tool kind."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.errors import InvalidRequest
from chalicelib.protocols.openai_responses.items import TOKEN_PREFIX, reasoning_token
from chalicelib.protocols.openai_responses.parse import CLIENT_EXTENSIONS, RESPONSES_PARAMETERS, parse_responses_request
from chalicelib.protocols.openai_responses.tools import CUSTOM_INPUT_SCHEMA
from tests.openai_schema import assert_valid, components

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


def body(**extra):
    return {"model": "nova-micro", "input": "hi", **extra}


def parse(**extra):
    return parse_responses_request(body(**extra))


def test_a_string_input_is_one_user_message() -> None:
    request = parse()
    conversation = request.conversation
    assert conversation.model == "nova-micro" and not conversation.stream
    assert conversation.messages == [{"role": "user", "content": "hi"}]
    assert conversation.tools is None and conversation.reasoning is None and conversation.max_tokens is None


def properties(schema: dict) -> set[str]:
    """Every property name of a schema, through ``$ref`` and nested ``allOf``."""
    if "$ref" in schema:
        schema = components()["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= properties(part)
    return names


def test_every_createresponse_parameter_has_a_policy() -> None:
    names = properties({"$ref": "#/components/schemas/CreateResponse"})
    assert names - set(RESPONSES_PARAMETERS) == set(), "unclassified OpenAI parameters"
    assert set(RESPONSES_PARAMETERS) - names == set(), "policies for parameters OpenAI does not have"
    assert not set(CLIENT_EXTENSIONS) & names


def test_the_request_bodies_the_tests_send_are_valid_createresponse_bodies() -> None:
    assert_valid("CreateResponse", body(tools=[{**WEATHER, "strict": False}], tool_choice="auto"))
    assert_valid("CreateResponse", body(text={"format": {"type": "json_schema", "name": "x", "schema": {}}}))


def test_instructions_and_system_and_developer_messages_merge_into_one_leading_system_prompt() -> None:
    request = parse(
        instructions="Be brief.",
        input=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev rules."}]},
            {"role": "user", "content": "Question?"},
            {"role": "system", "content": "Late system note."},
        ],
    )
    assert request.conversation.messages == [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "Dev rules."},
                {"type": "text", "text": "Late system note."},
            ],
        },
        {"role": "user", "content": [{"type": "text", "text": "Question?"}]},
    ]
    assert request.echo["instructions"] == "Be brief."


def test_a_codex_tool_turn_becomes_an_assistant_turn_with_tool_calls_and_a_tool_message() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "run echo"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Running.", "annotations": []}],
        },
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather", "arguments": '{"a":1}'},
        {
            "type": "function_call",
            "id": "fc_2",
            "call_id": "c2",
            "name": "spawn",
            "namespace": "agents",
            "arguments": "",
        },
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "ok"}, {"type": "input_image", "image_url": PNG}],
        },
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "done"},
    ]
    request = parse(input=items, tools=[WEATHER])
    user, assistant, first, second, patch, patched = request.conversation.messages
    assert assistant == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Running."}],
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"a":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "agents__spawn", "arguments": "{}"}},
        ],
    }
    assert first == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert second["content"][1]["type"] == "image_url" and request.conversation.has_images
    assert patch["content"] is None
    assert json.loads(patch["tool_calls"][0]["function"]["arguments"]) == {"input": "*** Begin Patch"}
    assert patched == {"role": "tool", "tool_call_id": "c3", "content": "done"}


def test_tools_of_every_client_run_kind_become_bedrock_functions() -> None:
    request = parse(
        tools=[
            {**WEATHER, "description": "Weather.", "strict": True},
            {
                "type": "custom",
                "name": "apply_patch",
                "description": "Patch files.",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"},
            },
            {
                "type": "namespace",
                "name": "multi_agent_v1",
                "description": "Agents.",
                "tools": [{"type": "function", "name": "spawn_agent", "parameters": None}],
            },
        ]
    )
    weather, patch, spawn = request.conversation.tools
    assert weather == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {}},
            "description": "Weather.",
        },
    }
    assert patch["function"]["parameters"] == CUSTOM_INPUT_SCHEMA
    assert (
        patch["function"]["description"].startswith("Patch files.") and "start: x" in patch["function"]["description"]
    )
    assert spawn["function"]["name"] == "multi_agent_v1__spawn_agent"
    assert request.toolset.ref("multi_agent_v1__spawn_agent").namespace == "multi_agent_v1"
    assert request.toolset.ref("apply_patch").kind == "custom"
    assert request.toolset.ref("hallucinated").kind == "function"
    # The Response echoes the tools with a function's strict and parameters always present.
    assert request.echo["tools"][2]["tools"][0] == {
        "type": "function",
        "name": "spawn_agent",
        "parameters": None,
        "strict": None,
    }


def test_additional_tools_items_add_tools() -> None:
    request = parse(
        input=[{"type": "additional_tools", "role": "developer", "tools": [WEATHER]}, {"role": "user", "content": "x"}]
    )
    assert [t["function"]["name"] for t in request.conversation.tools] == ["get_weather"]
    assert request.echo["tools"] == []


@pytest.mark.parametrize(
    ("choice", "expected", "tool_names"),
    [
        ("auto", "auto", ["get_weather", "apply_patch"]),
        ("none", "none", ["get_weather", "apply_patch"]),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "custom", "name": "apply_patch"}, {"type": "function", "function": {"name": "apply_patch"}}, None),
        (
            {"type": "allowed_tools", "mode": "required", "tools": [{"type": "custom", "name": "apply_patch"}]},
            "required",
            ["apply_patch"],
        ),
    ],
)
def test_tool_choice(choice, expected, tool_names) -> None:
    request = parse(tools=[WEATHER, {"type": "custom", "name": "apply_patch"}], tool_choice=choice)
    assert request.conversation.tool_choice == expected
    if tool_names is not None:
        assert [t["function"]["name"] for t in request.conversation.tools] == tool_names


def test_reasoning_text_and_limits_are_passed() -> None:
    request = parse(
        reasoning={"effort": "low", "summary": "auto", "context": "all_turns"},
        text={
            "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True},
            "verbosity": "low",
        },
        max_output_tokens=500,
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        include=["reasoning.encrypted_content"],
        stream=True,
        stream_options={"include_obfuscation": False},
    )
    conversation = request.conversation
    assert conversation.reasoning.effort == "low" and conversation.thinks
    assert conversation.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }
    assert (conversation.max_tokens, conversation.temperature, conversation.top_p) == (500, 0.2, 0.9)
    assert conversation.parallel_tool_calls is False and conversation.stream
    assert request.encrypted_reasoning and request.reasoning_summary
    assert conversation.annotations["max_tokens_param"] == "max_output_tokens"


def test_codexs_requests_parse(tmp_path) -> None:
    # The shape Codex sends (captured from codex exec 0.171): summary-only reasoning, client_metadata, store false.
    request = parse(
        input=[
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Reply with pong"}]},
        ],
        tools=[{**WEATHER, "strict": False}],
        tool_choice="auto",
        parallel_tool_calls=True,
        reasoning={},
        store=False,
        stream=True,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="01a22fc0-be15-7a10-9b32-5424981f8554",
        client_metadata={"session_id": "s"},
        text={"verbosity": "low"},
    )
    assert request.conversation.reasoning is None and not request.reasoning_summary
    assert request.conversation.messages[0]["role"] == "system"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"model": None}, "model"),
        ({"input": None}, "input"),
        ({"input": ""}, "input"),
        ({"input": 7}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "system", "content": "only a system prompt"}]}, "input"),
        ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "input[0].content[0].type"),
        ({"input": [{"role": "user", "content": []}]}, "input[0].content"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "web_search_call", "id": "w"}]}, "input[0].type"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output"),
        (
            {"input": [{"type": "reasoning", "summary": [], "encrypted_content": TOKEN_PREFIX + "%%%"}]},
            "input[0].encrypted_content",
        ),
        ({"input": [42]}, "input[0]"),
        ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"tools": [{"type": "web_search"}], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]}, "tools[0].tools[0].type"),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        (
            {"tools": [{"type": "namespace", "name": "n", "description": "", "tools": [{"type": "namespace"}]}]},
            "tools[0].tools[0].type",
        ),
        (
            {"tools": [{"type": "namespace", "name": "n" * 60, "description": "", "tools": [WEATHER]}]},
            "tools[0].tools[0].name",
        ),
        (
            {
                "tools": [
                    {"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "ebnf", "definition": "x"}}
                ]
            },
            "tools[0].format",
        ),
        ({"tools": "all"}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}},
            "tool_choice.tools[0]",
        ),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
        ({"moderation": {"mode": "on"}}, "moderation"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": 1.5}, "max_output_tokens"),
        ({"max_output_tokens": 2**70}, "max_output_tokens"),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": True}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"reasoning": {"effort": "xhigh"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "verbose"}}, "reasoning.summary"),
        ({"reasoning": {"mode": "pro"}}, "reasoning.mode"),
        ({"reasoning": {"budget": 5}}, "reasoning.budget"),
        ({"reasoning": "high"}, "reasoning"),
        ({"text": {"format": {"type": "xml"}}}, "text.format"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"text": {"format": {"type": "json_object"}}}, "input"),
        ({"text": {"verbosity": "loud"}}, "text.verbosity"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"include": ["everything"]}, "include[0]"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"user": 5}, "user"),
        ({"client_metadata": "x"}, "client_metadata"),
        ({"store": "no"}, "store"),
        ({"wizardry": True}, "wizardry"),
    ],
)
def test_bad_requests_get_a_400_naming_the_parameter(extra, param) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_responses_request({k: v for k, v in body(**extra).items() if k not in extra or extra[k] is not None})
    assert raised.value.param == param, raised.value.message
    assert raised.value.status_code == 400


def test_refusals_explain_themselves() -> None:
    with pytest.raises(InvalidRequest, match="stateless") as raised:
        parse(previous_response_id="resp_1")
    assert raised.value.code == "unsupported_parameter"
    with pytest.raises(InvalidRequest, match="a tool OpenAI runs") as raised:
        parse(tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert raised.value.code == "unsupported_tool"


@pytest.mark.parametrize(
    "hosted",
    [
        {"type": "web_search"},
        {"type": "web_search", "external_web_access": False},
        {"type": "web_search_preview"},
        {"type": "file_search", "vector_store_ids": []},
        {"type": "local_shell"},
        {"type": "image_generation"},
    ],
)
def test_hosted_tools_a_client_only_offers_are_dropped_and_named(hosted: dict) -> None:
    # Codex offers web search by default: Bedrock cannot run it, and the model simply goes without
    request = parse(tools=[WEATHER, hosted])
    assert [t["function"]["name"] for t in request.conversation.tools] == ["get_weather"]
    assert request.dropped_tools == (hosted["type"],)
    assert request.conversation.annotations["dropped_tools"] == [hosted["type"]]
    only_hosted = parse(tools=[hosted], tool_choice="auto")
    assert only_hosted.conversation.tools is None and only_hosted.dropped_tools == (hosted["type"],)


def test_harmless_defaults_of_refused_parameters_are_accepted() -> None:
    parse(background=False, truncation="disabled", top_logprobs=0, previous_response_id=None, conversation=None)


def test_json_object_needs_the_word_json_somewhere() -> None:
    request = parse(instructions="Answer in JSON.", text={"format": {"type": "json_object"}})
    assert request.conversation.response_format == {"type": "json_object"}


def test_reasoning_tokens_of_other_sources_are_dropped_and_ours_are_checked() -> None:
    theirs = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-openai-blob"}
    ours = {
        "type": "reasoning",
        "id": "rs_2",
        "summary": [],
        "encrypted_content": reasoning_token("nova-micro", {"type": "redacted_thinking", "data": "xyz"}),
    }
    reply = {"role": "assistant", "content": "ok"}
    messages = parse(
        input=[{"role": "user", "content": "a"}, theirs, ours, reply, {"role": "user", "content": "b"}]
    ).conversation.messages
    assert messages[1]["thinking_blocks"] == [{"type": "redacted_thinking", "data": "xyz"}]
    forged = reasoning_token("nova-micro", {"type": "thinking", "thinking": "x"})  # no signature: not ours to replay
    with pytest.raises(InvalidRequest):
        parse(
            input=[{"role": "user", "content": "a"}, {"type": "reasoning", "summary": [], "encrypted_content": forged}]
        )


@pytest.mark.parametrize(
    "text",
    ["\ud800 lone surrogate", "ctrl \x00\x1b chars", "🙂" * 1000, "a" * 100_000],
)
def test_odd_text_passes_through_untouched(text) -> None:
    request = parse(input=[{"role": "user", "content": [{"type": "input_text", "text": text}]}])
    assert request.conversation.messages[0]["content"][0]["text"] == text


def test_deeply_nested_tool_schemas_are_passed_as_given() -> None:
    schema: dict = {"type": "object", "properties": {}}
    node = schema
    for _ in range(200):
        node["properties"]["x"] = {"type": "object", "properties": {}}
        node = node["properties"]["x"]
    request = parse(tools=[{"type": "function", "name": "deep", "parameters": schema}])
    assert request.conversation.tools[0]["function"]["parameters"] is schema
