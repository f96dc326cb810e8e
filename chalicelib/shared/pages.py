"""Newest first across several DynamoDB queries, a page at a time, with a bound on what one page reads.

A listing that spans partitions (a month's request log over its index shards, one person's
requests over their keys, every key over its two states) reads each partition newest first
and merges them. ``newest_first`` does that for one page: it reads the partitions lazily,
keeps what ``keep`` accepts, stops at ``limit`` rows or when it has read ``budget`` items, and
says where the next page starts (``Page.after``): every item newer than that position has
been looked at, in every partition, so resuming strictly below it skips nothing and repeats
nothing. A page that stops on the budget may hold fewer rows than asked (even none) and still
have a next page: a rare filter costs several short pages, never one unbounded one.

Partitions come in *tiers*: every item of a tier is newer than every item of the next (a
month's shards before the month before), so a tier is only read once the tiers before it are
exhausted. Positions are tuples compared as tuples (e.g. ``(time, request_id)``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.shared.body import parse_json

Position = tuple[str, ...]


@dataclass
class Source:
    """One DynamoDB ``Query`` read in descending key order (``ScanIndexForward=False`` is set here).

    ``params``: the query without ``Limit``/``ExclusiveStartKey``, bounded at or below the page's
    start; ``position``: an item's position.
    """

    table: Any
    params: Mapping[str, Any]
    position: Callable[[Mapping[str, Any]], Position]
    page_size: int = 100
    #: The position of a ``LastEvaluatedKey`` (needed with a ``FilterExpression``: the last item
    #: DynamoDB looked at may be one it did not return).
    key_position: Callable[[Mapping[str, Any]], Position] | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    #: How far the partition has been looked at: every item above this position has been read.
    read_to: Position | None = None
    _start: dict[str, Any] | None = None

    def read(self, most: int, after: Position | None) -> int:
        """Read one page of at most ``most`` items into ``buffer``; returns its cost in items (at least 1)."""
        params = {**self.params, "ScanIndexForward": False, "Limit": max(1, min(most, self.page_size))}
        if self._start:
            params["ExclusiveStartKey"] = self._start
        response = self.table.query(**params)
        items = response.get("Items", [])
        for item in items:
            here = self.position(item)
            self.read_to = here
            if after is None or here < after:  # the previous page's last item, when the bound includes it
                self.buffer.append(item)
        self._start = response.get("LastEvaluatedKey")
        self.done = not self._start
        if self._start and self.key_position is not None:
            self.read_to = self.key_position(self._start)
        return max(1, int(response.get("ScannedCount", len(items))))


@dataclass(frozen=True)
class Tier:
    """Partitions read together; ``floor``: a position every item of every later tier is below."""

    sources: Sequence[Source]
    floor: Position | None = None


@dataclass(frozen=True)
class Page:
    """Rows of one page, where the next starts (None: nothing older), and how many items were read."""

    rows: list[dict[str, Any]]
    after: Position | None
    read: int


def newest_first(
    tiers: Sequence[Tier],
    *,
    limit: int,
    budget: int,
    keep: Callable[[Mapping[str, Any]], bool] = lambda item: True,
    after: Position | None = None,
) -> Page:
    """At most ``limit`` kept items, newest first, older than ``after``, reading about ``budget`` items.

    Each partition of a tier is read once (twice if its first item was the previous page's
    last), whatever the budget, so every page moves on; past the budget nothing more is read,
    and the page ends where the merge is still sure of its order: ``Page.after`` is a position
    such that every item above it, in every partition, has been looked at. A partition may
    filter (``FilterExpression``): what it looked at and did not return counts as read.
    """
    rows: list[dict[str, Any]] = []
    read = 0
    frontier = after
    for number, tier in enumerate(tiers):
        if number and read >= budget and frontier != after:
            return Page(rows, frontier, read)  # the tiers before are done: the next page starts below them
        sources = list(tier.sources)
        # A partition's share of the page to start with (the merge reads more where it runs out):
        # reading limit + 1 from each would read, and send, four times what a page of four shows.
        share = max(2, -(-limit // max(1, len(sources))) + 1)
        for source in sources:  # each partition once, whatever the budget: every page moves on
            read += source.read(share, after)
            # The previous page's last item (the bounds include it) may be all that read returned.
            while after is not None and not source.buffer and not source.done and (source.read_to or after) >= after:
                read += source.read(share, after)
        while len(rows) < limit:
            for source in sources:
                if not source.buffer and not source.done and read < budget:
                    # A partition that filters on DynamoDB's side returns a fraction of what it reads.
                    wanted = max(share, limit - len(rows) + 1) * (10 if "FilterExpression" in source.params else 1)
                    read += source.read(min(budget - read, wanted), after)
            stalled = [s for s in sources if not s.buffer and not s.done]
            heads = [s for s in sources if s.buffer]
            if not heads and not stalled:
                break  # this tier is exhausted
            # A partition not read to its end may still hold items newer than another's head.
            floor = max((s.read_to or after or ("~",) for s in stalled), default=None)
            ready = [s for s in heads if floor is None or s.position(s.buffer[0]) > floor]
            if not ready:
                return Page(rows, floor, read)
            newest = max(ready, key=lambda s: s.position(s.buffer[0]))
            item = newest.buffer.pop(0)
            frontier = newest.position(item)
            if keep(item):
                rows.append(item)
        else:
            finished = number == len(tiers) - 1 and all(s.done and not s.buffer for s in sources)
            return Page(rows, None if finished else frontier, read)
        if tier.floor is not None and (frontier is None or tier.floor < frontier):
            frontier = tier.floor
    return Page(rows, None, read)


def encode_position(position: Position) -> str:
    """An opaque cursor for a position."""
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_position(cursor: str | None, check: Callable[[Position], bool]) -> Position | None:
    """The position in a cursor from ``encode_position`` (None for none).

    Raises
    ------
    InvalidRequest
        The cursor was not made by this listing (or was edited).
    """
    if not cursor:
        return None
    try:
        value = parse_json(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except (binascii.Error, ValueError, InvalidRequest):
        value = None
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        position = tuple(value)
        if check(position):
            return position
    raise InvalidRequest("The cursor is not valid for this listing; start again without it.", param="cursor")
