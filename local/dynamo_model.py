"""A model of how DynamoDB behaves under contention, around moto, for tests and benchmarks.

moto applies each request atomically and in order, with no conflicts, no
throttling and no cost, so code that serialises a whole deployment on one item
passes every test. ``ContentionModel`` sits in front of moto on a boto3
client (a botocore ``before-send`` handler: the code under test is unchanged
and botocore parses the errors it returns, retries included) and, in virtual
time (``local/simclock.py``), adds what DynamoDB documents:

* **Transaction conflicts.** A ``TransactWriteItems`` holds its items for
  ``hold_seconds`` from its start. Another transaction touching one of them in
  that time is cancelled (``TransactionCanceledException``, reason
  ``TransactionConflict`` on that item); a plain ``PutItem``/``UpdateItem``/
  ``DeleteItem`` on one of them fails with ``TransactionConflictException``.
* **Write throttling per item**: a token bucket of ``item_wcu_per_second``
  write units (1,000 by default) per item, refilled continuously, one second
  of burst. An empty bucket fails the write with
  ``ProvisionedThroughputExceededException`` (a transaction: reason
  ``ThrottlingError``).
* **Read throttling per partition**: the same with ``partition_rcu_per_second``
  read units (3,000) per partition key, for ``GetItem``, ``BatchGetItem`` and
  ``Query`` (of a table or an index).
* **Consumed capacity** as ``ReturnConsumedCapacity=INDEXES`` reports it:
  write units of ``ceil(size / 1 KB)`` of the larger of the old and new item,
  doubled in a transaction (``ConditionCheck`` included), plus one index write
  per changed ``by-period`` entry; read units of ``ceil(size / 4 KB)``
  (strongly consistent) or half (eventually consistent), at least one per
  request. Item size is DynamoDB's rule (attribute names plus values: UTF-8
  strings, ~1 byte per 2 digits of a number, 3 bytes per map/list plus its
  entries).
* **Latency**: every call takes virtual time (``latency``), so concurrent
  requests really overlap.
* **A stream** of every write (``INSERT``/``MODIFY``/``REMOVE``, new image),
  spread over ``shards`` by partition key, with increasing sequence numbers:
  ``bench/ledger_scale.py`` delivers it to the aggregator as Lambda would.

Not modelled: adaptive capacity and partition splits (limits are per item for
writes and per partition key for reads, fixed), a transaction's two phases
(its effects apply at once when it starts; only the hold is modelled), plain
writes holding items (they are instant), conflicts of reads with
transactions (``GetItem`` sees the last committed image, as in DynamoDB),
``TransactGetItems``, on-demand scaling warm-up, the 4 MB/25-request limits
of batch calls, network failures and 5xx (see ``tests/test_metering.py`` for
a stalled endpoint).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from local.simclock import Sim

WRITE_UNIT = 1024
READ_UNIT = 4096
INDEX_KEYS = {"by-period": ("gsi1pk", "gsi1sk")}

#: Virtual seconds per call (DynamoDB's in-region single-digit milliseconds).
DEFAULT_LATENCY = {
    "GetItem": 0.003,
    "BatchGetItem": 0.006,
    "Query": 0.005,
    "PutItem": 0.005,
    "UpdateItem": 0.005,
    "DeleteItem": 0.005,
    "TransactWriteItems": 0.010,
}


def attribute_size(value: dict[str, Any]) -> int:
    """Bytes DynamoDB counts for one typed attribute value."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8", "surrogatepass"))
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(inner) if isinstance(inner, bytes) else len(str(inner)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: member}) for member in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + attribute_size(member) + 1 for name, member in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(member) + 1 for member in inner)
    return len(json.dumps(inner))


def item_size(item: dict[str, Any] | None) -> int:
    """Bytes of a typed item: attribute names plus values."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def write_units(old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Write units of one write: the larger of the old and new item, in 1 KB steps, at least one."""
    return max(1, math.ceil(max(item_size(old), item_size(new)) / WRITE_UNIT))


class _Bucket:
    """A token bucket refilled continuously at ``rate``, holding at most one second of it."""

    __slots__ = ("level", "at")

    def __init__(self, rate: float, now: float) -> None:
        self.level = rate
        self.at = now

    def refill(self, rate: float, now: float) -> float:
        self.level = min(rate, self.level + (now - self.at) * rate)
        self.at = now
        return self.level


@dataclass
class StreamRecord:
    """One write as a DynamoDB stream delivers it."""

    shard: str
    sequence: int
    at: float
    event: dict[str, Any]


@dataclass
class Stats:
    """What the model saw, in total and per operation."""

    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    conflicts: int = 0
    throttles: int = 0
    write_units: float = 0.0
    index_write_units: float = 0.0
    read_units: float = 0.0
    units_by_tag: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: (virtual second, table, item key) → writes in that second.
    item_writes: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: (virtual second, partition) → write units, for the busiest partition.
    partition_units: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))

    def busiest_item(self) -> tuple[str, int]:
        """The item written most often within one virtual second, and how often."""
        if not self.item_writes:
            return "", 0
        (_, table, key), count = max(self.item_writes.items(), key=lambda pair: pair[1])
        return f"{table}:{key}", count


class ContentionModel:
    """DynamoDB's conflicts, throttling, capacity and latency, in front of in-process moto.

    Parameters
    ----------
    sim
        The virtual clock the calls take time on.
    hold_seconds
        How long a transaction holds its items (conflict window).
    shards
        Stream shards, assigned by partition key.
    tag
        Called on every request; its value labels the capacity it consumed
        (e.g. "request path" or "aggregator"), see ``Stats.units_by_tag``.
    on_call
        Called with the operation name of every call (a benchmark counts calls per request).
    """

    def __init__(
        self,
        sim: Sim,
        *,
        hold_seconds: float = 0.005,
        item_wcu_per_second: float = 1000,
        partition_rcu_per_second: float = 3000,
        latency: dict[str, float] | None = None,
        shards: int = 4,
        tag: Callable[[], str] = lambda: "all",
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        self.sim = sim
        self.hold_seconds = hold_seconds
        self.item_wcu = item_wcu_per_second
        self.partition_rcu = partition_rcu_per_second
        self.latency = {**DEFAULT_LATENCY, **(latency or {})}
        self.shards = shards
        self.tag = tag
        self.on_call = on_call
        self.stats = Stats()
        self.stream: list[StreamRecord] = []
        self._held: dict[tuple[str, str], float] = {}  # item → virtual time its transaction releases it
        self._write_buckets: dict[tuple[str, str], _Bucket] = {}
        self._read_buckets: dict[tuple[str, str], _Bucket] = {}
        self._sequence = 1_000_000_000_000_000_000_000

    def install(self, *clients: Any) -> None:
        """Put the model in front of ``clients`` (boto3 DynamoDB clients: a table's are ``clients(table)``,
        ``chalicelib/shared/dynamodb.py``, its resource's and the plain one the request path uses).

        botocore runs every ``before-send`` handler and keeps the first answer, so moto's
        own handler is taken off each client: the model calls moto itself, only for the
        requests it lets through.
        """
        from moto.core.models import botocore_stubber

        for client in clients:
            client.meta.events.unregister("before-send", botocore_stubber)
            client.meta.events.register_first("before-send.dynamodb", self._handle)

    # -- the request path -------------------------------------------------------------------

    def _handle(self, request: Any, **_: Any) -> Any:
        from moto.core.models import botocore_stubber

        operation = (request.headers.get("X-Amz-Target") or b"").decode().rsplit(".", 1)[-1]
        body = json.loads(request.body or b"{}")
        now = self.sim.now()
        self.stats.calls[operation] += 1
        if self.on_call is not None:
            self.on_call(operation)
        error = self._refuse(operation, body, now)
        if error is None:
            before = self._images(operation, body)
            response = botocore_stubber("before-send.dynamodb", request)
            if response is not None and response.status_code == 200:
                self._account(operation, body, before, now)
        else:
            response = error
        self.sim.sleep(self.latency.get(operation, 0.005))
        return response

    def _refuse(self, operation: str, body: dict[str, Any], now: float) -> Any:
        """The error response DynamoDB would give at ``now``, or None."""
        if operation == "TransactWriteItems":
            reasons = []
            for entry in body["TransactItems"]:
                kind, inner = next(iter(entry.items()))
                item = self._item_key(inner["TableName"], inner["Item"] if kind == "Put" else inner["Key"])
                if self._held.get(item, -1.0) > now:
                    reasons.append({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                elif kind != "ConditionCheck" and self._write_bucket(item, now) <= 0:
                    reasons.append({"Code": "ThrottlingError", "Message": "Throughput exceeds the item's limit"})
                else:
                    reasons.append({"Code": "None"})
            codes = {reason["Code"] for reason in reasons} - {"None"}
            if codes:
                if "TransactionConflict" in codes:
                    self.stats.conflicts += 1
                else:
                    self.stats.throttles += 1
                return _error(
                    "TransactionCanceledException",
                    "Transaction cancelled, please refer cancellation reasons for specific reasons "
                    f"[{', '.join(reason['Code'] for reason in reasons)}]",
                    CancellationReasons=reasons,
                )
            return None
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            item = self._item_key(body["TableName"], body["Item"] if operation == "PutItem" else body["Key"])
            if self._held.get(item, -1.0) > now:
                self.stats.conflicts += 1
                return _error("TransactionConflictException", "Transaction is ongoing for the item")
            if self._write_bucket(item, now) <= 0:
                self.stats.throttles += 1
                return _error("ProvisionedThroughputExceededException", "Throughput exceeds the item's limit")
            return None
        for partition in self._read_partitions(operation, body):
            if self._read_bucket(partition, now) <= 0:
                self.stats.throttles += 1
                return _error("ProvisionedThroughputExceededException", "Throughput exceeds the partition's limit")
        return None

    def _account(self, operation: str, body: dict[str, Any], before: dict[Any, Any], now: float) -> None:
        """Capacity, per-item counts, holds and stream records of a call that succeeded."""
        tag = self.tag()
        if operation in ("GetItem", "BatchGetItem", "Query"):
            units = self._read_units(operation, body, before)
            self.stats.read_units += units
            self.stats.units_by_tag[f"{tag} read"] += units
            return
        if operation not in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            return
        transactional = operation == "TransactWriteItems"
        writes = (
            [next(iter(entry.items())) for entry in body["TransactItems"]]
            if transactional
            else [({"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}[operation], body)]
        )
        second = int(now)
        for kind, inner in writes:
            table = inner["TableName"]
            key = inner["Item"] if kind == "Put" else inner["Key"]
            item = self._item_key(table, key)
            old = before.get(item)
            new = self._current(table, key)
            if kind == "ConditionCheck":
                units = 2 * write_units(old, None)
            else:
                units = write_units(old, new) * (2 if transactional else 1)
                self._write_bucket(item, now)
                self._write_buckets[item].level -= units  # a transaction's doubled units count against the limit
                self.stats.item_writes[(second, table, item[1])] += 1
                self.stats.partition_units[(second, _partition(item[1]))] += units
                index_units = _index_units(old, new)
                self.stats.index_write_units += index_units
                self.stats.units_by_tag[f"{tag} index"] += index_units
                self._record(table, key, old, new, now)
            self.stats.write_units += units
            self.stats.units_by_tag[f"{tag} write"] += units
            if transactional:
                self._held[item] = now + self.hold_seconds

    # -- helpers ----------------------------------------------------------------------------

    def _backend_table(self, name: str) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(name)

    def _item_key(self, table: str, attributes: dict[str, Any]) -> tuple[str, str]:
        schema = self._backend_table(table)
        parts = [json.dumps(attributes[schema.hash_key_attr], sort_keys=True)]
        if schema.range_key_attr:
            parts.append(json.dumps(attributes[schema.range_key_attr], sort_keys=True))
        return table, "|".join(parts)

    def _current(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        schema = self._backend_table(table)
        hash_key = DynamoType(key[schema.hash_key_attr])
        bucket = schema.items.get(hash_key)
        if schema.range_key_attr is None:
            found = bucket
        else:
            found = bucket.get(DynamoType(key[schema.range_key_attr])) if bucket else None
        return found.to_json()["Attributes"] if found is not None else None

    def _images(self, operation: str, body: dict[str, Any]) -> dict[Any, Any]:
        """The items a call will write, as they are before it (for sizes and stream events)."""
        if operation == "TransactWriteItems":
            pairs = [next(iter(entry.items())) for entry in body["TransactItems"]]
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            pairs = [("Put" if operation == "PutItem" else "Update", body)]
        elif operation == "GetItem":
            return {"get": self._current(body["TableName"], body["Key"])}
        else:
            return {}
        images = {}
        for kind, inner in pairs:
            key = inner["Item"] if kind == "Put" else inner["Key"]
            images[self._item_key(inner["TableName"], key)] = self._current(inner["TableName"], key)
        return images

    def _read_units(self, operation: str, body: dict[str, Any], before: dict[Any, Any]) -> float:
        if operation == "GetItem":
            size = item_size(before.get("get"))
            consistent = bool(body.get("ConsistentRead"))
            return max(1, math.ceil(size / READ_UNIT)) * (1 if consistent else 0.5)
        # Queries and batch reads: approximated by one read unit per partition asked (small items).
        partitions = self._read_partitions(operation, body)
        consistent = bool(body.get("ConsistentRead"))
        return len(partitions) * (1 if consistent else 0.5)

    def _read_partitions(self, operation: str, body: dict[str, Any]) -> list[tuple[str, str]]:
        if operation == "GetItem":
            table = self._backend_table(body["TableName"])
            return [(body["TableName"], json.dumps(body["Key"][table.hash_key_attr], sort_keys=True))]
        if operation == "BatchGetItem":
            found = []
            for name, request in body["RequestItems"].items():
                table = self._backend_table(name)
                found += [(name, json.dumps(k[table.hash_key_attr], sort_keys=True)) for k in request["Keys"]]
            return found
        if operation == "Query":
            values = body.get("ExpressionAttributeValues") or {}
            condition = body.get("KeyConditionExpression", "")
            first = condition.split(" AND ")[0].split("=")
            placeholder = first[1].strip() if len(first) == 2 else ""
            where = f"{body['TableName']}/{body.get('IndexName', '')}"
            return [(where, json.dumps(values.get(placeholder), sort_keys=True))]
        return []

    def _write_bucket(self, item: tuple[str, str], now: float) -> float:
        bucket = self._write_buckets.get(item)
        if bucket is None:
            bucket = self._write_buckets[item] = _Bucket(self.item_wcu, now)
        return bucket.refill(self.item_wcu, now)

    def _read_bucket(self, partition: tuple[str, str], now: float) -> float:
        bucket = self._read_buckets.get(partition)
        if bucket is None:
            bucket = self._read_buckets[partition] = _Bucket(self.partition_rcu, now)
        level = bucket.refill(self.partition_rcu, now)
        bucket.level -= 1
        return level

    def _record(self, table: str, key: dict[str, Any], old: Any, new: Any, now: float) -> None:
        if old is None and new is None:
            return
        schema = self._backend_table(table)
        partition = json.dumps(key[schema.hash_key_attr], sort_keys=True)
        shard = f"shardId-{zlib.crc32(partition.encode()) % self.shards:04d}"
        self._sequence += 1
        event = {
            "eventName": "INSERT" if old is None else "REMOVE" if new is None else "MODIFY",
            "dynamodb": {"SequenceNumber": str(self._sequence), "ApproximateCreationDateTime": now},
        }
        if new is not None:
            event["dynamodb"]["NewImage"] = new
        self.stream.append(StreamRecord(shard, self._sequence, now, event))


class virtual_botocore_sleeps:  # noqa: N801 - used as a context manager, like contextlib's
    """Within: botocore's retry backoffs sleep in the simulation's virtual time (on simulated threads)."""

    def __init__(self, sim: Sim) -> None:
        self._sim = sim

    def __enter__(self) -> virtual_botocore_sleeps:
        import time as real_time

        import botocore.endpoint

        sim = self._sim

        class _Time:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_time, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                return sim.sleep(seconds) if sim.in_sim() else real_time.sleep(seconds)

        self._saved = botocore.endpoint.time
        botocore.endpoint.time = _Time()
        return self

    def __exit__(self, *exc: object) -> None:
        import botocore.endpoint

        botocore.endpoint.time = self._saved


def _partition(item_key: str) -> str:
    return item_key.split("|", 1)[0]


def _index_units(old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Index write units of one write on the ``by-period`` index (projection ALL)."""
    units = 0
    for pk, sk in INDEX_KEYS.values():
        had = old is not None and pk in old and sk in old
        has = new is not None and pk in new and sk in new
        if has and old != new:
            units += write_units(None, new)  # the index's copy of the item, written
        if had and (not has or (old[pk], old[sk]) != (new[pk], new[sk])):
            units += 1  # the old index entry, deleted
    return units


def _error(code: str, message: str, **more: Any) -> Any:
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **more})
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "model"}
    return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, headers, MockRawResponse(body.encode()))
