"""The ``pennyworth`` CLI end to end against the real local stack, as the README tells a newcomer."""

from __future__ import annotations

import csv
import json
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import boto3
import openai
import pytest
from click.testing import CliRunner

from cli.main import cli
from local import bootstrap

pytestmark = pytest.mark.integration


def pw(*args: str, input: str | None = None, ok: bool = True) -> Any:
    result = CliRunner().invoke(cli, ["--local", *args], input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def pw_json(*args: str) -> Any:
    return json.loads(pw(*args, "--json").stdout)


def chat(base_url: str, secret: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "hello"}])
    return reply.choices[0].message.content


def refused(base_url: str, secret: str) -> bool:
    try:
        chat(base_url, secret)
    except openai.AuthenticationError:
        return True
    return False


def test_login_create_use_rotate_revoke_and_audit(project: Path, dev_info: dict[str, Any]) -> None:
    base_url = dev_info["base_url"]
    # log in as the stack's admin (dev.json supplies the password)
    pw("login")
    tokens = project / ".pennyworth" / "tokens.json"  # the local stack's session, beside its dev.json
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    assert not (project / "config" / "tokens.json").exists()
    # create a key and use it with the openai SDK
    key = pw_json("keys", "create", "--name", "e2e", "--budget", "25.00", "--rpm", "60", "--model", "nova-micro")
    assert key["monthly_budget_usd"] == "25" and key["allowed_models"] == ["nova-micro"]
    assert "You said" in chat(base_url, key["secret"])
    # human output shows the secret once on stdout and the warning on stderr
    human = pw("keys", "show", key["key_id"])
    assert key["key_id"] in human.stdout and key["secret"] not in human.output
    # rotate without grace: the old secret stops at once
    rotated = pw_json("keys", "rotate", key["key_id"])
    assert refused(base_url, key["secret"]) and "You said" in chat(base_url, rotated["secret"])
    # rotate with grace: both work until the grace ends
    graced = pw_json("keys", "rotate", key["key_id"], "--grace", "1h")
    assert graced["previous_secret_valid_until"]
    assert "You said" in chat(base_url, rotated["secret"]) and "You said" in chat(base_url, graced["secret"])
    # revoke: the very next request is refused
    revoked = pw_json("keys", "revoke", key["key_id"], "--yes", "--reason", "e2e done")
    assert revoked["status"] == "revoked"
    assert refused(base_url, graced["secret"]) and refused(base_url, rotated["secret"])
    # the audit log shows each step, with the admin as actor, and no secret anywhere
    events = pw_json("keys", "audit", key["key_id"])["data"]
    assert [e["action"] for e in events] == ["created", "rotated", "rotated", "revoked", "revoked_use"]
    assert {e["actor"]["email"] for e in events[:4]} == {dev_info["admin_username"]}
    assert events[2]["details"]["grace_seconds"] == 3600 and events[3]["details"] == {"reason": "e2e done"}
    dumped = json.dumps(events)
    assert all(s.split("-")[-1] not in dumped for s in (key["secret"], rotated["secret"], graced["secret"]))
    table = pw("keys", "audit", key["key_id"]).stdout
    assert "revoked_use" in table and "rotated" in table
    # the day's audit (admins) has them too, and the listing shows the key as revoked
    day = pw_json("keys", "audit")["data"]
    assert {e["id"] for e in events} <= {e["id"] for e in day}
    listed = pw_json("keys", "list", "--status", "revoked", "--all")["data"]
    assert key["key_id"] in {k["key_id"] for k in listed}
    # logging out ends the session
    pw("logout")
    result = pw("keys", "list", ok=False)
    assert result.exit_code == 1 and "not logged in" in result.output


def test_plain_user_manages_only_their_own_keys(project: Path, dev_info: dict[str, Any]) -> None:
    cognito = boto3.client(
        "cognito-idp",
        region_name=dev_info["cognito"]["region"],
        endpoint_url=dev_info["cognito"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    email, password = f"dev-{secrets.token_hex(4)}@example.com", f"Pw1!{secrets.token_urlsafe(12)}"
    bootstrap.create_user(cognito, dev_info["cognito"]["user_pool_id"], email, password)
    result = pw("login", "--username", email, "--password-stdin", input=password + "\n")
    assert email in result.output
    mine = pw_json("keys", "create", "--name", "self-service")
    assert mine["owner"]["email"] == email
    assert [k["key_id"] for k in pw_json("keys", "list")["data"]] == [mine["key_id"]]
    denied = pw("keys", "show", dev_info["key_id"], ok=False)
    assert denied.exit_code == 1 and "Permission denied" in denied.output
    invalid = pw("keys", "update", mine["key_id"], "--rpm", "lots", ok=False)
    assert invalid.exit_code == 1 and "Invalid request (rpm_limit)" in invalid.output
    assert pw("login", "--username", email, "--password-stdin", input="wrong\n", ok=False).exit_code == 1


def test_bulk_import_of_1000_keys_with_bad_rows_then_export(project: Path, dev_info: dict[str, Any]) -> None:
    pw("login")
    tag = secrets.token_hex(3)
    path = project / "keys.csv"
    bad = {17: {"rpm_limit": "0"}, 420: {"monthly_budget_usd": "-5"}, 999: {"allowed_models": "gpt-5"}}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "name", "monthly_budget_usd", "rpm_limit", "allowed_models"])
        writer.writeheader()
        for i in range(1000):
            row = {"id": f"{tag}-{i}", "name": f"bulk {i}", "monthly_budget_usd": "1.25", "rpm_limit": "30"}
            writer.writerow({**row, **bad.get(i, {})})
    started = time.perf_counter()
    result = pw("keys", "import", str(path), "--json", "--secrets-out", str(project / "secrets.csv"), ok=False)
    elapsed = time.perf_counter() - started
    print(f"\nimported 1,000 keys in {elapsed:.1f}s")
    assert result.exit_code == 1  # some rows failed: the batch still went through
    report = json.loads(result.stdout)
    assert (report["created"], report["exists"], report["error"]) == (997, 0, 3)
    failed = {r["row"]: r["error"]["param"] for r in report["results"] if r["status"] == "error"}
    assert failed == {19: "rpm_limit", 422: "monthly_budget_usd", 1001: "allowed_models"}  # CSV line numbers
    with (project / "secrets.csv").open() as handle:
        secrets_rows = list(csv.DictReader(handle))
    assert len(secrets_rows) == 997 and stat.S_IMODE(os.stat(project / "secrets.csv").st_mode) == 0o600
    assert "You said" in chat(dev_info["base_url"], secrets_rows[500]["secret"])
    # idempotent: the same file again creates nothing
    again = json.loads(pw("keys", "import", str(path), "--json", ok=False).stdout)
    assert (again["created"], again["exists"], again["error"]) == (0, 997, 3)
    # export round-trips through import as "exists"
    pw("keys", "export", "--format", "json", "--output", str(project / "export.json"))
    exported = json.loads((project / "export.json").read_text())
    assert sum(1 for row in exported if row["id"].startswith(f"{tag}-")) == 997
    assert elapsed < 60
