"""Guardrail prices an operator sets: versioned from an effective time, like a model's, stored in the catalog.

Bedrock bills a guardrail per 1,000 text units per policy type; LiteLLM's pinned map has those
prices (``prices.guardrail_prices``), and they are the default. An admin may override them without
a deploy: each change is a new ``GuardrailPriceVersion`` in force from ``effective_from`` (now, or
later), holding the full price list (the counters the admin sent, the rest carried over from the
version before, or from the map for the first). A request is priced at the version in force when
it was admitted, in every region, and its ledger entry names that version
(``guardrail_price_version``; 0: LiteLLM's map).

Stored and shown as exact decimal strings of USD per 1,000 text units (Bedrock's price page);
``GuardrailPrices`` holds them per unit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.catalog.prices import guardrail_prices as map_guardrail_prices
from chalicelib.errors import InvalidRequest
from chalicelib.shared.guardrails import UNIT_CHARACTERS, UNIT_SUFFIX, GuardrailPrices

THOUSAND = Decimal(UNIT_CHARACTERS)
#: A usage counter of Bedrock's guardrail trace (``contentPolicyUnits``, ``topicPolicyUnits``, …).
_COUNTER = re.compile(r"[a-z][A-Za-z]{0,62}" + UNIT_SUFFIX)
_DECIMAL_TEXT = re.compile(r"[0-9]{1,6}(\.[0-9]{1,12})?")  # ASCII only
MAX_COUNTERS = 16
#: Over this many USD per 1,000 text units a price is refused unless the admin says ``force``
#: (Bedrock's list prices are $0.10 to $1).
ABSURD_PER_THOUSAND = Decimal(100)


@dataclass(frozen=True)
class GuardrailPriceVersion:
    """One version of the stack's guardrail prices: in force from ``effective_from`` until the next."""

    version: int
    effective_from: str
    prices: GuardrailPrices
    set_by: str | None = None
    set_at: str | None = None

    def to_document(self) -> dict[str, Any]:
        """The stored and shown form: USD per 1,000 text units, as exact strings."""
        return {
            "version": self.version,
            "effective_from": self.effective_from,
            "set_by": self.set_by,
            "set_at": self.set_at,
            "per_1000_units": self.prices.per_thousand(),
        }


def in_force(versions: Sequence[GuardrailPriceVersion], region: str | None, moment: str) -> GuardrailPrices:
    """The guardrail prices in force at ``moment``: the last version started by then, else LiteLLM's map.

    Raises
    ------
    ServiceUnavailable
        No version is in force and the map has no guardrail prices.
    """
    chosen = None
    for version in versions:
        if version.effective_from <= moment:
            chosen = version
    if chosen is None:
        return map_guardrail_prices(region)
    return chosen.prices


def versions_of(documents: Any) -> tuple[GuardrailPriceVersion, ...]:
    """The versions of the stored item (``to_document`` forms, oldest first).

    Raises
    ------
    ValueError
        A stored version that cannot be read (an item edited by hand).
    """
    if not documents:
        return ()
    if not isinstance(documents, list):
        raise ValueError("guardrail price versions must be a list")
    versions: list[GuardrailPriceVersion] = []
    for document in documents:
        per_thousand = document.get("per_1000_units") if isinstance(document, Mapping) else None
        if not isinstance(per_thousand, Mapping) or not per_thousand:
            raise ValueError("a guardrail price version has no per_1000_units")
        number = int(document["version"])
        prices = {str(k): Decimal(str(v)) / THOUSAND for k, v in per_thousand.items()}
        if any(p < 0 for p in prices.values()) or (versions and number <= versions[-1].version):
            raise ValueError("guardrail price versions must be non-negative and numbered in order")
        versions.append(
            GuardrailPriceVersion(
                version=number,
                effective_from=str(document["effective_from"]),
                prices=GuardrailPrices(prices, version=number),
                set_by=document.get("set_by"),
                set_at=document.get("set_at"),
            )
        )
    return tuple(versions)


def parse_changes(raw: Any, *, force: bool = False, param: str = "per_1000_units") -> dict[str, Decimal | None]:
    """Prices an admin sends, USD per 1,000 text units by counter (``null``: drop the counter), per unit.

    Raises
    ------
    InvalidRequest
        Not an object of counters, an unknown-looking counter, a price that is not an exact
        decimal string, negative, or over ``ABSURD_PER_THOUSAND`` without ``force``.
    """
    example = '{"contentPolicyUnits": "0.15", "topicPolicyUnits": "0.15"}'
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidRequest(f"{param} must be an object of USD per 1,000 text units by counter, e.g. {example}.",
                             param=param)  # fmt: skip
    if len(raw) > MAX_COUNTERS:
        raise InvalidRequest(f"{param} may name at most {MAX_COUNTERS} counters.", param=param)
    changes: dict[str, Decimal | None] = {}
    for counter, value in raw.items():
        if not isinstance(counter, str) or not _COUNTER.fullmatch(counter):
            raise InvalidRequest(
                f"{param}: {counter[:80]!r} is not a guardrail usage counter (letters, ending in Units, such as "
                "contentPolicyUnits).",
                param=param,
            )
        at = f"{param}.{counter}"
        if value is None:
            changes[counter] = None
            continue
        text = value.strip() if isinstance(value, str) else ""
        if text.startswith("-"):
            raise InvalidRequest(f"{at} must not be negative.", param=at)
        if not _DECIMAL_TEXT.fullmatch(text):
            raise InvalidRequest(
                f'{at} must be a decimal string of USD per 1,000 text units, such as "0.15" (at most 12 decimals).',
                param=at,
            )
        per_thousand = Decimal(text)
        if per_thousand > ABSURD_PER_THOUSAND and not force:
            raise InvalidRequest(
                f"{at} is ${text} per 1,000 text units, over ${ABSURD_PER_THOUSAND}: send force: true if you mean it.",
                param=at,
            )
        changes[counter] = per_thousand / THOUSAND
    return changes


def next_version(
    versions: Sequence[GuardrailPriceVersion],
    changes: Mapping[str, Decimal | None],
    *,
    base: GuardrailPrices,
    effective_from: str,
    now: str,
    actor: str,
) -> GuardrailPriceVersion:
    """The version an admin's ``changes`` make: the latest version's prices (or ``base``) changed.

    Raises
    ------
    InvalidRequest
        The result prices no counter.
    """
    current = dict((versions[-1].prices if versions else base).per_unit)
    for counter, price in changes.items():
        if price is None:
            current.pop(counter, None)
        else:
            current[counter] = price
    if not current:
        raise InvalidRequest(
            "Those changes leave no guardrail price: a guardrail is never applied unpriced.", param="per_1000_units"
        )
    number = (versions[-1].version if versions else 0) + 1
    return GuardrailPriceVersion(
        version=number,
        effective_from=effective_from,
        prices=GuardrailPrices(current, version=number),
        set_by=actor,
        set_at=now,
    )
