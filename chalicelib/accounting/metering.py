"""Metering: admit a request against its key's limits, then bill what it used.

Every billed call, whatever the surface (OpenAI routes, MCP tools, the
streaming adapters), goes ``admit`` → call Bedrock → ``settle`` (or
``release`` when nothing was produced). ``settle`` may come minutes after
``admit`` (long streams).

* **Budgets are scopes** (``chalicelib/shared/scopes.py``): a request is admitted
  under its key, its owner (unless a team owns the key) and the team the key is
  charged to, and every one of them with a monthly budget must cover the
  request's worst case. Each budget's ``committed`` (cost billed plus
  reservations outstanding) lives on its scope's month aggregate
  (``AGG#<scope>``, ``MONTH#<yyyy-mm>``); reserving is one conditional ``ADD``
  there. The updates of one request go out in parallel, never in a
  transaction: a team's month item is shared by every key of the team, and
  transactions on one item conflict with each other (``TransactionConflict``)
  where plain conditional updates simply queue. A refusal by any scope gives
  back what the others took (one release record). No scope is ever overrun:
  each reservation is atomic on its own item, and a request runs only once all
  of them held.
* **Rate limits** (per key, ``rpm_limit``/``tpm_limit``) live on the key's
  month item too: a fixed one-minute window (``rate_window``,
  ``rate_requests``, ``rate_tokens``), counted in the same conditional
  ``UpdateItem`` as the key's budget, all or nothing: the prompt's upper
  bound plus ``max_tokens`` (the model's maximum output when it is left out).
* **Billing** is one conditional ``PutItem`` of the ledger entry. The
  aggregator (aggregator.py) later swaps the entry's reservation for its
  cost in ``committed`` of the month it was reserved in, and corrects the
  window's token count. Until then ``committed`` still holds the worst case:
  a budget is never overrun, however many requests run at once; it is only
  briefly under-used.
* **The bill never passes what admission assumed**: when a key or owner
  budget reserved a worst case, the billed cost is capped at it. A capped
  entry says so (``capped``, ``usage_cost``), is logged (``usage_capped``),
  and is counted in the aggregates (``capped_requests``, ``capped_usd``) so
  the daily report can flag it.

Round trips on the request path: none for a key without limits (the
entry's ``PutItem`` only), one round of ``UpdateItem``s, in parallel, one
per scope with a budget (and the key's, for rate limits). Owner and team
budgets are read at most every 30 s per warm Lambda (one ``BatchGetItem``
for all of a request's scopes).
See docs/accounting.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from chalicelib import errors
from chalicelib.accounting.ledger import CAPPED_EVENT, COUNTERS, Ledger, Release, log_unrecorded, new_entry
from chalicelib.catalog import ModelEntry, PriceVersion
from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.dates import isoformat, utcnow
from chalicelib.shared.dynamodb import dynamo_number, error_code, plain_client, typed, untyped
from chalicelib.shared.money import Prices, usd
from chalicelib.shared.scopes import Scope
from chalicelib.shared.usage import TokenUsage, UsageEntry

WINDOW_SECONDS = 60
#: Owner and team budgets are read at most this often per warm Lambda (they change rarely).
BUDGET_CACHE_SECONDS = 30
OWNER_BUDGET_CACHE_SECONDS = BUDGET_CACHE_SECONDS
#: Admission updates re-tried when the window rolled over under them (or a concurrent request rolled it).
_WINDOW_ATTEMPTS = 4

Parallel = Callable[[list[Callable[[], Any]]], list[Any]]
_POOL: ThreadPoolExecutor | None = None


def run_parallel[T](calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run ``calls`` at once (one alone runs inline); each result, or the exception it raised."""
    global _POOL
    if len(calls) == 1:
        return [_capture(calls[0])]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="meter")
    return list(_POOL.map(_capture, calls))


def _capture[T](call: Callable[[], T]) -> T | BaseException:
    try:
        return call()
    except BaseException as exc:  # noqa: BLE001 - handed back to the caller, who re-raises
        return exc


class Payer(Protocol):
    """Who a call is billed to, as admission sees it: an API key's id, owner, team and limits.

    ``chalicelib.keys.store.KeyRecord`` is one; accounting reads only these fields and
    never imports the key store.
    """

    @property
    def key_id(self) -> str: ...

    @property
    def owner_sub(self) -> str: ...

    @property
    def team_id(self) -> str | None: ...

    @property
    def monthly_budget_usd(self) -> Decimal | None: ...

    @property
    def rpm_limit(self) -> int | None: ...

    @property
    def tpm_limit(self) -> int | None: ...


@dataclass
class Ticket:
    """An admitted request: what was reserved for it, and the headers to send back."""

    key: Payer
    model: ModelEntry
    #: The model's prices in force when the call was admitted: the worst case and the bill use them.
    prices: PriceVersion | None = None
    #: What admission reserved, by budget scope: given back (or billed) there, whatever team the
    #: key is charged to by the time the call ends. A scope with a budget is here even at $0.
    reservations: dict[Scope, Decimal] = field(default_factory=dict)
    counted_tokens: int = 0
    window: int | None = None
    #: The month (UTC, ``YYYY-MM``) the reservation was made in: it is given back there.
    month: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ticket_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: UsageEntry | bool = False

    @property
    def budgeted(self) -> bool:
        """A budget made a reservation (of the worst case, which may be $0)."""
        return bool(self.reservations)

    @property
    def reserved(self) -> Decimal | None:
        """The worst case reserved against a budget (None when no budget reserved anything).

        A reservation of $0 (nothing bounded the request's cost) still caps the bill at $0:
        testing the amounts instead of ``budgeted`` let such a request bill in full past a budget.
        """
        if self.budgeted:
            return max(self.reservations.values())
        return None

    def reserved_on(self, scope: Scope) -> Decimal:
        return self.reservations.get(scope, Decimal(0))

    @property
    def reserved_key_usd(self) -> Decimal:
        return self.reserved_on(scopes.key(self.key.key_id))


class Meter:
    """Admission control and billing over the usage table.

    ``clock`` gives the time of day (months, windows, timestamps); ``parallel``
    runs admission's independent updates at once (the simulator injects its own).
    """

    def __init__(
        self,
        ledger: Ledger,
        clock: Callable[[], datetime] = utcnow,
        *,
        parallel: Parallel = run_parallel,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._table = ledger.table
        self._clock = clock
        self._parallel = parallel
        self._monotonic = monotonic
        #: Owner and team budgets as last read: scope → (when, budget).
        self._budgets: dict[Scope, tuple[float, Decimal | None]] = {}
        #: What people call a scope whose budget item names it (a team's name), for refusals.
        self._labels: dict[Scope, str] = {}
        #: The rate window this process last saw per key: the first request of a new minute starts it.
        self._windows: dict[str, int] = {}

    # -- admission ---------------------------------------------------------------------------

    def admit(
        self,
        key: Payer,
        model: ModelEntry,
        *,
        input_tokens: int,
        max_output_tokens: int | None,
        deadline: float | None = None,
        long_cache: bool = False,
        alternatives: tuple[ModelEntry, ...] = (),
        surcharge: Decimal = Decimal(0),
    ) -> Ticket:
        """Check rate limits and reserve the worst-case cost against the budgets.

        The call is priced at the model's prices in force now (its ticket keeps them, so the bill
        uses the same version however long the answer takes). ``long_cache``: the prompt asks
        for 1-hour cache writes, whose price bounds the worst case. ``alternatives`` are the other
        models that may serve the call (its fallbacks): the worst case is the dearest of them all.
        ``surcharge`` is what else the call may cost at most (its guardrail's text units), added.

        Raises
        ------
        RateLimited
            The key's requests or tokens per minute would be exceeded.
        QuotaExceeded
            The key's or its owner's monthly budget cannot cover the worst case.
        ServiceUnavailable
            DynamoDB did not answer in time (nothing was reserved, or it was given back).
        """
        now = self._clock()
        deadline = self._ledger.deadline(deadline)
        prices = model.price_at(isoformat(now))
        ticket = Ticket(key=key, model=model, prices=prices, month=now.strftime("%Y-%m"))
        # The output it may produce counts as the budget reservation counts it: without max_tokens,
        # the model's default maximum (settled to the actual once billed).
        output = output_bound(model, max_output_tokens)
        tokens = input_tokens + output
        window = int(now.timestamp()) // WINDOW_SECONDS * WINDOW_SECONDS
        reset = max(1, window + WINDOW_SECONDS - int(now.timestamp()))
        if key.tpm_limit and tokens > key.tpm_limit:
            advice = (
                "Send fewer tokens or a smaller max_tokens."
                if max_output_tokens is not None
                else f"Without max_tokens, a request counts the model's maximum output ({output} tokens): "
                "set max_tokens to what the answer needs."
            )
            raise errors.RateLimited(
                f"Request too large: it may use up to {tokens} tokens, and this key is limited to "
                f"{key.tpm_limit} tokens per minute. {advice}",
                code="tokens_exceeded",
                headers=_limit_headers(key, None, None, reset),
            )
        candidates = [
            (model, prices.prices),
            *((other, other.price_at(isoformat(now)).prices) for other in alternatives),
        ]
        worst = surcharge + max(
            worst_case_cost(candidate, input_tokens, max_output_tokens, prices=rates, long_cache=long_cache)
            for candidate, rates in candidates
        )
        from botocore.exceptions import BotoCoreError, ClientError

        charged = scopes.charged(key.key_id, key.owner_sub, key.team_id)
        try:
            budgets = self._budgets_of(charged, key)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc) from exc
        # A worst case above the whole budget would pass the conditional update on a month's first request.
        for scope, budget in budgets.items():
            if worst > budget:
                raise self._quota_error(scope, budget, ticket, worst)
        calls: list[Callable[[], Any]] = []
        key_scope = charged[0]
        if key.rpm_limit or key.tpm_limit or key_scope in budgets:
            calls.append(lambda: self._admit_key(ticket, window, reset, tokens, worst, deadline))
        for scope, budget in budgets.items():
            if scope != key_scope:
                calls.append(lambda scope=scope, budget=budget: self._reserve(ticket, scope, budget, worst, deadline))
        if not calls:
            return ticket
        failures = [r for r in self._parallel(calls) if isinstance(r, BaseException)]
        if failures:
            self.release(ticket, deadline=deadline)  # whatever the other updates took
            refusal = next((f for f in failures if isinstance(f, errors.AppError)), None)
            if refusal is not None:
                raise refusal
            unavailable = next((f for f in failures if isinstance(f, (BotoCoreError, ClientError))), None)
            if unavailable is None:
                raise failures[0]  # not DynamoDB: a bug, reported as one
            raise _unavailable(unavailable) from unavailable
        return ticket

    def _budgets_of(self, charged: list[Scope], key: Payer) -> dict[Scope, Decimal]:
        """The budget of each scope a request is charged to that has one (the key's is on its record)."""
        found: dict[Scope, Decimal] = {}
        others = self.budgets([scope for scope in charged if scope.kind != scopes.KEY])
        for scope in charged:
            budget = key.monthly_budget_usd if scope.kind == scopes.KEY else others.get(scope)
            if budget is not None:
                found[scope] = budget
        return found

    def admit_free(self, key: Payer, model: ModelEntry, *, deadline: float | None = None) -> Ticket:
        """Count one free call (``count_tokens``) against the key's requests per minute; nothing is reserved.

        Raises
        ------
        RateLimited
            The key's requests per minute would be exceeded.
        ServiceUnavailable
            DynamoDB did not answer in time.
        """
        now = self._clock()
        ticket = Ticket(key=key, model=model, month=now.strftime("%Y-%m"))
        if not key.rpm_limit:
            return ticket
        window = int(now.timestamp()) // WINDOW_SECONDS * WINDOW_SECONDS
        reset = max(1, window + WINDOW_SECONDS - int(now.timestamp()))
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._admit_key(ticket, window, reset, 0, Decimal(0), self._ledger.deadline(deadline), free=True)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc) from exc
        return ticket

    def _admit_key(
        self,
        ticket: Ticket,
        window: int,
        reset: int,
        tokens: int,
        worst: Decimal,
        deadline: float,
        *,
        free: bool = False,
    ) -> None:
        """One conditional update of the key's month item: rate window and key budget together.

        A ``free`` call counts as a request only: no tokens, no budget.
        """
        key = ticket.key
        tpm_limit = None if free else key.tpm_limit
        limited = bool(key.rpm_limit or tpm_limit)
        budget = None if free else key.monthly_budget_usd
        # Guess which update applies: start the window if this process counted this key in an
        # earlier minute, else join it (a busy key's window is usually started by someone already).
        # A wrong guess costs a second call; the refusal returns the stored item to correct it.
        seen = self._windows.get(key.key_id)
        new_window = limited and seen is not None and seen < window
        for _ in range(_WINDOW_ATTEMPTS):
            adds, sets, conditions = [], [], []
            values: dict[str, Any] = {}
            if budget is not None:
                # ``billed :zero`` marks the month as counting ``billed`` (see Ledger.aggregate).
                adds.append("committed :worst, billed :zero")
                conditions.append("(attribute_not_exists(committed) OR committed <= :room)")
                values.update({":worst": dynamo_number(worst), ":room": dynamo_number(budget - worst), ":zero": 0})
            if limited:
                values.update({":w": window, ":one": 1, ":tokens": tokens})
                if new_window:
                    sets.append("rate_window = :w, rate_requests = :one, rate_tokens = :tokens")
                    conditions.append("(attribute_not_exists(rate_window) OR rate_window < :w)")
                else:
                    adds.append("rate_requests :one, rate_tokens :tokens")
                    conditions.append("rate_window = :w")
                    if key.rpm_limit:
                        conditions.append("rate_requests < :rpm")
                        values[":rpm"] = key.rpm_limit
                    if tpm_limit:
                        conditions.append("rate_tokens <= :troom")
                        values[":troom"] = tpm_limit - tokens
            parts = [("ADD " + ", ".join(adds)) if adds else "", ("SET " + ", ".join(sets)) if sets else ""]
            expression = " ".join(part for part in parts if part)
            try:
                attributes = self._update(
                    scopes.key(key.key_id), ticket.month, expression, " AND ".join(conditions), values, deadline
                )
            except _Refused as refused:
                old = refused.item
                if limited:
                    stored = int(old.get("rate_window", 0))
                    window_held = stored < window if new_window else stored == window
                    if not window_held:
                        # Not the window we assumed: start ours, join the one a concurrent request
                        # started, or count in a later one another Lambda's clock already started.
                        new_window = stored < window
                        window = max(window, stored)
                        continue
                    if not new_window and key.rpm_limit and int(old.get("rate_requests", 0)) >= key.rpm_limit:
                        raise self._rate_error(key, reset) from None
                    if not new_window and tpm_limit and int(old.get("rate_tokens", 0)) > tpm_limit - tokens:
                        raise self._rate_error(key, reset) from None
                if budget is not None and Decimal(old.get("committed", 0)) > budget - worst:
                    raise self._quota_error(scopes.key(key.key_id), budget, ticket, worst) from None
                continue  # the item changed between the check and our read: try again
            if budget is not None:
                ticket.reservations[scopes.key(key.key_id)] = worst
            if limited:
                self._windows[key.key_id] = window
                ticket.window = window
                ticket.counted_tokens = tokens
                counted = (int(attributes.get("rate_requests", 1)), int(attributes.get("rate_tokens", tokens)))
                ticket.headers.update(_limit_headers(key, *counted, reset))
            return
        raise self._rate_error(key, reset)  # the window kept moving under us: ask the caller to retry

    def _reserve(self, ticket: Ticket, scope: Scope, budget: Decimal, worst: Decimal, deadline: float) -> None:
        """Reserve ``worst`` on one scope's month, if its budget still has room: one conditional ``ADD``."""
        try:
            self._update(
                scope,
                ticket.month,
                "ADD committed :worst, billed :zero",
                "attribute_not_exists(committed) OR committed <= :room",
                {":worst": dynamo_number(worst), ":room": dynamo_number(budget - worst), ":zero": 0},
                deadline,
            )
        except _Refused:
            raise self._quota_error(scope, budget, ticket, worst) from None
        ticket.reservations[scope] = worst

    def _update(
        self, scope: Scope, month: str, expression: str, condition: str, values: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        client = plain_client(self._table)
        request = {
            "TableName": self._table.name,
            "Key": typed(scope.month(month)),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": typed(values),
            "ReturnValues": "UPDATED_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

        def update() -> dict[str, Any]:
            return client.update_item(**request)

        try:
            return untyped(self._ledger.call(update, deadline=deadline).get("Attributes", {}))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise _Refused(untyped(exc.response.get("Item") or {})) from None

    def _rate_error(self, key: Payer, reset: int) -> errors.AppError:
        return errors.RateLimited(
            f"Rate limit reached for this key ({_describe_limits(key)}). Retry in {reset} s.",
            retry_after=reset,
            code="rate_limit_exceeded",
            headers=_limit_headers(key, None, None, reset),
        )

    def _quota_error(self, scope: Scope, budget: Decimal, ticket: Ticket, worst: Decimal) -> errors.AppError:
        try:
            spent = usd(self._ledger.aggregate(scope, scopes.month_period(ticket.month))["cost"])
            so_far = f"spent ${spent}; "
        except Exception:  # noqa: BLE001 - the refusal stands without the figure
            so_far = ""
        whose, who = {
            scopes.KEY: ("This API key's", "an admin"),
            scopes.OWNER: ("Your (the key owner's)", "an admin"),
            scopes.TEAM: (
                f"The monthly budget of team {self._labels.get(scope) or scope.id}, which this key is charged to, is",
                "a team admin",
            ),
        }[scope.kind]
        if scope.kind == scopes.TEAM:
            head = f"{whose} ${usd(budget)} for {ticket.month}; it cannot cover this request"
        else:
            head = f"{whose} monthly budget of ${usd(budget)} for {ticket.month} cannot cover this request"
        return errors.QuotaExceeded(
            f"{head} ({so_far}this request may cost up to ${usd(worst)}). "
            f"Lower max_tokens, or ask {who} to raise the budget.",
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
        deadline: float | None = None,
        protocol: str = "",
        served: ModelEntry | None = None,
        served_by: str | None = None,
        served_region: str = "",
        guardrail_units: dict[str, int] | None = None,
        guardrail_usd: Decimal = Decimal(0),
        guardrail_price_version: int = 0,
        record: bool = True,
    ) -> UsageEntry:
        """Bill the actual usage (capped at the reservation, if one was made): one conditional ``PutItem``.

        The usage is priced at the version admission chose (the tier its prompt falls in, each
        cache write at the TTL Bedrock reported); ``served_by`` names the upstream that served it
        (default: the model's own), ``served_region`` the region it was called in. ``served`` is the
        model that answered when it is not the one admitted (a fallback): the usage is then priced
        at its prices in force now, and the entry names it and the model asked for.
        ``guardrail_usd`` (the guardrail's text units, ``guardrail_units``, priced at the operator's
        guardrail price version ``guardrail_price_version``; 0: LiteLLM's map) is added to the cost.

        The returned entry's ``cost`` is exactly what the ledger stores. If
        DynamoDB cannot take it before ``deadline``, the entry is logged for
        ``pennyworth ledger reconcile`` and still returned. With ``record=False`` the entry is
        settled (the ticket is closed with it) but not stored: the caller stores it with ``record``
        (after the answer has left, on the streaming function).
        """
        if isinstance(ticket.closed, UsageEntry):
            return ticket.closed  # billed already: never twice
        # Billed after a release (a caller's mistake): the reservation is already given back.
        held = ticket.closed is not True
        model = served or ticket.model
        if model.id == ticket.model.id and ticket.prices is not None:
            version = ticket.prices
        else:
            version = model.price_at(isoformat(self._clock()))
        entry = new_entry(
            request_id=request_id,
            key_id=ticket.key.key_id,
            owner_sub=ticket.key.owner_sub,
            model=model.id,
            bedrock_model_id=model.bedrock_model_id,
            requested_model=ticket.model.id,
            served_by=served_by or model.litellm_model,
            guardrail_units=guardrail_units,
            guardrail_usd=guardrail_usd,
            guardrail_price_version=guardrail_price_version,
            operation=operation,
            usage=usage,
            prices=version.prices,
            price_version=version.version,
            served_region=served_region,
            latency_ms=latency_ms,
            status=status,
            at=self._clock(),
            team_id=ticket.key.team_id,
            reserved={scope.name: amount for scope, amount in ticket.reservations.items()} if held else {},
            budget_month=ticket.month,
            rate_window=ticket.window if held else None,
            counted_tokens=ticket.counted_tokens if held else 0,
            cap=ticket.reserved if held else None,
            protocol=protocol,
        )
        if entry.capped:
            logger.warning(
                "bill capped at the reservation admission made",
                extra={
                    "event": CAPPED_EVENT,
                    "request_id": request_id,
                    "key_id": entry.key_id,
                    "model": entry.model,
                    "billed_usd": str(entry.cost),
                    "usage_usd": str(entry.usage_cost),
                    "usage": entry.to_json()["usage"],
                },
            )
        ticket.closed = entry
        if record:
            self._ledger.record(entry, deadline=deadline)
        ticket.headers["x-pennyworth-cost-usd"] = usd(entry.cost)
        return entry

    def record(self, entry: UsageEntry, *, deadline: float | None = None) -> None:
        """Store an entry ``settle(..., record=False)`` returned; never raises.

        DynamoDB failing is the ledger's to log for ``pennyworth ledger reconcile``; anything else
        (a bug) is logged the same way, with the entry, so it can be replayed.
        """
        try:
            self._ledger.record(entry, deadline=deadline)
        except Exception:
            log_unrecorded(entry, "error", trace=True)

    def release(self, ticket: Ticket, *, deadline: float | None = None) -> None:
        """Give back a reservation (and the tokens counted) for a call that produced nothing billable.

        One conditional ``PutItem`` of a release record; the aggregator applies
        it. A release that cannot be stored is logged and leaves the
        reservation in place: the budget is under-used, never overrun.
        """
        if ticket.closed is not False:
            return
        ticket.closed = True
        if not (any(ticket.reservations.values()) or ticket.counted_tokens):
            return
        self._ledger.record_release(
            Release(
                ticket_id=ticket.ticket_id,
                key_id=ticket.key.key_id,
                owner_sub=ticket.key.owner_sub,
                team_id=ticket.key.team_id,
                budget_month=ticket.month,
                reserved={scope.name: amount for scope, amount in ticket.reservations.items() if amount},
                rate_window=ticket.window,
                counted_tokens=ticket.counted_tokens,
                timestamp=isoformat(self._clock()),
            ),
            deadline=deadline,
        )

    # -- budgets and status ------------------------------------------------------------------

    def budgets(self, wanted: list[Scope], *, fresh: bool = False) -> dict[Scope, Decimal | None]:
        """The monthly budgets of owner or team scopes (None: no budget): cached briefly per process.

        What is not cached (or with ``fresh``) is read in one ``BatchGetItem``.
        """
        now = self._monotonic()
        found: dict[Scope, Decimal | None] = {}
        missing = []
        for scope in wanted:
            cached = self._budgets.get(scope)
            if cached and not fresh and now - cached[0] < BUDGET_CACHE_SECONDS:
                found[scope] = cached[1]
            else:
                missing.append(scope)
        if missing:
            read = self._read_budgets(missing)
            for scope in missing:
                found[scope] = read.get(scope)
                self._budgets[scope] = (self._monotonic(), found[scope])
        return found

    def _read_budgets(self, wanted: list[Scope]) -> dict[Scope, Decimal]:
        by_key = {scope.budget_item["pk"]: scope for scope in wanted}
        name = self._table.name
        request = {name: {"Keys": [scope.budget_item for scope in wanted]}}
        budgets: dict[Scope, Decimal] = {}
        client = self._table.meta.client
        while request:
            response = self._ledger.call(lambda pending=request: client.batch_get_item(RequestItems=pending))
            for item in response.get("Responses", {}).get(name, []):
                scope = by_key[item["pk"]["S"] if isinstance(item["pk"], dict) else item["pk"]]
                budget = item.get("monthly_budget_usd")
                if budget is not None:
                    budgets[scope] = _number(budget)
                label = item.get("label")
                if label is not None:
                    self._labels[scope] = label["S"] if isinstance(label, dict) else str(label)
            request = response.get("UnprocessedKeys") or None
        return budgets

    def budget(self, scope: Scope, *, fresh: bool = False) -> Decimal | None:
        """One owner's or team's monthly budget in USD, or None (cached briefly per process)."""
        return self.budgets([scope], fresh=fresh)[scope]

    def owner_budget(self, owner_sub: str, *, fresh: bool = False) -> Decimal | None:
        """The owner's monthly budget in USD, or None (cached for a few seconds per process)."""
        return self.budget(scopes.owner(owner_sub), fresh=fresh)

    def set_budget(
        self, scope: Scope, monthly_budget_usd: Decimal | None, *, actor: str, label: str | None = None
    ) -> None:
        """Set (or clear, with None) the monthly budget of an owner or a team (``label``: its name, for refusals)."""
        if monthly_budget_usd is None:
            self._table.delete_item(Key=scope.budget_item)
        else:
            item = {
                **scope.budget_item,
                "monthly_budget_usd": dynamo_number(monthly_budget_usd),
                "updated_at": isoformat(self._clock()),
                "updated_by": actor,
            }
            if label is not None:
                item["label"] = label
            self._table.put_item(Item=item)
        self._budgets.pop(scope, None)

    def relabel(self, scope: Scope, label: str) -> None:
        """Rename a scope whose budget item names it (a renamed team); nothing when it has no budget."""
        from botocore.exceptions import ClientError

        try:
            self._table.update_item(
                Key=scope.budget_item,
                UpdateExpression="SET #label = :label",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#label": "label"},
                ExpressionAttributeValues={":label": label},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        self._labels[scope] = label

    def set_budget_if_unset(self, scope: Scope, monthly_budget_usd: Decimal, *, actor: str) -> bool:
        """Give a scope a budget unless it has one (a default applied once); True when this set it."""
        from botocore.exceptions import ClientError

        try:
            self._table.put_item(
                Item={
                    **scope.budget_item,
                    "monthly_budget_usd": dynamo_number(monthly_budget_usd),
                    "updated_at": isoformat(self._clock()),
                    "updated_by": actor,
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
        self._budgets.pop(scope, None)
        return True

    def set_owner_budget(self, owner_sub: str, monthly_budget_usd: Decimal | None, *, actor: str) -> None:
        """Set (or clear, with None) an owner's monthly budget."""
        self.set_budget(scopes.owner(owner_sub), monthly_budget_usd, actor=actor)

    def spend(self, key: Payer) -> dict[str, Any]:
        """A key's month so far: its budget, spend and what is left (``budget``), its counters (``usage``).

        ``spent_usd`` and ``usage`` are the aggregates (they trail billing by the
        aggregator's delay; a request admitted last month and billed after
        midnight counts here, though last month's budget paid for it);
        ``reserved_usd`` is what is held beyond what this month's budget has
        been billed: the worst cases of requests in flight and of those billed
        but not yet aggregated. ``remaining_usd`` is exactly what admission
        checks: the budget less ``committed``. The owner's and team's budgets
        follow, when the key is charged to them.
        """
        month = self._clock().strftime("%Y-%m")
        period = scopes.month_period(month)
        totals = self._ledger.aggregate(scopes.key(key.key_id), period)
        spent = Decimal(totals["cost"])
        committed = Decimal(totals["committed"])
        reserved = max(Decimal(0), committed - Decimal(totals["billed"]))
        budget = key.monthly_budget_usd
        charged = scopes.charged(key.key_id, key.owner_sub, key.team_id)
        others = self.budgets([scope for scope in charged if scope.kind != scopes.KEY])
        view: dict[str, Any] = {
            "period": month,
            "monthly_usd": usd(budget),
            "spent_usd": usd(spent),
            "reserved_usd": usd(reserved),
            "remaining_usd": usd(max(Decimal(0), budget - committed)) if budget is not None else None,
            "owner_monthly_usd": None,
            "owner_spent_usd": None,
        }
        for scope, limit in others.items():
            prefix = "owner" if scope.kind == scopes.OWNER else "team"
            scope_totals = self._ledger.aggregate(scope, period) if limit is not None else None
            view[f"{prefix}_monthly_usd"] = usd(limit)
            view[f"{prefix}_spent_usd"] = usd(scope_totals["cost"]) if scope_totals else None
            if prefix == "team":
                view["team"] = scope.id
                view["team_remaining_usd"] = (
                    usd(max(Decimal(0), limit - Decimal(scope_totals["committed"]))) if scope_totals else None
                )
        return {
            "budget": view,
            "usage": {"period": month, **{name: int(totals[name]) for name in COUNTERS}},
        }


def _number(value: Any) -> Decimal:
    """A number of a low-level (typed) or resource (Decimal) DynamoDB answer."""
    if isinstance(value, dict):
        return Decimal(value["N"])
    return Decimal(value)


def _unavailable(cause: BaseException) -> errors.AppError:
    logger.warning("admission failed: DynamoDB unavailable", extra={"reason": str(cause)})
    return errors.ServiceUnavailable(
        "Usage accounting is unavailable right now; nothing was billed. Retry shortly.",
        code="accounting_unavailable",
        headers={"Retry-After": "1"},
    )


class _Refused(Exception):
    """A conditional update's condition failed; ``item`` is what was stored (may be empty)."""

    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__("condition failed")
        self.item = item


def output_bound(model: ModelEntry, max_output_tokens: int | None) -> int:
    """The most output a request may produce: its ``max_tokens``, else the model's default maximum."""
    return max_output_tokens if max_output_tokens is not None else (model.max_output_tokens or 0)


def asks_long_cache(messages: list[dict[str, Any]], options: dict[str, Any] | None = None) -> bool:
    """True when the prompt marks a cache point kept an hour (``cache_control: {"ttl": "1h"}``)."""

    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            control = value.get("cache_control")
            if isinstance(control, dict) and control.get("ttl") == "1h":
                return True
            return any(walk(v) for v in value.values() if isinstance(v, (dict, list)))
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return False

    return walk(messages) or walk((options or {}).get("tools") or [])


def worst_case_cost(
    model: ModelEntry,
    input_tokens: int,
    max_output_tokens: int | None,
    *,
    prices: Prices | None = None,
    long_cache: bool = False,
) -> Decimal:
    """The most a request can cost: every prompt token at the dearest input-side price, every output token.

    ``input_tokens`` bounds the prompt, so its tokens fall in the tier of that bound or a lower
    one: the dearest of those tiers' rates is taken. "Dearest input-side price" is the highest of
    the input, cache-read and cache-write prices (the 1-hour write's when ``long_cache``: the
    prompt asks for it), so a prompt written to the cache in full is covered. Usage past this
    bound is capped at it when billed (``Meter.settle``).
    """
    prices = prices if prices is not None else model.prices
    output = output_bound(model, max_output_tokens)
    worst = Decimal(0)
    for rates in prices.candidates(input_tokens):
        writes = (rates.cache_write, rates.write_1h) if long_cache else (rates.cache_write,)
        dearest_input = max(rates.input, rates.cache_read, *writes)
        worst = max(worst, dearest_input * input_tokens + rates.output * output)
    return worst


def _describe_limits(key: Payer) -> str:
    parts = []
    if key.rpm_limit:
        parts.append(f"{key.rpm_limit} requests/min")
    if key.tpm_limit:
        parts.append(f"{key.tpm_limit} tokens/min")
    return ", ".join(parts)


def _limit_headers(key: Payer, requests: int | None, tokens: int | None, reset: int) -> dict[str, str]:
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
