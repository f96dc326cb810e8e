"""Today's ledger and meter (commit da4004c), frozen, so the benchmark can measure them beside the new design.

``bench/ledger_scale.py`` runs this code and ``chalicelib/accounting`` under the same
contention model in the same run. It is the design issue 12 describes: every billed
request is one ``TransactWriteItems`` of 9 items (the entry and 8 aggregates, two of
them shared by the whole deployment), with admission's rate-window update and
reservation (a transaction when a key and its owner both have budgets) before it and
a token-count correction after it. The code is unchanged but for ``SLEEP`` (the retry
backoff, so the simulation can make it virtual) and imports; it is not used by the
gateway. Do not fix it here: it is the "before" of the measurement.
"""

# ruff: noqa
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.shared.usage import TokenUsage
from chalicelib.shared.money import compute_cost
from chalicelib.catalog import ModelEntry
from chalicelib.shared.money import Prices
from chalicelib.keys.store import KeyRecord
from chalicelib.shared.dates import isoformat, utcnow
from chalicelib.observability import logger

#: The retry backoff's sleep (the benchmark makes it virtual).
SLEEP: Callable[[float], None] = time.sleep


#: Marker of the structured log line written when an entry cannot be stored;
#: ``pennyworth ledger reconcile`` replays lines carrying it.
UNRECORDED_EVENT = "usage_unrecorded"
USAGE_GROUPS = ("key", "owner", "model", "day")
_COUNTERS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


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
                SLEEP(self._backoff * 2 ** (attempt - 1))
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


WINDOW_SECONDS = 60
#: Owner budgets are read at most this often per warm Lambda (they change rarely).
OWNER_BUDGET_CACHE_SECONDS = 30


@dataclass
class Ticket:
    """An admitted request: what was reserved for it, and the headers to send back."""

    key: KeyRecord
    model: ModelEntry
    reserved_key_usd: Decimal = Decimal(0)
    reserved_owner_usd: Decimal = Decimal(0)
    counted_tokens: int = 0
    window: int | None = None
    month: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Meter:
    """Admission control and billing over the usage table."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime] = utcnow) -> None:
        self._ledger = ledger
        self._table = ledger.table
        self._clock = clock
        self._owner_budgets: dict[str, tuple[float, Decimal | None]] = {}

    # -- admission ---------------------------------------------------------------------------

    def admit(self, key: KeyRecord, model: ModelEntry, *, input_tokens: int, max_output_tokens: int | None) -> Ticket:
        """Check rate limits and reserve the worst-case cost against the budgets.

        Raises
        ------
        RateLimited
            The key's requests or tokens per minute would be exceeded.
        QuotaExceeded
            The key's or its owner's monthly budget cannot cover the worst case.
        """
        now = self._clock()
        ticket = Ticket(key=key, model=model, month=now.strftime("%Y-%m"))
        if key.rpm_limit or key.tpm_limit:
            self._count(ticket, now, input_tokens + (max_output_tokens or 0))
        worst = worst_case_cost(model, input_tokens, max_output_tokens)
        owner_budget = self.owner_budget(key.owner_sub)
        reservations = []
        if key.monthly_budget_usd is not None:
            reservations.append(("KEY", f"KEY#{key.key_id}", key.monthly_budget_usd))
        if owner_budget is not None:
            reservations.append(("OWNER", f"OWNER#{key.owner_sub}", owner_budget))
        if reservations:
            self._reserve(ticket, reservations, worst)
        return ticket

    def _count(self, ticket: Ticket, now: datetime, tokens: int) -> None:
        key = ticket.key
        window = int(now.timestamp()) // WINDOW_SECONDS * WINDOW_SECONDS
        reset = max(1, window + WINDOW_SECONDS - int(now.timestamp()))
        conditions, values = [], {":one": 1, ":tokens": tokens, ":ttl": window + 3 * WINDOW_SECONDS}
        if key.rpm_limit:
            conditions.append("(attribute_not_exists(requests) OR requests < :rpm)")
            values[":rpm"] = key.rpm_limit
        if key.tpm_limit:
            if tokens > key.tpm_limit:
                raise errors.RateLimited(
                    f"Request too large: it may use up to {tokens} tokens, and this key is limited to "
                    f"{key.tpm_limit} tokens per minute. Send fewer tokens or a smaller max_tokens.",
                    code="tokens_exceeded",
                    headers=_limit_headers(key, None, None, reset),
                )
            conditions.append("(attribute_not_exists(tokens) OR tokens <= :room)")
            values[":room"] = key.tpm_limit - tokens
        from botocore.exceptions import ClientError

        try:
            counts = self._table.update_item(
                Key={"pk": f"RATE#{key.key_id}", "sk": str(window)},
                UpdateExpression="ADD requests :one, tokens :tokens SET #ttl = :ttl",
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise errors.RateLimited(
                f"Rate limit reached for this key ({_describe_limits(key)}). Retry in {reset} s.",
                retry_after=reset,
                code="rate_limit_exceeded",
                headers=_limit_headers(key, None, None, reset),
            ) from None
        ticket.window = window
        ticket.counted_tokens = tokens
        ticket.headers.update(_limit_headers(key, int(counts["requests"]), int(counts["tokens"]), reset))

    def _reserve(self, ticket: Ticket, reservations: list[tuple[str, str, Decimal]], worst: Decimal) -> None:
        from botocore.exceptions import ClientError

        for kind, scope, budget in reservations:
            if worst > budget:  # would pass the check below on a month's first request
                raise self._quota_error(kind, scope, budget, ticket, worst)
        period = f"MONTH#{ticket.month}"
        updates = [
            {
                "TableName": self._table.name,
                "Key": {"pk": f"AGG#{scope}", "sk": period},
                "UpdateExpression": "ADD committed :worst SET gsi1pk = :period, gsi1sk = :scope, #type = :type",
                "ConditionExpression": "attribute_not_exists(committed) OR committed <= :room",
                "ExpressionAttributeNames": {"#type": "type"},
                "ExpressionAttributeValues": {
                    ":worst": dynamo_number(worst),
                    ":room": dynamo_number(budget - worst),
                    ":period": period,
                    ":scope": scope,
                    ":type": "aggregate",
                },
            }
            for _, scope, budget in reservations
        ]
        try:
            if len(updates) == 1:
                self._table.update_item(**{k: v for k, v in updates[0].items() if k != "TableName"})
            else:
                self._table.meta.client.transact_write_items(TransactItems=[{"Update": u} for u in updates])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ConditionalCheckFailedException":
                failed = 0
            elif code == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                failed = next((i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"), -1)
                if failed < 0:
                    raise
            else:
                raise
            kind, scope, budget = reservations[failed]
            raise self._quota_error(kind, scope, budget, ticket, worst) from None
        for kind, _, _ in reservations:
            if kind == "KEY":
                ticket.reserved_key_usd = worst
            else:
                ticket.reserved_owner_usd = worst

    def _quota_error(self, kind: str, scope: str, budget: Decimal, ticket: Ticket, worst: Decimal) -> errors.AppError:
        spent = self._ledger.aggregate(scope, f"MONTH#{ticket.month}")["cost"]
        whose = "This API key's" if kind == "KEY" else "Your (the key owner's)"
        return errors.QuotaExceeded(
            f"{whose} monthly budget of ${usd(budget)} for {ticket.month} cannot cover this request "
            f"(spent ${usd(spent)}; this request may cost up to ${usd(worst)}). "
            "Lower max_tokens, or ask an admin to raise the budget.",
            headers=dict(ticket.headers),
        )

    # -- billing -----------------------------------------------------------------------------

    def settle(
        self,
        ticket: Ticket,
        *,
        request_id: str,
        operation: str,
        usage: TokenUsage,
        latency_ms: int,
        status: str,
    ) -> UsageEntry:
        """Bill the actual usage, releasing the reservation in the same transaction."""
        entry = new_entry(
            request_id=request_id,
            key_id=ticket.key.key_id,
            owner_sub=ticket.key.owner_sub,
            model=ticket.model.id,
            bedrock_model_id=ticket.model.bedrock_model_id,
            operation=operation,
            usage=usage,
            prices=ticket.model.prices,
            latency_ms=latency_ms,
            status=status,
            at=self._clock(),
            reserved_key_usd=ticket.reserved_key_usd,
            reserved_owner_usd=ticket.reserved_owner_usd,
        )
        self._ledger.record(entry)
        if ticket.window is not None and ticket.key.tpm_limit:
            used = usage.prompt_tokens + usage.output_tokens
            self._adjust_window(ticket, tokens=used - ticket.counted_tokens)
        ticket.headers["x-pennyworth-cost-usd"] = usd(entry.cost)
        return entry

    def release(self, ticket: Ticket) -> None:
        """Give back a reservation for a call that produced nothing billable.

        A failed release leaves the reservation in place: the budget is
        under-used until the month ends, never overrun. It is logged.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        releases = [
            (f"KEY#{ticket.key.key_id}", ticket.reserved_key_usd),
            (f"OWNER#{ticket.key.owner_sub}", ticket.reserved_owner_usd),
        ]
        for scope, amount in releases:
            if not amount:
                continue
            try:
                self._table.update_item(
                    Key={"pk": f"AGG#{scope}", "sk": f"MONTH#{ticket.month}"},
                    UpdateExpression="ADD committed :back",
                    ExpressionAttributeValues={":back": dynamo_number(-amount)},
                )
            except (BotoCoreError, ClientError) as exc:
                logger.warning(
                    "reservation not released", extra={"scope": scope, "amount": str(amount), "reason": str(exc)}
                )
        if ticket.window is not None and ticket.counted_tokens and ticket.key.tpm_limit:
            self._adjust_window(ticket, tokens=-ticket.counted_tokens)

    def _adjust_window(self, ticket: Ticket, *, tokens: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if not tokens:
            return
        try:
            self._table.update_item(
                Key={"pk": f"RATE#{ticket.key.key_id}", "sk": str(ticket.window)},
                UpdateExpression="ADD tokens :delta",
                ExpressionAttributeValues={":delta": tokens},
            )
        except (BotoCoreError, ClientError) as exc:
            # The window expires within a minute anyway; only the next requests' headroom is off.
            logger.warning("rate window not adjusted", extra={"key_id": ticket.key.key_id, "reason": str(exc)})

    # -- budgets and status ------------------------------------------------------------------

    def owner_budget(self, owner_sub: str, *, fresh: bool = False) -> Decimal | None:
        """The owner's monthly budget in USD, or None (cached for a few seconds per process)."""
        cached = self._owner_budgets.get(owner_sub)
        if cached and not fresh and time.monotonic() - cached[0] < OWNER_BUDGET_CACHE_SECONDS:
            return cached[1]
        item = self._table.get_item(Key={"pk": f"BUDGET#OWNER#{owner_sub}", "sk": "CONFIG"}).get("Item")
        budget = item.get("monthly_budget_usd") if item else None
        self._owner_budgets[owner_sub] = (time.monotonic(), budget)
        return budget

    def set_owner_budget(self, owner_sub: str, monthly_budget_usd: Decimal | None, *, actor: str) -> None:
        """Set (or clear, with None) an owner's monthly budget."""
        key = {"pk": f"BUDGET#OWNER#{owner_sub}", "sk": "CONFIG"}
        if monthly_budget_usd is None:
            self._table.delete_item(Key=key)
        else:
            self._table.put_item(
                Item={
                    **key,
                    "monthly_budget_usd": monthly_budget_usd,
                    "updated_at": isoformat(self._clock()),
                    "updated_by": actor,
                }
            )
        self._owner_budgets.pop(owner_sub, None)

    def key_status(self, key: KeyRecord) -> dict[str, Any]:
        """What a key holder may know about its own key: limits, this month's spend and budget left."""
        month = self._clock().strftime("%Y-%m")
        totals = self._ledger.aggregate(f"KEY#{key.key_id}", f"MONTH#{month}")
        spent = Decimal(totals["cost"])
        reserved = max(Decimal(0), Decimal(totals["committed"]) - spent)
        budget = key.monthly_budget_usd
        owner_budget = self.owner_budget(key.owner_sub)
        owner_spent = (
            self._ledger.aggregate(f"OWNER#{key.owner_sub}", f"MONTH#{month}")["cost"] if owner_budget else None
        )
        return {
            "object": "key",
            "key_id": key.key_id,
            "prefix": key.prefix,
            "name": key.name,
            "owner": {"sub": key.owner_sub, "email": key.owner_email},
            "allowed_models": list(key.allowed_models) if key.allowed_models is not None else None,
            "expires_at": key.expires_at,
            "limits": {"rpm": key.rpm_limit, "tpm": key.tpm_limit},
            "budget": {
                "period": month,
                "monthly_usd": usd(budget),
                "spent_usd": usd(spent),
                "reserved_usd": usd(reserved),
                "remaining_usd": usd(max(Decimal(0), budget - spent - reserved)) if budget is not None else None,
                "owner_monthly_usd": usd(owner_budget),
                "owner_spent_usd": usd(owner_spent),
            },
            "usage": {
                "period": month,
                **{
                    name: int(totals[name])
                    for name in ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
                },
            },
        }


#: Bedrock bills an image at most ~1,600 tokens (Claude: 1.15 MP / 750); reserve a little more.
IMAGE_TOKEN_BOUND = 2_000
#: Role markers and separators a model's chat template adds around each message.
MESSAGE_OVERHEAD_TOKENS = 8


def worst_case_cost(model: ModelEntry, input_tokens: int, max_output_tokens: int | None) -> Decimal:
    """The most a request can cost: every prompt token at the dearest input price, every output token."""
    prices = model.prices
    output = max_output_tokens if max_output_tokens is not None else (model.max_output_tokens or 0)
    dearest_input = max(prices.input, prices.cache_write, prices.cache_read)
    return dearest_input * input_tokens + prices.output * output


def _describe_limits(key: KeyRecord) -> str:
    parts = []
    if key.rpm_limit:
        parts.append(f"{key.rpm_limit} requests/min")
    if key.tpm_limit:
        parts.append(f"{key.tpm_limit} tokens/min")
    return ", ".join(parts)


def _limit_headers(key: KeyRecord, requests: int | None, tokens: int | None, reset: int) -> dict[str, str]:
    """OpenAI's rate-limit headers for the limits the key has."""
    headers: dict[str, str] = {}
    if key.rpm_limit:
        used = key.rpm_limit if requests is None else requests
        headers["x-ratelimit-limit-requests"] = str(key.rpm_limit)
        headers["x-ratelimit-remaining-requests"] = str(max(0, key.rpm_limit - used))
        headers["x-ratelimit-reset-requests"] = f"{reset}s"
    if key.tpm_limit:
        used = key.tpm_limit if tokens is None else tokens
        headers["x-ratelimit-limit-tokens"] = str(key.tpm_limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, key.tpm_limit - used))
        headers["x-ratelimit-reset-tokens"] = f"{reset}s"
    return headers
