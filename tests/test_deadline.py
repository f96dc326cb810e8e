"""conversation/deadline.py: a stream never outlives its deadline, and closing it closes the upstream."""

from __future__ import annotations

import threading
import time

import pytest

from chalicelib import errors
from chalicelib.conversation.deadline import until


def paced(items: list[str], pause: float, closed: threading.Event):
    try:
        for item in items:
            time.sleep(pause)
            yield item
    finally:
        closed.set()


def test_events_pass_through_in_order_and_the_source_is_closed_at_the_end() -> None:
    closed = threading.Event()
    assert list(until(paced(["a", "b", "c"], 0.01, closed), time.time() + 5)) == ["a", "b", "c"]
    assert closed.wait(2)


def test_a_stall_past_the_deadline_raises_at_the_deadline_not_when_the_source_wakes() -> None:
    closed = threading.Event()
    started = time.monotonic()
    stream = until(paced(["a", "b"], 0.6, closed), time.time() + 1.0)
    assert next(stream) == "a"
    with pytest.raises(errors.UpstreamTimeout) as caught:
        next(stream)
    assert caught.value.code == "answer_time_limit"
    assert time.monotonic() - started < 1.2  # "b" would only come at 1.2 s
    assert closed.wait(2)  # the reader closes the source at its next chunk


def test_closing_early_stops_the_reader_and_closes_the_source() -> None:
    closed = threading.Event()
    stream = until(paced(["a"] * 1000, 0.001, closed), time.time() + 30)
    assert next(stream) == "a"
    stream.close()
    assert closed.wait(2)


def test_upstream_errors_reach_the_reader_as_they_are() -> None:
    def failing():
        yield "a"
        raise errors.UpstreamError("Bedrock broke off")

    stream = until(failing(), time.time() + 5)
    assert next(stream) == "a"
    with pytest.raises(errors.UpstreamError, match="broke off"):
        next(stream)


def test_a_slow_reader_holds_the_source_back_instead_of_buffering_everything() -> None:
    from chalicelib.conversation import deadline

    produced = []

    def fast():
        for n in range(10_000):
            produced.append(n)
            yield n

    stream = until(fast(), time.time() + 30)
    next(stream)
    time.sleep(0.3)
    assert len(produced) <= deadline.READ_AHEAD + 3  # bounded read-ahead: back-pressure, not a pile
    stream.close()


def test_closing_hands_back_what_was_read_ahead_but_never_taken() -> None:
    # GIVEN a reader that took one event while the worker read the rest ahead
    closed = threading.Event()
    stream = until(paced(["a", "b", "c", "d"], 0.0, closed), time.time() + 30)
    assert next(stream) == "a"
    time.sleep(0.2)
    # WHEN the reader stops; THEN the events generated but not taken come back, in order, once
    assert stream.close() == ["b", "c", "d"]
    assert stream.close() == []
    assert closed.wait(2)


def test_after_a_timeout_closing_hands_back_what_arrived_since() -> None:
    closed = threading.Event()
    stream = until(paced(["a", "b"], 0.3, closed), time.time() + 0.1)
    with pytest.raises(errors.UpstreamTimeout):
        next(stream)
    time.sleep(0.4)  # "a" arrives after the reader gave up waiting
    assert stream.close() == ["a"]


def test_readers_are_kept_between_streams_and_a_stalled_one_does_not_block_the_next(monkeypatch) -> None:
    # Workers of its own: idle ones left by earlier tests would take turns at these streams.
    from chalicelib.conversation import deadline

    monkeypatch.setattr(deadline, "_READERS", deadline._Readers())
    readers: list[threading.Thread] = []

    def source(*items: str):
        readers.append(threading.current_thread())  # the object: an OS thread id is reused
        yield from items

    # One stream after another: one kept worker reads them all (no thread started per request).
    for _ in range(5):
        assert list(until(source("a", "b"), time.time() + 5)) == ["a", "b"]
        time.sleep(0.02)  # the worker goes back to waiting after its last read
    assert len({id(t) for t in readers}) == 1 and readers[0].daemon
    # A stalled upstream holds its worker; the next stream is read by another, at once.
    release = threading.Event()

    def stalled():
        release.wait(5)
        yield "late"

    stuck = until(stalled(), time.time() + 5)
    started = time.monotonic()
    assert list(until(source("next"), time.time() + 5)) == ["next"]
    assert time.monotonic() - started < 1
    release.set()
    assert list(stuck) == ["late"]


def test_a_finished_stream_is_not_kept_alive_by_its_idle_reader() -> None:
    """An idle worker held its last task (the stream's bound method): the stream, its upstream
    response and whatever the provider accumulated stayed in memory until the worker's next
    request, once per worker of a burst."""
    import gc
    import weakref

    stream = until(iter(["a", "b"]), time.time() + 5)
    assert list(stream) == ["a", "b"]
    stream.close()
    gone = weakref.ref(stream)
    del stream
    deadline = time.monotonic() + 2
    while gone() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert gone() is None


def test_a_bursts_workers_end_once_idle_and_a_failing_task_never_ends_its_worker() -> None:
    """Workers were never retired: a burst of N streams left N threads for the function's life.
    Now a function has at most as many as it had streams at once, and an idle one ends."""
    from chalicelib.conversation.deadline import _Readers

    readers = _Readers(idle_seconds=0.2)
    started: list[threading.Thread] = []
    gate = threading.Barrier(6)
    done = threading.Semaphore(0)

    def task() -> None:
        started.append(threading.current_thread())
        gate.wait(5)  # all five at once: five workers
        done.release()

    for _ in range(5):
        readers.run(task)
    gate.wait(5)
    for _ in range(5):
        assert done.acquire(timeout=5)
    assert len({id(t) for t in started}) == 5
    for thread in started:
        thread.join(3)
        assert not thread.is_alive()  # ended after 0.2 s idle
    # A task after the burst still runs (no task left queued for a worker that ended).
    ran = threading.Event()

    def failing() -> None:
        raise SystemExit("a reader's failure, even this one, is its caller's")

    readers.run(failing)
    readers.run(ran.set)
    assert ran.wait(3)
    after: list[threading.Thread] = []
    for _ in range(3):
        again = threading.Event()
        readers.run(lambda again=again: (after.append(threading.current_thread()), again.set()))
        assert again.wait(3)
        time.sleep(0.02)
    assert len({id(t) for t in after}) == 1 and after[0].is_alive()  # one kept worker serves them in turn


# -- a stream whose reads end at the deadline themselves: read on the caller's thread ----------


class Reads:
    """A call's reads as ``gateway/read_deadline.Receipt`` reports them."""

    def __init__(self) -> None:
        self.cut = False
        self.read_for_seconds: float | None = None

    def read_for(self, seconds: float) -> None:
        self.read_for_seconds = seconds


def test_bounded_reads_are_read_on_the_callers_thread_in_order() -> None:
    readers: list[threading.Thread] = []

    def source():
        for item in ("a", "b"):
            readers.append(threading.current_thread())
            yield item

    stream = until(source(), time.time() + 5, reads=Reads())
    assert list(stream) == ["a", "b"]
    assert readers == [threading.current_thread()] * 2
    assert stream.close() == []  # read to the end: nothing waits, no moment to read on


def test_a_read_cut_by_the_deadline_is_the_time_limit_error_and_the_providers_own_timeout_is_not() -> None:
    def timing_out(reads: Reads, cut: bool):
        yield "a"
        reads.cut = cut
        raise errors.UpstreamTimeout("Bedrock did not answer in time.")

    reads = Reads()
    stream = until(timing_out(reads, cut=True), time.time() + 5, reads=reads)
    assert next(stream) == "a"
    with pytest.raises(errors.UpstreamTimeout) as caught:
        next(stream)
    assert caught.value.code == "answer_time_limit"
    with pytest.raises(StopIteration):
        next(stream)

    reads = Reads()
    stream = until(timing_out(reads, cut=False), time.time() + 5, reads=reads)
    next(stream)
    with pytest.raises(errors.UpstreamTimeout) as caught:
        next(stream)
    assert caught.value.code != "answer_time_limit"


def test_closing_early_takes_what_had_come_for_a_moment_then_closes_the_source() -> None:
    # GIVEN a caller that took one event of four (the rest waiting in the connection)
    closed = threading.Event()
    reads = Reads()
    stream = until(paced(["a", "b", "c", "d"], 0.0, closed), time.time() + 30, reads=reads)
    assert next(stream) == "a"
    # WHEN it hangs up THEN the reads get a moment, what came is handed back (billed), the source closes
    assert stream.close() == ["b", "c", "d"]
    assert reads.read_for_seconds is not None and 0 < reads.read_for_seconds <= 0.5
    assert closed.is_set()
    assert stream.close() == []
