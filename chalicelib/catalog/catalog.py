"""The model catalog: public aliases, the Bedrock ids behind them, and their prices.

The catalog is a JSON file (``chalicelib/catalog/catalog.json`` unless
``PENNYWORTH_CATALOG_PATH`` names another). Prices and capabilities default to
LiteLLM's bundled price map, read as a file from the installed package (no
``import litellm``, no network); a model may override them. A chat or embedding
model with no price anywhere is refused when the catalog loads, unless it says
``"free": true``: nothing is ever silently billed at $0.

A model may name the region it is called in (``region``; default: the stack's), an ordered
list of ``fallbacks`` (other catalog models, tried in order when it is throttled or failing:
another geography's inference profile of the same model, the same model in another region,
or another model), and a ``guardrail`` (``{"id", "version"}``) every call to it carries.
``check_fallbacks`` refuses a list naming an unknown model, itself, a model of another mode,
or one that loops back; ``Catalog.fallbacks_of`` is the chain a call walks (each model's own
fallbacks after it, depth first, each model once). Guardrail text units are priced from
LiteLLM's map (``bedrock/guardrails``), or the file's ``guardrail_prices`` (USD per 1,000
units per usage counter).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.shared.guardrails import Guardrail, GuardrailPrices, parse_guardrail
from chalicelib.shared.money import Prices

_MILLION = Decimal(1_000_000)
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]")
_PRICE_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
}


class CatalogError(ValueError):
    """The catalog file is unusable; raised when it loads, never mid-request."""


@dataclass(frozen=True)
class ModelEntry:
    """One model a key may call."""

    id: str
    bedrock_model_id: str
    mode: str
    owned_by: str
    created: int
    prices: Prices
    input_modalities: tuple[str, ...]
    supports_tools: bool
    supports_reasoning: bool
    max_output_tokens: int | None
    dimensions: tuple[int, ...]
    default_dimensions: int | None
    free: bool
    #: Other names clients may send for this model (e.g. the Anthropic model ids Claude Code sends).
    aliases: tuple[str, ...] = ()
    #: The region the model is called in (None: the stack's region).
    region: str | None = None
    #: Catalog ids tried in order when this model is throttled or failing.
    fallbacks: tuple[str, ...] = ()
    #: The guardrail every call to this model carries (a key's own guardrail wins).
    guardrail: Guardrail | None = None

    @property
    def base_model_id(self) -> str:
        """The Bedrock id without a cross-region profile's geography: the same model, whatever the geography."""
        return base_model_id(self.bedrock_model_id)

    @property
    def litellm_model(self) -> str:
        """The model string LiteLLM routes on (Converse for chat)."""
        if self.mode == "chat":
            return f"bedrock/converse/{self.bedrock_model_id}"
        return f"bedrock/{self.bedrock_model_id}"

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``model`` object."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


#: Geography prefixes of Bedrock cross-region inference profile ids (``us.anthropic.…``).
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "jp", "au", "ca", "us-gov")
#: The most targets a call walks (the model asked for and its fallbacks, transitively).
MAX_TARGETS = 8


def base_model_id(bedrock_id: str) -> str:
    """A Bedrock id without its profile's geography (``us.anthropic.x`` → ``anthropic.x``)."""
    prefix, dot, rest = bedrock_id.partition(".")
    return rest if dot and prefix in PROFILE_PREFIXES else bedrock_id


class Catalog:
    """Aliases and Bedrock ids resolved to ``ModelEntry`` objects."""

    def __init__(self, entries: list[ModelEntry], *, guardrail_prices: GuardrailPrices | None = None) -> None:
        #: What a guardrail's text units cost (USD per unit, by usage counter).
        self.guardrail_prices = guardrail_prices or GuardrailPrices()
        self._entries = {entry.id: entry for entry in entries}
        self._by_bedrock_id = {entry.bedrock_model_id: entry for entry in entries}
        self._by_alias = {alias: entry for entry in entries for alias in entry.aliases}

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, name: str) -> ModelEntry | None:
        """The entry for its id, one of its aliases or its full Bedrock id, or None."""
        return self._entries.get(name) or self._by_alias.get(name) or self._by_bedrock_id.get(name)

    def resolve(self, name: str, *, mode: str | None = None) -> ModelEntry:
        """Like ``find`` but raises ``NotFound`` (OpenAI's ``model_not_found``)."""
        entry = self.find(name)
        if entry is None or (mode is not None and entry.mode != mode):
            kind = f"{mode} " if mode else ""
            raise NotFound(
                f"The {kind}model '{name}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return entry

    def fallbacks_of(self, entry: ModelEntry) -> list[ModelEntry]:
        """The models a call to ``entry`` falls back to, in order: each fallback, then its own, depth first.

        Each model appears once; names the catalog no longer has, and models of another mode,
        are left out (logged when the catalog is checked, never a failed request).
        """
        chain: list[ModelEntry] = []
        seen = {entry.id}

        def walk(names: tuple[str, ...]) -> None:
            for name in names:
                found = self.find(name)
                if found is None or found.id in seen or found.mode != entry.mode or len(chain) >= MAX_TARGETS - 1:
                    continue
                seen.add(found.id)
                chain.append(found)
                walk(found.fallbacks)

        walk(entry.fallbacks)
        return chain


def check_fallbacks(entries: list[ModelEntry]) -> None:
    """Refuse fallback lists that name an unknown model, the model itself, another mode, or loop back.

    Raises
    ------
    InvalidRequest
        The first problem found, naming the model and its ``fallbacks`` (``param``).
    """
    by_name = {name: e for e in entries for name in (e.id, e.bedrock_model_id, *e.aliases)}
    for entry in entries:
        for name in entry.fallbacks:
            other = by_name.get(name)
            if other is None:
                raise InvalidRequest(
                    f"model '{entry.id}': fallbacks names '{name}', which is not a catalog model.", param="fallbacks"
                )
            if other.id == entry.id:
                raise InvalidRequest(f"model '{entry.id}': fallbacks names the model itself.", param="fallbacks")
            if other.mode != entry.mode:
                raise InvalidRequest(
                    f"model '{entry.id}' ({entry.mode}): fallbacks names '{other.id}', a {other.mode} model; "
                    "a fallback must answer the same requests.",
                    param="fallbacks",
                )
    for entry in entries:
        loop = _loop_from(entry, by_name)
        if loop:
            raise InvalidRequest(
                f"model '{entry.id}': its fallbacks loop back to it ({' → '.join(loop)}); a model cannot be its own "
                "fallback, directly or through another.",
                param="fallbacks",
            )


def _loop_from(entry: ModelEntry, by_name: Mapping[str, ModelEntry]) -> list[str]:
    """A path of fallbacks from ``entry`` back to it, or [] when there is none."""
    path: list[str] = [entry.id]
    visited: set[str] = set()

    def walk(current: ModelEntry) -> bool:
        for name in current.fallbacks:
            other = by_name.get(name)
            if other is None:
                continue
            if other.id == entry.id:
                path.append(other.id)
                return True
            if other.id in visited:
                continue
            visited.add(other.id)
            path.append(other.id)
            if walk(other):
                return True
            path.pop()
        return False

    return path if walk(entry) else []


def load_catalog(
    path: Path,
    *,
    region: str,
    price_map: Mapping[str, Any] | None = None,
    guardrails: tuple[str, ...] | None = None,
) -> Catalog:
    """Read and validate the catalog file, pricing every model.

    ``guardrails`` are the guardrail ids the stack may apply (its IAM role grants
    ``bedrock:ApplyGuardrail`` on those only); None skips that check.

    Raises
    ------
    CatalogError
        Unreadable JSON, a malformed entry, a duplicate alias, a model with no price that is
        not marked ``free``, a bad fallback list, or a guardrail outside ``guardrails``.
    """
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"cannot read model catalog {path}: {exc}") from exc
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list) or not models:
        raise CatalogError(f"model catalog {path} must have a non-empty 'models' list")
    prices = bundled_price_map() if price_map is None else price_map
    entries = [_entry(raw, region=region, price_map=prices) for raw in models]
    seen: set[str] = set()
    for entry in entries:
        for name in (entry.id, entry.bedrock_model_id, *entry.aliases):
            if name in seen:
                raise CatalogError(f"model catalog names '{name}' twice")
            seen.add(name)
    try:
        check_fallbacks(entries)
        for entry in entries:
            check_guardrail(entry.guardrail, guardrails, f"model '{entry.id}': guardrail")
    except InvalidRequest as exc:
        raise CatalogError(f"model catalog {path}: {exc.message}") from None
    return Catalog(entries, guardrail_prices=_guardrail_prices(document.get("guardrail_prices"), prices, region))


def check_guardrail(guardrail: Guardrail | None, allowed: tuple[str, ...] | None, where: str = "guardrail") -> None:
    """Refuse a guardrail the stack may not apply (outside its ``GuardrailIds``).

    Raises
    ------
    InvalidRequest
        ``guardrail_not_allowed``: the stack's role would be refused ``bedrock:ApplyGuardrail``.
    """
    if guardrail is None or allowed is None or guardrail.guardrail_id in allowed:
        return
    listed = ", ".join(allowed) if allowed else "none"
    raise InvalidRequest(
        f"{where}: '{guardrail.guardrail_id}' is not one of the guardrails this stack may apply ({listed}). Add it "
        "to the stack's GuardrailIds parameter (which grants bedrock:ApplyGuardrail on it) and deploy first.",
        param="guardrail",
        code="guardrail_not_allowed",
    )


def _guardrail_prices(raw: Any, price_map: Mapping[str, Any], region: str) -> GuardrailPrices:
    """USD per text unit by usage counter: the file's ``guardrail_prices`` (per 1,000 units), else LiteLLM's map."""
    if raw is not None:
        if not isinstance(raw, dict) or not raw:
            raise CatalogError(
                "guardrail_prices must map usage counters (contentPolicyUnits, …) to USD per 1,000 units"
            )
        return GuardrailPrices({str(k): _decimal("guardrail_prices", v) / 1000 for k, v in raw.items()})
    for key in (f"bedrock/{region}/guardrails", "bedrock/guardrails"):
        per_unit = (price_map.get(key) or {}).get("guardrail_cost_per_unit")
        if isinstance(per_unit, dict) and per_unit:
            return GuardrailPrices({str(k): Decimal(repr(float(v))) for k, v in per_unit.items()})
    raise CatalogError(
        "LiteLLM's price map has no Bedrock guardrail prices (bedrock/guardrails): set guardrail_prices in the "
        'catalog (USD per 1,000 text units, e.g. {"contentPolicyUnits": "0.15"})'
    )


def bundled_price_map() -> dict[str, Any]:
    """LiteLLM's pinned price map, read from the installed package without importing it."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError("litellm is not installed, so its bundled price map is unavailable")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((package_dir / "model_prices_and_context_window_backup.json").read_text())


def _entry(raw: Any, *, region: str, price_map: Mapping[str, Any]) -> ModelEntry:
    if not isinstance(raw, dict) or not raw.get("id") or not raw.get("bedrock_model_id"):
        raise CatalogError(f"catalog entry needs 'id' and 'bedrock_model_id': {raw!r}")
    alias, bedrock_id = str(raw["id"]), str(raw["bedrock_model_id"])
    mode = raw.get("mode", "chat")
    if mode not in ("chat", "embedding"):
        raise CatalogError(f"model '{alias}': mode must be 'chat' or 'embedding', not {mode!r}")
    known = _price_map_entry(price_map, bedrock_id, raw.get("region") if isinstance(raw.get("region"), str) else region)
    free = bool(raw.get("free", False))
    modalities = raw.get("input_modalities") or (["text", "image"] if known.get("supports_vision") else ["text"])
    dimensions = tuple(int(d) for d in raw.get("dimensions", []))
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise CatalogError(f"model '{alias}': 'aliases' must be a list of names")
    fallbacks = raw.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f.strip() for f in fallbacks):
        raise CatalogError(f"model '{alias}': 'fallbacks' must be a list of catalog model ids, in order")
    if len(fallbacks) >= MAX_TARGETS:
        raise CatalogError(f"model '{alias}': at most {MAX_TARGETS - 1} fallbacks")
    try:
        guardrail = parse_guardrail(raw.get("guardrail"))
    except InvalidRequest as exc:
        raise CatalogError(f"model '{alias}': {exc.message}") from None
    model_region = raw.get("region")
    if model_region is not None and (not isinstance(model_region, str) or not _REGION.fullmatch(model_region)):
        raise CatalogError(f"model '{alias}': 'region' must be an AWS region such as us-west-2")
    return ModelEntry(
        id=alias,
        bedrock_model_id=bedrock_id,
        mode=mode,
        owned_by=str(raw.get("owned_by", bedrock_id.split(".")[-2] if "." in bedrock_id else "aws")),
        created=int(raw.get("created", 0)),
        prices=_prices(alias, raw, known, free),
        input_modalities=tuple(modalities),
        supports_tools=bool(raw.get("supports_tools", mode == "chat")),
        supports_reasoning=bool(raw.get("supports_reasoning", known.get("supports_reasoning", False))),
        max_output_tokens=raw.get("max_output_tokens", known.get("max_output_tokens")),
        dimensions=dimensions,
        default_dimensions=raw.get("default_dimensions", dimensions[-1] if dimensions else None),
        free=free,
        aliases=tuple(aliases),
        region=model_region,
        fallbacks=tuple(fallbacks),
        guardrail=guardrail,
    )


def _price_map_entry(price_map: Mapping[str, Any], bedrock_id: str, region: str) -> Mapping[str, Any]:
    # Region-specific prices (e.g. GovCloud) win over the base entry; a
    # cross-region profile id (us./eu./...) has its own entry in the map.
    for key in (f"bedrock/{region}/{bedrock_id}", bedrock_id):
        if key in price_map:
            return price_map[key]
    return {}


def _prices(alias: str, raw: Mapping[str, Any], known: Mapping[str, Any], free: bool) -> Prices:
    override = raw.get("prices") or {}
    if not isinstance(override, dict):
        raise CatalogError(f"model '{alias}': 'prices' must be an object")
    if free:
        zero = Decimal(0)
        return Prices(zero, zero, zero, zero)
    found: dict[str, Decimal] = {}
    for name, litellm_field in _PRICE_FIELDS.items():
        if f"{name}_per_million" in override:
            found[name] = _decimal(alias, override[f"{name}_per_million"]) / _MILLION
        elif known.get(litellm_field) is not None:
            # repr() of the float is the shortest exact decimal LiteLLM wrote.
            found[name] = Decimal(repr(float(known[litellm_field])))
    if "input" not in found or ("output" not in found and raw.get("mode", "chat") == "chat"):
        raise CatalogError(
            f"model '{alias}' ({raw.get('bedrock_model_id')}) has no price in LiteLLM's map: "
            'set "prices" (USD per million tokens) in the catalog or mark it "free": true'
        )
    return Prices(
        input=found["input"],
        output=found.get("output", Decimal(0)),
        cache_read=found.get("cache_read", found["input"]),
        cache_write=found.get("cache_write", found["input"]),
    )


def _decimal(alias: str, value: Any) -> Decimal:
    try:
        result = Decimal(str(value))
    except ArithmeticError:
        raise CatalogError(f"model '{alias}': price {value!r} is not a number") from None
    if not result.is_finite() or result < 0:
        raise CatalogError(f"model '{alias}': price {value!r} must be a non-negative number")
    return result
