"""The streaming runtime loop against the local Lambda Runtime API emulator.

In-process tests run ``runtime.run`` on a thread with fake handlers; the
subprocess ones start the source tree's exec wrapper exactly as Lambda
starts it (``local/lambda_runtime.py``). The built artifact gets the same
checks in ``tests/test_streaming_artifact.py`` (``make test-artifact``).
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib.shared.http import StreamingResult
from chalicelib.streaming import runtime
from local.lambda_runtime import DELIMITER, ProtocolError, Result, RuntimeAPI, proxy_event

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = "runtime_fixtures"  # tests/runtime_fixtures.py, imported by the function process


@contextmanager
def loop(handler: Callable[..., StreamingResult], invocations: int = 1) -> Iterator[RuntimeAPI]:
    """The runtime loop on a thread, serving ``invocations`` events from a fresh emulator."""
    with RuntimeAPI() as api:
        thread = threading.Thread(
            target=runtime.run, args=(api.address, handler), kwargs={"invocations": invocations}, daemon=True
        )
        thread.start()
        yield api
        thread.join(10)
        assert not thread.is_alive(), "the loop did not finish its invocations"


class Answer(StreamingResult):
    """A StreamingResult that counts ``close()`` calls."""

    def __init__(self, status: int, headers: dict[str, str], chunks: Iterator[Any]) -> None:
        super().__init__(status, headers, chunks)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%X\r\n%b\r\n" % (len(c), c) for c in chunks)


def test_a_streamed_answer_is_framed_byte_for_byte() -> None:
    # GIVEN a handler answering two SSE events WHEN invoked
    answer = Answer(200, {"Content-Type": "text/event-stream"}, iter([b"data: 1\n\n", b"data: 2\n\n"]))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/v1/chat/completions", {"stream": True})).result(10)
    # THEN Lambda got the streaming headers, the prelude + 8 NULs in the first chunk, one chunk per event
    assert result.mode == "streaming"
    headers = {k.lower(): v for k, v in result.request_headers.items()}
    assert headers["lambda-runtime-function-response-mode"] == "streaming"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["content-type"] == "application/vnd.awslambda.http-integration-response"
    assert headers["trailer"] == "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"
    prelude = b'{"statusCode":200,"headers":{"Content-Type":"text/event-stream"}}' + b"\0" * 8
    assert result.raw == chunked(prelude, b"data: 1\n\n", b"data: 2\n\n") + b"0\r\n\r\n"
    assert (result.status, result.body, result.trailers) == (200, b"data: 1\n\ndata: 2\n\n", {})
    assert answer.closed == 1


def test_a_whole_answer_leaves_with_its_prelude_in_one_chunk() -> None:
    # GIVEN a handler answering a body complete before it is sent (a whole JSON answer)
    closed: list[int] = []
    answer = StreamingResult.whole(200, {"Content-Type": "application/json"}, b'{"a":1}', lambda: closed.append(1))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/v1/chat/completions")).result(10)
    # THEN the prelude, its delimiter and the body are one chunk (one write), then the end; closed once
    prelude = b'{"statusCode":200,"headers":{"Content-Type":"application/json"}}' + b"\0" * 8
    assert result.raw == chunked(prelude + b'{"a":1}') + b"0\r\n\r\n"
    assert (result.status, result.body, result.trailers) == (200, b'{"a":1}', {})
    assert closed == [1]


def test_a_large_whole_answer_is_a_chunk_of_its_own() -> None:
    # GIVEN a whole body over ONE_WRITE_BYTES (copying it into the first write would take time that
    # write's deadline bound does not see) WHEN invoked
    data = b"x" * (runtime.ONE_WRITE_BYTES + 1)
    with loop(lambda event, *, deadline: StreamingResult.whole(200, {}, data)) as api:
        result = api.invoke(proxy_event("POST", "/v1/chat/completions")).result(10)
    # THEN the prelude is the first chunk and the body the next, as a stream's would be
    prelude = b'{"statusCode":200,"headers":{}}' + b"\0" * 8
    assert result.raw == chunked(prelude, data) + b"0\r\n\r\n"


def test_each_chunk_leaves_before_the_next_is_produced() -> None:
    # GIVEN a producer that only yields its second chunk once the first has reached Lambda
    first_seen = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield b"first"
        if not first_seen.wait(5):
            raise AssertionError("the first chunk was held back (buffered) by the runtime")
        yield b"second"

    with loop(lambda event, *, deadline: StreamingResult(200, {}, chunks())) as api:
        invocation = api.invoke(proxy_event("POST", "/x"))
        # WHEN the first body chunk arrives THEN the producer may go on
        for _, data in invocation.body_chunks(10):
            if data == b"first":
                first_seen.set()
        result = invocation.result(10)
    assert result.body == b"firstsecond" and not result.trailers


def test_the_deadline_is_lambdas_and_the_trace_id_reaches_the_sdk() -> None:
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], *, deadline: float) -> StreamingResult:
        import os

        seen.update(deadline=deadline, trace=os.environ.get("_X_AMZN_TRACE_ID"), path=event["path"])
        return StreamingResult(200, {}, iter([b"ok"]))

    with loop(handler) as api:
        invocation = api.invoke(proxy_event("POST", "/v1/chat/completions"), timeout_seconds=120)
        invocation.result(10)
    assert seen["deadline"] == invocation.deadline_ms / 1000
    assert 110 < seen["deadline"] - time.time() <= 120
    assert seen["trace"].startswith("Root=1-") and seen["path"] == "/v1/chat/completions"


def test_a_failure_mid_stream_ends_with_error_trailers_without_private_details() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"data: partial\n\n"
        raise RuntimeError("upstream said sk-secret-prompt")

    answer = Answer(200, {"Content-Type": "text/event-stream"}, chunks())
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x")).result(10)
    assert result.body == b"data: partial\n\n"
    error_type = result.trailers["Lambda-Runtime-Function-Error-Type"]
    error = json.loads(base64.b64decode(result.trailers["Lambda-Runtime-Function-Error-Body"]))
    assert error_type == error["errorType"] == "Function.RuntimeError"
    assert result.request_id in error["errorMessage"] and "sk-secret" not in error["errorMessage"]
    # The body ends with the last chunk, then the trailers the request declared.
    tail = f"0\r\nLambda-Runtime-Function-Error-Type: {error_type}\r\nLambda-Runtime-Function-Error-Body: "
    assert result.raw.endswith(
        b"data: partial\n\n\r\n" + tail.encode() + b"%b\r\n\r\n" % base64.b64encode(json.dumps(error).encode())
    )
    assert answer.closed == 1


@pytest.mark.parametrize("chunk", ["text", 42, None, {"a": 1}])
def test_a_chunk_that_is_not_bytes_is_a_mid_stream_error(chunk: Any) -> None:
    answer = Answer(200, {}, iter([b"ok", chunk]))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x")).result(10)
    assert result.body == b"ok" and result.trailers["Lambda-Runtime-Function-Error-Type"] == "Function.TypeError"
    assert answer.closed == 1


def test_empty_chunks_are_skipped_and_byte_like_chunks_sent() -> None:
    answer = Answer(200, {}, iter([b"", bytearray(b"a"), b"", memoryview(b"b")]))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x")).result(10)
    # An empty chunk would have ended the body early: only the two real ones are on the wire.
    assert result.chunks[1:] == [b"a", b"b"] and result.body == b"ab"


def test_a_handler_that_raises_reports_an_invocation_error_and_the_loop_goes_on() -> None:
    calls = []

    def handler(event: dict[str, Any], *, deadline: float) -> StreamingResult:
        calls.append(event["path"])
        if len(calls) == 1:
            raise KeyError("sk-private")
        return StreamingResult(200, {}, iter([b"second"]))

    with loop(handler, invocations=2) as api:
        failed = api.invoke(proxy_event("POST", "/first")).result(10)
        served = api.invoke(proxy_event("POST", "/second")).result(10)
    assert failed.mode == "error" and failed.error_type == "Runtime.KeyError"
    assert failed.error["errorType"] == "Runtime.KeyError" and "sk-private" not in json.dumps(failed.error)
    assert served.body == b"second" and calls == ["/first", "/second"]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (99, {}),
        (600, {}),
        (True, {}),
        ("200", {}),
        (200, {"X-Number": 1}),
        (200, {"X-Huge": "x" * 16_400}),
    ],
)
def test_an_answer_api_gateway_cannot_take_is_an_invocation_error_and_is_closed(status: Any, headers: Any) -> None:
    answer = Answer(status, headers, iter([b"never sent"]))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x")).result(10)
    assert result.mode == "error" and result.error_type in ("Runtime.ValueError", "Runtime.TypeError")
    assert answer.closed == 1


def test_set_cookie_goes_to_the_preludes_cookies() -> None:
    answer = StreamingResult(201, {"Set-Cookie": "a=b; Secure", "X-Other": "1"}, iter([b"{}"]))
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x")).result(10)
    metadata, body = result.split()
    assert metadata == {"statusCode": 201, "headers": {"X-Other": "1"}, "cookies": ["a=b; Secure"]} and body == b"{}"


def test_a_caller_that_hangs_up_stops_the_producer_and_closes_the_answer() -> None:
    # GIVEN a long answer WHEN Lambda closes the response after the prelude and two chunks
    pulled = []

    def chunks() -> Iterator[bytes]:
        for index in range(200):
            pulled.append(index)
            time.sleep(0.01)
            yield b"data: %d\n\n" % index

    answer = Answer(200, {}, chunks())
    with loop(lambda event, *, deadline: answer) as api:
        result = api.invoke(proxy_event("POST", "/x"), cut_after=3).result(10)
    # THEN the loop notices on a following write, stops asking for chunks, and closes the answer (billing)
    assert result.mode == "cut"
    assert answer.closed == 1 and len(pulled) < 50


def test_an_event_that_is_not_json_is_an_invocation_error() -> None:
    called = []
    with loop(lambda event, *, deadline: called.append(event)) as api:
        result = api.invoke(b"\xff not json").result(10)
    assert result.mode == "error" and result.error_type == "Runtime.InvalidInvocation" and not called


def test_a_failing_close_is_logged_and_the_next_invocation_is_served(capsys: pytest.CaptureFixture[str]) -> None:
    class Leaky(StreamingResult):
        def close(self) -> None:
            raise OSError("ledger unavailable")

    with loop(lambda event, *, deadline: Leaky(200, {}, iter([b"x"])), invocations=2) as api:
        first = api.invoke(proxy_event("POST", "/x")).result(10)
        second = api.invoke(proxy_event("POST", "/x")).result(10)
    assert first.body == second.body == b"x"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert any(
        line["message"] == "closing the answer failed" and "ledger unavailable" in line["exception"] for line in lines
    )


def test_the_handler_setting_names_a_function_in_a_module() -> None:
    from chalicelib.streaming import handler

    assert runtime.load_handler("chalicelib.streaming.handler.handle") is handler.handle
    for name in ("handle", "json.no_such_function", "json.__doc__", ".handle"):
        with pytest.raises(runtime.HandlerNotFound):
            runtime.load_handler(name)
    with pytest.raises(ModuleNotFoundError):
        runtime.load_handler("no_such_package.handle")


def test_the_emulator_refuses_what_api_gateway_would_refuse() -> None:
    # A prelude without the delimiter, or with the delimiter past 16 KB, or not JSON: API Gateway answers 500.
    with pytest.raises(ProtocolError, match="delimiter"):
        Result("r", "streaming", chunks=[b'{"statusCode":200}no delimiter']).split()
    with pytest.raises(ProtocolError, match="delimiter"):
        Result("r", "streaming", chunks=[b" " * 16_400 + b'{"statusCode":200}' + DELIMITER]).split()
    with pytest.raises(ProtocolError, match="not JSON"):
        Result("r", "streaming", chunks=[b"{statusCode:200}" + DELIMITER]).split()
    with pytest.raises(ProtocolError, match="keys"):
        Result("r", "streaming", chunks=[b'{"statusCode":200,"body":"x"}' + DELIMITER]).split()


def test_the_emulator_refuses_bad_chunking_and_undeclared_trailers() -> None:
    with RuntimeAPI() as api:
        invocation = api.invoke(proxy_event("POST", "/x"))
        host, port = api.address.split(":")
        with socket.create_connection((host, int(port))) as poll:
            poll.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200 OK" in poll.recv(65536)
        with socket.create_connection((host, int(port))) as post:
            post.sendall(
                f"POST /2018-06-01/runtime/invocation/{invocation.request_id}/response HTTP/1.1\r\n".encode()
                + b"Host: x\r\nLambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(b'{"statusCode":200}' + DELIMITER)
                + b"0\r\nX-Undeclared: 1\r\n\r\n"
            )
            assert b"400" in post.recv(65536)
        assert "not declared" in invocation.result(5).error["protocolError"]


# The exec wrapper, started from the source tree as Lambda starts it (a subprocess, a bare interpreter).


def start(api: RuntimeAPI, handler: str) -> subprocess.Popen[bytes]:
    return api.start_function(ROOT, handler=handler, env={"PYTHONPATH": str(ROOT / "tests")}, stderr=subprocess.PIPE)


def test_the_exec_wrapper_runs_the_loop_with_only_the_code_on_the_import_path() -> None:
    with RuntimeAPI() as api:
        start(api, f"{FIXTURES}.scripted")
        script = {"chunks": ["data: a\n\n", "data: b\n\n"], "headers": {"X-Extra": "1"}}
        result = api.invoke(proxy_event("POST", "/v1/chat/completions", script)).result(30)
    assert result.body == b"data: a\n\ndata: b\n\n" and result.headers["X-Extra"] == "1"
    assert result.headers["X-Chalicelib"] == str(ROOT / "chalicelib" / "__init__.py")
    path = json.loads(result.headers["X-Sys-Path"])
    # The task root first, then the layer, then what the function's PYTHONPATH adds, then the stdlib:
    # -S keeps every site-packages (the venv's, the interpreter's) out.
    assert path[:4] == [str(ROOT), str(ROOT), "/opt/python", str(ROOT / "tests")]
    assert not [entry for entry in path if "site-packages" in entry], path


def test_a_handler_that_cannot_be_imported_is_an_init_error() -> None:
    with RuntimeAPI() as api:
        process = start(api, "chalicelib.streaming.no_such_module.handle")
        assert process.wait(30) == 1
        assert api.init_error is not None and api.init_error["errorType"] == "Runtime.ImportModuleError"
        assert api.init_error["type"] == "Runtime.ImportModuleError"
        assert b"no_such_module" in (process.stderr.read() if process.stderr else b"")


def test_the_wrapper_is_executable_in_git() -> None:
    # Chalice zips files with their mode and Lambda keeps it; git keeps it only as 100755.
    listed = subprocess.run(
        ["git", "ls-files", "-s", "chalicelib/streaming/exec-wrapper"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert listed.startswith("100755 "), listed


@pytest.fixture
def model_event(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str, keys_table: Any) -> Callable[..., Any]:
    """A fresh key, and the API Gateway event of a model request it makes: ``(key record, event)``."""
    from chalicelib import wiring
    from chalicelib.keys.store import KeyStore
    from local.front import api_gateway_event

    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    record, plaintext = KeyStore(keys_table).create(owner_sub="owner-1")
    headers = {"authorization": f"Bearer {plaintext}", "content-type": "application/json"}

    def event(path: str, body: Any) -> tuple[Any, dict[str, Any]]:
        return record, api_gateway_event("POST", path, "", headers, json.dumps(body).encode())

    return event


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "nova-micro", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/v1/responses", {"model": "nova-micro", "stream": True, "input": "hi"}),
        (
            "/v1/messages",
            {"model": "nova-micro", "stream": True, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ],
)
def test_an_answer_closed_before_its_first_chunk_stops_bedrock_and_is_billed_at_once(
    model_event: Callable[..., Any], path: str, body: Any
) -> None:
    from chalicelib import wiring
    from chalicelib.streaming.handler import handle

    # GIVEN a streamed answer whose model call has started (Bedrock has sent its first event)
    record, event = model_event(path, body)
    result = handle(event, deadline=time.time() + 60)
    assert result.status == 200
    # WHEN whoever sends it closes it before asking for a chunk (the response stream could not be opened)
    result.close()
    # THEN the model call is stopped and billed now, not whenever the answer is garbage-collected
    assert len(wiring.ledger().entries_for_key(record.key_id)) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_answers_bill_is_stored_once_the_answer_has_left(
    monkeypatch: pytest.MonkeyPatch, model_event: Callable[..., Any], stream: bool
) -> None:
    from chalicelib import wiring
    from chalicelib.streaming.handler import handle

    # GIVEN an answer the runtime loop sends: chunks out, then the end of the response, then close()
    body = {"model": "nova-micro", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    record, event = model_event("/v1/chat/completions", body)
    ledger = wiring.ledger()
    steps: list[str] = []
    store = ledger.record

    def recorded(entry: Any, **options: Any) -> bool:
        steps.append("stored")
        return store(entry, **options)

    monkeypatch.setattr(ledger, "record", recorded)

    class Writer:
        def write(self, data: bytes) -> None:
            steps.append("chunk")

        def finish(self, trailers: Any = None) -> int:
            steps.append("end")
            return 202

        def abort(self) -> None:
            steps.append("abort")

    class Client:
        def open_stream(self, request_id: str, first: bytes, stop_at: float | None = None) -> Writer:
            steps.append("open")
            return Writer()

        def post_error(self, path: str, error_type: str, message: str) -> None:
            steps.append("error")

    # WHEN the loop serves it
    ended = runtime.serve(Client(), runtime.Invocation("req-1", time.time() + 60, event), handle)
    # THEN the caller had the whole answer, its end included, before the ledger's PutItem was made
    assert ended == "streamed" and steps[0] == "open" and steps[-2:] == ["end", "stored"], steps
    [entry] = ledger.entries_for_key(record.key_id)
    assert entry["status"] == "ok" and entry["output_tokens"] > 0


def test_a_whole_answer_that_breaks_off_is_stored_before_its_error_is_answered(
    model_event: Callable[..., Any],
) -> None:
    from chalicelib import wiring
    from chalicelib.streaming.handler import handle

    body = {"model": "nova-micro", "messages": [{"role": "user", "content": "Tell me more #emulator:cut"}]}
    record, event = model_event("/v1/chat/completions", body)
    result = handle(event, deadline=time.time() + 60)
    # No close(): an error answer has nothing to finish, and what was generated is billed already.
    assert result.status == 502
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["status"] == "partial" and entry["output_tokens"] > 0
    assert result.headers["x-request-id"] == entry["request_id"]


@pytest.mark.parametrize("whole", [0, 32 << 20, 1 << 10], ids=["streamed", "whole", "whole-one-write"])
def test_a_caller_that_does_not_read_cannot_hold_the_answer_past_the_deadline(whole: int) -> None:
    # GIVEN a Runtime API that takes the response connection and never reads from it (a caller that
    # stopped reading pushes back through response streaming), and 2 s left in the invocation
    listener = socket.create_server(("127.0.0.1", 0))
    closed: list[float] = []

    class Big(StreamingResult):
        def close(self) -> None:  # where a model answer stores its bill
            closed.append(time.monotonic())
            super().close()

    def handler(event: Any, *, deadline: float) -> StreamingResult:
        if whole:
            return Big.whole(200, {"Content-Type": "text/plain"}, b"x" * whole)
        return Big(200, {"Content-Type": "text/plain"}, iter([b"x" * (8 << 20)] * 4))

    client = runtime.RuntimeClient(f"127.0.0.1:{listener.getsockname()[1]}")
    started = time.monotonic()
    ended: list[str] = []
    invocation = runtime.Invocation("req-1", time.time() + 2, {"httpMethod": "GET"})
    # WHEN the loop serves it
    serving = threading.Thread(target=lambda: ended.append(runtime.serve(client, invocation, handler)), daemon=True)
    serving.start()
    serving.join(10)
    listener.close()
    # THEN the writes stop WRITE_MARGIN_SECONDS before the deadline, and the answer is closed in time
    assert ended == ["cut"], "the answer was still being written long after the deadline"
    assert closed and closed[0] - started < 2 - runtime.WRITE_MARGIN_SECONDS + 0.4, closed[0] - started
