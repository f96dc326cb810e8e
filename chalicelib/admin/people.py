"""People: invite, list, disable, enable, remove, and off-boarding that reaches their keys at once.

Routes: ``GET``/``POST /admin/people``, ``GET``/``PATCH``/``DELETE /admin/people/{person}``,
``POST /admin/people/{person}/disable`` and ``/enable``, ``GET /admin/people/{person}/audit``,
``POST /admin/people/sweep``.

**First appearance.** A person enters the directory the first time the product meets them:
invited, signed in to the admin API, named as a key's owner or a team's member, or found in
the user pool by the sweep. That is when the default budget binds them (the team's default
for a person invited into a team, else ``PENNYWORTH_DEFAULT_PERSON_BUDGET_USD``), once: a
budget an admin set or removed later is never overwritten. Keys they already had are recorded
as theirs then.

**Off-boarding.** Disabling or removing a person marks each of their personal keys
``owner_disabled`` (the key's next request gets 401 ``owner_disabled``: the key item is read
on every request anyway, so this costs no extra round trip), writes an audit event for the
person and for each key, and disables (or deletes) them in Cognito. Enabling them clears the
mark: the keys that were active are active again, the ones revoked or expired meanwhile are
not. A new personal key is created in one transaction with a condition on the person being
active, so no key can slip in while they are being disabled. A team's own keys are the team's
and survive any member leaving.

**People disabled in Cognito directly** (the AWS console, ``aws cognito-idp``) are noticed by
the sweep (``people_sweep``, every 5 minutes, and ``POST /admin/people/sweep``): it lists the
pool and off-boards whoever the directory has as active but the pool has as disabled or gone.
Cognito has no trigger for an admin disabling a user, and a check on the request path would
cost a Cognito call per request; the sweep costs a ``ListUsers`` page per 60 people every 5
minutes, and their admin tokens stop working at once anyway (the admin API asks the pool on
every call).
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.metering import Meter
from chalicelib.admin.auth import ADMINS_GROUP, AdminAuthenticator, Principal, UserDirectory, is_sub
from chalicelib.admin.directory import Directory, Membership, Person, Team
from chalicelib.admin.roles import Caller, within_team_budget
from chalicelib.keys.audit import Actor, AuditLog, Subject
from chalicelib.keys.store import KeyStore
from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import Clock, isoformat, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.http import HttpResult
from chalicelib.shared.money import parse_money, usd
from chalicelib.shared.text import check_plain_text

#: How long a warm Lambda trusts that a signed-in person is in the directory before checking again.
SEEN_INTERVAL_SECONDS = 300
PAGE_LIMITS = (50, 100)
_EMAIL_CHARS = 254
_SYSTEM = Actor(sub=None, email=None, kind="system")


def person_subject(sub: str) -> Subject:
    return Subject("person", sub)


class UserPool:
    """The Cognito calls that change people (the lookups are ``UserDirectory``'s). Errors become 503s."""

    def __init__(self, client: Any, pool_id: str) -> None:
        self._client = client
        self._pool_id = pool_id

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(UserPoolId=self._pool_id, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "UsernameExistsException":
                raise errors.Conflict(
                    "A user with this e-mail address already exists in the user pool; add them to a team instead.",
                    param="email",
                    code="person_exists",
                ) from None
            if code == "UserNotFoundException":
                return None
            if code in ("InvalidParameterException", "InvalidPasswordException"):
                raise errors.InvalidRequest(f"Cognito refused this: {exc.response['Error'].get('Message')}") from None
            logger.warning("Cognito call failed", extra={"operation": operation, "error": str(exc)})
            raise errors.ServiceUnavailable("The gateway could not reach the user pool; retry later.") from None
        except BotoCoreError as exc:
            logger.warning("Cognito call failed", extra={"operation": operation, "error": str(exc)})
            raise errors.ServiceUnavailable("The gateway could not reach the user pool; retry later.") from None

    def create(self, email: str, *, temporary_password: str | None) -> str:
        """Invite ``email``: Cognito mails a temporary password (or takes ``temporary_password``); the sub."""
        kwargs: dict[str, Any] = {
            "Username": email,
            "UserAttributes": [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
            "DesiredDeliveryMediums": ["EMAIL"],
        }
        if temporary_password is not None:
            kwargs["TemporaryPassword"] = temporary_password
        user = self._call("admin_create_user", **kwargs)["User"]
        return {a["Name"]: a["Value"] for a in user.get("Attributes", [])}["sub"]

    def disable(self, username: str) -> None:
        self._call("admin_disable_user", Username=username)

    def enable(self, username: str) -> None:
        self._call("admin_enable_user", Username=username)

    def delete(self, username: str) -> None:
        self._call("admin_delete_user", Username=username)

    def sign_out(self, username: str) -> None:
        """End every session (refresh tokens) of the user."""
        self._call("admin_user_global_sign_out", Username=username)

    def set_admin(self, username: str, admin: bool) -> None:
        operation = "admin_add_user_to_group" if admin else "admin_remove_user_from_group"
        self._call(operation, Username=username, GroupName=ADMINS_GROUP)

    def admins(self) -> dict[str, bool]:
        """The admins group: each member's sub, and whether they are enabled."""
        found: dict[str, bool] = {}
        request: dict[str, Any] = {"GroupName": ADMINS_GROUP, "Limit": 60}
        while True:
            response = self._call("list_users_in_group", **request) or {}
            for user in response.get("Users", []):
                attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
                if "sub" in attributes:
                    found[attributes["sub"]] = user.get("Enabled", True) is not False
            if not response.get("NextToken"):
                return found
            request["NextToken"] = response["NextToken"]

    def everyone(self) -> dict[str, tuple[str | None, bool, str]]:
        """Every user of the pool: sub → (e-mail, enabled, username). Raises rather than return part of it."""
        found: dict[str, tuple[str | None, bool, str]] = {}
        request: dict[str, Any] = {"Limit": 60}
        while True:
            response = self._call("list_users", **request) or {}
            for user in response.get("Users", []):
                attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
                if "sub" in attributes:
                    found[attributes["sub"]] = (
                        attributes.get("email"),
                        user.get("Enabled", True) is not False,
                        user.get("Username", attributes["sub"]),
                    )
            if not response.get("PaginationToken"):
                return found
            request["PaginationToken"] = response["PaginationToken"]


@dataclass(frozen=True)
class PeopleConfig:
    """What people need from the settings."""

    default_budget_usd: Decimal | None
    #: Locally there is no mail: invitations carry the temporary password in the answer instead.
    local: bool = False


class PeopleService:
    """People in the directory and the pool, over injected stores and Cognito."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        directory: Directory,
        keys: KeyStore,
        audit: AuditLog,
        meter: Meter,
        pool: Callable[[], UserPool | None],
        users: Callable[[], UserDirectory | None],
        config: PeopleConfig,
        max_body_bytes: int,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticator = authenticator
        self._directory = directory
        self._keys = keys
        self._audit = audit
        self._meter = meter
        self._pool = pool
        self._users = users
        self._config = config
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._seen: dict[str, float] = {}

    # -- first appearance ------------------------------------------------------------------------

    def appear(self, principal: Principal) -> None:
        """Called on every verified admin API call: a person met for the first time enters the directory.

        Checks the directory at most every few minutes per person and warm Lambda.

        Raises
        ------
        AuthenticationFailed
            The directory has the person as disabled or removed (whatever Cognito says).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        now = self._monotonic()
        last = self._seen.get(principal.sub)
        if last is not None and now - last < SEEN_INTERVAL_SECONDS:
            return
        try:
            person = self._directory.person(principal.sub)
            if person is None:
                self.first_seen(principal.sub, principal.email, actor=_SYSTEM, action="appeared")
            elif person.status == "active":
                self._directory.seen(principal.sub, isoformat(self._clock()))
        except (BotoCoreError, ClientError) as exc:
            # The pool vouched for the caller (existing, enabled): the directory is asked again next call.
            logger.warning("could not record an admin caller in the directory", extra={"reason": str(exc)})
            return
        if person is not None and person.status != "active":
            raise errors.AuthenticationFailed(
                f"This user is {person.status}; ask an admin to enable it, then sign in again.", code="user_disabled"
            )
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[principal.sub] = now

    def first_seen(
        self,
        sub: str,
        email: str | None,
        *,
        actor: Actor,
        action: str,
        budget: Decimal | None | object = ...,
        team: Team | None = None,
    ) -> Person:
        """The person, entered into the directory now if they were not: default budget, their existing keys.

        ``budget`` (an invitation's choice) beats the team's default, which beats the deployment's.
        """
        now = isoformat(self._clock())
        person = Person(sub=sub, email=email, status="active", created_at=now, last_seen_at=None)
        if not self._directory.add_person(person):
            return self._directory.person(sub) or person
        chosen: Decimal | None
        if budget is not ...:
            chosen = budget  # type: ignore[assignment]
        elif team is not None and team.default_member_budget_usd is not None:
            chosen = team.default_member_budget_usd
        else:
            chosen = self._config.default_budget_usd
        applied = chosen is not None and self._meter.set_budget_if_unset(
            scopes.owner(sub), chosen, actor=actor.email or actor.sub or "system"
        )
        existing = self._existing_keys(sub)
        self._directory.add_keys(sub, existing)
        details: dict[str, Any] = {"email": email, "keys": sorted(existing)}
        if applied:
            details["monthly_budget_usd"] = usd(chosen)
        self._audit.record(self._audit.new_event(person_subject(sub), action, actor, details=details))
        return Person(sub=sub, email=email, status="active", created_at=now, key_ids=frozenset(existing))

    def _existing_keys(self, sub: str) -> set[str]:
        found: set[str] = set()
        cursor = None
        while True:
            page = self._keys.list_keys(owner_sub=sub, limit=100, cursor=cursor)
            found |= {record.key_id for record in page.items}
            cursor = page.cursor
            if not cursor:
                return found

    # -- routes ----------------------------------------------------------------------------------

    def list_people(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/people``: everyone the product knows, with their teams and last activity (admins)."""
        caller = self._caller(headers)
        caller.require_admin("list people")
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        page = self._directory.people(limit=_limit(query), cursor=query.get("cursor"))
        views = self._views(page.items)
        return HttpResult({"object": "list", "data": views, "has_more": page.cursor is not None,
                           "next_cursor": page.cursor})  # fmt: skip

    def get_person(self, headers: Mapping[str, str], who: str) -> HttpResult:
        """``GET /admin/people/{person}``: admins; the person; an admin of one of their teams."""
        caller = self._caller(headers)
        person = self._find(who)
        self._may_see(caller, person)
        return HttpResult(self._views([person])[0])

    def invite(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/people``: a new user of the pool, e-mailed a temporary password by Cognito (admins)."""
        caller = self._caller(headers)
        caller.require_admin("invite people")
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {"email", "team", "role", "monthly_budget_usd", "admin"})
        email = _email(body.get("email"))
        role = _role(body.get("role", "member"))
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise errors.InvalidRequest("'admin' must be true or false.", param="admin")
        budget: Decimal | None | object = ...
        if "monthly_budget_usd" in body:
            budget = parse_money(body["monthly_budget_usd"])
        team = self._team(body["team"]) if body.get("team") is not None else None
        pool = self._require_pool()
        temporary = _temporary_password() if self._config.local else None
        sub = pool.create(email, temporary_password=temporary)
        actor = _actor(caller)
        person = self.first_seen(sub, email, actor=actor, action="invited", budget=budget, team=team)
        if team is not None:
            membership = Membership(team.team_id, sub, role, email, isoformat(self._clock()), caller.label)
            self._directory.add_member(membership)
            self._audit.record(
                self._audit.new_event(Subject("team", team.team_id), "member_added", actor,
                                      details={"sub": sub, "email": email, "role": role})
            )  # fmt: skip
        if admin:
            pool.set_admin(email, True)
            self._audit.record(self._audit.new_event(person_subject(sub), "admin_granted", actor))
        view = self._views([person])[0]
        if temporary is not None:
            view["temporary_password"] = temporary  # local stacks only: there is no mail to send it by
        return HttpResult(view, status=201)

    def update_person(self, headers: Mapping[str, str], who: str, raw_body: bytes | str | None) -> HttpResult:
        """``PATCH /admin/people/{person}`` ``{"admin": bool}``: grant or take away admin rights (admins)."""
        caller = self._caller(headers)
        caller.require_admin("change who is an admin")
        body = self._body(raw_body, required=True)
        refuse_unknown(body, {"admin"})
        admin = body.get("admin")
        if not isinstance(admin, bool):
            raise errors.InvalidRequest('Send {"admin": true} or {"admin": false}.', param="admin")
        person = self._find(who)
        pool = self._require_pool()
        if not admin:
            self._keep_an_admin(person.sub, "take admin rights from")
        pool.set_admin(self._username(person), admin)
        action = "admin_granted" if admin else "admin_revoked"
        self._audit.record(self._audit.new_event(person_subject(person.sub), action, _actor(caller)))
        return HttpResult(self._views([person])[0])

    def disable(self, headers: Mapping[str, str], who: str, raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/people/{person}/disable``: their personal keys stop at once (admins)."""
        caller = self._caller(headers)
        caller.require_admin("disable people")
        body = self._body(raw_body, required=False)
        refuse_unknown(body, {"reason"})
        reason = _reason(body)
        person = self._find(who)
        self._not_yourself(caller, person, "disable")
        if person.status == "removed":
            raise errors.Conflict("This person was removed; there is nothing to disable.", code="person_removed")
        self._keep_an_admin(person.sub, "disable")
        disabled = self.offboard(person, actor=_actor(caller), status="disabled", reason=reason)
        pool = self._require_pool()
        pool.disable(self._username(person))
        pool.sign_out(self._username(person))
        return HttpResult(self._views([disabled])[0])

    def enable(self, headers: Mapping[str, str], who: str) -> HttpResult:
        """``POST /admin/people/{person}/enable``: the keys that were active work again (admins)."""
        caller = self._caller(headers)
        caller.require_admin("enable people")
        person = self._find(who)
        if person.status == "removed":
            raise errors.Conflict(
                "This person was removed from the user pool; invite them again instead.", code="person_removed"
            )
        pool = self._require_pool()
        pool.enable(self._username(person))
        actor = _actor(caller)
        enabled = self._directory.set_status(person.sub, "active", actor=caller.label, expected=("disabled", "active"))
        restored = []
        for record in self._keys.get_many(self._all_keys(enabled)).values():
            if record.owner_disabled:
                self._keys.set_owner_disabled(
                    record, False, attach=lambda r: [self._key_event(r.key_id, "owner_enabled", actor)]
                )
                restored.append(record.key_id)
        self._audit.record(
            self._audit.new_event(person_subject(person.sub), "enabled", actor, details={"keys": sorted(restored)})
        )
        self._seen.pop(person.sub, None)
        return HttpResult(self._views([enabled])[0])

    def remove(self, headers: Mapping[str, str], who: str, raw_body: bytes | str | None) -> HttpResult:
        """``DELETE /admin/people/{person}``: out of the pool and every team; their keys stay refused (admins)."""
        caller = self._caller(headers)
        caller.require_admin("remove people")
        body = self._body(raw_body, required=False)
        refuse_unknown(body, {"reason"})
        reason = _reason(body)
        person = self._find(who)
        self._not_yourself(caller, person, "remove")
        self._keep_an_admin(person.sub, "remove")
        actor = _actor(caller)
        removed = self.offboard(person, actor=actor, status="removed", reason=reason)
        for membership in self._directory.memberships_of(person.sub):
            self._directory.remove_member(membership)
            self._audit.record(
                self._audit.new_event(Subject("team", membership.team_id), "member_removed", actor,
                                      details={"sub": person.sub, "email": person.email, "reason": "removed"})
            )  # fmt: skip
        pool = self._require_pool()
        pool.sign_out(self._username(person))
        pool.delete(self._username(person))
        return HttpResult(self._views([removed])[0])

    def person_audit(self, headers: Mapping[str, str], who: str, query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/people/{person}/audit``: the person's events, oldest first."""
        caller = self._caller(headers)
        query = query or {}
        refuse_unknown(query, {"limit", "cursor"})
        person = self._find(who)
        self._may_see(caller, person)
        page = self._audit.for_subject(person_subject(person.sub), limit=_limit(query), cursor=query.get("cursor"))
        return HttpResult({"object": "list", "data": [e.to_dict() for e in page.items],
                           "has_more": page.cursor is not None, "next_cursor": page.cursor})  # fmt: skip

    def run_sweep(self, headers: Mapping[str, str]) -> HttpResult:
        """``POST /admin/people/sweep``: compare the directory with the pool now (admins)."""
        caller = self._caller(headers)
        caller.require_admin("run the sweep")
        return HttpResult({"object": "sweep", **self.sweep()})

    # -- off-boarding ----------------------------------------------------------------------------

    def offboard(self, person: Person, *, actor: Actor, status: str, reason: str | None) -> Person:
        """Mark the person ``disabled`` or ``removed`` and refuse each of their personal keys from now on.

        Idempotent: a second run (after a failure half-way) marks what the first did not.
        """
        expected = ("active", "disabled") if status == "disabled" else ("active", "disabled", "removed")
        written = self._directory.set_status(person.sub, status, actor=actor.email or "system", expected=expected)
        marked = []
        for record in self._keys.get_many(self._all_keys(written)).values():
            if record.status == "revoked" or record.owner_disabled or scopes.owning_team(record.owner_sub):
                continue
            self._keys.set_owner_disabled(
                record, True, attach=lambda r: [self._key_event(r.key_id, "owner_disabled", actor, status)]
            )
            marked.append(record.key_id)
        details: dict[str, Any] = {"keys": sorted(marked)}
        if reason:
            details["reason"] = reason
        self._audit.record(self._audit.new_event(person_subject(person.sub), status, actor, details=details))
        self._seen.pop(person.sub, None)
        logger.info("person off-boarded", extra={"sub": person.sub, "status": status, "keys": len(marked)})
        return written

    def _all_keys(self, person: Person) -> set[str]:
        # key_ids has every key made through the product since the person first appeared, and the
        # ones they had then; the index adds anything else (it may trail a second behind, key_ids never).
        return set(person.key_ids) | self._existing_keys(person.sub)

    def _key_event(self, key_id: str, action: str, actor: Actor, why: str | None = None) -> dict[str, Any]:
        details = {"owner": why} if why else {}
        return self._audit.put_item(self._audit.new_event(key_id, action, actor, details=details))

    # -- the sweep -------------------------------------------------------------------------------

    def sweep(self) -> dict[str, Any]:
        """People the pool has and the directory does not enter it; people the directory has as active but the
        pool has as disabled or gone are off-boarded. Nothing is done on a partial listing of the pool.
        """
        pool = self._require_pool()
        users = pool.everyone()
        people: dict[str, Person] = {}
        cursor = None
        while True:
            page = self._directory.people(limit=100, cursor=cursor)
            people.update({p.sub: p for p in page.items})
            cursor = page.cursor
            if not cursor:
                break
        appeared = disabled = removed = 0
        for sub, (email, _enabled, _username) in users.items():
            if sub not in people:
                people[sub] = self.first_seen(sub, email, actor=_SYSTEM, action="appeared")
                appeared += 1
        for sub, person in people.items():
            if person.status != "active":
                continue
            user = users.get(sub)
            if user is None:
                self.offboard(person, actor=_SYSTEM, status="removed", reason="gone from the user pool")
                removed += 1
            elif not user[1]:
                self.offboard(person, actor=_SYSTEM, status="disabled", reason="disabled in the user pool")
                disabled += 1
        result = {"pool_users": len(users), "appeared": appeared, "disabled": disabled, "removed": removed}
        logger.info("people sweep", extra=result)
        return result

    # -- views -----------------------------------------------------------------------------------

    def _views(self, people: list[Person]) -> list[dict[str, Any]]:
        """People as the API shows them: status, admin, teams, budget, keys, last activity."""
        if not people:
            return []
        pool = self._pool()
        admins = pool.admins() if pool is not None else {}
        memberships = {p.sub: self._directory.memberships_of(p.sub) for p in people}
        teams = self._directory.teams_by_id({m.team_id for ms in memberships.values() for m in ms})
        budgets = self._meter.budgets([scopes.owner(p.sub) for p in people], fresh=True)
        records = self._keys.get_many({k for p in people for k in p.key_ids})
        views = []
        for person in people:
            keys = [records[k] for k in person.key_ids if k in records]
            last_key = max((r.last_used_at for r in keys if r.last_used_at), default=None)
            now = self._clock()
            views.append(
                {
                    "object": "person",
                    "sub": person.sub,
                    "email": person.email,
                    "status": person.status,
                    "admin": person.sub in admins,
                    "teams": [
                        {"id": m.team_id, "name": teams[m.team_id].name if m.team_id in teams else None, "role": m.role}
                        for m in memberships[person.sub]
                    ],  # fmt: skip
                    "monthly_budget_usd": usd(budgets.get(scopes.owner(person.sub))),
                    "keys": {
                        "total": len(keys),
                        "active": sum(1 for r in keys if r.effective_status(now) == "active"),
                    },
                    "created_at": person.created_at or None,
                    "last_seen_at": person.last_seen_at,
                    "last_key_used_at": last_key,
                    "last_activity_at": max((t for t in (person.last_seen_at, last_key) if t), default=None),
                    "status_changed_at": person.status_changed_at,
                    "status_changed_by": person.status_changed_by,
                }
            )
        return views

    # -- helpers ---------------------------------------------------------------------------------

    def caller(self, headers: Mapping[str, str]) -> Caller:
        return self._caller(headers)

    def _caller(self, headers: Mapping[str, str]) -> Caller:
        return Caller(self._authenticator().authenticate(headers), self._directory)

    def _body(self, raw: bytes | str | None, *, required: bool) -> dict[str, Any]:
        return parse_json_body(raw, max_bytes=self._max_body_bytes, required=required, exact_numbers=True)

    def find(self, who: Any, param: str = "person") -> Person:
        return self._find(who, param)

    def ensure(self, sub: str, email: str | None) -> Person:
        """The person with this sub (the pool has them: the caller just found them), entered if first met."""
        return self._directory.person(sub) or self.first_seen(sub, email, actor=_SYSTEM, action="appeared")

    def _find(self, who: Any, param: str = "person") -> Person:
        """The person an e-mail or sub names (entered into the directory if the pool has them).

        Raises
        ------
        NotFound
            Neither the directory nor the pool knows them.
        """
        if not isinstance(who, str) or not who.strip():
            raise errors.InvalidRequest(f"{param} must be a person's e-mail address or sub.", param=param)
        who = check_plain_text(who.strip(), param)
        if "@" not in who and is_sub(who):
            person = self._directory.person(who)
            if person is not None:
                return person
        users = self._users()
        user = users.find(who) if users is not None else None
        if user is None:
            raise errors.NotFound(f"No person {who!r} in the directory or the user pool.", param=param,
                                  code="unknown_person")  # fmt: skip
        return self._directory.person(user.sub) or self.first_seen(user.sub, user.email, actor=_SYSTEM,
                                                                   action="appeared")  # fmt: skip

    def _team(self, ref: Any) -> Team:
        return self._directory.named_team(ref)

    def _may_see(self, caller: Caller, person: Person) -> None:
        if caller.is_admin or caller.sub == person.sub:
            return
        theirs = {m.team_id for m in self._directory.memberships_of(person.sub)}
        if any(caller.is_team_admin(team_id) for team_id in theirs):
            return
        raise errors.PermissionDenied(
            "You can see only yourself and the members of teams you manage.", param="person", code="not_your_team"
        )

    def _not_yourself(self, caller: Caller, person: Person, verb: str) -> None:
        if caller.sub == person.sub:
            raise errors.Conflict(f"You cannot {verb} yourself; ask another admin.", code="self_change")

    def _keep_an_admin(self, sub: str, verb: str) -> None:
        """Refuse what would leave the deployment without an enabled admin.

        Raises
        ------
        Conflict
            ``last_admin``.
        """
        pool = self._require_pool()
        admins = pool.admins()
        if sub in admins and not any(enabled for other, enabled in admins.items() if other != sub):
            raise errors.Conflict(
                f"This is the last enabled admin; you cannot {verb} them. Make someone else an admin first.",
                code="last_admin",
            )

    def _username(self, person: Person) -> str:
        return person.email or person.sub

    def _require_pool(self) -> UserPool:
        pool = self._pool()
        if pool is None:
            raise errors.ServiceUnavailable(
                "The admin API is not configured: PENNYWORTH_COGNITO_USER_POOL_ID must be set.",
                code="admin_api_not_configured",
            )
        return pool

    def check_member_budget(self, caller: Caller, person: Person, amount: Decimal | None) -> None:
        """May ``caller`` set ``person``'s budget to ``amount``? Admins: yes. Team admins: a member's, not their own,
        up to the budget of a team of theirs the person is on.

        Raises
        ------
        PermissionDenied
            Anyone else, or a team admin's own budget, or above every such team's budget.
        """
        if caller.is_admin:
            return
        if caller.sub == person.sub:
            raise errors.PermissionDenied(
                "You cannot change your own budget; ask an admin.", param="monthly_budget_usd", code="own_budget"
            )
        managed = [m.team_id for m in self._directory.memberships_of(person.sub) if caller.is_team_admin(m.team_id)]
        if not managed:
            raise errors.PermissionDenied(
                "Only admins, and admins of a team this person is on, can set their budget.",
                param="owner",
                code="not_your_team",
            )
        ceilings = self._meter.budgets([scopes.team(t) for t in managed], fresh=True)
        if any(ceiling is None for ceiling in ceilings.values()):
            return
        within_team_budget(amount, max(c for c in ceilings.values() if c is not None), "monthly_budget_usd",
                           what="a member's budget")  # fmt: skip


def _actor(caller: Caller) -> Actor:
    return Actor(sub=caller.sub, email=caller.email)


def _email(value: Any) -> str:
    if not isinstance(value, str) or "@" not in value or len(value.strip()) > _EMAIL_CHARS:
        raise errors.InvalidRequest("email must be the person's e-mail address.", param="email")
    email = check_plain_text(value.strip(), "email")
    local, _, domain = email.rpartition("@")
    if not local or "." not in domain or any(c in email for c in ' "\\,;<>()[]'):
        raise errors.InvalidRequest(f"{email!r} is not an e-mail address.", param="email")
    return email


def _role(value: Any) -> str:
    if value not in ("member", "admin"):
        raise errors.InvalidRequest("role must be 'member' or 'admin' (a team admin).", param="role")
    return value


def _reason(body: Mapping[str, Any]) -> str | None:
    value = body.get("reason")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise errors.InvalidRequest("reason must be a string of at most 500 characters.", param="reason")
    return check_plain_text(value, "reason")


def _limit(query: Mapping[str, str]) -> int:
    default, maximum = PAGE_LIMITS
    raw = query.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {maximum}.", param="limit")
    return int(raw)


def _temporary_password() -> str:
    """A password meeting the pool's policy (upper, lower, digit, symbol, 12+), for local invitations."""
    alphabet = string.ascii_letters + string.digits
    body = "".join(secrets.choice(alphabet) for _ in range(14))
    return f"Pw{body}9!"
