"""Fallbacks, retries and guardrails through the whole core: policy → gateway → emulator → bill.

The emulator's directives aim faults at one target (``#emulator:only=us``: the ``us.`` profile of
Claude Haiku 4.5, whose catalog fallback is its ``global.`` profile), so the fallback can be seen
answering; every answer is billed at the prices of the model that served it.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter, worst_case_cost
from chalicelib.catalog.catalog import Catalog, load_catalog
from chalicelib.catalog.prices import guardrail_prices
from chalicelib.conversation.events import Completion
from chalicelib.gateway import Gateway, Resilience, UpstreamConfig
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.protocols.openai_chat.parse import parse_chat_request
from chalicelib.protocols.openai_chat.render import render_completion, stream_chunks
from chalicelib.service.service import ModelService, Turn
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.guardrails import guardrail_cost
from chalicelib.shared.money import compute_cost
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID
from tests.conftest import TABLE_NAMES
from tests.openai_schema import assert_valid

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
HAIKU = CATALOG.resolve("claude-haiku-4-5")
GLOBAL = CATALOG.resolve("claude-haiku-4-5-global")
THROTTLE_US = "#emulator:throttle #emulator:only=us"


@pytest.fixture
def world(aws: Any, emulator_url: str) -> dict[str, Any]:
    ledger = Ledger(aws.Table(TABLE_NAMES["UsageTable"]))
    meter = Meter(ledger)
    gateway = Gateway(
        UpstreamConfig(region="us-east-1", endpoint_url=emulator_url, timeout_seconds=5),
        # No sleeping between retries here: the rules are tested in test_resilience.py.
        resilience=Resilience(sleep=lambda _: None),
    )
    return {"meter": meter, "ledger": ledger, "gateway": gateway, "keys": KeyStore(aws.Table(TABLE_NAMES["KeysTable"]))}


def key(world: dict[str, Any], **fields: Any) -> KeyRecord:
    return world["keys"].create(owner_sub="owner-1", name="fallbacks", **fields)[0]


def converse(world: dict[str, Any], record: KeyRecord, catalog: Catalog = CATALOG, **body: Any) -> Turn:
    body.setdefault("model", "claude-haiku-4-5")
    request = parse_chat_request(body)
    service = ModelService(catalog=lambda: catalog, gateway=world["gateway"], meter=world["meter"])
    return service.converse(record, request.conversation, deadline=time.time() + 60, surface="test")


def say(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_a_throttled_model_answers_from_its_fallback_named_and_billed_at_its_price(world: dict[str, Any]) -> None:
    # GIVEN Bedrock throttles the US profile of Claude Haiku 4.5
    turn = converse(world, key(world), messages=say(f"Hello {THROTTLE_US}"))
    # WHEN a caller asks for claude-haiku-4-5 THEN the global profile answers, and the answer says so
    completion = Completion.of(turn)
    assert completion.error is None and completion.text.startswith("You said:")
    assert turn.headers["x-pennyworth-served-by"] == (
        "claude-haiku-4-5-global (global.anthropic.claude-haiku-4-5-20251001-v1:0 in us-east-1)"
    )
    # AND the bill names both models and uses the global profile's (lower) prices
    entry = completion.entry
    assert entry is not None
    assert (entry.model, entry.requested_model) == ("claude-haiku-4-5-global", "claude-haiku-4-5")
    assert entry.served_by == "bedrock/converse/global.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert entry.served_region == "us-east-1"
    assert entry.cost == compute_cost(GLOBAL.prices, entry.usage) != compute_cost(HAIKU.prices, entry.usage)
    assert GLOBAL.prices.input < HAIKU.prices.input
    # AND the ledger holds it that way
    [stored] = world["ledger"].entries_for_key(entry.key_id)
    assert (stored["model"], stored["requested_model"]) == ("claude-haiku-4-5-global", "claude-haiku-4-5")
    assert (
        stored["served_by"] == entry.served_by
        and stored["served_region"] == "us-east-1"
        and Decimal(stored["cost"]) == entry.cost
    )


def test_the_streams_final_usage_names_who_served(world: dict[str, Any]) -> None:
    body = {"model": "claude-haiku-4-5", "messages": say(f"Hi {THROTTLE_US}"), "stream": True}
    body["stream_options"] = {"include_usage": True}
    request = parse_chat_request(body)
    service = ModelService(catalog=lambda: CATALOG, gateway=world["gateway"], meter=world["meter"])
    turn = service.converse(key(world), request.conversation, deadline=time.time() + 60, surface="test")
    ids = {"id": "chatcmpl-test", "created": 1_700_000_000, "model": "claude-haiku-4-5"}
    text = b"".join(stream_chunks(turn, request, ids)).decode()
    chunks = [json.loads(block[len("data: ") :]) for block in text.split("\n\n") if block and block != "data: [DONE]"]
    usage = chunks[-1]["usage"]
    assert_valid("CreateChatCompletionStreamResponse", chunks[-1])
    assert usage["served_model"] == "claude-haiku-4-5-global"
    assert usage["served_by"] == "bedrock/converse/global.anthropic.claude-haiku-4-5-20251001-v1:0@us-east-1"


def test_without_fallback_the_caller_gets_the_models_own_answer_and_name(world: dict[str, Any]) -> None:
    turn = converse(world, key(world), messages=say("Hello"))
    entry = Completion.of(turn).entry
    assert entry is not None and entry.model == "claude-haiku-4-5" and not entry.fell_back
    assert entry.served_by == "bedrock/converse/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert entry.cost == compute_cost(HAIKU.prices, entry.usage)


def test_a_key_that_needs_the_exact_model_gets_the_throttle(world: dict[str, Any]) -> None:
    with pytest.raises(errors.RateLimited) as caught:
        converse(world, key(world, model_fallback="none"), messages=say(f"Hello {THROTTLE_US}"))
    assert caught.value.headers["Retry-After"].isdigit()


def test_another_model_serves_only_keys_allowed_to_use_it(world: dict[str, Any], tmp_path: Any) -> None:
    # GIVEN nova-micro falls back to nova-lite, another model
    catalog = catalog_with(tmp_path, {"nova-micro": {"fallbacks": ["nova-lite"]}})
    throttle = "#emulator:throttle #emulator:only=us.amazon.nova-micro-v1:0"
    # THEN a key allowed both is served by nova-lite
    both = key(world, allowed_models=["nova-micro", "nova-lite"])
    entry = Completion.of(converse(world, both, catalog, model="nova-micro", messages=say(f"Hi {throttle}"))).entry
    assert entry is not None and entry.model == "nova-lite" and entry.requested_model == "nova-micro"
    # AND a key allowed only nova-micro, or one limited to the same model, gets the throttle
    for record in (key(world, allowed_models=["nova-micro"]), key(world, model_fallback="same_model")):
        with pytest.raises(errors.RateLimited):
            converse(world, record, catalog, model="nova-micro", messages=say(f"Hi {throttle}"))


def test_another_geography_of_the_same_model_needs_no_allowlist_entry(world: dict[str, Any]) -> None:
    record = key(world, allowed_models=["claude-haiku-4-5"], model_fallback="same_model")
    entry = Completion.of(converse(world, record, messages=say(f"Hello {THROTTLE_US}"))).entry
    assert entry is not None and entry.model == "claude-haiku-4-5-global"


def test_a_fallback_that_cannot_do_what_the_request_needs_is_not_tried(world: dict[str, Any], tmp_path: Any) -> None:
    # nova-micro reads no images: a vision request to nova-lite never falls back to it
    catalog = catalog_with(tmp_path, {"nova-lite": {"fallbacks": ["nova-micro"]}})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "#emulator:throttle"}, image]}]
    with pytest.raises(errors.RateLimited):
        converse(world, key(world), catalog, model="nova-lite", messages=messages)


def test_a_connection_reset_before_any_byte_is_retried_never_after(world: dict[str, Any]) -> None:
    # GIVEN the US profile resets every connection: retried, then its fallback answers (issue 20, item 18)
    turn = converse(world, key(world), messages=say("Hi #emulator:reset #emulator:only=us"), stream=True)
    completion = Completion.of(turn)
    assert completion.error is None and completion.entry is not None
    assert completion.entry.model == "claude-haiku-4-5-global"
    # AND a connection cut after the answer began is not retried: the caller has part of it, it is billed
    cut = converse(
        world, key(world), model="nova-micro", messages=say("one two three four five six #emulator:cut"), stream=True
    )
    broken = Completion.of(cut)
    assert broken.error is not None and broken.text and broken.entry is not None and broken.entry.status == "partial"


def test_an_upstream_5xx_is_retried_on_the_same_target(world: dict[str, Any], emulator_url: str) -> None:
    from local.bedrock_emulator import start_emulator

    # A seeded emulator fails half the attempts at random: with seed 3, 9 of the 12 calls' attempts fail,
    # never three in a row (a call's three attempts), so each call is answered, some after retries
    server, url = start_emulator(seed=3)
    try:
        gateway = Gateway(UpstreamConfig("us-east-1", url, 5), resilience=Resilience(sleep=lambda _: None))
        service = ModelService(catalog=lambda: CATALOG, gateway=gateway, meter=world["meter"])
        record = key(world)
        outcomes = []
        for _ in range(12):
            request = parse_chat_request(
                {"model": "nova-micro", "messages": say("Hi #emulator:unavailable #emulator:rate=0.5")}
            )
            turn = service.converse(record, request.conversation, deadline=time.time() + 60, surface="test")
            outcomes.append(Completion.of(turn).error is None)
        attempts = [r for r in server.requests if r.operation.startswith("converse")]
    finally:
        server.shutdown()
    assert all(outcomes) and len(attempts) == 12 + 9


def test_a_guardrail_on_the_key_blocks_the_prompt_and_is_billed(world: dict[str, Any]) -> None:
    # GIVEN a key with the demo guardrail WHEN the guardrail blocks the prompt
    record = key(world, guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    turn = converse(world, record, model="nova-micro", messages=say("Tell me #emulator:guardrail=input"))
    completion = Completion.of(turn)
    # THEN the answer ends as OpenAI's content filter does, with the guardrail's message
    assert completion.finish_reason == "content_filter" and "blocked by the guardrail" in completion.text
    rendered = render_completion(completion, {"id": "x", "created": 1, "model": "nova-micro"})
    assert rendered["choices"][0]["finish_reason"] == "content_filter"
    # AND the model was not called (no tokens), but the guardrail's text units are billed at their prices
    entry = completion.entry
    assert entry is not None and entry.usage.input_tokens == entry.usage.output_tokens == 0
    assert entry.guardrail_units == {
        "contentPolicyUnits": 1,
        "topicPolicyUnits": 1,
        "wordPolicyUnits": 1,
        "sensitiveInformationPolicyUnits": 1,
    }
    assert entry.guardrail_usd == guardrail_cost(guardrail_prices("us-east-1"), entry.guardrail_units) > 0
    assert entry.cost == entry.guardrail_usd
    assert rendered["usage"]["guardrail_text_units"] == 4


def test_a_guardrail_that_blocks_the_answer_bills_the_tokens_and_the_units(world: dict[str, Any]) -> None:
    record = key(world, guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    text = "word " * 300 + "#emulator:guardrail=output"
    completion = Completion.of(converse(world, record, model="nova-micro", messages=say(text), stream=True))
    entry = completion.entry
    assert completion.finish_reason == "content_filter" and entry is not None
    assert entry.usage.output_tokens > 0
    # 1,500+ characters in, as many out: 2 units each way, per policy
    assert entry.guardrail_units["contentPolicyUnits"] == 4
    model = CATALOG.resolve("nova-micro")
    assert entry.cost == compute_cost(model.prices, entry.usage) + entry.guardrail_usd


def test_a_model_guardrail_applies_and_the_keys_own_wins(world: dict[str, Any], tmp_path: Any) -> None:
    from local.bedrock_emulator import start_emulator
    from local.bedrock_emulator.guardrails import add_guardrail

    # GIVEN nova-micro carries the demo guardrail in the catalog, and a key carries one of its own
    add_guardrail("keysown")
    catalog = catalog_with(tmp_path, {"nova-micro": {"guardrail": {"id": DEMO_GUARDRAIL_ID, "version": "1"}}})
    server, url = start_emulator()
    try:
        world["gateway"] = Gateway(UpstreamConfig("us-east-1", url, 5))
        plain = Completion.of(converse(world, key(world), catalog, model="nova-micro", messages=say("hi"))).entry
        record = key(world, guardrail={"id": "keysown", "version": "DRAFT"})
        Completion.of(converse(world, record, catalog, model="nova-micro", messages=say("hi")))
        sent = [r.json().get("guardrailConfig") for r in server.requests]
    finally:
        server.shutdown()
    # THEN a call with a plain key carries the model's guardrail (billed), a call with the key's carries that one
    assert plain is not None and plain.guardrail_units
    assert sent == [
        {"guardrailIdentifier": DEMO_GUARDRAIL_ID, "guardrailVersion": "1", "trace": "enabled"},
        {"guardrailIdentifier": "keysown", "guardrailVersion": "DRAFT", "trace": "enabled"},
    ]


def test_a_guardrail_bedrock_does_not_have_fails_closed_with_a_clear_error(world: dict[str, Any]) -> None:
    record = key(world, guardrail={"id": "doesnotexist", "version": "1"})
    with pytest.raises(errors.UpstreamError) as caught:
        converse(world, record, messages=say(f"Hello {THROTTLE_US}"))
    assert caught.value.code == "guardrail_unavailable" and "doesnotexist" in caught.value.message


def test_admission_reserves_the_dearest_target_and_the_guardrail(world: dict[str, Any], tmp_path: Any) -> None:
    # GIVEN nova-micro, which falls back to the dearer claude-sonnet-4-5, under a guarded key with a budget
    catalog = catalog_with(tmp_path, {"nova-micro": {"fallbacks": ["claude-sonnet-4-5"]}})
    record = key(world, monthly_budget_usd=Decimal("100"), guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    seen: list[Any] = []
    meter = world["meter"]
    original = meter.admit

    def spy(*args: Any, **kwargs: Any) -> Any:
        ticket = original(*args, **kwargs)
        seen.append((kwargs, ticket))
        return ticket

    meter.admit = spy
    converse(world, record, catalog, model="nova-micro", messages=say("hi"), max_tokens=50).close()
    kwargs, ticket = seen[0]
    sonnet = catalog.resolve("claude-sonnet-4-5")
    dearest = worst_case_cost(sonnet, kwargs["input_tokens"], 50)
    assert kwargs["surcharge"] > 0
    assert ticket.reserved == dearest + kwargs["surcharge"]


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def catalog_with(tmp_path: Any, changes: dict[str, dict[str, Any]]) -> Catalog:
    document = json.loads(DEFAULT_CATALOG.read_text())
    for model in document["models"]:
        model.update(changes.get(model["alias"], {}))
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    return load_catalog(path, region="us-east-1")


def test_an_intervention_ends_each_protocols_answer_as_that_protocol_says(world: dict[str, Any]) -> None:
    from chalicelib.protocols.anthropic.render import render_message

    record = key(world, guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    turn = converse(world, record, model="nova-micro", messages=say("Hi #emulator:guardrail=output"))
    completion = Completion.of(turn)
    message = render_message(completion, {"id": "msg_x", "model": "nova-micro"})
    assert message["stop_reason"] == "refusal"
    assert message["usage"]["guardrail_text_units"] > 0 and message["usage"]["served_model"] == "nova-micro"
