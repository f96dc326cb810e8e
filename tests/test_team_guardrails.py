"""A team's guardrail: set by admins only, applied to every key charged to the team (key > team > model).

Through the admin API and the streaming function (the emulator plays Bedrock and its guardrails),
plus the per-function copy of a team's policy (``chalicelib/keys/teams.py``) with a fake clock:
no DynamoDB read on the request path when warm, every function current within 30 s.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from chalicelib import errors, wiring
from chalicelib.keys.teams import MAX_AGE_SECONDS, REFRESH_AFTER_SECONDS, TeamPolicies, TeamPolicy
from chalicelib.shared.guardrails import Guardrail
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID, add_guardrail
from tests.admin_fixtures import Api
from tests.cognito_helpers import User, sign_in
from tests.stream_client import StreamClient
from tests.test_admin import assert_error

DEMO = {"id": DEMO_GUARDRAIL_ID, "version": "1"}


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch, emulator_url: str) -> None:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_GUARDRAILS", f"{DEMO_GUARDRAIL_ID},teamtwo")
    add_guardrail("teamtwo")
    wiring.reset()


def chat(secret: str, text: str) -> Any:
    return StreamClient().post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        body=json.dumps({"model": "nova-micro", "max_tokens": 50, "messages": [{"role": "user", "content": text}]}),
    )


def red_team(as_admin: Api, admin_client: Any, cognito: Any, pool: Any, alice: User, bob: User) -> tuple[Api, Api]:
    """Team Red: alice its admin, bob a member; their APIs."""
    assert as_admin.call("post", "/admin/teams", {"name": "Red"}).status_code == 201
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    as_admin.call("post", "/admin/teams/red/members", {"person": bob.email})
    return (
        Api(admin_client, sign_in(cognito, pool, alice)["IdToken"]),
        Api(admin_client, sign_in(cognito, pool, bob)["IdToken"]),
    )


def test_a_team_guardrail_applies_to_its_keys_and_its_members_keys_billed(
    guarded: None, as_admin: Api, admin_client: Any, cognito: Any, pool: Any, alice: User, bob: User
) -> None:
    # GIVEN team Red with a team key and a member's key charged to it, and a key of bob's that is not
    as_alice, as_bob = red_team(as_admin, admin_client, cognito, pool, alice, bob)
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body["secret"]
    charged = as_bob.call("post", "/admin/keys", {"team": "red"}).json_body["secret"]
    alone = as_bob.call("post", "/admin/keys", {}).json_body["secret"]
    # WHEN an admin sets the team's guardrail
    set_ = as_admin.call("patch", "/admin/teams/red", {"guardrail": DEMO})
    assert set_.status_code == 200, set_.body
    assert set_.json_body["guardrail"] == DEMO
    # THEN calls with either team key are assessed at once on this function, the intervention billed
    for secret in (team_key, charged):
        answer = chat(secret, "Hi #emulator:guardrail=input")
        assert answer.status_code == 200, answer.body
        body = json.loads(answer.body)
        assert body["choices"][0]["finish_reason"] == "content_filter"
        assert body["usage"]["guardrail_text_units"] > 0 and float(body["usage"]["guardrail_cost_usd"]) > 0
    # AND a key not charged to the team carries no guardrail
    plain = json.loads(chat(alone, "Hi #emulator:guardrail=input").body)
    assert plain["choices"][0]["finish_reason"] == "stop" and "guardrail_text_units" not in plain["usage"]
    # AND the change is in the team's audit log, and a member sees the guardrail
    events = as_admin.call("get", "/admin/teams/red/audit").json_body["data"]
    assert events[-1]["action"] == "updated" and events[-1]["changes"]["guardrail"] == {"from": None, "to": DEMO}
    assert as_bob.call("get", "/admin/teams/red").json_body["guardrail"] == DEMO
    # AND cleared (null), calls charged to the team carry none again
    assert as_admin.call("patch", "/admin/teams/red", {"guardrail": None}).json_body["guardrail"] is None
    assert json.loads(chat(team_key, "Hi #emulator:guardrail=input").body)["choices"][0]["finish_reason"] == "stop"


def test_the_keys_own_guardrail_wins_over_the_teams_and_the_teams_over_the_models(
    guarded: None, monkeypatch: pytest.MonkeyPatch, as_admin: Api, admin_client: Any, cognito: Any, pool: Any,
    alice: User, bob: User,
) -> None:  # fmt: skip
    from local.bedrock_emulator import start_emulator

    server, url = start_emulator()
    try:
        monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", url)
        wiring.reset()
        # GIVEN nova-micro carries teamtwo:DRAFT, team Red the demo guardrail, one team key teamtwo:1 of its own
        as_alice, _ = red_team(as_admin, admin_client, cognito, pool, alice, bob)
        model = as_admin.call("patch", "/admin/models/nova-micro", {"guardrail": {"id": "teamtwo", "version": "DRAFT"}})
        assert model.status_code == 200, model.body
        assert as_admin.call("patch", "/admin/teams/red", {"guardrail": DEMO}).status_code == 200
        team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body
        own_fields = {"team": "red", "team_owned": True, "guardrail": {"id": "teamtwo", "version": "1"}}
        own = as_admin.call("post", "/admin/keys", own_fields).json_body
        other = as_admin.call("post", "/admin/keys", {}).json_body
        # WHEN each calls nova-micro
        for record in (team_key, own, other):
            assert chat(record["secret"], "hello").status_code == 200
        sent = [r.json().get("guardrailConfig") for r in server.requests if r.operation.startswith("converse")]
    finally:
        server.shutdown()
    # THEN the team key carries the team's, the key with its own that one, a key of no team the model's
    assert [(g["guardrailIdentifier"], g["guardrailVersion"]) for g in sent] == [
        (DEMO_GUARDRAIL_ID, "1"), ("teamtwo", "1"), ("teamtwo", "DRAFT"),
    ]  # fmt: skip


def test_only_admins_set_or_clear_a_teams_guardrail(
    guarded: None, as_admin: Api, admin_client: Any, cognito: Any, pool: Any, alice: User, bob: User
) -> None:
    as_alice, as_bob = red_team(as_admin, admin_client, cognito, pool, alice, bob)
    as_admin.call("patch", "/admin/teams/red", {"guardrail": DEMO})
    # A team admin may neither clear it, swap it, nor set it with another change; a member neither
    assert_error(as_alice.call("patch", "/admin/teams/red", {"guardrail": None}), 403, "admin_only")
    assert_error(as_alice.call("patch", "/admin/teams/red", {"guardrail": {"id": "teamtwo", "version": "1"}}), 403,
                 "admin_only")  # fmt: skip
    assert_error(as_alice.call("patch", "/admin/teams/red", {"default_member_budget_usd": "1", "guardrail": None}),
                 403, "admin_only")  # fmt: skip
    assert_error(as_bob.call("patch", "/admin/teams/red", {"guardrail": None}), 403, "admin_only")
    # Nor route around it with a key's own guardrail (which would win over the team's)
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body
    assert_error(as_alice.call("patch", f"/admin/keys/{team_key['key_id']}", {"guardrail": {"id": "teamtwo"}}), 403,
                 "team_guardrail")  # fmt: skip
    assert_error(as_bob.call("post", "/admin/keys", {"team": "red", "guardrail": {"id": "teamtwo"}}), 403,
                 "team_guardrail")  # fmt: skip
    mine = as_bob.call("post", "/admin/keys", {"guardrail": {"id": "teamtwo"}}).json_body
    assert_error(as_bob.call("patch", f"/admin/keys/{mine['key_id']}", {"team": "red"}), 403, "team_guardrail")
    # AND nothing changed
    assert as_admin.call("get", "/admin/teams/red").json_body["guardrail"] == DEMO
    assert as_admin.call("get", f"/admin/keys/{mine['key_id']}").json_body["team"] is None
    actions = [e["action"] for e in as_admin.call("get", "/admin/teams/red/audit").json_body["data"]]
    assert actions.count("updated") == 1
    # An admin may; and the answer names keys of the team whose own guardrail wins
    assert as_admin.call("patch", f"/admin/keys/{mine['key_id']}", {"team": "red"}).status_code == 200
    again = as_admin.call("patch", "/admin/teams/red", {"guardrail": {"id": DEMO_GUARDRAIL_ID, "version": "DRAFT"}})
    assert again.json_body["keys_with_own_guardrail"] == [mine["key_id"]] and "wins over" in again.json_body["notice"]


def test_a_team_is_created_with_a_guardrail_by_an_admin_audited(guarded: None, as_admin: Api, as_alice: Api) -> None:
    created = as_admin.call("post", "/admin/teams", {"name": "Blue", "guardrail": DEMO})
    assert created.status_code == 201 and created.json_body["guardrail"] == DEMO
    event = as_admin.call("get", "/admin/teams/blue/audit").json_body["data"][0]
    assert event["action"] == "created" and event["details"]["guardrail"] == DEMO
    assert_error(as_admin.call("post", "/admin/teams", {"name": "Green", "guardrail": {"id": "Bad!"}}), 400,
                 param="guardrail.id")  # fmt: skip
    assert_error(as_alice.call("post", "/admin/teams", {"name": "Mine", "guardrail": DEMO}), 403, "admin_only")


@pytest.mark.parametrize(
    ("guardrail", "param", "code"),
    [
        ({"id": "evil\x1b[2J", "version": "1"}, "guardrail.id", None),
        ({"id": "a" * 65, "version": "1"}, "guardrail.id", None),
        ({"id": "abc\u202e", "version": "1"}, "guardrail.id", None),
        ({"id": DEMO_GUARDRAIL_ID, "version": "1\n"}, "guardrail.version", None),
        ({"id": DEMO_GUARDRAIL_ID, "version": "0"}, "guardrail.version", None),
        ({"id": DEMO_GUARDRAIL_ID, "version": "123456789"}, "guardrail.version", None),
        ({"id": DEMO_GUARDRAIL_ID, "colour": "red"}, "guardrail", None),
        ("pennyworthdemo:1", "guardrail", None),
        ({"id": "notlisted", "version": "1"}, "guardrail", "guardrail_not_allowed"),
        ({"id": DEMO_GUARDRAIL_ID, "version": "7"}, "guardrail", "guardrail_not_found"),
    ],
)
def test_a_bad_team_guardrail_is_a_400_naming_the_field(
    guarded: None, as_admin: Api, guardrail: Any, param: str, code: str | None
) -> None:
    as_admin.call("post", "/admin/teams", {"name": "Red"})
    error = assert_error(as_admin.call("patch", "/admin/teams/red", {"guardrail": guardrail}), 400, code, param=param)
    assert "\x1b" not in error["message"] and "\u202e" not in error["message"] and "\n" not in error["message"]
    assert as_admin.call("get", "/admin/teams/red").json_body["guardrail"] is None


# -- the per-function copy -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reader:
    """A team table that counts its reads; ``fail`` makes them raise."""

    def __init__(self) -> None:
        self.guardrail: dict[str, str] | None = DEMO
        self.reads = 0
        self.fail = False
        self.done = threading.Event()

    def __call__(self, team_id: str) -> dict[str, Any]:
        self.reads += 1
        try:
            if self.fail:
                raise OSError("DynamoDB did not answer")
            return {"team_id": team_id, "guardrail": self.guardrail} if self.guardrail else {"team_id": team_id}
        finally:
            self.done.set()


def test_a_warm_function_reads_a_team_once_then_refreshes_it_off_the_request_path() -> None:
    clock, reader = Clock(), Reader()
    policies = TeamPolicies(reader, monotonic=clock)
    # A cold function reads the team once; later requests within REFRESH_AFTER_SECONDS read nothing
    assert policies("t1").guardrail == Guardrail(DEMO_GUARDRAIL_ID, "1") and reader.reads == 1
    clock.now += REFRESH_AFTER_SECONDS - 0.1
    assert policies("t1").guardrail is not None and reader.reads == 1
    # An admin clears it elsewhere; an older copy is served while a background read picks the change up
    reader.guardrail = None
    clock.now += 1
    reader.done.clear()
    assert policies("t1").guardrail is not None
    assert reader.done.wait(5) and reader.reads == 2
    assert _settled(lambda: policies("t1").guardrail is None)
    # A copy MAX_AGE_SECONDS old is never served: it is read first
    reader.guardrail = DEMO
    clock.now += MAX_AGE_SECONDS
    assert policies("t1").guardrail is not None and reader.reads == 3


def test_a_team_that_must_be_read_and_cannot_be_fails_closed_and_the_admins_change_applies_at_once() -> None:
    clock, reader = Clock(), Reader()
    policies = TeamPolicies(reader, monotonic=clock)
    reader.fail = True
    with pytest.raises(errors.ServiceUnavailable) as raised:
        policies("t1")
    assert raised.value.code == "team_unavailable"
    # The admin's own function holds what the admin set, without reading
    policies.remember(TeamPolicy("t1", Guardrail("teamtwo", "2")))
    assert policies("t1").guardrail == Guardrail("teamtwo", "2") and reader.reads == 1
    # A background read that fails keeps the copy until it is too old
    clock.now += REFRESH_AFTER_SECONDS + 1
    reader.done.clear()
    assert policies("t1").guardrail == Guardrail("teamtwo", "2")
    assert reader.done.wait(5)
    clock.now += MAX_AGE_SECONDS
    with pytest.raises(errors.ServiceUnavailable):
        policies("t1")


def _settled(check: Any) -> bool:
    import time

    for _ in range(100):
        if check():
            return True
        time.sleep(0.02)
    return False
