"""The local HTTP front of ``make dev``: API Gateway's part, on loopback.

The streaming routes (``chalicelib.edge.routes.STREAM_PATHS``: chat
completions, Messages, Responses) are answered in this process by the same
``chalicelib.streaming.handler.handle`` that our Lambda runtime loop calls, and
their chunks leave the moment they are produced (chunked transfer encoding,
``TCP_NODELAY``, headers and first chunk in one write); a whole answer goes with
its ``Content-Length``, headers and body in one write. Every other route is
proxied to ``chalice local``, as API Gateway sends them to the Chalice
function. When a client goes away mid-stream (a write fails), the answer is
closed, which stops Bedrock and bills what was generated, as a cut stream; one
that stops reading is cut as our runtime loop cuts it, ``WRITE_MARGIN_SECONDS``
before the request's deadline, and its answer closed (and its bill stored). A
client that only shuts its write side (end of request) still gets its answer.
Stopped (SIGTERM, as ``make dev`` stops it), the front takes no new request,
ends each stream at its next chunk, billed, and waits for the answers in flight
(``DRAIN_SECONDS`` at most) before it exits: its handler threads are daemons,
and an answer cut by the process dying would be neither billed nor released.

Usage: ``python -m local.front --port 8000 --upstream http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chalicelib import errors

#: Headers that describe one hop, never forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)
#: What the front frames itself in every answer (a passed-on value would contradict it).
_FRAMED_HERE = _HOP_BY_HOP | {"content-length"}
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
#: How long a stopped front waits for the answers in flight to end (and bill) before it exits.
DRAIN_SECONDS = 15.0
# What HTTP/1.1 allows as a Content-Length and a chunk size (Python's int() also takes "+5", " 5", "5_0").
_DECIMAL = re.compile(rb"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
#: What the stdlib's own refusals (before a request is parsed) say, instead of its HTML page.
_HTTP_REFUSALS = {
    400: "The request is not valid HTTP/1.1.",
    414: "The request URL is too long.",
    431: "The request's headers are too large.",
    501: "This HTTP method is not supported.",
    505: "This HTTP version is not supported; use HTTP/1.1.",
}


class FrontServer(ThreadingHTTPServer):
    """Serves the streaming routes in process and proxies the rest to ``chalice local``."""

    daemon_threads = True
    allow_reuse_address = True
    # Many clients at once (a team's agents, the concurrency tests): a short accept queue resets them.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], *, upstream: str, timeout_seconds: float) -> None:
        super().__init__(address, FrontHandler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.timeout_seconds = timeout_seconds
        #: Set when the front stops: each stream ends at its next chunk (and bills).
        self.stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count one request in flight while it is answered (``drain`` waits for them)."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def drain(self, seconds: float = DRAIN_SECONDS) -> int:
        """Stop the streams in flight at their next chunk and wait (at most ``seconds``) for every answer.

        Returns how many answers were still running when the wait ended (logged; 0 normally).
        """
        self.stopping.set()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=seconds)
            left = self._in_flight
        if left:
            sys.stderr.write(f"front: stopped with {left} answer(s) still running (unbilled)\n")
        return left

    def idle(self, seconds: float = DRAIN_SECONDS) -> bool:
        """Wait (at most ``seconds``) until no answer is in flight, its close included; True if none is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=seconds)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and each chunk leave at once (no Nagle + delayed-ACK stall)
    server: FrontServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        sys.stderr.write(f"front: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        with self.server.answering():
            self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _dispatch(self) -> None:
        from chalicelib.edge.routes import STREAM_PATHS

        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            body = self._read_body()
        except errors.AppError as exc:
            self._send_error(exc)  # the body was not read: the connection cannot go on
            return
        methods = sorted(method for method, stream_path in STREAM_PATHS if stream_path == path)
        if self.command in methods:
            self._stream(path, url.query, body)
        elif methods and self.command != "OPTIONS":
            allowed = ", ".join(methods)
            error = errors.MethodNotAllowed(f"{path} does not accept {self.command}; use {allowed}.")
            self._send_error(error, {"Allow": allowed})
        else:
            self._proxy(body)

    def _read_body(self) -> bytes | None:
        """The request body, refused before it is read when its framing is malformed or over the limit.

        Raises InvalidRequest (a length that is not a length) or PayloadTooLarge.
        """
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, total = [], 0
            while True:
                size = _size(self.rfile.readline(65537).split(b";")[0].strip(), _HEX, 16, "chunk size")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise _too_large()
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        lengths = set(self.headers.get_all("Content-Length") or ())
        if len(lengths) > 1:
            raise errors.InvalidRequest("The request has two different Content-Length headers; send one.")
        length = _size(lengths.pop().strip().encode("latin-1"), _DECIMAL, 10, "Content-Length") if lengths else 0
        if length > MAX_BODY_BYTES:
            raise _too_large()
        return self.rfile.read(length) if length else None

    # -- the streaming routes: in process, chunk by chunk ----------------------------------------

    def _stream(self, path: str, query: str, body: bytes | None) -> None:
        from chalicelib.streaming.handler import handle
        from chalicelib.streaming.runtime import WRITE_MARGIN_SECONDS, seconds_left

        event = api_gateway_event(self.command, path, query, self.headers.items(), body)
        deadline = time.time() + self.server.timeout_seconds
        result = handle(event, deadline=deadline)
        # As our runtime loop: no write goes past the margin before the deadline, so a client that
        # stops reading cannot keep the answer from being closed (and its bill stored).
        stop_at = deadline - WRITE_MARGIN_SECONDS
        if result.body is not None:  # a whole answer: its length, and all of it in one write
            pending = _head(result.status, None, result.headers.items(), f"Content-Length: {len(result.body)}")
            chunks: Iterable[bytes] = ()
            end = result.body
        else:
            pending = _head(result.status, None, result.headers.items(), "Transfer-Encoding: chunked")
            chunks, end = result.chunks, b"0\r\n\r\n"
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                if self.server.stopping.is_set():
                    break  # the front is stopping: end here, billed, rather than die mid-answer
                # A client that went away makes this write fail (at the latest the one after, once its
                # RST is back). End of input alone is not going away: a client may shut its write
                # side once its request is sent, and still read the answer.
                self.connection.settimeout(seconds_left(stop_at))
                self.wfile.write(pending + b"%x\r\n%s\r\n" % (len(chunk), chunk))
                pending = b""
            else:
                data = pending + end  # a large whole answer is copied here, before its write's bound starts
                self.connection.settimeout(seconds_left(stop_at))
                self.wfile.write(data)
                self.connection.settimeout(self.timeout)  # the connection's next request: as before
                return
        except OSError:
            pass  # the client is gone (broken pipe, reset)
        finally:
            result.close()  # a client that left stops the upstream and is billed for what was made
        self.close_connection = True

    # -- everything else: chalice local ----------------------------------------------------------

    def _proxy(self, body: bytes | None) -> None:
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=120)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:  # a repeated header goes on as one, its values joined
                headers[name.lower()] = f"{headers[name.lower()]}, {value}" if name.lower() in headers else value
        if body is not None:
            headers["Content-Length"] = str(len(body))
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except OSError as exc:
            self._send_error(errors.UpstreamError(f"chalice local did not answer: {exc}"))
            return
        finally:
            connection.close()
        data = _head(response.status, response.reason, response.getheaders(), f"Content-Length: {len(payload)}")
        self.wfile.write(data if self.command == "HEAD" else data + payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's refusals of what it cannot parse, as an error envelope instead of an HTML page.

        Its own message is not used: it repeats the request line, which may hold a key.
        """
        error = errors.InvalidRequest(_HTTP_REFUSALS.get(code, "The request could not be read."))
        self._send_error(error, status=code)

    def _send_error(
        self, error: errors.AppError, headers: dict[str, str] | None = None, *, status: int | None = None
    ) -> None:
        """The error envelope of the protocol at the request's path (OpenAI's, or Anthropic's for /v1/messages)."""
        from chalicelib.edge.answers import error_body
        from chalicelib.edge.routes import envelope_at

        path = urlsplit(getattr(self, "path", None) or "/").path  # None when the request line was unreadable
        data = json.dumps(error_body(error, envelope_at(path))).encode()
        status = status or error.status_code
        fields = [("Content-Type", "application/json"), *{**error.headers, **(headers or {})}.items()]
        self.wfile.write(_head(status, None, fields, f"Content-Length: {len(data)}", "Connection: close") + data)
        self.close_connection = True


def _head(status: int, reason: str | None, headers: Iterable[tuple[str, str]], *framing: str) -> bytes:
    """An answer's status line and ``headers`` (less what the front frames itself), then ``framing``."""
    lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, '') if reason is None else reason}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _FRAMED_HERE]
    lines += [*framing, "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


def _size(text: bytes, pattern: re.Pattern[bytes], base: int, what: str) -> int:
    if not pattern.fullmatch(text) or len(text) > 20:
        raise errors.InvalidRequest(f"The request's {what} is not a valid length.")
    return int(text, base)


def _too_large() -> errors.PayloadTooLarge:
    return errors.PayloadTooLarge(f"The request body is over {MAX_BODY_BYTES} bytes, API Gateway's limit.")


def api_gateway_event(
    method: str, path: str, query: str, headers: Mapping[str, str] | Iterable[tuple[str, str]], body: bytes | None
) -> dict[str, Any]:
    """The REST API proxy event (payload format 1.0) API Gateway would send for this request.

    ``headers`` as name/value pairs keep a repeated header: like API Gateway, the event's
    ``headers`` hold its last value and ``multiValueHeaders`` all of them.
    """
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    params = dict(parse_qsl(query, keep_blank_values=True)) if query else None
    text = None
    base64_encoded = False
    if body is not None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            text, base64_encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": params,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "local",
            "path": path,
            "httpMethod": method,
            "requestTimeEpoch": int(time.time()),
        },
        "body": text,
        "isBase64Encoded": base64_encoded,
    }


def warm_up() -> None:
    """Import what the first model call needs (LiteLLM: seconds), so it does not wait on it."""
    with contextlib.suppress(Exception):
        from chalicelib import wiring
        from chalicelib.gateway import load_litellm
        from chalicelib.protocols.openai_chat.route import ChatCompletions

        wiring.adapter(ChatCompletions)
        load_litellm()


def serve(host: str, port: int, upstream: str, timeout_seconds: float) -> FrontServer:
    """Start the front in a background thread (tests); returns the running server."""
    server = FrontServer((host, port), upstream=upstream, timeout_seconds=timeout_seconds)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pennyworth's local front: streaming routes + chalice local")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--upstream", required=True, help="chalice local's base URL")
    parser.add_argument(
        "--timeout", type=float, help="seconds an answer may take (default: PENNYWORTH_STREAM_TIMEOUT_SECONDS)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leaves serve_forever: no new request
    from chalicelib.settings import get_settings

    timeout = args.timeout or get_settings().stream_timeout_seconds  # the streaming function's timeout on AWS
    server = FrontServer((args.host, args.port), upstream=args.upstream, timeout_seconds=timeout)
    threading.Thread(target=warm_up, daemon=True).start()
    print(f"Serving on {server.base_url} (chalice local behind it, on a private port)", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.drain()  # the answers in flight end and bill before the process does
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
