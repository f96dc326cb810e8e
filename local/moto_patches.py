"""Make moto's DynamoDB behave like DynamoDB where pennyworth depends on it, and stay flat over time.

``apply()`` is idempotent; ``local/moto_server.py`` (``make dev``) and the test
fixtures call it before the first request. Each patch fixes one measured
defect of moto 5.x (``bench/local_dynamodb.py`` shows the before/after):

* **Memory grows with every request** (96 MB → 5.1 GB over ~670 chat requests).
  moto's ``BaseModel.__new__`` appends every model instance it ever creates to
  a class-level ``instances_tracked`` list, for its ``/moto-api/data.json``
  dashboard, and never lets go. DynamoDB creates instances per request: each
  ``UpdateItem`` deep-copies the item it changes, and each
  ``TransactWriteItems`` deep-copies *every table it touches* for rollback, so
  every transaction pins a full copy of the usage table. DynamoDB's models
  are no longer tracked.
* **Time per request grows with the table** (~50 ms → ~180 ms): that whole-table
  copy. Transactions now snapshot only the items they write, and put those
  back when the transaction is cancelled.
* **Numbers moto cannot read back.** moto parses a number without a ``.`` as an
  integer and prints sums with ``Decimal``'s exponent form, so ``0.1 + -0.1``
  is stored as ``0E-1`` and every later ``ADD`` on that attribute fails: one
  released reservation broke a key for good. Arithmetic parses every number
  as a ``Decimal`` (38 digits, DynamoDB's precision) and stores the result in
  positional notation, as DynamoDB does.
* **The stream keeps every record and every shard iterator forever.** Records
  past ``STREAM_RECORDS_KEPT`` are trimmed (DynamoDB keeps 24 hours), and an
  iterator is forgotten once ``GetRecords`` has used it (each call returns the
  next one).
"""

from __future__ import annotations

import copy
import decimal
import functools
from typing import Any

#: Stream records kept per table: minutes of make dev traffic for the local aggregator (draining every
#: 0.25 s) to catch up after a restart, and small enough for local/moto_state.py to save every second.
STREAM_RECORDS_KEPT = 5_000
_APPLIED = False


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``BaseModel.__new__`` without the instance tracking (which keeps every instance forever)."""
    return object.__new__(cls)


def apply() -> None:
    """Install every patch once per process."""
    global _APPLIED
    if _APPLIED:
        return
    _stop_tracking_dynamodb_models()
    _plain_number_arithmetic()
    _transactions_copy_items_not_tables()
    _bounded_streams()
    _APPLIED = True


def _stop_tracking_dynamodb_models() -> None:
    import moto.dynamodb.models  # noqa: F401 - registers the model classes
    import moto.dynamodbstreams.models  # noqa: F401
    from moto.core.base_backend import model_data

    # Not the tracking lists themselves: moto replaces them with fresh ones on every reset.
    for service in ("dynamodb", "dynamodbstreams"):
        for model in model_data.get(service, {}).values():
            model.__new__ = _untracked_new  # type: ignore[method-assign]
            model.instances_tracked = []


def _plain_number_arithmetic() -> None:
    from moto.dynamodb.models.dynamo_type import DDBType, DynamoType

    from chalicelib.shared.dynamodb import plain_number

    context = decimal.Context(prec=38)
    original_add, original_sub = DynamoType.__add__, DynamoType.__sub__

    def arithmetic(original: Any, operation: Any) -> Any:
        @functools.wraps(original)
        def compute(self: DynamoType, other: DynamoType) -> DynamoType:
            if self.type != DDBType.NUMBER or other.type != DDBType.NUMBER:
                return original(self, other)  # moto's own type errors
            result = operation(context, decimal.Decimal(self.value), decimal.Decimal(other.value))
            return DynamoType({DDBType.NUMBER: plain_number(str(result))})

        return compute

    DynamoType.__add__ = arithmetic(original_add, decimal.Context.add)
    DynamoType.__sub__ = arithmetic(original_sub, decimal.Context.subtract)


class _TablesByReference:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: tables are not copied."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _transactions_copy_items_not_tables() -> None:
    import moto.dynamodb.models as backend_module
    from moto.dynamodb.models import DynamoDBBackend

    backend_module.copy = _TablesByReference()
    original = DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = _snapshot(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            _restore(saved)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items


def _snapshot(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any, int | None]]:
    """(table, hash, range, copy of the item or None, stream length) for every item a transaction writes."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved = []
    for entry in transact_items[:100]:
        if len(entry) != 1:
            continue
        ((kind, operation),) = entry.items()
        if kind == "ConditionCheck" or not isinstance(operation, dict):
            continue
        try:
            table = backend.get_table(operation["TableName"])
            attributes = operation["Item"] if kind == "Put" else operation["Key"]
            hash_key = DynamoType(attributes[table.hash_key_attr])
            range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
        except Exception:  # noqa: BLE001, S112 - malformed: moto's own validation answers it
            continue
        current = _peek(table, hash_key, range_key)
        shard = table.stream_shard
        saved.append((table, hash_key, range_key, copy.deepcopy(current), len(shard.items) if shard else None))
    return saved


def _peek(table: Any, hash_key: Any, range_key: Any) -> Any:
    # Not table.get_item: on a hash+range table its defaultdict would keep an empty entry.
    bucket = table.items.get(hash_key)
    if range_key is None:
        return bucket
    return bucket.get(range_key) if bucket else None


def _restore(saved: list[tuple[Any, Any, Any, Any, int | None]]) -> None:
    for table, hash_key, range_key, item, stream_length in reversed(saved):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        else:
            bucket = table.items.setdefault(hash_key, {})
            if item is None:
                bucket.pop(range_key, None)
                if not bucket:
                    table.items.pop(hash_key, None)
            else:
                bucket[range_key] = item
        if stream_length is not None and table.stream_shard is not None:
            del table.stream_shard.items[stream_length:]


def _bounded_streams() -> None:
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    original_add = StreamShard.add

    @functools.wraps(original_add)
    def add(self: Any, old: Any, new: Any) -> None:
        original_add(self, old, new)
        excess = len(self.items) - STREAM_RECORDS_KEPT
        if excess > 0:
            del self.items[:excess]
            self.starting_sequence_number += excess

    def get(self: Any, start: int, quantity: int) -> list[dict[str, Any]]:
        # A position already trimmed reads from the oldest record kept (DynamoDB: TrimmedDataAccess).
        offset = max(0, start - self.starting_sequence_number)
        return [record.to_json() for record in self.items[offset : offset + quantity]]

    original_get_records = DynamoDBStreamsBackend.get_records

    @functools.wraps(original_get_records)
    def get_records(self: Any, iterator_arn: str, limit: int) -> dict[str, Any]:
        result = original_get_records(self, iterator_arn, limit)
        self.shard_iterators.pop(iterator_arn, None)
        return result

    StreamShard.add = add
    StreamShard.get = get
    DynamoDBStreamsBackend.get_records = get_records
