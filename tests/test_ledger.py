"""The ledger against moto: entries, replays, reconcile lines, and aggregates built from the stream."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from chalicelib.accounting.ledger import UNRECORDED_EVENT, Ledger, new_entry
from chalicelib.accounting.reconcile import parse_lines
from chalicelib.shared.dynamodb import clients, plain_client
from chalicelib.shared.money import Prices, compute_cost
from chalicelib.shared.usage import TokenUsage
from tests.factories import NOVA_PRICES, usage_entry

PRICES = NOVA_PRICES
AT = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def entry(request_id: str = "r1", key_id: str = "k1", **usage: int):
    return usage_entry(request_id=request_id, key_id=key_id, usage=TokenUsage(**usage) if usage else None)


def test_cost_is_exact_decimal() -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_tokens=100)
    assert compute_cost(PRICES, usage) == Decimal("0.0000350") + Decimal("0.0000700") + Decimal("0.0000175") + Decimal(
        "0.0000035"
    )
    assert usage.prompt_tokens == 3100


def test_billing_is_one_put_and_the_aggregates_follow_from_the_stream(usage_table, drain) -> None:
    # GIVEN 25 entries of varied sizes
    ledger = Ledger(usage_table)
    entries = [entry(f"r{i}", input_tokens=i * 7 + 1, output_tokens=i * 13 + 2) for i in range(25)]
    calls = []
    for client in clients(usage_table):
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    for e in entries:
        assert ledger.record(e)
    # THEN each was one conditional PutItem, and nothing else was written on the request path
    assert calls == ["PutItem"] * 25
    assert ledger.aggregate("KEY#k1", "DAY#2026-11-26")["requests"] == 0
    # WHEN the stream is applied THEN every aggregate equals the sum of the entries, exactly
    drain(usage_table)
    total = sum((e.cost for e in entries), Decimal(0))
    stored = ledger.entries_for_key("k1")
    assert len(stored) == 25 and sum((item["cost"] for item in stored), Decimal(0)) == total
    for scope in ("KEY#k1", "OWNER#owner-1", "MODEL#nova-micro", "ALL"):
        for period in ("DAY#2026-11-26", "MONTH#2026-11"):
            aggregate = ledger.aggregate(scope, period)
            assert aggregate["cost"] == total, (scope, period)
            assert aggregate["requests"] == 25
            assert aggregate["input_tokens"] == sum(e.usage.input_tokens for e in entries)
    # committed (what budgets check) took the cost of the key's and owner's month
    assert ledger.aggregate("KEY#k1", "MONTH#2026-11")["committed"] == total


def test_replaying_an_entry_does_not_double_count(usage_table, drain) -> None:
    ledger = Ledger(usage_table)
    e = entry()
    assert ledger.record(e) and ledger.record(e)
    drain(usage_table)
    drain(usage_table)
    assert ledger.aggregate("KEY#k1", "MONTH#2026-11")["requests"] == 1


def stream_records(usage_table) -> tuple[str, list[dict]]:
    """Every record of the usage table's stream so far (moto's single shard), as GetRecords returns them."""
    from local.stream_aggregator import shard_records

    shard, records = shard_records(usage_table)
    return shard, [dict(record) for record in records]


def test_aggregation_is_exactly_once_under_redelivered_reordered_and_overlapping_batches(usage_table) -> None:
    from chalicelib.accounting.aggregator import Aggregator

    # GIVEN 30 entries over 3 keys on the stream
    ledger = Ledger(usage_table)
    entries = [entry(f"r{i}", key_id=f"k{i % 3}", input_tokens=i + 1, output_tokens=2 * i + 1) for i in range(30)]
    for e in entries:
        ledger.record(e)
    shard, records = stream_records(usage_table)
    aggregator = Aggregator(usage_table)
    # WHEN batches arrive redelivered, overlapping with other boundaries, reversed, and all over again
    deliveries = [records[0:10], records[0:10], records[0:20][::-1], records[5:25], records[25:], records, records]
    applied = [aggregator.apply(shard, batch).applied for batch in deliveries]
    # THEN each record was applied once, and the aggregates are the sums of the entries
    assert sum(applied) == 30 and applied[1] == 0 and applied[-1] == 0
    for k in range(3):
        mine = [e for e in entries if e.key_id == f"k{k}"]
        totals = ledger.aggregate(f"KEY#k{k}", "DAY#2026-11-26")
        assert totals["cost"] == sum((e.cost for e in mine), Decimal(0)) and totals["requests"] == 10
    assert ledger.aggregate("ALL", "MONTH#2026-11")["requests"] == 30


def six_keys_in_small_transactions(usage_table, monkeypatch):
    """Six keys' entries on the stream, with transactions small enough that their plan needs several."""
    from chalicelib.accounting import aggregator as module

    monkeypatch.setattr(module, "MAX_ROWS_PER_TRANSACTION", 10)
    ledger = Ledger(usage_table)
    entries = [entry(f"r{i}", key_id=f"k{i}", input_tokens=i + 1) for i in range(6)]
    for e in entries:
        ledger.record(e)
    shard, records = stream_records(usage_table)
    return ledger, entries, shard, records


def test_a_batch_that_died_half_way_is_finished_by_its_redelivery(usage_table, monkeypatch) -> None:
    from chalicelib.accounting import aggregator as module

    # GIVEN transactions small enough that one batch's plan needs several, and the third call failing
    ledger, entries, shard, records = six_keys_in_small_transactions(usage_table, monkeypatch)
    aggregator = module.Aggregator(usage_table)
    real = usage_table.meta.client.transact_write_items
    failure = ClientError({"Error": {"Code": "ValidationException", "Message": "boom"}}, "TransactWriteItems")
    calls = []

    def third_one_fails(**kwargs):
        calls.append(1)
        if len(calls) == 3:  # the claim, the first chunk, then this one: the Lambda dies here
            raise failure
        return real(**kwargs)

    with (
        mock.patch.object(usage_table.meta.client, "transact_write_items", side_effect=third_one_fails),
        pytest.raises(ClientError),
    ):
        aggregator.apply(shard, records)
    written = [ledger.aggregate(f"KEY#k{i}", "DAY#2026-11-26")["requests"] for i in range(6)]
    assert 0 < sum(written) < 6  # half applied
    # WHEN Lambda delivers the batch again (or only its first record) THEN the plan is finished, nothing twice
    aggregator.apply(shard, records[:1])
    assert [ledger.aggregate(f"KEY#k{i}", "DAY#2026-11-26")["requests"] for i in range(6)] == [1] * 6
    aggregator.apply(shard, records)
    totals = ledger.aggregate("ALL", "DAY#2026-11-26")
    assert totals["requests"] == 6 and totals["cost"] == sum((e.cost for e in entries), Decimal(0))
    marker = usage_table.get_item(Key={"pk": f"STREAM#{shard}", "sk": "MARK"})["Item"]
    assert "plan" not in marker and int(marker["seq"]) == max(int(r["dynamodb"]["SequenceNumber"]) for r in records)


def test_a_batch_too_big_for_one_plan_is_claimed_in_several(usage_table, monkeypatch) -> None:
    from chalicelib.accounting import aggregator as module

    monkeypatch.setattr(module, "MAX_PLAN_ROWS", 20)
    ledger = Ledger(usage_table)
    entries = [entry(f"r{i}", key_id=f"k{i}", input_tokens=i + 1) for i in range(12)]
    for e in entries:
        ledger.record(e)
    shard, records = stream_records(usage_table)
    result = module.Aggregator(usage_table).apply(shard, records)
    assert result.plans > 1 and result.applied == 12
    assert ledger.aggregate("ALL", "MONTH#2026-11")["requests"] == 12


def test_a_backlog_over_many_rate_windows_still_fits_one_item_per_plan() -> None:
    from chalicelib.accounting.aggregator import MAX_PLAN_ROWS, change_of, plan_for
    from chalicelib.accounting.ledger import entry_item

    # GIVEN a replayed backlog: 10,000 entries of 300 rate-limited keys over two hours of minutes,
    # each key in many minutes (a correction per key and minute)
    changes = []
    for n in range(10_000):
        billed = usage_entry(
            request_id=f"r{n}", key_id=f"key{n % 300:05d}", owner_sub=f"owner-{n % 100}",
            usage=TokenUsage(input_tokens=n % 997 + 1, output_tokens=n % 89 + 1),
            reserved={f"KEY#key{n % 300:05d}": Decimal("0.352")}, budget_month="2026-11",
            rate_window=29_000_000 + n // 84, counted_tokens=5_000,
        )  # fmt: skip
        changes.append(change_of(n + 1, entry_item(billed)))
    # WHEN they are cut into plans THEN each plan's rows and rate corrections stay within the bound
    while changes:
        claimed, plan = plan_for(changes)
        assert sum(len(chunk) for chunk in plan.chunks) + len(plan.rates) <= MAX_PLAN_ROWS
        # AND the stored plan stays far below DynamoDB's 400 KB item limit
        assert len(plan.encode()) < 200_000
        changes = changes[len(claimed) :]


def test_a_busy_keys_aggregates_are_written_once_per_batch(usage_table) -> None:
    from chalicelib.accounting.aggregator import Aggregator

    # GIVEN 40 entries of one key in one batch
    ledger = Ledger(usage_table)
    for i in range(40):
        ledger.record(entry(f"r{i}", input_tokens=i + 1))
    shard, records = stream_records(usage_table)
    result = Aggregator(usage_table).apply(shard, records)
    # THEN one plan and one transaction: 11 aggregate items (key, owner, model, all, the model's price version
    # × day, month, and the owner's day of that model), not 40 × 11
    assert (result.plans, result.transactions, result.rows) == (1, 1, 11)


def test_the_aggregator_ignores_what_it_does_not_sum(usage_table, drain) -> None:
    # GIVEN an entry written by the previous design (aggregated in its own transaction) and other writes
    usage_table.put_item(Item={"pk": "KEY#old", "sk": "REQ#2026-11-26T10:00:00Z#x", "type": "entry", "cost": 5})
    usage_table.put_item(Item={"pk": "AGG#ALL", "sk": "DAY#2026-11-26", "requests": 7, "type": "aggregate"})
    drain(usage_table)
    # THEN nothing was added to any aggregate
    assert Ledger(usage_table).aggregate("ALL", "DAY#2026-11-26")["requests"] == 7
    assert Ledger(usage_table).aggregate("KEY#old", "DAY#2026-11-26")["requests"] == 0


def test_a_stream_event_without_a_shard_id_is_refused(usage_table) -> None:
    from chalicelib.accounting.aggregator import Aggregator

    ledger = Ledger(usage_table)
    ledger.record(entry())
    _, records = stream_records(usage_table)
    with pytest.raises(ValueError, match="TumblingWindowInSeconds"):
        Aggregator(usage_table).handle({"Records": records})
    assert Aggregator(usage_table).handle({"Records": [], "shardId": None}) == {"state": {}, "batchItemFailures": []}


def test_persistent_failure_is_logged_for_reconcile_then_replayed(usage_table, service_logs, drain) -> None:
    ledger = Ledger(usage_table, backoff_seconds=0)
    e = entry()
    failure = ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}}, "PutItem")
    with mock.patch.object(plain_client(usage_table), "put_item", side_effect=failure) as call:
        assert ledger.record(e, deadline=ledger.attempts.timer() + 0.5) is False
    assert call.call_count > 1  # transient: retried until the deadline
    lines = service_logs.lines()
    logged = [json.loads(line) for line in lines if UNRECORDED_EVENT in line]
    assert logged and logged[0]["level"] == "ERROR"
    replayed = parse_lines(lines).entries
    assert replayed == [e]
    assert ledger.record(replayed[0])
    drain(usage_table)
    assert ledger.aggregate("ALL", "DAY#2026-11-26")["cost"] == e.cost


def test_a_refusal_that_is_not_transient_is_not_retried(usage_table, service_logs) -> None:
    ledger = Ledger(usage_table, backoff_seconds=0)
    failure = ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "PutItem")
    with mock.patch.object(plain_client(usage_table), "put_item", side_effect=failure) as call:
        assert ledger.record(entry()) is False
    assert call.call_count == 1


def test_entry_json_round_trip_keeps_cost_exact() -> None:
    e = entry(input_tokens=3, output_tokens=7, cache_read_tokens=11)
    data = json.loads(json.dumps(e.to_json()))
    assert isinstance(data["cost"], str)
    assert type(e).from_json(data) == e


def test_usage_groups_by_key_owner_model_and_day(usage_table, drain) -> None:
    ledger = Ledger(usage_table)

    def at(day: int, key: str, owner: str, model: str, tokens: int, n: int):
        e = new_entry(
            request_id=f"{day}-{key}-{n}",
            key_id=key,
            owner_sub=owner,
            model=model,
            bedrock_model_id="x",
            operation="chat",
            usage=TokenUsage(input_tokens=tokens, output_tokens=tokens),
            prices=PRICES,
            latency_ms=1,
            status="ok",
            at=AT + timedelta(days=day),
        )
        assert ledger.record(e)
        return e

    entries = [
        at(0, "k1", "alice", "nova-micro", 10, 0),
        at(0, "k1", "alice", "claude", 20, 1),
        at(1, "k2", "alice", "nova-micro", 30, 0),
        at(1, "k3", "bob", "nova-micro", 40, 0),
        at(3, "k3", "bob", "claude", 50, 0),  # outside the range below
    ]
    drain(usage_table)
    first, last = date(2026, 11, 26), date(2026, 11, 27)
    cost = {e.request_id: e.cost for e in entries}

    by_key = {r["group"]: r for r in ledger.usage(first, last, "key")}
    assert by_key["k1"]["cost"] == cost["0-k1-0"] + cost["0-k1-1"] and by_key["k1"]["requests"] == 2
    assert set(by_key) == {"k1", "k2", "k3"}
    by_day = ledger.usage(first, last, "day")
    assert [r["group"] for r in by_day] == ["2026-11-26", "2026-11-27"]
    assert sum(r["cost"] for r in by_day) == sum(cost[e.request_id] for e in entries[:4])
    assert {r["group"] for r in ledger.usage(first, last, "owner")} == {"alice", "bob"}

    # Self-service: only alice's keys, including by model (summed from her entries).
    mine = {r["group"]: r for r in ledger.usage(first, last, "model", key_ids=["k1", "k2"])}
    assert mine["nova-micro"]["cost"] == cost["0-k1-0"] + cost["1-k2-0"] and mine["claude"]["requests"] == 1
    assert [r["group"] for r in ledger.usage(first, last, "day", key_ids=["k1", "k2"])] == ["2026-11-26", "2026-11-27"]


def test_tiny_costs_in_exponent_notation_are_stored_exactly(usage_table, drain) -> None:
    # GIVEN a one-token Titan-priced request: 2E-8 USD, which Decimal writes in exponent form
    cheap = Prices(input=Decimal("2e-08"), output=Decimal(0), cache_read=Decimal(0), cache_write=Decimal(0))
    e = usage_entry(
        request_id="tiny",
        key_id="k9",
        model="titan",
        operation="embedding",
        usage=TokenUsage(input_tokens=1),
        prices=cheap,
    )
    assert str(e.cost) == "2E-8"
    ledger = Ledger(usage_table)
    assert ledger.record(e) and ledger.record(e)
    drain(usage_table)
    assert ledger.aggregate("KEY#k9", "DAY#2026-11-26")["cost"] == Decimal("0.00000002")


def test_the_lambda_function_applies_a_stream_event(usage_table) -> None:
    from chalice.test import Client

    from app import app

    # GIVEN an entry on the stream, as Lambda's event source mapping delivers it (with the window's shardId)
    ledger = Ledger(usage_table)
    ledger.record(entry())
    shard, records = stream_records(usage_table)
    event = json.loads(json.dumps({"Records": records, "shardId": shard}, default=str))
    # WHEN the ledger_aggregator function is invoked THEN it returns the (empty) window state and aggregates
    with Client(app, stage_name="local") as client:
        result = client.lambda_.invoke("ledger_aggregator", event).payload
    assert result == {"state": {}, "batchItemFailures": []}
    assert ledger.aggregate("ALL", "DAY#2026-11-26")["requests"] == 1


def test_a_transaction_whose_answer_was_lost_is_not_applied_twice(usage_table, monkeypatch) -> None:
    from botocore.exceptions import ReadTimeoutError

    from chalicelib.accounting import aggregator as module

    # GIVEN a plan of several chunks, and DynamoDB committing one but the answer never arriving
    ledger, entries, shard, records = six_keys_in_small_transactions(usage_table, monkeypatch)
    real = usage_table.meta.client.transact_write_items
    lost: set[str] = set()

    def lost_answer(**kwargs):
        answer = real(**kwargs)
        kind = "claim" if any("Put" in item for item in kwargs["TransactItems"]) else "chunk"
        if kind not in lost:  # the first claim and the first chunk: committed, then the connection drops
            lost.add(kind)
            raise ReadTimeoutError(endpoint_url="dynamodb")
        return answer

    with mock.patch.object(usage_table.meta.client, "transact_write_items", side_effect=lost_answer):
        module.Aggregator(usage_table).apply(shard, records)  # retried (a timeout is transient)
    assert lost == {"claim", "chunk"}
    # THEN every entry is counted once
    assert [ledger.aggregate(f"KEY#k{i}", "DAY#2026-11-26")["requests"] for i in range(6)] == [1] * 6
    assert ledger.aggregate("ALL", "DAY#2026-11-26")["cost"] == sum((e.cost for e in entries), Decimal(0))


def test_data_written_by_the_previous_design_is_read_as_it_is(usage_table, drain) -> None:
    from bench import baseline_v1 as previous

    # GIVEN three entries the previous design stored (each with its aggregates, in one transaction)
    old = [previous.new_entry(**{**_fields(f"old{n}"), "prices": PRICES, "at": AT}) for n in range(3)]
    for e in old:
        assert previous.Ledger(usage_table).record(e)
    # WHEN two more are billed by this design and the stream is applied
    new = [entry(f"new{n}", input_tokens=5 + n, output_tokens=7) for n in range(2)]
    ledger = Ledger(usage_table)
    for e in new:
        ledger.record(e)
    drain(usage_table)
    # THEN the aggregates hold all five, each once, and the readers see them all
    total = sum((e.cost for e in [*old, *new]), Decimal(0))
    for scope in ("KEY#k1", "OWNER#owner-1", "ALL"):
        assert ledger.aggregate(scope, "MONTH#2026-11")["cost"] == total
        assert ledger.aggregate(scope, "DAY#2026-11-26")["requests"] == 5
    [row] = ledger.usage(date(2026, 11, 26), date(2026, 11, 26), "key")
    assert row["cost"] == total and row["requests"] == 5
    assert len(ledger.entries_for_key("k1")) == 5


def _fields(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "key_id": "k1",
        "owner_sub": "owner-1",
        "model": "nova-micro",
        "bedrock_model_id": "us.amazon.nova-micro-v1:0",
        "operation": "chat",
        "usage": TokenUsage(input_tokens=11, output_tokens=3),
        "latency_ms": 5,
        "status": "ok",
    }


def fallback_entry(**changes: object):
    """An entry a fallback served, with a guardrail's text units in its cost."""
    base = new_entry(
        request_id="fb1",
        key_id="k1",
        owner_sub="o1",
        model="claude-haiku-4-5-global",
        bedrock_model_id="global.anthropic.claude-haiku-4-5-20251001-v1:0",
        operation="chat",
        usage=TokenUsage(input_tokens=10, output_tokens=20),
        prices=PRICES,
        latency_ms=5,
        status="ok",
        at=AT,
        served_by="bedrock/converse/global.anthropic.claude-haiku-4-5-20251001-v1:0",
        served_region="us-east-1",
        requested_model="claude-haiku-4-5",
        guardrail_units={"contentPolicyUnits": 2, "topicPolicyUnits": 2},
        guardrail_usd=Decimal("0.0006"),
    )
    data = base.to_json()
    data.update(changes)
    return base, data


def test_a_fallbacks_entry_keeps_who_served_what_was_asked_and_the_guardrail_charge_exactly() -> None:
    from chalicelib.accounting.ledger import entry_from_item, entry_item

    e, data = fallback_entry()
    # The guardrail's charge is part of the cost, exactly
    assert e.cost == compute_cost(PRICES, e.usage) + Decimal("0.0006")
    # JSON (the reconcile format), the stored item, and reconcile's validation all keep every field
    assert type(e).from_json(json.loads(json.dumps(data))) == e
    assert entry_from_item(entry_item(e)) == e
    line = json.dumps({"level": "ERROR", "event": UNRECORDED_EVENT, "entry": data})
    parsed = parse_lines([line], now=AT)
    assert parsed.entries == [e], parsed
    # An entry of the model asked for names no requested model (nothing fell back)
    same = new_entry(request_id="r", key_id="k", owner_sub="o", model="m", bedrock_model_id="b", operation="chat",
                     usage=TokenUsage(input_tokens=1), prices=PRICES, latency_ms=1, status="ok", at=AT,
                     requested_model="m")  # fmt: skip
    assert same.requested_model == "" and "requested_model" not in entry_item(same)


@pytest.mark.parametrize(
    "changes",
    [
        {"guardrail_usd": "5"},  # more than the whole cost
        {"guardrail_units": {"contentPolicyUnits": -1}},
        {"guardrail_units": {"rm -rf /": 1}},
        {"guardrail_units": {"contentPolicyUnits": True}},
        {"guardrail_units": ["contentPolicyUnits"]},
        {"served_region": "us-east-1\n=HYPERLINK()"},
        {"requested_model": "\u202eevil"},
    ],
)
def test_reconcile_refuses_a_bad_fallback_or_guardrail_field(changes: dict[str, object]) -> None:
    _, data = fallback_entry(**changes)
    parsed = parse_lines([json.dumps({"level": "ERROR", "event": UNRECORDED_EVENT, "entry": data})], now=AT)
    assert parsed.entries == [] and parsed.rejected, parsed


def test_numbers_are_written_in_positional_notation_and_integers_pass_through_untouched() -> None:
    """Every DynamoDB call's numbers are normalised; most are plain integers, which now skip the
    Decimal round trip, and a string attribute is not walked into."""
    from chalicelib.shared.dynamodb import _normalize, plain_number

    for text, expected in [
        ("0", "0"),
        ("15", "15"),
        ("100", "100"),
        ("007", "7"),
        ("-5", "-5"),
        ("1.500", "1.5"),
        ("0E-9", "0"),
        ("2E-8", "0.00000002"),
        ("1.5E+3", "1500"),
        ("１２", "12"),  # a digit that is not ASCII goes through Decimal, as before
        ("abc", "abc"),
    ]:
        assert plain_number(text) == expected, text
    # Past Decimal's 28 digits, an integer is kept exactly (normalize() used to round it).
    assert plain_number("1" * 38) == "1" * 38
    request = {"Item": {"S": {"N": "1E+2"}, "s": {"S": "2E-8"}, "m": {"M": {"l": {"L": [{"N": "0E-9"}]}}}}}
    normalised = {"Item": {"S": {"N": "100"}, "s": {"S": "2E-8"}, "m": {"M": {"l": {"L": [{"N": "0"}]}}}}}
    assert _normalize(request) == normalised


def test_the_plain_client_beside_a_resource_has_its_endpoint_timeouts_and_attempts() -> None:
    # GIVEN the ledger's resource: one botocore attempt (the ledger retries within its deadline)
    from chalicelib.shared.dynamodb import resource

    built = resource(region="eu-west-1", endpoint_url="http://127.0.0.1:9", timeout_seconds=1.5, attempts=1)
    table = built.Table("usage")
    # WHEN the request path asks for the table's plain client
    plain = plain_client(table)
    # THEN it is one per resource, and sends where the resource does, as the resource does:
    # a plain client with botocore's retries would retry inside the ledger's own, past its deadline
    assert plain_client(built.Table("other")) is plain and plain is not table.meta.client
    source = table.meta.client
    assert (plain.meta.region_name, plain.meta.endpoint_url) == ("eu-west-1", "http://127.0.0.1:9")
    assert plain.meta.config.retries == source.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert (plain.meta.config.connect_timeout, plain.meta.config.read_timeout) == (1.5, 1.5)
    assert clients(table) == (source, plain)
    # AND through the resource's connections: a pool of its own would cost a TLS handshake more on a cold start
    assert plain._endpoint.http_session is source._endpoint.http_session
    # AND without botocore's check of every request against its shape (~0.2 ms of a model request:
    # these requests are typed here, and DynamoDB checks each itself); the resource keeps its own
    from botocore.exceptions import EndpointConnectionError, ParamValidationError

    badly_typed = {"TableName": "usage", "Key": {"pk": {"S": "x"}}, "ConsistentRead": "yes"}
    with pytest.raises(ParamValidationError):
        source.get_item(**badly_typed)  # refused before it is sent
    with pytest.raises(EndpointConnectionError):
        plain.get_item(**badly_typed)  # sent (nothing listens there): DynamoDB would refuse it


def test_typed_values_round_trip_exactly_as_the_resource_reads_them(usage_table) -> None:
    # GIVEN an item with every kind of value the stores write (exponent-form numbers included)
    from chalicelib.shared.dynamodb import typed, untyped

    item = {
        "pk": "TEST#typed", "sk": "1", "cost": Decimal("0E-9"), "tiny": Decimal("2E-8"), "count": 12,
        "big": 10**30 + 1, "flag": True, "none": None, "models": ["a", "b"], "tags": {"x", "y"},
        "nested": {"usd": Decimal("1.000000001"), "list": [1, "two"]}, "blob": b"\x00\xff",
    }  # fmt: skip
    # WHEN it is written through the plain client and read back both ways
    plain_client(usage_table).put_item(TableName=usage_table.name, Item=typed(item))
    through_resource = usage_table.get_item(Key={"pk": "TEST#typed", "sk": "1"})["Item"]
    raw = plain_client(usage_table).get_item(TableName=usage_table.name, Key=typed({"pk": "TEST#typed", "sk": "1"}))
    # THEN both read the same values, every number exact (written in positional notation)
    assert untyped(raw["Item"]) == through_resource
    assert through_resource["cost"] == 0 and through_resource["tiny"] == Decimal("0.00000002")
    assert through_resource["big"] == 10**30 + 1 and through_resource["tags"] == {"x", "y"}
    assert through_resource["nested"] == {"usd": Decimal("1.000000001"), "list": [1, "two"]}
    assert raw["Item"]["cost"] == {"N": "0"} and raw["Item"]["tiny"] == {"N": "0.00000002"}
