"""The directory: people and teams as the product knows them, in the usage table.

Cognito knows who can sign in; the directory knows what the product needs besides: whether a
person is active (their personal keys work) or disabled or removed, which keys are theirs,
when they were last seen, which teams exist, who is on each and with which role, and which
keys each team has been charged by. The items live under one partition, ``DIRECTORY``
(``chalicelib/shared/scopes.py`` builds their keys), written only by people acting (admins,
team admins, the sweep), so one partition's throughput is far more than enough, and every
listing is a strongly consistent ``Query`` of it.

A membership is two items written in one transaction: ``MEMBER#<team>#<sub>`` (the team's
members) and ``TEAMOF#<sub>#<team>`` (the person's teams), so both listings are one query.
A team's name is claimed by its own item (``TEAMNAME#<name>``), so two teams cannot share a
name, whatever races. A person's ``key_ids`` and a team's are added in the same transaction
that creates (or charges) the key: off-boarding and deleting a team read them consistently,
with no index lag to slip through.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.keys.store import Page, decode_cursor, encode_cursor
from chalicelib.keys.teams import GUARDRAIL_ATTRIBUTE
from chalicelib.shared import scopes
from chalicelib.shared.dates import Clock, isoformat, utcnow
from chalicelib.shared.dynamodb import dynamo_number
from chalicelib.shared.text import check_plain_text

#: A person's standing: ``active`` (their personal keys work), ``disabled`` (refused until enabled),
#: ``removed`` (gone from the user pool; their keys stay refused).
PERSON_STATUSES = ("active", "disabled", "removed")
ROLES = ("member", "admin")
MAX_TEAM_NAME = 100
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TEAM_ID_RE = re.compile(r"^[a-z0-9]{12}$")


def new_team_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def is_team_id(text: str) -> bool:
    return bool(_TEAM_ID_RE.match(text))


def team_name(value: Any, param: str = "name") -> str:
    """A team's name as given: 1-100 plain characters (no controls or bidi overrides), trimmed.

    Raises
    ------
    InvalidRequest
        Not a string, empty, too long, or holding a control character.
    """
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_TEAM_NAME:
        raise errors.InvalidRequest(f"{param} must be a name of 1-{MAX_TEAM_NAME} characters.", param=param)
    return check_plain_text(value.strip(), param)


@dataclass(frozen=True)
class Person:
    """A person as the product knows them (Cognito knows the rest)."""

    sub: str
    email: str | None
    status: str = "active"
    created_at: str = ""
    key_ids: frozenset[str] = frozenset()
    last_seen_at: str | None = None
    status_changed_at: str | None = None
    status_changed_by: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Person:
        return cls(
            sub=item["sub"],
            email=item.get("email"),
            status=item.get("status", "active"),
            created_at=item.get("created_at", ""),
            key_ids=frozenset(item.get("key_ids") or ()),
            last_seen_at=item.get("last_seen_at"),
            status_changed_at=item.get("status_changed_at"),
            status_changed_by=item.get("status_changed_by"),
        )

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            **scopes.person_key(self.sub),
            "type": "person",
            "sub": self.sub,
            "status": self.status,
            "created_at": self.created_at,
        }
        optional = {
            "email": self.email,
            "key_ids": set(self.key_ids) or None,
            "last_seen_at": self.last_seen_at,
            "status_changed_at": self.status_changed_at,
            "status_changed_by": self.status_changed_by,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        return item


@dataclass(frozen=True)
class Team:
    """A team: a name, the keys ever charged to it, and the budget a new member gets."""

    team_id: str
    name: str
    created_at: str
    created_by: str | None = None
    #: Every key ever charged to the team (a key moved elsewhere stays listed; its record says where it is).
    key_ids: frozenset[str] = frozenset()
    #: The monthly budget a person invited into this team starts with (None: the deployment's default).
    default_member_budget_usd: Decimal | None = None
    updated_at: str | None = None
    version: int = 0
    #: The Bedrock guardrail every call charged to the team carries (``{"id", "version"}``), unless
    #: the key has its own; admins set it (``chalicelib/keys/teams.py`` reads it on the request path).
    guardrail: dict[str, str] | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Team:
        return cls(
            team_id=item["team_id"],
            name=item["name"],
            created_at=item["created_at"],
            created_by=item.get("created_by"),
            key_ids=frozenset(item.get("key_ids") or ()),
            default_member_budget_usd=item.get("default_member_budget_usd"),
            updated_at=item.get("updated_at"),
            version=int(item.get("version", 0)),
            guardrail=dict(item[GUARDRAIL_ATTRIBUTE]) if item.get(GUARDRAIL_ATTRIBUTE) else None,
        )

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            **scopes.team_key(self.team_id),
            "type": "team",
            "team_id": self.team_id,
            "name": self.name,
            "created_at": self.created_at,
            "version": self.version,
        }
        optional = {
            "created_by": self.created_by,
            "key_ids": set(self.key_ids) or None,
            "default_member_budget_usd": (
                dynamo_number(self.default_member_budget_usd) if self.default_member_budget_usd is not None else None
            ),
            "updated_at": self.updated_at,
            GUARDRAIL_ATTRIBUTE: self.guardrail,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        return item


@dataclass(frozen=True)
class Membership:
    """One person on one team, with their role there."""

    team_id: str
    sub: str
    role: str
    email: str | None = None
    added_at: str | None = None
    added_by: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Membership:
        return cls(
            team_id=item["team_id"],
            sub=item["sub"],
            role=item.get("role", "member"),
            email=item.get("email"),
            added_at=item.get("added_at"),
            added_by=item.get("added_by"),
        )

    def items(self) -> list[dict[str, Any]]:
        """Both items of the membership: the team's view and the person's."""
        body = {"type": "membership", "team_id": self.team_id, "sub": self.sub, "role": self.role}
        optional = {"email": self.email, "added_at": self.added_at, "added_by": self.added_by}
        body.update({k: v for k, v in optional.items() if v is not None})
        return [
            {**scopes.member_key(self.team_id, self.sub), **body},
            {**scopes.membership_key(self.sub, self.team_id), **body},
        ]


class Directory:
    """People, teams and memberships. Takes the usage table (a boto3 ``Table`` resource)."""

    def __init__(self, table: Any, clock: Clock = utcnow) -> None:
        self._table = table
        self._client = table.meta.client
        self._clock = clock

    @property
    def table_name(self) -> str:
        return self._table.name

    def now(self) -> str:
        return isoformat(self._clock())

    # -- people ----------------------------------------------------------------------------------

    def person(self, sub: str) -> Person | None:
        item = self._table.get_item(Key=scopes.person_key(sub), ConsistentRead=True).get("Item")
        return Person.from_item(item) if item else None

    def people(self, *, limit: int, cursor: str | None) -> Page:
        """A page of people, by sub (strongly consistent)."""
        return self._page(scopes.PEOPLE_PREFIX, Person.from_item, limit=limit, cursor=cursor)

    def persons(self, subs: Iterable[str]) -> dict[str, Person]:
        """The people among ``subs`` the directory has, by sub."""
        found: dict[str, Person] = {}
        wanted = sorted(set(subs))
        for start in range(0, len(wanted), 100):
            request = {
                self._table.name: {
                    "Keys": [scopes.person_key(sub) for sub in wanted[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table.name, []):
                    found[item["sub"]] = Person.from_item(item)
                request = response.get("UnprocessedKeys") or None
        return found

    def add_person(self, person: Person) -> bool:
        """Store a person the directory did not have; False (nothing written) when it had them."""
        from botocore.exceptions import ClientError

        try:
            self._table.put_item(Item=person.to_item(), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def set_status(self, sub: str, status: str, *, actor: str, expected: tuple[str, ...]) -> Person:
        """Move a person to ``status`` if their status is one of ``expected``; the person as written.

        Raises
        ------
        Conflict
            The person's status is not one of ``expected`` (someone else changed it).
        """
        from botocore.exceptions import ClientError

        values: dict[str, Any] = {":status": status, ":at": self.now(), ":by": actor}
        values.update({f":e{n}": value for n, value in enumerate(expected)})
        try:
            response = self._table.update_item(
                Key=scopes.person_key(sub),
                UpdateExpression="SET #status = :status, status_changed_at = :at, status_changed_by = :by",
                ConditionExpression="attribute_exists(pk) AND #status IN ("
                + ", ".join(f":e{n}" for n in range(len(expected)))
                + ")",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise errors.Conflict(
                "This person changed while you were changing them; read them again and retry.", code="person_changed"
            ) from None
        return Person.from_item(response["Attributes"])

    def add_keys(self, sub: str, key_ids: Iterable[str]) -> None:
        """Record keys as the person's (the seeding of a person first seen, and bulk imports)."""
        ids = set(key_ids)
        if ids:
            self._table.update_item(
                Key=scopes.person_key(sub),
                UpdateExpression="ADD key_ids :ids",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":ids": ids},
            )

    def seen(self, sub: str, at: str) -> None:
        """Record that the person used the admin API at ``at`` (callers throttle this)."""
        from botocore.exceptions import ClientError

        try:
            self._table.update_item(
                Key=scopes.person_key(sub),
                UpdateExpression="SET last_seen_at = :at",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":at": at},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def person_key_item(self, sub: str, key_id: str) -> dict[str, Any]:
        """A transaction item recording a new key as the person's, refused unless the person is active."""
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": scopes.person_key(sub),
                "UpdateExpression": "ADD key_ids :ids",
                "ConditionExpression": "attribute_exists(pk) AND #status = :active",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":ids": {key_id}, ":active": "active"},
            }
        }

    # -- teams -----------------------------------------------------------------------------------

    def team(self, team_id: str) -> Team | None:
        if not is_team_id(team_id):
            return None
        item = self._table.get_item(Key=scopes.team_key(team_id), ConsistentRead=True).get("Item")
        return Team.from_item(item) if item else None

    def find_team(self, ref: str) -> Team | None:
        """The team with this id, or else this name (case aside)."""
        team = self.team(ref) if is_team_id(ref) else None
        if team is not None:
            return team
        claim = self._table.get_item(Key=scopes.team_name_key(ref.strip()), ConsistentRead=True).get("Item")
        return self.team(claim["team_id"]) if claim else None

    def named_team(self, ref: Any) -> Team:
        """The team a caller named (its id or name), for the admin routes.

        Raises
        ------
        InvalidRequest
            Not a string, empty, or control characters.
        NotFound
            No such team.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise errors.InvalidRequest("team must be a team's id or name.", param="team")
        team = self.find_team(check_plain_text(ref.strip(), "team"))
        if team is None:
            raise errors.NotFound(f"No team {ref!r}.", param="team", code="team_not_found")
        return team

    def teams(self, *, limit: int, cursor: str | None) -> Page:
        return self._page(scopes.TEAMS_PREFIX, Team.from_item, limit=limit, cursor=cursor)

    def teams_by_id(self, team_ids: Iterable[str]) -> dict[str, Team]:
        found: dict[str, Team] = {}
        wanted = sorted({t for t in team_ids if is_team_id(t)})
        for start in range(0, len(wanted), 100):
            request = {
                self._table.name: {
                    "Keys": [scopes.team_key(t) for t in wanted[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table.name, []):
                    found[item["team_id"]] = Team.from_item(item)
                request = response.get("UnprocessedKeys") or None
        return found

    def create_team(
        self,
        name: str,
        *,
        actor: str,
        default_member_budget_usd: Decimal | None,
        guardrail: dict[str, str] | None = None,
    ) -> Team:
        """A new team with a name no other team has.

        Raises
        ------
        Conflict
            Another team has this name (case aside).
        """
        team = Team(
            team_id=new_team_id(),
            name=name,
            created_at=self.now(),
            created_by=actor,
            default_member_budget_usd=default_member_budget_usd,
            guardrail=guardrail,
        )
        self._transact(
            [
                {"Put": {"TableName": self._table.name, "Item": team.to_item(),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                self._claim_name(team),
            ],
            conflict=lambda reasons: _name_taken(name) if reasons[1] == "ConditionalCheckFailed" else None,
        )  # fmt: skip
        return team

    def update_team(
        self, team: Team, *, name: str | None, default_member_budget_usd: Any, guardrail: Any = ...
    ) -> Team:
        """Rename a team, change its members' default budget or its guardrail (``...``: unchanged, None: cleared).

        Raises
        ------
        Conflict
            The new name is another team's, or the team changed since ``team`` was read.
        """
        now = self.now()
        changed = Team(
            team_id=team.team_id,
            name=name if name is not None else team.name,
            created_at=team.created_at,
            created_by=team.created_by,
            key_ids=team.key_ids,
            default_member_budget_usd=(
                team.default_member_budget_usd if default_member_budget_usd is ... else default_member_budget_usd
            ),
            updated_at=now,
            version=team.version + 1,
            guardrail=team.guardrail if guardrail is ... else guardrail,
        )
        sets = ["#name = :name", "updated_at = :at", "version = :next"]
        values: dict[str, Any] = {":name": changed.name, ":at": now, ":next": changed.version, ":v": team.version}
        removes = []
        if changed.default_member_budget_usd is None:
            removes.append("default_member_budget_usd")
        else:
            sets.append("default_member_budget_usd = :default")
            values[":default"] = dynamo_number(changed.default_member_budget_usd)
        if changed.guardrail is None:
            removes.append(GUARDRAIL_ATTRIBUTE)
        else:
            sets.append(f"{GUARDRAIL_ATTRIBUTE} = :guardrail")
            values[":guardrail"] = dict(changed.guardrail)
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": scopes.team_key(team.team_id),
                    "UpdateExpression": expression,
                    "ConditionExpression": "attribute_exists(pk) AND (version = :v OR attribute_not_exists(version))",
                    "ExpressionAttributeNames": {"#name": "name"},
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        renamed = changed.name.casefold() != team.name.casefold()
        if renamed:
            items.append(self._claim_name(changed))
            items.append({"Delete": {"TableName": self._table.name, "Key": scopes.team_name_key(team.name)}})

        def conflict(reasons: list[str]) -> errors.AppError | None:
            if reasons[0] == "ConditionalCheckFailed":
                return errors.Conflict(
                    "This team changed while you were changing it; read it again and retry.", code="team_changed"
                )
            if renamed and reasons[1] == "ConditionalCheckFailed":
                return _name_taken(changed.name)
            return None

        self._transact(items, conflict=conflict)
        return changed

    def delete_team(self, team: Team, memberships: list[Membership]) -> None:
        """Remove the team, its name and its memberships (what it was charged stays in the ledger)."""
        items: list[dict[str, Any]] = [
            {"Delete": {"TableName": self._table.name, "Key": scopes.team_key(team.team_id)}},
            {"Delete": {"TableName": self._table.name, "Key": scopes.team_name_key(team.name)}},
        ]
        for membership in memberships:
            items += [
                {"Delete": {"TableName": self._table.name, "Key": scopes.member_key(team.team_id, membership.sub)}},
                {"Delete": {"TableName": self._table.name, "Key": scopes.membership_key(membership.sub, team.team_id)}},
            ]
        for start in range(0, len(items), 100):
            self._client.transact_write_items(TransactItems=items[start : start + 100])

    def team_key_item(self, team_id: str, key_id: str) -> dict[str, Any]:
        """A transaction item recording that a key is charged to a team, refused unless the team exists."""
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": scopes.team_key(team_id),
                "UpdateExpression": "ADD key_ids :ids",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":ids": {key_id}},
            }
        }

    def member_check_item(self, team_id: str, sub: str) -> dict[str, Any]:
        """A transaction item that holds only while ``sub`` is on the team."""
        return {
            "ConditionCheck": {
                "TableName": self._table.name,
                "Key": scopes.member_key(team_id, sub),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    # -- memberships -----------------------------------------------------------------------------

    def members(self, team_id: str) -> list[Membership]:
        return [Membership.from_item(i) for i in self._query_all(scopes.members_prefix(team_id))]

    def memberships_of(self, sub: str) -> list[Membership]:
        return [Membership.from_item(i) for i in self._query_all(scopes.memberships_prefix(sub))]

    def membership(self, team_id: str, sub: str) -> Membership | None:
        item = self._table.get_item(Key=scopes.member_key(team_id, sub), ConsistentRead=True).get("Item")
        return Membership.from_item(item) if item else None

    def add_member(self, membership: Membership) -> None:
        """Put a person on a team.

        Raises
        ------
        Conflict
            They are on it already, or the team no longer exists.
        """
        check = {"ConditionCheck": {"TableName": self._table.name, "Key": scopes.team_key(membership.team_id),
                                    "ConditionExpression": "attribute_exists(pk)"}}  # fmt: skip
        puts = [
            {"Put": {"TableName": self._table.name, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
            for item in membership.items()
        ]

        def conflict(reasons: list[str]) -> errors.AppError | None:
            if reasons[0] == "ConditionalCheckFailed":
                return errors.NotFound("This team no longer exists.", param="team", code="team_not_found")
            if "ConditionalCheckFailed" in reasons[1:]:
                return errors.Conflict(
                    f"{membership.email or membership.sub} is already on this team; change their role instead.",
                    param="person",
                    code="already_member",
                )
            return None

        self._transact([check, *puts], conflict=conflict)

    def set_role(self, membership: Membership, role: str) -> Membership:
        """Change a member's role (only while they are on the team)."""
        changed = Membership(
            membership.team_id, membership.sub, role, membership.email, membership.added_at, membership.added_by
        )
        items = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": key,
                    "UpdateExpression": "SET #role = :role",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": {"#role": "role"},
                    "ExpressionAttributeValues": {":role": role},
                }
            }
            for key in (scopes.member_key(membership.team_id, membership.sub),
                        scopes.membership_key(membership.sub, membership.team_id))
        ]  # fmt: skip
        self._transact(items, conflict=lambda reasons: _not_member() if "ConditionalCheckFailed" in reasons else None)
        return changed

    def remove_member(self, membership: Membership) -> None:
        items = [
            {"Delete": {"TableName": self._table.name, "Key": key, "ConditionExpression": "attribute_exists(pk)"}}
            for key in (scopes.member_key(membership.team_id, membership.sub),
                        scopes.membership_key(membership.sub, membership.team_id))
        ]  # fmt: skip
        self._transact(items, conflict=lambda reasons: _not_member() if "ConditionalCheckFailed" in reasons else None)

    # -- helpers ---------------------------------------------------------------------------------

    def _claim_name(self, team: Team) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": {**scopes.team_name_key(team.name), "type": "team_name", "team_id": team.team_id},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _transact(self, items: list[dict[str, Any]], *, conflict: Any) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons") or []]
            reasons += ["None"] * (len(items) - len(reasons))
            refusal = conflict(reasons)
            if refusal is None:
                raise
            raise refusal from None

    def _page(self, prefix: str, build: Any, *, limit: int, cursor: str | None) -> Page:
        start = decode_cursor(cursor, {"pk": scopes.DIRECTORY, "sk": None})
        if start is not None and not start["sk"].startswith(prefix):
            raise errors.InvalidRequest("The cursor is not valid for this listing; start again without it.",
                                        param="cursor")  # fmt: skip
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": scopes.DIRECTORY, ":prefix": prefix},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if start:
            params["ExclusiveStartKey"] = start
        response = self._table.query(**params)
        items = [build(item) for item in response.get("Items", [])]
        return Page(items, encode_cursor(response.get("LastEvaluatedKey")))

    def _query_all(self, prefix: str) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": scopes.DIRECTORY, ":prefix": prefix},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            response = self._table.query(**params)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _name_taken(name: str) -> errors.AppError:
    return errors.Conflict(f"Another team is already called {name!r}.", param="name", code="team_name_taken")


def _not_member() -> errors.AppError:
    return errors.NotFound("This person is not on this team.", param="person", code="not_a_member")
