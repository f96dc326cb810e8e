"""Bedrock Guardrails as every layer names them: which guardrail, what its text units cost.

A guardrail is configured on a catalog model or a key (``Guardrail``: id or ARN, and version;
``parse_guardrail`` reads what an admin sends). Bedrock bills a guardrail per text unit (up
to 1,000 characters) per policy type it assessed, and reports the units in the trace's
``invocationMetrics.usage`` (``contentPolicyUnits``, ``topicPolicyUnits``, …). ``GuardrailPrices``
holds USD per unit for each counter; ``guardrail_cost`` prices reported units exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.errors import InvalidRequest

#: A guardrail id (Bedrock: up to 64 lowercase letters and digits) or its ARN.
_IDENTIFIER = re.compile(r"[a-z0-9]{1,64}|arn:aws[a-z-]*:bedrock:[a-z0-9-]+:[0-9]{12}:guardrail/[a-z0-9]{1,64}")
#: A version: "DRAFT" or a number.
_VERSION = re.compile(r"DRAFT|[1-9][0-9]{0,7}")
#: Characters in one text unit.
UNIT_CHARACTERS = 1000
#: The counters of Bedrock's guardrail usage that are billed (``…Units``, not latency or coverage).
UNIT_SUFFIX = "Units"


@dataclass(frozen=True)
class Guardrail:
    """A Bedrock guardrail (id or ARN, and version) that assesses a call's prompt and answer."""

    identifier: str
    version: str

    def config(self) -> dict[str, Any]:
        """Converse's ``guardrailConfig``; the trace is on because it carries the text units Bedrock bills."""
        return {"guardrailIdentifier": self.identifier, "guardrailVersion": self.version, "trace": "enabled"}

    @property
    def guardrail_id(self) -> str:
        """The id, also when configured by ARN (what IAM and the stack's list of guardrails name)."""
        return self.identifier.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, str]:
        return {"id": self.identifier, "version": self.version}

    def __str__(self) -> str:
        return f"{self.identifier} (version {self.version})"


def parse_guardrail(value: Any, param: str = "guardrail") -> Guardrail | None:
    """A guardrail from ``{"id": "...", "version": "1"}`` (None stays None).

    Raises
    ------
    InvalidRequest
        Not an object with a guardrail id (or ARN) and a version (``DRAFT`` or a number).
    """
    if value is None:
        return None
    if isinstance(value, Guardrail):
        return value
    shape = f'{param} must be {{"id": "<guardrail id or ARN>", "version": "<DRAFT or a number>"}}, or null'
    if not isinstance(value, Mapping) or set(value) - {"id", "version"}:
        raise InvalidRequest(f"{shape}.", param=param)
    identifier, version = value.get("id"), value.get("version", "DRAFT")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(identifier, str) or not _IDENTIFIER.fullmatch(identifier):
        raise InvalidRequest(f"{shape}; got id {identifier!r}.", param=f"{param}.id")
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InvalidRequest(f"{shape}; got version {version!r}.", param=f"{param}.version")
    return Guardrail(identifier, version)


@dataclass(frozen=True)
class GuardrailPrices:
    """USD per text unit for each usage counter Bedrock reports (``contentPolicyUnits``: 0.00015, …).

    ``version`` is the operator's price version these are (``catalog/guardrail_prices.py``); 0:
    LiteLLM's pinned map.
    """

    per_unit: Mapping[str, Decimal] = field(default_factory=dict)
    version: int = 0

    @property
    def dearest_total(self) -> Decimal:
        """What one text unit costs when every policy type assesses it (admission's worst case)."""
        return sum(self.per_unit.values(), Decimal(0))

    def per_thousand(self) -> dict[str, str]:
        """Prices per 1,000 text units, as Bedrock's price list shows them."""
        return {name: format((price * 1000).normalize(), "f") for name, price in sorted(self.per_unit.items())}


def guardrail_cost(prices: GuardrailPrices, units: Mapping[str, int]) -> Decimal:
    """Exact USD for the text units a guardrail reported.

    A counter the price list does not know is billed at its dearest known counter's price:
    nothing is billed at $0 by accident.
    """
    fallback = max(prices.per_unit.values(), default=Decimal(0))
    return sum(
        (prices.per_unit.get(counter, fallback) * count for counter, count in units.items() if count > 0),
        Decimal(0),
    )


def text_units(characters: int) -> int:
    """Text units for ``characters`` (one per started 1,000)."""
    return math.ceil(characters / UNIT_CHARACTERS) if characters > 0 else 0
