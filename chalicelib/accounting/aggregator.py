"""The aggregator: turns the usage table's stream into aggregates, exactly once.

Runs as its own Lambda function (``ledger_aggregator`` in app.py) on the usage
table's DynamoDB stream, and locally over moto's stream
(``local/stream_aggregator.py``). Each invocation gets a batch of new ledger
entries and release records from one shard; it

1. reads the shard's marker (``pk=STREAM#<shard>``, ``sk=MARK``): the sequence
   number of the last record already applied;
2. drops the records at or below it (a redelivered or retried batch);
3. sums the rest per aggregate item (key, owner, model, all × day and month;
   ``committed`` of the key's and owner's reservation month) and applies one
   ``ADD`` per item, in transactions of at most 100 items that each also move
   the marker forward, conditional on the marker being where it was read.

So a record is applied once however often it is delivered: a transaction that
committed moved the marker past its records, one that did not changed nothing.
Records of a shard are sorted by sequence number first (Lambda delivers a
shard's records in order the first time; redeliveries may be reordered).

The shard id comes from the event: the event source mapping has a tumbling
window (``TumblingWindowInSeconds``), which makes Lambda include ``shardId``;
the window's ``state`` is not used (returned empty).

Rate-limit token corrections (the admission counted the worst case; the call
used less) are applied after each transaction, best effort: at most once, and
only while the minute they were counted in is still the key's current window.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.accounting.calls import Attempts, cancellation_reasons, error_code, is_transient
from chalicelib.accounting.ledger import STREAM_AGGREGATION, UsageEntry, aggregate_scopes
from chalicelib.dynamodb import dynamo_number
from chalicelib.keys.store import isoformat, utcnow
from chalicelib.observability import logger

#: DynamoDB's limit of items per transaction; one is the marker.
MAX_TRANSACTION_ITEMS = 100
#: A shard's marker outlives the stream's 24-hour retention, then DynamoDB's TTL removes it.
MARKER_TTL_SECONDS = 3 * 24 * 3600
#: Seconds kept back from the invocation's deadline to return cleanly.
DEADLINE_MARGIN_SECONDS = 2.0

RowKey = tuple[str, str]


class MarkerMoved(Exception):
    """The shard's marker is not where this batch read it: another invocation applied records."""


@dataclass
class Row:
    """The sum of one batch's changes to one aggregate item."""

    adds: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    sets: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, amount: Decimal | int) -> None:
        if amount:
            self.adds[name] += Decimal(amount)


@dataclass(frozen=True)
class Change:
    """One stream record: its sequence number and the rows and rate corrections it contributes."""

    sequence: int
    rows: dict[RowKey, Row]
    rate: tuple[str, str, int, int] | None  # key_id, month, window, token delta


@dataclass
class BatchResult:
    """What one batch did (logged, returned to tests and the benchmark)."""

    records: int = 0
    applied: int = 0
    duplicates: int = 0
    transactions: int = 0
    rows: int = 0


def wanted(record: dict[str, Any]) -> bool:
    """A stream record the aggregator sums: a new entry or release written by the stream design."""
    if record.get("eventName") != "INSERT":
        return False
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    return image.get("aggregation", {}).get("S") == STREAM_AGGREGATION and image.get("type", {}).get("S") in (
        "entry",
        "release",
    )


def change_of(sequence: int, item: dict[str, Any]) -> Change:
    """The aggregate rows (and rate correction) one stored entry or release contributes to."""
    rows: dict[RowKey, Row] = defaultdict(Row)
    if item["type"] == "release":
        month = str(item["budget_month"])
        rows[(f"AGG#KEY#{item['key_id']}", f"MONTH#{month}")].add("committed", -Decimal(item["reserved_key_usd"]))
        rows[(f"AGG#OWNER#{item['owner_sub']}", f"MONTH#{month}")].add(
            "committed", -Decimal(item["reserved_owner_usd"])
        )
        rate = None
        if item.get("rate_window") is not None and int(item.get("counted_tokens", 0)):
            rate = (str(item["key_id"]), month, int(item["rate_window"]), -int(item["counted_tokens"]))
        return Change(sequence, _nonempty(rows), rate)
    entry = UsageEntry.from_item(item)
    counters: dict[str, Decimal | int] = {
        "requests": 1,
        "input_tokens": entry.usage.input_tokens,
        "output_tokens": entry.usage.output_tokens,
        "cache_read_tokens": entry.usage.cache_read_tokens,
        "cache_write_tokens": entry.usage.cache_write_tokens,
        "cost": entry.cost,
    }
    if entry.capped and entry.usage_cost is not None:
        counters["capped_requests"] = 1
        counters["capped_usd"] = entry.usage_cost - entry.cost
    for scope in aggregate_scopes(entry):
        day = rows[(f"AGG#{scope}", f"DAY#{entry.day}")]
        day.sets.update({"gsi1pk": f"DAY#{entry.day}", "gsi1sk": scope, "type": "aggregate"})
        month = rows[(f"AGG#{scope}", f"MONTH#{entry.month}")]
        month.sets["type"] = "aggregate"
        for name, amount in counters.items():
            day.add(name, amount)
            month.add(name, amount)
    # ``committed`` = cost + reservations outstanding, in the month admission reserved in.
    reserved = entry.reservation_month
    held_by = ((f"KEY#{entry.key_id}", entry.reserved_key_usd), (f"OWNER#{entry.owner_sub}", entry.reserved_owner_usd))
    for scope, held in held_by:
        row = rows[(f"AGG#{scope}", f"MONTH#{reserved}")]
        row.sets["type"] = "aggregate"
        row.add("committed", entry.cost - held)
    rate = None
    if entry.rate_window is not None:
        used = entry.usage.prompt_tokens + entry.usage.output_tokens
        if used != entry.counted_tokens:
            rate = (entry.key_id, reserved, entry.rate_window, used - entry.counted_tokens)
    return Change(sequence, _nonempty(rows), rate)


def _nonempty(rows: dict[RowKey, Row]) -> dict[RowKey, Row]:
    return {key: row for key, row in rows.items() if row.adds}


class Aggregator:
    """Applies stream batches to the usage table's aggregates. Takes the usage ``Table`` resource."""

    def __init__(self, table: Any, *, attempts: Attempts | None = None, clock: Callable[[], Any] = utcnow) -> None:
        self._table = table
        self._client = table.meta.client
        self.attempts = attempts or Attempts()
        self._clock = clock

    def handle(self, event: dict[str, Any], *, remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """The Lambda handler's body: apply the event's records; returns the tumbling window's (empty) state.

        Raises
        ------
        ValueError
            The event has no ``shardId`` (the event source mapping lacks its tumbling window).
        """
        records = event.get("Records") or []
        shard = event.get("shardId")
        if records and not shard:
            raise ValueError("stream event without shardId: set TumblingWindowInSeconds on the event source mapping")
        deadline = None
        if remaining_ms is not None:
            deadline = self.attempts.timer() + remaining_ms() / 1000 - DEADLINE_MARGIN_SECONDS
        if records:
            result = self.apply(str(shard), records, deadline=deadline)
            logger.info(
                "aggregated",
                extra={
                    "shard": shard,
                    "records": result.records,
                    "applied": result.applied,
                    "duplicates": result.duplicates,
                    "transactions": result.transactions,
                    "rows": result.rows,
                    "conflict_retries": self.attempts.retries,
                },
            )
        return {"state": {}, "batchItemFailures": []}

    def apply(self, shard: str, records: Iterable[dict[str, Any]], *, deadline: float | None = None) -> BatchResult:
        """Apply the stream ``records`` of ``shard`` that are past its marker."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        changes = []
        result = BatchResult()
        for record in records:
            result.records += 1
            if not wanted(record):
                continue
            image = deserializer.deserialize({"M": record["dynamodb"]["NewImage"]})
            changes.append(change_of(int(record["dynamodb"]["SequenceNumber"]), image))
        changes.sort(key=lambda change: change.sequence)
        deadline = deadline if deadline is not None else self.attempts.timer() + 60
        while True:
            marker = self._marker(shard, deadline)
            pending = [c for c in changes if marker is None or c.sequence > marker]
            result.duplicates = len(changes) - len(pending)
            try:
                for chunk in chunks(pending):
                    self._commit(shard, chunk, marker, deadline)
                    marker = chunk[-1].sequence
                    result.applied += len(chunk)
                    result.transactions += 1
                    result.rows += len({key for change in chunk for key in change.rows})
                    self._correct_rates(chunk)
            except MarkerMoved:
                continue  # someone else moved the marker: read it again, apply what is left
            return result

    def _marker(self, shard: str, deadline: float) -> int | None:
        item = self.attempts.call(
            lambda: self._table.get_item(Key={"pk": f"STREAM#{shard}", "sk": "MARK"}, ConsistentRead=True),
            deadline=deadline,
        ).get("Item")
        return int(item["seq"]) if item and "seq" in item else None

    def _commit(self, shard: str, chunk: list[Change], previous: int | None, deadline: float) -> None:
        rows: dict[RowKey, Row] = defaultdict(Row)
        for change in chunk:
            for key, row in change.rows.items():
                merged = rows[key]
                merged.sets.update(row.sets)
                for name, amount in row.adds.items():
                    merged.add(name, amount)
        now = self.attempts.timer()
        marker = {
            "Update": {
                "TableName": self._table.name,
                "Key": {"pk": f"STREAM#{shard}", "sk": "MARK"},
                "UpdateExpression": "SET #seq = :seq, updated_at = :at, #ttl = :ttl",
                "ConditionExpression": "attribute_not_exists(#seq)" if previous is None else "#seq = :previous",
                "ExpressionAttributeNames": {"#seq": "seq", "#ttl": "ttl"},
                "ExpressionAttributeValues": {
                    ":seq": str(chunk[-1].sequence),
                    ":at": isoformat(self._clock()),
                    ":ttl": int(now) + MARKER_TTL_SECONDS,
                    **({":previous": str(previous)} if previous is not None else {}),
                },
            }
        }
        items = [marker] + [self._row_update(key, row) for key, row in rows.items() if row.adds]

        def commit() -> None:
            self._client.transact_write_items(TransactItems=items)

        try:
            self.attempts.call(commit, deadline=deadline, transient=is_transient)
        except Exception as exc:
            reasons = cancellation_reasons(exc)
            if error_code(exc) == "TransactionCanceledException" and reasons[:1] == ["ConditionalCheckFailed"]:
                raise MarkerMoved from exc
            raise

    def _row_update(self, key: RowKey, row: Row) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds, sets = [], []
        for n, (name, amount) in enumerate(sorted(row.adds.items())):
            names[f"#a{n}"] = name
            values[f":a{n}"] = dynamo_number(amount)
            adds.append(f"#a{n} :a{n}")
        for n, (name, value) in enumerate(sorted(row.sets.items())):
            names[f"#s{n}"] = name
            values[f":s{n}"] = value
            sets.append(f"#s{n} = :s{n}")
        expression = "ADD " + ", ".join(adds) + (" SET " + ", ".join(sets) if sets else "")
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": {"pk": key[0], "sk": key[1]},
                "UpdateExpression": expression,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _correct_rates(self, chunk: list[Change]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deltas: dict[tuple[str, str, int], int] = defaultdict(int)
        for change in chunk:
            if change.rate:
                key_id, month, window, tokens = change.rate
                deltas[(key_id, month, window)] += tokens
        for (key_id, month, window), tokens in deltas.items():
            if not tokens:
                continue
            # A refusal means the window has passed (or DynamoDB failed): its count expires with it.
            with contextlib.suppress(BotoCoreError, ClientError):
                self._table.update_item(
                    Key={"pk": f"AGG#KEY#{key_id}", "sk": f"MONTH#{month}"},
                    UpdateExpression="ADD rate_tokens :delta",
                    ConditionExpression="rate_window = :window",
                    ExpressionAttributeValues={":delta": tokens, ":window": window},
                )


def chunks(changes: list[Change]) -> Iterable[list[Change]]:
    """``changes`` in order, cut so each chunk touches at most ``MAX_TRANSACTION_ITEMS - 1`` rows."""
    chunk: list[Change] = []
    keys: set[RowKey] = set()
    for change in changes:
        more = keys | change.rows.keys()
        if chunk and len(more) > MAX_TRANSACTION_ITEMS - 1:
            yield chunk
            chunk, more = [], set(change.rows)
        chunk.append(change)
        keys = more
    if chunk:
        yield chunk
