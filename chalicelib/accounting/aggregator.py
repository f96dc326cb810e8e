"""The aggregator: turns the usage table's stream into aggregates, exactly once.

Runs as its own Lambda function (``ledger_aggregator`` in app.py) on the usage
table's DynamoDB stream, and locally over moto's stream
(``local/stream_aggregator.py``). Each invocation gets a batch of new ledger
entries and release records from one shard. Per shard, a marker item
(``pk=STREAM#<shard>``, ``sk=MARK``) says how far the shard has been taken:
``seq``, the last record claimed, and while a plan is being applied, ``plan``
and ``done`` (its chunks applied so far). For a batch, the aggregator

1. finishes the shard's pending plan, if a previous invocation died in it;
2. drops the records at or below ``seq`` (a redelivered or retried batch), and
   sorts the rest by sequence number (Lambda delivers a shard's records in
   order the first time; a redelivery may be reordered);
3. sums them per aggregate item (key, owner, model and all × day and month;
   ``committed`` of the key's and owner's reservation month): one ``ADD`` per
   item for the whole batch, whatever the number of records on it;
4. stores that sum as a *plan* (``sk=PLAN#<seq>``, compressed, expiring after
   a few days) in the same transaction that moves ``seq`` past the batch;
5. applies the plan in chunks of at most 98 items, each chunk in a transaction
   with the marker's ``done`` moving from j to j+1 (conditional on j).

So every record is claimed by exactly one plan (the transaction of step 4),
and every chunk of a plan is applied exactly once (step 5's condition),
however often Lambda delivers a batch, however the invocations die. Summing
the whole batch before chunking is what makes it cheap: a busy key's or
owner's aggregate is written once per batch, not once per request.

The shard id comes from the event: the event source mapping has a tumbling
window (``TumblingWindowInSeconds``), which makes Lambda include ``shardId``;
the window's ``state`` is not used (returned empty).

Rate-limit token corrections (the admission counted the worst case; the call
used less) are applied when a plan is complete, best effort: at most once, and
only while the minute they were counted in is still the key's current window.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.accounting.ledger import STREAM_AGGREGATION, aggregate_scopes, charged_scopes, entry_from_item
from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.dates import isoformat, utcnow
from chalicelib.shared.dynamodb import Attempts, cancellation_reasons, dynamo_number, error_code, is_transient

#: Aggregate items per transaction: DynamoDB's limit is 100, one is the marker (and one spare).
MAX_ROWS_PER_TRANSACTION = 98
#: Aggregate items plus rate corrections per plan: a plan item stays far below DynamoDB's 400 KB
#: item limit (~110 KB measured at 3,000), even for a backlog spanning many rate windows.
MAX_PLAN_ROWS = 3000
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
    plans: int = 0
    transactions: int = 0
    rows: int = 0


@dataclass
class Marker:
    """Where a shard stands: the last record claimed, and the plan being applied, if any."""

    seq: int | None = None
    plan: str | None = None
    done: int = 0


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
        for scope, amount in scopes.reservations_of(item).items():
            rows[_key(scope.month(month))].add("committed", -Decimal(amount))
        rate = None
        if item.get("rate_window") is not None and int(item.get("counted_tokens", 0)):
            rate = (str(item["key_id"]), month, int(item["rate_window"]), -int(item["counted_tokens"]))
        return Change(sequence, _nonempty(rows), rate)
    entry = entry_from_item(item)
    counters: dict[str, Decimal | int] = {
        "requests": 1,
        "input_tokens": entry.usage.input_tokens,
        "output_tokens": entry.usage.output_tokens,
        "cache_read_tokens": entry.usage.cache_read_tokens,
        "cache_write_tokens": entry.usage.cache_write_tokens,
        "cache_write_1h_tokens": entry.usage.cache_write_1h_tokens,
        "cost": entry.cost,
    }
    if entry.capped and entry.usage_cost is not None:
        counters["capped_requests"] = 1
        counters["capped_usd"] = entry.usage_cost - entry.cost
    if scopes.owning_team(entry.owner_sub) is None:
        # A person's spend by model, per day, beside their day rows ("My spend": one query a month).
        by_model = rows[_key(scopes.owner(entry.owner_sub).aggregate(scopes.model_day_period(entry.day, entry.model)))]
        by_model.sets["type"] = "aggregate"
        for name, amount in counters.items():
            by_model.add(name, amount)
    for scope in aggregate_scopes(entry):
        day = rows[_key(scope.aggregate(scopes.day_period(entry.day)))]
        day.sets.update({"gsi1pk": scopes.day_period(entry.day), "gsi1sk": scope.name, "type": "aggregate"})
        month = rows[_key(scope.month(entry.month))]
        # Months are in the by-period index too: everyone's month by key, model or price version is
        # one query, not one per day (Ledger._month_rows).
        month.sets.update({"gsi1pk": scopes.month_period(entry.month), "gsi1sk": scope.name, "type": "aggregate"})
        for name, amount in counters.items():
            day.add(name, amount)
            month.add(name, amount)
    if entry.team_id and item.get("gsi2pk") == scopes.team_log_partition(entry.team_id, entry.month):
        # The team's log (by-team) holds this entry: when every entry of the month is there, a team's
        # page of the request log is one query (chalicelib/admin/requests.py).
        rows[_key(scopes.team(entry.team_id).month(entry.month))].add(scopes.TEAM_LOGGED, 1)
    # ``committed`` = cost + reservations outstanding, in the month admission reserved in; ``billed`` is
    # that cost alone, so ``committed - billed`` is what is still reserved (the month's ``cost`` is
    # counted by the day billed, and differs when a request straddles midnight at the month's end).
    # The scopes are the ones the request was admitted under (the entry says which team), whatever
    # team its key is charged to by now.
    reserved = entry.reservation_month
    for scope in _union(charged_scopes(entry), [scopes.Scope.parse(name) for name in entry.reserved]):
        row = rows[_key(scope.month(reserved))]
        row.sets["type"] = "aggregate"
        row.add("committed", entry.cost - entry.reserved_on(scope.name))
        row.add("billed", entry.cost)
    rate = None
    if entry.rate_window is not None:
        used = entry.usage.prompt_tokens + entry.usage.output_tokens
        if used != entry.counted_tokens:
            rate = (entry.key_id, reserved, entry.rate_window, used - entry.counted_tokens)
    return Change(sequence, _nonempty(rows), rate)


def _key(key: dict[str, str]) -> RowKey:
    return key["pk"], key["sk"]


def _union(first: list[scopes.Scope], second: list[scopes.Scope]) -> list[scopes.Scope]:
    return first + [scope for scope in second if scope not in first]


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
        """Apply the stream ``records`` of ``shard`` that are past its marker (and any plan left pending)."""
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
            if marker.plan is not None:
                self._finish(shard, marker, None, deadline, result)
                continue
            pending = [c for c in changes if marker.seq is None or c.sequence > marker.seq]
            # Records below the marker that this invocation did not claim itself: delivered before.
            result.duplicates = len(changes) - len(pending) - result.applied
            if not pending:
                return result
            claimed, plan = plan_for(pending)
            plan_id = scopes.plan_id(claimed[-1].sequence)
            try:
                self._claim(shard, marker, plan_id, plan, claimed, deadline)
            except MarkerMoved:
                continue  # another invocation claimed records: read the marker again
            result.plans += 1
            result.applied += len(claimed)
            self._finish(shard, Marker(claimed[-1].sequence, plan_id, 0), plan, deadline, result)

    def _marker(self, shard: str, deadline: float) -> Marker:
        item = self.attempts.call(
            lambda: self._table.get_item(Key=scopes.stream_marker(shard), ConsistentRead=True),
            deadline=deadline,
        ).get("Item")
        if not item:
            return Marker()
        return Marker(
            seq=int(item["seq"]) if "seq" in item else None,
            plan=item.get("plan"),
            done=int(item.get("done", 0)),
        )

    def _claim(
        self, shard: str, marker: Marker, plan_id: str, plan: Plan, claimed: list[Change], deadline: float
    ) -> None:
        """Store the plan and move the marker past its records: one transaction."""
        now = self.attempts.timer()
        condition = "attribute_not_exists(#plan) AND " + (
            "attribute_not_exists(#seq)" if marker.seq is None else "#seq = :previous"
        )
        values: dict[str, Any] = {
            ":seq": str(claimed[-1].sequence),
            ":plan": plan_id,
            ":zero": 0,
            ":at": isoformat(self._clock()),
            ":ttl": int(now) + MARKER_TTL_SECONDS,
        }
        if marker.seq is not None:
            values[":previous"] = str(marker.seq)
        items = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": scopes.stream_marker(shard),
                    "UpdateExpression": "SET #seq = :seq, #plan = :plan, done = :zero, updated_at = :at, #ttl = :ttl",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#seq": "seq", "#plan": "plan", "#ttl": "ttl"},
                    "ExpressionAttributeValues": values,
                }
            },
            {
                "Put": {
                    "TableName": self._table.name,
                    "Item": {
                        **scopes.stream_plan(shard, plan_id),
                        "type": "plan",
                        "chunks": len(plan.chunks),
                        "body": plan.encode(),
                        "ttl": int(now) + MARKER_TTL_SECONDS,
                    },
                }
            },
        ]
        self._transact(items, deadline)

    def _finish(self, shard: str, marker: Marker, plan: Plan | None, deadline: float, result: BatchResult) -> None:
        """Apply the chunks of ``marker``'s plan from ``marker.done`` on; the last one clears the plan."""
        assert marker.plan is not None
        if plan is None:
            item = self.attempts.call(
                lambda: self._table.get_item(Key=scopes.stream_plan(shard, marker.plan), ConsistentRead=True),
                deadline=deadline,
            ).get("Item")
            if item is None:
                raise RuntimeError(f"plan {marker.plan} of shard {shard} is missing; its marker cannot advance")
            plan = Plan.decode(bytes(item["body"].value if hasattr(item["body"], "value") else item["body"]))
        for index in range(marker.done, len(plan.chunks)):
            last = index == len(plan.chunks) - 1
            names = {"#plan": "plan"}
            values: dict[str, Any] = {":plan": marker.plan, ":done": index}
            if last:
                expression = "REMOVE #plan, done"
            else:
                expression = "SET done = :next"
                values[":next"] = index + 1
            items = [
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": scopes.stream_marker(shard),
                        "UpdateExpression": expression,
                        "ConditionExpression": "#plan = :plan AND done = :done",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                },
                *(self._row_update(key, row) for key, row in plan.chunks[index]),
            ]
            try:
                self._transact(items, deadline)
            except MarkerMoved:
                return  # another invocation is applying this plan: leave it to it
            result.transactions += 1
            result.rows += len(plan.chunks[index])
        self._correct_rates(plan.rates)

    def _transact(self, items: list[dict[str, Any]], deadline: float) -> None:
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

    def _correct_rates(self, rates: dict[tuple[str, str, int], int]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for (key_id, month, window), tokens in rates.items():
            if not tokens:
                continue
            # A refusal means the window has passed (or DynamoDB failed): its count expires with it.
            with contextlib.suppress(BotoCoreError, ClientError):
                self._table.update_item(
                    Key=scopes.key(key_id).month(month),
                    UpdateExpression="ADD rate_tokens :delta",
                    ConditionExpression="rate_window = :window",
                    ExpressionAttributeValues={":delta": tokens, ":window": window},
                )


@dataclass
class Plan:
    """A claimed batch's sums, cut into transactions: rows per chunk, and the rate corrections."""

    chunks: list[list[tuple[RowKey, Row]]]
    rates: dict[tuple[str, str, int], int]

    def encode(self) -> bytes:
        data = {
            "chunks": [
                [[key[0], key[1], {n: str(v) for n, v in row.adds.items()}, row.sets] for key, row in chunk]
                for chunk in self.chunks
            ],
            "rates": [[k, m, w, t] for (k, m, w), t in self.rates.items()],
        }
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode())

    @classmethod
    def decode(cls, body: bytes) -> Plan:
        data = json.loads(zlib.decompress(body))
        chunks = [
            [((pk, sk), Row(adds=defaultdict(Decimal, {n: Decimal(v) for n, v in adds.items()}), sets=sets))
             for pk, sk, adds, sets in chunk]
            for chunk in data["chunks"]
        ]  # fmt: skip
        return cls(chunks, {(k, m, int(w)): int(t) for k, m, w, t in data["rates"]})


def plan_for(pending: list[Change]) -> tuple[list[Change], Plan]:
    """The longest prefix of ``pending`` whose sums fit one plan, and that plan.

    A plan holds at most ``MAX_PLAN_ROWS`` aggregate rows and rate corrections together: a batch
    replayed after an outage spans many minutes, and each key's minute is a correction of its own.
    """
    rows: dict[RowKey, Row] = defaultdict(Row)
    rates: dict[tuple[str, str, int], int] = defaultdict(int)
    claimed: list[Change] = []
    for change in pending:
        new_rate = change.rate is not None and change.rate[:3] not in rates
        if claimed and len(rows.keys() | change.rows.keys()) + len(rates) + new_rate > MAX_PLAN_ROWS:
            break
        claimed.append(change)
        for key, row in change.rows.items():
            merged = rows[key]
            merged.sets.update(row.sets)
            for name, amount in row.adds.items():
                merged.add(name, amount)
        if change.rate:
            key_id, month, window, tokens = change.rate
            rates[(key_id, month, window)] += tokens
    ordered = sorted((key, row) for key, row in rows.items() if row.adds)
    chunks = [ordered[n : n + MAX_ROWS_PER_TRANSACTION] for n in range(0, len(ordered), MAX_ROWS_PER_TRANSACTION)]
    return claimed, Plan(chunks or [[]], dict(rates))
