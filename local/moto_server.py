"""moto server for the local stack, with DynamoDB's per-request atomicity.

moto's server handles requests on threads but its DynamoDB backend is not
thread-safe: two concurrent conditional updates can both pass, and a
concurrent ``TransactWriteItems`` can fail while copying a table. Real
DynamoDB applies each request atomically, and pennyworth's budget and
rate-limit checks depend on that. So every request is handled under one lock.

``local/moto_patches.py`` is applied first: without it the server's memory
and time per request grow with every request (see that module).

With ``--state FILE`` it starts from the state saved there and saves every change back
(``local/moto_state.py``), so ``make dev`` keeps keys, users and the ledger across restarts;
``--load FILE`` starts from it and keeps nothing (a benchmark's seeded data, read many times).

Usage: ``python -m local.moto_server -H 127.0.0.1 -p 8001 [--state FILE | --load FILE] [--deploy]``.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from local import console_login

_LOCK = threading.Lock()


def serialized(
    app: Callable[..., Iterable[bytes]], after: Callable[[dict[str, Any]], None] | None = None
) -> Callable[..., list[bytes]]:
    """A WSGI app that runs ``app`` one request at a time; ``after`` sees each request.

    The request's body is read before the lock is taken: a client that sent its headers and
    stalled before its body (a process stopped mid-request, as ``DevStack.paused`` stops the
    aggregator, or a dropped connection) held the lock while the server waited for that body, and
    every other request waited behind it, for good.
    """

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        _read_body(environ)
        with _LOCK:
            body = list(app(environ, start_response))
        if after is not None:
            after(environ)
        return body

    return wsgi


def _read_body(environ: dict[str, Any]) -> None:
    """Read the request's body from its connection now, and hand it on to moto in memory."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    if environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream at its end
        body = stream.read()
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return  # left to moto, which answers it as before
        body = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)


def main(argv: list[str] | None = None) -> int:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="moto server, one request at a time")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8001)
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--state", type=Path, help="load this saved state, and keep saving to it")
    state.add_argument("--load", type=Path, help="load this saved state, save nothing")
    parser.add_argument(
        "--no-patches", action="store_true", help="moto as released (bench/local_dynamodb.py's 'before')"
    )
    parser.add_argument(
        "--skip-patch", action="append", default=[], metavar="NAME", help="leave out one optional patch (benchmarks)"
    )
    parser.add_argument(
        "--deploy", action="store_true", help="also what rehearsing a deploy needs (local/moto_deploy.py)"
    )
    args = parser.parse_args(argv)
    if args.deploy:
        from local import moto_deploy

        moto_deploy.apply()
    if not args.no_patches:
        from local import moto_patches

        unknown = sorted(set(args.skip_patch) - set(moto_patches.OPTIONAL))
        if unknown:
            parser.error(f"no optional patch {unknown[0]!r} (there are: {', '.join(moto_patches.OPTIONAL)})")
        moto_patches.apply(skip=tuple(args.skip_patch))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    saver = None
    source = args.state or args.load
    if source is not None:
        from local import moto_state

        if source.exists():
            try:
                moto_state.load(source)
            except moto_state.StateError as exc:
                print(f"error: {exc}", file=sys.stderr, flush=True)
                return 3
        if args.state is not None:
            saver = moto_state.Saver(args.state, _LOCK)
            saver.start()
    app = DomainDispatcherApplication(create_backend_app)

    class NoDelayHandler(MotoRequestHandler):
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle plus the
        # client's delayed ACK stall every request on a reused keep-alive connection by ~40 ms.
        disable_nagle_algorithm = True

    # /console-login: the local stand-in for Cognito's managed login (the web console's sign-in).
    after = saver.changed if saver else None
    app = console_login.mount(serialized(app, after), f"http://{args.host}:{args.port}")
    try:
        run_simple(args.host, args.port, app, threaded=True, request_handler=NoDelayHandler)
    finally:
        if saver is not None:
            saver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
