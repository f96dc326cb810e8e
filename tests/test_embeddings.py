"""``POST /v1/embeddings``: the gateway against the emulator, and the route through Chalice's test client."""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from pathlib import Path

import pytest
from chalice.test import Client

from chalicelib import errors, wiring
from chalicelib.catalog import load_catalog
from chalicelib.gateway import Gateway, UpstreamConfig, load_litellm
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai.parse import EMBEDDING_PARAMETERS, parse_embedding_request
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.money import compute_cost
from chalicelib.shared.usage import TokenUsage
from local.bedrock_emulator import count_tokens
from tests.conftest import CountingEmulator
from tests.openai_schema import assert_valid

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def gateway(emulator_url: str) -> Gateway:
    return Gateway(UpstreamConfig(region="us-east-1", endpoint_url=emulator_url, timeout_seconds=5))


def embed(gateway: Gateway, **body):
    body.setdefault("model", "titan-embed-text-v2")
    request = parse_embedding_request(body)
    outcome = gateway.embed(request, CATALOG.resolve(request.model))
    if outcome.error is not None:
        raise outcome.error
    return outcome


def floats(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("model", ["titan-embed-text-v2", "cohere-embed-english-v3"])
def test_a_list_of_texts_is_embedded_in_order_with_usage(gateway: Gateway, model: str) -> None:
    texts = ["the first text", "a second one", "third"]
    outcome = embed(gateway, model=model, input=texts)
    assert_valid("CreateEmbeddingResponse", outcome.body)
    assert [d["index"] for d in outcome.body["data"]] == [0, 1, 2]
    assert {len(d["embedding"]) for d in outcome.body["data"]} == {1024}
    tokens = sum(count_tokens(t) for t in texts)
    assert outcome.body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert outcome.usage == TokenUsage(input_tokens=tokens)
    # Each vector belongs to its own text (the emulator's vectors are a hash of model and text).
    alone = embed(gateway, model=model, input="a second one").body["data"][0]["embedding"]
    assert outcome.body["data"][1]["embedding"] == alone


def test_base64_is_little_endian_float32_of_the_float_answer(gateway: Gateway) -> None:
    as_floats = embed(gateway, input="encode me").body["data"][0]["embedding"]
    as_base64 = embed(gateway, input="encode me", encoding_format="base64").body["data"][0]["embedding"]
    assert isinstance(as_base64, str)
    assert floats(as_base64) == pytest.approx(as_floats, abs=1e-6)


def test_titan_dimensions_are_sent_and_honoured(gateway: Gateway) -> None:
    for dimensions in (256, 512, 1024):
        vector = embed(gateway, input="short", dimensions=dimensions).body["data"][0]["embedding"]
        assert len(vector) == dimensions


@pytest.mark.parametrize(("model", "dimensions"), [("titan-embed-text-v2", 300), ("cohere-embed-english-v3", 512)])
def test_dimensions_a_model_cannot_produce_are_a_400(gateway: Gateway, model: str, dimensions: int) -> None:
    with pytest.raises(errors.InvalidRequest, match="supports") as caught:
        embed(gateway, model=model, input="x", dimensions=dimensions)
    assert caught.value.param == "dimensions"


def test_cohere_accepts_its_one_dimension(gateway: Gateway) -> None:
    # Cohere v3 has no output_dimension parameter: 1024 is accepted and not forwarded.
    assert (
        len(embed(gateway, model="cohere-embed-english-v3", input="x", dimensions=1024).body["data"][0]["embedding"])
        == 1024
    )


def test_token_arrays_are_decoded_as_cl100k_base(gateway: Gateway) -> None:
    # LangChain's OpenAIEmbeddings sends token ids by default (tiktoken, cl100k_base).
    from litellm.litellm_core_utils.default_encoding import encoding

    text = "Token arrays round-trip to text."
    as_text = embed(gateway, input=text).body["data"][0]["embedding"]
    as_tokens = embed(gateway, input=[encoding.encode(text)]).body["data"][0]["embedding"]
    assert as_tokens == as_text
    with pytest.raises(errors.InvalidRequest, match="cl100k_base") as caught:
        embed(gateway, input=[[1, 2, 10_000_000]])
    assert caught.value.param == "input[0]"


def test_cohere_batches_above_96_texts(gateway: Gateway) -> None:
    texts = [f"text number {i}" for i in range(100)]
    data = embed(gateway, model="cohere-embed-english-v3", input=texts).body["data"]
    assert [d["index"] for d in data] == list(range(100))
    assert (
        data[99]["embedding"]
        == embed(gateway, model="cohere-embed-english-v3", input=texts[99]).body["data"][0]["embedding"]
    )


@pytest.mark.parametrize(("model", "limit"), [("cohere-embed-english-v3", 2_048), ("titan-embed-text-v2", 50_000)])
def test_inputs_over_the_models_size_limit_are_a_400(gateway: Gateway, model: str, limit: int) -> None:
    with pytest.raises(errors.InvalidRequest, match=f"at most {limit}") as caught:
        embed(gateway, model=model, input=["fine", "x" * (limit + 1)])
    assert caught.value.param == "input[1]" and caught.value.code == "input_too_long"


def test_a_failed_batch_fails_the_request_but_bills_what_was_embedded(gateway: Gateway) -> None:
    request = parse_embedding_request({"model": "titan-embed-text-v2", "input": ["fine text", "x #emulator:throttle"]})
    outcome = gateway.embed(request, CATALOG.resolve("titan-embed-text-v2"))
    assert isinstance(outcome.error, errors.RateLimited)
    assert outcome.usage.input_tokens == count_tokens("fine text")


# -- the route ---------------------------------------------------------------------------------


@pytest.fixture
def key(keys_table):
    return KeyStore(keys_table).create(owner_sub="owner-1", name="embeddings")


def post(client: Client, plaintext: str, body) -> object:
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}
    return client.http.post("/v1/embeddings", headers=headers, body=json.dumps(body))


def test_route_answers_and_bills_exactly(client: Client, key) -> None:
    record, plaintext = key
    text = "one two three four five six seven"
    response = post(client, plaintext, {"model": "titan-embed-text-v2", "input": text})
    assert response.status_code == 200, response.body
    body = response.json_body
    assert_valid("CreateEmbeddingResponse", body)
    assert body["model"] == "titan-embed-text-v2" and len(body["data"][0]["embedding"]) == 1024
    # OpenAI's schema types `embedding` as numbers only; base64 is checked by decoding it.
    encoded = post(client, plaintext, {"model": "titan-embed-text-v2", "input": text, "encoding_format": "base64"})
    assert floats(encoded.json_body["data"][0]["embedding"]) == pytest.approx(body["data"][0]["embedding"], abs=1e-6)
    entries = wiring.ledger().entries_for_key(record.key_id)
    assert len(entries) == 2
    tokens = count_tokens(text)
    assert entries[0]["operation"] == "embedding"
    assert response.headers["x-request-id"] in {e["request_id"] for e in entries}
    expected = compute_cost(CATALOG.resolve("titan-embed-text-v2").prices, TokenUsage(input_tokens=tokens))
    assert [e["cost"] for e in entries] == [expected, expected]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nova-micro", "input": "x"}, 404, "model_not_found"),
        ({"model": "titan-embed-text-v2"}, 400, None),
        ({"model": "titan-embed-text-v2", "input": "x", "dimensions": 100}, 400, "unsupported_dimensions"),
        ({"model": "titan-embed-text-v2", "input": "x", "extra": 1}, 400, None),
        ({"model": "titan-embed-text-v2", "input": "x #emulator:throttle"}, 429, "upstream_throttled"),
    ],
)
def test_route_errors_are_openai_envelopes(client: Client, key, body, status, code) -> None:
    record, plaintext = key
    response = post(client, plaintext, body)
    assert response.status_code == status, response.body
    assert_valid("ErrorResponse", response.json_body)
    if code:
        assert response.json_body["error"]["code"] == code
    assert wiring.ledger().entries_for_key(record.key_id) == []


def test_route_refuses_models_outside_the_allowlist(client: Client, keys_table) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="o", allowed_models=["cohere-embed-english-v3"])
    assert post(client, plaintext, {"model": "titan-embed-text-v2", "input": "x"}).status_code == 403
    assert post(client, plaintext, {"model": "cohere-embed-english-v3", "input": "x"}).status_code == 200


def test_route_needs_a_key(client: Client) -> None:
    response = client.http.post(
        "/v1/embeddings", headers={}, body=json.dumps({"model": "titan-embed-text-v2", "input": "x"})
    )
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"


def test_the_compatibility_doc_lists_every_embedding_parameter() -> None:
    text = (ROOT / "docs" / "openai-compatibility.md").read_text()
    section = text.split("## Embeddings", 1)[1].split("\n## ", 1)[0]
    documented = {
        name for row in re.findall(r"^\| (.+?) \|", section, flags=re.M) for name in re.findall(r"`([a-z_]+)`", row)
    }
    assert documented == set(EMBEDDING_PARAMETERS)


def test_route_admission_uses_the_same_budget_as_chat(client: Client, keys_table) -> None:
    from decimal import Decimal

    record, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("0.0000001"))
    response = post(client, plaintext, {"model": "titan-embed-text-v2", "input": "more than five tokens of text here"})
    assert response.status_code == 429 and response.json_body["error"]["code"] == "insufficient_quota"
    assert wiring.ledger().entries_for_key(record.key_id) == []


# -- one kept connection pool (issue 23) ----------------------------------------------------------


def test_embeddings_share_one_connection_pool_whatever_their_timeouts(counting_emulator: CountingEmulator) -> None:
    """LiteLLM caches the clients it builds by their timeout, and each batch's timeout is what is
    left of its request's deadline: every batch built a client and opened a connection (a TLS
    handshake to Bedrock in AWS), and left it open. The gateway's kept client serves them all."""
    config = UpstreamConfig(region="us-east-1", endpoint_url=counting_emulator.url, timeout_seconds=5)
    gateway = Gateway(config)
    load_litellm()  # its first import takes seconds: not inside a request's few seconds
    # Under the configured 5 s, so each call's timeout is what is left of its own deadline.
    for seconds_left, model in (
        (4.5, "titan-embed-text-v2"),
        (4.0, "cohere-embed-english-v3"),
        (3.5, "titan-embed-text-v2"),
    ):
        request = parse_embedding_request({"model": model, "input": f"text for {seconds_left} s"})
        outcome = gateway.embed(request, CATALOG.resolve(model), stop_at=time.time() + seconds_left)
        assert outcome.error is None, outcome.error
    assert len(counting_emulator.accepted) == 1, counting_emulator.accepted


def test_the_kept_client_still_gives_up_on_a_call_at_its_timeout() -> None:
    # LiteLLM sends embeddings through a given client without a timeout: the call's own applies.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from chalicelib.gateway.providers import Bedrock, Upstream, call_timeout

    release = threading.Event()

    class Stalls(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            release.wait(10)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Bedrock(region="us-east-1", endpoint_url=None).client(Upstream("bedrock", "bedrock/x"))
        started = time.monotonic()
        with call_timeout(0.5), pytest.raises(Exception, match="(?i)timed? ?out"):
            client.post(url=f"http://127.0.0.1:{server.server_address[1]}/invoke", data="{}")
        assert time.monotonic() - started < 2.5
        # A timeout given with the call wins (chat passes its own).
        started = time.monotonic()
        with call_timeout(30), pytest.raises(Exception, match="(?i)timed? ?out"):
            client.post(url=f"http://127.0.0.1:{server.server_address[1]}/invoke", data="{}", timeout=0.3)
        assert time.monotonic() - started < 2.5
    finally:
        release.set()
        server.shutdown()


def test_a_batch_given_up_at_the_deadline_ends_then_not_later(gateway: Gateway) -> None:
    # GIVEN a Titan input that takes 4 s, and 1 s left
    request = parse_embedding_request({"model": "titan-embed-text-v2", "input": "slow #emulator:sleep=4"})
    started = time.monotonic()
    outcome = gateway.embed(request, CATALOG.resolve(request.model), stop_at=time.time() + 1)
    # THEN the request ends at its deadline, its call billed as embedded (Bedrock had it)
    assert isinstance(outcome.error, errors.UpstreamTimeout) and time.monotonic() - started < 2.5
    assert outcome.usage.input_tokens > 0


# -- one deadline for the whole request (issue 20) -----------------------------------------------


def slow_inputs(count: int) -> list[str]:
    """Titan embeds one text per call: ``count`` calls of a second each, 8 at a time."""
    return [f"text number {n} #emulator:sleep=1" for n in range(count)]


def test_the_route_answers_at_its_deadline_and_bills_what_bedrock_embedded(
    monkeypatch: pytest.MonkeyPatch, client: Client, keys_table, usage_table, drain
) -> None:
    # GIVEN a budgeted key, 128 Titan inputs (16 rounds of a second) and a 6 s deadline for the request
    from decimal import Decimal

    monkeypatch.setenv("PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS", "6")
    wiring.reset()
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", monthly_budget_usd=Decimal("5"))
    load_litellm()  # its first import takes seconds; not part of what is timed
    started = time.monotonic()
    response = post(client, plaintext, {"model": "titan-embed-text-v2", "input": slow_inputs(128)})
    elapsed = time.monotonic() - started
    # THEN the caller gets a 504 inside the deadline, not after every round
    assert response.status_code == 504, response.body
    assert response.json_body["error"]["code"] == "embedding_time_limit" and elapsed < 6.5, elapsed
    # AND what Bedrock embedded (or was embedding) by then is billed, the rest not, and nothing stays reserved
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    per_input = count_tokens(slow_inputs(1)[0])
    assert entry["status"] == "partial" and per_input * 8 <= entry["input_tokens"] < per_input * 128
    assert Decimal(response.headers["x-pennyworth-cost-usd"]) == entry["cost"]
    drain(usage_table)
    assert Decimal(wiring.meter().spend(record)["budget"]["reserved_usd"]) == 0


def test_mcp_embed_answers_inside_its_request_budget(monkeypatch: pytest.MonkeyPatch, client: Client, key) -> None:
    from chalicelib.protocols.mcp import route as mcp_route

    monkeypatch.setattr(mcp_route, "REQUEST_BUDGET_SECONDS", 6.0)
    record, plaintext = key
    load_litellm()
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "embed", "arguments": {"model": "titan-embed-text-v2", "input": slow_inputs(128)}},
    }
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}
    started = time.monotonic()
    result = client.http.post("/mcp", headers=headers, body=json.dumps(message)).json_body["result"]
    assert result["isError"] is True and "504" in result["content"][0]["text"]
    assert time.monotonic() - started < 6.5
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["status"] == "partial" and entry["input_tokens"] > 0
