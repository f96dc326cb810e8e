"""Roles, attacked: every role against every route, on a target of its own, of its team, of another team.

The world: team Red (alice its admin, bob a member) and team Blue (carol a member), each with a
budget, a team key and a member's key charged to it; dave is on no team. Each row says what a
role may do to which target, and the test checks the API's answer, never what a button shows.
Refusals must also leave nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import wiring
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID
from tests.admin_fixtures import Api
from tests.cognito_helpers import add_user, sign_in

DEMO = {"id": DEMO_GUARDRAIL_ID, "version": "1"}


@dataclass
class World:
    api: dict[str, Api]
    sub: dict[str, str]
    email: dict[str, str]
    keys: dict[str, dict[str, Any]]


@pytest.fixture
def world(monkeypatch, emulator_url, admin_client, cognito, pool, admin, alice, bob) -> World:
    # The emulator answers the guardrail check (Bedrock's GetGuardrail) of a team's guardrail.
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_GUARDRAILS", DEMO_GUARDRAIL_ID)
    wiring.reset()
    carol = add_user(cognito, pool, "carol@example.com")
    dave = add_user(cognito, pool, "dave@example.com")
    users = {"admin": admin, "alice": alice, "bob": bob, "carol": carol, "dave": dave}
    api = {name: Api(admin_client, sign_in(cognito, pool, user)["IdToken"]) for name, user in users.items()}
    root = api["admin"]
    for name, budget in (("Red", "20"), ("Blue", "20")):
        assert root.call("post", "/admin/teams", {"name": name, "monthly_budget_usd": budget}).status_code == 201
    for team, who, role in (("red", "alice", "admin"), ("red", "bob", "member"), ("blue", "carol", "member")):
        added = root.call("post", f"/admin/teams/{team}/members", {"person": users[who].email, "role": role})
        assert added.status_code == 201
    assert root.call("patch", "/admin/teams/red", {"guardrail": DEMO}).status_code == 200
    keys = {
        "red-team": root.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body,
        "blue-team": root.call("post", "/admin/keys", {"team": "blue", "team_owned": True}).json_body,
        "bob-red": api["bob"].call("post", "/admin/keys", {"team": "red"}).json_body,
        "bob-own": api["bob"].call("post", "/admin/keys", {}).json_body,
        "carol-blue": api["carol"].call("post", "/admin/keys", {"team": "blue"}).json_body,
        "alice-own": api["alice"].call("post", "/admin/keys", {}).json_body,
    }
    assert all("key_id" in key for key in keys.values()), keys
    for caller in api.values():
        caller.call("get", "/admin/keys")  # everyone has signed in once (their first appearance is no refusal's doing)
    return World(api, {n: u.sub for n, u in users.items()}, {n: u.email for n, u in users.items()}, keys)


ALLOWED = "ok"
#: (role, method, path (with {key}/{email} of a target), body, expected: "ok" or (status, code))
MATRIX: list[tuple[str, str, str, Any, Any]] = [
    # A team: its totals for members, its members for its admins
    ("bob", "get", "/admin/teams/red", None, ALLOWED),
    ("carol", "get", "/admin/teams/red", None, (403, "not_your_team")),
    ("dave", "get", "/admin/teams/red", None, (403, "not_your_team")),
    ("alice", "get", "/admin/teams/blue", None, (403, "not_your_team")),
    # Renaming a team or setting its budget: admins only, even for the team's admin
    ("alice", "patch", "/admin/teams/red", {"monthly_budget_usd": "1000"}, (403, "admin_only")),
    ("alice", "patch", "/admin/teams/red", {"name": "Mine"}, (403, "admin_only")),
    ("admin", "patch", "/admin/teams/red", {"monthly_budget_usd": "30"}, ALLOWED),
    # A team's guardrail (Red has one): a compliance control, admins only; nor replaced through a key's own
    ("alice", "patch", "/admin/teams/red", {"guardrail": None}, (403, "admin_only")),
    (
        "alice",
        "patch",
        "/admin/teams/red",
        {"guardrail": {"id": DEMO_GUARDRAIL_ID, "version": "DRAFT"}},
        (403, "admin_only"),
    ),
    ("bob", "patch", "/admin/teams/red", {"guardrail": None}, (403, "admin_only")),
    ("carol", "patch", "/admin/teams/blue", {"guardrail": DEMO}, (403, "admin_only")),
    ("alice", "patch", "/admin/keys/{red-team}", {"guardrail": {"id": DEMO_GUARDRAIL_ID}}, (403, "team_guardrail")),
    ("bob", "patch", "/admin/keys/{bob-red}", {"guardrail": {"id": DEMO_GUARDRAIL_ID}}, (403, "team_guardrail")),
    ("bob", "post", "/admin/keys", {"team": "red", "guardrail": DEMO}, (403, "team_guardrail")),
    ("admin", "patch", "/admin/teams/blue", {"guardrail": DEMO}, ALLOWED),
    ("admin", "patch", "/admin/teams/red", {"guardrail": None}, ALLOWED),
    ("bob", "patch", "/admin/keys/{bob-own}", {"guardrail": DEMO}, ALLOWED),
    # The default budget of new members: the team's admin, up to the team's budget
    ("alice", "patch", "/admin/teams/red", {"default_member_budget_usd": "5"}, ALLOWED),
    ("alice", "patch", "/admin/teams/red", {"default_member_budget_usd": "50"}, (403, "above_team_budget")),
    ("alice", "patch", "/admin/teams/blue", {"default_member_budget_usd": "5"}, (403, "team_admin_only")),
    ("bob", "patch", "/admin/teams/red", {"default_member_budget_usd": "5"}, (403, "team_admin_only")),
    # Members: the team's admin manages others on their team, never themselves, never another team
    ("alice", "post", "/admin/teams/red/members", {"person": "{dave}"}, ALLOWED),
    ("alice", "post", "/admin/teams/blue/members", {"person": "{dave}"}, (403, "team_admin_only")),
    ("bob", "post", "/admin/teams/red/members", {"person": "{dave}"}, (403, "team_admin_only")),
    ("alice", "post", "/admin/teams/red/members", {"person": "{bob}"}, (409, "already_member")),
    ("alice", "patch", "/admin/teams/red/members/{bob}", {"role": "admin"}, ALLOWED),
    ("alice", "patch", "/admin/teams/red/members/{alice}", {"role": "member"}, (403, "self_change")),
    ("bob", "patch", "/admin/teams/red/members/{bob}", {"role": "admin"}, (403, "team_admin_only")),
    ("alice", "delete", "/admin/teams/red/members/{bob}", None, ALLOWED),
    ("alice", "delete", "/admin/teams/red/members/{alice}", None, (403, "self_change")),
    ("alice", "delete", "/admin/teams/blue/members/{carol}", None, (403, "team_admin_only")),
    ("admin", "delete", "/admin/teams/red", None, (409, "team_has_keys")),
    ("alice", "delete", "/admin/teams/red?force=true", None, (403, "admin_only")),
    # Keys: the team's own keys are its admins'; a member's key is theirs (its team's admin may see and
    # limit it, never take its secret); another team's keys are nobody's business
    ("alice", "post", "/admin/keys", {"team": "red", "team_owned": True}, ALLOWED),
    ("alice", "post", "/admin/keys", {"team": "blue", "team_owned": True}, (403, "team_admin_only")),
    ("bob", "post", "/admin/keys", {"team": "red", "team_owned": True}, (403, "team_admin_only")),
    ("bob", "post", "/admin/keys", {"team": "blue"}, (403, "not_your_team")),
    ("dave", "post", "/admin/keys", {"team": "red"}, (403, "not_your_team")),
    ("bob", "post", "/admin/keys", {"owner": "{alice}"}, (403, "admin_only")),
    ("alice", "get", "/admin/keys/{red-team}", None, ALLOWED),
    ("alice", "get", "/admin/keys/{bob-red}", None, ALLOWED),
    ("alice", "get", "/admin/keys/{bob-own}", None, (403, "not_key_owner")),
    ("alice", "get", "/admin/keys/{carol-blue}", None, (403, "not_key_owner")),
    ("bob", "get", "/admin/keys/{red-team}", None, (403, "not_key_owner")),
    ("carol", "get", "/admin/keys/{bob-red}", None, (403, "not_key_owner")),
    ("alice", "patch", "/admin/keys/{bob-red}", {"monthly_budget_usd": "5"}, ALLOWED),
    ("alice", "patch", "/admin/keys/{red-team}", {"monthly_budget_usd": "500"}, (403, "above_team_budget")),
    ("alice", "patch", "/admin/keys/{red-team}", {"monthly_budget_usd": None}, (403, "above_team_budget")),
    ("alice", "patch", "/admin/keys/{blue-team}", {"monthly_budget_usd": "5"}, (403, "not_key_owner")),
    ("bob", "patch", "/admin/keys/{bob-red}", {"team": "blue"}, (403, "not_your_team")),
    ("alice", "patch", "/admin/keys/{bob-own}", {"team": "red"}, (403, "not_key_owner")),
    ("alice", "post", "/admin/keys/{red-team}/rotate", {}, ALLOWED),
    ("alice", "post", "/admin/keys/{bob-red}/rotate", {}, (403, "not_key_owner")),
    ("bob", "post", "/admin/keys/{bob-red}/rotate", {}, ALLOWED),
    ("alice", "post", "/admin/keys/{bob-red}/revoke", {}, ALLOWED),
    ("carol", "post", "/admin/keys/{bob-red}/revoke", {}, (403, "not_key_owner")),
    ("alice", "get", "/admin/keys?team=red", None, ALLOWED),
    ("alice", "get", "/admin/keys?team=blue", None, (403, "team_admin_only")),
    ("bob", "get", "/admin/keys?team=red", None, (403, "team_admin_only")),
    ("alice", "get", "/admin/keys/{bob-red}/audit", None, ALLOWED),
    ("carol", "get", "/admin/keys/{bob-red}/audit", None, (403, "not_key_owner")),
    # Budgets of people: a team's admin sets its members', up to the team's budget, never their own
    ("alice", "put", "/admin/owners/{bob}/budget", {"monthly_budget_usd": "5"}, ALLOWED),
    ("alice", "put", "/admin/owners/{bob}/budget", {"monthly_budget_usd": "500"}, (403, "above_team_budget")),
    ("alice", "put", "/admin/owners/{bob}/budget", {"monthly_budget_usd": None}, (403, "above_team_budget")),
    ("alice", "put", "/admin/owners/me/budget", {"monthly_budget_usd": "500"}, (403, "own_budget")),
    ("alice", "put", "/admin/owners/{carol}/budget", {"monthly_budget_usd": "5"}, (403, "admin_only")),
    ("bob", "put", "/admin/owners/{alice}/budget", {"monthly_budget_usd": "5"}, (403, "admin_only")),
    ("bob", "put", "/admin/owners/me/budget", {"monthly_budget_usd": "500"}, (403, "own_budget")),
    ("alice", "get", "/admin/owners/{bob}/budget", None, ALLOWED),
    ("alice", "get", "/admin/owners/{carol}/budget", None, (403, "admin_only")),
    # Usage: a team's for its admins; a member reads their own (and the team's totals above)
    ("alice", "get", "/admin/usage?team=red", None, ALLOWED),
    ("alice", "get", "/admin/usage?team=blue", None, (403, "team_admin_only")),
    ("bob", "get", "/admin/usage?team=red", None, (403, "team_admin_only")),
    ("bob", "get", "/admin/usage", None, ALLOWED),
    ("bob", "get", "/admin/usage?owner={alice}", None, (403, "admin_only")),
    # People: admins; a team's admin may look at its members; anyone at themselves
    ("alice", "get", "/admin/people/{bob}", None, ALLOWED),
    ("alice", "get", "/admin/people/{carol}", None, (403, "not_your_team")),
    ("bob", "get", "/admin/people/{alice}", None, (403, "not_your_team")),
    ("bob", "get", "/admin/people/{bob}", None, ALLOWED),
    ("alice", "post", "/admin/people/{bob}/disable", {}, (403, "admin_only")),
    ("alice", "patch", "/admin/people/{alice}", {"admin": True}, (403, "admin_only")),
    ("alice", "post", "/admin/people", {"email": "x@example.com", "team": "red"}, (403, "admin_only")),
    ("alice", "get", "/admin/teams/red/audit", None, ALLOWED),
    ("bob", "get", "/admin/teams/red/audit", None, (403, "team_admin_only")),
]


def _fill(text: str, world: World) -> str:
    for name, key in world.keys.items():
        text = text.replace("{" + name + "}", key["key_id"])
    for name, email in world.email.items():
        text = text.replace("{" + name + "}", email)
    return text


def _snapshot(world: World) -> Any:
    """What a refusal must not change: teams, memberships, keys, budgets."""
    table = wiring.directory()._table
    items = table.scan()["Items"]
    keys = wiring.key_store()._table.scan()["Items"]
    return sorted(map(repr, items)), sorted(repr({k: v for k, v in i.items() if k != "last_used_at"}) for i in keys)


def _call(world: World, role: str, method: str, path: str, body: Any) -> Any:
    filled_body = None if body is None else {k: _fill(v, world) if isinstance(v, str) else v for k, v in body.items()}
    return world.api[role].call(method, _fill(path, world), filled_body)


ALLOWED_ROWS = [row for row in MATRIX if row[4] == ALLOWED]
REFUSED_ROWS = [row for row in MATRIX if row[4] != ALLOWED]


@pytest.mark.parametrize(("role", "method", "path", "body", "expected"), ALLOWED_ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in ALLOWED_ROWS])  # fmt: skip
def test_what_each_role_may_do(world: World, role: str, method: str, path: str, body: Any, expected: Any) -> None:
    response = _call(world, role, method, path, body)
    assert response.status_code in (200, 201), response.body


def test_what_each_role_may_not_do_is_refused_and_changes_nothing(world: World) -> None:
    # Refusals change nothing (checked after each), so they share one world.
    wrong = []
    for role, method, path, body, (status, code) in REFUSED_ROWS:
        before = _snapshot(world)
        response = _call(world, role, method, path, body)
        error = response.json_body.get("error", {}) if isinstance(response.json_body, dict) else {}
        if (response.status_code, error.get("code")) != (status, code):
            wrong.append(f"{role} {method} {path}: {response.status_code} {error.get('code')}, not {status} {code}")
        elif _snapshot(world) != before:
            wrong.append(f"{role} {method} {path}: refused, but something changed")
    assert wrong == []
    assert len(REFUSED_ROWS) > 40


def test_a_member_cannot_widen_their_own_rights_through_any_team_route(world: World) -> None:
    # bob tries every way up: promote himself, join another team, take a team key's secret, raise his budget
    bob = world.api["bob"]
    attempts = [
        bob.call("patch", f"/admin/teams/red/members/{world.email['bob']}", {"role": "admin"}),
        bob.call("post", "/admin/teams/blue/members", {"person": world.email["bob"]}),
        bob.call("post", f"/admin/keys/{world.keys['red-team']['key_id']}/rotate", {}),
        bob.call("put", "/admin/owners/me/budget", {"monthly_budget_usd": "1000"}),
        bob.call("patch", f"/admin/people/{world.email['bob']}", {"admin": True}),
        bob.call("post", "/admin/keys", {"team": "red", "team_owned": True}),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts)
    assert bob.call("get", "/admin/teams/red").json_body["your_role"] == "member"
