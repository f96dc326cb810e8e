"""Teams through the admin API: a shared budget, members and team admins, the team's own keys, bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors, wiring
from chalicelib.accounting.metering import worst_case_cost
from chalicelib.shared import scopes
from tests.admin_fixtures import Api
from tests.cognito_helpers import User, add_user, sign_in
from tests.stream_client import StreamClient
from tests.test_admin import assert_error


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()


def chat(secret: str, text: str = "hello", max_tokens: int = 50) -> Any:
    return StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "max_tokens": max_tokens,
                         "messages": [{"role": "user", "content": text}]}),
    )  # fmt: skip


def test_a_team_is_created_named_and_budgeted_by_admins(as_admin: Api, as_alice: Api) -> None:
    # GIVEN an admin creating a team with a budget and a default for its new members
    created = as_admin.call("post", "/admin/teams", {"name": "Platform", "monthly_budget_usd": "25.00",
                                                     "default_member_budget_usd": "5"})  # fmt: skip
    assert created.status_code == 201, created.body
    team = created.json_body
    assert (team["name"], team["monthly_budget_usd"], team["default_member_budget_usd"]) == ("Platform", "25", "5")
    assert team["spent_usd"] == "0" and team["remaining_usd"] == "25" and team["members"] == []
    # THEN it is found by id or by name (case aside), and listed
    assert as_admin.call("get", f"/admin/teams/{team['id']}").json_body["name"] == "Platform"
    assert as_admin.call("get", "/admin/teams/platform").json_body["id"] == team["id"]
    assert [t["name"] for t in as_admin.call("get", "/admin/teams").json_body["data"]] == ["Platform"]
    # AND it is renamed, and its budget changed, with every change in its audit log
    renamed = as_admin.call("patch", "/admin/teams/platform", {"name": "Platform Eng", "monthly_budget_usd": "30"})
    assert (renamed.json_body["name"], renamed.json_body["monthly_budget_usd"]) == ("Platform Eng", "30")
    events = as_admin.call("get", f"/admin/teams/{team['id']}/audit").json_body["data"]
    assert [e["action"] for e in events] == ["created", "budget_set", "updated"]
    assert events[2]["changes"]["name"] == {"from": "Platform", "to": "Platform Eng"}
    assert events[0]["subject"] == {"kind": "team", "id": team["id"]} and events[0]["key_id"] is None
    # AND a plain user can neither create nor rename one
    assert_error(as_alice.call("post", "/admin/teams", {"name": "Mine"}), 403, "admin_only")
    assert_error(as_alice.call("patch", "/admin/teams/platform eng", {"name": "x"}), 403, "admin_only")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "evil\x1b[2Jname"}, "name"),
        ({"name": "right\u202eto-left"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "monthly_budget_usd": "-1"}, "monthly_budget_usd"),
        ({"name": "ok", "monthly_budget_usd": "1.1234567"}, "monthly_budget_usd"),
        ({"name": "ok", "default_member_budget_usd": "lots"}, "default_member_budget_usd"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
def test_bad_team_input_is_a_400_naming_the_field(as_admin: Api, body: dict, param: str) -> None:
    error = assert_error(as_admin.call("post", "/admin/teams", body), 400, param=param)
    assert "\x1b" not in error["message"] and "\u202e" not in error["message"]
    assert as_admin.call("get", "/admin/teams").json_body["data"] == []  # nothing was created


def test_two_teams_cannot_share_a_name(as_admin: Api) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Data"})
    assert_error(as_admin.call("post", "/admin/teams", {"name": "data"}), 409, "team_name_taken")
    as_admin.call("post", "/admin/teams", {"name": "ML"})
    assert_error(as_admin.call("patch", "/admin/teams/ML", {"name": "DATA"}), 409, "team_name_taken")
    assert sorted(t["name"] for t in as_admin.call("get", "/admin/teams").json_body["data"]) == ["Data", "ML"]


def test_members_and_team_admins(as_admin: Api, admin_client, cognito, pool, alice: User, bob: User) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Red"})
    # WHEN an admin adds alice as team admin and bob as member
    added = as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    assert added.status_code == 201 and added.json_body["role"] == "admin"
    assert as_admin.call("post", "/admin/teams/red/members", {"person": bob.sub}).json_body["role"] == "member"
    # THEN adding a person twice is refused, and nothing changes
    assert_error(as_admin.call("post", "/admin/teams/red/members", {"person": bob.email}), 409, "already_member")
    as_alice = Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])
    as_bob = Api(admin_client, sign_in(cognito, pool, bob)["IdToken"])
    team = as_alice.call("get", "/admin/teams/red").json_body
    assert sorted((m["email"], m["role"]) for m in team["members"]) == [(alice.email, "admin"), (bob.email, "member")]
    # AND a member sees the team's totals, not who is on it; each sees their role
    mine = as_bob.call("get", "/admin/teams/red").json_body
    assert "members" not in mine and mine["your_role"] == "member" and mine["spent_usd"] == "0"
    assert [t["name"] for t in as_bob.call("get", "/admin/teams").json_body["data"]] == ["Red"]
    # AND the team admin cannot promote themselves (nor change their own role), and a member cannot promote anyone
    assert_error(as_alice.call("patch", f"/admin/teams/red/members/{alice.email}", {"role": "member"}), 403,
                 "self_change")  # fmt: skip
    assert_error(as_bob.call("patch", f"/admin/teams/red/members/{bob.email}", {"role": "admin"}), 403,
                 "team_admin_only")  # fmt: skip
    # AND the team admin changes bob's role, then takes him off the team
    changed = as_alice.call("patch", f"/admin/teams/red/members/{bob.email}", {"role": "admin"})
    assert changed.json_body["role"] == "admin"
    assert as_alice.call("delete", f"/admin/teams/red/members/{bob.email}").json_body["removed"] is True
    assert_error(as_alice.call("delete", f"/admin/teams/red/members/{bob.email}"), 404, "not_a_member")
    actions = [e["action"] for e in as_admin.call("get", "/admin/teams/red/audit").json_body["data"]]
    assert actions == ["created", "member_added", "member_added", "role_changed", "member_removed"]


def test_team_keys_and_members_keys_share_the_team_budget_until_it_refuses(
    as_admin: Api, admin_client, cognito, pool, alice: User, bob: User, bedrock, usage_table, drain
) -> None:
    # GIVEN a team whose budget covers a handful of requests, alice its admin, bob a member
    nova = wiring.catalog().resolve("nova-micro")
    budget = format((worst_case_cost(nova, 200, 50) * 5).quantize(Decimal("0.000001")), "f")
    assert as_admin.call("post", "/admin/teams", {"name": "Red", "monthly_budget_usd": budget}).status_code == 201
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    as_admin.call("post", "/admin/teams/red/members", {"person": bob.email})
    as_alice = Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])
    as_bob = Api(admin_client, sign_in(cognito, pool, bob)["IdToken"])
    # WHEN the team admin creates the team's own key and the member a personal key charged to the team
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True, "name": "ci"})
    assert team_key.status_code == 201, team_key.body
    assert (team_key.json_body["team_owned"], team_key.json_body["owner"]["email"]) == (True, None)
    personal = as_bob.call("post", "/admin/keys", {"team": "red", "name": "laptop"}).json_body
    assert (personal["team"], personal["team_owned"], personal["owner"]["email"]) == (
        team_key.json_body["team"], False, bob.email,
    )  # fmt: skip
    # THEN both spend the team's budget, until it refuses with a message naming the team
    answers = [chat(secret) for _ in range(8) for secret in (team_key.json_body["secret"], personal["secret"])]
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200 and 429 in statuses, statuses
    refusal = json.loads(answers[statuses.index(429)].body)["error"]
    assert refusal["type"] == "insufficient_quota" and "team Red, which this key is charged to" in refusal["message"]
    drain(usage_table)
    team = as_alice.call("get", "/admin/teams/red").json_body
    billed = sum((Decimal(a.headers["x-pennyworth-cost-usd"]) for a in answers if a.status_code == 200), Decimal(0))
    assert Decimal(team["spent_usd"]) == billed and Decimal(team["spent_usd"]) <= Decimal(team["monthly_budget_usd"])
    # AND the team's usage (its admin's view) agrees to the last digit, by key and by team
    by_key = as_alice.call("get", "/admin/usage?team=red&group_by=key").json_body
    assert Decimal(by_key["total"]["cost_usd"]) == billed and by_key["team"]["name"] == "Red"
    by_team = as_admin.call("get", "/admin/usage?group_by=team").json_body["data"]
    assert [(r["name"], Decimal(r["cost_usd"])) for r in by_team] == [("Red", billed)]
    # AND the team admin lists the team's keys; a member may not
    listed = as_alice.call("get", "/admin/keys?team=red").json_body["data"]
    assert sorted(k["name"] for k in listed) == ["ci", "laptop"]
    assert_error(as_bob.call("get", "/admin/keys?team=red"), 403, "team_admin_only")


def test_a_budget_set_below_this_months_spend_is_allowed_and_says_so(as_admin: Api, meter_budget_scope: Any) -> None:
    team = as_admin.call("post", "/admin/teams", {"name": "Red", "monthly_budget_usd": "10"}).json_body
    meter_budget_scope(team["id"], Decimal("3"))
    lowered = as_admin.call("patch", "/admin/teams/red", {"monthly_budget_usd": "2"})
    assert lowered.status_code == 200
    assert "already spent $3" in lowered.json_body["notice"] and "refused" in lowered.json_body["notice"]
    assert lowered.json_body["remaining_usd"] == "0"


@pytest.fixture
def meter_budget_scope(usage_table) -> Any:
    """Record ``spent`` as a team's cost this month, as the aggregator would have."""

    def spend(team_id: str, spent: Decimal) -> None:
        from datetime import UTC, datetime

        month = datetime.now(UTC).strftime("%Y-%m")
        usage_table.put_item(
            Item={**scopes.team(team_id).month(month), "type": "aggregate", "cost": spent, "committed": spent,
                  "billed": spent, "requests": 3}
        )  # fmt: skip

    return spend


def test_deleting_a_team_is_refused_while_it_has_keys_unless_forced(
    as_admin: Api, admin_client, cognito, pool, alice: User, bob: User
) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Red"})
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    as_admin.call("post", "/admin/teams/red/members", {"person": bob.email})
    as_alice = Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])
    as_bob = Api(admin_client, sign_in(cognito, pool, bob)["IdToken"])
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body
    bobs = as_bob.call("post", "/admin/keys", {"team": "red"}).json_body
    # WHEN an admin deletes the team: refused while keys are charged to it, and a team admin may not at all
    assert_error(as_admin.call("delete", "/admin/teams/red"), 409, "team_has_keys")
    assert_error(as_alice.call("delete", "/admin/teams/red?force=true"), 403, "admin_only")
    assert_error(as_admin.call("delete", "/admin/teams/red?force=maybe"), 400, param="force")
    # THEN with force the keys are revoked (audited), and the team, its name and memberships are gone
    deleted = as_admin.call("delete", "/admin/teams/red?force=true").json_body
    assert sorted(deleted["revoked_keys"]) == sorted([team_key["key_id"], bobs["key_id"]])
    store = wiring.key_store()
    for key in (team_key, bobs):
        with pytest.raises(errors.AuthenticationFailed, match="revoked"):
            store.authenticate({"Authorization": f"Bearer {key['secret']}"})
        audit = as_admin.call("get", f"/admin/keys/{key['key_id']}/audit").json_body["data"]
        [revoked] = [e for e in audit if e["action"] == "revoked"]
        assert "deleted" in revoked["details"]["reason"] and revoked["actor"]["email"] == "admin@example.com"
    assert_error(as_admin.call("get", "/admin/teams/red"), 404, "team_not_found")
    assert as_bob.call("get", "/admin/teams").json_body["data"] == []
    assert as_admin.call("post", "/admin/teams", {"name": "Red"}).status_code == 201  # the name is free again


def test_keys_move_between_their_owners_teams_and_leave_with_their_owner(
    as_admin: Api, admin_client, cognito, pool, bob: User
) -> None:
    for name in ("Red", "Blue"):
        as_admin.call("post", "/admin/teams", {"name": name})
    as_admin.call("post", "/admin/teams/red/members", {"person": bob.email})
    as_bob = Api(admin_client, sign_in(cognito, pool, bob)["IdToken"])
    key = as_bob.call("post", "/admin/keys", {"team": "red"}).json_body
    # WHEN bob charges it to a team he is not on: refused; to no team: fine; back to his team: fine
    assert_error(as_bob.call("patch", f"/admin/keys/{key['key_id']}", {"team": "blue"}), 403, "not_your_team")
    assert as_bob.call("patch", f"/admin/keys/{key['key_id']}", {"team": None}).json_body["team"] is None
    assert as_bob.call("patch", f"/admin/keys/{key['key_id']}", {"team": "red"}).json_body["team"] is not None
    # AND when he leaves the team, his key is charged to him alone (audited), not revoked
    left = as_admin.call("delete", f"/admin/teams/red/members/{bob.email}").json_body
    assert left["detached_keys"] == [key["key_id"]]
    now = as_bob.call("get", f"/admin/keys/{key['key_id']}").json_body
    assert (now["team"], now["status"]) == (None, "active")
    changes = [e["changes"] for e in as_bob.call("get", f"/admin/keys/{key['key_id']}/audit").json_body["data"]]
    assert changes[-1]["team_id"]["to"] is None
    # AND a team's own key never moves
    as_admin.call("post", "/admin/teams/blue/members", {"person": bob.email, "role": "admin"})
    owned = as_bob.call("post", "/admin/keys", {"team": "blue", "team_owned": True}).json_body
    assert_error(as_bob.call("patch", f"/admin/keys/{owned['key_id']}", {"team": None}), 400, param="team")


def test_new_members_start_with_the_teams_default_budget(as_admin: Api, cognito, pool) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Red", "default_member_budget_usd": "3.50"})
    invited = as_admin.call("post", "/admin/people", {"email": "dora@example.com", "team": "red"})
    assert invited.status_code == 201, invited.body
    assert invited.json_body["monthly_budget_usd"] == "3.5"
    assert invited.json_body["teams"][0]["name"] == "Red"
    # and someone invited to no team starts with the deployment's default
    other = as_admin.call("post", "/admin/people", {"email": "eve@example.com"}).json_body
    assert other["monthly_budget_usd"] == "10"
    add_user(cognito, pool, "unused@example.com")  # (users made outside the product appear by the sweep)
