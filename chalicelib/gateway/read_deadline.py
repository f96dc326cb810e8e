"""Reads from a provider that end at the call's deadline, on the caller's own thread.

A streamed answer is read one chunk at a time, and httpx gives each read the whole timeout the
call started with. A stream that stalls near the end of its time would hold the function past its
own timeout, and Lambda would kill it before the answer is billed. ``conversation/deadline.py``
guards any stream with a reader thread; for the calls sent through a client of ours it is not
needed: each read of the connection waits at most until the call's deadline.

``reads_until(seconds)`` is put around the call that sends the request. The kept HTTP client's
connections (``bound(client)`` installs this on its connection pools, through httpcore's network
backend) take the deadline when the request is written, and from then on every read of that
connection (the status line, the headers, each chunk of the answer, read later by whoever
iterates it) waits at most until then: past it, a read fails as a read timeout. The ``Receipt``
says whether the request went out through such a connection (``bounded``), so a caller never
assumes it, and whether a read was cut by the deadline (``cut``), so it can tell that timeout from
the provider's own. A request written outside ``reads_until`` takes no deadline: a connection
reused from an earlier call keeps none of it.

The reader thread this replaces cost a whole answer 0.58 ms of wall clock and 0.71 ms of CPU
(a streamed one 0.41 and 0.50), measured side by side in one process; docs/deployment.md.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


class Receipt:
    """What ``reads_until`` learned of the request sent inside it."""

    __slots__ = ("bounded", "cut", "stop_at")

    def __init__(self, stop_at: float) -> None:
        #: ``time.monotonic()`` after which no read of the call's connection waits.
        self.stop_at = stop_at
        #: The request went out through a connection whose reads end at ``stop_at``.
        self.bounded = False
        #: A read was refused or timed out because ``stop_at`` came (not the provider's own timeout).
        self.cut = False

    def read_for(self, seconds: float) -> None:
        """Let the call's reads go on for ``seconds`` from now, and no longer (what came before a hang-up)."""
        self.stop_at = time.monotonic() + seconds


_RECEIPT: ContextVar[Receipt | None] = ContextVar("pennyworth_read_deadline", default=None)


@contextmanager
def reads_until(seconds: float) -> Iterator[Receipt]:
    """Requests sent inside go out with reads that end ``seconds`` from now; the call's ``Receipt``."""
    receipt = Receipt(time.monotonic() + max(0.0, seconds))
    token = _RECEIPT.set(receipt)
    try:
        yield receipt
    finally:
        _RECEIPT.reset(token)


def bound(client: Any) -> bool:
    """Give every connection pool of ``client`` (an ``httpx.Client``) deadline-bounded reads; whether all have them.

    Idempotent. httpx builds a pool per transport (the default one, one per proxy) and does not
    take a network backend, so it is set on each pool it built. A client with a pool that has none,
    or that speaks HTTP/2 (several calls share a connection there), is left alone: False.
    """
    transport = getattr(client, "_transport", None)
    if transport is None:
        return False
    mounted = [mount for mount in getattr(client, "_mounts", {}).values() if mount is not None]
    pools = [getattr(each, "_pool", None) for each in (transport, *mounted)]
    # HTTP/2 carries several calls on one connection: a deadline per connection would cut them all.
    if any(getattr(pool, "_network_backend", None) is None or getattr(pool, "_http2", True) for pool in pools):
        return False
    backend_class = _backend_class()
    for pool in pools:
        if not isinstance(pool._network_backend, backend_class):
            pool._network_backend = backend_class(pool._network_backend)
    return True


@functools.cache
def _backend_class() -> type:
    """httpcore's network backend and stream, wrapped (httpcore is LiteLLM's, loaded by then)."""
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        """A connection whose reads end at the deadline of the request last written on it."""

        def __init__(self, stream: Any) -> None:
            self._stream = stream
            self._receipt: Receipt | None = None

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            # Each request begins with a write: it takes its call's deadline (or none).
            receipt = self._receipt = _RECEIPT.get()
            if receipt is not None:
                receipt.bounded = True
            self._stream.write(buffer, timeout)

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            receipt = self._receipt
            if receipt is None:
                return self._stream.read(max_bytes, timeout)
            left = receipt.stop_at - time.monotonic()
            if left <= 0:
                receipt.cut = True
                raise httpcore.ReadTimeout("The call's deadline passed before this read.")
            if timeout is not None and timeout <= left:
                return self._stream.read(max_bytes, timeout)
            try:
                return self._stream.read(max_bytes, left)
            except httpcore.ReadTimeout:
                receipt.cut = True
                raise

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        """Opens connections as its backend does, each a ``DeadlineStream``."""

        def __init__(self, backend: Any) -> None:
            self._backend = backend

        def connect_tcp(self, *args: Any, **kwargs: Any) -> Any:
            return DeadlineStream(self._backend.connect_tcp(*args, **kwargs))

        def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
            return DeadlineStream(self._backend.connect_unix_socket(*args, **kwargs))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    return DeadlineBackend
