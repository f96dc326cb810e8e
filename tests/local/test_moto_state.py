"""make dev's saved AWS state: what moto holds survives a restart, tokens included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from local import bootstrap, moto_state
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
        # a provider's API key, as make dev keeps the local upstream's (SSM's backend pickles with help)
        ssm = boto3.client("ssm", endpoint_url=url, **AWS)
        ssm.put_parameter(Name="/pennyworth/local/providers/x", Value="sk-kept", Type="SecureString")
        ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId="/pennyworth/local/providers/x",
                                 Tags=[{"Key": "team", "Value": "data"}])  # fmt: skip
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
        kept = ssm.get_parameter(Name="/pennyworth/local/providers/x", WithDecryption=True)["Parameter"]
        assert kept["Value"] == "sk-kept"
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


def test_a_client_stalled_before_its_body_holds_up_no_other_request(tmp_path: Path) -> None:
    # GIVEN a client that sent its headers and a tenth of its body, then stopped (as a process
    # stopped mid-request by DevStack.paused does)
    port = Ports.free().aws
    server = _moto(port, tmp_path / "aws.pickle", tmp_path / "moto.log")
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        stalled.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\n"
            b"X-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 100\r\n\r\n{}        "
        )
        time.sleep(0.5)  # the server has the headers and is reading the body
        # THEN another client is answered at once
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
        dynamodb = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}", config=config, **AWS)
        assert dynamodb.list_tables()["TableNames"] == []
    finally:
        stalled.close()
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


def test_make_dev_stopped_mid_stream_bills_what_was_delivered_and_holds_no_reservation(tmp_path: Path) -> None:
    from decimal import Decimal

    from chalicelib.keys.store import KeyStore
    from local.devstack import TABLE_NAMES

    state_dir = tmp_path / "state"

    def run() -> DevStack:
        return DevStack(ports=Ports.free(), log_dir=tmp_path / "logs", state_dir=state_dir)

    # GIVEN a budgeted key streaming a ~10 s answer through make dev's front
    first = run()
    info = first.start()
    try:
        keys = boto3.resource("dynamodb", endpoint_url=first.aws_url, **AWS).Table(TABLE_NAMES["KeysTable"])
        _, plaintext = KeyStore(keys).create(owner_sub="o", name="stopped", monthly_budget_usd=Decimal("5"))
        headers = {"Authorization": f"Bearer {plaintext}"}
        prompt = "tell me #emulator:tokens=60 #emulator:chunk_delay=0.5"
        body = {"model": "nova-micro", "messages": [{"role": "user", "content": prompt}], "stream": True}
        with requests.post(
            f"{info['base_url']}/chat/completions", headers=headers, json=body, stream=True, timeout=60
        ) as answer:
            pieces = 0
            for line in answer.iter_lines():
                pieces += line.startswith(b'data: {"id"')
                if pieces >= 4:
                    break
            # WHEN make dev is stopped while the answer streams
            first.stop()
    finally:
        first.stop()
    # THEN, once it is back, the delivered part is billed and nothing is held for it
    with run() as second:
        url = f"{second.info['base_url']}/key"
        view = eventually(
            lambda: requests.get(url, headers=headers, timeout=30).json(),
            lambda seen: seen["usage"]["requests"] >= 1 and seen["budget"]["reserved_usd"] == "0",
            timeout=30,
        )
        assert view["usage"]["requests"] == 1 and 0 < view["usage"]["output_tokens"] < 60, view
        assert Decimal(view["budget"]["spent_usd"]) > 0


# Idle means idle: make dev's aggregator polls moto four times a second, and nothing is written for it


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_ino, status.st_mtime_ns  # the saver replaces the file: a new inode each write


def test_an_idle_stack_writes_no_state_and_a_change_is_saved(tmp_path: Path) -> None:
    # GIVEN moto with a saved state, and the stream aggregator polling it as make dev runs it
    state, log = tmp_path / "aws.pickle", tmp_path / "moto.log"
    port = Ports.free().aws
    url = f"http://127.0.0.1:{port}"
    server = _moto(port, state, log)
    aggregator = None
    try:
        bootstrap.create_tables(boto3.client("dynamodb", endpoint_url=url, **AWS), {
            "KeysTable": "k", "UsageTable": "u", "AuditTable": "a", "CatalogTable": "c"})  # fmt: skip
        assert eventually(state.exists, bool, timeout=10)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        command = [sys.executable, "-m", "local.stream_aggregator", "--endpoint", url, "--table", "u"]
        aggregator = subprocess.Popen(command, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        time.sleep(2)  # the table's creation saved, the aggregator polling
        # WHEN nothing happens for three seconds (a dozen polls, three saver rounds)
        before = _stamp(state)
        time.sleep(3)
        # THEN the state file was not written
        assert _stamp(state) == before
        # AND a change is saved within a saver round or two
        boto3.resource("dynamodb", endpoint_url=url, **AWS).Table("k").put_item(Item={"key_id": "new"})
        after = eventually(lambda: _stamp(state), lambda stamp: stamp != before, timeout=5)
        assert after != before
        time.sleep(3)
        assert _stamp(state) == after  # and idle again
        assert aggregator.poll() is None, log.read_text()[-2000:]
    finally:
        if aggregator is not None:
            aggregator.terminate()
            aggregator.wait(timeout=10)
        _stop(server)


@pytest.mark.parametrize(
    ("method", "target", "changes"),
    [
        ("GET", "", False),  # JWKS, the console's login pages
        ("POST", "DynamoDB_20120810.GetItem", False),
        ("POST", "DynamoDB_20120810.Query", False),
        ("POST", "DynamoDB_20120810.DescribeTable", False),
        ("POST", "DynamoDB_20120810.BatchGetItem", False),
        ("POST", "DynamoDBStreams_20120810.GetRecords", False),
        ("POST", "DynamoDBStreams_20120810.GetShardIterator", False),
        ("POST", "AWSCognitoIdentityProviderService.ListUsers", False),
        ("POST", "DynamoDB_20120810.PutItem", True),
        ("POST", "DynamoDB_20120810.TransactWriteItems", True),
        ("POST", "DynamoDB_20120810.BatchWriteItem", True),
        ("POST", "AWSCognitoIdentityProviderService.InitiateAuth", True),  # stores a refresh token
        ("POST", "AmazonSQS.ReceiveMessage", True),  # hides the message it returns
        ("POST", "", True),  # SNS, CloudWatch: the operation is in the body; counted as a change
    ],
)
def test_only_requests_that_may_change_the_state_dirty_it(method: str, target: str, changes: bool) -> None:
    environ = {"REQUEST_METHOD": method, **({"HTTP_X_AMZ_TARGET": target} if target else {})}
    assert moto_state.may_change(environ) is changes


def test_an_idle_poll_of_the_stream_is_one_call(tmp_path: Path) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from chalicelib.accounting.ledger import Ledger, TokenUsage, new_entry
    from chalicelib.shared.money import Prices
    from local.stream_aggregator import StreamDrain, streams_client_for

    port = Ports.free().aws
    url = f"http://127.0.0.1:{port}"
    server = _moto(port, tmp_path / "aws.pickle", tmp_path / "moto.log")
    try:
        bootstrap.create_tables(boto3.client("dynamodb", endpoint_url=url, **AWS), {
            "KeysTable": "k", "UsageTable": "u", "AuditTable": "a", "CatalogTable": "c"})  # fmt: skip
        table = boto3.resource("dynamodb", endpoint_url=url, **AWS).Table("u")
        streams = streams_client_for(table)
        calls: list[str] = []
        for client in (streams, table.meta.client):
            client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
        ledger, prices = Ledger(table), Prices(Decimal("0.000001"), Decimal("0.000002"), Decimal(0), Decimal(0))

        def bill(n: int) -> None:
            ledger.record(new_entry(
                request_id=f"r{n}", key_id="k1", owner_sub="o1", model="nova-micro", bedrock_model_id="m",
                operation="chat", usage=TokenUsage(input_tokens=10, output_tokens=5), prices=prices, latency_ms=1,
                status="ok", at=datetime.now(UTC),
            ))  # fmt: skip

        drain = StreamDrain(table, streams_client=streams)
        bill(1)
        assert drain.drain() > 0
        # WHEN nothing is written, five polls
        calls.clear()
        assert [drain.drain() for _ in range(5)] == [0] * 5
        # THEN each is one GetRecords (no lookups of the table, the stream or an iterator)
        assert calls == ["GetRecords"] * 5
        # AND the next entry is read on from there
        bill(2)
        assert drain.drain() > 0 and calls[-1] == "GetRecords"
    finally:
        _stop(server)
