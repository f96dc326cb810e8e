"""The admin API: key lifecycle for admins (every key), team admins (their team's keys) and signed-in
users (their own keys).

``app.py`` calls one method per route. Each method authenticates the Cognito
token, checks permissions (``chalicelib/admin/roles.py``), validates the body,
changes the key and appends its audit event in one DynamoDB transaction, and
returns an ``HttpResult``. Secrets appear only in the answers of create, rotate
and import, once.

A key is a person's (charged to them, and to one of their teams if they choose) or
a team's own (``team_owned``: charged to the team alone, managed by its admins, and
it outlives every member). Creating a person's key is conditional on the person
being active in the directory (and on the team membership it is charged through), in
the same transaction, so off-boarding never misses a key created at the same moment.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.metering import Meter
from chalicelib.admin.auth import AdminAuthenticator, Principal, UserDirectory, is_sub
from chalicelib.admin.directory import Directory, Team
from chalicelib.admin.people import PeopleService
from chalicelib.admin.roles import Caller, within_team_budget
from chalicelib.catalog import Catalog
from chalicelib.keys.audit import Actor, AuditLog, diff
from chalicelib.keys.listing import KeyFilter, validate_search
from chalicelib.keys.store import (
    STATUSES,
    KeyRecord,
    KeyStore,
    Page,
    decode_cursor,
    derive_key_id,
    encode_cursor,
    is_key_id,
)
from chalicelib.shared import scopes
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import Clock, isoformat, parse_day_text, parse_time, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.guardrails import Guardrail, parse_guardrail
from chalicelib.shared.http import HttpResult
from chalicelib.shared.money import parse_money, usd
from chalicelib.shared.text import check_plain_text

#: Fields a key can be created with (``owner`` too, for admins) and updated.
KEY_FIELDS = (
    "name",
    "allowed_models",
    "monthly_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "expires_at",
    "metadata",
    "guardrail",
    "model_fallback",
)
#: The limits an admin sets and an owner may only tighten (``admin_limits`` records who set each).
LIMIT_FIELDS = (
    "allowed_models",
    "monthly_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "expires_at",
    "guardrail",
    "model_fallback",
)
#: ``model_fallback`` values, loosest first: which fallbacks may serve a key's calls.
MODEL_FALLBACKS = ("any", "same_model", "none")
#: Checks a guardrail can be applied (the stack's list, and that it exists); raises InvalidRequest.
GuardrailCheck = Callable[[Guardrail], None]
#: Export-only fields an import row may carry (so an export file imports as is); they are ignored.
EXPORT_ONLY_FIELDS = ("key_id", "prefix", "status", "created_at", "updated_at", "revoked_at", "last_used_at")
MAX_IMPORT_ROWS = 1000
MAX_GRACE_SECONDS = 7 * 24 * 3600
PAGE_LIMITS = {"list": (50, 100), "export": (500, 1000), "audit": (100, 500)}
_MAX_NAME = 200
_MAX_MODELS = 100
_MAX_METADATA = 32
_MAX_IMPORT_ID = 128
_MAX_LIMIT = 1_000_000_000
#: ASCII digits only: ``\d`` also matches "٥" or "１", which ``int`` reads as numbers.
_PAGE_SIZE_RE = re.compile(r"[0-9]{1,6}")
_IMPORT_ID_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: safe in files and logs


@dataclass(frozen=True)
class Owner:
    """Who a key belongs to."""

    sub: str
    email: str | None


class AdminService:
    """Implements ``/admin/*`` over injected authentication, keys, audit log, catalog and directory."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        keys: KeyStore,
        audit: AuditLog,
        catalog: Callable[[], Catalog],
        directory: Callable[[], UserDirectory | None],
        max_body_bytes: int,
        people: PeopleService,
        teams: Directory,
        meter: Meter,
        clock: Clock = utcnow,
        month_costs: Callable[[list[scopes.Scope], str], Mapping[scopes.Scope, Decimal]] | None = None,
        guardrails: GuardrailCheck | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._keys = keys
        self._audit = audit
        self._catalog = catalog
        self._directory = directory
        self._max_body_bytes = max_body_bytes
        self._people = people
        self._teams = teams
        self._meter = meter
        self._clock = clock
        self._month_costs = month_costs  # scopes, month → cost: a listing's "this month"
        #: Checks a key's guardrail when it is set (None: only its shape is checked).
        self._guardrails = guardrails

    # Routes

    def create_key(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/keys``: a new key; its secret is in this answer only.

        ``team`` charges a person's key to one of their teams as well; with ``team_owned`` the key is
        the team's own (team admins and admins).
        """
        caller = self._caller(headers)
        body = self._body(raw_body, required=False)
        refuse_unknown(body, {*KEY_FIELDS, "owner", "team", "team_owned"})
        team = self._team(body["team"]) if body.get("team") is not None else None
        team_owned = body.get("team_owned", False)
        if not isinstance(team_owned, bool):
            raise errors.InvalidRequest("team_owned must be true or false.", param="team_owned")
        now = self._clock()
        fields = parse_key_fields(body, catalog=self._catalog(), now=now, guardrails=self._guardrails)
        if team_owned:
            if team is None:
                raise errors.InvalidRequest("A team's own key needs 'team': the team that owns it.", param="team")
            if body.get("owner") is not None:
                raise errors.InvalidRequest("A team's own key has no personal owner; leave 'owner' out.", param="owner")
            caller.require_team_admin(team.team_id, "create the team's own keys")
            owner = Owner(scopes.team_owner(team.team_id), None)
        else:
            owner = self._owner(caller.principal, body.get("owner"))
            self._active_person(owner)
            if team is not None and self._teams.membership(team.team_id, owner.sub) is None:
                raise errors.PermissionDenied(
                    f"{owner.email or owner.sub} is not on team {team.name!r}; a key can be charged only to a "
                    "team of its owner.",
                    param="team",
                    code="not_your_team",
                )
        team_id = team.team_id if team is not None else None
        if fields.get("guardrail") is not None:
            _team_guardrail_stays(caller, team)
        authority = caller.sets_limits_on(team_id, owner.sub)
        if authority and not caller.is_admin and "monthly_budget_usd" in fields:
            within_team_budget(fields["monthly_budget_usd"], self._team_budget(team_id), "monthly_budget_usd",
                               what="a key's budget")  # fmt: skip
        actor = _actor(caller.principal)

        def attach(new: KeyRecord) -> list[dict[str, Any]]:
            items = [self._event_item(new.key_id, "created", actor, changes=diff(None, new))]
            if not team_owned:
                items.append(self._teams.person_key_item(owner.sub, new.key_id))
            if team_id is not None:
                items.append(self._teams.team_key_item(team_id, new.key_id))
                if not team_owned:
                    items.append(self._teams.member_check_item(team_id, owner.sub))
            return items

        with _refusals(owner, team, team_owned):
            record, plaintext = self._keys.create(
                owner_sub=owner.sub,
                owner_email=owner.email,
                admin_limits=admin_limits_after({}, fields, _setter(caller, authority), now),
                team_id=team_id,
                attach=attach,
                **fields,
            )
        return HttpResult({**key_view(record, self._clock()), "secret": plaintext}, status=201)

    def list_keys(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/keys``: a page of keys, each with this month's spend (admins: any owner; team
        admins: their team's; others: their own).

        ``q`` searches name, key id, owner, import id and metadata; ``model`` keeps keys that may
        use it. A page reads a bounded number of keys, so a rare search may answer a short page
        with ``has_more`` (chalicelib/keys/listing.py).
        """
        caller = self._caller(headers)
        page = self._page(caller, query or {}, "list")
        now = self._clock()
        views = [key_view(r, now) for r in page.items]
        if self._month_costs is not None and views:
            month = now.strftime("%Y-%m")
            costs = self._month_costs([scopes.key(view["key_id"]) for view in views], month)
            for view in views:
                spent = costs.get(scopes.key(view["key_id"]), Decimal(0))
                view["month"] = {"period": month, "spent_usd": usd(spent)}
        return HttpResult(_listing(views, page.cursor))

    def export_keys(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/keys/export``: a page of keys as import rows (no secrets, no hashes)."""
        caller = self._caller(headers)
        page = self._page(caller, query or {}, "export")
        now = self._clock()
        return HttpResult(_listing([export_row(r, now) for r in page.items], page.cursor))

    def get_key(self, headers: Mapping[str, str], key_id: str) -> HttpResult:
        """``GET /admin/keys/{key_id}``."""
        record = self._owned(self._caller(headers), key_id)
        return HttpResult(key_view(record, self._clock()))

    def update_key(self, headers: Mapping[str, str], key_id: str, raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/keys/{key_id}``: change limits, models, budget, expiry, name, metadata or team."""
        caller = self._caller(headers)
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {*KEY_FIELDS, "team"})
        if not body:
            raise errors.InvalidRequest(f"Send at least one field to change: {', '.join((*KEY_FIELDS, 'team'))}.")
        now = self._clock()
        changes = parse_key_fields(body, catalog=self._catalog(), now=now, partial=True, guardrails=self._guardrails)
        current = self._owned(caller, key_id)
        moved_to: Team | None = None
        if "team" in body:
            moved_to = self._move(caller, current, body["team"])
            changes["team_id"] = moved_to.team_id if moved_to is not None else None
        team_id = changes.get("team_id", current.team_id)
        own_guardrail = changes.get("guardrail", current.guardrail)
        if not caller.is_admin and team_id is not None and ("guardrail" in changes or (moved_to and own_guardrail)):
            # One read, only when a guardrail could come to override (or stop overriding) a team's.
            _team_guardrail_stays(caller, moved_to if moved_to is not None else self._teams.team(team_id))
        authority = caller.sets_limits_on(current.team_id, current.owner_sub)
        if authority:
            if not caller.is_admin and "monthly_budget_usd" in changes:
                within_team_budget(changes["monthly_budget_usd"], self._team_budget(current.team_id),
                                   "monthly_budget_usd", what="a key's budget")  # fmt: skip
            if any(name in changes for name in LIMIT_FIELDS):
                changes["admin_limits"] = admin_limits_after(
                    ceilings(current, raw=True), changes, _setter(caller, authority), now
                )
        else:
            check_owner_change(current, changes, now)
            if current.admin_limits is None and any(name in changes for name in LIMIT_FIELDS):
                # A key from before limits were recorded: freeze today's limits as the admin's before
                # the owner tightens one, so the owner may later go back up to them.
                changes["admin_limits"] = ceilings(current, raw=True)
        actor = _actor(caller.principal)

        def attach(new: KeyRecord) -> list[dict[str, Any]]:
            items = [self._event_item(key_id, "updated", actor, changes=diff(current, new))]
            if moved_to is not None:
                items.append(self._teams.team_key_item(moved_to.team_id, key_id))
                items.append(self._teams.member_check_item(moved_to.team_id, current.owner_sub))
            return items

        owner = Owner(current.owner_sub, current.owner_email)
        with _refusals(owner, moved_to, False):
            record = self._keys.update(current, changes, attach=attach)
        del team_id
        return HttpResult(key_view(record, self._clock()))

    def _move(self, caller: Caller, current: KeyRecord, ref: Any) -> Team | None:
        """The team a key moves to (None: charged to its owner alone), if the caller may move it there."""
        if scopes.owning_team(current.owner_sub):
            raise errors.InvalidRequest("A team's own key stays with its team; create a key for the other team.",
                                        param="team")  # fmt: skip
        if ref is None:
            if not (caller.is_admin or caller.owns(current) or caller.is_team_admin(current.team_id)):
                raise errors.PermissionDenied("You cannot move this key.", param="team", code="not_key_owner")
            return None
        if not (caller.is_admin or caller.owns(current)):
            raise errors.PermissionDenied(
                "Only the key's owner or an admin can charge it to a team.", param="team", code="not_key_owner"
            )
        team = self._team(ref)
        if self._teams.membership(team.team_id, current.owner_sub) is None:
            raise errors.PermissionDenied(
                f"{current.owner_email or current.owner_sub} is not on team {team.name!r}; a key can be charged only "
                "to a team of its owner.",
                param="team",
                code="not_your_team",
            )
        return team

    def revoke_key(self, headers: Mapping[str, str], key_id: str, raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/keys/{key_id}/revoke``: refused from the very next request on."""
        body = self._body(raw_body, required=False)
        refuse_unknown(body, {"reason"})
        reason = _optional_text(body, "reason", 500)
        caller = self._caller(headers)
        current = self._owned(caller, key_id)
        actor = _actor(caller.principal)
        details = {"reason": reason} if reason else {}
        record = self._keys.revoke(
            current,
            attach=lambda new: [
                self._event_item(key_id, "revoked", actor, changes=diff(current, new), details=details)
            ],
        )
        return HttpResult(key_view(record, self._clock()))

    def rotate_key(self, headers: Mapping[str, str], key_id: str, raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/keys/{key_id}/rotate``: a new secret; the old one works ``grace_seconds`` more (default 0).

        A team admin rotates only the team's own keys: a member's personal key's secret is the member's.
        """
        caller = self._caller(headers)
        body = self._body(raw_body, required=False)
        refuse_unknown(body, {"grace_seconds"})
        grace = body.get("grace_seconds", 0)
        if not _is_int(grace) or not 0 <= grace <= MAX_GRACE_SECONDS:
            raise errors.InvalidRequest(
                f"grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS} (7 days).",
                param="grace_seconds",
            )
        current = self._owned(caller, key_id, secret=True)
        actor = _actor(caller.principal)

        def event(new: KeyRecord) -> list[dict[str, Any]]:
            details = {"grace_seconds": grace, "previous_secret_valid_until": new.previous_hash_expires_at}
            return [self._event_item(key_id, "rotated", actor, details=details)]

        record, plaintext = self._keys.rotate(current, grace_seconds=grace, attach=event)
        return HttpResult({**key_view(record, self._clock()), "secret": plaintext})

    def key_audit(self, headers: Mapping[str, str], key_id: str, query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/keys/{key_id}/audit``: the key's events, oldest first."""
        caller = self._caller(headers)
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        self._owned(caller, key_id)
        page = self._audit.for_key(key_id, limit=_limit(query, "audit"), cursor=query.get("cursor"))
        return HttpResult(_listing([e.to_dict() for e in page.items], page.cursor))

    def audit(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/audit``: every key's events of one UTC day (admins only)."""
        principal = self._principal(headers)
        if not principal.is_admin:
            raise errors.PermissionDenied(
                "Only admins can read the whole audit log; use a key's audit for your own keys.", code="admin_only"
            )
        query = query or {}
        refuse_unknown(query, {"day", "limit", "cursor"})
        day = _day(query.get("day")) if query.get("day") else self._clock().date()
        page = self._audit.for_day(day, limit=_limit(query, "audit"), cursor=query.get("cursor"))
        return HttpResult(_listing([e.to_dict() for e in page.items], page.cursor))

    def import_keys(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/keys/import``: create keys idempotently per row ``id``; errors are reported per row."""
        principal = self._principal(headers)
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {"keys"})
        rows = body.get("keys")
        if not isinstance(rows, list) or not rows:
            raise errors.InvalidRequest("'keys' must be a non-empty list of key objects.", param="keys")
        if len(rows) > MAX_IMPORT_ROWS:
            raise errors.InvalidRequest(
                f"At most {MAX_IMPORT_ROWS} keys per request; got {len(rows)}. Split the file.", param="keys"
            )

        def owner_of(who: Any) -> Owner:
            owner = self._owner(principal, who)
            self._active_person(owner)
            return owner

        importer = Importer(
            keys=self._keys,
            audit=self._audit,
            catalog=self._catalog(),
            principal=principal,
            owner_of=owner_of,
            now=self._clock(),
            guardrails=self._guardrails,
        )
        results = importer.run(rows)
        created: dict[str, set[str]] = {}
        for row in results:
            if row["status"] == "created":
                created.setdefault(row["key"]["owner"]["sub"], set()).add(row["key"]["key_id"])
        for sub, key_ids in created.items():
            self._teams.add_keys(sub, key_ids)
        summary = {
            status: sum(1 for r in results if r["status"] == status) for status in ("created", "exists", "error")
        }
        return HttpResult({"object": "import_result", **summary, "results": results})

    # Helpers

    def _principal(self, headers: Mapping[str, str]) -> Principal:
        # A read may rely on a few seconds' old answer about its caller; a change never does (auth.py).
        return self._authenticator().authenticate(headers)

    def _caller(self, headers: Mapping[str, str]) -> Caller:
        return Caller(self._principal(headers), self._teams)

    def _body(self, raw: bytes | str | None, *, required: bool) -> dict[str, Any]:
        return parse_json_body(raw, max_bytes=self._max_body_bytes, required=required, exact_numbers=True)

    def _owned(self, caller: Caller, key_id: str, *, secret: bool = False) -> KeyRecord:
        """The key, if the caller manages it (``secret``: may get its secret, which a team admin may not of a
        member's key)."""
        record = self._keys.require(key_id)
        allowed = caller.manages_key(record)
        if secret and allowed and not (caller.is_admin or caller.owns(record)):
            allowed = scopes.owning_team(record.owner_sub) == record.team_id and record.team_id is not None
        if not allowed:
            raise errors.PermissionDenied(
                "You can manage only your own keys (and, as a team admin, your team's); this key is someone else's.",
                code="not_key_owner",
            )
        return record

    def _team(self, ref: Any) -> Team:
        if not isinstance(ref, str) or not ref.strip():
            raise errors.InvalidRequest("team must be a team's id or name.", param="team")
        team = self._teams.find_team(check_plain_text(ref.strip(), "team"))
        if team is None:
            raise errors.NotFound(f"No team {ref!r}.", param="team", code="team_not_found")
        return team

    def _team_budget(self, team_id: str | None) -> Decimal | None:
        return self._meter.budget(scopes.team(team_id), fresh=True) if team_id else None

    def _active_person(self, owner: Owner) -> None:
        """The owner is in the directory (entered now, if first met) and active.

        Raises
        ------
        Conflict
            ``person_disabled``: they are disabled or removed.
        """
        person = self._people.ensure(owner.sub, owner.email)
        if person.status != "active":
            raise errors.Conflict(
                f"{owner.email or owner.sub} is {person.status}; their keys are refused until an admin enables them.",
                param="owner",
                code="person_disabled",
            )

    def _owner(self, principal: Principal, who: Any, param: str = "owner") -> Owner:
        """The owner a new key gets: the caller by default; another user only for admins."""
        if who is None or who in (principal.sub, principal.email):
            return Owner(principal.sub, principal.email)
        if not isinstance(who, str) or not who.strip():
            raise errors.InvalidRequest("owner must be a user's email address or sub.", param=param)
        check_plain_text(who, param)
        if not principal.is_admin:
            raise errors.PermissionDenied(
                "Only admins can create keys for other users; leave 'owner' out to create your own.",
                param=param,
                code="admin_only",
            )
        directory = self._directory()
        user = directory.find(who.strip()) if directory else None
        if user is None:
            raise errors.InvalidRequest(f"No user {who!r} in the user pool.", param=param, code="unknown_user")
        return Owner(user.sub, user.email)

    def _page(self, caller: Caller, query: Mapping[str, str], kind: str) -> Page:
        refuse_unknown(query, {"owner", "status", "limit", "cursor", "team", "q", "model"})
        if query.get("team"):
            if query.get("owner"):
                raise errors.InvalidRequest("List by owner or by team, not both.", param="team")
            return self._team_page(caller, query, kind)
        principal = caller.principal
        who = query.get("owner") or None
        if who == "me" or (who is None and not principal.is_admin):
            owner_sub: str | None = principal.sub
        elif who is None:
            owner_sub = None  # an admin's listing of every key
        elif who in (principal.sub, principal.email):
            owner_sub = principal.sub
        elif principal.is_admin:
            owner_sub = self._listed_owner(who)
        else:
            raise errors.PermissionDenied("You can list only your own keys.", param="owner", code="not_key_owner")
        return self._keys.list_keys(
            owner_sub=owner_sub,
            status=query.get("status") or None,  # an empty parameter is an absent one, as everywhere
            limit=_limit(query, kind),
            cursor=query.get("cursor"),
            search=validate_search(query.get("q")),
            model=self._model_filter(query.get("model") or None),
        )

    def _model_filter(self, name: str | None) -> str | None:
        """The catalog id of a model named in a listing's filter (an alias names its model)."""
        if name is None:
            return None
        entry = self._catalog().find(name)
        if entry is None:
            known = ", ".join(m.id for m in self._catalog())
            raise errors.InvalidRequest(f"model: unknown model {name!r}. Known models: {known}.", param="model")
        return entry.id

    def _team_page(self, caller: Caller, query: Mapping[str, str], kind: str) -> Page:
        """The keys charged to a team now, newest first (admins and the team's admins)."""
        team = self._team(query["team"])
        caller.require_team_admin(team.team_id, "list the team's keys")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise errors.InvalidRequest(f"status must be one of {', '.join(STATUSES)}.", param="status")
        start = decode_cursor(query.get("cursor"), {"created_at": None, "key_id": None})
        now = self._clock()
        # A team's keys are read whole (its record names them): search and model filter them here.
        keep = KeyFilter(search=validate_search(query.get("q")), model=self._model_filter(query.get("model") or None))
        records = [
            r
            for r in self._keys.get_many(team.key_ids).values()
            if r.team_id == team.team_id
            and (status is None or r.effective_status(now) == status)
            and keep.keeps(r.to_item(), isoformat(now))
        ]
        records.sort(key=lambda r: (r.created_at, r.key_id), reverse=True)
        if start is not None:
            records = [r for r in records if (r.created_at, r.key_id) < (start["created_at"], start["key_id"])]
        limit = _limit(query, kind)
        page = records[:limit]
        more = len(records) > limit
        cursor = encode_cursor({"created_at": page[-1].created_at, "key_id": page[-1].key_id}) if more else None
        return Page(items=page, cursor=cursor)

    def _listed_owner(self, who: str) -> str:
        """The sub whose keys an admin lists: a user of the pool, or any sub (a deleted user's keys)."""
        directory = self._directory()
        user = directory.find(who.strip()) if directory else None
        if user is not None:
            return user.sub
        if "@" not in who and is_sub(who.strip()):
            return who.strip()  # keys stay bound to the sub of a user who no longer exists
        raise errors.InvalidRequest(f"No user {who!r} in the user pool.", param="owner", code="unknown_user")

    def _event_item(self, key_id: str, action: str, actor: Actor, **kwargs: Any) -> dict[str, Any]:
        return self._audit.put_item(self._audit.new_event(key_id, action, actor, **kwargs))


class Importer:
    """One import request: validate every row, then create the new keys in transactions."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        audit: AuditLog,
        catalog: Catalog,
        principal: Principal,
        owner_of: Callable[[Any], Owner],
        now: datetime,
        guardrails: GuardrailCheck | None = None,
    ) -> None:
        self._guardrails = guardrails
        self._keys = keys
        self._audit = audit
        self._catalog = catalog
        self._principal = principal
        #: Who a row's ``owner`` names, as ``AdminService`` decides it for the principal (raises if not allowed).
        self._owner_of = owner_of
        self._now = now
        # One directory lookup per distinct owner in the request (lookups are never cached across requests).
        self._owners: dict[str, Owner | errors.AppError] = {}

    def run(self, rows: Sequence[Any]) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(rows)
        candidates: dict[int, tuple[str, Owner, dict[str, Any]]] = {}
        statuses: dict[int, Any] = {}
        seen: dict[tuple[str, str], int] = {}
        for index, row in enumerate(rows):
            try:
                import_id, owner, fields = self._parse(row)
            except errors.AppError as exc:
                results[index] = _row_error(index, row, exc)
                continue
            marker = (owner.sub, import_id)
            if marker in seen:
                duplicate = errors.InvalidRequest(
                    f"Duplicate id {import_id!r} (also in row {seen[marker]} of this request, counting from 0).",
                    param="id",
                    code="duplicate_id",
                )
                results[index] = _row_error(index, row, duplicate)
                continue
            seen[marker] = index
            candidates[index] = (import_id, owner, fields)
            statuses[index] = row.get("status")

        keys = self._keys
        # A row's id names its key: the key id derived from (owner, id), or the id itself when it
        # is an existing key's id (an exported key), so importing an export changes nothing.
        derived = {i: derive_key_id(owner.sub, import_id) for i, (import_id, owner, _) in candidates.items()}
        direct = {i: import_id for i, (import_id, _, _) in candidates.items() if is_key_id(import_id)}
        existing = keys.get_many([*derived.values(), *direct.values()])
        prepared: list[tuple[KeyRecord, str]] = []
        prepared_rows: list[int] = []
        for index, (import_id, owner, fields) in candidates.items():
            found = existing.get(direct.get(index, "")) or existing.get(derived[index])
            if found is not None:
                results[index] = self._existing(index, import_id, owner, found)
                continue
            refusal = self._refusal(statuses[index], fields)
            if refusal is not None:
                results[index] = _row_error(index, {"id": import_id}, refusal)
                continue
            setter = (self._principal.email or self._principal.sub) if self._principal.is_admin else None
            limits = admin_limits_after({}, fields, setter, self._now)
            prepared.append(
                keys.prepare(
                    key_id=derived[index],
                    owner_sub=owner.sub,
                    owner_email=owner.email,
                    import_id=import_id,
                    admin_limits=limits,
                    **fields,
                )
            )
            prepared_rows.append(index)

        outcomes = keys.import_new(prepared)
        actor = _actor(self._principal)
        audit = self._audit
        # Events follow their keys (one batch write per request): a crash in between would leave
        # keys without their "imported" event, never an event without its key.
        audit.record_many(
            audit.new_event(o.record.key_id, "imported", actor, changes=diff(None, o.record))
            for o in outcomes
            if o.created
        )
        for index, outcome in zip(prepared_rows, outcomes, strict=True):
            import_id = candidates[index][0]
            if outcome.created:
                results[index] = {
                    "row": index,
                    "id": import_id,
                    "status": "created",
                    "key": key_view(outcome.record, self._now),
                    "secret": outcome.plaintext,
                }
            else:
                results[index] = self._existing(index, import_id, candidates[index][1], outcome.record)
        return [r for r in results if r is not None]

    def _parse(self, row: Any) -> tuple[str, Owner, dict[str, Any]]:
        if not isinstance(row, dict):
            raise errors.InvalidRequest("Each key must be a JSON object.")
        refuse_unknown(row, {"id", "owner", *KEY_FIELDS, *EXPORT_ONLY_FIELDS})
        import_id = row.get("id")
        if not isinstance(import_id, str) or not import_id.strip():
            raise errors.InvalidRequest(
                "id is required: your own unique name for this key (re-importing the same id is a no-op).", param="id"
            )
        import_id = import_id.strip()
        if len(import_id) > _MAX_IMPORT_ID or not _IMPORT_ID_RE.match(import_id):
            raise errors.InvalidRequest(
                f"id must be 1-{_MAX_IMPORT_ID} printable characters without spaces.", param="id"
            )
        owner = self._owner(row.get("owner") or None)
        fields = {k: v for k, v in row.items() if k in KEY_FIELDS}
        return (
            import_id,
            owner,
            parse_key_fields(
                fields, catalog=self._catalog, now=self._now, past_expiry=True, guardrails=self._guardrails
            ),
        )

    def _owner(self, who: Any) -> Owner:
        if not isinstance(who, str):
            return self._owner_of(who)
        if who not in self._owners:
            try:
                self._owners[who] = self._owner_of(who)
            except errors.AppError as exc:
                self._owners[who] = exc
        found = self._owners[who]
        if isinstance(found, errors.AppError):
            raise found
        return found

    def _refusal(self, status: Any, fields: Mapping[str, Any]) -> errors.AppError | None:
        """Why a row that names no existing key must not become a new one, if it must not."""
        if status == "revoked":
            return errors.InvalidRequest("This row is a revoked key; it is not imported.", param="status")
        if fields.get("expires_at") and parse_time(fields["expires_at"]) <= self._now:
            return errors.InvalidRequest("expires_at is in the past; the key is not imported.", param="expires_at")
        return None

    def _existing(self, index: int, import_id: str, owner: Owner, record: KeyRecord) -> dict[str, Any]:
        if record.owner_sub != owner.sub:
            error = errors.Conflict(f"Key id {import_id!r} belongs to another owner.", param="id", code="id_taken")
            return _row_error(index, {"id": import_id}, error)
        return {"row": index, "id": import_id, "status": "exists", "key": key_view(record, self._now)}


# Limits an admin set: the owner may tighten them, never loosen them.


def admin_limits_after(
    current: Mapping[str, Any], changes: Mapping[str, Any], setter: str | None, now: datetime
) -> dict[str, Any]:
    """The ``admin_limits`` record after ``setter`` set ``changes`` (unchanged when ``setter`` is None).

    ``setter`` names an admin, or a team admin acting on their team's key: a limit they set
    becomes the ceiling for the key's owner; their null removes the ceiling (the owner may then
    set that limit freely). A person acting on their own key is no setter.
    """
    limits = {name: dict(entry) for name, entry in current.items()}
    if setter is None:
        return limits
    for name in LIMIT_FIELDS:
        if name not in changes:
            continue
        if changes[name] is None:
            limits.pop(name, None)
        else:
            value = changes[name]
            stored = list(value) if isinstance(value, (list, tuple)) else value
            limits[name] = {"value": stored, "set_by": setter, "set_at": isoformat(now)}
    return limits


def _setter(caller: Caller, authority: bool) -> str | None:
    return caller.label if authority else None


@contextlib.contextmanager
def _refusals(owner: Owner, team: Team | None, team_owned: bool) -> Iterator[None]:
    """Turn a key write's failed conditions (the person disabled, the membership or team gone) into clear errors."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
        if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException" or not reasons:
            raise
        # Items: the key, its audit event, then (a person's key) the person, then the team and membership.
        rest = reasons[2:]
        failed = [n for n, code in enumerate(rest) if code == "ConditionalCheckFailed"]
        if not failed:
            raise
        labels = (["person"] if not team_owned else []) + (["team", "membership"] if team is not None else [])
        what = labels[failed[0]] if failed[0] < len(labels) else "key"
        if what == "person":
            raise errors.Conflict(
                f"{owner.email or owner.sub} was disabled or removed just now; their keys are refused.",
                param="owner",
                code="person_disabled",
            ) from None
        if what == "team":
            raise errors.NotFound("The team was deleted just now.", param="team", code="team_not_found") from None
        if what == "membership":
            raise errors.PermissionDenied(
                f"{owner.email or owner.sub} is no longer on team {team.name if team else ''!r}.",
                param="team",
                code="not_your_team",
            ) from None
        raise


def _team_guardrail_stays(caller: Caller, team: Team | None) -> None:
    """Refuse a non-admin a key guardrail that would replace (or stop replacing) an admin's team guardrail.

    A guardrail an admin or team admin puts on a key wins over its team's; only admins set a team's,
    so only they may give one of its keys another (one the key's owner chose never replaces it).

    Raises
    ------
    PermissionDenied
        ``team_guardrail``: the team has a guardrail and the caller is not an admin.
    """
    if caller.is_admin or team is None or not team.guardrail:
        return
    required = f"{team.guardrail.get('id')} (version {team.guardrail.get('version')})"
    raise errors.PermissionDenied(
        f"Calls charged to team {team.name!r} carry the guardrail {required}, which an admin set; a key's own "
        "guardrail would replace it, so only an admin can set, change or clear one on the team's keys.",
        param="guardrail",
        code="team_guardrail",
    )


def ceilings(record: KeyRecord, *, raw: bool = False) -> dict[str, Any]:
    """The admin's limits on a key: ``{field: value}`` (``raw``: the stored entries).

    A key from before ``admin_limits`` was recorded has unknown provenance: every
    limit it has counts as an admin's, which errs on the side of the limit.
    """
    if record.admin_limits is None:
        entries = {
            name: {"value": _field_value(record, name), "set_by": None, "set_at": None}
            for name in LIMIT_FIELDS
            if _field_value(record, name) is not None
        }
    else:
        entries = {name: dict(entry) for name, entry in record.admin_limits.items() if name in LIMIT_FIELDS}
    return entries if raw else {name: entry["value"] for name, entry in entries.items()}


def check_owner_change(record: KeyRecord, changes: Mapping[str, Any], now: datetime) -> None:
    """Refuse a non-admin's change that loosens an admin's limit or revives an expired key.

    Raises
    ------
    PermissionDenied
        ``admin_limit``: the change would loosen or remove a limit an admin set;
        ``key_expired``: the key has expired and only an admin may extend it.
    """
    if "expires_at" in changes and record.effective_status(now) == "expired":
        raise errors.PermissionDenied(
            "This key has expired; only an admin can extend it or remove its expiry. Create a new key instead.",
            param="expires_at",
            code="key_expired",
        )
    for name, ceiling in ceilings(record).items():
        if name in changes and not _within(name, changes[name], ceiling):
            raise errors.PermissionDenied(
                f"An admin limited {name} to {_shown(name, ceiling)} on this key: you may tighten it, "
                "not loosen or remove it. Ask an admin to change it.",
                param=name,
                code="admin_limit",
            )


def _field_value(record: KeyRecord, name: str) -> Any:
    value = getattr(record, name)
    return list(value) if isinstance(value, tuple) else value


def _within(name: str, value: Any, ceiling: Any) -> bool:
    """True when ``value`` is at least as strict as ``ceiling`` (None: no limit, the loosest)."""
    if value is None:
        return False
    if name == "guardrail":
        return dict(value) == dict(ceiling)  # an admin's guardrail stays: another one is not "stricter"
    if name == "model_fallback":
        return MODEL_FALLBACKS.index(value) >= MODEL_FALLBACKS.index(ceiling)
    if name == "allowed_models":
        return set(value) <= set(ceiling)
    if name == "expires_at":
        return parse_time(value) <= parse_time(ceiling)
    return Decimal(value) <= Decimal(ceiling)


def _shown(name: str, ceiling: Any) -> str:
    if name == "allowed_models":
        return ", ".join(ceiling)
    if name == "guardrail":
        return f"{ceiling.get('id')} (version {ceiling.get('version')})"
    if name == "monthly_budget_usd":
        return f"${usd(Decimal(ceiling))}"
    return str(ceiling)


# Request parsing: every bad input gets a 400 naming its field.


def parse_key_fields(
    body: Mapping[str, Any],
    *,
    catalog: Catalog,
    now: datetime,
    partial: bool = False,
    past_expiry: bool = False,
    guardrails: GuardrailCheck | None = None,
) -> dict[str, Any]:
    """Validate the key fields present in ``body``; ``partial``: an update, where null clears a field.

    ``past_expiry`` accepts an ``expires_at`` in the past (import rows: an
    exported expired key must re-import as "exists", not fail validation).

    Raises
    ------
    InvalidRequest
        A field has the wrong type or an out-of-range value; ``param`` names it.
    """
    fields: dict[str, Any] = {}
    for name in KEY_FIELDS:
        if name not in body:
            continue
        value = body[name]
        parser = _FIELD_PARSERS[name]
        fields[name] = parser(value, catalog=catalog, now=now, past_expiry=past_expiry, guardrails=guardrails)
    if not partial:  # on creation, null means the default
        fields = {k: v for k, v in fields.items() if v is not None}
    return fields


def _name(value: Any, **_: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value.strip()) > _MAX_NAME:
        raise errors.InvalidRequest(f"name must be a string of at most {_MAX_NAME} characters.", param="name")
    return check_plain_text(value.strip(), "name")


def _allowed_models(value: Any, *, catalog: Catalog, **_: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > _MAX_MODELS:
        raise errors.InvalidRequest(
            f"allowed_models must be a list of 1-{_MAX_MODELS} model ids, or null for every model.",
            param="allowed_models",
        )
    models: list[str] = []
    for item in value:
        entry = catalog.find(item) if isinstance(item, str) else None
        if entry is None:
            known = ", ".join(m.id for m in catalog)
            raise errors.InvalidRequest(
                f"allowed_models: unknown model {item!r}. Known models: {known}.", param="allowed_models"
            )
        if entry.id not in models:
            models.append(entry.id)
    return models


def _budget(value: Any, **_: Any) -> Decimal | None:
    return parse_money(value)


def _rate_limit(name: str) -> Callable[..., int | None]:
    def parse(value: Any, **_: Any) -> int | None:
        if value is None:
            return None
        if not _is_int(value) or not 1 <= value <= _MAX_LIMIT:
            raise errors.InvalidRequest(
                f"{name} must be a whole number from 1 to {_MAX_LIMIT}, or null for no limit; got {value!r}.",
                param=name,
            )
        return value

    return parse


def _expires_at(value: Any, *, now: datetime, past_expiry: bool = False, **_: Any) -> str | None:
    if value is None:
        return None
    moment = None
    if isinstance(value, str):
        try:
            moment = parse_time(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise errors.InvalidRequest(
            f"expires_at must be an ISO 8601 time such as 2027-01-31T00:00:00Z, or null; got {value!r}.",
            param="expires_at",
        )
    if moment <= now and not past_expiry:
        raise errors.InvalidRequest(
            "expires_at must be in the future (revoke a key to stop it now).", param="expires_at"
        )
    return isoformat(moment)


def _metadata(value: Any, **_: Any) -> dict[str, str] | None:
    if value is None:
        return None
    valid = (
        isinstance(value, dict)
        and len(value) <= _MAX_METADATA
        and all(isinstance(k, str) and 0 < len(k) <= 64 for k in value)
        and all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    )
    if not valid:
        raise errors.InvalidRequest(
            f"metadata must be an object of at most {_MAX_METADATA} string values (keys up to 64 characters, "
            "values up to 512).",
            param="metadata",
        )
    for text in (*value.keys(), *value.values()):
        check_plain_text(text, "metadata")
    return dict(value)


def _guardrail(value: Any, *, guardrails: GuardrailCheck | None = None, **_: Any) -> dict[str, str] | None:
    guardrail = parse_guardrail(value)
    if guardrail is None:
        return None
    if guardrails is not None:
        guardrails(guardrail)
    return guardrail.to_json()


def _model_fallback(value: Any, **_: Any) -> str | None:
    if value is None:
        return None
    if value not in MODEL_FALLBACKS:
        raise errors.InvalidRequest(
            "model_fallback must be any (the model's fallbacks may serve), same_model (only another geography or "
            f"region of the model asked for) or none (exactly the model asked for); got {value!r}.",
            param="model_fallback",
        )
    return value


_FIELD_PARSERS: dict[str, Callable[..., Any]] = {
    "name": _name,
    "allowed_models": _allowed_models,
    "monthly_budget_usd": _budget,
    "rpm_limit": _rate_limit("rpm_limit"),
    "tpm_limit": _rate_limit("tpm_limit"),
    "expires_at": _expires_at,
    "metadata": _metadata,
    "guardrail": _guardrail,
    "model_fallback": _model_fallback,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_text(body: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise errors.InvalidRequest(f"{name} must be a string of at most {limit} characters.", param=name)
    return check_plain_text(value, name)


def _limit(query: Mapping[str, str], kind: str) -> int:
    default, maximum = PAGE_LIMITS[kind]
    raw = query.get("limit")
    if raw is None:
        return default
    # ``str.isdigit`` is True for "²", which ``int`` refuses: accept ASCII digits only.
    if not _PAGE_SIZE_RE.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {maximum}.", param="limit")
    return int(raw)


def _day(text: str) -> date:
    return parse_day_text(text, "day")


def _actor(principal: Principal) -> Actor:
    return Actor(sub=principal.sub, email=principal.email)


def _row_error(index: int, row: Any, exc: errors.AppError) -> dict[str, Any]:
    row_id = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
    return {"row": index, "id": row_id, "status": "error", "error": exc.to_body()["error"]}


def _listing(data: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": cursor is not None, "next_cursor": cursor}


# Views: what callers see of a key (never the hash).


def key_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """A key's metadata as the admin API shows it."""
    in_grace = record.previous_hash_expires_at and parse_time(record.previous_hash_expires_at) > now
    return {
        "object": "key",
        "key_id": record.key_id,
        "prefix": record.prefix,
        "name": record.name,
        "status": record.effective_status(now),
        "owner": {"sub": record.owner_sub, "email": record.owner_email},
        "allowed_models": list(record.allowed_models) if record.allowed_models is not None else None,
        "monthly_budget_usd": usd(record.monthly_budget_usd),
        "rpm_limit": record.rpm_limit,
        "tpm_limit": record.tpm_limit,
        "expires_at": record.expires_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
        "previous_secret_valid_until": record.previous_hash_expires_at if in_grace else None,
        "metadata": dict(record.metadata),
        "import_id": record.import_id,
        "guardrail": dict(record.guardrail) if record.guardrail else None,
        "model_fallback": record.model_fallback or "any",
        "admin_limits": {name: _view_limit(name, value) for name, value in ceilings(record).items()},
        "team": record.team_id,
        "team_owned": scopes.owning_team(record.owner_sub) is not None,
    }


def _view_limit(name: str, value: Any) -> Any:
    if name == "monthly_budget_usd":
        return usd(Decimal(value))
    if name in ("rpm_limit", "tpm_limit"):
        return int(value)
    return value


def export_row(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """A key as an import row (``id``: its import id, or its key id), plus read-only export fields."""
    return {
        "id": record.import_id or record.key_id,
        "owner": record.owner_email or record.owner_sub,
        "name": record.name,
        "allowed_models": list(record.allowed_models) if record.allowed_models is not None else None,
        "monthly_budget_usd": usd(record.monthly_budget_usd),
        "rpm_limit": record.rpm_limit,
        "tpm_limit": record.tpm_limit,
        "expires_at": record.expires_at,
        "metadata": dict(record.metadata),
        "guardrail": dict(record.guardrail) if record.guardrail else None,
        "model_fallback": record.model_fallback,
        "key_id": record.key_id,
        "prefix": record.prefix,
        "status": record.effective_status(now),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
    }
