"""Money: exact USD as ``Decimal``, never a float, from the price list to the string a caller reads.

``Prices`` are USD per token; ``compute_cost`` prices a call's tokens exactly;
``usd`` is the one way money is written for people and JSON (a plain decimal
string, never exponent notation); ``parse_money`` the one way an amount a
caller sends (a budget) is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InvalidRequest

if TYPE_CHECKING:
    from chalicelib.shared.usage import TokenUsage

_MILLION = Decimal(1_000_000)
#: The largest amount a caller may set (a budget).
MAX_AMOUNT = Decimal(1_000_000_000)
#: ASCII digits only: ``\d`` also matches "٥" or "１", which ``Decimal`` reads as numbers.
_AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]{1,6})?")


@dataclass(frozen=True)
class Prices:
    """USD per token, exact. Cache prices fall back to the input price when unknown."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    def per_million(self) -> dict[str, str]:
        """The prices as strings of USD per million tokens, for humans and JSON."""
        return {
            name: usd(getattr(self, name) * _MILLION) or "0"
            for name in ("input", "output", "cache_read", "cache_write")
        }


def compute_cost(prices: Prices, usage: TokenUsage) -> Decimal:
    """Exact USD cost of ``usage`` at ``prices``."""
    return (
        prices.input * usage.input_tokens
        + prices.output * usage.output_tokens
        + prices.cache_read * usage.cache_read_tokens
        + prices.cache_write * usage.cache_write_tokens
    )


def usd(value: Decimal | int | None) -> str | None:
    """Exact USD as a plain decimal string (never a float, never exponent notation); None stays None."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f") if value else "0"


def parse_money(value: Any, param: str = "monthly_budget_usd") -> Decimal | None:
    """Exact USD from a JSON string or number (never through float); None stays None.

    Raises
    ------
    InvalidRequest
        Not a non-negative amount with at most 6 decimal places, or over a billion.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise InvalidRequest(f'{param} must be a USD amount such as "25.00", or null.', param=param)
    text = str(value).strip() if not isinstance(value, Decimal) else format(value, "f")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not _AMOUNT_RE.fullmatch(text) or amount > MAX_AMOUNT:
        raise InvalidRequest(
            f'{param} must be a USD amount from 0 to 1000000000 with at most 6 decimals (e.g. "25.00"); got {value!r}.',
            param=param,
        )
    return amount
