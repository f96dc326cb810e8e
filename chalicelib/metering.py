"""Metering: admit a request against its key's limits, then bill what it used.

Every billed call, whatever the surface (OpenAI routes, MCP tools), goes
``admit`` → call Bedrock → ``settle`` (or ``release`` when nothing was
produced). ``admit`` enforces rate limits and budgets before Bedrock is
called; ``settle`` writes the ledger entry. See docs/accounting.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from chalicelib.catalog import ModelEntry
from chalicelib.keys import KeyRecord, utcnow
from chalicelib.ledger import Ledger, TokenUsage, UsageEntry, new_entry


@dataclass
class Ticket:
    """An admitted request: what was reserved for it, and the headers to send back."""

    key: KeyRecord
    model: ModelEntry
    reserved_usd: Decimal = Decimal(0)
    reserved_tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


class Meter:
    """Admission control and billing over the usage table."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime] = utcnow) -> None:
        self._ledger = ledger
        self._clock = clock

    def admit(self, key: KeyRecord, model: ModelEntry, *, input_tokens: int, max_output_tokens: int | None) -> Ticket:
        """Check and reserve the request's worst case; raises ``RateLimited``/``QuotaExceeded``."""
        return Ticket(key=key, model=model)

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
        """Bill the actual usage (releasing the reservation) and return the ledger entry."""
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
        )
        self._ledger.record(entry)
        return entry

    def release(self, ticket: Ticket) -> None:
        """Give back a reservation for a call that produced nothing billable."""

    def key_status(self, key: KeyRecord) -> dict[str, Any]:
        """What a key holder may know about its own key: limits, this month's spend and budget left."""
        month = self._clock().strftime("%Y-%m")
        totals = self._ledger.aggregate(f"KEY#{key.key_id}", f"MONTH#{month}")
        spent = Decimal(totals["cost"])
        budget = key.monthly_budget_usd
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
                "monthly_usd": _money(budget),
                "spent_usd": _money(spent),
                "remaining_usd": _money(max(Decimal(0), budget - spent)) if budget is not None else None,
            },
            "usage": {
                "period": month,
                **{
                    name: int(totals[name])
                    for name in ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
                },
            },
        }


def _money(value: Decimal | None) -> str | None:
    """Exact USD as a plain decimal string (never a float, never exponent notation)."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f") if value else "0"
