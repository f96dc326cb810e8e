"""``pennyworth teams`` and ``pennyworth users``: what they send, and what they print (escaped, or whole in a pipe)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import State, cli
from tests.test_cli_output import EVIL, assert_harmless, terminal_run

TEAM = {
    "object": "team", "id": "abcdefghijkl", "name": EVIL, "your_role": "admin", "created_at": "2026-11-01T00:00:00Z",
    "created_by": EVIL, "monthly_budget_usd": "50", "default_member_budget_usd": None, "period": "2026-11",
    "spent_usd": "12.5", "requests": 3, "remaining_usd": "37.5",
    "members": [{"object": "member", "team": "abcdefghijkl", "sub": "s1", "email": EVIL, "role": "admin",
                 "status": "active", "added_at": None, "added_by": EVIL}],
    "keys": {"total": 2, "active": 1, "team_owned": 1}, "guardrail": {"id": EVIL, "version": EVIL},
}  # fmt: skip
PERSON = {
    "object": "person", "sub": "s1", "email": "dora@example.com", "status": "active", "admin": False,
    "teams": [{"id": "abcdefghijkl", "name": EVIL, "role": "member"}], "monthly_budget_usd": "10",
    "keys": {"total": 0, "active": 0}, "created_at": None, "last_seen_at": None, "last_key_used_at": None,
    "last_activity_at": None, "temporary_password": "Pw1!Temporary-abc",
}  # fmt: skip


class Recorder:
    """The admin API as canned answers, remembering every call."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def _answer(self, method: str, path: str, body: Any) -> Any:
        self.calls.append((method, path, body))
        return self.answers[(method, path)]

    def get(self, path: str, params: Any = None) -> Any:
        return self._answer("GET", path, params)

    def post(self, path: str, body: Any = None) -> Any:
        return self._answer("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._answer("PATCH", path, body)

    def delete(self, path: str, params: Any = None, body: Any = None) -> Any:
        return self._answer("DELETE", path, params if body is None else body)

    def pages(self, path: str, params: Any = None) -> Any:
        yield self._answer("GET", path, params)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder({})
    monkeypatch.setattr(State, "client", lambda self: recorder)
    return recorder


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    ("args", "answers"),
    [
        (("teams", "list"), {("GET", "/admin/teams"): {"data": [TEAM]}}),
        (("teams", "show", "Platform Eng"), {("GET", "/admin/teams/Platform%20Eng"): TEAM}),
        (("users", "list"), {("GET", "/admin/people"): {"data": [PERSON]}}),
        (("users", "show", "dora@example.com"), {("GET", "/admin/people/dora@example.com"): PERSON}),
    ],
)
def test_every_output_escapes_untrusted_text_on_a_terminal(
    api: Recorder, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], answers: dict[Any, Any]
) -> None:
    api.answers.update(answers)
    assert_harmless(terminal_run(monkeypatch, *args), folded=True)


def test_an_invitation_prints_the_temporary_password_alone_on_the_last_line(api: Recorder) -> None:
    api.answers[("POST", "/admin/people")] = PERSON
    result = run("users", "invite", "dora@example.com", "--team", "Platform", "--team-admin", "--budget", "none")
    assert result.stdout.rstrip("\n").split("\n")[-1] == "Pw1!Temporary-abc"
    assert api.calls == [("POST", "/admin/people", {"email": "dora@example.com", "team": "Platform",
                                                    "role": "admin", "monthly_budget_usd": None})]  # fmt: skip
    assert CliRunner().invoke(cli, ["users", "invite", "x@example.com", "--team-admin"]).exit_code == 2


def test_commands_send_what_the_api_takes(api: Recorder) -> None:
    api.answers.update({
        ("POST", "/admin/teams"): TEAM,
        ("PATCH", "/admin/teams/a%2Fb"): TEAM,
        ("POST", "/admin/teams/Platform/members"): TEAM["members"][0],
        ("DELETE", "/admin/teams/Platform"): {"name": "Platform", "revoked_keys": ["k1"]},
        ("POST", "/admin/people/dora@example.com/disable"): PERSON,
        ("PATCH", "/admin/people/dora@example.com"): PERSON,
    })  # fmt: skip
    run("teams", "create", "Platform", "--budget", "50", "--member-budget", "none", "--json")
    run("teams", "budget", "a/b", "none", "--json")  # a name with a slash stays one path segment
    run("teams", "add", "Platform", "dora@example.com", "--admin", "--json")
    run("teams", "delete", "Platform", "--force", "--yes", "--json")
    run("users", "disable", "dora@example.com", "--yes", "--reason", "left", "--json")
    run("users", "admin", "dora@example.com", "off", "--json")
    assert api.calls == [
        ("POST", "/admin/teams", {"name": "Platform", "monthly_budget_usd": "50", "default_member_budget_usd": None}),
        ("PATCH", "/admin/teams/a%2Fb", {"monthly_budget_usd": None}),
        ("POST", "/admin/teams/Platform/members", {"person": "dora@example.com", "role": "admin"}),
        ("DELETE", "/admin/teams/Platform", {"force": "true"}),
        ("POST", "/admin/people/dora@example.com/disable", {"reason": "left"}),
        ("PATCH", "/admin/people/dora@example.com", {"admin": False}),
    ]


def test_a_teams_guardrail_is_set_by_id_and_version_or_cleared(api: Recorder) -> None:
    answer = {**TEAM, "name": "Red", "guardrail": {"id": "abc123", "version": "2"}, "notice": "1 key(s) … wins"}
    api.answers[("PATCH", "/admin/teams/Red")] = answer
    shown = run("teams", "guardrail", "Red", "abc123:2")
    assert "abc123 (version 2)" in shown.stdout
    run("teams", "guardrail", "Red", "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123", "--json")
    run("teams", "guardrail", "Red", "none", "--json")
    assert [call[2] for call in api.calls] == [
        {"guardrail": {"id": "abc123", "version": "2"}},
        {"guardrail": {"id": "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123", "version": "DRAFT"}},
        {"guardrail": None},
    ]
