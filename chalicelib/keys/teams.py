"""What the request path needs of a team (its guardrail), cached per warm function: no round trip when warm.

A key charged to a team (the team's own keys, and members' keys charged to it) carries the team's
guardrail unless the key has its own. The team lives in the directory (``TEAM#<id>`` in the usage
table, written by ``chalicelib/admin/directory.py``); this module only reads it, so the model
service can (``service`` may import ``keys``, never ``admin``).

``TeamPolicies`` keeps what it read per team, as the live catalog does (``catalog/live.py``):

* younger than ``REFRESH_AFTER_SECONDS``: used as it is, no DynamoDB call;
* older, but younger than ``MAX_AGE_SECONDS``: used as it is while a background thread reads the
  team again (one ``GetItem``);
* ``MAX_AGE_SECONDS`` old or more, or never read by this function: read before the request goes on.

So a team's guardrail change is applied by every warm function within ``MAX_AGE_SECONDS``; at once
on the function of the admin who made it (``remember``). A team that cannot be read when it must
be fails the request closed (503 ``team_unavailable``): a call is never made without the guardrail
its team requires; a read that fails in the background leaves the copy held until it is too old.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import errors
from chalicelib.observability import logger
from chalicelib.shared import scopes
from chalicelib.shared.guardrails import Guardrail

REFRESH_AFTER_SECONDS = 10.0
MAX_AGE_SECONDS = 30.0
#: The team item's attribute holding its guardrail (``{"id", "version"}``), written by the directory.
GUARDRAIL_ATTRIBUTE = "guardrail"


@dataclass(frozen=True)
class TeamPolicy:
    """What every call charged to a team carries: its guardrail (None: none; the model's applies)."""

    team_id: str
    guardrail: Guardrail | None = None

    @classmethod
    def from_item(cls, team_id: str, item: Mapping[str, Any] | None) -> TeamPolicy:
        """The policy of a stored team item (a team gone has none)."""
        raw = (item or {}).get(GUARDRAIL_ATTRIBUTE)
        if not raw:
            return cls(team_id)
        return cls(team_id, Guardrail(str(raw["id"]), str(raw.get("version", "DRAFT"))))


class TeamPolicies:
    """Each team's policy as this function last read it; call it with a team id.

    ``read`` reads one team's stored item (a consistent ``GetItem``), or None when there is none.
    """

    def __init__(
        self,
        read: Callable[[str], Mapping[str, Any] | None],
        *,
        refresh_after: float = REFRESH_AFTER_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._refresh_after = refresh_after
        self._max_age = max_age
        self._monotonic = monotonic
        self._lock = threading.Lock()
        #: team id → (policy, when the read behind it began)
        self._held: dict[str, tuple[TeamPolicy, float]] = {}
        self._refreshing: set[str] = set()
        self._worker: ThreadPoolExecutor | None = None

    def __call__(self, team_id: str) -> TeamPolicy:
        """The team's policy for this request (reads DynamoDB only when it holds none young enough).

        Raises
        ------
        ServiceUnavailable
            The team must be read and cannot be (``team_unavailable``).
        """
        now = self._monotonic()
        with self._lock:
            held = self._held.get(team_id)
        if held is not None:
            policy, read_at = held
            age = now - read_at
            if age < self._refresh_after:
                return policy
            if age < self._max_age:
                self._refresh_in_background(team_id)
                return policy
        try:
            return self._load(team_id, now)
        except Exception as exc:  # noqa: BLE001 - a clear 503, never a call without the team's guardrail
            logger.warning("a team's policy could not be read", extra={"team_id": team_id, "reason": str(exc)[:300]})
            raise errors.ServiceUnavailable(
                "The gateway could not read this key's team policy just now; retry in a moment.",
                code="team_unavailable",
            ) from None

    def remember(self, policy: TeamPolicy) -> None:
        """Hold ``policy`` as read now (the admin who changed the team sees the change at once)."""
        with self._lock:
            self._held[policy.team_id] = (policy, self._monotonic())

    def _load(self, team_id: str, began: float) -> TeamPolicy:
        policy = TeamPolicy.from_item(team_id, self._read(team_id))
        with self._lock:
            held = self._held.get(team_id)
            if held is None or began >= held[1]:
                self._held[team_id] = (policy, began)
        return policy

    def _refresh_in_background(self, team_id: str) -> None:
        with self._lock:
            if team_id in self._refreshing:
                return
            self._refreshing.add(team_id)
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="team-refresh")
        self._worker.submit(self._refresh, team_id, self._monotonic())

    def _refresh(self, team_id: str, began: float) -> None:
        try:
            self._load(team_id, began)
        except Exception as exc:  # noqa: BLE001 - the copy held serves until it is too old
            logger.warning("team policy refresh failed", extra={"team_id": team_id, "reason": str(exc)[:300]})
        finally:
            with self._lock:
                self._refreshing.discard(team_id)


def team_reader(table: Any) -> Callable[[str], Mapping[str, Any] | None]:
    """Reads one team's item from the usage table (a consistent ``GetItem`` of ``TEAM#<id>``)."""

    def read(team_id: str) -> Mapping[str, Any] | None:
        return table.get_item(
            Key=scopes.team_key(team_id), ConsistentRead=True, ProjectionExpression="team_id, guardrail"
        ).get("Item")

    return read
