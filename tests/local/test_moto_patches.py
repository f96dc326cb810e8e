"""local/moto_patches.py: moto behaves like DynamoDB where we depend on it, and keeps nothing per request."""

from __future__ import annotations

from decimal import Decimal

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
    names = {"KeysTable": "old-keys", "UsageTable": "old-usage", "AuditTable": "old-audit"}
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
