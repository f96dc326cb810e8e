"""The built artifact's streaming entry point under the local Runtime API (``make test-artifact``).

Lambda starts the streaming function as ``exec-wrapper <interpreter> <runtime
args>`` with the configured ``Handler`` in ``_HANDLER``; ``local/lambda_runtime.py``
does the same with ``build/<stage>/unzipped`` as the task root and a bare
interpreter. Skipped without a build, like ``tests/test_artifact.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.lambda_runtime import RuntimeAPI, proxy_event
from tests.streaming_checks import WRAPPER, check_streaming_template

ARTIFACT = os.environ.get("PENNYWORTH_ARTIFACT_DIR")
pytestmark = pytest.mark.skipif(not ARTIFACT, reason="no built artifact (make test-artifact builds one)")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def artifact() -> Path:
    return Path(str(ARTIFACT)).resolve()


@pytest.fixture(scope="module")
def template(artifact: Path) -> dict[str, Any]:
    return json.loads((artifact.parent / "package" / "sam.json").read_text())


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    """The handler and the literal environment the template gives the streaming function."""
    props = template["Resources"]["StreamHandler"]["Properties"]
    variables = {k: v for k, v in props["Environment"]["Variables"].items() if isinstance(v, str)}
    # What CloudFormation would resolve: table names and the timeout.
    variables.update(
        PENNYWORTH_KEYS_TABLE="artifact-keys",
        PENNYWORTH_USAGE_TABLE="artifact-usage",
        PENNYWORTH_AUDIT_TABLE="artifact-audit",
        PENNYWORTH_CATALOG_TABLE="artifact-catalog",
        PENNYWORTH_STREAM_TIMEOUT_SECONDS="300",
        AWS_ACCESS_KEY_ID="artifact",
        AWS_SECRET_ACCESS_KEY="artifact",
    )
    return {"handler": props["Handler"], "env": variables}


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%X\r\n%b\r\n" % (len(c), c) for c in chunks)


def test_the_built_template_streams_the_model_routes(artifact: Path, template: dict[str, Any]) -> None:
    check_streaming_template(template, artifact.parent / "package" / "deployment.zip")
    assert os.access(artifact / WRAPPER, os.X_OK)


def test_the_real_entry_point_streams_an_answer_byte_for_byte(artifact: Path, function: dict[str, Any]) -> None:
    from chalicelib.streaming import handler

    # GIVEN the artifact started as Lambda starts it, with the template's Handler
    event = proxy_event("POST", "/v1/no-such-route", {"model": "x"})
    with RuntimeAPI() as api:
        api.start_function(artifact, handler=function["handler"], env=function["env"], stderr=subprocess.PIPE)
        # WHEN API Gateway sends a request no streaming route serves
        result = api.invoke(event).result(60)
    # THEN the handler's answer (the same handler, called here) arrives framed exactly: a whole
    # answer's prelude, 8 NULs and body in the first chunk (one write), then the last chunk
    answer = handler.handle(event, deadline=0)
    body = b"".join(answer.chunks)
    assert answer.body == body
    metadata = {"statusCode": answer.status, "headers": answer.headers}
    prelude = json.dumps(metadata, separators=(",", ":")).encode() + b"\0" * 8
    assert result.raw == chunked(prelude + body) + b"0\r\n\r\n"
    assert result.request_headers["Lambda-Runtime-Function-Response-Mode"] == "streaming"
    assert result.status == 404 and result.json()["error"]["type"] == "invalid_request_error"


def test_an_error_raised_mid_stream_ends_with_the_error_trailers(artifact: Path, function: dict[str, Any]) -> None:
    # GIVEN the artifact's loop with a handler whose producer raises after the first chunk
    env = {**function["env"], "PYTHONPATH": str(TESTS)}
    with RuntimeAPI() as api:
        api.start_function(artifact, handler="runtime_fixtures.scripted", env=env, stderr=subprocess.PIPE)
        script = {"chunks": ["data: 1\n\n", "data: 2\n\n"], "raise_after": 1}
        result = api.invoke(proxy_event("POST", "/v1/chat/completions", script)).result(60)
    # THEN the first chunk went out, then the last chunk carries the trailers the request declared
    error_type = "Function.RuntimeError"
    error = {"errorType": error_type, "errorMessage": error_message(result.request_id, error_type)}
    trailers = (
        f"Lambda-Runtime-Function-Error-Type: {error_type}\r\n"
        f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(json.dumps(error).encode()).decode()}\r\n"
    )
    assert result.raw == chunked(result.chunks[0], b"data: 1\n\n") + b"0\r\n" + trailers.encode() + b"\r\n"
    assert result.chunks[0].endswith(b"\0" * 8) and result.body == b"data: 1\n\n"
    # The process imported our code from the artifact only, nothing from a site-packages.
    assert Path(result.headers["X-Chalicelib"]).is_relative_to(artifact)
    path = json.loads(result.headers["X-Sys-Path"])
    assert path[:3] == [str(artifact), str(artifact), "/opt/python"]
    assert not [entry for entry in path if "site-packages" in entry]


def error_message(request_id: str, error_type: str) -> str:
    from chalicelib.streaming.runtime import _public_message

    return _public_message(error_type, request_id)


def test_a_chat_completion_streams_through_the_built_entry_point(
    artifact: Path, function: dict[str, Any], emulator_url: str
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from chalicelib.keys.store import KeyStore
    from local import bootstrap

    # GIVEN DynamoDB (a moto server), the Bedrock emulator, a key, and the artifact started as Lambda does
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        aws_url = "http://{}:{}".format(*moto.get_host_and_port())
        fake = {"aws_access_key_id": "artifact", "aws_secret_access_key": "artifact", "region_name": "us-east-1"}
        tables = {
            name: function["env"][f"PENNYWORTH_{name[:-5].upper()}_TABLE"]
            for name in ("KeysTable", "UsageTable", "AuditTable", "CatalogTable")
        }
        bootstrap.create_tables(boto3.client("dynamodb", endpoint_url=aws_url, **fake), tables)
        keys = boto3.resource("dynamodb", endpoint_url=aws_url, **fake).Table(tables["KeysTable"])
        _, key = KeyStore(keys).create(owner_sub="artifact", owner_email="artifact@example.com", name="stream")
        env = {
            **function["env"],
            "PENNYWORTH_AWS_ENDPOINT_URL": aws_url,
            "PENNYWORTH_BEDROCK_ENDPOINT_URL": emulator_url,
        }
        with RuntimeAPI() as api:
            api.start_function(artifact, handler=function["handler"], env=env, stderr=subprocess.PIPE)
            # WHEN a streamed chat completion is asked for, the emulator pacing its deltas 0.2 s apart
            prompt = "Count #emulator:tokens=18 #emulator:chunk_delay=0.2"
            body = {"model": "nova-micro", "stream": True, "messages": [{"role": "user", "content": prompt}]}
            headers = {"Authorization": f"Bearer {key}"}
            invocation = api.invoke(proxy_event("POST", "/v1/chat/completions", body, headers))
            arrivals = list(invocation.body_chunks(120))
            result = invocation.result(10)
    finally:
        moto.stop()
    # THEN an SSE answer whose deltas reached Lambda as they were generated, not all at the end
    assert result.status == 200 and result.headers["Content-Type"].startswith("text/event-stream")
    events = [event for event in result.body.split(b"\n\n") if event]
    assert events[-1] == b"data: [DONE]" and not result.trailers
    deltas = [at for at, data in arrivals if b'"content"' in data and b"[DONE]" not in data]
    assert len(deltas) >= 4, arrivals
    assert deltas[-1] - deltas[0] >= 0.5 * 0.2 * (len(deltas) - 1), [round(at - deltas[0], 3) for at in deltas]


def test_a_handler_the_artifact_cannot_load_is_an_init_error(artifact: Path, function: dict[str, Any]) -> None:
    with RuntimeAPI() as api:
        process = api.start_function(
            artifact, handler="chalicelib.streaming.handler.missing", env=function["env"], stderr=subprocess.PIPE
        )
        assert process.wait(60) == 1
    assert api.init_error is not None and api.init_error["errorType"] == "Runtime.HandlerNotFound"
