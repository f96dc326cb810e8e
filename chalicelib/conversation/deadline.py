"""A stream of events that never outlives its deadline, even when the upstream stalls.

A streamed Bedrock answer is read one chunk at a time, and each read may wait
as long as the time the whole answer had when it started. A stream that stalls
near the end of that time would hold the function past its own timeout, and
Lambda would kill it before the answer is billed. So the upstream is read on a
worker thread, into a small queue, and the caller waits on the queue only
until the deadline: past it, the caller gets a timeout (and bills), whatever
the worker is still waiting for. The queue is bounded, so a slow client slows
the reading (TCP's back-pressure reaches Bedrock) instead of piling up chunks.

What the worker read ahead but the caller never took was generated all the same:
``Guarded.close`` hands those events back, so the bill counts them.

The workers are daemon threads kept between requests (``_Readers``): starting a thread for
each request cost the caller a wait for it to start (~0.1 ms of CPU, more on a busy machine).
A worker held by a stalled upstream stays busy until its read times out; the next request
gets another worker. So a function has at most as many workers as it had streams (and stalled
reads) at once; one left idle for ``IDLE_SECONDS`` ends, so a burst's workers do not stay, and
an idle worker holds nothing of the stream it last read.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from chalicelib import errors

#: Chunks read ahead of a slow client at most.
READ_AHEAD = 64
#: How long ``close`` waits for a worker that is handing over one last event.
_HANDOVER_SECONDS = 0.1
#: How long a kept worker waits for another stream before it ends.
IDLE_SECONDS = 60.0
_END = object()


class _Readers:
    """Daemon threads that run readers, kept between requests; one more starts when none is idle."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: Workers waiting for a task, less the tasks queued for them.
        self._idle = 0
        self._idle_seconds = idle_seconds

    def run(self, task: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._tasks.put(task)
        if start:
            threading.Thread(target=self._work, name="upstream-reader", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no queued task counts on this worker: it may end
                        self._idle -= 1
                        return
                continue  # a task was queued for it meanwhile
            # A reader hands its own failures to its caller; nothing may end this worker.
            with contextlib.suppress(BaseException):
                task()
            # The task is the stream's bound method: held while idle, it kept the stream (and its
            # upstream response, and what the provider accumulated of the answer) alive.
            del task
            with self._lock:
                self._idle += 1


_READERS = _Readers()


def time_limit() -> errors.UpstreamTimeout:
    """The error of an answer cut at the gateway's time limit (billed as it stands)."""
    return errors.UpstreamTimeout(
        "The answer was cut off at the gateway's time limit; ask for a shorter answer "
        "(max_tokens) or raise the function timeout.",
        code="answer_time_limit",
    )


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Guarded:
    """``events``, read on a worker thread; ``next`` raises ``UpstreamTimeout`` once ``stop_at`` passes.

    ``stop_at`` is a ``clock`` time. Closing tells the worker to stop (it then closes ``events``
    at its next chunk, which ends the upstream call) and returns what it had read ahead.
    """

    def __init__(self, events: Iterator[Any], stop_at: float, *, clock: Callable[[], float] = time.time) -> None:
        self._events = events
        self._stop_at = stop_at
        self._clock = clock
        self._buffer: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
        self._stopped = threading.Event()
        #: An event the worker had read when told to stop, before it could queue it.
        self._held: list[Any] = []
        self._finished = False
        self._closed = False
        #: Set when the worker is done with ``events`` (read to the end, failed, or told to stop).
        self._done = threading.Event()
        _READERS.run(self._read)

    def __iter__(self) -> Guarded:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        try:
            item = self._buffer.get(timeout=max(0.0, self._stop_at - self._clock()))
        except queue.Empty:
            self._stopped.set()
            raise time_limit() from None
        if item is _END:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise item.error
        return item

    def close(self) -> list[Any]:
        """Stop reading (idempotent); the events read ahead that were never taken, in order."""
        if self._closed:
            return []
        self._closed = True
        self._finished = True
        self._stopped.set()
        unread = self._drain()
        # Draining made room: a worker waiting to queue one more event does so and stops.
        self._done.wait(_HANDOVER_SECONDS)
        unread += self._drain() + self._held
        return [item for item in unread if item is not _END and not isinstance(item, _Failure)]

    def __del__(self) -> None:
        self._stopped.set()

    def _drain(self) -> list[Any]:
        items = []
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(self._buffer.get_nowait())
        return items

    def _offer(self, item: Any) -> bool:
        """Queue ``item`` unless told to stop; whether to go on reading."""
        while not self._stopped.is_set():
            try:
                self._buffer.put(item, timeout=0.5)
            except queue.Full:
                continue
            return not self._stopped.is_set()
        self._held.append(item)
        return False

    def _read(self) -> None:
        try:
            for event in self._events:
                if not self._offer(event):
                    return
            self._offer(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            self._offer(_Failure(exc))
        finally:
            close = getattr(self._events, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # the upstream is abandoned either way
                    close()
            self._done.set()


class BoundedReads(Protocol):
    """What a call whose reads end at its deadline tells of them (``gateway/read_deadline.Receipt``)."""

    @property
    def cut(self) -> bool:
        """Whether a read failed because the deadline came."""
        ...

    def read_for(self, seconds: float) -> None:
        """Let reads go on for ``seconds`` from now (and no longer), whatever the deadline was."""
        ...


class Direct:
    """``events`` read on the caller's thread: their reads end at the deadline themselves (``reads``).

    A failure of the stream after a read was cut by the deadline is the time-limit error.

    Closing before the end (the caller hung up, or the time limit came) reads, for at most
    ``_HANDOVER_SECONDS``, what Bedrock had already sent, and returns it: the bill then counts it,
    Bedrock's usage report included when it came (Bedrock bills what it generated, not what the
    caller took). A ``Guarded`` stream's worker reads that ahead of the caller; here it waits in the
    connection's buffers. Then it closes ``events``, which ends the upstream call.
    """

    def __init__(self, events: Iterator[Any], reads: BoundedReads) -> None:
        self._events = events
        self._reads = reads
        self._finished = False
        self._closed = False

    def __iter__(self) -> Direct:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        try:
            return next(self._events)
        except StopIteration:
            self._finished = True
            raise
        except errors.AppError:
            self._finished = True
            if self._reads.cut:
                raise time_limit() from None
            raise
        except BaseException:
            self._finished = True
            raise

    def close(self) -> list[Any]:
        """Stop reading (idempotent); what had come and was never taken, in order."""
        if self._closed:
            return []
        self._closed = True
        unread: list[Any] = []
        if not self._finished:
            self._finished = True
            self._reads.read_for(_HANDOVER_SECONDS)
            with contextlib.suppress(Exception):  # cut, broken or ended: what came is what counts
                for event in self._events:
                    unread.append(event)
        close = getattr(self._events, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # the upstream is abandoned either way
                close()
        return unread


def until(
    events: Iterator[Any],
    stop_at: float,
    *,
    clock: Callable[[], float] = time.time,
    reads: BoundedReads | None = None,
) -> Guarded | Direct:
    """``events`` that never outlive ``stop_at``: ``Direct`` when their ``reads`` end by then, else ``Guarded``."""
    if reads is not None:
        return Direct(events, reads)
    return Guarded(events, stop_at, clock=clock)
