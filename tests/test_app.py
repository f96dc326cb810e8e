"""Routes through Chalice's test client: moto for DynamoDB, the emulator for Bedrock."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai_chat.route import ChatCompletions
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.openai_schema import assert_valid
from tests.stream_client import StreamClient


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, aws, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_MAX_BODY_BYTES", "20000")
    wiring.reset()


@pytest.fixture
def client(env) -> Client:
    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def key(keys_table) -> tuple:
    return KeyStore(keys_table).create(owner_sub="owner-1", owner_email="o@example.com", name="test")


def auth(plaintext: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}


def post_chat(client: Client, plaintext: str | None, body, headers: dict[str, str] | None = None, **options):
    """Chat completions are a streaming route: called as API Gateway calls the streaming function."""
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return StreamClient(**options).post(
        "/v1/chat/completions",
        headers=headers if headers is not None else auth(plaintext or ""),
        body=raw,
    )


def hello(model: str = "nova-micro", text: str = "Hello there", **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_health_needs_no_key_and_reveals_nothing(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200 and response.json_body == {"status": "ok"}


def test_models_list_and_get(client: Client, key) -> None:
    _, plaintext = key
    listing = client.http.get("/v1/models", headers=auth(plaintext))
    assert listing.status_code == 200
    assert_valid("ListModelsResponse", listing.json_body)
    assert "nova-micro" in {m["id"] for m in listing.json_body["data"]}
    one = client.http.get("/v1/models/claude-haiku-4-5", headers=auth(plaintext))
    assert one.status_code == 200
    assert_valid("Model", one.json_body)
    missing = client.http.get("/v1/models/gpt-5", headers=auth(plaintext))
    assert missing.status_code == 404 and missing.json_body["error"]["code"] == "model_not_found"


def test_allowlist_narrows_models_and_refuses_others(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["nova-micro"])
    listing = client.http.get("/v1/models", headers=auth(plaintext)).json_body
    assert [m["id"] for m in listing["data"]] == ["nova-micro"]
    refused = post_chat(client, plaintext, hello("claude-haiku-4-5"))
    assert refused.status_code == 403 and refused.json_body["error"]["code"] == "model_not_allowed"


def test_chat_completion_is_answered_and_billed_exactly(client: Client, key, usage_table) -> None:
    record, plaintext = key
    response = post_chat(client, plaintext, hello())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert_valid("CreateChatCompletionResponse", body)
    assert body["model"] == "nova-micro"
    entries = wiring.ledger().entries_for_key(record.key_id)
    assert len(entries) == 1
    usage = TokenUsage(input_tokens=body["usage"]["prompt_tokens"], output_tokens=body["usage"]["completion_tokens"])
    expected = compute_cost(wiring.catalog().resolve("nova-micro").prices, usage)
    assert entries[0]["cost"] == expected and isinstance(entries[0]["cost"], Decimal)
    assert entries[0]["request_id"] == response.headers["x-request-id"]


def test_streamed_chat_is_an_sse_body(client: Client, key) -> None:
    _, plaintext = key
    response = post_chat(client, plaintext, hello(stream=True))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    text = response.body.decode()
    assert text.rstrip().endswith("data: [DONE]")
    for block in text.split("\n\n")[:-2]:
        assert_valid("CreateChatCompletionStreamResponse", json.loads(block.removeprefix("data: ")))


@pytest.mark.parametrize(
    ("body", "status", "code_or_type"),
    [
        (b"{not json", 400, "invalid_request_error"),
        ({"model": "nova-micro"}, 400, "invalid_request_error"),
        ({"model": "nova-micro", "messages": "hello"}, 400, "invalid_request_error"),
        (hello("gpt-4o"), 404, "model_not_found"),
        (hello("titan-embed-text-v2"), 404, "model_not_found"),
        (hello(text="x" * 30000), 413, "request_too_large"),
        (hello(text="please #emulator:throttle"), 429, "upstream_throttled"),
        (hello(text="please #emulator:error"), 502, "upstream_error"),
    ],
)
def test_errors_are_openai_envelopes_with_the_right_status(client: Client, key, body, status, code_or_type) -> None:
    _, plaintext = key
    response = post_chat(client, plaintext, body)
    assert response.status_code == status, response.body
    error = response.json_body
    assert_valid("ErrorResponse", error)
    assert code_or_type in (error["error"]["code"], error["error"]["type"])
    assert len(response.headers["x-request-id"]) >= 16  # the id to quote when asking what happened
    if status == 429:
        assert int(response.headers["Retry-After"]) >= 1


def test_upstream_timeout_follows_the_deadline(client: Client, key, usage_table) -> None:
    # 5 s left for the whole answer: the upstream gets what is left minus the billing margin.
    record, plaintext = key
    response = post_chat(client, plaintext, hello(text="slow #emulator:sleep=4"), timeout_seconds=5)
    assert response.status_code == 504
    assert response.json_body["error"]["code"] == "upstream_timeout"
    assert response.headers["x-request-id"]
    assert wiring.ledger().entries_for_key(record.key_id) == []  # nothing produced, nothing billed


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Authorization": "Bearer pw-aaaaaaaaaaaa-" + "A" * 40},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_invalid_keys_are_401(client: Client, headers) -> None:
    response = post_chat(client, None, hello(), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_valid("ErrorResponse", response.json_body)
    models = client.http.get("/v1/models", headers=headers)
    assert models.status_code == 401
    assert response.headers["x-request-id"] and models.headers["x-request-id"]


def test_form_encoded_body_from_plain_curl_is_still_parsed(client: Client, key) -> None:
    _, plaintext = key
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/x-www-form-urlencoded"}
    response = post_chat(client, plaintext, hello(), headers=headers)
    assert response.status_code == 200


def test_unexpected_errors_are_a_500_envelope_without_details(client: Client, key, monkeypatch) -> None:
    _, plaintext = key

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(wiring.adapter(ChatCompletions), "handle", explode)
    response = post_chat(client, plaintext, hello())
    assert response.status_code == 500
    assert "secret internals" not in response.body.decode()
    assert_valid("ErrorResponse", response.json_body)


def test_key_route_shows_the_callers_own_spend_and_limits(client: Client, keys_table, usage_table, drain) -> None:
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("5"), rpm_limit=100)
    chat = post_chat(client, plaintext, hello())
    cost = Decimal(chat.headers["x-pennyworth-cost-usd"])
    assert cost > 0
    assert chat.headers["x-ratelimit-limit-requests"] == "100"
    assert chat.headers["x-ratelimit-remaining-requests"] == "99"
    drain(usage_table)  # what the aggregator does within a second or so on AWS
    status = client.http.get("/v1/key", headers=auth(plaintext))
    assert status.status_code == 200
    body = status.json_body
    assert body["key_id"] == record.key_id and body["limits"]["rpm"] == 100
    assert Decimal(body["budget"]["spent_usd"]) == cost
    assert Decimal(body["budget"]["remaining_usd"]) == Decimal("5") - cost
    assert body["usage"]["requests"] == 1
    assert client.http.get("/v1/key").status_code == 401


def test_spent_budget_is_a_429_insufficient_quota(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("0.0000001"))
    response = post_chat(client, plaintext, hello(max_tokens=50))
    assert response.status_code == 429
    assert_valid("ErrorResponse", response.json_body)
    assert response.json_body["error"]["type"] == "insufficient_quota"
    assert "budget" in response.json_body["error"]["message"]


def test_rate_limited_key_gets_retry_after_and_openai_headers(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", rpm_limit=1)
    assert post_chat(client, plaintext, hello()).status_code == 200
    limited = post_chat(client, plaintext, hello())
    assert limited.status_code == 429
    assert limited.json_body["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize("max_tokens", [10**40, 2**31, 1_000_000])
def test_absurd_max_tokens_is_a_400_before_any_limit_or_budget(client: Client, keys_table, max_tokens) -> None:
    # A key with every limit: admission must never see a number the model cannot produce.
    _, plaintext = KeyStore(keys_table).create(
        owner_sub="o", monthly_budget_usd=Decimal("1"), rpm_limit=10, tpm_limit=100_000
    )
    response = post_chat(client, plaintext, hello(max_tokens=max_tokens))
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["param"] == "max_tokens"
