"""Waiting for the aggregator: usage aggregates trail billing by its delay (docs/accounting.md)."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Far above the local aggregator's quarter-second polling, so a slow machine does not flake.
AGGREGATION_TIMEOUT_SECONDS = 20.0


def eventually[T](
    read: Callable[[], T], done: Callable[[T], bool], *, timeout: float = AGGREGATION_TIMEOUT_SECONDS
) -> T:
    """``read()`` again every 0.1 s until ``done(value)``; the last value (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value
