"""A local Lambda Runtime API: runs a function's real entry point and records what it streams.

Test and benchmark tooling, never deployed. ``RuntimeAPI`` serves the
endpoints a runtime talks to (``/2018-06-01/runtime/invocation/next``,
``…/{id}/response``, ``…/{id}/error``, ``/runtime/init/error``) on loopback.
``start_function`` starts a built artifact the way Lambda starts our
streaming function: the exec wrapper (``AWS_LAMBDA_EXEC_WRAPPER``) with a
bare interpreter path and the managed runtime's arguments, in a clean
environment with ``AWS_LAMBDA_RUNTIME_API``, ``LAMBDA_TASK_ROOT`` and
``_HANDLER``. A runtime loop can also run in-process against ``address``
(the unit tests do, with fake handlers).

``invoke(event)`` queues an event (an API Gateway proxy event for us) and
returns an ``Invocation``: iterate ``body_chunks()`` to get each body chunk
the moment it arrives, or ``result()`` for what API Gateway would receive:
the prelude's status, headers and cookies, the body, the error trailers, and
the raw request body on the wire (chunk framing and trailers included) for
byte-for-byte checks. What API Gateway does with a malformed stream (a 500)
or an invocation error is recorded, not imitated.

The server answers with one write per response and ``TCP_NODELAY``, so a
kept-alive ``/next`` never waits on a delayed ACK.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

API_PREFIX = "/2018-06-01/runtime"
DELIMITER = b"\0" * 8
#: API Gateway's limit: the delimiter must be within the first 16 KB of the stream.
PRELUDE_WINDOW = 16 * 1024
WRAPPER = "chalicelib/streaming/exec-wrapper"
#: Stands for the managed runtime's own arguments, which our wrapper must ignore.
MANAGED_RUNTIME_ARGS = ("/var/runtime/bootstrap.py",)


class ProtocolError(AssertionError):
    """The runtime broke the Runtime API or API Gateway's streaming format."""


@dataclass
class Result:
    """One finished invocation, as API Gateway would see it."""

    request_id: str
    mode: str  # "streaming", "buffered" or "error"
    request_headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""  # the request body exactly as it came over the wire
    chunks: list[bytes] = field(default_factory=list)  # chunk payloads, in order
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each chunk
    trailers: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None  # the /error body, when the runtime reported one
    error_type: str | None = None

    @property
    def payload(self) -> bytes:
        """Every chunk joined: prelude, delimiter, body."""
        return b"".join(self.chunks)

    def split(self) -> tuple[dict[str, Any], bytes]:
        """The prelude (parsed) and the body; ProtocolError where API Gateway would answer 500."""
        payload = self.payload
        index = payload.find(DELIMITER, 0, PRELUDE_WINDOW)
        if index < 0:
            raise ProtocolError("no 8-NUL delimiter within the first 16 KB of the stream")
        try:
            metadata = json.loads(payload[:index])
        except ValueError as exc:
            raise ProtocolError(f"the prelude is not JSON: {payload[:index][:200]!r}") from exc
        if not isinstance(metadata, dict) or set(metadata) - {"statusCode", "headers", "multiValueHeaders", "cookies"}:
            raise ProtocolError(f"the prelude has keys API Gateway does not accept: {metadata!r}")
        return metadata, payload[index + len(DELIMITER) :]

    @property
    def status(self) -> int:
        return int(self.split()[0].get("statusCode", 200))

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.split()[0].get("headers") or {})

    @property
    def body(self) -> bytes:
        return self.split()[1]

    def json(self) -> Any:
        return json.loads(self.body)


class Invocation:
    """A queued event and, as they arrive, the chunks the runtime streams back."""

    def __init__(
        self, request_id: str, event: Any, deadline_ms: int, api: RuntimeAPI, cut_after: int | None = None
    ) -> None:
        self.request_id = request_id
        self.event = event
        self.deadline_ms = deadline_ms
        self.cut_after = cut_after
        self.queued_at = time.monotonic()
        self._api = api
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._result: Result | None = None
        self._done = threading.Event()

    def _push(self, kind: str, value: Any) -> None:
        self._events.put((kind, value))

    def _complete(self, result: Result) -> None:
        self._result = result
        self._done.set()
        self._events.put(("done", result))

    def events(self, timeout: float = 60) -> Any:
        """Yield ``("chunk", (time, bytes))`` as chunks arrive, then ``("done", Result)``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"invocation {self.request_id} did not finish within {timeout} s")
            try:
                kind, value = self._events.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                self._api.check_alive()
                continue
            yield kind, value
            if kind == "done":
                return

    def body_chunks(self, timeout: float = 60) -> Any:
        """Each raw chunk payload with its arrival time (prelude chunks included), as they come."""
        for kind, value in self.events(timeout):
            if kind == "chunk":
                yield value

    def result(self, timeout: float = 60) -> Result:
        """Wait for the end of the invocation (whether or not its chunks were iterated)."""
        deadline = time.monotonic() + timeout
        while not self._done.wait(min(0.2, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"invocation {self.request_id} did not finish within {timeout} s")
            self._api.check_alive()
        assert self._result is not None
        return self._result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        return

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        # Status line, headers and body in one write.
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        merged = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
        lines += [f"{name}: {value}" for name, value in merged.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def do_GET(self) -> None:
        if self.path != f"{API_PREFIX}/invocation/next":
            return self._answer(404, b'{"errorMessage":"unknown path"}')
        api = self.server.api
        if api.first_poll_at is None:
            api.first_poll_at = time.monotonic()  # Lambda's init phase ends here
        invocation = api._pending.get()
        if invocation is None:  # closing: let every waiting runtime loop fail and end
            self.server.api._pending.put(None)
            self.close_connection = True
            return self._answer(503, b'{"errorMessage":"the Runtime API is shutting down"}')
        self.server.api._current[invocation.request_id] = invocation
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.server.api.function_arn,
            "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{invocation.request_id[-12:]:0>24};Sampled=0",
        }
        event = invocation.event if isinstance(invocation.event, bytes) else json.dumps(invocation.event).encode()
        self._answer(200, event, headers)

    def do_POST(self) -> None:
        api = self.server.api
        if self.path == f"{API_PREFIX}/init/error":
            api.init_error = {"type": self.headers.get("Lambda-Runtime-Function-Error-Type"), **self._json_body()}
            return self._answer(202, b'{"status":"OK"}')
        parts = self.path[len(API_PREFIX) :].split("/")
        if len(parts) != 4 or parts[1] != "invocation" or parts[3] not in ("response", "error"):
            return self._answer(404, b'{"errorMessage":"unknown path"}')
        invocation = api._current.pop(parts[2], None)
        if invocation is None:
            self._drain()
            return self._answer(400, b'{"errorMessage":"unknown or finished request id"}')
        headers = {name: value for name, value in self.headers.items()}
        if parts[3] == "error":
            result = Result(invocation.request_id, "error", headers, error=self._json_body())
            result.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        elif (self.headers.get("Lambda-Runtime-Function-Response-Mode") or "").lower() == "streaming":
            result = Result(invocation.request_id, "streaming", headers)
            try:
                self._read_chunked(result, invocation)
            except _Cut:
                # Like a caller that hangs up: the runtime's next writes fail.
                result.mode = "cut"
                invocation._complete(result)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            except ProtocolError as exc:
                api.protocol_errors.append(str(exc))
                result.error = {"protocolError": str(exc)}
                invocation._complete(result)
                self.close_connection = True
                return self._answer(400, json.dumps({"errorMessage": str(exc)}).encode())
        else:
            body = self._read_exact(int(self.headers.get("Content-Length") or 0))
            result = Result(invocation.request_id, "buffered", headers, raw=body, chunks=[body])
        invocation._complete(result)
        self._answer(202, b'{"status":"OK"}')

    def _read_exact(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) != size:
            raise ProtocolError(f"the body ended after {len(data)} of {size} bytes")
        return data

    def _json_body(self) -> dict[str, Any]:
        data = self._drain()
        try:
            value = json.loads(data or b"{}")
        except ValueError:
            return {"raw": data.decode("utf-8", "replace")}
        return value if isinstance(value, dict) else {"value": value}

    def _drain(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            result = Result("", "streaming")
            self._read_chunked(result, None)
            return result.payload
        return self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_chunked(self, result: Result, invocation: Invocation | None) -> None:
        """HTTP/1.1 chunked encoding, strictly, recording the wire bytes and each chunk's arrival."""
        if (self.headers.get("Transfer-Encoding") or "").lower() != "chunked":
            raise ProtocolError("a streamed response must be sent with Transfer-Encoding: chunked")
        raw = bytearray()
        while True:
            line = self.rfile.readline(1024)
            raw += line
            if not line.endswith(b"\r\n"):
                raise ProtocolError(f"a chunk-size line must end with CRLF: {line!r}")
            try:
                size = int(line[:-2].split(b";", 1)[0], 16)
            except ValueError as exc:
                raise ProtocolError(f"bad chunk-size line {line!r}") from exc
            if size == 0:
                break
            data = self._read_exact(size)
            ending = self.rfile.read(2)
            raw += data + ending
            if ending != b"\r\n":
                raise ProtocolError(f"chunk data must be followed by CRLF, got {ending!r}")
            arrived = time.monotonic()
            result.chunks.append(data)
            result.arrivals.append(arrived)
            if invocation is not None:
                invocation._push("chunk", (arrived, data))
                if invocation.cut_after is not None and len(result.chunks) >= invocation.cut_after:
                    result.raw = bytes(raw)
                    raise _Cut()
        declared = {t.strip().lower() for t in (self.headers.get("Trailer") or "").split(",") if t.strip()}
        while True:
            line = self.rfile.readline(65536)
            raw += line
            if line == b"\r\n":
                break
            if not line.endswith(b"\r\n") or b":" not in line:
                raise ProtocolError(f"bad trailer line {line!r}")
            name, _, value = line[:-2].decode("latin-1").partition(":")
            if name.strip().lower() not in declared:
                raise ProtocolError(f"trailer {name!r} was not declared in the Trailer header")
            result.trailers[name.strip()] = value.strip()
        result.raw = bytes(raw)


class _Cut(Exception):
    """The emulated caller hangs up mid-stream."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: RuntimeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A function process stopped while its poll was open: expected at shutdown, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RuntimeAPI:
    """One function instance's Runtime API on loopback (a context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, function_name: str = "pennyworth-local-stream") -> None:
        self.function_name = function_name
        self.function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.init_error: dict[str, Any] | None = None
        self.protocol_errors: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        #: time.monotonic() of the first /next: the end of the function's init phase.
        self.first_poll_at: float | None = None
        self._timeout_ms = 300_000
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._current: dict[str, Invocation] = {}
        self._ids = itertools.count(1)
        self._server = _Server((host, port), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="lambda-runtime-api", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """What ``AWS_LAMBDA_RUNTIME_API`` holds: ``host:port``."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start_function(
        self,
        task_root: Path,
        *,
        env: dict[str, str] | None = None,
        handler: str = "chalicelib.streaming.handler.handle",
        interpreter: str | None = None,
        timeout_seconds: int = 300,
        stdout: Any = None,
        stderr: Any = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``task_root``'s exec wrapper as Lambda does: ``wrapper interpreter <runtime args>``.

        The environment is Lambda's, not ours: the function's ``env`` plus the reserved
        variables; nothing leaks in from the calling process (its venv, its PYTHONPATH).
        """
        task_root = Path(task_root).resolve()
        wrapper = task_root / WRAPPER
        if not os.access(wrapper, os.X_OK):
            raise ProtocolError(f"{wrapper} is missing or not executable: Lambda could not start it")
        environment = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "AWS_LAMBDA_EXEC_WRAPPER": str(wrapper),
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "_HANDLER": handler,
            **(env or {}),
        }
        self._timeout_ms = timeout_seconds * 1000
        self.started_at = time.monotonic()
        command = [str(wrapper), interpreter or bare_interpreter(), *MANAGED_RUNTIME_ARGS]
        self.process = subprocess.Popen(  # noqa: S603 - the artifact's own wrapper
            command, env=environment, cwd="/", stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        return self.process

    def invoke(self, event: Any, *, timeout_seconds: int | None = None, cut_after: int | None = None) -> Invocation:
        """Queue one event (bytes are sent as they are); the runtime's next ``/next`` receives it.

        ``cut_after``: close the response connection after that many chunks, as Lambda would
        when API Gateway's caller goes away.
        """
        request_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
        seconds = timeout_seconds or self._timeout_ms // 1000
        deadline_ms = int(time.time() * 1000) + seconds * 1000
        invocation = Invocation(request_id, event, deadline_ms, self, cut_after)
        self._pending.put(invocation)
        return invocation

    def check_alive(self) -> None:
        """Raise if the started function has exited (it should loop forever)."""
        if self.process is not None and self.process.poll() is not None:
            detail = f"; init error {self.init_error}" if self.init_error else ""
            raise ProtocolError(f"the function exited with status {self.process.returncode}{detail}")

    def close(self) -> None:
        """Stop the function (as Lambda does, without warning), then end any in-process loop's poll."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pending.put(None)
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RuntimeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bare_interpreter() -> str:
    """This Python outside any virtualenv (Lambda's is bare too; the wrapper adds ``-S``)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def proxy_event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload format 1.0), as the streaming integration sends it."""
    headers = {"Content-Type": "application/json", "Host": "local", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/api{path}",
            "stage": "api",
            "requestId": "local",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }
