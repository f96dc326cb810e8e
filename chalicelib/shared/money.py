"""Money: exact USD as ``Decimal``, never a float, from the price list to the string a caller reads.

``Prices`` are USD per token (with their tiers and cache TTLs); ``compute_cost`` prices a
call's tokens exactly;
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


#: The rates of a price list, in the order people read them.
RATE_NAMES = ("input", "output", "cache_read", "cache_write", "cache_write_1h")


@dataclass(frozen=True)
class Prices:
    """USD per token, exact: one model's rates, and the rates of its tiers above an input-token threshold.

    ``cache_write`` is a prompt-cache write kept 5 minutes, ``cache_write_1h`` one kept an
    hour (``None``: the 5-minute price). A tier applies to a whole request whose prompt (every
    input token: uncached, cache reads and writes) is above its ``above_input_tokens``: all of
    its tokens are then billed at the tier's rates (how Bedrock and Anthropic bill long
    prompts). ``tiers`` are in increasing order of threshold, each complete (no ``None``).
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal | None = None
    tiers: tuple[Prices, ...] = ()
    #: For a tier: the prompt size it starts above. The base rates: 0.
    above_input_tokens: int = 0

    @property
    def write_1h(self) -> Decimal:
        """The 1-hour cache write price (the 5-minute one when no other is known)."""
        return self.cache_write if self.cache_write_1h is None else self.cache_write_1h

    def at(self, prompt_tokens: int) -> Prices:
        """The rates a request with ``prompt_tokens`` input tokens (cached or not) is billed at."""
        chosen = self
        for tier in self.tiers:
            if prompt_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def candidates(self, prompt_bound: int) -> tuple[Prices, ...]:
        """Every rate set a request whose prompt has at most ``prompt_bound`` tokens may be billed at."""
        return (self, *(tier for tier in self.tiers if prompt_bound > tier.above_input_tokens))

    def rates_per_million(self) -> dict[str, str]:
        """This rate set as strings of USD per million tokens (no tiers)."""
        return {name: usd(self._rate(name) * _MILLION) or "0" for name in RATE_NAMES}

    def per_million(self) -> dict[str, Any]:
        """The prices as strings of USD per million tokens, with their tiers, for humans and JSON."""
        view: dict[str, Any] = self.rates_per_million()
        view["tiers"] = [
            {"above_input_tokens": tier.above_input_tokens, **tier.rates_per_million()} for tier in self.tiers
        ]
        return view

    def _rate(self, name: str) -> Decimal:
        return self.write_1h if name == "cache_write_1h" else getattr(self, name)


def compute_cost(prices: Prices, usage: TokenUsage) -> Decimal:
    """Exact USD cost of ``usage`` at ``prices``: the tier its prompt falls in, each cache write at its TTL."""
    rates = prices.at(usage.prompt_tokens)
    long_writes = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    return (
        rates.input * usage.input_tokens
        + rates.output * usage.output_tokens
        + rates.cache_read * usage.cache_read_tokens
        + rates.cache_write * (usage.cache_write_tokens - long_writes)
        + rates.write_1h * long_writes
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
