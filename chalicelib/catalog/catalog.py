"""The model catalog: public aliases, the Bedrock ids behind them, and their prices.

The catalog is a JSON file (``chalicelib/catalog/catalog.json`` unless
``PENNYWORTH_CATALOG_PATH`` names another). Prices and capabilities default to
LiteLLM's bundled price map, read as a file from the installed package (no
``import litellm``, no network); a model may override them. A chat or embedding
model with no price anywhere is refused when the catalog loads, unless it says
``"free": true``: nothing is ever silently billed at $0.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.errors import NotFound
from chalicelib.shared.money import Prices

_MILLION = Decimal(1_000_000)
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


class Catalog:
    """Aliases and Bedrock ids resolved to ``ModelEntry`` objects."""

    def __init__(self, entries: list[ModelEntry]) -> None:
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


def load_catalog(path: Path, *, region: str, price_map: Mapping[str, Any] | None = None) -> Catalog:
    """Read and validate the catalog file, pricing every model.

    Raises
    ------
    CatalogError
        Unreadable JSON, a malformed entry, a duplicate alias, or a model with
        no price that is not marked ``free``.
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
    return Catalog(entries)


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
    known = _price_map_entry(price_map, bedrock_id, region)
    free = bool(raw.get("free", False))
    modalities = raw.get("input_modalities") or (["text", "image"] if known.get("supports_vision") else ["text"])
    dimensions = tuple(int(d) for d in raw.get("dimensions", []))
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise CatalogError(f"model '{alias}': 'aliases' must be a list of names")
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
