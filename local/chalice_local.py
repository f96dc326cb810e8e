"""``chalice`` for the local stack, answering as our API Gateway does.

* chalice local imitates API Gateway's Cognito authorizer by base64-decoding
  the Authorization header as a JWT, and crashes (no response at all) when it
  is anything else, e.g. an API key sent to an /admin route. API Gateway would
  answer 401 there; here the header is passed on undecoded and the app's own
  token check (chalicelib/admin/auth.py) answers the same 401.
* Its server's accept queue held 5 connections, so a burst of clients through the front had
  connections dropped; it holds 128 here, as the front's and moto's do.
* An unknown route got chalice local's 403 whose message repeats the whole
  Authorization header (the caller's API key), and a wrong method Chalice's
  ``{"Code": "MethodNotAllowedError"}``. Both are OpenAI error envelopes here
  (404 ``unknown_url``, 405 ``method_not_allowed`` with ``Allow``), as the
  template's gateway responses make them on AWS; neither repeats a header.

* A repeated header reached the app with its first value only; API Gateway hands Lambda all of
  them. Here the app gets them joined, as on AWS (two keys in one request are refused).
* Stopped (SIGTERM), chalice local's handler threads (daemons) died with it, and with them any
  request in flight, unbilled (an MCP ``chat``, embeddings). Here the process takes no new
  request and waits for those in flight to answer (``DRAIN_SECONDS`` at most) before it exits.
* Path parameters reach the app URL-decoded, as API Gateway passes them (``pathParameters``):
  chalice local passed ``/admin/people/a%40example.com`` on as ``a%40example.com``, and a team
  named "Platform Eng" as ``Platform%20Eng``.

* Behind the local front (``--behind-front``, as ``make dev`` runs it) it listens on a private
  port and does not print chalice's "Serving on http://127.0.0.1:<that port>": the front prints
  the address to use.

Usage: ``python -m local.chalice_local local --stage local --port 8000`` (any chalice command).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from chalicelib.edge.routes import unknown_route
from chalicelib.errors import AppError, MethodNotAllowed

#: How long a stopped chalice local waits for the requests in flight (the buffered routes end in 25 s).
DRAIN_SECONDS = 30.0
_in_flight = 0
_idle = threading.Condition()

BEHIND_FRONT = "--behind-front"


def tolerate_non_jwt_authorization() -> None:
    """Patch chalice local's JWT decoding to treat a non-JWT header as carrying no claims."""
    from chalice.local import LocalGatewayAuthorizer

    decode = LocalGatewayAuthorizer._decode_jwt_payload

    def lenient(self: Any, jwt: str) -> dict[str, Any]:
        try:
            claims = decode(self, jwt)
        except (IndexError, ValueError, UnicodeDecodeError, RecursionError):
            return {}
        return claims if isinstance(claims, dict) else {}

    LocalGatewayAuthorizer._decode_jwt_payload = lenient  # type: ignore[method-assign]


def combine_repeated_headers() -> None:
    """Hand the app every value of a repeated header, joined with ``, ``, as it gets them on AWS.

    chalice local kept a repeated header's first value; API Gateway gives Lambda all of them
    (``multiValueHeaders``), which the app joins (``combined_headers``). So a request carrying two
    keys in two ``Authorization`` headers is refused here as it is there, not answered for one.
    """
    from chalice.local import ChaliceRequestHandler

    parse = ChaliceRequestHandler._parse_payload

    def parse_payload(self: Any) -> tuple[dict[str, str], bytes | None]:
        _, body = parse(self)
        names = dict.fromkeys(name.lower() for name in self.headers)
        return {name: ", ".join(self.headers.get_all(name) or []) for name in names}, body

    ChaliceRequestHandler._parse_payload = parse_payload  # type: ignore[method-assign]


def decoded_path_parameters() -> None:
    """Patch chalice local's event: path parameters URL-decoded, as API Gateway's are."""
    from urllib.parse import unquote

    from chalice.local import LambdaEventConverter

    create = LambdaEventConverter.create_lambda_event

    def create_lambda_event(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        event = create(self, *args, **kwargs)
        if event.get("pathParameters"):
            event["pathParameters"] = {name: unquote(value) for name, value in event["pathParameters"].items()}
        return event

    LambdaEventConverter.create_lambda_event = create_lambda_event  # type: ignore[method-assign]


def answer_without_nagle() -> None:
    """Send with TCP_NODELAY: chalice local writes headers and body separately, which Nagle plus the
    client's delayed ACK would stall by ~40 ms on every reused keep-alive connection."""
    from chalice.local import ChaliceRequestHandler

    ChaliceRequestHandler.disable_nagle_algorithm = True


def accept_bursts() -> None:
    """A listen backlog of 128, not socketserver's 5: the front sends a burst of 64 clients at once."""
    from chalice.local import ThreadedHTTPServer

    ThreadedHTTPServer.request_queue_size = 128


def openai_routing_errors() -> None:
    """Patch chalice local's gateway: unknown routes and wrong methods become OpenAI errors."""
    from chalice.local import LocalGateway

    handle = LocalGateway.handle_request

    def handle_request(
        self: Any, method: str, path: str, headers: dict[str, Any], body: bytes | None
    ) -> dict[str, Any]:
        route_path = urlsplit(path).path
        try:
            route = self.event_converter._route_matcher.match_route(path)
        except ValueError:
            error: AppError = unknown_route(method, route_path)
            return _answer(error)
        methods = self._app_object.routes[route.route]
        if method != "OPTIONS" and method not in methods:
            allowed = ", ".join(sorted(methods))
            error = MethodNotAllowed(f"{route_path} does not accept {method}; use {allowed}.")
            return _answer(error, {"Allow": allowed})
        return _counted(lambda: handle(self, method, path, headers, body))

    LocalGateway.handle_request = handle_request  # type: ignore[method-assign]


def _counted(call: Any) -> Any:
    """Run one request's handling, counted as in flight (what a stop waits for)."""
    global _in_flight
    with _idle:
        _in_flight += 1
    try:
        return call()
    finally:
        with _idle:
            _in_flight -= 1
            _idle.notify_all()


def drain_on_sigterm() -> None:
    """On SIGTERM, stop taking requests and let those in flight answer (and bill) before exiting.

    The handler runs on the main thread, which serves the accept loop: while it waits, nothing new
    is accepted; the requests already accepted go on in their threads.
    """

    def stop(*_: Any) -> None:
        with _idle:
            done = _idle.wait_for(lambda: _in_flight == 0, timeout=DRAIN_SECONDS)
        if not done:
            print(f"chalice local: stopped with {_in_flight} request(s) still running", file=sys.stderr)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _answer(error: AppError, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": error.status_code,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": {},
        "body": json.dumps(error.to_body()),
    }


def quiet_private_address() -> None:
    """Behind the local front, say nothing of the private port: "Serving on" it would send people there."""
    from chalice.local import LocalDevServer

    def serve_forever(self: Any) -> None:
        self.server.serve_forever()

    LocalDevServer.serve_forever = serve_forever  # type: ignore[method-assign]


def main() -> int:
    from chalice.cli import main as chalice_main

    if BEHIND_FRONT in sys.argv:
        sys.argv.remove(BEHIND_FRONT)
        quiet_private_address()
    tolerate_non_jwt_authorization()
    openai_routing_errors()
    combine_repeated_headers()
    drain_on_sigterm()
    decoded_path_parameters()
    answer_without_nagle()
    accept_bursts()
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
