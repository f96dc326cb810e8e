"""HTTP front end of the emulator: routing, SigV4 presence check, responses and streams."""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from . import openai_compat
from .answers import compose
from .converse_request import parse_converse
from .directives import Directives, parse_directives, raise_fault, resets
from .embeddings import embedding_texts, invoke_embedding
from .errors import BedrockError, malformed, validation
from .eventstream import CONTENT_TYPE as EVENTSTREAM_CONTENT_TYPE
from .eventstream import encode_event, encode_exception
from .guardrails import get_guardrail
from .models import resolve_model
from .stream import cut_point, stream_events

_CREDENTIAL = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_MAX_RECORDED = 1000
_OPERATIONS = frozenset({"converse", "converse-stream", "invoke", "invoke-with-response-stream"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, kept so tests can assert what a client sent."""

    method: str
    path: str
    operation: str
    model_id: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


class EmulatorServer(ThreadingHTTPServer):
    """A threading HTTP server speaking the Bedrock Runtime wire protocol."""

    daemon_threads = True
    allow_reuse_address = True
    # The gateway's calls arrive in bursts (64 clients at once): socketserver's default accept queue
    # of 5 dropped the rest of a burst, seen as connections that stalled for seconds or broke off.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        strict_profiles: bool = False,
        verbose: bool = False,
        seed: int | None = None,
        openai_key: str | None = None,
    ) -> None:
        super().__init__(address, BedrockHandler)
        self.strict_profiles = strict_profiles
        self.verbose = verbose
        #: Draws for ``#emulator:rate`` (seeded: a benchmark's faults repeat run after run).
        self.random = random.Random(seed)
        #: The key the OpenAI-compatible mode (``/openai/v1``) wants; None: it takes any.
        self.openai_key = openai_key
        self.requests: list[RecordedRequest] = []
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._serving = threading.Event()

    @property
    def base_url(self) -> str:
        """http://host:port of the bound socket."""
        host, port = self.server_address[0], self.server_address[1]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}"

    def record(self, entry: RecordedRequest) -> None:
        """Append to the bounded request log."""
        with self._lock:
            self.requests.append(entry)
            del self.requests[:-_MAX_RECORDED]

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """Serve until shutdown(), flagging that the loop is running."""
        self._serving.set()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving.clear()

    def shutdown(self) -> None:
        """Stop the serving loop (if running), close the socket and join the thread."""
        if self._serving.is_set():
            super().shutdown()
        self.server_close()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)


def _check_auth(headers: Message) -> str:
    """Require a SigV4 Authorization header scoped to 'bedrock' plus X-Amz-Date; the region it was signed for.

    Signatures are not verified. The region says which of Bedrock's regional endpoints the
    caller meant: one emulator stands in for all of them.
    """
    auth = headers.get("Authorization")
    if not auth:
        raise BedrockError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
        raise BedrockError(
            "IncompleteSignatureException",
            "The bedrock emulator accepts only SigV4-signed requests (Authorization: AWS4-HMAC-SHA256 Credential=...).",
        )
    if not headers.get("X-Amz-Date"):
        raise BedrockError(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    match = _CREDENTIAL.match(auth)
    if match is None:
        raise BedrockError("IncompleteSignatureException", "Authorization header has a malformed Credential scope.")
    if match.group(2) != "bedrock":
        raise BedrockError("InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'. ")
    return match.group(1)


def _json_object(body: bytes, invoke: bool) -> Mapping[str, object]:
    """Request body as a JSON object, else the error Bedrock gives for it."""
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        if invoke:
            raise malformed(f"#: expected type: JSONObject ({exc})") from None
        raise validation(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        if invoke:
            raise malformed("#: expected type: JSONObject")
        raise validation("The request body must be a JSON object.")
    return parsed


class BedrockHandler(BaseHTTPRequestHandler):
    """Per-request handler; HTTP/1.1 so clients can keep connections alive."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK stall a reused keep-alive connection by ~40 ms.
    disable_nagle_algorithm = True
    server_version = "BedrockEmulator/1.0"
    server: EmulatorServer
    _streaming = False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Access log to stderr only in verbose mode."""
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def do_GET(self) -> None:
        """GET /ping; everything else is an unknown operation."""
        self._dispatch()

    def do_POST(self) -> None:
        """The Bedrock Runtime operations."""
        self._dispatch()

    do_PUT = do_POST
    do_DELETE = do_POST

    def _read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        """Route one request and turn BedrockError into Bedrock's error response."""
        request_id = str(uuid.uuid4())
        self._streaming = False
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.startswith(openai_compat.PREFIX + "/") or path == openai_compat.PREFIX:
            self._openai(path.removeprefix(openai_compat.PREFIX), body, request_id)
            return
        try:
            if self.command == "GET" and path == "/ping":
                self._send_json(200, {"status": "ok"}, request_id)
                return
            region = _check_auth(self.headers)
            parts = path.split("/")
            if self.command == "GET" and len(parts) == 3 and parts[1] == "guardrails":
                version = parse_qs(self.path.partition("?")[2]).get("guardrailVersion", [None])[0]
                self._send_json(200, get_guardrail(unquote(parts[2]), version, region), request_id)
                return
            if self.command != "POST" or len(parts) != 4 or parts[1] != "model" or parts[3] not in _OPERATIONS:
                raise BedrockError("UnknownOperationException", f"No operation matches {self.command} {path}.")
            model_id, operation = unquote(parts[2]), parts[3]
            headers = {k: v for k, v in self.headers.items()}
            self.server.record(RecordedRequest(self.command, self.path, operation, model_id, headers, body))
            if operation in ("converse", "converse-stream"):
                self._converse(model_id, body, request_id, region, stream=operation == "converse-stream")
            elif operation == "invoke":
                self._invoke(model_id, body, request_id)
            else:
                raise validation("The bedrock emulator does not implement InvokeModelWithResponseStream.")
        except BedrockError as err:
            self._send_error(err, request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - an emulator bug must still answer, not hang the client
            traceback.print_exc(file=sys.stderr)
            if self._streaming:
                self.close_connection = True
            else:
                self._send_error(BedrockError("InternalServerException", f"bedrock emulator bug: {exc!r}"), request_id)

    def _openai(self, path: str, raw: bytes, request_id: str) -> None:
        """The OpenAI-compatible mode: chat completions (streamed or whole), embeddings, models."""
        headers = {k: v for k, v in self.headers.items()}
        self.server.record(RecordedRequest(self.command, self.path, "openai" + path, "", headers, raw))
        try:
            openai_compat.check_key(self.headers, self.server.openai_key)
            if self.command == "GET" and path == "/models":
                self._send_json(200, openai_compat.models_body(("local-llama", "local-embed")), request_id)
                return
            if self.command != "POST" or path not in ("/chat/completions", "/embeddings"):
                raise openai_compat.OpenAIError(404, f"Unknown request URL: {self.command} {path}.", code="unknown_url")
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, ValueError):
                body = None
            if not isinstance(body, dict):
                raise openai_compat.OpenAIError(400, "The request body must be a JSON object.")
            try:
                if path == "/embeddings":
                    self._send_json(200, openai_compat.embeddings_body(body), request_id)
                    return
                reply = openai_compat.compose(body)
            except BedrockError as err:
                raise openai_compat.from_bedrock(err) from None
            if not body.get("stream"):
                self._send_json(200, openai_compat.completion_body(body, reply), request_id)
                return
            self._send_sse(openai_compat.stream_chunks(body, reply), reply.directives, request_id)
        except openai_compat.OpenAIError as err:
            self._send_json(err.status, err.body(), request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_sse(self, chunks: list[dict[str, object]], found: Directives, request_id: str) -> None:
        """Server-sent events as OpenAI streams them; ``cut`` drops the connection half-way."""
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", request_id)
        self.end_headers()
        frames = list(openai_compat.sse(chunks))
        cut_at = len(frames) // 2 if (found.cut or found.cut_clean) else None
        for index, frame in enumerate(frames):
            if cut_at is not None and index == cut_at:
                if found.cut:
                    self.close_connection = True
                    return
                break
            self._write_chunk(frame)
            if found.chunk_delay and index < len(frames) - 1:
                time.sleep(found.chunk_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _converse(self, model_id: str, body: bytes, request_id: str, region: str, *, stream: bool) -> None:
        """Converse and ConverseStream."""
        model = resolve_model(model_id, strict_profiles=self.server.strict_profiles)
        request = parse_converse(_json_object(body, invoke=False), model)
        found = parse_directives(request.user_texts, request.last_user.texts)
        found.aim(model_id, region, self.server.random.random())
        if resets(found):
            self._reset()
            return
        raise_fault(found)
        if found.sleep:
            time.sleep(found.sleep)
        answer = compose(request, found)
        if not stream:
            self._send_json(200, answer.converse_body(), request_id)
            return
        events = stream_events(answer)
        frames = [encode_event(name, payload) for name, payload in events]
        self._send_stream(frames, cut_point(events), found, request_id)

    def _invoke(self, model_id: str, body: bytes, request_id: str) -> None:
        """InvokeModel for embedding models."""
        model = resolve_model(model_id, strict_profiles=self.server.strict_profiles)
        payload = _json_object(body, invoke=True)
        result = invoke_embedding(model, payload)
        found = parse_directives(embedding_texts(payload), [])
        found.aim(model_id, None, self.server.random.random())
        if resets(found):
            self._reset()
            return
        raise_fault(found)
        if found.sleep:
            time.sleep(found.sleep)
        extra = {
            "X-Amzn-Bedrock-Input-Token-Count": str(result.input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": "0",
            "X-Amzn-Bedrock-Invocation-Latency": str(20 + result.input_tokens // 10 + int(found.sleep * 1000)),
        }
        self._send_json(200, result.body, request_id, extra)

    def _send_json(self, status: int, body: object, request_id: str, extra: Mapping[str, str] | None = None) -> None:
        """A complete JSON response with Content-Length."""
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("x-amzn-RequestId", request_id)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _send_error(self, err: BedrockError, request_id: str) -> None:
        """Bedrock's error shape: {"message"} body plus x-amzn-ErrorType header."""
        self._send_json(
            err.status, err.body(), request_id, {"x-amzn-ErrorType": err.error_type_header(), **err.headers}
        )

    def _reset(self) -> None:
        """Reset the connection (a TCP RST, no byte of an answer), as a broken network path does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _write_chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk, flushed immediately so the client sees each event as it is sent."""
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _send_stream(self, frames: list[bytes], cut_at: int, found: Directives, request_id: str) -> None:
        """Chunked event stream, honouring cut, cut_clean, stream_error and chunk_delay."""
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", EVENTSTREAM_CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", request_id)
        self.end_headers()
        interrupted = found.cut or found.cut_clean or found.stream_error
        try:
            for index, frame in enumerate(frames):
                if interrupted and index == cut_at:
                    if found.stream_error:
                        self._write_chunk(
                            encode_exception(
                                "modelStreamErrorException",
                                {
                                    "message": "The model stream was interrupted by an error.",
                                    "originalStatusCode": 500,
                                    "originalMessage": "emulated model stream error",
                                },
                            )
                        )
                    if found.cut and not found.stream_error and not found.cut_clean:
                        # Drop the connection without the terminating chunk, like a network cut.
                        self.close_connection = True
                        return
                    break
                self._write_chunk(frame)
                if found.chunk_delay and index < len(frames) - 1:
                    time.sleep(found.chunk_delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def start_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    strict_profiles: bool = False,
    verbose: bool = False,
    seed: int | None = None,
    openai_key: str | None = None,
) -> tuple[EmulatorServer, str]:
    """Start the emulator in a daemon thread; returns (server, base_url). Stop with server.shutdown()."""
    server = EmulatorServer(
        (host, port), strict_profiles=strict_profiles, verbose=verbose, seed=seed, openai_key=openai_key
    )
    thread = threading.Thread(
        target=server.serve_forever, name=f"bedrock-emulator:{server.server_address[1]}", daemon=True
    )
    server.thread = thread
    thread.start()
    server._serving.wait(timeout=5)
    return server, server.base_url
