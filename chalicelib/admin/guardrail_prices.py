"""The admin API of guardrail prices: ``GET``/``PATCH /admin/guardrail-prices`` (admins).

What a guardrail's text units cost, per 1,000 units per policy type, as operator data in the
catalog table (``chalicelib/catalog/guardrail_prices.py``): LiteLLM's pinned map by default, an
admin's versions from their effective time on. A change is one transaction (the prices item, the
catalog's version, the audit event), served at once by the admin's function and by every other
warm function within 30 s, like any catalog change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib import errors
from chalicelib.admin.auth import AdminAuthenticator, Principal
from chalicelib.catalog import CatalogStore, LiveCatalog
from chalicelib.catalog.entry import effective_from
from chalicelib.catalog.guardrail_prices import in_force, next_version, parse_changes, versions_of
from chalicelib.catalog.prices import guardrail_prices as map_guardrail_prices
from chalicelib.catalog.prices import litellm_version
from chalicelib.keys.audit import Actor, AuditLog, Subject
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import Clock, isoformat, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.http import HttpResult

#: The audit subject of the stack's guardrail prices.
SUBJECT = Subject("prices", "guardrails")


class GuardrailPriceAdmin:
    """Implements ``/admin/guardrail-prices`` over the catalog store, its live snapshot and the audit log."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        store: CatalogStore,
        live: LiveCatalog,
        audit: AuditLog,
        region: str,
        max_body_bytes: int,
        clock: Clock = utcnow,
    ) -> None:
        self._authenticator = authenticator
        self._store = store
        self._live = live
        self._audit = audit
        self._region = region
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def get(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /admin/guardrail-prices``: the prices in force, every version, LiteLLM's defaults, the audit log."""
        self._admin(headers)
        view = self._view(self._store.read().guardrail_prices)
        view["audit"] = [e.to_dict() for e in self._audit.for_subject(SUBJECT, limit=100, cursor=None).items]
        return HttpResult(view)

    def update(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/guardrail-prices`` ``{"per_1000_units": {counter: "USD" | null}, "effective_from", "force"}``.

        A new version: the latest one's prices (LiteLLM's map for the first) with these changed,
        in force from ``effective_from`` (default now; never in the past).
        """
        principal = self._admin(headers)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes, required=True, exact_numbers=True)
        refuse_unknown(body, {"per_1000_units", "effective_from", "force"})
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise errors.InvalidRequest("force must be true or false.", param="force")
        changes = parse_changes(body.get("per_1000_units"), force=force)
        now = isoformat(self._clock())
        stored = self._store.read()
        previous = stored.guardrail_prices
        versions = versions_of((previous or {}).get("versions"))
        documents = [v.to_document() for v in versions]
        version = next_version(
            versions,
            changes,
            base=map_guardrail_prices(self._region),
            effective_from=effective_from(body.get("effective_from"), now, documents),
            now=now,
            actor=principal.email or principal.sub,
        )
        before = versions[-1].prices.per_thousand() if versions else map_guardrail_prices(self._region).per_thousand()
        event = self._audit.put_item(
            self._audit.new_event(
                SUBJECT,
                "set",
                Actor(sub=principal.sub, email=principal.email),
                changes={"per_1000_units": {"from": before, "to": version.prices.per_thousand()}},
                details={"version": version.version, "effective_from": version.effective_from},
            )
        )
        saved = self._store.put_guardrail_prices(
            [*documents, version.to_document()], read_version=stored.version, previous=previous, attach=[event]
        )
        self._live.refresh()
        return HttpResult(self._view(saved))

    def _view(self, item: Mapping[str, Any] | None) -> dict[str, Any]:
        versions = versions_of((item or {}).get("versions"))
        now = isoformat(self._clock())
        current = in_force(versions, self._region, now)
        return {
            "object": "guardrail_prices",
            "unit": "USD per 1,000 text units",
            "in_force": {"version": current.version, "per_1000_units": current.per_thousand()},
            "versions": [v.to_document() for v in versions],
            "default": {
                "source": f"litellm {litellm_version()}",
                "per_1000_units": map_guardrail_prices(self._region).per_thousand(),
            },
        }

    def _admin(self, headers: Mapping[str, str]) -> Principal:
        principal = self._authenticator().authenticate(headers)
        if not principal.is_admin:
            raise errors.PermissionDenied("Only admins can see or change guardrail prices.", code="admin_only")
        return principal
