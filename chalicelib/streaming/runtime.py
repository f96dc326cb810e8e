"""Our Lambda runtime loop, speaking the Runtime API's streaming response mode.

Lambda's managed Python runtime answers each invocation with one buffered
payload, so it cannot stream. On the managed ``python3.12`` runtime the
function's ``AWS_LAMBDA_EXEC_WRAPPER`` (``chalicelib/streaming/exec-wrapper``)
replaces the managed loop with this module: Lambda still provides the
interpreter, the sandbox and the ``AWS_LAMBDA_RUNTIME_API`` endpoint; we
fetch invocations and post responses ourselves (docs/architecture.md).

For each invocation: ``GET /runtime/invocation/next`` → the deadline from
``Lambda-Runtime-Deadline-Ms`` → the handler (``_HANDLER``, ``module.function``;
default ``chalicelib.streaming.handler.handle``) → ``POST .../response`` with
``Lambda-Runtime-Function-Response-Mode: streaming`` and chunked transfer
encoding: API Gateway's JSON prelude (``statusCode``, ``headers``,
``cookies``), eight NUL bytes, then each body chunk in its own HTTP chunk, one
socket write each, the moment the producer yields it (a small whole body, known
before it is sent, goes with the prelude, in the first write). An exception after the
first byte ends the body with the ``Lambda-Runtime-Function-Error-Type`` /
``-Body`` trailers; one before it goes to ``.../error``; a handler that cannot
be imported goes to ``/runtime/init/error``. The ``StreamingResult`` is always
closed, whatever happened, after the end of the response (its producer bills
there, and stores a model answer's bill); no write goes past
``WRITE_MARGIN_SECONDS`` before the deadline, so a caller that stops reading
cannot keep it from closing.

Stdlib only, no Chalice: the first ``next`` is sent as soon as the handler
module is imported. Logs are JSON lines on stderr (CloudWatch keeps one event
per line); the wrapper starts Python unbuffered so they leave at once.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.shared.http import StreamingResult

    Handler = Callable[..., StreamingResult]

API_VERSION = "2018-06-01"
DEFAULT_HANDLER = "chalicelib.streaming.handler.handle"
#: The prelude/body separator API Gateway requires (response-transfer-mode-lambda).
DELIMITER = b"\0" * 8
#: API Gateway must find the delimiter within the first 16 KB of the stream.
MAX_PRELUDE_BYTES = 16 * 1024 - len(DELIMITER)
#: What the Node.js runtime's ``HttpResponseStream.from`` declares for the prelude protocol.
PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
#: The answer's writes, and the wait for the Runtime API to take its end, stop this long before
#: Lambda's deadline. A caller that reads slowly pushes back on them (response streaming has
#: backpressure): unbounded, it could hold the function until Lambda killed it, before closing the
#: answer had stored its bill. Closing still has this long (the model call ended 3 s before).
WRITE_MARGIN_SECONDS = 1.5
#: A whole body up to this size leaves with the prelude, in the first write. A larger one is a chunk
#: of its own: each write's bound starts when it starts, and copying megabytes into the first write
#: would take time that bound does not see.
ONE_WRITE_BYTES = 64 * 1024


class RuntimeAPIError(RuntimeError):
    """The Runtime API answered something a runtime cannot go on from."""


@dataclass(frozen=True)
class Invocation:
    """One event from ``/runtime/invocation/next``; ``event`` is None when it was not JSON."""

    request_id: str
    deadline: float | None
    event: Any
    trace_id: str | None = None


def log(level: str, message: str, **fields: Any) -> None:
    """One JSON line on stderr, shaped like the service's Powertools lines."""
    record = {"level": level, "location": "streaming.runtime", "message": message, "service": "pennyworth"}
    record["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S%z")
    record.update(fields)
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


class RuntimeClient:
    """The Runtime API at ``host:port``: one kept-alive connection for polling and error reports."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = (host, int(port)) if host else (address, 80)
        self._connection: http.client.HTTPConnection | None = None

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        # No timeout: Lambda freezes the process while /next waits, for as long as it likes.
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port)
            try:
                self._connection.request(method, f"/{API_VERSION}{path}", body=body, headers=dict(headers or {}))
                response = self._connection.getresponse()
                return response, response.read()
            except (ConnectionError, http.client.HTTPException):
                # A kept-alive connection the server had closed: reconnect once.
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def next_invocation(self) -> Invocation:
        """Block until Lambda has an event for us."""
        response, body = self._request("GET", "/runtime/invocation/next")
        if response.status != 200:
            raise RuntimeAPIError(f"/runtime/invocation/next answered {response.status}: {body[:200]!r}")
        request_id = response.getheader("Lambda-Runtime-Aws-Request-Id") or ""
        if not request_id:
            raise RuntimeAPIError("/runtime/invocation/next sent no Lambda-Runtime-Aws-Request-Id")
        deadline_ms = response.getheader("Lambda-Runtime-Deadline-Ms") or ""
        deadline = int(deadline_ms) / 1000 if deadline_ms.isdigit() else None
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        return Invocation(request_id, deadline, event, response.getheader("Lambda-Runtime-Trace-Id"))

    def post_error(self, path: str, error_type: str, message: str) -> None:
        """``/runtime/init/error`` or ``/runtime/invocation/{id}/error``."""
        body = json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": []}).encode()
        headers = {"Content-Type": "application/json", ERROR_TYPE_TRAILER: error_type}
        response, _ = self._request("POST", path, body, headers)
        if response.status >= 300:
            log("ERROR", "the Runtime API refused an error report", path=path, status=response.status)

    def open_stream(self, request_id: str, first: bytes, stop_at: float | None = None) -> StreamWriter:
        """A new connection for one streamed response: the request head and ``first`` in one write.

        Lambda wants the connection closed once the response is written, so it is not the polling one.
        http.client sets TCP_NODELAY when it connects: a chunk never waits for the previous one's ACK.
        ``stop_at`` (a ``time.time()``): no write, nor the wait for the end's answer, goes past it (a
        ``TimeoutError`` instead).
        """
        connection = http.client.HTTPConnection(self.host, self.port, timeout=seconds_left(stop_at))
        connection.putrequest(
            "POST", f"/{API_VERSION}/runtime/invocation/{request_id}/response", skip_accept_encoding=True
        )
        connection.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Content-Type", PRELUDE_CONTENT_TYPE)
        connection.putheader("Trailer", f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}")
        connection.endheaders(_chunk(first))
        return StreamWriter(connection, stop_at)


def _chunk(data: bytes) -> bytes:
    return b"%X\r\n%b\r\n" % (len(data), data)


def seconds_left(stop_at: float | None) -> float | None:
    """Seconds until ``stop_at`` (a ``time.time()``) as a socket timeout (None: no bound; past it: at once)."""
    return None if stop_at is None else max(0.001, stop_at - time.time())


class StreamWriter:
    """The body of one streamed response, chunked by hand: http.client cannot send trailers.

    With ``stop_at``, each write (and the wait for the Runtime API's answer to the end) fails with
    ``TimeoutError`` rather than go past it.
    """

    def __init__(self, connection: http.client.HTTPConnection, stop_at: float | None = None) -> None:
        self.connection = connection
        self.stop_at = stop_at

    def _bound(self) -> None:
        if self.stop_at is not None and self.connection.sock is not None:
            self.connection.sock.settimeout(seconds_left(self.stop_at))

    def write(self, data: bytes) -> None:
        """One chunk, one socket write; an empty chunk is skipped (it would end the body)."""
        if data:
            self._bound()
            self.connection.send(_chunk(data))

    def finish(self, trailers: Mapping[str, str] | None = None) -> int:
        """The last chunk (and trailers), then the Runtime API's status; closes the connection."""
        try:
            self._bound()
            lines = "".join(f"{name}: {value}\r\n" for name, value in (trailers or {}).items())
            self.connection.send(b"0\r\n" + lines.encode("ascii") + b"\r\n")
            response = self.connection.getresponse()
            response.read()
            return response.status
        finally:
            self.connection.close()

    def abort(self) -> None:
        self.connection.close()


def prelude(result: StreamingResult) -> bytes:
    """API Gateway's metadata JSON and the eight-NUL delimiter; ``Set-Cookie`` goes to ``cookies``."""
    status = result.status
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"invalid HTTP status {status!r}")
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in result.headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header {name!r} is not a pair of strings")
        if name.lower() == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = value
    metadata: dict[str, Any] = {"statusCode": status, "headers": headers}
    if cookies:
        metadata["cookies"] = cookies
    data = json.dumps(metadata, separators=(",", ":")).encode()
    if len(data) > MAX_PRELUDE_BYTES:
        raise ValueError(f"status and headers take {len(data)} bytes; API Gateway reads at most 16 KB before the body")
    return data + DELIMITER


def _public_message(error_type: str, request_id: str) -> str:
    # What Lambda passes on to API Gateway (and perhaps further): no details, they are in our log.
    return f"The streaming function failed ({error_type}); its log has request {request_id}."


def _as_bytes(chunk: object) -> bytes:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise TypeError(f"a body chunk must be bytes, not {type(chunk).__name__}")
    return bytes(chunk)


def serve(client: RuntimeClient, invocation: Invocation, handler: Handler) -> str:
    """Answer one invocation; returns how it ended: ``streamed``, ``failed``, ``cut`` or ``error``.

    ``failed``: an exception after the first byte (error trailers); ``cut``: Lambda closed the
    response under us (API Gateway's caller left, or a limit); ``error``: nothing was streamed
    and the invocation error endpoint was told.
    """
    request_id = invocation.request_id
    if invocation.trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = invocation.trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    error_path = f"/runtime/invocation/{request_id}/error"
    if invocation.event is None or invocation.deadline is None:
        log("ERROR", "the Runtime API sent an invocation without a JSON event or a deadline", request_id=request_id)
        error_type = "Runtime.InvalidInvocation"
        client.post_error(error_path, error_type, _public_message(error_type, request_id))
        return "error"
    result: StreamingResult | None = None
    try:
        try:
            result = handler(invocation.event, deadline=invocation.deadline)
            head = prelude(result)
        except Exception as exc:
            error_type = f"Runtime.{type(exc).__name__}"
            log("ERROR", "the handler gave no answer to stream", request_id=request_id, exception=_trace(exc))
            client.post_error(error_path, error_type, _public_message(error_type, request_id))
            return "error"
        stop_at = invocation.deadline - WRITE_MARGIN_SECONDS
        body = result.body if result.body is not None and len(result.body) <= ONE_WRITE_BYTES else None
        try:
            writer = client.open_stream(request_id, head if body is None else head + body, stop_at)
        except OSError as exc:
            log("WARNING", "the response stream could not be opened", request_id=request_id, error=repr(exc))
            return "cut"
        if body is not None:  # all of it is sent: only the end is left
            return "streamed" if _finish(writer, request_id) else "cut"
        return _stream(writer, iter(result.chunks), request_id)
    finally:
        if result is not None:
            try:
                result.close()
            except Exception as exc:
                log("ERROR", "closing the answer failed", request_id=request_id, exception=_trace(exc))


def _stream(writer: StreamWriter, chunks: Iterator[object], request_id: str) -> str:
    """Send each chunk as it comes; end with trailers if the producer raises."""
    while True:
        try:
            chunk = _as_bytes(next(chunks))
        except StopIteration:
            break
        except Exception as exc:
            error_type = f"Function.{type(exc).__name__}"
            log("ERROR", "the stream failed mid-way", request_id=request_id, exception=_trace(exc))
            import base64

            body = json.dumps({"errorType": error_type, "errorMessage": _public_message(error_type, request_id)})
            trailers = {ERROR_TYPE_TRAILER: error_type, ERROR_BODY_TRAILER: base64.b64encode(body.encode()).decode()}
            return "failed" if _finish(writer, request_id, trailers) else "cut"
        try:
            writer.write(chunk)
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                log("WARNING", "the caller did not take the answer before the deadline", request_id=request_id)
            else:
                log("WARNING", "the response stream was closed under us", request_id=request_id, error=repr(exc))
            writer.abort()
            return "cut"
    return "streamed" if _finish(writer, request_id) else "cut"


def _finish(writer: StreamWriter, request_id: str, trailers: Mapping[str, str] | None = None) -> bool:
    """End the body; False when the response could not be completed."""
    try:
        status = writer.finish(trailers)
    except (OSError, http.client.HTTPException) as exc:
        log("WARNING", "the Runtime API dropped the end of the response", request_id=request_id, error=repr(exc))
        return False
    if status >= 300:
        log("ERROR", "the Runtime API refused the response", request_id=request_id, status=status)
        return False
    return True


def _trace(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


class HandlerNotFound(LookupError):
    """``_HANDLER`` names no callable (the module itself imported)."""


def load_handler(name: str) -> Handler:
    """``package.module.function`` → the function (the format of Lambda's ``Handler`` setting).

    Raises HandlerNotFound for a bad name or a missing function; whatever importing the
    module raises (ImportError, SyntaxError, an error at import time) propagates.
    """
    module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        raise HandlerNotFound(f"handler {name!r} is not module.function")
    handler = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(handler):
        raise HandlerNotFound(f"{module_name} has no function {attribute!r}")
    return handler


def run(address: str, handler: Handler, *, invocations: int | None = None) -> None:
    """Serve invocations from the Runtime API at ``address``: forever, or ``invocations`` of them."""
    client = RuntimeClient(address)
    served = 0
    while invocations is None or served < invocations:
        serve(client, client.next_invocation(), handler)
        served += 1


def main() -> int:
    """What the exec wrapper starts: load the handler (Lambda's init phase), then loop."""
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        log("ERROR", "AWS_LAMBDA_RUNTIME_API is not set: run inside Lambda or local/lambda_runtime.py")
        return 2
    name = os.environ.get("_HANDLER") or DEFAULT_HANDLER
    try:
        handler = load_handler(name)
    except Exception as exc:
        error_type = "Runtime.HandlerNotFound" if isinstance(exc, HandlerNotFound) else "Runtime.ImportModuleError"
        log("ERROR", "the handler cannot be loaded", handler=name, exception=_trace(exc))
        RuntimeClient(address).post_error("/runtime/init/error", error_type, f"Cannot load the handler {name!r}.")
        return 1
    run(address, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
