"""The official openai SDK's Responses API against the running local stack, as a user's code would call it."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import openai
import pytest

from tests.integration import stack_data
from tests.openai_schema import assert_valid, assert_valid_stream_event

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def fresh_key(stack):
    """A new key (so its ledger holds only this test's calls), its client and its ledger entries."""
    key_id, plaintext = stack_data.new_key(stack, "responses-sdk")
    client = openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=plaintext, max_retries=0, timeout=60)
    return client, lambda count=None: stack_data.entries(stack, key_id, count)


def dumped(model) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


def test_responses_create_is_answered_and_billed(fresh_key) -> None:
    client, entries = fresh_key
    raw = client.responses.with_raw_response.create(model="nova-micro", input="Hello, pennyworth!")
    response = raw.parse()
    assert response.output_text == 'You said: "Hello, pennyworth!"'
    assert response.status == "completed" and response.usage.total_tokens > 0
    assert_valid("Response", dumped(response))
    [entry] = entries(1)
    assert (
        Decimal(raw.headers["x-pennyworth-cost-usd"])
        == entry["cost"]
        == Decimal(response.usage.model_extra["cost_usd"])
    )


def test_streaming_arrives_as_generated(fresh_key) -> None:
    client, entries = fresh_key
    started = time.monotonic()
    arrivals: list[tuple[float, object]] = []
    stream = client.responses.create(
        model="nova-micro", input="go #emulator:tokens=60 #emulator:chunk_delay=0.05", stream=True
    )
    for event in stream:
        arrivals.append((time.monotonic() - started, event))
        assert_valid_stream_event(dumped(event))
    deltas = [at for at, event in arrivals if event.type == "response.output_text.delta"]
    assert len(deltas) >= 10
    # Bedrock (the emulator) paces chunks 50 ms apart: they must reach the SDK spread out, not in one burst.
    assert deltas[-1] - deltas[0] > 0.5
    assert deltas[0] < arrivals[-1][0] - 0.5
    final = arrivals[-1][1]
    assert final.type == "response.completed"
    [entry] = entries(1)
    assert Decimal(final.response.usage.model_extra["cost_usd"]) == entry["cost"]


def test_the_stream_helper_accumulates_the_final_response(fresh_key) -> None:
    client, _ = fresh_key
    with client.responses.stream(model="claude-haiku-4-5", input="Stream me a reply") as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text == 'You said: "Stream me a reply"'


def test_a_function_tool_round_trip(fresh_key) -> None:
    client, entries = fresh_key
    question = [{"role": "user", "content": "What is the weather in Lisbon? get_weather"}]
    first = client.responses.create(model="claude-haiku-4-5", input=question, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"]
    follow_up = [
        *question,
        *[dumped(item) for item in first.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22 degrees, clear"},
    ]
    second = client.responses.create(model="claude-haiku-4-5", input=follow_up, tools=[WEATHER])
    assert "22 degrees, clear" in second.output_text
    assert len(entries(2)) == 2


def test_structured_output_parses_into_the_sdks_model(fresh_key) -> None:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    client, _ = fresh_key
    parsed = client.responses.parse(model="claude-haiku-4-5", input="Ada Lovelace, 36", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)


def test_reasoning_with_a_summary(fresh_key) -> None:
    client, _ = fresh_key
    response = client.responses.create(
        model="claude-haiku-4-5",
        input="Think first, then answer",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        max_output_tokens=3000,
    )
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].summary[0].text and reasoning[0].encrypted_content
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    assert response.output_text == 'You said: "Think first, then answer"'


@pytest.mark.parametrize(
    ("kwargs", "exception"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError),
        ({"input": "go #emulator:throttle"}, openai.RateLimitError),
        ({"previous_response_id": "resp_123"}, openai.BadRequestError),
        ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, openai.BadRequestError),
        ({"temperature": 1.7}, openai.BadRequestError),
        ({"input": "x #emulator:error"}, openai.InternalServerError),
    ],
)
def test_errors_raise_the_matching_sdk_exception(fresh_key, kwargs, exception) -> None:
    client, entries = fresh_key
    with pytest.raises(exception) as caught:
        client.responses.create(**{"model": "nova-micro", "input": "hi", **kwargs})
    assert_valid("ErrorResponse", caught.value.response.json())
    assert entries() == []


def test_a_failure_mid_stream_is_a_response_failed_event(fresh_key) -> None:
    client, entries = fresh_key
    events = list(
        client.responses.create(model="nova-micro", input="x #emulator:tokens=80 #emulator:stream_error", stream=True)
    )
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error"
    [entry] = entries(1)
    assert entry["status"] == "partial"
