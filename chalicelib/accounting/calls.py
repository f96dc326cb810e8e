"""DynamoDB calls with a deadline: retry what is transient, give up in time.

botocore's own retries know nothing of the Lambda invocation's remaining time,
and it does not retry ``TransactionConflictException`` at all. Every ledger
and meter call goes through ``Attempts.call``: transient failures (a
conflicting transaction, throttling, a timeout, a 5xx) are retried with
jittered exponential backoff while the next attempt can still finish before
``deadline``; anything else, or running out of time, raises the last error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Error codes worth another attempt. ``TransactionConflictException`` is a plain write
#: on an item a transaction holds; ``TransactionCanceledException`` is checked separately
#: (only its ``TransactionConflict``/throttling reasons are transient).
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def error_code(exc: BaseException) -> str | None:
    """The DynamoDB error code of a botocore ``ClientError`` (None for other errors)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def cancellation_reasons(exc: BaseException) -> list[str]:
    """The per-item reason codes of a cancelled transaction (``"None"`` for items that were fine)."""
    response = getattr(exc, "response", None) or {}
    return [str(reason.get("Code")) for reason in response.get("CancellationReasons") or []]


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt may not meet: conflicts, throttling, timeouts, 5xx."""
    from botocore.exceptions import BotoCoreError

    if isinstance(exc, BotoCoreError):
        return True  # connect/read timeouts, dropped connections
    code = error_code(exc)
    if code == "TransactionCanceledException":
        reasons = set(cancellation_reasons(exc)) - {"None"}
        return bool(reasons) and reasons <= TRANSIENT_REASONS
    return code in TRANSIENT_CODES


@dataclass
class Attempts:
    """Retry policy and counters. ``timer``/``sleep``/``rng`` are injected by tests and the simulator."""

    timer: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    backoff_seconds: float = 0.025
    max_backoff_seconds: float = 0.4
    #: The longest one attempt can take (botocore's connect + read timeouts): no attempt starts without it.
    attempt_seconds: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    retries: int = 0

    def call[T](
        self, fn: Callable[[], T], *, deadline: float, transient: Callable[[BaseException], bool] = is_transient
    ) -> T:
        """``fn()``, retried while it fails transiently and time remains before ``deadline``."""
        from botocore.exceptions import BotoCoreError, ClientError

        attempt = 0
        while True:
            try:
                return fn()
            except (ClientError, BotoCoreError) as exc:
                if not transient(exc):
                    raise
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
                delay *= 0.5 + self.rng.random() / 2
                if self.timer() + delay + self.attempt_seconds > deadline:
                    raise
                attempt += 1
                self.retries += 1
                self.sleep(delay)
