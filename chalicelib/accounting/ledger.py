"""The usage ledger: one exact entry per billed request; aggregates built from the entries.

**Write path (the request).** Billing a request is one conditional ``PutItem``
of its entry (conditional on its absence, so a replay never double-counts).
Giving back a reservation for a call that produced nothing is one conditional
``PutItem`` of a *release* record. Nothing else is written on the request
path: no transaction, and no item every request shares.

**Aggregates.** The usage table's stream feeds the aggregator
(``chalicelib/accounting/aggregator.py``), which sums each batch of new
entries and releases and applies one ``ADD`` per aggregate item per batch,
exactly once, in transactions that also advance a per-shard marker. So the
aggregates equal the sum of the entries, trailing them by the stream's delay
(see docs/accounting.md). Money is ``Decimal`` end to end.

Table layout: ``chalicelib/shared/scopes.py`` (the one module that builds the usage table's
keys). An entry records the team it was admitted under (``team_id``) and what admission
reserved on each budget scope (``reserved``: scope name → USD); entries written before teams
existed carry ``reserved_key_usd``/``reserved_owner_usd`` instead, read as the same thing.

The ``by-period`` index holds the day aggregates (``gsi1pk=DAY#<day>``, ``gsi1sk=<scope>``) and
the request log: every entry under ``gsi1pk=LOG#<month>#<n>`` (``n`` of ``LOG_SHARDS``, from its
request id), ``gsi1sk=<time>#<request_id>``, so every request of a month reads newest first
(``chalicelib/admin/requests.py``) and no index partition takes more than a quarter of the writes.
An entry charged to a team is also in the ``by-team`` index (``gsi2pk=TEAMLOG#<team>#<month>``,
``gsi2sk=<time>#<request_id>``): a team's page of the log is one query, not a filtered read of
everyone's month. Entries written before it are not there; the team's month aggregate counts
the ones that are (``team_logged``), so a reader knows which months it can trust it for.

Entries written before the stream design (no ``aggregation`` attribute) were
aggregated when they were written; the aggregator ignores them, and every
aggregate they produced is read as it is (no migration).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.dates import isoformat
from chalicelib.shared.dynamodb import Attempts, dynamo_number, error_code, plain_client, typed
from chalicelib.shared.money import Prices, compute_cost
from chalicelib.shared.scopes import Scope
from chalicelib.shared.usage import TokenUsage, UsageEntry

#: Marker of the structured log line written when an entry cannot be stored;
#: ``pennyworth ledger reconcile`` replays lines carrying it.
UNRECORDED_EVENT = "usage_unrecorded"
#: Marker of the log line written when a bill is capped at what admission reserved.
CAPPED_EVENT = "usage_capped"
#: Marker of the log line written when a reservation cannot be given back.
UNRELEASED_EVENT = "reservation_unreleased"
#: Value of the ``aggregation`` attribute on items the aggregator sums (the stream filter matches it).
STREAM_AGGREGATION = "stream"
#: Groups whose whole months come from the month aggregates (Ledger._month_rows).
MONTHLY_GROUPS = ("key", "model", "price")
_KINDS = {"key": scopes.KEY, "owner": scopes.OWNER, "team": scopes.TEAM, "model": scopes.MODEL, "price": scopes.PRICE}
USAGE_GROUPS = ("key", "owner", "team", "model", "day", "price")
#: The group of usage no team paid for, when usage is grouped by team.
NO_TEAM = "none"
COUNTERS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
)
#: Release records are bookkeeping, not history: DynamoDB's TTL removes them after this.
RELEASE_TTL_SECONDS = 40 * 24 * 3600
#: Index partitions of a month's request log. An index partition takes about 1,000 writes a second
#: (one write unit per entry up to 1 KB): four keep 1,000 requests a second (bench/ledger_scale.py)
#: at a quarter of that, and cost a reader four queries per page.
LOG_SHARDS = 4


@dataclass(frozen=True)
class Release:
    """A reservation given back: the call it was made for produced nothing billable."""

    ticket_id: str
    key_id: str
    owner_sub: str
    budget_month: str
    #: What admission reserved, by budget scope name.
    reserved: dict[str, Decimal]
    rate_window: int | None
    counted_tokens: int
    timestamp: str
    team_id: str | None = None


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
    team_id: str | None = None,
    reserved: dict[str, Decimal] | None = None,
    budget_month: str = "",
    rate_window: int | None = None,
    counted_tokens: int = 0,
    cap: Decimal | None = None,
    protocol: str = "",
    price_version: int = 0,
    served_by: str = "",
    served_region: str = "",
    requested_model: str = "",
    guardrail_units: dict[str, int] | None = None,
    guardrail_usd: Decimal = Decimal(0),
    guardrail_price_version: int = 0,
) -> UsageEntry:
    """Build an entry, pricing it exactly; with ``cap``, the cost billed is at most ``cap`` (and flagged).

    ``price_version`` names the version of the model's prices ``prices`` is (the one in force when
    the call was admitted), so the bill can be explained after the prices change. ``prices`` are
    the serving model's; ``guardrail_usd`` (what a guardrail's text units cost) is part of the cost.
    """
    cost = compute_cost(prices, usage) + guardrail_usd
    capped = cap is not None and cost > cap
    return UsageEntry(
        request_id=request_id,
        key_id=key_id,
        owner_sub=owner_sub,
        model=model,
        bedrock_model_id=bedrock_model_id,
        operation=operation,
        usage=usage,
        cost=cap if capped and cap is not None else cost,
        latency_ms=latency_ms,
        status=status,
        timestamp=isoformat(at),
        team_id=team_id,
        reserved={name: amount for name, amount in (reserved or {}).items() if amount},
        budget_month=budget_month,
        rate_window=rate_window,
        counted_tokens=counted_tokens,
        capped=capped,
        usage_cost=cost if capped else None,
        protocol=protocol,
        price_version=price_version,
        served_by=served_by,
        served_region=served_region,
        requested_model=requested_model if requested_model != model else "",
        guardrail_units=dict(guardrail_units or {}),
        guardrail_usd=guardrail_usd,
        guardrail_price_version=guardrail_price_version if guardrail_units else 0,
    )


#: Entry fields left out of the stored item when empty (older entries have none of them).
_OMITTED_WHEN_EMPTY = (
    "capped",
    "price_version",
    "served_by",
    "served_region",
    "requested_model",
    "guardrail_units",
    "guardrail_usd",
    "guardrail_price_version",
)


def log_unrecorded(entry: UsageEntry, reason: str, *, trace: bool = False) -> None:
    """The one structured line (``UNRECORDED_EVENT``) of an entry not stored, for ``pennyworth ledger reconcile``."""
    extra = {"event": UNRECORDED_EVENT, "entry": entry.to_json(), "reason": reason}
    logger.error("usage could not be stored; replay with 'pennyworth ledger reconcile'", extra=extra, exc_info=trace)


_ENTRY_FIELDS = tuple(f.name for f in fields(UsageEntry))
_USAGE_FIELDS = tuple(f.name for f in fields(TokenUsage))


def entry_item(entry: UsageEntry) -> dict[str, Any]:
    """The stored item of an entry (boto3 resource form)."""
    data: dict[str, Any] = {}
    # Field by field, not ``asdict``: that deep-copies the whole entry twice (~50 µs of every request).
    for name in _ENTRY_FIELDS:
        value = getattr(entry, name)
        if name in ("usage", "reserved") or value is None or (name in _OMITTED_WHEN_EMPTY and not value):
            continue
        if isinstance(value, Decimal):
            value = dynamo_number(value)
        elif isinstance(value, dict):
            value = dict(value)  # the item's own (a flat mapping of names to numbers)
        data[name] = value
    usage = entry.usage
    data.update((name, getattr(usage, name)) for name in _USAGE_FIELDS)
    if entry.reserved:
        data["reserved"] = {scope: dynamo_number(amount) for scope, amount in entry.reserved.items()}
    if not entry.rate_window:
        data.pop("counted_tokens", None)
    if not entry.budget_month:
        data.pop("budget_month", None)
    if not entry.protocol:
        data.pop("protocol", None)
    return {
        **scopes.entry_key(entry.key_id, entry.timestamp, entry.request_id),
        "type": "entry",
        "aggregation": STREAM_AGGREGATION,
        **data,
        **log_keys(entry.timestamp, entry.request_id),
        **(scopes.team_log_key(entry.team_id, entry.timestamp, entry.request_id) if entry.team_id else {}),
    }


def log_keys(timestamp: str, request_id: str) -> dict[str, str]:
    """Where an entry sits in the request log (the ``by-period`` index): its month's shard, then time."""
    return scopes.log_key(timestamp, request_id, zlib.crc32(request_id.encode()) % LOG_SHARDS)


def entry_from_item(item: dict[str, Any]) -> UsageEntry:
    """An entry from its stored item (boto3 resource form): the inverse of ``entry_item``."""
    names = {f.name for f in fields(UsageEntry)} - {"usage", "reserved"}
    values: dict[str, Any] = {name: item[name] for name in names if name in item}
    values["usage"] = TokenUsage(**{name: int(item.get(name, 0)) for name in COUNTERS if name != "requests"})
    reserved = scopes.reservations_of(item)
    values["reserved"] = {scope.name: Decimal(amount) for scope, amount in reserved.items() if amount}
    for name in ("latency_ms", "counted_tokens", "price_version", "guardrail_price_version"):
        if name in values:
            values[name] = int(values[name])
    if "guardrail_units" in values:
        values["guardrail_units"] = {str(k): int(v) for k, v in values["guardrail_units"].items()}
    if values.get("rate_window") is not None:
        values["rate_window"] = int(values["rate_window"])
    return UsageEntry(**values)


def release_item(release: Release, *, now: float) -> dict[str, Any]:
    """The stored item of a release record (expires ``RELEASE_TTL_SECONDS`` after ``now``)."""
    item: dict[str, Any] = {
        **scopes.release_key(release.key_id, release.ticket_id),
        "type": "release",
        "aggregation": STREAM_AGGREGATION,
        "ticket_id": release.ticket_id,
        "key_id": release.key_id,
        "owner_sub": release.owner_sub,
        "budget_month": release.budget_month,
        "reserved": {scope: dynamo_number(amount) for scope, amount in release.reserved.items() if amount},
        "timestamp": release.timestamp,
        "ttl": int(now) + RELEASE_TTL_SECONDS,
    }
    if release.team_id:
        item["team_id"] = release.team_id
    if release.rate_window is not None:
        item["rate_window"] = release.rate_window
        item["counted_tokens"] = release.counted_tokens
    return item


class Ledger:
    """Writes and reads the usage table. Takes a boto3 DynamoDB ``Table`` resource.

    Parameters
    ----------
    table
        The usage table (a boto3 ``Table`` resource).
    attempts
        Retry policy and its clock (``chalicelib.shared.dynamodb.Attempts``).
    deadline_seconds
        How long one write may take, retries included, when the caller gives no deadline.
    """

    def __init__(
        self,
        table: Any,
        *,
        attempts: Attempts | int | None = None,
        deadline_seconds: float = 2.5,
        backoff_seconds: float | None = None,
    ) -> None:
        self._table = table
        self._client = table.meta.client
        if not isinstance(attempts, Attempts):
            attempts = Attempts()
        if backoff_seconds is not None:
            attempts.backoff_seconds = backoff_seconds
        self.attempts = attempts
        self._deadline_seconds = deadline_seconds

    @property
    def table(self) -> Any:
        """The usage table (``Meter`` keeps its reservations beside the ledger)."""
        return self._table

    def deadline(self, deadline: float | None = None) -> float:
        """``deadline`` (Unix seconds), or now plus the default budget of one ledger operation."""
        return deadline if deadline is not None else self.attempts.timer() + self._deadline_seconds

    def call(self, fn: Callable[[], Any], *, deadline: float | None = None) -> Any:
        """``fn()`` under the ledger's retry policy and ``deadline``."""
        return self.attempts.call(fn, deadline=self.deadline(deadline))

    # -- writing ----------------------------------------------------------------------------

    def record(self, entry: UsageEntry, *, deadline: float | None = None) -> bool:
        """Store ``entry``; True once stored (a replay of a stored entry is a no-op that returns True).

        When DynamoDB keeps failing until ``deadline``, the entry is logged as one
        structured line (``UNRECORDED_EVENT``) for ``pennyworth ledger reconcile``
        and False is returned: usage is never silently dropped, and the caller's
        answer is not withheld because bookkeeping failed.
        """
        item = entry_item(entry)
        stored = self._put_once(item, deadline)
        if stored is not True:
            log_unrecorded(entry, stored)
            return False
        return True

    def record_release(self, release: Release, *, deadline: float | None = None) -> bool:
        """Store a release record (idempotent per ticket); False, logged, when DynamoDB keeps failing.

        A release that is never stored leaves its reservation in place: the
        budget is under-used until the month ends, never overrun.
        """
        stored = self._put_once(release_item(release, now=self.attempts.timer()), deadline)
        if stored is not True:
            logger.warning(
                "reservation not released",
                extra={"event": UNRELEASED_EVENT, "ticket_id": release.ticket_id, "reason": stored},
            )
            return False
        return True

    def _put_once(self, item: dict[str, Any], deadline: float | None) -> bool | str:
        from botocore.exceptions import BotoCoreError, ClientError

        client, request = plain_client(self._table), typed(item)

        def put() -> None:
            client.put_item(TableName=self._table.name, Item=request, ConditionExpression="attribute_not_exists(pk)")

        try:
            self.call(put, deadline=deadline)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return True  # already stored: this is a replay
            return str(exc)
        except BotoCoreError as exc:
            return str(exc)
        return True

    # -- reading ----------------------------------------------------------------------------

    def entries_for_key(self, key_id: str) -> list[dict[str, Any]]:
        """Every ledger entry of one key, oldest first (tests and exports)."""
        return query_all(
            self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :req)",
            ExpressionAttributeValues={":pk": scopes.entries_pk(key_id), ":req": scopes.ENTRY_PREFIX},
        )

    def aggregate(self, scope: Scope | str, period: str) -> dict[str, Any]:
        """One aggregate item, e.g. ``(scopes.key("abc"), "MONTH#2026-11")`` (or ``"KEY#abc"``); zeros when absent."""
        scope = Scope.parse(scope) if isinstance(scope, str) else scope
        item = self.call(lambda: self._table.get_item(Key=scope.aggregate(period), ConsistentRead=True)).get("Item")
        totals: dict[str, Any] = {name: 0 for name in COUNTERS}
        totals["cost"] = Decimal(0)
        totals["committed"] = Decimal(0)
        totals["billed"] = Decimal(0)
        totals["capped_requests"] = 0
        totals["capped_usd"] = Decimal(0)
        if item:
            totals.update({k: item[k] for k in totals if k in item})
            if "billed" not in item:
                # Admission and the aggregator add ``billed`` to every month they reserve or bill in;
                # a month without it was aggregated before ``billed`` was counted (its cost is what
                # it billed), or reserved nothing (``committed`` is 0: nothing is held either way).
                totals["billed"] = totals["cost"]
        return totals

    def held(self, scope: Scope | str, month: str) -> Decimal:
        """What admission still holds in reservations on ``scope``'s month: ``committed - billed``, at least 0.

        ``billed`` is the cost charged to the month's budget (by the month admission reserved in).
        Until the aggregator has caught up, this includes the worst cases of requests billed in
        the last few seconds.
        """
        totals = self.aggregate(scope, scopes.month_period(month))
        return max(Decimal(0), Decimal(totals["committed"]) - Decimal(totals["billed"]))

    def usage(
        self,
        first: date,
        last: date,
        group_by: str,
        *,
        key_ids: list[str] | None = None,
        team_id: str | None = None,
        owner_sub: str | None = None,
        today: date | None = None,
    ) -> list[dict[str, Any]]:
        """Usage totals for the days ``first``..``last`` (inclusive, UTC), one row per group.

        ``owner_sub``: ``key_ids`` are every key of this person (their own, not a team's): their
        aggregates answer by day and by model. ``today``: no entry is later, so a month from its
        first day up to today is a whole month (its month aggregates answer by key, model or price).

        ``group_by`` is ``key``, ``owner``, ``team``, ``model`` or ``day``. With ``key_ids``
        (self-service), only those keys' usage is counted; with ``team_id`` too, only what those
        keys spent while charged to that team (the entries say which team admitted them). Usage
        of no team is the row ``NO_TEAM`` when everyone's usage is grouped by team.
        """
        if group_by not in USAGE_GROUPS:
            raise ValueError(f"group_by must be one of {USAGE_GROUPS}")
        rows: dict[str, dict[str, Any]] = {}
        for group, item in self._usage_items(first, last, group_by, key_ids, team_id, owner_sub, today):
            row = rows.setdefault(group, {"group": group, **{name: 0 for name in COUNTERS}, "cost": Decimal(0)})
            for name in (*COUNTERS, "cost"):
                row[name] += item.get(name, 0)
        rows = {group: row for group, row in rows.items() if group != NO_TEAM or row["requests"] or row["cost"]}
        ordered = sorted(rows.values(), key=lambda r: r["group"])
        return ordered if group_by == "day" else sorted(ordered, key=lambda r: r["cost"], reverse=True)

    def top_month_rows(
        self, first: date, last: date, limit: int, *, today: date | None = None
    ) -> tuple[list[dict[str, Any]], int, dict[str, Any]] | None:
        """Everyone's usage of a whole month by key, the ``limit`` costliest keys only: their rows (as
        ``usage`` makes them, in its order), how many keys have usage, and the month's totals.

        Reads every key's month cost alone (one query of the ``by-period`` index, two attributes
        an item), then the counters of the keys shown (``BatchGetItem``), and the totals from the
        month's ``ALL`` aggregate. None when the range is not one whole month or its month rows
        are not all indexed (``usage`` answers then).
        """
        month_end = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        whole = first.day == 1 and last <= month_end and (last >= month_end or (today is not None and last >= today))
        if not whole:
            return None
        month = first.strftime("%Y-%m")
        costs = query_all(
            self._table,
            IndexName="by-period",
            KeyConditionExpression="gsi1pk = :period AND begins_with(gsi1sk, :prefix)",
            ExpressionAttributeValues={
                ":period": scopes.month_period(month),
                ":prefix": scopes.kind_prefix(scopes.KEY),
            },
            ProjectionExpression="gsi1sk, requests, cost",
        )
        everything = self.aggregate(scopes.EVERYTHING, scopes.month_period(month))
        if sum(int(item.get("requests", 0)) for item in costs) != int(everything.get("requests", 0)):
            return None
        ranked = sorted(
            ((Scope.parse(item["gsi1sk"]), Decimal(item.get("cost", 0))) for item in costs),
            key=lambda pair: pair[0].id,
        )
        ranked.sort(key=lambda pair: pair[1], reverse=True)
        shown = [scope for scope, _ in ranked[:limit]]
        found = self._month_items(shown, month, projection="pk, " + ", ".join((*COUNTERS, "cost")))
        rows = []
        for scope in shown:
            item = found.get(scope, {})
            rows.append(
                {
                    "group": scope.id,
                    **{name: item.get(name, 0) for name in COUNTERS},
                    "cost": item.get("cost", Decimal(0)),
                }
            )
        totals = {name: everything.get(name, 0) for name in (*COUNTERS, "cost")}
        return rows, len(costs), totals

    def month_costs(self, wanted: list[Scope], month: str) -> dict[Scope, Decimal]:
        """Each scope's cost in ``month``: one ``BatchGetItem`` per 100 scopes; absent: 0."""
        found = self._month_items(wanted, month, projection="pk, cost")
        return {scope: Decimal(found[scope].get("cost", 0)) if scope in found else Decimal(0) for scope in wanted}

    def _month_items(
        self, wanted: list[Scope], month: str, projection: str | None = None
    ) -> dict[Scope, dict[str, Any]]:
        """The month aggregates of these scopes that exist: one ``BatchGetItem`` per 100 scopes."""
        by_pk = {scope.aggregate_pk: scope for scope in wanted}
        keys = [scope.month(month) for scope in by_pk.values()]
        client, name = self._table.meta.client, self._table.name
        found: dict[Scope, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            asked: dict[str, Any] = {"Keys": keys[start : start + 100]}
            if projection:
                asked["ProjectionExpression"] = projection
            request: dict[str, Any] | None = {name: asked}
            while request:
                page = self.call(lambda request=request: client.batch_get_item(RequestItems=request))
                for item in page.get("Responses", {}).get(name, []):
                    found[by_pk[item["pk"]]] = item
                request = page.get("UnprocessedKeys") or None
        return found

    def team_log_months(self, team_id: str, months: list[str]) -> set[str]:
        """Those of ``months`` whose every entry charged to the team is in its log (the by-team index).

        The team's month aggregate counts its requests and, of them, the entries in its log
        (``team_logged``): equal, the log is whole (no aggregate yet: nothing is missing). One
        ``BatchGetItem``. Entries trail into the aggregates by the stream's delay; entries written
        since the index existed are in it either way.
        """
        team = scopes.team(team_id)
        wanted = {team.month(month)["sk"]: month for month in months}
        client, name = self._table.meta.client, self._table.name
        found: dict[str, dict[str, Any]] = {}
        keys = [team.month(month) for month in months]
        for start in range(0, len(keys), 100):
            request: dict[str, Any] | None = {
                name: {"Keys": keys[start : start + 100], "ProjectionExpression": "sk, requests, " + scopes.TEAM_LOGGED}
            }
            while request:
                page = self.call(lambda request=request: client.batch_get_item(RequestItems=request))
                for item in page.get("Responses", {}).get(name, []):
                    found[item["sk"]] = item
                request = page.get("UnprocessedKeys") or None
        return {
            month
            for sk, month in wanted.items()
            if int(found.get(sk, {}).get("requests", 0)) == int(found.get(sk, {}).get(scopes.TEAM_LOGGED, 0))
        }

    def day_aggregates(self, day: date, prefix: str = "") -> list[dict[str, Any]]:
        """Every aggregate of one day whose scope starts with ``prefix`` (one query on ``by-period``)."""
        return self._period_rows(scopes.day_period(day), prefix)

    def _period_rows(self, period: str, prefix: str = "", *, counters_only: bool = False) -> list[dict[str, Any]]:
        """The aggregates of a day or (where indexed) a month whose scope starts with ``prefix``.

        ``counters_only``: just the scope, the counters and the cost of each (what a usage report
        sums): a month of a thousand keys sends back a third of the bytes.
        """
        condition = "gsi1pk = :period" + (" AND begins_with(gsi1sk, :prefix)" if prefix else "")
        values = {":period": period, **({":prefix": prefix} if prefix else {})}
        projection: dict[str, Any] = {}
        if counters_only:
            names = ("gsi1sk", "type", *COUNTERS, "cost")
            projection = {
                "ProjectionExpression": ", ".join(f"#p{n}" for n in range(len(names))),
                "ExpressionAttributeNames": {f"#p{n}": name for n, name in enumerate(names)},
            }
        items = query_all(
            self._table,
            IndexName="by-period",
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            **projection,
        )
        return [item for item in items if item.get("type") == "aggregate"]

    def _usage_items(
        self,
        first: date,
        last: date,
        group_by: str,
        key_ids: list[str] | None,
        team_id: str | None,
        owner_sub: str | None = None,
        today: date | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if key_ids is None:
            yield from self._everyone(first, last, group_by, today)
            return
        if owner_sub is not None and team_id is None:
            found = self._owners(owner_sub, key_ids, first, last, group_by, today)
            if found is not None:
                yield from found
                return
        if team_id is not None and group_by == "day":
            # The team's own aggregate is exact for the team, whichever keys it was charged by.
            for item in self._between(scopes.team(team_id).aggregate_pk, *_days(first, last)):
                yield scopes.period_value(item["sk"]), item
            return
        for key_id in key_ids:
            if group_by in ("model", "team", "price") or team_id is not None:
                # No per-key-per-model (or per-key-per-team) aggregate: sum the key's entries (exact, a query per key).
                for entry in self._between(scopes.entries_pk(key_id), *scopes.entry_range(first, last)):
                    if team_id is not None and entry.get("team_id") != team_id:
                        continue
                    group = {
                        "model": entry["model"],
                        "price": f"{entry['model']}#{int(entry.get('price_version', 0))}",
                        "team": entry.get("team_id") or NO_TEAM,
                        "key": key_id,
                        "owner": entry["owner_sub"],
                    }[group_by]
                    yield group, {**entry, "requests": 1}
                continue
            for item in self._between(scopes.key(key_id).aggregate_pk, *_days(first, last)):
                group = {"key": key_id, "day": scopes.period_value(item["sk"]), "owner": "self"}[group_by]
                yield group, item

    def _owners(
        self, owner_sub: str, key_ids: list[str], first: date, last: date, group_by: str, today: date | None
    ) -> list[tuple[str, dict[str, Any]]] | None:
        """One person's usage from their own aggregates (None: ask the keys): by day or in all, their
        day rows (one query); by model, their per-model days (two queries), unless some days were
        aggregated before those rows existed; by key over a whole month, their keys' month rows
        (one batch read)."""
        owner = scopes.owner(owner_sub)
        if group_by in ("day", "owner", "model"):
            days = self._between(owner.aggregate_pk, *_days(first, last))
            if group_by != "model":
                return [(scopes.period_value(i["sk"]) if group_by == "day" else "self", i) for i in days]
            low, high = scopes.model_day_period(first, ""), scopes.model_day_period(last, "~")
            by_model = self._between(owner.aggregate_pk, low, high)
            if sum(int(i.get("requests", 0)) for i in by_model) != sum(int(i.get("requests", 0)) for i in days):
                return None
            return [(scopes.model_of_model_day(i["sk"]), i) for i in by_model]
        month_end = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        whole = first.day == 1 and (last >= month_end or (today is not None and last >= today))
        if group_by == "key" and whole and last <= month_end:
            items = self._month_items([scopes.key(k) for k in key_ids], first.strftime("%Y-%m"))
            # A month row may hold only a reservation (admitted, not yet billed): no usage to show.
            return [(scope.id, item) for scope, item in items.items() if int(item.get("requests", 0))]
        return None

    def _everyone(
        self, first: date, last: date, group_by: str, today: date | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Everyone's usage: the day aggregates, one query per day on the by-period index; a whole
        month by key, model or price version, its month aggregates (one query) when all are indexed."""
        day = first
        while day <= last:
            month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            whole = day.day == 1 and (last >= month_end or (today is not None and last >= today))
            monthly = whole and group_by in MONTHLY_GROUPS
            rows = self._month_rows(day.strftime("%Y-%m"), _KINDS[group_by]) if monthly else None
            if rows is not None:
                yield from rows
                day = month_end + timedelta(days=1)
                continue
            yield from self._everyone_on(day, group_by)
            day += timedelta(days=1)

    def _month_rows(self, month: str, kind: str) -> list[tuple[str, dict[str, Any]]] | None:
        """A month's aggregates of one kind from the index, or None when the index does not hold them all.

        Months are indexed since the aggregator began writing ``gsi1pk`` on them: a row it has not
        touched since is missing, which the month's total (every request) gives away. Each entry
        adds to exactly one key, one model and one price version, so their rows add up to it.
        """
        items = self._period_rows(scopes.month_period(month), scopes.kind_prefix(kind), counters_only=True)
        rows = [(scopes.Scope.parse(item["gsi1sk"]).id, item) for item in items]
        everything = self.aggregate(scopes.EVERYTHING, scopes.month_period(month))
        counted = sum(int(item.get("requests", 0)) for _, item in rows)
        return rows if counted == int(everything.get("requests", 0)) else None

    def _everyone_on(self, day: date, group_by: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Everyone's usage on one day: the day's rows of one kind (a query on the by-period index that
        reads only them: a day of a thousand keys is a thousand rows, its models a handful)."""
        everything = self.day_aggregates(day, scopes.EVERYTHING.name) if group_by in ("day", "team") else []
        if group_by == "day":
            for item in everything:
                yield day.isoformat(), item
            return
        items = self.day_aggregates(day, scopes.kind_prefix(_KINDS[group_by]))
        for item in items:
            yield scopes.Scope.parse(item["gsi1sk"]).id, item
        if group_by == "team":
            # What no team paid for: everything, less every team.
            rest: dict[str, Any] = defaultdict(Decimal)
            for item, sign in [*((i, 1) for i in everything), *((i, -1) for i in items)]:
                for name in (*COUNTERS, "cost"):
                    rest[name] += sign * Decimal(item.get(name, 0))
            yield NO_TEAM, {name: int(v) if name != "cost" else v for name, v in rest.items()}

    def _between(self, pk: str, first: str, last: str) -> list[dict[str, Any]]:
        return query_all(
            self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={":pk": pk, ":first": first, ":last": last},
        )


def _days(first: date, last: date) -> tuple[str, str]:
    return scopes.day_period(first), scopes.day_period(last)


def aggregate_scopes(entry: UsageEntry) -> list[Scope]:
    """The aggregates an entry adds to (day and month): its charged scopes, its model, everything."""
    return scopes.reported(entry.key_id, entry.owner_sub, entry.team_id, entry.model, entry.price_version)


def charged_scopes(entry: UsageEntry) -> list[Scope]:
    """The budget scopes an entry was admitted under: their month's ``committed`` follows its cost."""
    return scopes.charged(entry.key_id, entry.owner_sub, entry.team_id)


def query_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a DynamoDB ``Query`` returns, following pagination."""
    items: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
