"""The catalog as the request path reads it: names resolved to ``ModelEntry`` objects.

A ``Catalog`` is one snapshot: built from the stored items (``chalicelib/catalog/live.py``
keeps it fresh) or from a file (``load_catalog``: the packaged ``catalog.json``, which seeds
a new stack and serves as a test fixture). Disabled models are kept in it but not
served; a model whose stored item cannot be read is listed as ``broken`` and answers
503 until it is fixed, and every other model is served as usual.

A model's ``fallbacks`` (catalog aliases, tried in order when it is throttled or failing:
another geography's inference profile of the same model, the same model in another region,
or another model) are checked against the whole catalog when an admin sets them
(``check_fallbacks``: an unknown model, itself, another mode, a loop are refused);
``Catalog.fallbacks_of`` is the chain a call walks (each model's own fallbacks after it, depth
first, each model once), leaving out what the catalog no longer serves, so a model removed or
disabled later never fails a request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from chalicelib.catalog.entry import (
    MAX_TARGETS,
    CatalogError,
    ModelEntry,
    Rules,
    entry_from_document,
    new_document,
)
from chalicelib.catalog.guardrail_prices import GuardrailPriceVersion
from chalicelib.catalog.guardrail_prices import in_force as guardrail_prices_in_force
from chalicelib.catalog.prices import bundled_price_map
from chalicelib.errors import InvalidRequest, NotFound, ServiceUnavailable
from chalicelib.shared.dates import isoformat, utcnow
from chalicelib.shared.guardrails import GuardrailPrices


class Catalog:
    """Aliases and Bedrock ids resolved to ``ModelEntry`` objects; one immutable snapshot."""

    def __init__(
        self,
        entries: list[ModelEntry],
        *,
        broken: Mapping[str, str] | None = None,
        version: int = 0,
        guardrail_prices: tuple[GuardrailPriceVersion, ...] = (),
    ) -> None:
        self._all = {entry.id: entry for entry in entries}
        served = [entry for entry in entries if entry.enabled]
        self._entries = {entry.id: entry for entry in served}
        self._by_bedrock_id = {entry.bedrock_model_id: entry for entry in served if entry.bedrock_model_id}
        self._by_alias = {alias: entry for entry in served for alias in entry.aliases}
        #: Names of stored models that cannot be read, and why (out of service until fixed).
        self.broken = dict(broken or {})
        #: The stored catalog's version this snapshot was read at (0: a file).
        self.version = version
        #: The operator's guardrail price versions (none: LiteLLM's map prices every guardrail).
        self.guardrail_price_versions = guardrail_prices

    def guardrail_prices(self, region: str | None, moment: str) -> GuardrailPrices:
        """The guardrail prices in force at ``moment`` (ISO 8601 UTC) in ``region``: the operator's, else the map's.

        Raises
        ------
        ServiceUnavailable
            No operator prices in force and the map has none: a guardrail is never applied unpriced.
        """
        return guardrail_prices_in_force(self.guardrail_price_versions, region, moment)

    def __iter__(self) -> Iterator[ModelEntry]:
        """The models that are served (enabled), in catalog order."""
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def every(self) -> list[ModelEntry]:
        """Every readable model, disabled ones too (what an admin manages)."""
        return list(self._all.values())

    def find(self, name: str) -> ModelEntry | None:
        """The served entry for its id, one of its aliases or its full Bedrock id, or None."""
        return self._entries.get(name) or self._by_alias.get(name) or self._by_bedrock_id.get(name)

    def resolve(self, name: str, *, mode: str | None = None) -> ModelEntry:
        """Like ``find`` but raises ``NotFound`` (OpenAI's ``model_not_found``).

        Raises
        ------
        NotFound
            No served model has this name (or not of ``mode``).
        ServiceUnavailable
            The model's stored entry cannot be read: it is out of service until an admin fixes it.
        """
        entry = self.find(name)
        if entry is None and name in self.broken:
            raise ServiceUnavailable(
                f"The model '{name}' is out of service: its catalog entry cannot be read. An admin has been "
                "alerted; other models are not affected.",
                param="model",
                code="model_unavailable",
            )
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


def check_fallbacks(entries: list[ModelEntry], only: str | None = None) -> None:
    """Refuse fallback lists that name an unknown model, the model itself, another mode, or loop back.

    ``only``: check that model's list alone (an admin's change), and the loops through it, so a
    problem elsewhere in the catalog never blocks an unrelated change.

    Raises
    ------
    InvalidRequest
        The first problem found, naming the model and its ``fallbacks`` (``param``).
    """
    by_name = {name: e for e in entries for name in names_of(e)}
    checked = [e for e in entries if only is None or e.id == only]
    for entry in checked:
        for name in entry.fallbacks:
            other = by_name.get(name)
            if other is None:
                raise InvalidRequest(
                    f"model '{entry.id}': fallbacks names '{name}', which is not a catalog model.", param="fallbacks"
                )
            if other.id == entry.id:
                raise InvalidRequest(f"model '{entry.id}': fallbacks names the model itself.", param="fallbacks")
            if other.provider != entry.provider:
                raise InvalidRequest(
                    f"model '{entry.id}' ({entry.provider}): fallbacks names '{other.id}', a model of another provider "
                    f"({other.provider}); "
                    "a fallback is served by the same provider (the prompt is built for it).",
                    param="fallbacks",
                )
            if other.mode != entry.mode:
                raise InvalidRequest(
                    f"model '{entry.id}' ({entry.mode}): fallbacks names '{other.id}', a model of another mode "
                    f"({other.mode}); "
                    "a fallback must answer the same requests.",
                    param="fallbacks",
                )
    for entry in checked:
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


def names_of(entry: ModelEntry) -> list[str]:
    """Every name a caller may use for ``entry``: its alias, its other aliases, its Bedrock id."""
    names = [entry.id, *entry.aliases]
    if entry.bedrock_model_id:
        names.append(entry.bedrock_model_id)
    return names


def seed_documents(
    path: Path,
    *,
    rules: Rules,
    price_map: Callable[[], Mapping[str, Any]] = bundled_price_map,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The stored documents of a catalog file's models, priced and completed as ``POST /admin/models`` would.

    Raises
    ------
    CatalogError
        Unreadable JSON, a malformed model, a name used twice, or a model with no price that
        is not marked ``free``.
    """
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CatalogError(f"cannot read model catalog {path}: {exc}") from exc
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list) or not models:
        raise CatalogError(f"model catalog {path} must have a non-empty 'models' list")
    cached: dict[str, Mapping[str, Any]] = {}

    def prices() -> Mapping[str, Any]:
        if "map" not in cached:
            cached["map"] = price_map()
        return cached["map"]

    stamp = now or isoformat(utcnow())
    documents = []
    for index, raw in enumerate(models):
        if not isinstance(raw, dict):
            raise CatalogError(f"model catalog {path}: models[{index}] must be an object")
        try:
            documents.append(new_document(raw, rules=rules, price_map=prices, now=stamp, actor="seed"))
        except InvalidRequest as exc:
            raise CatalogError(f"model catalog {path}: models[{index}] ({raw.get('alias')!r}): {exc.message}") from None
    entries = [entry_from_document(d) for d in documents]
    try:
        check_fallbacks(entries)
    except InvalidRequest as exc:
        raise CatalogError(f"model catalog {path}: {exc.message}") from None
    seen: set[str] = set()
    for entry in entries:
        for name in names_of(entry):
            if name in seen:
                raise CatalogError(f"model catalog {path} names '{name}' twice")
            seen.add(name)
    return documents


def load_catalog(
    path: Path, *, region: str, price_map: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None
) -> Catalog:
    """A catalog file, priced from LiteLLM's pinned map: the seed of a new stack, and a test fixture.

    Raises
    ------
    CatalogError
        See ``seed_documents``.
    """
    if price_map is None:
        source: Callable[[], Mapping[str, Any]] = bundled_price_map
    elif callable(price_map):
        source = price_map
    else:
        fixed = price_map
        source = lambda: fixed  # noqa: E731 - a constant source
    documents = seed_documents(path, rules=Rules(region=region), price_map=source)
    return Catalog([entry_from_document(d) for d in documents])
