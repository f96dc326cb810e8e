"""Teams: a shared monthly budget, members and team admins, and keys the team owns.

Routes: ``GET``/``POST /admin/teams``, ``GET``/``PATCH``/``DELETE /admin/teams/{team}``,
``POST /admin/teams/{team}/members``, ``PATCH``/``DELETE /admin/teams/{team}/members/{person}``,
``GET /admin/teams/{team}/audit``. A team is named by its id or its name.

A team's budget is its scope's budget (``BUDGET#TEAM#<id>``, read by admission like an
owner's): every key charged to the team (the team's own keys, and members' keys charged to
it) reserves its worst case there too. Lowering it below what the team spent this month is
allowed; the answer says that requests charged to the team are refused from then on.

A team's guardrail (admins only: a compliance control) is carried by every call charged to the
team unless its key has one of its own; the request path reads it through ``keys/teams.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.admin.auth import AdminAuthenticator
from chalicelib.admin.directory import ROLES, Directory, Membership, Team, team_name
from chalicelib.admin.people import PeopleService
from chalicelib.admin.roles import Caller, within_team_budget
from chalicelib.keys.audit import Actor, AuditLog, Subject
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.keys.teams import TeamPolicy
from chalicelib.shared import scopes
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import Clock, isoformat, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.guardrails import Guardrail, parse_guardrail
from chalicelib.shared.http import HttpResult
from chalicelib.shared.money import parse_money, usd

PAGE_LIMITS = (50, 100)
#: What ``PATCH /admin/teams/{team}`` changes.
TEAM_FIELDS = ("name", "monthly_budget_usd", "default_member_budget_usd", "guardrail")


class TeamsService:
    """Implements the ``/admin/teams`` routes over the directory, keys, audit log, meter and ledger."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        directory: Directory,
        people: PeopleService,
        keys: KeyStore,
        audit: AuditLog,
        meter: Meter,
        ledger: Ledger,
        max_body_bytes: int,
        clock: Clock = utcnow,
        guardrails: Callable[[Guardrail], None] | None = None,
        remember: Callable[[TeamPolicy], None] | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._directory = directory
        self._people = people
        self._keys = keys
        self._audit = audit
        self._meter = meter
        self._ledger = ledger
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        #: Checks a guardrail an admin sets (the stack's list, and that Bedrock has it); raises InvalidRequest.
        self._guardrails = guardrails
        #: Hands a changed team's policy to this function's request path (``chalicelib/keys/teams.py``).
        self._remember = remember

    # -- teams -----------------------------------------------------------------------------------

    def list_teams(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/teams``: admins every team (paged); everyone else the teams they are on."""
        caller = self._caller(headers)
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        if caller.is_admin:
            page = self._directory.teams(limit=_limit(query), cursor=query.get("cursor"))
            teams, cursor = page.items, page.cursor
        else:
            found = self._directory.teams_by_id(caller.teams())
            teams, cursor = sorted(found.values(), key=lambda t: t.name.casefold()), None
        views = self._views(caller, teams, detail=False)
        return HttpResult({"object": "list", "data": views, "has_more": cursor is not None, "next_cursor": cursor})

    def create_team(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/teams`` ``{"name", "monthly_budget_usd", "default_member_budget_usd", "guardrail"}``
        (admins).
        """
        caller = self._caller(headers)
        caller.require_admin("create teams")
        body = self._body(raw_body, required=True)
        refuse_unknown(body, TEAM_FIELDS)
        name = team_name(body.get("name"))
        budget = parse_money(body.get("monthly_budget_usd"))
        default = parse_money(body.get("default_member_budget_usd"), "default_member_budget_usd")
        guardrail = self._guardrail(body.get("guardrail"))
        team = self._directory.create_team(
            name, actor=caller.label, default_member_budget_usd=default, guardrail=guardrail
        )
        if budget is not None:
            self._meter.set_budget(scopes.team(team.team_id), budget, actor=caller.label, label=team.name)
        details = {"name": name, "monthly_budget_usd": usd(budget), "default_member_budget_usd": usd(default),
                   "guardrail": guardrail}  # fmt: skip
        self._event(team, "created", caller, details=details)
        return HttpResult(self._views(caller, [team], detail=True)[0], status=201)

    def get_team(self, headers: Mapping[str, str], ref: str) -> HttpResult:
        """``GET /admin/teams/{team}``: the month's totals for members; members and keys for its admins."""
        caller = self._caller(headers)
        team = self._team(ref)
        if not caller.is_admin and caller.role_in(team.team_id) is None:
            raise errors.PermissionDenied("You are not on this team.", param="team", code="not_your_team")
        return HttpResult(self._views(caller, [team], detail=True)[0])

    def update_team(self, headers: Mapping[str, str], ref: str, raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/teams/{team}``: name, budget and guardrail (admins); new members' default budget
        (its admins too).
        """
        caller = self._caller(headers)
        body = self._body(raw_body, required=True)
        refuse_unknown(body, TEAM_FIELDS)
        if not body:
            raise errors.InvalidRequest(f"Send one of {', '.join(TEAM_FIELDS)} to change.")
        team = self._team(ref)
        if "guardrail" in body:
            # A compliance control: a team admin may neither loosen nor remove what an admin required.
            caller.require_admin("set or clear a team's guardrail")
        if "name" in body or "monthly_budget_usd" in body:
            caller.require_admin("rename a team or set its budget")
        elif "guardrail" not in body:
            caller.require_team_admin(team.team_id, "set the default budget of new members")
        guardrail: Any = self._guardrail(body["guardrail"]) if "guardrail" in body else ...
        scope = scopes.team(team.team_id)
        budget_before = self._meter.budget(scope, fresh=True)
        name = team_name(body["name"]) if "name" in body else None
        default: Any = ...
        if "default_member_budget_usd" in body:
            default = parse_money(body["default_member_budget_usd"], "default_member_budget_usd")
            if not caller.is_admin:
                within_team_budget(default, budget_before, "default_member_budget_usd", what="a member's budget")
        changed = team
        if name is not None or default is not ... or guardrail is not ...:
            changed = self._directory.update_team(
                team, name=name, default_member_budget_usd=default, guardrail=guardrail
            )
        if self._remember is not None and guardrail is not ...:
            # This function applies the change at once; others within keys/teams.py's MAX_AGE_SECONDS.
            self._remember(TeamPolicy.from_item(team.team_id, changed.to_item()))
        notice = None
        if "monthly_budget_usd" in body:
            budget = parse_money(body["monthly_budget_usd"])
            self._meter.set_budget(scope, budget, actor=caller.label, label=changed.name)
            self._event(team, "budget_set", caller,
                        changes={"monthly_budget_usd": {"from": usd(budget_before), "to": usd(budget)}})  # fmt: skip
            notice = self._below_spend(team, budget)
        changes = {}
        if changed.name != team.name:
            changes["name"] = {"from": team.name, "to": changed.name}
            if "monthly_budget_usd" not in body:
                self._meter.relabel(scope, changed.name)
        if changed.default_member_budget_usd != team.default_member_budget_usd:
            changes["default_member_budget_usd"] = {
                "from": usd(team.default_member_budget_usd),
                "to": usd(changed.default_member_budget_usd),
            }
        if changed.guardrail != team.guardrail:
            changes["guardrail"] = {"from": team.guardrail, "to": changed.guardrail}
        if changes:
            self._event(team, "updated", caller, changes=changes)
        view = self._views(caller, [changed], detail=True)[0]
        if changed.guardrail is not None and "guardrail" in body:
            own = [r.key_id for r in self._charged_keys(changed) if r.guardrail and r.status != "revoked"]
            if own:
                view["keys_with_own_guardrail"] = own
                notice = " ".join(filter(None, [notice, (
                    f"{len(own)} key(s) charged to the team carry a guardrail of their own, which wins over the "
                    "team's: clear it on those keys (keys_with_own_guardrail) for the team's to apply."
                )]))  # fmt: skip
        if notice:
            view["notice"] = notice
        return HttpResult(view)

    def delete_team(self, headers: Mapping[str, str], ref: str, query: Mapping[str, str] | None) -> HttpResult:
        """``DELETE /admin/teams/{team}[?force=true]``: refused while keys are charged to it, unless ``force``
        revokes them (admins).
        """
        caller = self._caller(headers)
        caller.require_admin("delete teams")
        query = query or {}
        refuse_unknown(query, {"force"})
        force = query.get("force", "false")
        if force not in ("true", "false"):
            raise errors.InvalidRequest("force must be true or false.", param="force")
        team = self._team(ref)
        charged = self._charged_keys(team)
        live = [r for r in charged if r.status != "revoked"]
        if live and force != "true":
            raise errors.Conflict(
                f"Team {team.name!r} still has {len(live)} key(s) charged to it; revoke or move them first, "
                "or delete with force=true to revoke them.",
                param="team",
                code="team_has_keys",
            )
        actor = _actor(caller)
        revoked = []
        for record in live:
            self._keys.revoke(
                record,
                attach=lambda new, old=record: [
                    self._audit.put_item(
                        self._audit.new_event(new.key_id, "revoked", actor,
                                              details={"reason": f"team {team.name} deleted"})
                    )
                ],
            )  # fmt: skip
            revoked.append(record.key_id)
        self._meter.set_budget(scopes.team(team.team_id), None, actor=caller.label)
        self._directory.delete_team(team, self._directory.members(team.team_id))
        self._event(team, "deleted", caller, details={"name": team.name, "revoked_keys": sorted(revoked)})
        return HttpResult({"object": "team", "id": team.team_id, "name": team.name, "deleted": True,
                           "revoked_keys": sorted(revoked)})  # fmt: skip

    def team_audit(self, headers: Mapping[str, str], ref: str, query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/teams/{team}/audit``: the team's events, oldest first (admins, its admins)."""
        caller = self._caller(headers)
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        team = self._team(ref)
        caller.require_team_admin(team.team_id, "read the team's audit log")
        page = self._audit.for_subject(Subject("team", team.team_id), limit=_limit(query), cursor=query.get("cursor"))
        return HttpResult({"object": "list", "data": [e.to_dict() for e in page.items],
                           "has_more": page.cursor is not None, "next_cursor": page.cursor})  # fmt: skip

    # -- members ---------------------------------------------------------------------------------

    def add_member(self, headers: Mapping[str, str], ref: str, raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/teams/{team}/members`` ``{"person", "role"}``: admins, and the team's admins."""
        caller = self._caller(headers)
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {"person", "role"})
        role = _role(body.get("role", "member"))
        team = self._team(ref)
        caller.require_team_admin(team.team_id, "add members")
        person = self._people.find(body.get("person"))
        if person.sub == caller.sub and not caller.is_admin:
            raise errors.PermissionDenied("You cannot change your own membership or role; ask an admin.",
                                          param="person", code="self_change")  # fmt: skip
        if person.status != "active":
            raise errors.Conflict(f"{person.email or person.sub} is {person.status}; enable them first.",
                                  param="person", code="person_disabled")  # fmt: skip
        membership = Membership(team.team_id, person.sub, role, person.email, isoformat(self._clock()), caller.label)
        self._directory.add_member(membership)
        self._event(team, "member_added", caller, details={"sub": person.sub, "email": person.email, "role": role})
        return HttpResult(_member_view(membership, person.status), status=201)

    def update_member(self, headers: Mapping[str, str], ref: str, who: str, raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/teams/{team}/members/{person}`` ``{"role"}``: never your own role (team admins)."""
        caller = self._caller(headers)
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {"role"})
        role = _role(body.get("role"))
        team = self._team(ref)
        caller.require_team_admin(team.team_id, "change roles")
        membership = self._membership(team, who)
        if membership.sub == caller.sub and not caller.is_admin:
            raise errors.PermissionDenied("You cannot change your own role; ask an admin.", param="person",
                                          code="self_change")  # fmt: skip
        changed = self._directory.set_role(membership, role)
        if role != membership.role:
            self._event(team, "role_changed", caller, details={"sub": membership.sub, "email": membership.email},
                        changes={"role": {"from": membership.role, "to": role}})  # fmt: skip
        person = self._directory.person(membership.sub)
        return HttpResult(_member_view(changed, person.status if person else "active"))

    def remove_member(self, headers: Mapping[str, str], ref: str, who: str) -> HttpResult:
        """``DELETE /admin/teams/{team}/members/{person}``: their keys charged to the team are charged to them alone."""
        caller = self._caller(headers)
        team = self._team(ref)
        caller.require_team_admin(team.team_id, "remove members")
        membership = self._membership(team, who)
        if membership.sub == caller.sub and not caller.is_admin:
            raise errors.PermissionDenied("You cannot remove yourself; ask an admin.", param="person",
                                          code="self_change")  # fmt: skip
        actor = _actor(caller)
        detached = []
        for record in self._charged_keys(team):
            if record.owner_sub == membership.sub and record.status != "revoked":
                self._keys.update(
                    record,
                    {"team_id": None},
                    attach=lambda new, old=record: [
                        self._audit.put_item(self._audit.new_event(
                            new.key_id, "updated", actor, changes={"team_id": {"from": old.team_id, "to": None}},
                            details={"reason": f"owner left team {team.name}"}))
                    ],
                )  # fmt: skip
                detached.append(record.key_id)
        self._directory.remove_member(membership)
        details = {"sub": membership.sub, "email": membership.email, "detached_keys": sorted(detached)}
        self._event(team, "member_removed", caller, details=details)
        return HttpResult({**_member_view(membership, "active"), "removed": True, "detached_keys": sorted(detached)})

    # -- views -----------------------------------------------------------------------------------

    def _views(self, caller: Caller, teams: list[Team], *, detail: bool) -> list[dict[str, Any]]:
        """Teams with this month's budget and spend; members and keys for those who manage them."""
        if not teams:
            return []
        month = self._clock().strftime("%Y-%m")
        budgets = self._meter.budgets([scopes.team(t.team_id) for t in teams], fresh=True)
        views = []
        for team in teams:
            scope = scopes.team(team.team_id)
            totals = self._ledger.aggregate(scope, scopes.month_period(month))
            budget = budgets.get(scope)
            view: dict[str, Any] = {
                "object": "team",
                "id": team.team_id,
                "name": team.name,
                "your_role": caller.role_in(team.team_id),
                "created_at": team.created_at,
                "created_by": team.created_by,
                "monthly_budget_usd": usd(budget),
                "default_member_budget_usd": usd(team.default_member_budget_usd),
                "guardrail": dict(team.guardrail) if team.guardrail else None,
                "period": month,
                "spent_usd": usd(Decimal(totals["cost"])),
                "requests": int(totals["requests"]),
                "remaining_usd": usd(max(Decimal(0), budget - Decimal(totals["committed"])))
                if budget is not None else None,
            }  # fmt: skip
            if detail and caller.manages_team(team.team_id):
                members = self._directory.members(team.team_id)
                people = self._directory.persons(m.sub for m in members)
                view["members"] = [
                    _member_view(m, people[m.sub].status if m.sub in people else "active") for m in members
                ]
                now = self._clock()
                keys = [r for r in self._charged_keys(team)]
                view["keys"] = {
                    "total": len(keys),
                    "active": sum(1 for r in keys if r.effective_status(now) == "active"),
                    "team_owned": sum(1 for r in keys if scopes.owning_team(r.owner_sub) == team.team_id),
                }
            views.append(view)
        return views

    def _below_spend(self, team: Team, budget: Decimal | None) -> str | None:
        if budget is None:
            return None
        month = self._clock().strftime("%Y-%m")
        totals = self._ledger.aggregate(scopes.team(team.team_id), scopes.month_period(month))
        spent = Decimal(totals["cost"])
        if spent < budget:
            return None
        return (
            f"Team {team.name!r} has already spent ${usd(spent)} in {month}, at or above its new budget of "
            f"${usd(budget)}: requests charged to the team are refused until the budget is raised or the month ends."
        )

    # -- helpers ---------------------------------------------------------------------------------

    def charged_keys(self, team: Team) -> list[KeyRecord]:
        return self._charged_keys(team)

    def _charged_keys(self, team: Team) -> list[KeyRecord]:
        """The keys charged to the team now (its ``key_ids`` is every key ever charged to it)."""
        found = self._keys.get_many(team.key_ids)
        return sorted((r for r in found.values() if r.team_id == team.team_id), key=lambda r: r.created_at)

    def _guardrail(self, raw: Any) -> dict[str, str] | None:
        """A guardrail an admin sets on a team, checked as a key's is (the stack's list, Bedrock has it)."""
        parsed = parse_guardrail(raw)
        if parsed is not None and self._guardrails is not None:
            self._guardrails(parsed)
        return parsed.to_json() if parsed is not None else None

    def _caller(self, headers: Mapping[str, str]) -> Caller:
        return Caller(self._authenticator().authenticate(headers), self._directory)

    def _body(self, raw: bytes | str | None, *, required: bool) -> dict[str, Any]:
        return parse_json_body(raw, max_bytes=self._max_body_bytes, required=required, exact_numbers=True)

    def team(self, ref: Any) -> Team:
        return self._team(ref)

    def _team(self, ref: Any) -> Team:
        return self._directory.named_team(ref)

    def _membership(self, team: Team, who: str) -> Membership:
        person = self._people.find(who)
        membership = self._directory.membership(team.team_id, person.sub)
        if membership is None:
            raise errors.NotFound(f"{person.email or person.sub} is not on team {team.name!r}.", param="person",
                                  code="not_a_member")  # fmt: skip
        return membership

    def _event(self, team: Team, action: str, caller: Caller, **kwargs: Any) -> None:
        self._audit.record(self._audit.new_event(Subject("team", team.team_id), action, _actor(caller), **kwargs))


def _actor(caller: Caller) -> Actor:
    return Actor(sub=caller.sub, email=caller.email)


def _role(value: Any) -> str:
    if value not in ROLES:
        raise errors.InvalidRequest("role must be 'member' or 'admin' (a team admin).", param="role")
    return value


def _member_view(membership: Membership, status: str) -> dict[str, Any]:
    return {
        "object": "member",
        "team": membership.team_id,
        "sub": membership.sub,
        "email": membership.email,
        "role": membership.role,
        "status": status,
        "added_at": membership.added_at,
        "added_by": membership.added_by,
    }


def _limit(query: Mapping[str, str]) -> int:
    default, maximum = PAGE_LIMITS
    raw = query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {maximum}.", param="limit")
    return int(raw)
