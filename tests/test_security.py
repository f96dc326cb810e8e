"""Keys never appear in plaintext: not in DynamoDB, not in logs, not in error bodies."""

from __future__ import annotations

import json

from chalicelib.keys.store import KeyStore
from tests.stream_client import StreamClient


def scan_everything(aws) -> str:
    dumped = []
    for table in aws.tables.all():
        dumped.extend(json.dumps(item, default=str) for item in table.scan()["Items"])
    return "\n".join(dumped)


def test_no_plaintext_key_in_tables_logs_or_errors(client, aws, keys_table, service_logs) -> None:
    _, plaintext = KeyStore(keys_table).create(owner_sub="owner-1")
    secret = plaintext.rsplit("-", 1)[1]
    wrong = plaintext[:-3] + "abc"
    bodies = []
    for key in (plaintext, wrong):
        for body in (
            {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]},
            {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            {"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
            {"model": "nova-micro", "messages": [{"role": "user", "content": "#emulator:throttle"}]},
        ):
            response = StreamClient().post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                body=json.dumps(body),
            )
            bodies.append(response.body.decode())
    logs = "\n".join(service_logs.lines())
    assert '"key_id"' in logs  # requests are logged with the key id...
    refused = [json.loads(line) for line in service_logs.lines() if '"request failed"' in line]
    assert {line["status"] for line in refused} >= {401, 404, 429}  # ...refusals too, one line each
    everywhere = "\n".join([scan_everything(aws), logs, *bodies])
    for leaked in (secret, wrong.rsplit("-", 1)[1]):
        assert leaked not in everywhere  # ...never with the key
