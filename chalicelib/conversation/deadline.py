"""A stream of events that never outlives its deadline, even when the upstream stalls.

A streamed Bedrock answer is read one chunk at a time, and each read may wait
as long as the time the whole answer had when it started. A stream that stalls
near the end of that time would hold the function past its own timeout, and
Lambda would kill it before the answer is billed. So the upstream is read on a
worker thread, into a small queue, and the caller waits on the queue only
until the deadline: past it, the caller gets a timeout (and bills), whatever
the worker is still waiting for. The queue is bounded, so a slow client slows
the reading (TCP's back-pressure reaches Bedrock) instead of piling up chunks.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from chalicelib import errors

#: Chunks read ahead of a slow client at most.
READ_AHEAD = 64
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def until(events: Iterator[Any], stop_at: float, *, clock: Callable[[], float] = time.time) -> Iterator[Any]:
    """``events``, read on a worker thread; raises ``UpstreamTimeout`` when ``stop_at`` (a ``clock`` time) passes.

    Closing the returned generator (or its timing out) tells the worker to stop; the worker then
    closes ``events`` at its next chunk, which ends the upstream call.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
    stopped = threading.Event()

    def read() -> None:
        try:
            for event in events:
                while not stopped.is_set():
                    try:
                        buffer.put(event, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stopped.is_set():
                    return
            buffer.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
            buffer.put(_Failure(exc))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # the upstream is abandoned either way
                    close()

    worker = threading.Thread(target=read, name="upstream-reader", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = buffer.get(timeout=max(0.0, stop_at - clock()))
            except queue.Empty:
                raise errors.UpstreamTimeout(
                    "The answer was cut off at the gateway's time limit; ask for a shorter answer "
                    "(max_tokens) or raise the function timeout.",
                    code="answer_time_limit",
                ) from None
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stopped.set()
