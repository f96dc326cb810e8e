"""The local stack's tables, as the integration tests read and seed them (keys, ledger entries)."""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib.accounting.ledger import Ledger
from chalicelib.keys.store import KeyStore
from local.devstack import TABLE_NAMES
from tests.waiting import eventually


def table(stack: Any, name: str) -> Any:
    """The stack's ``name`` table (``KeysTable``, ``UsageTable``, ``AuditTable``) on its moto server."""
    dynamodb = boto3.resource(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=stack.aws_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return dynamodb.Table(TABLE_NAMES[name])


def new_key(stack: Any, owner_sub: str, **fields: Any) -> tuple[str, str]:
    """A fresh key of ``owner_sub`` (so its ledger holds only one test's calls): its id and secret."""
    record, plaintext = KeyStore(table(stack, "KeysTable")).create(owner_sub=owner_sub, **fields)
    return record.key_id, plaintext


def ledger(stack: Any) -> Ledger:
    return Ledger(table(stack, "UsageTable"))


def entries(stack: Any, key_id: str, count: int | None = None) -> list[dict[str, Any]]:
    """The key's ledger entries, newest last, as stored; with ``count``, once at least that many are.

    A model answer's bill is stored just after the answer has left (the caller does not wait for
    it): a test that has its answer waits for the entry it expects.
    """
    if count is None:
        return ledger(stack).entries_for_key(key_id)
    return eventually(lambda: ledger(stack).entries_for_key(key_id), lambda found: len(found) >= count)
