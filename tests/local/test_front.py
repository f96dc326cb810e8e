"""The local front's own refusals: what it answers before a request reaches a route.

Raw sockets, because the requests under test are ones an HTTP client library will not send.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from local.front import MAX_BODY_BYTES, FrontServer, serve

HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def front() -> Iterator[FrontServer]:
    # No upstream is needed: every request here is refused by the front itself.
    server = serve("127.0.0.1", 0, upstream="http://127.0.0.1:9", timeout_seconds=5)
    yield server
    server.shutdown()
    server.server_close()


def exchange(front: FrontServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data``, read until the front closes the connection (each refusal does)."""
    with socket.create_connection(front.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def openai_error(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: abc\r\n",
        b"Content-Length: -5\r\n",
        b"Content-Length: 5_0\r\n",
        b"Content-Length: 10\r\nContent-Length: 12\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n",
        b"Transfer-Encoding: chunked\r\n\r\n-5\r\n{}\r\n0\r\n",
    ],
)
def test_a_body_whose_length_cannot_be_read_is_a_400_without_pythons_words(front: FrontServer, framing: bytes) -> None:
    status, headers, body = exchange(front, HEAD + framing + b"\r\n{}")
    error = openai_error(headers, body)
    assert status == 400, body
    assert "length" in error["message"].lower()
    assert "int()" not in error["message"] and "literal" not in error["message"]


@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, 0xFFFFFFFFFF])
def test_a_chunk_over_the_limit_is_refused_before_it_is_read(front: FrontServer, size: int) -> None:
    status, headers, body = exchange(front, HEAD + b"Transfer-Encoding: chunked\r\n\r\n%X\r\n{}" % size)
    assert status == 413, body
    assert openai_error(headers, body)["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE pw-secretsecret\r\n\r\n", 400),
        (b"POST /v1/models?key=pw-secretsecret HTTP/1.1 extra\r\n\r\n", 400),
        (b"POST /v1/messages?" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /v1/responses HTTP/1.1\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /v1/responses HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n", 431),
        (b"BREW /v1/responses HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 501),
    ],
)
def test_requests_http_server_refuses_get_an_error_envelope_not_html(
    front: FrontServer, request_bytes: bytes, status: int
) -> None:
    answered, headers, body = exchange(front, request_bytes)
    assert answered == status
    error = openai_error(headers, body)
    assert "secret" not in error["message"]  # the request line is not repeated back


def test_refusals_on_the_messages_routes_are_anthropic_envelopes(front: FrontServer) -> None:
    for request_bytes, status in [
        (b"GET /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /v1/messages/count_tokens HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), 413),
        (b"POST /v1/messages HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
        (b"POST /v1/messages HTTP/1.1\r\nanthropic-version: " + b"x" * 70_000 + b"\r\n\r\n", 431),
    ]:
        answered, headers, body = exchange(front, request_bytes)
        assert answered == status, body
        envelope = json.loads(body)
        assert envelope["type"] == "error" and set(envelope["error"]) == {"type", "message"}, envelope


@pytest.fixture
def streaming_front(monkeypatch: pytest.MonkeyPatch, aws: Any, emulator_url: str, keys_table: Any) -> Iterator[tuple]:
    """A front whose streaming routes answer (moto in process, the emulator), and a key."""
    from chalicelib import wiring
    from chalicelib.keys.store import KeyStore

    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    record, plaintext = KeyStore(keys_table).create(owner_sub="o", name="front")
    server = serve("127.0.0.1", 0, upstream="http://127.0.0.1:9", timeout_seconds=60)
    yield server, record, plaintext
    server.shutdown()
    server.server_close()


def test_a_client_that_half_closes_its_write_side_still_gets_its_answer(streaming_front: tuple) -> None:
    # GIVEN a client that sends its request, then shuts its write side (curl does, some proxies do)
    from chalicelib import wiring

    server, record, plaintext = streaming_front
    body = json.dumps(
        {"model": "nova-micro", "messages": [{"role": "user", "content": "hi #emulator:tokens=12"}], "stream": True}
    ).encode()
    request = HEAD + f"Authorization: Bearer {plaintext}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    # THEN it reads the whole answer, and is billed for a whole answer
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert b"data: [DONE]" in received and received.endswith(b"0\r\n\r\n")
    [entry] = wiring.ledger().entries_for_key(record.key_id)
    assert entry["status"] == "ok" and entry["output_tokens"] == 12


def test_a_whole_answer_has_its_length_and_the_connection_goes_on(streaming_front: tuple) -> None:
    # GIVEN a client on one kept-alive connection, as the SDKs keep theirs
    from chalicelib import wiring

    server, record, plaintext = streaming_front
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi #emulator:tokens=7"}]})
    request = HEAD + f"Authorization: Bearer {plaintext}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):
            # WHEN it asks for a whole answer, twice
            sock.sendall(request + body.encode())
            status = reader.readline()
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.lower()] = value.strip()
            # THEN each answer carries its length (not chunked) and ends where it says
            assert status.startswith(b"HTTP/1.1 200"), status
            assert "transfer-encoding" not in headers
            answer = json.loads(reader.read(int(headers["content-length"])))
            assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] == 7
    assert server.idle(10)  # each bill is stored once its answer has left
    entries = wiring.ledger().entries_for_key(record.key_id)
    assert [entry["status"] for entry in entries] == ["ok", "ok"]


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "whole"])
def test_a_client_that_stops_reading_cannot_keep_its_answer_from_being_closed(
    monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    import threading
    import time

    from chalicelib.shared.http import StreamingResult
    from chalicelib.streaming import handler, runtime

    # GIVEN a front with 2 s per request and an answer far larger than the socket buffers
    closed = threading.Event()

    class Big(StreamingResult):
        def close(self) -> None:  # where a model answer stores its bill
            closed.set()
            super().close()

    def big(event: Any, *, deadline: float) -> StreamingResult:
        if whole:
            return Big.whole(200, {"Content-Type": "text/plain"}, b"x" * (32 << 20))
        return Big(200, {"Content-Type": "text/plain"}, iter([b"x" * (8 << 20)] * 4))

    monkeypatch.setattr(handler, "handle", big)
    server = serve("127.0.0.1", 0, upstream="http://127.0.0.1:9", timeout_seconds=2)
    try:
        # WHEN a client asks and never reads
        with socket.create_connection(server.server_address[:2], timeout=30) as sock:
            sock.sendall(HEAD + b"Content-Length: 2\r\n\r\n{}")
            started = time.monotonic()
            # THEN the answer is closed by the margin before the deadline, not when the client leaves
            assert closed.wait(10), "the answer was still being written long after the deadline"
            assert time.monotonic() - started < 2 - runtime.WRITE_MARGIN_SECONDS + 0.5
    finally:
        server.shutdown()
        server.server_close()
