"""People: invitations, off-boarding that stops keys at once, the sweep, defaults that bind, and bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import errors, wiring
from chalicelib.shared import scopes
from tests.admin_fixtures import Api
from tests.cognito_helpers import User, add_user, sign_in
from tests.stream_client import StreamClient
from tests.test_admin import assert_error


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()


def chat(secret: str, max_tokens: int = 20) -> Any:
    return StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "max_tokens": max_tokens,
                         "messages": [{"role": "user", "content": "hi"}]}),
    )  # fmt: skip


def refusal(secret: str) -> errors.AuthenticationFailed:
    with pytest.raises(errors.AuthenticationFailed) as caught:
        wiring.key_store().authenticate({"Authorization": f"Bearer {secret}"})
    return caught.value


def works(secret: str) -> bool:
    return wiring.key_store().authenticate({"Authorization": f"Bearer {secret}"}) is not None


def test_an_invitation_creates_the_user_and_locally_hands_over_the_temporary_password(
    as_admin: Api, admin_client, cognito, pool
) -> None:
    # WHEN an admin invites someone
    invited = as_admin.call("post", "/admin/people", {"email": "dora@example.com"})
    assert invited.status_code == 201, invited.body
    person = invited.json_body
    assert (person["email"], person["status"], person["admin"], person["teams"]) == (
        "dora@example.com", "active", False, [],
    )  # fmt: skip
    # THEN Cognito has the user, who must choose a password at first sign-in (locally: the one in the answer)
    user = cognito.admin_get_user(UserPoolId=pool.user_pool_id, Username="dora@example.com")
    assert user["UserStatus"] == "FORCE_CHANGE_PASSWORD"
    started = cognito.initiate_auth(
        ClientId=pool.client_id, AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "dora@example.com", "PASSWORD": person["temporary_password"]},
    )  # fmt: skip
    assert started["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    # AND the invitation is audited, and the default budget binds the new person from the start
    events = as_admin.call("get", "/admin/people/dora@example.com/audit").json_body["data"]
    assert [e["action"] for e in events] == ["invited"] and events[0]["details"]["monthly_budget_usd"] == "10"
    assert person["monthly_budget_usd"] == "10"
    # AND inviting the same e-mail again is refused; so is nonsense
    assert_error(as_admin.call("post", "/admin/people", {"email": "dora@example.com"}), 409, "person_exists")
    for body, param in [
        ({"email": "not-an-address"}, "email"),
        ({"email": "evil\x1b[2J@example.com"}, "email"),
        ({"email": "x@example.com", "role": "owner"}, "role"),
        ({"email": "x@example.com", "admin": "yes"}, "admin"),
        ({"email": "x@example.com", "team": "no-such-team"}, "team"),
        ({"email": "x@example.com", "monthly_budget_usd": "-3"}, "monthly_budget_usd"),
    ]:
        assert_error(as_admin.call("post", "/admin/people", body), 400 if param != "team" else 404, param=param)
    listed = as_admin.call("get", "/admin/people").json_body["data"]
    assert "x@example.com" not in [p["email"] for p in listed]  # nothing half-made


def test_only_admins_manage_people(as_alice: Api, bob: User) -> None:
    assert_error(as_alice.call("get", "/admin/people"), 403, "admin_only")
    assert_error(as_alice.call("post", "/admin/people", {"email": "z@example.com"}), 403, "admin_only")
    for verb in ("disable", "enable"):
        assert_error(as_alice.call("post", f"/admin/people/{bob.email}/{verb}"), 403, "admin_only")
    assert_error(as_alice.call("delete", f"/admin/people/{bob.email}"), 403, "admin_only")
    assert_error(as_alice.call("patch", f"/admin/people/{bob.email}", {"admin": True}), 403, "admin_only")
    assert_error(as_alice.call("get", f"/admin/people/{bob.email}"), 403, "not_your_team")
    assert as_alice.call("get", "/admin/people/alice@example.com").json_body["email"] == "alice@example.com"


def test_disabling_a_person_stops_their_personal_keys_at_once_and_enabling_restores_the_active_ones(
    as_admin: Api, as_alice: Api, alice: User, bedrock, admin_client, cognito, pool
) -> None:
    # GIVEN alice with three personal keys (one she revokes) and a team key her team owns
    as_admin.call("post", "/admin/teams", {"name": "Red"})
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    mine = [as_alice.call("post", "/admin/keys", {"name": f"k{n}"}).json_body for n in range(3)]
    as_alice.call("post", f"/admin/keys/{mine[2]['key_id']}/revoke")
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body
    assert chat(mine[0]["secret"]).status_code == 200
    # WHEN an admin disables her
    disabled = as_admin.call("post", f"/admin/people/{alice.email}/disable", {"reason": "left the company"})
    assert disabled.status_code == 200, disabled.body
    assert disabled.json_body["status"] == "disabled"
    # THEN her keys' next request is a 401 saying why; the team's own key keeps working
    answer = chat(mine[0]["secret"])
    assert answer.status_code == 401
    error = json.loads(answer.body)["error"]
    assert error["code"] == "owner_disabled" and "owner is disabled" in error["message"]
    assert refusal(mine[1]["secret"]).code == "owner_disabled"
    assert works(team_key["secret"]) and chat(team_key["secret"]).status_code == 200
    # AND her admin token stops too, and the key list says which keys are disabled
    assert_error(as_alice.call("get", "/admin/keys"), 401)
    listed = as_admin.call("get", f"/admin/keys?owner={alice.sub}").json_body["data"]
    statuses = {k["key_id"]: k["status"] for k in listed}
    assert statuses == {mine[0]["key_id"]: "disabled", mine[1]["key_id"]: "disabled", mine[2]["key_id"]: "revoked"}
    # AND every step is audited: the person (with the keys) and each key
    person_events = as_admin.call("get", f"/admin/people/{alice.sub}/audit").json_body["data"]
    assert person_events[-1]["action"] == "disabled"
    assert sorted(person_events[-1]["details"]["keys"]) == sorted(k["key_id"] for k in mine[:2])
    assert person_events[-1]["details"]["reason"] == "left the company"
    key_events = as_admin.call("get", f"/admin/keys/{mine[0]['key_id']}/audit").json_body["data"]
    assert [e["action"] for e in key_events][-2:] == ["owner_disabled", "disabled_use"]
    # AND no new key can be made for her meanwhile
    assert_error(as_admin.call("post", "/admin/keys", {"owner": alice.email}), 409, "person_disabled")
    # WHEN she is enabled again THEN the keys that were active work again; the revoked one does not
    enabled = as_admin.call("post", f"/admin/people/{alice.email}/enable")
    assert enabled.json_body["status"] == "active"
    assert works(mine[0]["secret"]) and works(mine[1]["secret"])
    assert refusal(mine[2]["secret"]).code == "revoked_api_key"
    again = Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])
    assert again.call("get", "/admin/keys").status_code == 200


def test_removing_a_person_takes_them_off_the_pool_and_their_teams(as_admin: Api, as_alice: Api, alice: User) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Red"})
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email})
    key = as_alice.call("post", "/admin/keys", {"team": "red"}).json_body
    removed = as_admin.call("delete", f"/admin/people/{alice.email}", {"reason": "contract ended"})
    assert removed.json_body["status"] == "removed" and removed.json_body["teams"] == []
    assert refusal(key["secret"]).code == "owner_disabled"
    assert as_admin.call("get", "/admin/teams/red").json_body["members"] == []
    # she cannot be enabled (invite her again instead), and is still listed by her sub, for the record
    assert_error(as_admin.call("post", f"/admin/people/{alice.sub}/enable"), 409, "person_removed")
    assert as_admin.call("get", f"/admin/people/{alice.sub}").json_body["status"] == "removed"


def test_the_last_admin_cannot_be_removed_disabled_or_demoted_nor_anyone_themselves(
    as_admin: Api, admin: User, cognito, pool, admin_client
) -> None:
    assert_error(as_admin.call("post", f"/admin/people/{admin.email}/disable"), 409, "self_change")
    assert_error(as_admin.call("delete", f"/admin/people/{admin.email}"), 409, "self_change")
    assert_error(as_admin.call("patch", f"/admin/people/{admin.email}", {"admin": False}), 409, "last_admin")
    # WITH a second admin, the first can be demoted, by the second; and the second is then the last
    second = add_user(cognito, pool, "second@example.com", admin=True)
    as_second = Api(admin_client, sign_in(cognito, pool, second)["IdToken"])
    assert as_second.call("patch", f"/admin/people/{admin.email}", {"admin": False}).json_body["admin"] is False
    assert_error(as_second.call("patch", f"/admin/people/{second.email}", {"admin": False}), 409, "last_admin")
    assert_error(as_admin.call("get", "/admin/people"), 403, "admin_only")  # demoted: the very next call


def test_people_disabled_or_deleted_in_cognito_directly_are_noticed_by_the_sweep(
    as_admin: Api, as_alice: Api, as_bob: Api, alice: User, bob: User, cognito, pool
) -> None:
    # GIVEN keys of alice and bob, and a user created outside the product
    alices = as_alice.call("post", "/admin/keys", {}).json_body
    bobs = as_bob.call("post", "/admin/keys", {}).json_body
    outsider = add_user(cognito, pool, "outsider@example.com")
    as_admin.call("get", "/admin/people")  # (the admin has appeared by signing in)
    # WHEN someone disables alice and deletes bob with the AWS console, not the product
    cognito.admin_disable_user(UserPoolId=pool.user_pool_id, Username=alice.email)
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=bob.email)
    assert works(alices["secret"])  # (nothing noticed yet)
    # THEN the sweep off-boards them, and enters the outsider with the default budget
    result = wiring.people_service().sweep()
    assert (result["disabled"], result["removed"], result["appeared"]) == (1, 1, 1)
    assert refusal(alices["secret"]).code == "owner_disabled"
    assert refusal(bobs["secret"]).code == "owner_disabled"
    people = {p["email"]: p for p in as_admin.call("get", "/admin/people").json_body["data"]}
    assert (people[alice.email]["status"], people[bob.email]["status"]) == ("disabled", "removed")
    assert people[outsider.email]["monthly_budget_usd"] == "10"
    swept = as_admin.call("get", f"/admin/people/{alice.sub}/audit").json_body["data"][-1]
    assert swept["actor"]["kind"] == "system" and swept["details"]["reason"] == "disabled in the user pool"
    # AND a second sweep finds nothing more to do (and an admin may run it through the API)
    assert as_admin.call("post", "/admin/people/sweep").json_body == {
        "object": "sweep", "pool_users": 3, "appeared": 0, "disabled": 0, "removed": 0,
    }  # fmt: skip


def test_a_plain_user_cannot_spend_without_a_bound_unless_an_admin_chose_so(
    as_admin: Api, admin_client, cognito, pool, bedrock, monkeypatch
) -> None:
    # GIVEN a deployment whose people start with a tiny budget
    monkeypatch.setenv("PENNYWORTH_DEFAULT_PERSON_BUDGET_USD", "0.00002")
    wiring.reset()
    newcomer = add_user(cognito, pool, "new@example.com")
    as_new = Api(admin_client, sign_in(cognito, pool, newcomer)["IdToken"])
    # WHEN they make a key with no budget of its own and spend
    key = as_new.call("post", "/admin/keys", {}).json_body
    assert key["monthly_budget_usd"] is None
    statuses = [chat(key["secret"], max_tokens=100).status_code for _ in range(5)]
    # THEN their own (default) budget refuses them, and they cannot lift it themselves
    assert statuses[0] == 200 and 429 in statuses
    assert_error(as_new.call("put", "/admin/owners/me/budget", {"monthly_budget_usd": "100"}), 403, "own_budget")
    # AND an admin may choose no bound for them: that choice is kept (a default is applied once, never again)
    as_admin.call("put", f"/admin/owners/{newcomer.email}/budget", {"monthly_budget_usd": None})
    wiring.meter()._budgets.clear()
    assert chat(key["secret"], max_tokens=100).status_code == 200
    assert wiring.meter().owner_budget(newcomer.sub, fresh=True) is None
    events = as_admin.call("get", f"/admin/people/{newcomer.sub}/audit").json_body["data"]
    assert [e["action"] for e in events] == ["appeared", "budget_set"]


def test_a_disabled_persons_token_is_refused_even_where_cognito_was_not_told(
    as_admin: Api, alice: User, cognito, pool, admin_client
) -> None:
    token = sign_in(cognito, pool, alice)["IdToken"]
    as_alice = Api(admin_client, token)
    as_alice.call("get", "/admin/keys")  # alice appears
    # WHEN the directory has her disabled but Cognito still enabled (a disable half-way, say)
    wiring.directory().set_status(alice.sub, "disabled", actor="test", expected=("active",))
    wiring.people_service()._seen.clear()
    # THEN her token is refused on the admin API
    assert_error(Api(admin_client, token).call("get", "/admin/keys"), 401, "user_disabled")


def test_owner_budgets_in_the_directory_are_scoped_by_person(as_admin: Api, alice: User) -> None:
    as_admin.call("put", f"/admin/owners/{alice.email}/budget", {"monthly_budget_usd": "7"})
    assert wiring.meter().budget(scopes.owner(alice.sub), fresh=True) == Decimal("7")
    person = as_admin.call("get", f"/admin/people/{alice.email}").json_body
    assert person["monthly_budget_usd"] == "7"
