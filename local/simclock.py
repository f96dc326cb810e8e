"""Virtual time for simulations that run real, blocking code: a deterministic scheduler of threads.

The contention model (``local/dynamo_model.py``) and ``bench/ledger_scale.py``
run the real ``Meter``/``Ledger``/``Aggregator`` code, which blocks on
DynamoDB calls and sleeps between retries. Each simulated activity (a request,
a Lambda invocation) is a thread, but only one thread runs at a time: the one
whose virtual clock is earliest. A thread gives the turn back when it sleeps
in virtual time (``Sim.sleep``: a DynamoDB call's latency, a backoff, a
Bedrock call) and the scheduler resumes whichever thread is next due. So
interleavings are exact to the call, results are reproducible for a seed, and
an hour of traffic takes as long as the code takes to run, not an hour.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Task:
    name: str
    fn: Callable[[], Any] | None = None  # not started yet: its thread is created when first due
    report: bool = True  # an exception is a failure of the simulation (not a result handed back)
    resume: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: BaseException | None = None
    result: Any = None
    waiters: list[_Task] = field(default_factory=list)
    waiting_for: int = 0


class Sim:
    """A virtual clock (seconds from 0) and the threads that share it."""

    def __init__(self) -> None:
        self.time = 0.0
        self._queue: list[tuple[float, int, _Task]] = []
        self._order = itertools.count()
        self._turn = threading.Event()
        self._local = threading.local()
        self.errors: list[tuple[str, BaseException]] = []

    # -- inside simulated threads ---------------------------------------------------------

    def now(self) -> float:
        """The current virtual time."""
        return self.time

    def in_sim(self) -> bool:
        """True on a simulated thread (and so ``sleep`` is virtual)."""
        return getattr(self._local, "task", None) is not None

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass for the calling simulated thread (outside one: no time passes)."""
        task = getattr(self._local, "task", None)
        if task is None:
            return
        self._push(self.time + max(0.0, seconds), task)
        self._block(task)

    def spawn(
        self, fn: Callable[[], Any], *, at: float | None = None, name: str = "task", report: bool = True
    ) -> _Task:
        """Run ``fn`` on a new simulated thread from virtual time ``at`` (default: now).

        The thread is only created when ``at`` comes, so thousands of scheduled
        activities cost queue entries, not threads.
        """
        task = _Task(name, fn=fn, report=report)
        self._push(self.time if at is None else max(at, self.time), task)
        return task

    def join(self, tasks: list[_Task]) -> list[Any]:
        """From a simulated thread: wait (in virtual time) for ``tasks``; their results or exceptions."""
        me = self._local.task
        pending = [t for t in tasks if not t.done]
        me.waiting_for = len(pending)
        for task in pending:
            task.waiters.append(me)
        if pending:
            self._block(me)  # the last of them to finish wakes us
        return [t.error if t.error is not None else t.result for t in tasks]

    def parallel(self, calls: list[Callable[[], Any]]) -> list[Any]:
        """``Meter``'s ``parallel``: the calls run as simultaneous simulated threads."""
        if len(calls) == 1:
            try:
                return [calls[0]()]
            except BaseException as exc:  # noqa: BLE001 - handed back like run_parallel does
                return [exc]
        return self.join([self.spawn(call, name="parallel", report=False) for call in calls])

    # -- the scheduler (main thread) --------------------------------------------------------

    def run(self, until: float | None = None) -> None:
        """Resume threads in virtual-time order until none is due (or the next is after ``until``)."""
        while self._queue:
            when, _, task = self._queue[0]
            if until is not None and when > until:
                break
            heapq.heappop(self._queue)
            self.time = max(self.time, when)
            self._turn.clear()
            if task.fn is not None:
                fn, task.fn = task.fn, None
                threading.Thread(target=self._body, args=(task, fn), name=task.name, daemon=True).start()
            task.resume.set()
            self._turn.wait()
        if until is not None:
            self.time = max(self.time, until)

    # -- plumbing ---------------------------------------------------------------------------

    def _push(self, when: float, task: _Task) -> None:
        heapq.heappush(self._queue, (when, next(self._order), task))

    def _block(self, task: _Task) -> None:
        self._turn.set()
        task.resume.wait()
        task.resume.clear()

    def _body(self, task: _Task, fn: Callable[[], Any]) -> None:
        task.resume.wait()
        task.resume.clear()
        self._local.task = task
        try:
            task.result = fn()
        except BaseException as exc:  # noqa: BLE001 - recorded; the scheduler must go on
            task.error = exc
            if task.report:
                self.errors.append((task.name, exc))
        finally:
            task.done = True
            for waiter in task.waiters:
                waiter.waiting_for -= 1
                if not waiter.waiting_for:
                    self._push(self.time, waiter)
            self._turn.set()
