"""The admin API of the model catalog: list, show, add, update (enable, disable, prices), remove, test.

Routes: ``GET``/``POST /admin/models``, ``GET``/``PATCH``/``DELETE /admin/models/{alias}``,
``POST /admin/models/{alias}/test``, ``GET /admin/models/{alias}/audit``. Anyone signed in
may list the models (the console's key dialog chooses from them); everything else is for
Cognito admins. Each change is one transaction: the model's item, the catalog's version and
the audit event (before and after), so the change and its record cannot part; the admin's
own function serves the new catalog at once, every other warm function within 30 s
(``chalicelib/catalog/live.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib import errors
from chalicelib.admin.auth import AdminAuthenticator, Principal
from chalicelib.catalog import Catalog, CatalogStore, LiveCatalog, ModelEntry, Rules, names_of
from chalicelib.catalog.catalog import check_fallbacks
from chalicelib.catalog.entry import FIELDS, entry_from_document, new_document, updated_document
from chalicelib.catalog.prices import PriceVersion
from chalicelib.catalog.store import Stored, next_position
from chalicelib.keys.audit import Actor, AuditLog, Subject, changes_between
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import Clock, isoformat, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.guardrails import Guardrail, parse_guardrail
from chalicelib.shared.http import HttpResult

#: What an audit event of a model records as its before and after.
AUDITED = (*(name for name in FIELDS if name not in ("prices", "free")), "free", "price_versions", "removed_at")
#: Keys listed per page while looking for the keys that name a model.
_KEY_PAGE = 100

Probe = Callable[[KeyRecord, ModelEntry, float], dict[str, Any]]


class ModelAdmin:
    """Implements ``/admin/models*`` over the catalog store, its live snapshot, keys and the audit log.

    ``check_key`` reads a provider key's SSM parameter (raising ``UpstreamError`` when it cannot);
    ``probe`` runs the model test through the model service; ``price_map`` is LiteLLM's pinned map.
    """

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        store: CatalogStore,
        live: LiveCatalog,
        keys: KeyStore,
        audit: AuditLog,
        rules: Callable[[], Rules],
        price_map: Callable[[], Mapping[str, Any]],
        check_key: Callable[[str], None],
        probe: Probe,
        max_body_bytes: int,
        clock: Clock = utcnow,
        test_seconds: float = 20.0,
        guardrails: Callable[[Guardrail], None] | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._store = store
        self._live = live
        self._keys = keys
        self._audit = audit
        self._rules = rules
        self._price_map = price_map
        self._check_key = check_key
        self._probe = probe
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._test_seconds = test_seconds
        #: Checks a model's guardrail exists when it is set (``admin/guardrails.py``; None: not checked).
        self._guardrails = guardrails

    # -- reading -----------------------------------------------------------------------------------

    def list_models(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /admin/models``: every model (admins: disabled and unreadable ones too, in full)."""
        principal = self._principal(headers)
        stored = self._store.read()
        catalog = _catalog(stored)
        if not principal.is_admin:
            return HttpResult({"object": "list", "data": [model_view(m, admin=False) for m in catalog]})
        data = [model_view(m, admin=True) for m in catalog.every()]
        data += [
            {"object": "model", "id": alias, "alias": alias, "status": "unreadable", "error": reason}
            for alias, reason in sorted(catalog.broken.items())
            if alias in stored.documents
        ]
        return HttpResult({"object": "list", "data": data, "catalog_version": stored.version})

    def get_model(self, headers: Mapping[str, str], alias: str) -> HttpResult:
        """``GET /admin/models/{alias}``: one model (its price versions too, for admins)."""
        principal = self._principal(headers)
        catalog = _catalog(self._store.read())
        model = next((m for m in catalog.every() if alias in (m.id, *m.aliases)), None)
        if model is None or (not principal.is_admin and not model.enabled):
            reason = catalog.broken.get(alias)
            if reason and principal.is_admin:
                raise errors.ServiceUnavailable(
                    f"The model '{alias}' cannot be read: {reason}. Fix it with PATCH (every field), or remove it.",
                    code="model_unreadable",
                )
            raise errors.NotFound(f"No model '{alias}' in the catalog.", param="alias", code="model_not_found")
        return HttpResult(model_view(model, admin=principal.is_admin))

    def model_audit(self, headers: Mapping[str, str], alias: str, query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/models/{alias}/audit``: the model's events, oldest first (admins)."""
        self._admin(headers)
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        limit = query.get("limit") or "100"
        if not limit.isascii() or not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise errors.InvalidRequest("limit must be a whole number from 1 to 500.", param="limit")
        page = self._audit.for_subject(Subject("model", alias), limit=int(limit), cursor=query.get("cursor"))
        data = [e.to_dict() for e in page.items]
        return HttpResult(
            {"object": "list", "data": data, "has_more": page.cursor is not None, "next_cursor": page.cursor}
        )

    # -- changing ----------------------------------------------------------------------------------

    def add_model(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/models``: a new model, priced from the body or LiteLLM's map (admins)."""
        principal = self._admin(headers)
        body = self._body(raw_body)
        now = isoformat(self._clock())
        document = new_document(body, rules=self._rules(), price_map=self._price_map, now=now, actor=_who(principal))
        stored = self._store.read()
        previous = stored.documents.get(document["alias"])
        if previous is not None and not previous.get("removed_at"):
            raise errors.InvalidRequest(
                f"A model '{document['alias']}' already exists; change it with "
                f"PATCH /admin/models/{document['alias']} (pennyworth models update).",
                param="alias",
                code="model_exists",
            )
        _check_names(stored, document)
        _check_fallbacks(stored, document)
        self._check_guardrail(document)
        self._check_provider_key(document)
        if previous is not None:
            # The alias was used before: its price history continues (its ledger entries name its versions).
            document["price_versions"] = _continued(previous, document, now)
            document["position"] = previous.get("position", next_position(stored))
        else:
            document["position"] = next_position(stored)
        document.update(added_at=now, updated_at=now, updated_by=_who(principal))
        event = self._event(document["alias"], "added", principal, previous, document)
        saved = self._store.put(document, read_version=stored.version, previous=previous, attach=[event])
        self._live.refresh()
        return HttpResult(model_view(_entry(saved), admin=True), status=201)

    def update_model(self, headers: Mapping[str, str], alias: str, raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/models/{alias}``: change fields, enable or disable, or set new prices (a new version)."""
        principal = self._admin(headers)
        body = self._body(raw_body)
        if not body:
            raise errors.InvalidRequest(f"Send at least one field to change: {', '.join(FIELDS)}.")
        stored = self._store.read()
        current = stored.live().get(alias)
        if current is None:
            raise errors.NotFound(f"No model '{alias}' in the catalog.", param="alias", code="model_not_found")
        now = isoformat(self._clock())
        document = updated_document(
            current, body, rules=self._rules(), price_map=self._price_map, now=now, actor=_who(principal)
        )
        _check_names(stored, document)
        _check_fallbacks(stored, document)
        if "guardrail" in body:
            self._check_guardrail(document)
        if any(name in body for name in ("base_url", "api_key_parameter")):
            self._check_provider_key(document)
        document.update(updated_at=now, updated_by=_who(principal))
        event = self._event(alias, "updated", principal, current, document)
        saved = self._store.put(document, read_version=stored.version, previous=current, attach=[event])
        self._live.refresh()
        return HttpResult(model_view(_entry(saved), admin=True))

    def remove_model(self, headers: Mapping[str, str], alias: str, query: Mapping[str, str] | None) -> HttpResult:
        """``DELETE /admin/models/{alias}[?force=true]``: refused while keys' allowlists name it, unless forced.

        With ``force``, the model is taken out of each such key's allowlist first (each key's change
        audited); a key left allowing no model stays so (it never falls back to every model).
        """
        principal = self._admin(headers)
        query = query or {}
        refuse_unknown(query, {"force"})
        force = query.get("force", "false").lower()
        if force not in ("true", "false"):
            raise errors.InvalidRequest("force must be true or false.", param="force")
        stored = self._store.read()
        current = stored.documents.get(alias)
        if current is None or current.get("removed_at"):
            raise errors.NotFound(f"No model '{alias}' in the catalog.", param="alias", code="model_not_found")
        naming = self._keys_naming(alias)
        if naming and force != "true":
            listed = ", ".join(k.key_id for k in naming[:20]) + (
                f" and {len(naming) - 20} more" if len(naming) > 20 else ""
            )
            raise errors.Conflict(
                f"{len(naming)} key(s) allow the model '{alias}': {listed}. Change their allowed_models first, or "
                "remove it with force (--force), which takes it out of their allowlists (audited).",
                param="alias",
                code="model_in_use",
            )
        now = isoformat(self._clock())
        pruned = [self._prune(record, alias, principal) for record in naming]
        document = {**current, "removed_at": now, "enabled": False, "updated_at": now, "updated_by": _who(principal)}
        details = {"keys_changed": [k.key_id for k in pruned]} if pruned else {}
        event = self._event(alias, "removed", principal, current, document, details=details)
        self._store.put(document, read_version=stored.version, previous=current, attach=[event])
        self._live.refresh()
        return HttpResult(
            {"object": "model.removed", "id": alias, "removed": True, "keys_changed": [k.key_id for k in pruned]}
        )

    def test_model(self, headers: Mapping[str, str], alias: str, raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/models/{alias}/test`` ``{"key_id"?}``: one minimal billed call through the whole path.

        Billed to ``key_id`` when given (an admin may name any key, e.g. a system key kept for
        tests), else to the admin's own newest active key that may use the model.
        """
        principal = self._admin(headers)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes, required=False, exact_numbers=True)
        refuse_unknown(body, {"key_id"})
        catalog = _catalog(self._store.read())
        model = next((m for m in catalog.every() if m.id == alias), None)
        if model is None:
            if alias in catalog.broken:
                raise errors.ServiceUnavailable(f"The model '{alias}' cannot be read: {catalog.broken[alias]}.")
            raise errors.NotFound(f"No model '{alias}' in the catalog.", param="alias", code="model_not_found")
        key = self._test_key(principal, model, body.get("key_id"))
        deadline = self._clock().timestamp() + self._test_seconds
        result = self._probe(key, model, deadline)
        details = {
            name: result.get(name) for name in ("ok", "status", "latency_ms", "cost_usd", "price_version", "request_id")
        }
        self._audit.record(
            self._audit.new_event(
                Subject("model", alias), "tested", _actor(principal), details={**details, "key_id": key.key_id}
            )
        )
        return HttpResult(result)

    # -- helpers -----------------------------------------------------------------------------------

    def _principal(self, headers: Mapping[str, str]) -> Principal:
        return self._authenticator().authenticate(headers)

    def _admin(self, headers: Mapping[str, str]) -> Principal:
        principal = self._principal(headers)
        if not principal.is_admin:
            raise errors.PermissionDenied("Only admins can manage the model catalog.", code="admin_only")
        return principal

    def _body(self, raw: bytes | str | None) -> dict[str, Any]:
        return parse_json_body(raw, max_bytes=self._max_body_bytes, required=True, exact_numbers=True)

    def _check_guardrail(self, document: Mapping[str, Any]) -> None:
        guardrail = parse_guardrail(document.get("guardrail"))
        if guardrail is not None and self._guardrails is not None:
            self._guardrails(guardrail)

    def _check_provider_key(self, document: Mapping[str, Any]) -> None:
        parameter = document.get("api_key_parameter")
        if not parameter:
            return
        try:
            self._check_key(parameter)
        except errors.AppError as exc:
            raise errors.InvalidRequest(
                exc.message, param="api_key_parameter", code="provider_key_unavailable"
            ) from None

    def _event(
        self,
        alias: str,
        action: str,
        principal: Principal,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any],
        *,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        event = self._audit.new_event(
            Subject("model", alias),
            action,
            _actor(principal),
            changes=changes_between(before, after, AUDITED),
            details=details,
        )
        return self._audit.put_item(event)

    def _keys_naming(self, alias: str) -> list[KeyRecord]:
        """Every key not revoked whose allowlist names ``alias``."""
        found: list[KeyRecord] = []
        cursor: str | None = None
        while True:
            page = self._keys.list_keys(limit=_KEY_PAGE, cursor=cursor)
            found += [
                r
                for r in page.items
                if r.status != "revoked" and r.allowed_models is not None and alias in r.allowed_models
            ]
            if page.cursor is None:
                return found
            cursor = page.cursor

    def _prune(self, record: KeyRecord, alias: str, principal: Principal) -> KeyRecord:
        remaining = [m for m in record.allowed_models or () if m != alias]
        changes = {"allowed_models": remaining}
        details = {"reason": f"model '{alias}' removed from the catalog"}
        if not remaining:
            details["note"] = "this key now allows no model"
        return self._keys.update(
            record,
            changes,
            attach=lambda new: [
                self._audit.put_item(
                    self._audit.new_event(
                        record.key_id,
                        "updated",
                        _actor(principal),
                        changes={"allowed_models": {"from": list(record.allowed_models or ()), "to": remaining}},
                        details=details,
                    )
                )
            ],
        )

    def _test_key(self, principal: Principal, model: ModelEntry, key_id: Any) -> KeyRecord:
        now = self._clock()
        if key_id is not None:
            if not isinstance(key_id, str):
                raise errors.InvalidRequest("key_id must be a key's id.", param="key_id")
            record = self._keys.require(key_id)
            if record.effective_status(now) != "active":
                raise errors.InvalidRequest(f"The key {key_id} is {record.effective_status(now)}.", param="key_id")
            if not record.allows_model(model.id):
                raise errors.InvalidRequest(
                    f"The key {key_id} may not use '{model.id}' (its allowed_models leave it out).", param="key_id"
                )
            return record
        cursor: str | None = None
        while True:
            page = self._keys.list_keys(owner_sub=principal.sub, status="active", limit=_KEY_PAGE, cursor=cursor)
            usable = [r for r in page.items if r.effective_status(now) == "active" and r.allows_model(model.id)]
            if usable:
                return usable[0]
            if page.cursor is None:
                break
            cursor = page.cursor
        raise errors.InvalidRequest(
            f"You have no active key that may use '{model.id}' to bill the test to: create one (pennyworth keys "
            "create), or name a key with key_id (--key).",
            param="key_id",
            code="no_key_for_test",
        )


def model_view(model: ModelEntry, *, admin: bool) -> dict[str, Any]:
    """A model as the admin API shows it; prices as strings of USD per million tokens.

    Everyone sees what a caller may rely on (names, mode, capabilities, prices in force); admins see
    where it is served, its note, and every price version.
    """
    current = model.price_at(isoformat(utcnow()))
    view: dict[str, Any] = {
        **model.to_openai(),
        "alias": model.id,
        "aliases": list(model.aliases),
        "mode": model.mode,
        "enabled": model.enabled,
        "capabilities": {
            "tools": model.supports_tools,
            "vision": "image" in model.input_modalities,
            "reasoning": model.supports_reasoning,
            "prompt_caching": model.supports_prompt_caching,
            "max_output_tokens": model.max_output_tokens,
            "context_window": model.context_window,
        },
        "free": model.free,
        "prices": _price_view(current),
    }
    if model.mode == "embedding":
        view.update(dimensions=list(model.dimensions), default_dimensions=model.default_dimensions)
    if admin:
        view.update(
            provider=model.provider,
            model_id=model.model_id,
            litellm_model=model.litellm_model,
            region=model.region,
            base_url=model.base_url,
            api_key_parameter=model.api_key_parameter,
            note=model.note,
            fallbacks=list(model.fallbacks),
            guardrail=model.guardrail.to_json() if model.guardrail else None,
            price_versions=[_price_view(v) for v in model.price_versions],
            revision=model.revision,
            updated_at=model.updated_at,
            updated_by=model.updated_by,
        )
    return view


def _price_view(version: PriceVersion) -> dict[str, Any]:
    return version.to_document()


def _catalog(stored: Stored) -> Catalog:
    from chalicelib.catalog.store import catalog_of

    return catalog_of(stored)


def _entry(document: Mapping[str, Any]) -> ModelEntry:
    return entry_from_document(document)


def _continued(previous: Mapping[str, Any], document: Mapping[str, Any], now: str) -> list[dict[str, Any]]:
    """A re-added model's price history: its old versions, then the new prices from now on."""
    versions = list(previous.get("price_versions") or [])
    latest = versions[-1].get("effective_from") if versions else None
    first = dict(document["price_versions"][0])
    first.update(version=len(versions) + 1, effective_from=max(now, latest) if isinstance(latest, str) else now)
    return [*versions, first]


def _check_names(stored: Stored, document: Mapping[str, Any]) -> None:
    """Refuse a name (alias, alias of it, Bedrock id) another model already answers to."""
    taken: dict[str, str] = {}
    for alias, other in stored.live().items():
        if alias == document["alias"]:
            continue
        try:
            names = names_of(entry_from_document(other))
        except Exception:  # noqa: BLE001 - an unreadable model still holds its names
            names = [alias, *[a for a in other.get("aliases") or [] if isinstance(a, str)]]
        taken.update({name: alias for name in names})
    candidate = entry_from_document({**document, "price_versions": document["price_versions"]})
    for param, names in (("alias", [candidate.id]), ("aliases", list(candidate.aliases))):
        for name in names:
            if name in taken:
                raise errors.InvalidRequest(
                    f"'{name}' is already a name of the model '{taken[name]}'; every alias, extra alias "
                    "and Bedrock model id names one model.",
                    param=param,
                    code="name_taken",
                )
    if candidate.bedrock_model_id and candidate.bedrock_model_id in taken:
        raise errors.InvalidRequest(
            f"The model '{taken[candidate.bedrock_model_id]}' already serves the Bedrock model "
            f"'{candidate.bedrock_model_id}' (callers may name it by that id); give that model another alias instead.",
            param="model_id",
            code="name_taken",
        )


def _check_fallbacks(stored: Stored, document: Mapping[str, Any]) -> None:
    """Refuse a fallback list naming an unknown model, the model itself, another mode, or a loop."""
    if not document.get("fallbacks"):
        return
    entries = []
    for alias, other in stored.live().items():
        if alias == document["alias"]:
            continue
        with contextlib.suppress(Exception):  # an unreadable model serves nothing: not a fallback
            entries.append(entry_from_document(other))
    entries.append(entry_from_document(document))
    check_fallbacks(entries, only=document["alias"])


def _who(principal: Principal) -> str:
    return principal.email or principal.sub


def _actor(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, email=principal.email)
