"""The usage ledger: one exact entry per billed request, plus running aggregates.

Every billed request becomes one DynamoDB transaction: a ``Put`` of the ledger
entry (conditional on its absence, so a replay never double-counts) and atomic
``ADD`` updates of the aggregates per key, owner, model and overall, per day and
per month. Because entry and aggregates commit together, the sum of the
entries equals the aggregates exactly. Money is ``Decimal`` end to end.

Table layout (``usage`` table, see ``infra/template.json``)::

    pk=KEY#<key_id>               sk=REQ#<time>#<request_id>   ledger entry
    pk=AGG#KEY#<key_id>           sk=DAY#2026-11-26            aggregate
    pk=AGG#OWNER#<sub> / AGG#MODEL#<alias> / AGG#ALL   sk=DAY#… or MONTH#2026-11
    GSI ``by-period``: gsi1pk=LEDGER#<day> (entries) or <sk> of aggregates,
    gsi1sk=<time>#<request_id> or the aggregate's pk.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.catalog.catalog import Prices
from chalicelib.core.body import parse_json
from chalicelib.errors import InvalidRequest
from chalicelib.keys.store import isoformat
from chalicelib.observability import logger

#: Marker of the structured log line written when an entry cannot be stored;
#: ``pennyworth ledger reconcile`` replays lines carrying it.
UNRECORDED_EVENT = "usage_unrecorded"
USAGE_GROUPS = ("key", "owner", "model", "day")
_COUNTERS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as Bedrock bills them: ``input_tokens`` excludes cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's ``prompt_tokens``: every input token, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def compute_cost(prices: Prices, usage: TokenUsage) -> Decimal:
    """Exact USD cost of ``usage`` at ``prices``."""
    return (
        prices.input * usage.input_tokens
        + prices.output * usage.output_tokens
        + prices.cache_read * usage.cache_read_tokens
        + prices.cache_write * usage.cache_write_tokens
    )


@dataclass(frozen=True)
class UsageEntry:
    """One billed request, as the ledger stores it."""

    request_id: str
    key_id: str
    owner_sub: str
    model: str
    bedrock_model_id: str
    operation: str
    usage: TokenUsage
    cost: Decimal
    latency_ms: int
    status: str
    timestamp: str
    #: What admission reserved on the key's and owner's month (released as this entry is billed).
    reserved_key_usd: Decimal = Decimal(0)
    reserved_owner_usd: Decimal = Decimal(0)

    @property
    def day(self) -> str:
        return self.timestamp[:10]

    @property
    def month(self) -> str:
        return self.timestamp[:7]

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (cost as a string, never a float): the reconcile format."""
        data = asdict(self)
        for name in ("cost", "reserved_key_usd", "reserved_owner_usd"):
            data[name] = str(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageEntry:
        """Inverse of ``to_json``."""
        fields = dict(data)
        fields["usage"] = TokenUsage(**fields["usage"])
        for name in ("cost", "reserved_key_usd", "reserved_owner_usd"):
            if name in fields:
                fields[name] = Decimal(str(fields[name]))
        return cls(**fields)


def new_entry(
    *,
    request_id: str,
    key_id: str,
    owner_sub: str,
    model: str,
    bedrock_model_id: str,
    operation: str,
    usage: TokenUsage,
    prices: Prices,
    latency_ms: int,
    status: str,
    at: datetime,
    reserved_key_usd: Decimal = Decimal(0),
    reserved_owner_usd: Decimal = Decimal(0),
) -> UsageEntry:
    """Build an entry, pricing it exactly."""
    return UsageEntry(
        request_id=request_id,
        key_id=key_id,
        owner_sub=owner_sub,
        model=model,
        bedrock_model_id=bedrock_model_id,
        operation=operation,
        usage=usage,
        cost=compute_cost(prices, usage),
        latency_ms=latency_ms,
        status=status,
        timestamp=isoformat(at),
        reserved_key_usd=reserved_key_usd,
        reserved_owner_usd=reserved_owner_usd,
    )


class Ledger:
    """Writes and reads the usage table. Takes a boto3 DynamoDB ``Table`` resource."""

    def __init__(self, table: Any, *, attempts: int = 3, backoff_seconds: float = 0.05) -> None:
        self._table = table
        self._client = table.meta.client
        self._attempts = attempts
        self._backoff = backoff_seconds

    @property
    def table(self) -> Any:
        """The usage table (``Meter`` keeps its counters and reservations beside the ledger)."""
        return self._table

    def record(self, entry: UsageEntry) -> bool:
        """Store ``entry`` and its aggregates atomically; True once stored.

        A replay of an already stored entry is a no-op that returns True. When
        DynamoDB keeps failing, the entry is logged as one structured line
        (``UNRECORDED_EVENT``) for ``pennyworth ledger reconcile`` and False is
        returned: usage is never silently dropped, and the caller's answer is
        not withheld because bookkeeping failed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        items = self._transaction(entry)
        for attempt in range(1, self._attempts + 1):
            try:
                self._client.transact_write_items(TransactItems=items)
                return True
            except ClientError as exc:
                if _is_duplicate(exc):
                    return True
                error = exc
            except BotoCoreError as exc:
                error = exc
            if attempt < self._attempts:
                time.sleep(self._backoff * 2 ** (attempt - 1))
        logger.error(
            "usage could not be stored; replay with 'pennyworth ledger reconcile'",
            extra={"event": UNRECORDED_EVENT, "entry": entry.to_json(), "reason": str(error)},
        )
        return False

    def entries_for_key(self, key_id: str) -> list[dict[str, Any]]:
        """Every ledger entry of one key, oldest first (tests and exports)."""
        return query_all(
            self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :req)",
            ExpressionAttributeValues={":pk": f"KEY#{key_id}", ":req": "REQ#"},
        )

    def aggregate(self, scope: str, period: str) -> dict[str, Any]:
        """One aggregate item, e.g. ``("KEY#abc", "MONTH#2026-11")``; zeros when absent."""
        item = self._table.get_item(Key={"pk": f"AGG#{scope}", "sk": period}, ConsistentRead=True).get("Item")
        totals: dict[str, Any] = {name: 0 for name in _COUNTERS}
        totals["cost"] = Decimal(0)
        totals["committed"] = Decimal(0)
        if item:
            totals.update({k: item[k] for k in (*_COUNTERS, "cost", "committed") if k in item})
        return totals

    def usage(
        self,
        first: date,
        last: date,
        group_by: str,
        *,
        key_ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Usage totals for the days ``first``..``last`` (inclusive, UTC), one row per group.

        ``group_by`` is ``key``, ``owner``, ``model`` or ``day``. With
        ``key_ids`` (self-service), only those keys' usage is counted.
        """
        if group_by not in USAGE_GROUPS:
            raise ValueError(f"group_by must be one of {USAGE_GROUPS}")
        rows: dict[str, dict[str, Any]] = {}
        for group, item in self._usage_items(first, last, group_by, key_ids):
            row = rows.setdefault(group, {"group": group, **{name: 0 for name in _COUNTERS}, "cost": Decimal(0)})
            for name in (*_COUNTERS, "cost"):
                row[name] += item.get(name, 0)
        ordered = sorted(rows.values(), key=lambda r: r["group"])
        return ordered if group_by == "day" else sorted(ordered, key=lambda r: r["cost"], reverse=True)

    def _usage_items(
        self, first: date, last: date, group_by: str, key_ids: list[str] | None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if key_ids is None:
            # Everyone: the day aggregates, one query per day on the by-period index.
            prefix = {"key": "KEY#", "owner": "OWNER#", "model": "MODEL#", "day": "ALL"}[group_by]
            for n in range((last - first).days + 1):
                day = first + timedelta(days=n)
                for item in query_all(
                    self._table,
                    IndexName="by-period",
                    KeyConditionExpression="gsi1pk = :period AND begins_with(gsi1sk, :prefix)",
                    ExpressionAttributeValues={":period": f"DAY#{day}", ":prefix": prefix},
                ):
                    if item.get("type") == "aggregate":
                        yield (day.isoformat() if group_by == "day" else item["gsi1sk"].split("#", 1)[1]), item
            return
        for key_id in key_ids:
            if group_by == "model":
                # No per-key-per-model aggregate exists: sum the key's entries (exact, one query per key).
                for entry in self._between(f"KEY#{key_id}", f"REQ#{first}", f"REQ#{last}T99"):
                    yield entry["model"], {**entry, "requests": 1}
                continue
            for item in self._between(f"AGG#KEY#{key_id}", f"DAY#{first}", f"DAY#{last}"):
                group = {"key": key_id, "day": item["sk"].split("#", 1)[1], "owner": "self"}[group_by]
                yield group, item

    def _between(self, pk: str, first: str, last: str) -> list[dict[str, Any]]:
        return query_all(
            self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={":pk": pk, ":first": first, ":last": last},
        )

    def _transaction(self, entry: UsageEntry) -> list[dict[str, Any]]:
        # table.meta.client is the resource's client: it (de)serialises
        # DynamoDB types itself, so plain Python values go in.
        table = self._table.name
        ledger_item = {
            "pk": f"KEY#{entry.key_id}",
            "sk": f"REQ#{entry.timestamp}#{entry.request_id}",
            "gsi1pk": f"LEDGER#{entry.day}",
            "gsi1sk": f"{entry.timestamp}#{entry.request_id}",
            "type": "entry",
            **_flatten(entry),
        }
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": table,
                    "Item": ledger_item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        increments = {
            ":requests": 1,
            ":input_tokens": entry.usage.input_tokens,
            ":output_tokens": entry.usage.output_tokens,
            ":cache_read_tokens": entry.usage.cache_read_tokens,
            ":cache_write_tokens": entry.usage.cache_write_tokens,
            ":cost": dynamo_number(entry.cost),
        }
        # ``committed`` (= cost + outstanding reservations) is what budgets are
        # checked against; billing swaps this request's reservation for its cost.
        committed = {
            f"KEY#{entry.key_id}": dynamo_number(entry.cost - entry.reserved_key_usd),
            f"OWNER#{entry.owner_sub}": dynamo_number(entry.cost - entry.reserved_owner_usd),
        }
        for scope in aggregate_scopes(entry):
            for period in (f"DAY#{entry.day}", f"MONTH#{entry.month}"):
                values = dict(increments)
                if period.startswith("MONTH#") and scope in committed:
                    values[":committed"] = committed[scope]
                items.append(
                    {
                        "Update": {
                            "TableName": table,
                            "Key": {"pk": f"AGG#{scope}", "sk": period},
                            "UpdateExpression": "ADD "
                            + ", ".join(f"{name[1:]} {name}" for name in values)
                            + " SET gsi1pk = :period, gsi1sk = :scope, #type = :type",
                            "ExpressionAttributeNames": {"#type": "type"},
                            "ExpressionAttributeValues": {
                                **values,
                                ":period": period,
                                ":scope": scope,
                                ":type": "aggregate",
                            },
                        }
                    }
                )
        return items


def usd(value: Decimal | int | None) -> str | None:
    """Exact USD as a plain decimal string (never a float, never exponent notation)."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f") if value else "0"


def dynamo_number(value: Decimal) -> Decimal:
    """``value`` ready for DynamoDB: the same exact number, written so every implementation parses it."""
    if not value:
        return Decimal(0)  # not 0E-11
    sign, digits, exponent = value.as_tuple()
    if "E" in str(value) and len(digits) == 1:
        # boto3 sends str(value), e.g. "2E-8". DynamoDB accepts it, but moto (our
        # local DynamoDB) reads a number without a "." as an int and fails. "2.0E-8"
        # is the same value and parses everywhere.
        return Decimal((sign, (*digits, 0), int(exponent) - 1))
    return value


def aggregate_scopes(entry: UsageEntry) -> list[str]:
    """The aggregate rows an entry adds to."""
    return [f"KEY#{entry.key_id}", f"OWNER#{entry.owner_sub}", f"MODEL#{entry.model}", "ALL"]


def _flatten(entry: UsageEntry) -> dict[str, Any]:
    data = {k: dynamo_number(v) if isinstance(v, Decimal) else v for k, v in asdict(entry).items() if k != "usage"}
    data.update(asdict(entry.usage))
    return data


def _is_duplicate(exc: Any) -> bool:
    # The Put is first in the transaction: its ConditionalCheckFailed means the
    # entry is already stored, so this is a replay (see ``record``).
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    if not reasons:
        return "ConditionalCheckFailed" in str(exc)
    return reasons[0].get("Code") == "ConditionalCheckFailed"


def query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a DynamoDB ``Query`` returns, following pagination."""
    items: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def parse_reconcile_lines(lines: list[str]) -> list[UsageEntry]:
    """The entries in structured log lines marked ``UNRECORDED_EVENT`` (others skipped)."""
    entries = []
    for line in lines:
        try:
            record = parse_json(line)  # the caller's text: bounded like every request body
        except InvalidRequest:
            continue
        if isinstance(record, dict) and record.get("event") == UNRECORDED_EVENT:
            entries.append(UsageEntry.from_json(record["entry"]))
    return entries
