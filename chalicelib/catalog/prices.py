"""Prices of one model: read from LiteLLM's pinned map or from an admin, versioned, stored exactly.

The full price model (``chalicelib/shared/money.py: Prices``): input, output, cache reads,
cache writes kept 5 minutes and kept an hour, and tiers above an input-token threshold,
each with its own rates. A model's prices are a list of ``PriceVersion``s, each in force
from a stated time; a request is billed at the version in force when it was admitted, and
its ledger entry names that version, so a past bill can be explained after prices change.

Prices are stored and shown as exact decimal strings of USD per million tokens (what
people read on a price page); ``Prices`` holds them per token.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chalicelib.errors import InvalidRequest, ServiceUnavailable
from chalicelib.shared.guardrails import GuardrailPrices
from chalicelib.shared.money import RATE_NAMES, Prices, usd

MILLION = Decimal(1_000_000)
#: Over this many USD per million tokens a price is refused unless the admin says ``force``.
ABSURD_PER_MILLION = Decimal(1000)
#: The start of time: a model's first prices apply to everything billed before a later version.
BEGINNING = "1970-01-01T00:00:00Z"
MAX_TIERS = 8
_DECIMAL_TEXT = re.compile(r"[0-9]+(\.[0-9]{1,12})?")  # ASCII only: Decimal also reads "٥"
#: LiteLLM's map: the base rate of each of ours, then the key pattern of a tier's rate.
_MAP_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
}
_MAP_TIER = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|cache_creation_input_token_cost"
    r"|cache_creation_input_token_cost_above_1hr)_above_([0-9]+)(k?)_tokens$"
)
_TIER_FIELD = {v: k for k, v in _MAP_FIELDS.items()}


@dataclass(frozen=True)
class PriceVersion:
    """One version of a model's prices: in force from ``effective_from`` until the next version."""

    version: int
    effective_from: str
    prices: Prices
    #: Where the rates came from: ``litellm <version>`` (the pinned map), ``admin`` or ``free``.
    source: str
    set_by: str | None = None
    set_at: str | None = None

    def to_document(self) -> dict[str, Any]:
        """The stored and shown form: rates as exact strings of USD per million tokens."""
        return {
            "version": self.version,
            "effective_from": self.effective_from,
            "source": self.source,
            "set_by": self.set_by,
            "set_at": self.set_at,
            **self.prices.per_million(),
        }


def version_in_force(versions: Sequence[PriceVersion], moment: str) -> PriceVersion:
    """The version in force at ``moment`` (ISO 8601 UTC): the last one that started at or before it.

    A moment before every version (a clock behind the first version) gets the first.
    """
    chosen = versions[0]
    for version in versions:
        if version.effective_from <= moment:
            chosen = version
    return chosen


# -- LiteLLM's pinned price map ------------------------------------------------------------------


def bundled_price_map() -> dict[str, Any]:
    """LiteLLM's pinned price map, read from the installed package without importing it.

    Raises
    ------
    FileNotFoundError
        LiteLLM is not installed.
    """
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("litellm is not installed, so its bundled price map is unavailable")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((package_dir / "model_prices_and_context_window_backup.json").read_text())


def litellm_version() -> str:
    """The installed LiteLLM's version (which pinned map priced a model), without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litellm")
    except PackageNotFoundError:
        return "unknown"


def map_entry(price_map: Mapping[str, Any], names: Sequence[str]) -> Mapping[str, Any]:
    """The first of ``names`` the map has an entry for (region-specific names first), or ``{}``."""
    for name in names:
        found = price_map.get(name)
        if isinstance(found, Mapping):
            return found
    return {}


def prices_from_map(known: Mapping[str, Any]) -> Prices | None:
    """A map entry's prices, tiers and 1-hour cache writes included; None without an input price.

    A rate the map leaves out falls back: cache reads and 5-minute writes to the input price
    (what Bedrock bills a model without caching), 1-hour writes to the 5-minute price, and a
    tier's missing rate to the same rate below the tier.
    """
    base = {name: _map_rate(known.get(key)) for name, key in _MAP_FIELDS.items()}
    if base["input"] is None:
        return None
    tiers: dict[int, dict[str, Decimal]] = {}
    for key, value in known.items():
        match = _MAP_TIER.match(key)
        rate = _map_rate(value) if match else None
        if match is None or rate is None:
            continue
        threshold = int(match.group(2)) * (1000 if match.group(3) else 1)
        tiers.setdefault(threshold, {})[_TIER_FIELD[match.group(1)]] = rate
    return complete(base, [(threshold, tiers[threshold]) for threshold in sorted(tiers)])


def _map_rate(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    # repr() of the float is the shortest exact decimal LiteLLM wrote.
    return Decimal(repr(float(value)))


def complete(base: Mapping[str, Decimal | None], tiers: Sequence[tuple[int, Mapping[str, Decimal | None]]]) -> Prices:
    """``Prices`` from per-token rates, filling each missing rate from the one it falls back to."""
    rates = _filled(base, None)
    built = []
    below = rates
    for threshold, tier in tiers:
        filled = _filled(tier, below)
        built.append(Prices(**filled, above_input_tokens=threshold))
        below = filled
    return Prices(**rates, tiers=tuple(built))


def _filled(given: Mapping[str, Decimal | None], below: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for name in RATE_NAMES:
        value = given.get(name)
        if value is None and below is not None:
            value = below[name]
        if value is None:
            fallback = {"output": None, "cache_read": "input", "cache_write": "input", "cache_write_1h": "cache_write"}
            source = fallback.get(name)
            value = out[source] if source else Decimal(0)
        out[name] = value
    return out


def zero_prices() -> Prices:
    """A free model's prices: every rate $0, said so explicitly (``"free": true``)."""
    zero = Decimal(0)
    return Prices(zero, zero, zero, zero, zero)


# -- what an admin sends (and what is stored) ----------------------------------------------------


def parse_prices(raw: Any, *, param: str = "prices", force: bool = False) -> Prices:
    """Prices from USD per million tokens, as an admin sends them (and as they are stored).

    ``{"input": "1.10", "output": "5.50", "cache_read": …, "cache_write": …, "cache_write_1h": …,
    "tiers": [{"above_input_tokens": 200000, "input": …, …}]}``: ``input`` is required (and
    ``output``, for a chat model, checked by the caller); other rates fall back as in the map.

    Raises
    ------
    InvalidRequest
        A rate that is not a decimal amount, negative, or over $1,000 per million without
        ``force``; tiers out of order or malformed; unknown fields. ``param`` names the field.
    """
    if not isinstance(raw, Mapping):
        raise InvalidRequest(
            f'{param} must be an object of USD per million tokens, e.g. {{"input": "1.10"}}.', param=param
        )
    _refuse_unknown(raw, {*RATE_NAMES, "tiers"}, param)
    base = {name: _rate(raw, name, f"{param}.{name}", force) for name in RATE_NAMES}
    if base["input"] is None:
        raise InvalidRequest(
            f"{param}.input is required: the price of an input token per million.", param=f"{param}.input"
        )
    tiers_raw = raw.get("tiers") or []
    if not isinstance(tiers_raw, list) or len(tiers_raw) > MAX_TIERS:
        raise InvalidRequest(f"{param}.tiers must be a list of at most {MAX_TIERS} tiers.", param=f"{param}.tiers")
    tiers: list[tuple[int, dict[str, Decimal | None]]] = []
    previous = 0
    for index, tier in enumerate(tiers_raw):
        at = f"{param}.tiers[{index}]"
        if not isinstance(tier, Mapping):
            raise InvalidRequest(f"{at} must be an object with above_input_tokens and its rates.", param=at)
        _refuse_unknown(tier, {*RATE_NAMES, "above_input_tokens"}, at)
        threshold = tier.get("above_input_tokens")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not 0 < threshold <= 100_000_000:
            raise InvalidRequest(
                f"{at}.above_input_tokens must be a whole number of input tokens from 1 to 100000000.",
                param=f"{at}.above_input_tokens",
            )
        if threshold <= previous:
            raise InvalidRequest(
                f"{param}.tiers are out of order: tier {index} starts above {threshold} input tokens, "
                f"not above the tier before it ({previous}). List tiers from the lowest threshold up.",
                param=f"{at}.above_input_tokens",
            )
        previous = threshold
        tiers.append((threshold, {name: _rate(tier, name, f"{at}.{name}", force) for name in RATE_NAMES}))
    return complete(base, tiers)


def _refuse_unknown(source: Mapping[str, Any], allowed: set[str], param: str) -> None:
    unknown = sorted(set(source) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{param}.{unknown[0]}'. Allowed: {', '.join(sorted(allowed))}.",
            param=f"{param}.{unknown[0]}",
        )


def _rate(raw: Mapping[str, Any], name: str, param: str, force: bool) -> Decimal | None:
    """A per-token rate from a per-million amount (exact: a string or an integer, never a float)."""
    if name not in raw or raw[name] is None:
        return None
    value = raw[name]
    exact = isinstance(value, (str, int, Decimal)) and not isinstance(value, bool)
    text = (format(value, "f") if isinstance(value, Decimal) else str(value).strip()) if exact else ""
    if text.startswith("-"):
        raise InvalidRequest(f"{param} must not be negative; got {value!r}.", param=param)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidRequest(
            f'{param} must be a decimal amount of USD per million tokens such as "1.10" (at most 12 decimals); '
            f"got {value!r}.",
            param=param,
        )
    try:
        per_million = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise InvalidRequest(f"{param} is not a number.", param=param) from None
    if per_million > ABSURD_PER_MILLION and not force:
        raise InvalidRequest(
            f"{param} is ${usd(per_million)} per million tokens, over ${ABSURD_PER_MILLION}: "
            "if that is really the price, send it again with force (--force).",
            param=param,
            code="price_over_limit",
        )
    return per_million / MILLION


def price_versions_from_document(raw: Any) -> tuple[PriceVersion, ...]:
    """The stored versions of a model's prices, checked (a stored item is data anyone may have edited).

    Raises
    ------
    InvalidRequest
        A version that is malformed, or versions out of order.
    """
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("price_versions must be a non-empty list.", param="price_versions")
    versions: list[PriceVersion] = []
    for index, item in enumerate(raw):
        at = f"price_versions[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{at} must be an object.", param=at)
        number = item.get("version")
        if isinstance(number, Decimal) and number == number.to_integral_value():
            number = int(number)
        previous = versions[-1].version if versions else 0
        if isinstance(number, bool) or not isinstance(number, int) or number <= previous:
            raise InvalidRequest(f"{at}.version must be a whole number above {previous}.", param=f"{at}.version")
        effective = item.get("effective_from")
        if not isinstance(effective, str) or not effective.endswith("Z"):
            raise InvalidRequest(f"{at}.effective_from must be an ISO 8601 UTC time.", param=f"{at}.effective_from")
        if versions and effective < versions[-1].effective_from:
            raise InvalidRequest(f"{at}.effective_from is before the version before it.", param=f"{at}.effective_from")
        rates = {k: v for k, v in item.items() if k in (*RATE_NAMES, "tiers")}
        versions.append(
            PriceVersion(
                version=number,
                effective_from=effective,
                prices=parse_prices(rates, param=at, force=True),
                source=str(item.get("source") or "admin"),
                set_by=item.get("set_by") if isinstance(item.get("set_by"), str) else None,
                set_at=item.get("set_at") if isinstance(item.get("set_at"), str) else None,
            )
        )
    return tuple(versions)


#: Guardrail prices read from the pinned map, by region (the map is read once per process for them).
_GUARDRAIL_PRICES: dict[str, GuardrailPrices] = {}


def guardrail_prices(region: str | None, price_map: Mapping[str, Any] | None = None) -> GuardrailPrices:
    """USD per text unit by usage counter (``contentPolicyUnits``, …): LiteLLM's pinned ``bedrock/guardrails``.

    A region's own entry (``bedrock/<region>/guardrails``) wins. Read once per region and
    process (a call with a guardrail needs it; one without never reads the map for it).

    Raises
    ------
    ServiceUnavailable
        The map has no guardrail prices: a guardrail is never applied unpriced.
    """
    cached = _GUARDRAIL_PRICES.get(region or "") if price_map is None else None
    if cached is not None:
        return cached
    source = price_map if price_map is not None else bundled_price_map()
    for key in (f"bedrock/{region}/guardrails", "bedrock/guardrails"):
        per_unit = (source.get(key) or {}).get("guardrail_cost_per_unit")
        if isinstance(per_unit, dict) and per_unit:
            prices = GuardrailPrices({str(k): Decimal(repr(float(v))) for k, v in per_unit.items()})
            if price_map is None:
                _GUARDRAIL_PRICES[region or ""] = prices
            return prices
    raise ServiceUnavailable(
        "LiteLLM's pinned price map has no Bedrock guardrail prices (bedrock/guardrails): a guardrail cannot be "
        "applied unpriced.",
        code="guardrail_unpriced",
    )
