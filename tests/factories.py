"""Test data: a priced ledger entry with sensible defaults, overridable field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chalicelib.accounting.ledger import new_entry
from chalicelib.shared.money import Prices
from chalicelib.shared.usage import TokenUsage, UsageEntry

#: Nova Micro's us. profile prices, per token.
NOVA_PRICES = Prices(
    input=Decimal("3.5e-08"), output=Decimal("1.4e-07"), cache_read=Decimal("8.75e-09"), cache_write=Decimal("3.5e-08")
)


def usage_entry(*, usage: TokenUsage | None = None, **overrides: Any) -> UsageEntry:
    """A ``new_entry`` for key ``k1`` of ``owner-1`` on nova-micro, 10 in / 20 out, unless overridden."""
    fields: dict[str, Any] = {
        "request_id": "r1",
        "key_id": "k1",
        "owner_sub": "owner-1",
        "model": "nova-micro",
        "bedrock_model_id": "us.amazon.nova-micro-v1:0",
        "operation": "chat",
        "usage": usage or TokenUsage(input_tokens=10, output_tokens=20),
        "prices": NOVA_PRICES,
        "latency_ms": 12,
        "status": "ok",
        "at": datetime(2026, 11, 26, 10, 30, tzinfo=UTC),
    }
    return new_entry(**{**fields, **overrides})
