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


def test_a_model_outside_the_allowlist_is_not_found_like_one_that_does_not_exist(client: Client, keys_table) -> None:
    # OpenAI's answer (404, "does not exist or you do not have access") tells a key nothing of the catalog
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["nova-micro"])
    hidden = client.http.get("/v1/models/claude-haiku-4-5", headers=auth(plaintext))
    absent = client.http.get("/v1/models/no-such-model", headers=auth(plaintext))
    for response, name in ((hidden, "claude-haiku-4-5"), (absent, "no-such-model")):
        assert response.status_code == 404, response.json_body
        error = response.json_body["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert f"The model '{name}' does not exist or you do not have access to it." in error["message"]
    assert "claude" not in absent.json_body["error"]["message"].replace("no-such-model", "")


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
    # Bedrock had the prompt: the call the gateway gave up on is billed its prompt (partial)
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert response.headers["x-request-id"] == entry["request_id"]
    assert (entry["status"], entry["output_tokens"]) == ("partial", 0) and entry["input_tokens"] > 0


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


def test_a_cut_stream_error_carries_its_bill_to_the_openai_sdk(env, key) -> None:
    # GIVEN the official SDK reading a stream that Bedrock cuts mid-answer
    import httpx
    import openai

    from tests.stream_client import in_process_transport

    record, plaintext = key
    client = openai.OpenAI(
        base_url="http://gateway.test/v1",
        api_key=plaintext,
        max_retries=0,
        http_client=httpx.Client(transport=in_process_transport(httpx)),
    )
    # WHEN the stream ends with the error event THEN the SDK's error carries what was billed
    with pytest.raises(openai.APIError) as caught:
        for _ in client.chat.completions.create(**hello(text="Tell me more #emulator:cut"), stream=True):
            pass
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    usage = caught.value.body["usage"]
    assert entry["status"] == "partial" and Decimal(usage["cost_usd"]) == entry["cost"] > 0
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (entry["input_tokens"], entry["output_tokens"])


def test_an_unknown_streamed_route_names_the_nearest_one(env, key) -> None:
    _, plaintext = key
    response = StreamClient().post("/v1/chat/completion", headers=auth(plaintext), body=json.dumps(hello()))
    error = response.json_body["error"]
    assert response.status_code == 404 and error["code"] == "unknown_url"
    assert "Did you mean POST /v1/chat/completions?" in error["message"]


def test_an_unknown_model_names_the_nearest_alias_and_where_models_are_listed(client: Client, key) -> None:
    _, plaintext = key
    error = post_chat(client, plaintext, hello("claude-haiku-4.5")).json_body["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "Did you mean 'claude-haiku-4-5'?" in error["message"] and "GET /v1/models" in error["message"]
    far = post_chat(client, plaintext, hello("gpt-4o")).json_body["error"]["message"]
    assert "Did you mean" not in far and "GET /v1/models" in far


def test_a_model_of_the_other_kind_says_what_it_is(client: Client, key) -> None:
    _, plaintext = key
    chat = post_chat(client, plaintext, hello("titan-embed-text-v2"))
    assert chat.status_code == 404
    assert "is an embedding model" in chat.json_body["error"]["message"]
    assert "POST /v1/embeddings" in chat.json_body["error"]["message"]
    embedding = client.http.post(
        "/v1/embeddings", headers=auth(plaintext), body=json.dumps({"model": "nova-micro", "input": "x"})
    )
    assert embedding.status_code == 404 and "is a chat model" in embedding.json_body["error"]["message"]


def test_hints_never_name_a_model_outside_the_keys_allowlist(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["nova-micro"])
    error = post_chat(client, plaintext, hello("claude-haiku-4.5")).json_body["error"]
    assert "claude-haiku-4-5" not in error["message"].replace("claude-haiku-4.5", "")
