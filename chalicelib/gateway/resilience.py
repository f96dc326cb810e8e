"""Retries, fallbacks and cooldowns: how the gateway walks a call policy until a target answers.

Every rule here applies only before the first event of an answer has been read, so before
any byte can have reached the client; an answer that breaks off later is never retried
(that attempt is billable, and the client may have part of it).

* **Throttling** (``ThrottlingException``, 429): the target cools down (``Cooldowns``, per
  warm function) for the time the upstream suggests (``Retry-After`` or ``x-amz-retry-after``;
  Bedrock's Converse sends none, so ``DEFAULT_COOLDOWN_SECONDS``), and the call moves to the
  next target at once. With no target left it is retried on the same one after the backoff
  below, as the AWS SDKs retry a throttle.
* **Transient faults** before any byte (a connection reset or refused, HTTP 500/502/503/504,
  ``ServiceUnavailableException``, ``ModelNotReadyException``) are retried on the same target
  with the AWS SDKs' standard-mode backoff (botocore ``retries/standard.py``): at most
  ``max_attempts`` (3) attempts, the i-th retry after ``rand(0, 1) × min(base × 2^i, 20 s)``,
  base 50 ms (1 s for a throttle), a ``Retry-After`` raising it by at most 5 s, and a retry
  quota of 500 per warm function (a retry takes 14, a throttle's 5; a success gives back 1,
  or what its retry took) so an outage is not answered with a retry storm. Then the next target.
* **A target that cannot serve** (403 access denied, 404 model not offered there, and a 4xx
  from a fallback, which the caller did not choose) is skipped and cools down for a minute: a
  misconfigured fallback never turns a good request into a failure.
* **Everything else** (the caller's 4xx on the model it asked for, a guardrail that does not
  exist, a read timeout, Bedrock's ``ModelErrorException``) ends the call at once.

No attempt starts that could not finish before the deadline: a retry whose backoff would leave
less than ``MIN_ATTEMPT_SECONDS`` is not made. A read timeout is not retried: each attempt may
wait for all the time left, so a timed-out attempt has used it (the call is then given up on,
and billed as such by the service).

What Bedrock may bill: an attempt refused before the model ran (throttled, not ready,
unavailable, a 5xx, a connection reset before any byte) reports no usage and generates
nothing; Bedrock bills the tokens a model processes, so these are not billed. The one attempt
that can be billed is the last one, which the service bills however it ends.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chalicelib import errors
from chalicelib.conversation.events import Event
from chalicelib.gateway.policy import CallPolicy, Target
from chalicelib.gateway.read_deadline import Receipt
from chalicelib.gateway.upstream import map_upstream_error
from chalicelib.observability import logger

#: botocore's standard retry mode (retries/standard.py and retries/quota.py), the constants this follows.
THROTTLING_BASE_SECONDS = 1.0
TRANSIENT_BASE_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 20.0
RETRY_AFTER_EXTRA_SECONDS = 5.0
QUOTA_CAPACITY = 500
RETRY_COST = 14
THROTTLE_RETRY_COST = 5
NO_RETRY_INCREMENT = 1
#: How long a throttled target cools down when the upstream gives no hint.
DEFAULT_COOLDOWN_SECONDS = 2.0
#: The longest cooldown a hint may ask for (a minute: Bedrock's quotas are per minute).
MAX_COOLDOWN_SECONDS = 60.0
#: How long a target that cannot serve (access denied, model not offered there) is left alone.
UNUSABLE_COOLDOWN_SECONDS = 60.0
#: An attempt is not started with less time than this before the deadline.
MIN_ATTEMPT_SECONDS = 1.0
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_TRANSIENT_TYPES = ("ServiceUnavailable", "ModelNotReady", "InternalServer")
_CONNECTION_SIGNS = (
    "Connection reset",
    "Connection refused",
    "Server disconnected",
    "RemoteProtocolError",
    "ConnectError",
    "peer closed",
    "Connection aborted",
    "BrokenPipe",
)


@dataclass(frozen=True)
class Fault:
    """What a failed attempt means for the next one.

    ``kind``: ``throttled`` (cool down, next target), ``transient`` (retry here, then next),
    ``unusable`` (skip this target), ``final`` (end the call).
    """

    kind: str
    retry_after: float | None = None


def classify(exc: BaseException, target_is_fallback: bool) -> Fault:
    """How a raw upstream failure (LiteLLM's exception, before mapping) is handled."""
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    text = f"{name} {exc}"
    error_type = _error_type(exc)
    hint = retry_after_of(exc)
    if "guardrail" in text.lower() and status in (400, 404):
        return Fault("final")  # a guardrail that does not exist fails every target alike: fail closed
    if name.endswith(("Timeout", "TimeoutError")) or isinstance(exc, TimeoutError) or status == 408:
        return Fault("final")
    if status == 429 or name == "RateLimitError":
        if "ModelNotReady" in error_type or "not ready" in text:
            return Fault("transient", hint)
        return Fault("throttled", hint)
    if status in _TRANSIENT_STATUSES or any(kind in error_type for kind in _TRANSIENT_TYPES):
        if "ModelError" in error_type:  # 424 ModelErrorException carries originalStatusCode 500: the model's
            return Fault("final")
        return Fault("transient", hint)
    if any(sign in text for sign in _CONNECTION_SIGNS) or name == "APIConnectionError":
        return Fault("transient")
    if status in (401, 403, 404):
        return Fault("unusable")
    if target_is_fallback and isinstance(status, int) and 400 <= status < 500:
        return Fault("unusable")
    return Fault("final")


def _headers(exc: BaseException) -> Any:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers


def _error_type(exc: BaseException) -> str:
    headers = _headers(exc)
    try:
        return str(headers.get("x-amzn-errortype") or "") if headers is not None else ""
    except Exception:  # noqa: BLE001 - a header object we cannot read says nothing
        return ""


def retry_after_of(exc: BaseException) -> float | None:
    """The retry hint an upstream answer carries, in seconds.

    ``Retry-After`` (seconds), ``retry-after-ms`` or ``x-amz-retry-after`` (milliseconds, what
    botocore's standard mode reads).
    """
    headers = _headers(exc)
    if headers is None:
        return None
    for name, scale in (("retry-after", 1.0), ("retry-after-ms", 0.001), ("x-amz-retry-after", 0.001)):
        try:
            raw = headers.get(name)
        except Exception:  # noqa: BLE001
            return None
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except (TypeError, ValueError):
            continue
        if value >= 0 and value == value:
            return value
    return None


class Cooldowns:
    """Targets to leave alone for a while, in this warm function (``time.monotonic`` deadlines)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def cool(self, target: Target, seconds: float) -> None:
        """Leave ``target`` alone for ``seconds`` (extends, never shortens, a cooldown)."""
        until = self._clock() + min(max(seconds, 0.0), MAX_COOLDOWN_SECONDS)
        if until > self._until.get(target.key, 0.0):
            self._until[target.key] = until

    def left(self, target: Target) -> float:
        """Seconds of cooldown ``target`` has left (0: usable)."""
        until = self._until.get(target.key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            self._until.pop(target.key, None)
            return 0.0
        return left

    def order(self, targets: tuple[Target, ...]) -> list[Target]:
        """The targets to try: those not cooling down, in policy order, then the cooling ones, soonest first.

        A cooling target is still tried when nothing else is left: a cooldown never turns a
        request away without an attempt.
        """
        cooling = {target.key: self.left(target) for target in targets}
        ready = [target for target in targets if cooling[target.key] == 0.0]
        later = sorted((target for target in targets if cooling[target.key] > 0.0), key=lambda t: cooling[t.key])
        return ready + later


class RetryQuota:
    """The AWS SDKs' retry quota (a token bucket per client): retries stop when an outage drains it."""

    def __init__(self, capacity: int = QUOTA_CAPACITY) -> None:
        self._capacity = capacity
        self._available = capacity
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        return self._available

    def acquire(self, amount: int) -> bool:
        with self._lock:
            if amount > self._available:
                return False
            self._available -= amount
            return True

    def release(self, amount: int) -> None:
        if self._available >= self._capacity:
            return
        with self._lock:
            self._available = min(self._capacity, self._available + amount)


@dataclass
class Attempt:
    """One attempt the gateway made: where, how it ended, and how long it took."""

    target: Target
    outcome: str  # "served", "throttled", "transient", "unusable" or "final"
    error: str | None = None
    ms: int = 0


@dataclass
class Served:
    """A call that started answering: the target serving it, its events (the first already read), the attempts."""

    target: Target
    events: Iterator[Event]
    attempts: list[Attempt] = field(default_factory=list)
    #: Set when the events' reads end at the call's deadline themselves (``read_deadline.py``):
    #: they may be read on the caller's thread.
    bounded_reads: Receipt | None = None

    @property
    def fell_back(self) -> bool:
        """True when another target than the one asked for is serving."""
        return self.target != self.attempts[0].target if self.attempts else False


#: Start one attempt on a target within ``timeout`` seconds; its events, the first one already read.
StartFn = Callable[[Target, float], Iterator[Event]]
#: The caller-facing error of a failed attempt on a target.
MapFn = Callable[[Exception, Target], errors.AppError]


class Resilience:
    """Walks a call policy: cooldowns, retries with backoff, fallbacks, within a deadline (one per warm function)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        cooldowns: Cooldowns | None = None,
        quota: RetryQuota | None = None,
        default_cooldown: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self.cooldowns = cooldowns or Cooldowns()
        self.quota = quota or RetryQuota()
        self._default_cooldown = default_cooldown

    def run(
        self,
        policy: CallPolicy,
        stop_at: float,
        start: StartFn,
        attempts: list[Attempt] | None = None,
        mapped: MapFn | None = None,
    ) -> Served:
        """The first target that starts answering, trying each as the policy and the faults say.

        ``stop_at`` is the ``clock`` time by which the upstream call must be over. ``start`` makes
        one attempt (raising LiteLLM's exception on failure). ``attempts`` (a new list when None)
        receives each attempt as it ends. ``mapped`` turns a failure on a target into the
        caller-facing error (default ``map_upstream_error``, naming Bedrock).

        Raises
        ------
        AppError
            Every target failed (the most telling failure: the first target's unless it could not
            serve), or a final failure, or no time is left for an attempt.
        """
        attempts = [] if attempts is None else attempts
        first_error: errors.AppError | None = None
        last_error: errors.AppError | None = None
        targets = self.cooldowns.order(policy.targets)
        for position, target in enumerate(targets):
            fallback = target is not policy.primary
            retried = 0
            while True:
                left = stop_at - self._clock()
                if left < MIN_ATTEMPT_SECONDS and attempts:
                    break  # no time for another attempt: end with what failed
                began = time.perf_counter()
                try:
                    events = start(target, max(left, 0.1))
                except Exception as exc:  # noqa: BLE001 - every upstream failure is classified
                    fault = classify(exc, fallback)
                    error = mapped(exc, target) if mapped is not None else map_upstream_error(exc)
                    attempts.append(Attempt(target, fault.kind, error.code, _ms(began)))
                    if first_error is None and fault.kind != "unusable":
                        first_error = error
                    last_error = error
                    if fault.kind == "final":
                        _log(attempts, policy)
                        raise error from None
                    if fault.kind == "unusable":
                        logger.warning(
                            "upstream target cannot serve: skipped",
                            extra={"target": target.key, "model": target.model.id, "error": error.code},
                        )
                        self.cooldowns.cool(target, UNUSABLE_COOLDOWN_SECONDS)
                        break
                    throttled = fault.kind == "throttled"
                    if throttled:
                        self.cooldowns.cool(target, fault.retry_after or self._default_cooldown)
                        if position < len(targets) - 1:
                            break  # the next target, at once
                    retried += 1
                    if retried >= policy.retries.max_attempts:
                        break
                    delay = self._delay(retried, throttled, fault.retry_after)
                    if self._clock() + delay + MIN_ATTEMPT_SECONDS > stop_at:
                        break  # a retry that would outlive the deadline is not started
                    if not self.quota.acquire(THROTTLE_RETRY_COST if throttled else RETRY_COST):
                        break
                    self._sleep(delay)
                    continue
                attempts.append(Attempt(target, "served", None, _ms(began)))
                self.quota.release(NO_RETRY_INCREMENT if retried == 0 else RETRY_COST)
                if len(attempts) > 1:
                    _log(attempts, policy)
                return Served(target, events, attempts)
        _log(attempts, policy)
        error = first_error or last_error
        if error is None:
            raise errors.UpstreamTimeout("No time is left in this request for a model call.", code="answer_time_limit")
        if isinstance(error, errors.RateLimited):
            # Every target is throttled: tell the caller when the first of them may take requests again.
            waits = [self.cooldowns.left(target) for target in policy.targets]
            error.headers["Retry-After"] = str(max(1, round(min(waits, default=1.0))))
        raise error

    def _delay(self, retry: int, throttled: bool, hint: float | None) -> float:
        """botocore's standard-mode delay before retry number ``retry`` (1-based)."""
        base = THROTTLING_BASE_SECONDS if throttled else TRANSIENT_BASE_SECONDS
        delay = self._jitter() * min(base * 2 ** (retry - 1), MAX_BACKOFF_SECONDS)
        if hint is not None:
            delay = max(delay, min(hint, delay + RETRY_AFTER_EXTRA_SECONDS))
        return delay


def _ms(began: float) -> int:
    return int((time.perf_counter() - began) * 1000)


def _log(attempts: list[Attempt], policy: CallPolicy) -> None:
    logger.info(
        "upstream attempts",
        extra={
            "requested": policy.primary.model.id,
            "attempts": [
                {"target": a.target.key, "outcome": a.outcome, "error": a.error, "ms": a.ms} for a in attempts
            ],
        },
    )
