"""Metering: admit a request against its key's limits, then bill what it used.

Every billed call, whatever the surface (OpenAI routes, MCP tools), goes
``admit`` → call Bedrock → ``settle`` (or ``release`` when nothing was
produced).

* **Rate limits** (per key, ``rpm_limit``/``tpm_limit``): a fixed one-minute
  window counter per key, incremented with a conditional ``ADD``. A request
  that would pass the limit is refused with 429, ``Retry-After`` and
  OpenAI's ``x-ratelimit-*`` headers. Tokens are counted up front as the
  prompt's upper bound plus ``max_tokens`` (when sent), then corrected to the
  real count when the call is billed.
* **Budgets** (per key and per owner, USD per calendar month, UTC): before
  the call, the request's *worst-case* cost (prompt upper bound at the
  dearest input price, plus ``max_tokens`` — or the model's maximum output —
  at the output price) is reserved with a conditional ``ADD`` on the month's
  ``committed`` total, which may not pass the budget. Billing swaps the
  reservation for the real cost in the same transaction that writes the
  ledger entry. So concurrent requests cannot overrun a budget: spend stays
  at or below it, whatever the concurrency. The price is that a request is
  refused when its worst case no longer fits, even if its real cost would.

See docs/accounting.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger, TokenUsage, UsageEntry, dynamo_number, new_entry, usd
from chalicelib.catalog.catalog import ModelEntry
from chalicelib.keys.store import KeyRecord, isoformat, utcnow
from chalicelib.observability import logger

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


def prompt_token_bound(messages: list[dict[str, Any]], options: dict[str, Any] | None = None) -> int:
    """An upper bound of a prompt's tokens: UTF-8 bytes (a byte-level BPE token is at least one byte)."""
    images = 0
    size = 0
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"text": content or ""}]
        for part in parts:
            if part.get("type") == "image_url":
                images += 1
            else:
                size += len(str(part.get("text", "")).encode())
        if message.get("tool_calls"):
            size += len(json.dumps(message["tool_calls"]).encode())
        if message.get("thinking_blocks"):
            # Earlier reasoning sent back (Claude's thinking blocks) is input Bedrock bills too.
            size += len(json.dumps(message["thinking_blocks"]).encode())
    for name in ("tools", "response_format"):
        if (options or {}).get(name):
            size += len(json.dumps(options[name]).encode())
    return size + images * IMAGE_TOKEN_BOUND + MESSAGE_OVERHEAD_TOKENS * len(messages)


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
