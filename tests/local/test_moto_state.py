"""make dev's saved AWS state: what moto holds survives a restart, tokens included."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from local import bootstrap
from local.devstack import AWS_STATE, DevStack, Ports, StackError
from tests.waiting import eventually

AWS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _moto(port: int, state: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "local.moto_server", "-p", str(port), "--state", str(state)]
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process
        try:
            requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("moto server did not start")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def test_the_moto_server_saves_and_restores_tables_users_and_signing_keys(tmp_path: Path) -> None:
    state, log = tmp_path / "aws.pickle", tmp_path / "moto.log"
    port = Ports.free().aws
    url = f"http://127.0.0.1:{port}"
    server = _moto(port, state, log)
    try:
        bootstrap.create_tables(boto3.client("dynamodb", endpoint_url=url, **AWS), {
            "KeysTable": "k", "UsageTable": "u", "AuditTable": "a", "CatalogTable": "c"})  # fmt: skip
        boto3.resource("dynamodb", endpoint_url=url, **AWS).Table("k").put_item(Item={"key_id": "kept"})
        cognito = boto3.client("cognito-idp", endpoint_url=url, **AWS)
        pool = bootstrap.create_user_pool(cognito, "p")
        bootstrap.create_user(cognito, pool["user_pool_id"], "a@example.com", "Pw1!longpassword")
        jwks = requests.get(f"{url}/{pool['user_pool_id']}/.well-known/jwks.json", timeout=5).json()
    finally:
        _stop(server)  # SIGTERM: what make dev sends; the server saves on the way out
    assert state.exists()

    server = _moto(port, state, log)
    try:
        table = boto3.resource("dynamodb", endpoint_url=url, **AWS).Table("k")
        assert table.get_item(Key={"key_id": "kept"})["Item"] == {"key_id": "kept"}
        login = cognito.initiate_auth(
            ClientId=pool["client_id"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "a@example.com", "PASSWORD": "Pw1!longpassword"},
        )
        assert login["AuthenticationResult"]["IdToken"]
        # the pool signs with the same key, so tokens issued before the restart still verify
        assert requests.get(f"{url}/{pool['user_pool_id']}/.well-known/jwks.json", timeout=5).json() == jwks
    finally:
        _stop(server)


def test_a_state_file_that_cannot_be_loaded_stops_the_server_with_a_way_out(tmp_path: Path) -> None:
    state, log = tmp_path / "aws.pickle", tmp_path / "moto.log"
    state.write_bytes(b"not a pickle")
    server = _moto(Ports.free().aws, state, log)
    assert server.wait(timeout=30) == 3
    assert "make dev FRESH=1" in log.read_text()
    assert state.read_bytes() == b"not a pickle"  # never silently replaced


def test_make_dev_keeps_keys_users_and_spend_across_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"

    def run() -> DevStack:
        return DevStack(ports=Ports.free(), log_dir=tmp_path / "logs", state_dir=state_dir)

    with run() as first:
        info = first.info
        assert info["restored"] is False
        headers = {"Authorization": f"Bearer {info['api_key']}"}
        chat = {"model": "nova-micro", "messages": [{"role": "user", "content": "remember me"}]}
        answer = requests.post(f"{info['base_url']}/chat/completions", headers=headers, json=chat, timeout=60)
        assert answer.status_code == 200, answer.text
        # usage follows the bill by the aggregator's delay: read it once the call is counted
        spent = eventually(
            lambda: requests.get(f"{info['base_url']}/key", headers=headers, timeout=30).json(),
            lambda view: view["usage"]["requests"] >= 1,
        )
        assert spent["usage"]["requests"] == 1 and spent["budget"]["spent_usd"] != "0"
        # the stack's secrets are kept beside the AWS state, readable by their owner only
        saved = json.loads((state_dir / "stack.json").read_text())
        assert saved["api_key"] == info["api_key"] and (state_dir / "stack.json").stat().st_mode & 0o077 == 0
    with run() as second:
        again = second.info
        assert again["restored"] is True
        assert (again["api_key"], again["admin_password"]) == (info["api_key"], info["admin_password"])
        assert again["cognito"]["user_pool_id"] == info["cognito"]["user_pool_id"]
        # the same key works, and the month's spend is still there
        after = requests.get(f"{again['base_url']}/key", headers=headers, timeout=30)
        assert after.status_code == 200 and after.json() == spent
    # AND a clean start is a deliberate act
    (state_dir / AWS_STATE).unlink()
    with pytest.raises(StackError, match="FRESH=1"):
        run().start()
