"""moto server for the local stack, with DynamoDB's per-request atomicity.

moto's server handles requests on threads but its DynamoDB backend is not
thread-safe: two concurrent conditional updates can both pass, and a
concurrent ``TransactWriteItems`` can fail while copying a table. Real
DynamoDB applies each request atomically, and pennyworth's budget and
rate-limit checks depend on that. So every request is handled under one lock.

Usage: ``python -m local.moto_server -H 127.0.0.1 -p 8001``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

_LOCK = threading.Lock()


def serialized(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """A WSGI app that runs ``app`` one request at a time (body included)."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with _LOCK:
            return list(app(environ, start_response))

    return wsgi


def main(argv: list[str] | None = None) -> int:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="moto server, one request at a time")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8001)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    class NoDelayHandler(MotoRequestHandler):
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK stall every request on a reused keep-alive connection by ~40 ms.
        disable_nagle_algorithm = True

    run_simple(args.host, args.port, serialized(app), threaded=True, request_handler=NoDelayHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
