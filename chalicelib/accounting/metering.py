"""Metering: admit a request against its key's limits, then bill what it used.

Every billed call, whatever the surface (OpenAI routes, MCP tools, the
streaming adapters), goes ``admit`` → call Bedrock → ``settle`` (or
``release`` when nothing was produced). ``settle`` may come minutes after
``admit`` (long streams).

* **Rate limits** (per key, ``rpm_limit``/``tpm_limit``) and the **key's
  budget** live on one item, the key's month aggregate (``AGG#KEY#<id>``,
  ``MONTH#<yyyy-mm>``): a fixed one-minute window (``rate_window``,
  ``rate_requests``, ``rate_tokens``) and ``committed`` (cost billed plus
  reservations outstanding). Admission is one conditional ``UpdateItem`` of
  that item: it counts the request and the prompt's upper bound plus
  ``max_tokens`` (the model's maximum output when it is left out) in the
  window and reserves the request's worst-case cost, all or nothing. The
  **owner's budget** is the same reservation on the owner's month item;
  when a key has both, the two updates go out in parallel and a refusal of
  either gives back what the other took (a release record).
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
entry's ``PutItem`` only), one ``UpdateItem`` for a key with rate limits
and/or a budget, two in parallel when its owner has a budget too.
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
from chalicelib.accounting.ledger import CAPPED_EVENT, COUNTERS, Ledger, Release, new_entry
from chalicelib.catalog.catalog import ModelEntry
from chalicelib.observability import logger
from chalicelib.shared.dates import isoformat, utcnow
from chalicelib.shared.dynamodb import dynamo_number, error_code
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage, UsageEntry

WINDOW_SECONDS = 60
#: Owner budgets are read at most this often per warm Lambda (they change rarely).
OWNER_BUDGET_CACHE_SECONDS = 30
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
    """Who a call is billed to, as admission sees it: an API key's id, owner and limits.

    ``chalicelib.keys.store.Payer`` is one; accounting reads only these fields and
    never imports the key store.
    """

    @property
    def key_id(self) -> str: ...

    @property
    def owner_sub(self) -> str: ...

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
    reserved_key_usd: Decimal = Decimal(0)
    reserved_owner_usd: Decimal = Decimal(0)
    counted_tokens: int = 0
    window: int | None = None
    #: The month (UTC, ``YYYY-MM``) the reservation was made in: it is given back there.
    month: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ticket_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: UsageEntry | bool = False
    #: A key or owner budget made a reservation (of the worst case, which may be $0).
    budgeted: bool = False

    @property
    def reserved(self) -> Decimal | None:
        """The worst case reserved against a budget (None when no budget reserved anything).

        A reservation of $0 (nothing bounded the request's cost) still caps the bill at $0:
        testing the amounts instead of ``budgeted`` let such a request bill in full past a budget.
        """
        if self.budgeted:
            return max(self.reserved_key_usd, self.reserved_owner_usd)
        return None


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
        self._owner_budgets: dict[str, tuple[float, Decimal | None]] = {}
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
        alternatives: tuple[ModelEntry, ...] = (),
        surcharge: Decimal = Decimal(0),
    ) -> Ticket:
        """Check rate limits and reserve the worst-case cost against the budgets.

        ``alternatives`` are the other models that may serve the call (its fallbacks): the worst
        case is the dearest of them all. ``surcharge`` is what else the call may cost at most
        (its guardrail's text units), added to the worst case.

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
        ticket = Ticket(key=key, model=model, month=now.strftime("%Y-%m"))
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
        worst = surcharge + max(
            worst_case_cost(candidate, input_tokens, max_output_tokens) for candidate in (model, *alternatives)
        )
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            owner_budget = self.owner_budget(key.owner_sub)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc) from exc
        # A worst case above the whole budget would pass the conditional update on a month's first request.
        if key.monthly_budget_usd is not None and worst > key.monthly_budget_usd:
            raise self._quota_error("KEY", key.monthly_budget_usd, ticket, worst)
        if owner_budget is not None and worst > owner_budget:
            raise self._quota_error("OWNER", owner_budget, ticket, worst)
        calls: list[Callable[[], Any]] = []
        if key.rpm_limit or key.tpm_limit or key.monthly_budget_usd is not None:
            calls.append(lambda: self._admit_key(ticket, window, reset, tokens, worst, deadline))
        if owner_budget is not None:
            calls.append(lambda: self._reserve_owner(ticket, owner_budget, worst, deadline))
        if not calls:
            return ticket
        failures = [r for r in self._parallel(calls) if isinstance(r, BaseException)]
        if failures:
            self.release(ticket, deadline=deadline)  # whatever the other update took
            refusal = next((f for f in failures if isinstance(f, errors.AppError)), None)
            if refusal is not None:
                raise refusal
            unavailable = next((f for f in failures if isinstance(f, (BotoCoreError, ClientError))), None)
            if unavailable is None:
                raise failures[0]  # not DynamoDB: a bug, reported as one
            raise _unavailable(unavailable) from unavailable
        return ticket

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
                    f"KEY#{key.key_id}", ticket.month, expression, " AND ".join(conditions), values, deadline
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
                    raise self._quota_error("KEY", budget, ticket, worst) from None
                continue  # the item changed between the check and our read: try again
            if budget is not None:
                ticket.reserved_key_usd = worst
                ticket.budgeted = True
            if limited:
                self._windows[key.key_id] = window
                ticket.window = window
                ticket.counted_tokens = tokens
                counted = (int(attributes.get("rate_requests", 1)), int(attributes.get("rate_tokens", tokens)))
                ticket.headers.update(_limit_headers(key, *counted, reset))
            return
        raise self._rate_error(key, reset)  # the window kept moving under us: ask the caller to retry

    def _reserve_owner(self, ticket: Ticket, budget: Decimal, worst: Decimal, deadline: float) -> None:
        try:
            self._update(
                f"OWNER#{ticket.key.owner_sub}",
                ticket.month,
                "ADD committed :worst, billed :zero",
                "attribute_not_exists(committed) OR committed <= :room",
                {":worst": dynamo_number(worst), ":room": dynamo_number(budget - worst), ":zero": 0},
                deadline,
            )
        except _Refused:
            raise self._quota_error("OWNER", budget, ticket, worst) from None
        ticket.reserved_owner_usd = worst
        ticket.budgeted = True

    def _update(
        self, scope: str, month: str, expression: str, condition: str, values: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeDeserializer
        from botocore.exceptions import ClientError

        def update() -> dict[str, Any]:
            return self._table.update_item(
                Key={"pk": f"AGG#{scope}", "sk": f"MONTH#{month}"},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )

        try:
            return self._ledger.call(update, deadline=deadline).get("Attributes", {})
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            typed = exc.response.get("Item") or {}
            raise _Refused(TypeDeserializer().deserialize({"M": typed}) if typed else {}) from None

    def _rate_error(self, key: Payer, reset: int) -> errors.AppError:
        return errors.RateLimited(
            f"Rate limit reached for this key ({_describe_limits(key)}). Retry in {reset} s.",
            retry_after=reset,
            code="rate_limit_exceeded",
            headers=_limit_headers(key, None, None, reset),
        )

    def _quota_error(self, kind: str, budget: Decimal, ticket: Ticket, worst: Decimal) -> errors.AppError:
        scope = f"KEY#{ticket.key.key_id}" if kind == "KEY" else f"OWNER#{ticket.key.owner_sub}"
        try:
            spent = usd(self._ledger.aggregate(scope, f"MONTH#{ticket.month}")["cost"])
            so_far = f"spent ${spent}; "
        except Exception:  # noqa: BLE001 - the refusal stands without the figure
            so_far = ""
        whose = "This API key's" if kind == "KEY" else "Your (the key owner's)"
        return errors.QuotaExceeded(
            f"{whose} monthly budget of ${usd(budget)} for {ticket.month} cannot cover this request "
            f"({so_far}this request may cost up to ${usd(worst)}). "
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
        deadline: float | None = None,
        served: ModelEntry | None = None,
        served_by: str = "",
        guardrail_units: dict[str, int] | None = None,
        guardrail_usd: Decimal = Decimal(0),
    ) -> UsageEntry:
        """Bill the actual usage (capped at the reservation, if one was made): one conditional ``PutItem``.

        ``served`` is the model that answered (a fallback, or the one admitted: the default); the
        usage is priced at its prices, and the entry names it, the upstream that served
        (``served_by``) and the model asked for. ``guardrail_usd`` (the guardrail's text units,
        ``guardrail_units``) is added to the cost.

        The returned entry's ``cost`` is exactly what the ledger stores. If
        DynamoDB cannot take it before ``deadline``, the entry is logged for
        ``pennyworth ledger reconcile`` and still returned.
        """
        if isinstance(ticket.closed, UsageEntry):
            return ticket.closed  # billed already: never twice
        # Billed after a release (a caller's mistake): the reservation is already given back.
        held = ticket.closed is not True
        model = served or ticket.model
        entry = new_entry(
            request_id=request_id,
            key_id=ticket.key.key_id,
            owner_sub=ticket.key.owner_sub,
            model=model.id,
            bedrock_model_id=model.bedrock_model_id,
            requested_model=ticket.model.id,
            served_by=served_by,
            guardrail_units=guardrail_units,
            guardrail_usd=guardrail_usd,
            operation=operation,
            usage=usage,
            prices=model.prices,
            latency_ms=latency_ms,
            status=status,
            at=self._clock(),
            reserved_key_usd=ticket.reserved_key_usd if held else Decimal(0),
            reserved_owner_usd=ticket.reserved_owner_usd if held else Decimal(0),
            budget_month=ticket.month,
            rate_window=ticket.window if held else None,
            counted_tokens=ticket.counted_tokens if held else 0,
            cap=ticket.reserved if held else None,
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
        self._ledger.record(entry, deadline=deadline)
        ticket.headers["x-pennyworth-cost-usd"] = usd(entry.cost)
        return entry

    def release(self, ticket: Ticket, *, deadline: float | None = None) -> None:
        """Give back a reservation (and the tokens counted) for a call that produced nothing billable.

        One conditional ``PutItem`` of a release record; the aggregator applies
        it. A release that cannot be stored is logged and leaves the
        reservation in place: the budget is under-used, never overrun.
        """
        if ticket.closed is not False:
            return
        ticket.closed = True
        if not (ticket.reserved_key_usd or ticket.reserved_owner_usd or ticket.counted_tokens):
            return
        self._ledger.record_release(
            Release(
                ticket_id=ticket.ticket_id,
                key_id=ticket.key.key_id,
                owner_sub=ticket.key.owner_sub,
                budget_month=ticket.month,
                reserved_key_usd=ticket.reserved_key_usd,
                reserved_owner_usd=ticket.reserved_owner_usd,
                rate_window=ticket.window,
                counted_tokens=ticket.counted_tokens,
                timestamp=isoformat(self._clock()),
            ),
            deadline=deadline,
        )

    # -- budgets and status ------------------------------------------------------------------

    def owner_budget(self, owner_sub: str, *, fresh: bool = False) -> Decimal | None:
        """The owner's monthly budget in USD, or None (cached for a few seconds per process)."""
        cached = self._owner_budgets.get(owner_sub)
        if cached and not fresh and self._monotonic() - cached[0] < OWNER_BUDGET_CACHE_SECONDS:
            return cached[1]
        item = self._ledger.call(
            lambda: self._table.get_item(Key={"pk": f"BUDGET#OWNER#{owner_sub}", "sk": "CONFIG"})
        ).get("Item")
        budget = item.get("monthly_budget_usd") if item else None
        self._owner_budgets[owner_sub] = (self._monotonic(), budget)
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
                    "monthly_budget_usd": dynamo_number(monthly_budget_usd),
                    "updated_at": isoformat(self._clock()),
                    "updated_by": actor,
                }
            )
        self._owner_budgets.pop(owner_sub, None)

    def spend(self, key: Payer) -> dict[str, Any]:
        """A key's month so far: its budget, spend and what is left (``budget``), its counters (``usage``).

        ``spent_usd`` and ``usage`` are the aggregates (they trail billing by the
        aggregator's delay; a request admitted last month and billed after
        midnight counts here, though last month's budget paid for it);
        ``reserved_usd`` is what is held beyond what this month's budget has
        been billed: the worst cases of requests in flight and of those billed
        but not yet aggregated. ``remaining_usd`` is exactly what admission
        checks: the budget less ``committed``.
        """
        month = self._clock().strftime("%Y-%m")
        totals = self._ledger.aggregate(f"KEY#{key.key_id}", f"MONTH#{month}")
        spent = Decimal(totals["cost"])
        committed = Decimal(totals["committed"])
        reserved = max(Decimal(0), committed - Decimal(totals["billed"]))
        budget = key.monthly_budget_usd
        owner_budget = self.owner_budget(key.owner_sub)
        owner_spent = (
            self._ledger.aggregate(f"OWNER#{key.owner_sub}", f"MONTH#{month}")["cost"] if owner_budget else None
        )
        return {
            "budget": {
                "period": month,
                "monthly_usd": usd(budget),
                "spent_usd": usd(spent),
                "reserved_usd": usd(reserved),
                "remaining_usd": usd(max(Decimal(0), budget - committed)) if budget is not None else None,
                "owner_monthly_usd": usd(owner_budget),
                "owner_spent_usd": usd(owner_spent),
            },
            "usage": {"period": month, **{name: int(totals[name]) for name in COUNTERS}},
        }


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


def worst_case_cost(model: ModelEntry, input_tokens: int, max_output_tokens: int | None) -> Decimal:
    """The most a request can cost: every prompt token at the dearest input-side price, every output token.

    "Dearest input-side price" is the highest of the input, cache-write and
    cache-read prices, so a prompt written to the cache in full is covered.
    Usage past this bound is capped at it when billed (``Meter.settle``).
    """
    prices = model.prices
    output = output_bound(model, max_output_tokens)
    dearest_input = max(prices.input, prices.cache_write, prices.cache_read)
    return dearest_input * input_tokens + prices.output * output


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
