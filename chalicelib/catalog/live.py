"""The live catalog: a snapshot per warm function, fresh within ``MAX_AGE_SECONDS``, no round trip per request.

Every request reads the snapshot in memory (a dictionary lookup). Freshness is kept off the
request's critical path:

* a snapshot younger than ``REFRESH_AFTER_SECONDS`` is used as it is;
* an older one is used as it is while a background thread checks the catalog's version
  (one ``GetItem``) and reloads it (one ``Query``) only when it changed;
* a snapshot ``MAX_AGE_SECONDS`` old or more (a function idle for a while) is refreshed before
  it is used, and that refresh starts when the request arrives (``prefetch``, called before
  the API key is looked up), so its ``GetItem`` runs beside the key's instead of after it.

The bound: a snapshot's age is counted from the moment its read *began*, and no request uses
one ``MAX_AGE_SECONDS`` old, so a change committed at time T is seen by every request after
T + ``MAX_AGE_SECONDS`` on every function. If DynamoDB cannot be read in time, the request
is served from the snapshot it has (logged): an unreachable catalog table never takes the
gateway down. The admin API reads the table itself and refreshes its own function's snapshot
after each change (``refresh``), so the admin who made a change sees it at once; and a name the
snapshot does not know is checked against the table before it is refused (``recheck``, at most
once a second), so a model just added is served at once everywhere, on its first request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from chalicelib.catalog.catalog import Catalog
from chalicelib.observability import logger

REFRESH_AFTER_SECONDS = 10.0
MAX_AGE_SECONDS = 30.0
#: A name the snapshot does not know is checked against the table at most this often per function.
MISS_RECHECK_SECONDS = 1.0


class LiveCatalog:
    """A catalog snapshot kept fresh in the background; call it to get the current ``Catalog``.

    Parameters
    ----------
    version
        Reads the stored catalog's version (one ``GetItem``).
    load
        Reads the whole catalog (a ``Query``; seeds a new stack's catalog first).
    wait_seconds
        How long a request waits for a refresh it needs before it is served from the snapshot it has.
    """

    def __init__(
        self,
        *,
        version: Callable[[], int | None],
        load: Callable[[], Catalog],
        refresh_after: float = REFRESH_AFTER_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        wait_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._version = version
        self._load = load
        self._refresh_after = refresh_after
        self._max_age = max_age
        self._wait = wait_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshot: Catalog | None = None
        self._read_at = float("-inf")  # when the read behind the snapshot began
        self._running: Future[Catalog] | None = None
        self._running_since = float("-inf")
        #: One worker, started on first use and kept: a refresh costs no thread start.
        self._worker: ThreadPoolExecutor | None = None

    def __call__(self) -> Catalog:
        """The catalog to serve this request from (waits only when the snapshot is too old or absent).

        Raises
        ------
        Exception
            The first load of a cold function failed (there is no snapshot to fall back on).
        """
        now = self._monotonic()
        with self._lock:
            snapshot, age = self._snapshot, now - self._read_at
        if snapshot is not None and age < self._refresh_after:
            return snapshot
        if snapshot is not None and age < self._max_age:
            self._start(now)
            return snapshot
        future = self._start(now, not_before=now - self._max_age)
        try:
            return future.result(timeout=self._wait if snapshot is not None else None)
        except Exception as exc:  # noqa: BLE001 - stale beats down; logged
            if snapshot is None:
                raise
            logger.warning(
                "serving a catalog snapshot older than its bound: the catalog table did not answer",
                extra={"event": "catalog_stale", "age_seconds": round(age, 1), "reason": str(exc)[:300]},
            )
            return snapshot

    def prefetch(self) -> None:
        """Start the refresh the coming request will need, if it will need one (never waits)."""
        now = self._monotonic()
        with self._lock:
            age = now - self._read_at
        if age >= self._refresh_after:
            self._start(now, not_before=now - self._max_age if age >= self._max_age else None)

    def recheck(self) -> Catalog:
        """The catalog after a name was not found in it: read the version now, unless it was just read.

        A model added a moment ago on another function is then served at once, on its first
        request; a caller naming unknown models costs at most one ``GetItem`` a second.
        """
        now = self._monotonic()
        with self._lock:
            snapshot, age = self._snapshot, now - self._read_at
        if snapshot is not None and age < MISS_RECHECK_SECONDS:
            return snapshot
        try:
            return self._start(now, not_before=now).result(timeout=self._wait)
        except Exception:  # noqa: BLE001 - the snapshot answers (a 404), as it would have
            return snapshot if snapshot is not None else self()

    def refresh(self) -> Catalog:
        """Read the catalog now and serve it from here on (after an admin's change on this function).

        Also what the admin API reads keys' allowlists against: one ``GetItem`` when nothing
        changed, so an admin never sees a catalog older than the table.
        """
        now = self._monotonic()
        return self._start(now, not_before=now).result()

    def _start(self, now: float, not_before: float | None = None) -> Future[Catalog]:
        """The refresh running (one that began at or after ``not_before``), or a new one."""
        with self._lock:
            running = self._running
            fresh_enough = not_before is None or self._running_since >= not_before
            if running is not None and not running.done() and fresh_enough:
                return running
            future: Future[Catalog] = Future()
            self._running, self._running_since = future, now
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="catalog-refresh")
        self._worker.submit(self._refresh, future, now)
        return future

    def _refresh(self, future: Future[Catalog], began: float) -> None:
        try:
            with self._lock:
                snapshot = self._snapshot
            version = self._version() if snapshot is not None else None
            catalog = snapshot if snapshot is not None and version == snapshot.version else self._load()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            logger.warning("catalog refresh failed", extra={"reason": str(exc)[:300]})
            future.set_exception(exc)
            return
        with self._lock:
            if began >= self._read_at:
                self._snapshot, self._read_at = catalog, began
        future.set_result(catalog)
