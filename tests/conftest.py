"""Shared fixtures: fake AWS, moto-backed tables built from infra/template.json, the emulator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# Before anything imports boto3 or litellm: no real AWS, no network price fetch.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
)
for _variable in ("PENNYWORTH_AWS_ENDPOINT_URL", "PENNYWORTH_BEDROCK_ENDPOINT_URL", "AWS_PROFILE"):
    os.environ.pop(_variable, None)

from chalicelib import wiring  # noqa: E402
from local import bootstrap, moto_patches  # noqa: E402

# moto as DynamoDB behaves where we depend on it (numbers, transactions, memory): local/moto_patches.py.
moto_patches.apply()

pytest_plugins = ["tests.admin_fixtures"]

TABLE_NAMES = {
    "KeysTable": "pennyworth-local-keys",
    "UsageTable": "pennyworth-local-usage",
    "AuditTable": "pennyworth-local-audit",
    "CatalogTable": "pennyworth-local-catalog",
}


@pytest.fixture(autouse=True)
def _fresh_wiring() -> Iterator[None]:
    """Every test starts with no cached clients or settings."""
    wiring.reset()
    yield
    wiring.reset()


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto's in-process AWS with the template's tables created."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        bootstrap.create_tables(boto3.client("dynamodb", region_name="us-east-1"), TABLE_NAMES)
        yield boto3.resource("dynamodb", region_name="us-east-1")


@pytest.fixture
def atomic_moto(aws: Any) -> Iterator[None]:
    """Make in-process moto apply each DynamoDB call atomically, as DynamoDB does.

    moto's backend is not thread-safe; without this, concurrency tests would
    test moto's races rather than our conditional writes.
    """
    import functools
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {}
    for name in ("get_item", "put_item", "update_item", "delete_item", "query", "scan", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)
        originals[name] = original

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


@pytest.fixture
def drain() -> Any:
    """Apply the usage table's stream to its aggregates now (what the aggregator Lambda does on AWS)."""
    from local.stream_aggregator import drain as drain_stream

    return drain_stream


@pytest.fixture
def keys_table(aws: Any) -> Any:
    return aws.Table(TABLE_NAMES["KeysTable"])


@pytest.fixture
def usage_table(aws: Any) -> Any:
    return aws.Table(TABLE_NAMES["UsageTable"])


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str) -> Iterator[Any]:
    """Chalice's test client over the app, with moto for AWS and the emulator for Bedrock."""
    from chalice.test import Client

    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def stream_client(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str) -> Any:
    """The streaming routes (chat completions, …) as API Gateway calls them, over moto and the emulator."""
    from tests.stream_client import StreamClient

    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    return StreamClient()


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """The Bedrock emulator, in-process on a free port, for the whole session."""
    from local.bedrock_emulator import start_emulator

    server, base_url = start_emulator(host="127.0.0.1", port=0)
    yield base_url
    server.shutdown()


@dataclass
class CountingEmulator:
    """A Bedrock emulator of the test's own, with the connections it accepted (client addresses)."""

    url: str
    accepted: list[Any]


@contextlib.contextmanager
def counted_emulator(**options: Any) -> Iterator[CountingEmulator]:
    """A fresh emulator (``start_emulator``'s ``options``) that records each connection it accepts."""
    from local.bedrock_emulator import start_emulator

    server, base_url = start_emulator(host="127.0.0.1", port=0, **options)
    counted = CountingEmulator(base_url, [])
    process = server.process_request

    def counting(request: Any, client_address: Any) -> None:
        counted.accepted.append(client_address)
        process(request, client_address)

    server.process_request = counting
    try:
        yield counted
    finally:
        server.shutdown()


@pytest.fixture
def counting_emulator() -> Iterator[CountingEmulator]:
    """A fresh emulator that records each connection it accepts: for tests that count connections."""
    with counted_emulator() as counted:
        yield counted


class LogCapture:
    """Lines the service logger wrote (JSON, exactly as CloudWatch would get them)."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()


@pytest.fixture
def service_logs() -> Iterator[LogCapture]:
    """Capture the service logger (Powertools binds its stream at import, so capsys misses it)."""
    import logging

    from chalicelib.observability import logger

    capture = LogCapture()
    handler = logging.StreamHandler(capture.buffer)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        yield capture
    finally:
        logger.removeHandler(handler)
