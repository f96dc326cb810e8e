"""The contention model (local/dynamo_model.py) itself: it must bite exactly where DynamoDB does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.shared.dynamodb import clients
from local.dynamo_model import ContentionModel, item_size, write_units
from local.simclock import Sim


@pytest.fixture
def world(usage_table) -> tuple[Sim, ContentionModel, Any]:
    sim = Sim()
    model = ContentionModel(sim, hold_seconds=0.010, latency={"TransactWriteItems": 0.002, "UpdateItem": 0.001})
    model.install(*clients(usage_table))
    return sim, model, usage_table


def transaction(table, *pks: str) -> None:
    table.meta.client.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": table.name,
                    "Key": {"pk": pk, "sk": "X"},
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": 1},
                }
            }
            for pk in pks
        ]
    )


def at(sim: Sim, when: float, action) -> dict[str, Any]:
    """Run ``action`` at virtual time ``when``; what happened."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            action()
            outcome["ok"] = True
        except ClientError as exc:
            outcome["error"] = exc.response["Error"]["Code"]
            outcome["reasons"] = [r["Code"] for r in exc.response.get("CancellationReasons", [])]

    sim.spawn(run, at=when)
    return outcome


@pytest.mark.parametrize(
    ("second_starts", "conflicts"),
    [(0.0, True), (0.005, True), (0.0099, True), (0.0101, False), (0.5, False)],
)
def test_a_transaction_conflicts_exactly_while_another_holds_its_item(world, second_starts, conflicts) -> None:
    sim, model, table = world
    first = at(sim, 0.0, lambda: transaction(table, "A", "B"))
    second = at(sim, second_starts, lambda: transaction(table, "C", "B"))
    sim.run()
    assert first == {"ok": True}
    if conflicts:
        assert second["error"] == "TransactionCanceledException"
        assert second["reasons"] == ["None", "TransactionConflict"]
        assert model.stats.conflicts == 1
    else:
        assert second == {"ok": True} and model.stats.conflicts == 0


def test_transactions_on_other_items_never_conflict(world) -> None:
    sim, model, table = world
    outcomes = [at(sim, n * 0.001, lambda n=n: transaction(table, f"K{n}", f"L{n}")) for n in range(20)]
    sim.run()
    assert all(o == {"ok": True} for o in outcomes) and model.stats.conflicts == 0


def test_a_plain_write_on_a_held_item_fails_and_after_the_hold_succeeds(world) -> None:
    sim, model, table = world

    def update() -> None:
        table.update_item(
            Key={"pk": "B", "sk": "X"}, UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": 1}
        )

    at(sim, 0.0, lambda: transaction(table, "A", "B"))
    during = at(sim, 0.004, update)
    after = at(sim, 0.011, update)
    elsewhere = at(sim, 0.004, lambda: transaction(table, "Z"))
    sim.run()
    assert during == {"error": "TransactionConflictException", "reasons": []}
    assert after == {"ok": True} and elsewhere == {"ok": True}
    # The failed write changed nothing: two successful increments of B.
    assert table.get_item(Key={"pk": "B", "sk": "X"})["Item"]["n"] == 2


def test_reads_never_conflict(world) -> None:
    sim, _, table = world
    at(sim, 0.0, lambda: transaction(table, "A"))
    read = at(sim, 0.001, lambda: table.get_item(Key={"pk": "A", "sk": "X"}))
    sim.run()
    assert read == {"ok": True}


def test_an_item_is_throttled_past_1000_write_units_a_second_and_recovers(aws) -> None:
    import boto3
    from botocore.config import Config

    # GIVEN a client that does not retry (botocore would retry throttling, as DynamoDB's SDKs do)
    resource = boto3.resource("dynamodb", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))
    usage_table = resource.Table("pennyworth-local-usage")
    sim = Sim()
    model = ContentionModel(sim, latency={"PutItem": 0.0001})
    model.install(*clients(usage_table))
    outcomes = []

    def hammer() -> None:
        # 2,000 single-unit writes of one item within 0.2 s: 10,000 units/s offered.
        for _ in range(2000):
            try:
                usage_table.put_item(Item={"pk": "HOT", "sk": "X", "v": 1})
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])

    sim.spawn(hammer)
    sim.run()
    throttled = outcomes.count("ProvisionedThroughputExceededException")
    # One second of burst (1,000 units) plus 0.2 s of refill (200) got through, give or take a write.
    assert abs(outcomes.count("ok") - 1200) <= 2 and model.stats.throttles == throttled == 2000 - outcomes.count("ok")
    # A second later the bucket is full again.
    sim.spawn(lambda: usage_table.put_item(Item={"pk": "HOT", "sk": "X", "v": 2}), at=sim.now() + 1)
    sim.run()
    assert usage_table.get_item(Key={"pk": "HOT", "sk": "X"})["Item"]["v"] == 2


def test_botocore_retries_throttling_in_virtual_time(usage_table) -> None:
    from local.dynamo_model import virtual_botocore_sleeps

    # GIVEN the SDK's default retries (throttling is retried with backoff) and an item at its limit
    sim = Sim()
    model = ContentionModel(sim, item_wcu_per_second=10, latency={"PutItem": 0.0001})
    model.install(*clients(usage_table))
    done = []

    def writes() -> None:
        for n in range(30):
            usage_table.put_item(Item={"pk": "HOT", "sk": "X", "v": n})
            done.append(n)

    with virtual_botocore_sleeps(sim):
        sim.spawn(writes)
        sim.run()
    # THEN every write landed, after throttles retried with virtual backoffs (seconds of virtual time)
    assert len(done) == 30 and model.stats.throttles > 0 and sim.now() > 1


def test_capacity_is_counted_as_return_consumed_capacity_reports_it(usage_table) -> None:
    sim = Sim()
    model = ContentionModel(sim)
    model.install(*clients(usage_table))
    big = "x" * 1500  # a 1.5 KB item: 2 write units

    def calls() -> None:
        usage_table.put_item(Item={"pk": "P", "sk": "1", "blob": big})
        transaction(usage_table, "T1", "T2")  # two small items in a transaction: 2 × 2 units
        usage_table.put_item(Item={"pk": "G", "sk": "1", "gsi1pk": "DAY#x", "gsi1sk": "ALL"})  # + one index unit
        usage_table.get_item(Key={"pk": "P", "sk": "1"}, ConsistentRead=True)
        usage_table.get_item(Key={"pk": "P", "sk": "1"})

    sim.spawn(calls)
    sim.run()
    assert model.stats.write_units == 2 + 4 + 1
    assert model.stats.index_write_units == 1
    assert model.stats.read_units == 1 + 0.5
    assert dict(model.stats.calls) == {"PutItem": 2, "TransactWriteItems": 1, "GetItem": 2}


def test_item_size_follows_dynamodbs_rules() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits: 3 bytes + 1
    assert item_size({"m": {"M": {"a": {"S": "b"}}}}) == 1 + 3 + 1 + 1 + 1
    assert write_units(None, {"pk": {"S": "x" * 1023}}) == 1 + 1  # 2 + 1023 bytes: over one KB
    assert write_units({"pk": {"S": "x" * 2000}}, {"pk": {"S": "x"}}) == 2  # the larger image counts


def test_the_stream_records_every_write_by_shard_in_order(world) -> None:
    sim, model, table = world
    sim.spawn(lambda: [table.put_item(Item={"pk": f"K{n}", "sk": "1", "v": Decimal(n)}) for n in range(8)])
    sim.run()
    assert [r.event["eventName"] for r in model.stream] == ["INSERT"] * 8
    sequences = [r.sequence for r in model.stream]
    assert sequences == sorted(sequences) and len(set(sequences)) == 8
    assert {r.shard for r in model.stream} <= {f"shardId-{n:04d}" for n in range(model.shards)}
