"""gateway/read_deadline.py: a kept client's reads end at the deadline of the call that sent them."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from chalicelib.gateway.read_deadline import bound, reads_until

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def server() -> Iterator[str]:
    """An HTTP/1.1 server on one keep-alive connection: each request is answered by its path.

    ``/stall``: the head and one chunk, then nothing for 5 s. ``/trickle``: a one-byte chunk every
    50 ms, without end. ``/slow``: after 0.5 s, a whole answer. Anything else: a whole answer at once.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):  # a client that hangs up (reset) ends its connection
            buffered = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in buffered:
                    data = connection.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                path = head.split(b" ")[1]
                if path == b"/stall":
                    connection.sendall(HEAD + chunk(b"first"))
                    stop.wait(5)
                    return
                if path == b"/trickle":
                    connection.sendall(HEAD)
                    while not stop.wait(0.05):  # a byte at a time, each well within any read timeout
                        connection.sendall(chunk(b"."))
                    return
                if path == b"/slow":
                    time.sleep(0.5)
                connection.sendall(HEAD + chunk(b"whole") + b"0\r\n\r\n")

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_stall_after_the_answer_started_ends_at_the_deadline_not_at_the_read_timeout(server) -> None:
    url = server
    client = httpx.Client(timeout=10)
    assert bound(client)
    started = time.monotonic()
    # GIVEN a request sent with 0.6 s left (httpx would wait 10 s for each read)
    with reads_until(0.6) as receipt:
        response = client.send(client.build_request("GET", f"{url}/stall"), stream=True)
    chunks = response.iter_raw()
    assert next(chunks) == b"first"
    assert receipt.bounded and not receipt.cut
    # WHEN the rest is read, outside the call that sent it THEN the read ends at the deadline
    with pytest.raises(httpx.ReadTimeout):
        next(chunks)
    assert 0.5 < time.monotonic() - started < 2.0
    assert receipt.cut
    response.close()


def test_a_trickle_that_never_lets_a_read_time_out_still_ends_at_the_deadline(server) -> None:
    # A timeout per read never fires when every read gets a byte; the deadline is the call's.
    url = server
    client = httpx.Client(timeout=10)
    bound(client)
    started = time.monotonic()
    with reads_until(0.6) as receipt:
        response = client.send(client.build_request("GET", f"{url}/trickle"), stream=True)
    received = 0
    with pytest.raises(httpx.ReadTimeout):
        for piece in response.iter_raw():
            received += len(piece)
    assert received > 3 and receipt.cut
    assert 0.5 < time.monotonic() - started < 2.0
    response.close()


def test_a_request_sent_without_a_deadline_on_a_reused_connection_keeps_none(server) -> None:
    url = server
    client = httpx.Client(timeout=10)
    bound(client)
    with reads_until(0.2) as receipt:
        assert client.get(f"{url}/fast").content == b"whole"
    # WHEN the connection that carried it sends a request outside any deadline, answered after 0.5 s
    answer = client.get(f"{url}/slow")
    # THEN it is read whole: the 0.2 s of the call before did not stay with the connection
    assert answer.content == b"whole" and not receipt.cut


def test_a_deadline_already_past_refuses_the_read_at_once(server) -> None:
    url = server
    client = httpx.Client(timeout=10)
    bound(client)
    with reads_until(0) as receipt, pytest.raises(httpx.ReadTimeout):
        client.get(f"{url}/fast")
    assert receipt.cut


def test_reads_may_go_on_for_a_moment_to_take_what_came_and_no_longer(server) -> None:
    # A caller that hung up lets the reads take what the provider had already sent (read_for).
    url = server
    client = httpx.Client(timeout=10)
    bound(client)
    with reads_until(60) as receipt:
        response = client.send(client.build_request("GET", f"{url}/stall"), stream=True)
    started = time.monotonic()
    receipt.read_for(0.3)
    chunks = response.iter_raw()
    assert next(chunks) == b"first"  # what had come
    with pytest.raises(httpx.ReadTimeout):
        next(chunks)  # and then 0.3 s, not the call's 60 s
    assert time.monotonic() - started < 2.0 and receipt.cut
    response.close()


def test_a_client_whose_pools_cannot_be_bounded_says_so() -> None:
    client = httpx.Client()
    client._transport._pool._http2 = True  # as an HTTP/2 client's pool is: calls share connections
    assert not bound(client)

    class Elsewhere(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

    assert not bound(httpx.Client(transport=Elsewhere()))


def test_binding_is_idempotent_and_covers_proxy_pools(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = httpx.Client()
    assert bound(client) and bound(client)
    pools = [client._transport._pool, *(t._pool for t in client._mounts.values() if t is not None)]
    assert len(pools) >= 2
    backends = {type(pool._network_backend).__name__ for pool in pools}
    assert backends == {"DeadlineBackend"}
    # and not wrapped twice
    assert all(type(pool._network_backend._backend).__name__ != "DeadlineBackend" for pool in pools)
