"""Admission decided beside the upstream request's preparation, and the first send waiting for it.

A chat call is admitted (rate limits, then the worst case reserved on its budgets: a conditional
DynamoDB update) before anything reaches the upstream. LiteLLM spends milliseconds of CPU
building the upstream request before it sends it: its parameter mapping, the Converse
transformation, SigV4 signing. The two used to run one after the other. Now ``Admission.start``
runs the admission on a kept worker thread while the caller goes on into LiteLLM, and the
request waits at the send gate (``chalicelib/gateway/providers.py: send_gate``) until the
admission is decided. The reservation's round trip to DynamoDB then hides LiteLLM's preparation.

Nothing changes in what is sent or billed:

* a refused admission (a limit, a budget, DynamoDB unavailable) ends the call at the gate, before
  any byte goes upstream; nothing was reserved (``Meter.admit`` gives back what it took);
* a call that fails before its send (LiteLLM refusing a parameter) waits for the admission all
  the same: a refusal wins, as when it came first, and a reservation made is released;
* a provider whose client has no gate (``Provider.gates_sends``) waits before LiteLLM is called.

``NotAdmitted`` is a ``BaseException``: raised inside LiteLLM's HTTP call, it passes LiteLLM's
error mapping and the retry policy (both handle ``Exception``) untouched, so a refusal is neither
retried nor reported as an upstream failure.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib.accounting.metering import Ticket

#: How long the caller waits for the worker to start (it starts in well under a millisecond when idle).
_START_WAIT_SECONDS = 0.05
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="admission")
    return _POOL


class NotAdmitted(BaseException):  # noqa: N818 - a signal carried through LiteLLM, not an error of its own
    """The admission's refusal (or failure), raised at the send gate; ``error`` is what the caller gets."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Admission:
    """One call's admission, running on a worker; ``gate`` waits for it, ``ticket`` is its outcome."""

    def __init__(self, future: Future[Ticket]) -> None:
        self._future = future

    @classmethod
    def start(cls, admit: Callable[[], Ticket]) -> Admission:
        """Run ``admit`` on a kept worker thread, in a copy of the caller's context (its log keys).

        Returns once the worker is running. Without that wait the caller kept the interpreter for
        up to its switch interval (5 ms: more than LiteLLM's preparation) and the worker started
        only when the caller stopped at the gate: one after the other again. The worker keeps the
        interpreter through its own CPU work (the request, signed) and gives it back as it waits
        for DynamoDB; the caller's work then runs during that wait.
        """
        running = threading.Event()

        def run() -> Ticket:
            running.set()
            return admit()

        future = _pool().submit(contextvars.copy_context().run, run)
        running.wait(_START_WAIT_SECONDS)
        return cls(future)

    @classmethod
    def decided(cls, ticket: Ticket) -> Admission:
        """An admission already made (no worker)."""
        future: Future[Ticket] = Future()
        future.set_result(ticket)
        return cls(future)

    def ticket(self) -> Ticket:
        """The ticket, once admitted (waits); raises the admission's refusal or failure."""
        return self._future.result()

    def gate(self) -> None:
        """Wait for the decision; raise ``NotAdmitted`` on a refusal (the send must not happen)."""
        try:
            self._future.result()
        except BaseException as exc:  # noqa: BLE001 - whatever stopped the admission stops the send
            raise NotAdmitted(exc) from None

    def headers(self) -> dict[str, Any]:
        """The admission's headers (rate limits) once admitted; none while undecided or refused."""
        if not self._future.done() or self._future.exception() is not None:
            return {}
        return dict(self._future.result().headers)
