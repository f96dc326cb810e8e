"""Days as callers write them (``YYYY-MM-DD``, nothing else), and times as we store them.

``date.fromisoformat`` also reads ``20261126`` and ``2026-W48-4`` (Python
3.11+), and any day back to year 1, where a report's trailing week
(``day - 7 days``) overflows into a 500. Every day a caller names (usage
ranges, the audit log's day, reports) goes through ``parse_day_text``.

Stored times are ISO 8601 UTC to the second with a ``Z`` (``isoformat``); every
clock is a ``Clock`` returning an aware UTC ``datetime`` (``utcnow`` by default).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime

from chalicelib.errors import InvalidRequest

#: Nothing was billed before this day (reconcile refuses earlier timestamps too).
EARLIEST_DAY = date(2020, 1, 1)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, second precision: the stored time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Inverse of ``isoformat`` (also accepts any ISO 8601 string with an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_day_text(text: str, param: str) -> date:
    """The day ``text`` names, when it is ``YYYY-MM-DD`` (ASCII digits) and not before 2020.

    Raises
    ------
    InvalidRequest
        Any other shape, a day that does not exist, or one before ``EARLIEST_DAY``; ``param`` names the field.
    """
    day = None
    if isinstance(text, str) and _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            day = None
    if day is None:
        raise InvalidRequest(f"'{param}' must be a date like 2026-11-25 (YYYY-MM-DD), got {text!r}.", param=param)
    if day < EARLIEST_DAY:
        raise InvalidRequest(f"'{param}' must be {EARLIEST_DAY} or later, got {text!r}.", param=param)
    return day
