"""local/moto_patches.py: moto behaves like DynamoDB where we depend on it, and keeps nothing per request."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError


def test_arithmetic_never_stores_a_number_moto_cannot_read_back(usage_table) -> None:
    # GIVEN amounts that cancel out exactly (a reservation given back) and tiny ones (one Titan token)
    key = {"pk": "AGG#KEY#k", "sk": "MONTH#2026-11"}
    for amount in ("0.000000123", "-0.000000123", "0.00000002", "-0.00000002", "1"):
        usage_table.update_item(
            Key=key, UpdateExpression="ADD committed :v", ExpressionAttributeValues={":v": Decimal(amount)}
        )
    # THEN every result was stored in positional notation, and the last ADD still worked
    assert usage_table.get_item(Key=key)["Item"]["committed"] == 1


def test_an_item_stored_in_exponent_form_before_the_fix_heals(usage_table) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    # GIVEN local state saved by an older stack: committed stored as "0E-9"
    usage_table.put_item(Item={"pk": "AGG#KEY#k", "sk": "MONTH#2026-11", "committed": 1})
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(usage_table.name)
    item = table.items[DynamoType({"S": "AGG#KEY#k"})][DynamoType({"S": "MONTH#2026-11"})]
    item.attrs["committed"] = DynamoType({"N": "0E-9"})
    # WHEN the key is used again THEN the conditional ADD works (it used to fail forever)
    usage_table.update_item(
        Key={"pk": "AGG#KEY#k", "sk": "MONTH#2026-11"},
        UpdateExpression="ADD committed :v",
        ConditionExpression="committed <= :room",
        ExpressionAttributeValues={":v": Decimal("0.5"), ":room": Decimal("1")},
    )
    assert usage_table.get_item(Key={"pk": "AGG#KEY#k", "sk": "MONTH#2026-11"})["Item"]["committed"] == Decimal("0.5")


def test_transactions_keep_no_copies_and_still_roll_back(usage_table) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import Table

    # GIVEN a table of 500 items
    with usage_table.batch_writer() as batch:
        for n in range(500):
            batch.put_item(Item={"pk": f"KEY#{n}", "sk": "REQ#1", "cost": n})
    client = usage_table.meta.client
    update = {
        "Update": {
            "TableName": usage_table.name,
            "Key": {"pk": "AGG#ALL", "sk": "DAY#1"},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": 1},
        }
    }
    # WHEN 50 transactions commit and one is cancelled
    for _ in range(50):
        client.transact_write_items(TransactItems=[update])
    refused = {
        "Put": {
            "TableName": usage_table.name,
            "Item": {"pk": "KEY#1", "sk": "REQ#1"},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[update, refused])
    # THEN the cancelled one changed nothing, and moto holds no instance it created on the way
    assert usage_table.get_item(Key={"pk": "AGG#ALL", "sk": "DAY#1"})["Item"]["n"] == 50
    assert usage_table.get_item(Key={"pk": "KEY#1", "sk": "REQ#1"})["Item"]["cost"] == 1
    assert len(Item.instances_tracked) == 0 and len(Table.instances_tracked) == 0
    assert DynamoDBBackend.transact_write_items.__wrapped__  # the snapshotting wrapper is in place


def test_stream_records_are_bounded(usage_table, monkeypatch) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from local import moto_patches

    monkeypatch.setattr(moto_patches, "STREAM_RECORDS_KEPT", 30)
    for n in range(100):
        usage_table.put_item(Item={"pk": f"KEY#{n}", "sk": "REQ#1"})
    shard = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(usage_table.name).stream_shard
    assert len(shard.items) == 30
    # The records kept are the newest, still numbered as they were.
    newest = shard.get(shard.starting_sequence_number, 100)
    assert newest[-1]["dynamodb"]["Keys"]["pk"] == {"S": "KEY#99"}


def test_a_usage_table_saved_before_its_stream_gets_one_at_the_next_start(aws) -> None:
    import boto3

    from local import bootstrap
    from local.stream_aggregator import drain
    from tests.factories import usage_entry

    # GIVEN local state from before the stream design: the usage table without a stream
    client = boto3.client("dynamodb", region_name="us-east-1")
    names = {
        "KeysTable": "old-keys",
        "UsageTable": "old-usage",
        "AuditTable": "old-audit",
        "CatalogTable": "old-catalog",
    }
    names["CatalogTable"] = "old-catalog"
    bootstrap.create_tables(client, names, streams=False)
    assert "StreamSpecification" not in client.describe_table(TableName="old-usage")["Table"]
    # WHEN make dev starts again on that state THEN the table gets its stream, and billing aggregates
    bootstrap.create_tables(client, names)
    assert client.describe_table(TableName="old-usage")["Table"]["StreamSpecification"]["StreamEnabled"]
    from chalicelib.accounting.ledger import Ledger

    table = boto3.resource("dynamodb", region_name="us-east-1").Table("old-usage")
    Ledger(table).record(usage_entry())
    assert drain(table) >= 1
    assert Ledger(table).aggregate("ALL", "MONTH#2026-11")["requests"] == 1


def test_queries_answer_as_a_full_pass_does_only_sooner(usage_table) -> None:
    """The partition shortcut changes how fast moto answers a Query, never what it answers."""
    import random

    from moto.dynamodb.models.table import Table

    # GIVEN partitions of entries (some in the by-period index, with ties on its sort key) and other items
    rng = random.Random(19)
    with usage_table.batch_writer() as batch:
        for n in range(400):
            item = {"pk": f"KEY#{n % 7}", "sk": f"REQ#2026-11-{1 + n % 28:02d}T0{n % 10}#{n:04d}", "n": n}
            if n % 3:
                item.update(gsi1pk=f"LOG#{n % 4}", gsi1sk=f"2026-11-{1 + n % 9:02d}")
            batch.put_item(Item=item)
    queries = []
    for _ in range(120):
        index = rng.random() < 0.5
        query: dict[str, Any] = {"ScanIndexForward": rng.random() < 0.5, "Limit": rng.choice([1, 3, 10, 50])}
        if index:
            query.update(IndexName="by-period", ExpressionAttributeValues={":h": f"LOG#{rng.randrange(5)}"})
            condition, sort_key, low, high = "gsi1pk = :h", "gsi1sk", "2026-11-02", "2026-11-06"
        else:
            query["ExpressionAttributeValues"] = {":h": f"KEY#{rng.randrange(8)}"}
            condition, sort_key, low, high = "pk = :h", "sk", "REQ#2026-11-05", "REQ#2026-11-20"
        shape = rng.choice(["", "between", "lt", "begins"])
        if shape == "between":
            condition += f" AND {sort_key} BETWEEN :lo AND :hi"
            query["ExpressionAttributeValues"].update({":lo": low, ":hi": high})
        elif shape == "lt":
            condition += f" AND {sort_key} < :hi"
            query["ExpressionAttributeValues"][":hi"] = high
        elif shape == "begins":
            condition += f" AND begins_with({sort_key}, :lo)"
            query["ExpressionAttributeValues"][":lo"] = low[:-1]
        if rng.random() < 0.3:
            query.update(FilterExpression="n > :min")
            query["ExpressionAttributeValues"][":min"] = rng.randrange(400)
        queries.append({**query, "KeyConditionExpression": condition})

    def every_page(query: dict[str, Any]) -> list[Any]:
        pages, start = [], None
        while True:
            page = usage_table.query(**query, **({"ExclusiveStartKey": start} if start else {}))
            pages.append(([item["n"] for item in page["Items"]], page["Count"], page["ScannedCount"]))
            start = page.get("LastEvaluatedKey")
            if not start:
                return pages

    patched = [every_page(query) for query in queries]
    # WHEN the same queries run through moto's own query (every item of the table, sorted)
    shortcut = (Table.query, Table.all_items)
    Table.query, Table.all_items = Table.query.__wrapped__, Table.all_items.__wrapped__
    try:
        reference = [every_page(query) for query in queries]
    finally:
        Table.query, Table.all_items = shortcut
    # THEN every page is the same: items, counts and where each page ends
    assert patched == reference
    assert sum(len(pages) for pages in patched) > len(queries)  # paging was exercised


def test_an_index_query_sees_every_kind_of_write_at_once(usage_table) -> None:
    client = usage_table.meta.client

    def logged() -> list[str]:
        page = usage_table.query(
            IndexName="by-period", KeyConditionExpression="gsi1pk = :h", ExpressionAttributeValues={":h": "LOG#0"}
        )
        return [item["sk"] for item in page["Items"]]

    usage_table.put_item(Item={"pk": "KEY#a", "sk": "REQ#1", "gsi1pk": "LOG#0", "gsi1sk": "1"})
    assert logged() == ["REQ#1"]
    usage_table.update_item(
        Key={"pk": "KEY#a", "sk": "REQ#2"},
        UpdateExpression="SET gsi1pk = :h, gsi1sk = :s",
        ExpressionAttributeValues={":h": "LOG#0", ":s": "2"},
    )
    assert logged() == ["REQ#1", "REQ#2"]
    item = {"pk": "KEY#b", "sk": "REQ#0", "gsi1pk": "LOG#0", "gsi1sk": "0"}
    client.transact_write_items(TransactItems=[{"Put": {"TableName": usage_table.name, "Item": item}}])
    assert logged() == ["REQ#0", "REQ#1", "REQ#2"]
    with usage_table.batch_writer() as batch:
        batch.delete_item(Key={"pk": "KEY#a", "sk": "REQ#1"})
    assert logged() == ["REQ#0", "REQ#2"]
    usage_table.delete_item(Key={"pk": "KEY#b", "sk": "REQ#0"})
    assert logged() == ["REQ#2"]
    # An item moved to another partition of the index leaves this one
    usage_table.update_item(
        Key={"pk": "KEY#a", "sk": "REQ#2"},
        UpdateExpression="SET gsi1pk = :h",
        ExpressionAttributeValues={":h": "LOG#1"},
    )
    assert logged() == []
    # A cancelled transaction leaves nothing behind in the index either
    put = {
        "Put": {"TableName": usage_table.name, "Item": {"pk": "KEY#c", "sk": "REQ#9", "gsi1pk": "LOG#0", "gsi1sk": "9"}}
    }
    refused = {
        "ConditionCheck": {
            "TableName": usage_table.name,
            "Key": {"pk": "KEY#a", "sk": "REQ#2"},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[put, refused])
    assert logged() == []


def test_local_state_saved_before_an_index_gets_it_at_the_next_start(aws) -> None:
    import boto3

    from chalicelib.keys.store import KeyStore
    from local import bootstrap

    # GIVEN make dev's keys table from before the by-status index, with a key in it
    client = boto3.client("dynamodb", region_name="us-east-1")
    names = {
        "KeysTable": "old-keys",
        "UsageTable": "old-usage",
        "AuditTable": "old-audit",
        "CatalogTable": "old-catalog",
    }
    bootstrap.create_tables(client, names)
    client.update_table(TableName="old-keys", GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-status"}}])
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("old-keys")
    record, _ = KeyStore(table).create(owner_sub="o", name="from before")
    # WHEN make dev starts again on that state THEN the index is added, and the old key listed by it
    bootstrap.create_tables(client, names)
    indexes = {i["IndexName"] for i in client.describe_table(TableName="old-keys")["Table"]["GlobalSecondaryIndexes"]}
    assert indexes == {"by-owner", "by-status"}
    assert [r.key_id for r in KeyStore(table).list_keys().items] == [record.key_id]
