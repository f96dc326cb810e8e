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
* **Every Query sorts the whole table.** moto's ``Query`` starts from every item
  of the table, sorted by key with its slow typed comparisons, and only then keeps
  the partition asked for: 4-6 s per query at 150,000 items, so every console view
  over a realistic ledger took seconds. A query now starts from the partition it
  names (a table query) or from the items whose index key matches (an index
  query), as DynamoDB reads only that partition; moto's own code does the rest.
"""

from __future__ import annotations

import copy
import decimal
import functools
import inspect
import threading
import weakref
from typing import Any

#: Stream records kept per table: minutes of make dev traffic for the local aggregator (draining every
#: 0.25 s) to catch up after a restart, and small enough for local/moto_state.py to save every second.
STREAM_RECORDS_KEPT = 5_000
_APPLIED = False


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """``BaseModel.__new__`` without the instance tracking (which keeps every instance forever)."""
    return object.__new__(cls)


#: Patches that can be left out (``local/moto_server.py --skip-patch``): a benchmark's "before".
OPTIONAL = ("queries",)


def apply(*, skip: tuple[str, ...] = ()) -> None:
    """Install every patch once per process (``skip``: names from ``OPTIONAL`` to leave out)."""
    global _APPLIED
    if _APPLIED:
        return
    _stop_tracking_dynamodb_models()
    _plain_number_arithmetic()
    _transactions_copy_items_not_tables()
    _bounded_streams()
    if "queries" not in skip:
        _queries_read_their_partition()
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


_QUERY = threading.local()
_RANGE_TESTS = {
    "EQ": lambda v, a: v == a[0],
    "LT": lambda v, a: v < a[0],
    "LE": lambda v, a: v <= a[0],
    "GT": lambda v, a: v > a[0],
    "GE": lambda v, a: v >= a[0],
    "BETWEEN": lambda v, a: a[0] <= v <= a[1],
    "BEGINS_WITH": lambda v, a: isinstance(v, str) and v.startswith(a[0]),
}


class _IndexItems:
    """One index of one table as DynamoDB keeps it: items by hash key, each bucket in the index's order.

    Built on the first query of the index, then kept up to date write by write, so a query reads its
    bucket (sorted again only after it changed) instead of every item of the table.
    """

    def __init__(self, table: Any, index_name: str) -> None:
        index = table.get_index(index_name)
        self.hash_names = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        self.range_names = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
        self.order = [*self.range_names, *_primary_names(table)]
        self._buckets: dict[tuple[Any, ...], dict[tuple[Any, ...], Any]] = {}
        self._sorted: dict[tuple[Any, ...], list[Any]] = {}
        self._where: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for item in _every_item(table):
            self.place(_primary(table, item), item)

    def bucket_of(self, item: Any) -> tuple[Any, ...] | None:
        attrs = item.attrs
        if not all(name in attrs for name in (*self.hash_names, *self.range_names)):
            return None  # not in the index (DynamoDB's sparse indexes)
        return tuple((attrs[name].type, attrs[name].value) for name in self.hash_names)

    def place(self, primary: tuple[Any, ...], item: Any | None) -> None:
        """Put the item stored under ``primary`` (None: deleted) where the index has it now."""
        old = self._where.pop(primary, None)
        if old is not None:
            self._buckets[old].pop(primary, None)
            self._sorted.pop(old, None)
        new = self.bucket_of(item) if item is not None else None
        if new is not None:
            self._buckets.setdefault(new, {})[primary] = item
            self._where[primary] = new
            self._sorted.pop(new, None)

    def items(self, bucket: tuple[Any, ...]) -> list[Any]:
        if bucket not in self._sorted:
            found = self._buckets.get(bucket, {}).values()
            self._sorted[bucket] = sorted(found, key=lambda item: tuple(_raw(item.attrs[n]) for n in self.order))
        return self._sorted[bucket]


#: The indexes queried so far, per table (forgotten with the table; never pickled with moto's state).
_INDEXES: weakref.WeakKeyDictionary[Any, dict[str, _IndexItems]] = weakref.WeakKeyDictionary()


def _queries_read_their_partition() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items
    signature = inspect.signature(original_query)

    @functools.wraps(original_query)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        candidates = _query_candidates(self, signature.bind(self, *args, **kwargs).arguments)
        if candidates is None:
            return original_query(self, *args, **kwargs)
        previous = getattr(_QUERY, "scope", None)
        _QUERY.scope = (self, candidates)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _QUERY.scope = previous

    @functools.wraps(original_all_items)
    def all_items(self: Any) -> Any:
        scope = getattr(_QUERY, "scope", None)
        if scope is not None and scope[0] is self:
            return scope[1]
        return original_all_items(self)

    Table.query = query
    Table.all_items = all_items
    # Every write reaches an item through these (BatchWriteItem and transactions included).
    for name in ("put_item", "update_item", "delete_item"):
        setattr(DynamoDBBackend, name, _indexed_write(getattr(DynamoDBBackend, name)))
    original_transact = DynamoDBBackend.transact_write_items
    original_update_table = DynamoDBBackend.update_table

    @functools.wraps(original_transact)
    def transact_write_items(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original_transact(self, *args, **kwargs)
        except Exception:
            _INDEXES.clear()  # rolled back by putting items back directly: build the indexes again
            raise

    @functools.wraps(original_update_table)
    def update_table(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        _INDEXES.pop(self.get_table(name), None)  # an index added or removed
        return original_update_table(self, name, *args, **kwargs)

    DynamoDBBackend.transact_write_items = transact_write_items
    DynamoDBBackend.update_table = update_table


def _indexed_write(method: Any) -> Any:
    @functools.wraps(method)
    def write(self: Any, table_name: str, attributes: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        table = self.tables.get(table_name)
        indexes = _INDEXES.get(table) if table is not None else None
        if not indexes:
            return method(self, table_name, attributes, *args, **kwargs)
        try:
            return method(self, table_name, attributes, *args, **kwargs)
        finally:
            # ``attributes`` is the item (PutItem) or its key (UpdateItem, DeleteItem): the key either way.
            from moto.dynamodb.models.dynamo_type import DynamoType

            try:
                hash_key = DynamoType(attributes[table.hash_key_attr])
                range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError):
                pass  # refused by moto's validation: nothing was written
            else:
                stored = _peek(table, hash_key, range_key)
                primary = (hash_key.value,) if range_key is None else (hash_key.value, range_key.value)
                for index in indexes.values():
                    index.place(primary, stored)

    return write


def _primary_names(table: Any) -> list[str]:
    return [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]


def _primary(table: Any, item: Any) -> tuple[Any, ...]:
    return tuple(item.attrs[name].value for name in _primary_names(table))


def _every_item(table: Any) -> list[Any]:
    if not table.range_key_attr:
        return list(table.items.values())
    return [item for partition in table.items.values() for item in partition.values()]


def _raw(value: Any) -> Any:
    """A key value as Python orders it the way DynamoDB does (numbers as numbers, strings as text)."""
    if value.type == "N":
        return decimal.Decimal(value.value)
    return value.value


def _query_candidates(table: Any, arguments: dict[str, Any]) -> list[Any] | None:
    """The items a query can return, in its order, cut to its page (None: let moto look at every item).

    moto then runs its own query over these: the conditions, the start key, the limit and the
    filters are still moto's, so the answer is the one a full pass gives, only sooner.
    """
    index_name = arguments.get("index_name")
    if index_name:
        indexes = _INDEXES.setdefault(table, {})
        if index_name not in indexes:
            indexes[index_name] = _IndexItems(table, index_name)
        index = indexes[index_name]
        conditions = dict(arguments.get("hash_key_conditions") or [])
        if sorted(conditions) != sorted(index.hash_names) or len(index.range_names) > 1:
            return None
        bucket = tuple((conditions[name].type, conditions[name].value) for name in index.hash_names)
        range_name = index.range_names[0] if index.range_names else None
        return _page_of(index.items(bucket), index.order, range_name, arguments)
    hash_key = arguments.get("hash_key")
    if hash_key is None:
        return None
    partition = table.items.get(hash_key)
    if partition is None:
        return []
    if not table.range_key_attr:
        return [partition]
    items = sorted(partition.values(), key=lambda item: _raw(item.attrs[table.range_key_attr]))
    return _page_of(items, [table.range_key_attr], table.range_key_attr, arguments)


def _page_of(items: list[Any], order: list[str], range_name: str | None, arguments: dict[str, Any]) -> list[Any]:
    """The part of ``items`` (in key order) moto's loop over them would look at, nothing more.

    That is the items past the start key that meet the key condition, up to the ``limit``-th,
    and the item after it, whatever it is: moto (like DynamoDB) then ends the page with a
    ``LastEvaluatedKey``. Items outside the key condition are dropped; near 1 MB of results
    moto's size cut could fall one item apart, which no query here comes close to.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    forward = arguments.get("scan_index_forward") is not False
    ordered = items if forward else items[::-1]
    start = arguments.get("exclusive_start_key")
    if start:
        if not all(name in start for name in order):
            return ordered
        position = tuple(_raw(DynamoType(start[name])) for name in order)

        def after(item: Any) -> bool:
            here = tuple(_raw(item.attrs[name]) for name in order)
            return here > position if forward else here < position

        ordered = [item for item in ordered if after(item)]
    comparison = arguments.get("range_comparison")
    test = None
    if comparison and range_name is not None:
        test = _RANGE_TESTS.get(str(comparison).upper())
        if test is None:
            return ordered
    bounds = [_raw(value) for value in arguments.get("range_objs") or []]
    limit = arguments.get("limit")
    page: list[Any] = []
    matched = 0
    for item in ordered:
        if isinstance(limit, int) and matched == limit:
            page.append(item)  # moto ends the page here, with a LastEvaluatedKey
            break
        if test is None or test(_raw(item.attrs[range_name]), bounds):
            page.append(item)
            matched += 1
    return page
