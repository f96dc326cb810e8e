"""The issue's walkthrough, end to end on the real local stack: CLI for people, the openai SDK for requests.

An admin creates a team with a budget, invites two people and makes one of them the team's admin;
the team admin creates a team key and the member a personal key charged to the team; both are
used from the openai SDK until the team's budget refuses; the ledger (what the request log reads)
and ``pennyworth usage --group-by team`` agree to the last digit; disabling the member stops their
key at once.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import openai
import pytest
from click.testing import CliRunner

from cli.main import cli

pytestmark = pytest.mark.integration


def pw(*args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(cli, ["--local", *args], input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def pw_json(*args: str, input: str | None = None) -> Any:
    return json.loads(pw(*args, "--json", input=input).stdout)


def sign_in_as(email: str, temporary: str, chosen: str) -> None:
    """An invited person's first sign-in: the temporary password, then one of their own (twice)."""
    pw("logout")
    pw("login", "--username", email, input=f"{temporary}\n{chosen}\n{chosen}\n")


def test_a_team_from_invitation_to_refusal_to_off_boarding(project: Path, dev_info: dict[str, Any]) -> None:
    base_url = dev_info["base_url"]
    pw("login")
    # GIVEN an admin: a team with a small budget, two people invited into it, one of them its admin
    team = pw_json("teams", "create", "Platform", "--budget", "0.00003")
    assert (team["name"], team["monthly_budget_usd"]) == ("Platform", "0.00003")
    lead = pw_json("users", "invite", "lead@example.com", "--team", "Platform", "--team-admin")
    member = pw_json("users", "invite", "member@example.com", "--team", "platform")
    assert [t["role"] for t in lead["teams"]] == ["admin"] and [t["role"] for t in member["teams"]] == ["member"]
    assert lead["temporary_password"] and lead["monthly_budget_usd"] == "10"
    # WHEN the team admin creates the team's own key, and the member a personal key charged to the team
    sign_in_as("lead@example.com", lead["temporary_password"], "Pw1!Lead-chosen-42")
    team_key = pw_json("keys", "create", "--team", "Platform", "--team-key", "--name", "ci")
    sign_in_as("member@example.com", member["temporary_password"], "Pw1!Member-chosen-42")
    personal = pw_json("keys", "create", "--team", "Platform", "--name", "laptop")
    assert (team_key["team_owned"], personal["team_owned"]) == (True, False)
    # AND both are used from the openai SDK until the team's budget refuses
    told: list[Decimal] = []
    refusal = None
    for n in range(40):
        secret = (team_key, personal)[n % 2]["secret"]
        client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30)
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="nova-micro", max_tokens=100, messages=[{"role": "user", "content": f"hello {n}"}]
            )
        except openai.RateLimitError as exc:
            refusal = exc
            break
        told.append(Decimal(raw.headers["x-pennyworth-cost-usd"]))
        time.sleep(0.3)  # as people type: the aggregator swaps each reservation for its cost meanwhile
    assert refusal is not None and len(told) >= 2, told
    assert refusal.body["type"] == "insufficient_quota" and "team" in refusal.body["message"]
    billed = sum(told, Decimal(0))
    # THEN the ledger (the request log's source) and pennyworth usage --group-by team agree to the last digit
    pw("logout")
    pw("login")
    # (the stack is shared by the session: other tests' teams and usage are rows too)
    by_team = _settled(lambda: pw_json("usage", "--group-by", "team"), billed, team["id"])
    [row] = [r for r in by_team["data"] if r["group"] == team["id"]]
    assert (row["name"], Decimal(row["cost_usd"])) == ("Platform", billed)
    entries = _entries(dev_info, [team_key["key_id"], personal["key_id"]])
    assert len(entries) == len(told) and {e["team_id"] for e in entries} == {team["id"]}
    assert sum((Decimal(e["cost"]) for e in entries), Decimal(0)) == billed
    shown = pw("usage", "--group-by", "team").stdout
    assert "Platform" in shown
    # WHEN the admin disables the member THEN their key is refused at once, saying why
    pw("users", "disable", "member@example.com", "--yes", "--reason", "walkthrough")
    client = openai.OpenAI(base_url=base_url, api_key=personal["secret"], max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "still?"}])
    assert caught.value.body["code"] == "owner_disabled"
    people = {p["email"]: p for p in pw_json("users", "list")["data"]}
    assert people["member@example.com"]["status"] == "disabled"
    assert "owner_disabled" in [e["action"] for e in pw_json("keys", "audit", personal["key_id"])["data"]]


def _settled(read: Any, expected: Decimal, group: str) -> dict[str, Any]:
    """``read()`` once the aggregator has caught up on ``group``'s row (it trails billing by a fraction of a second)."""
    deadline = time.monotonic() + 15
    while True:
        report = read()
        cost = sum((Decimal(r["cost_usd"]) for r in report["data"] if r["group"] == group), Decimal(0))
        if cost >= expected or time.monotonic() > deadline:
            return report
        time.sleep(0.25)


def _entries(dev_info: dict[str, Any], key_ids: list[str]) -> list[dict[str, Any]]:
    table = boto3.resource(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=dev_info["aws_endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fixed local credentials
    ).Table("pennyworth-local-usage")
    found = []
    for key_id in key_ids:
        page = table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :req)",
            ExpressionAttributeValues={":pk": f"KEY#{key_id}", ":req": "REQ#"},
        )
        found += page["Items"]
    return found
