"""Listing keys newest first, searched and filtered on the server, a page at a time.

One person's keys are one query of the ``by-owner`` index; everyone's (an admin's "All keys")
are the ``by-status`` index's two partitions, ``active`` and ``revoked``, merged newest first
(an expired key is an active one past its ``expires_at``). Search is a piece of the name, key id,
owner, import id or metadata, in any case (compared NFKC-normalised and case-folded). Each key
item stores that text, normalised, as ``search`` (written on create and on every edit), and a
search is a ``FilterExpression`` ``contains(search, :q)`` on the query: DynamoDB has no substring
index, so it still reads every key it looks at, but sends back only the matches (reading is
cheap; sending and decoding a thousand items was most of a search's time). A key stored before
``search`` existed is sent back too (``attribute_not_exists``) and matched here, and gets its
``search`` at its next edit. The model filter runs over the items as they arrive. So a page
reads at most about ``READ_BUDGET`` keys: a search that matches little over many keys answers
short pages, each with a cursor to go on from, instead of one read of the whole table (the
console shows how far it searched).

The cursor holds, per partition, DynamoDB's own ``LastEvaluatedKey`` of the last key shown from
it, so keys created in the same second (an import) are neither repeated nor skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.shared.body import parse_json

#: Keys one page may read (a key item is well under 1 KB): a bound on every page, whatever the search.
READ_BUDGET = 1000
#: The partitions of the ``by-status`` index a listing of each state reads.
STATE_PARTITIONS = {
    None: ("active", "revoked"),
    "active": ("active",),
    "expired": ("active",),
    "disabled": ("active",),
    "revoked": ("revoked",),
}
MAX_SEARCH = 200


@dataclass(frozen=True)
class KeyFilter:
    """What a listing keeps: a state, a piece of text, a model the key may use."""

    status: str | None = None
    search: str | None = None
    model: str | None = None

    def keeps(self, item: Mapping[str, Any], now: str) -> bool:
        if self.status is not None and state_of(item, now) != self.status:
            return False
        allowed = item.get("allowed_models")
        if self.model is not None and allowed is not None and self.model not in allowed:
            return False  # no allowlist: every model
        return self.search is None or normalise(self.search) in search_text(item)


def state_of(item: Mapping[str, Any], now: str) -> str:
    """``revoked``, ``expired``, ``disabled`` (its owner is) or ``active`` of a stored key, as
    ``KeyRecord.effective_status`` says (``now`` in the stored time form)."""
    if item.get("status") == "revoked":
        return "revoked"
    expires = item.get("expires_at")
    if expires and str(expires) <= now:
        return "expired"
    return "disabled" if item.get("owner_disabled") else "active"


def normalise(text: str) -> str:
    """Text as search compares it: NFKC-normalised and case-folded (what is stored as ``search``)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def search_text(item: Mapping[str, Any]) -> str:
    """What a search looks in, normalised: name, key id and prefix, owner, import id, metadata."""
    metadata = item.get("metadata") or {}
    parts = [
        item.get("name"),
        item.get("key_id"),
        f"pw-{item.get('key_id')}",
        item.get("owner_email"),
        item.get("owner_sub"),
        item.get("import_id"),
        *(f"{k}={v}" for k, v in metadata.items()),
    ]
    return normalise("\n".join(str(part) for part in parts if part))


@dataclass
class _Partition:
    name: str
    params: dict[str, Any]
    start: dict[str, Any] | None  # where the last page left it (None: its start)
    done: bool = False
    buffer: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (item, its key)
    _read_from: dict[str, Any] | None = None
    _exhausted: bool = False


@dataclass(frozen=True)
class KeyPage:
    """Items of one page (raw key items), the cursor of the next (None: no more), what was read."""

    items: list[dict[str, Any]]
    cursor: str | None
    read: int


class KeyListing:
    """Pages of the keys table, newest first. Takes the boto3 ``Table`` resource of the keys."""

    def __init__(self, table: Any, *, key_names: Callable[[str], tuple[str, ...]]) -> None:
        self._table = table
        self._key_names = key_names  # index name → the attributes of its LastEvaluatedKey

    def page(
        self, *, owner_sub: str | None, keep: KeyFilter, now: str, limit: int, cursor: str | None, budget: int
    ) -> KeyPage:
        """Up to ``limit`` keys ``keep`` accepts, newest first, reading about ``budget`` keys.

        Raises
        ------
        InvalidRequest
            A cursor this listing did not make (another owner's, edited).
        """
        partitions = self._partitions(owner_sub, keep.status)
        if keep.search is not None:
            for partition in partitions:
                partition.params = _searching(partition.params, normalise(keep.search))
        starts = self._decode(cursor, partitions, owner_sub)
        for partition in partitions:
            if partition.name in starts:
                partition.start = starts[partition.name]  # None: nothing shown from it yet
            elif cursor:
                partition.done = True  # read to its end on an earlier page
        items: list[dict[str, Any]] = []
        read = 0
        for partition in partitions:
            if not partition.done:
                read += self._read(partition, limit + 1)
        while len(items) < limit:
            for partition in partitions:
                # A search filtered by DynamoDB may send back nothing of what it read: read on.
                while not partition.done and not partition.buffer and not partition._exhausted and read < budget:
                    read += self._read(partition, max(limit + 1, budget - read))
            if any(not p.buffer and not p._exhausted and not p.done for p in partitions):
                break  # a partition may still hold newer keys than the others' next: stop, sure of the order
            heads = [p for p in partitions if p.buffer]
            if not heads:
                break
            newest = max(heads, key=lambda p: _order(p.buffer[0][0]))
            item, key = newest.buffer.pop(0)
            newest.start = key
            if keep.keeps(item, now):
                items.append(item)
        for partition in partitions:
            if partition._exhausted and not partition.buffer:
                partition.done = True
            elif not partition.buffer and partition._read_from is not None:
                # Everything it returned was shown or dropped; what it looked at past that did not
                # match the search (DynamoDB's filter): the next page starts after all of it.
                partition.start = partition._read_from
        more = [p for p in partitions if not p.done]
        return KeyPage(items, self._encode(more) if more else None, read)

    def _partitions(self, owner_sub: str | None, status: str | None) -> list[_Partition]:
        if owner_sub is not None:
            params = {
                "IndexName": "by-owner",
                "KeyConditionExpression": "owner_sub = :owner",
                "ExpressionAttributeValues": {":owner": owner_sub},
            }
            return [_Partition("owner", params, None)]
        return [
            _Partition(
                state,
                {
                    "IndexName": "by-status",
                    "KeyConditionExpression": "#status = :state",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {":state": state},
                },
                None,
            )
            for state in STATE_PARTITIONS[status]
        ]

    def _read(self, partition: _Partition, most: int) -> int:
        params = {**partition.params, "ScanIndexForward": False, "Limit": max(1, min(most, 500))}
        start = partition._read_from if partition._read_from is not None else partition.start
        if start:
            params["ExclusiveStartKey"] = start
        response = self._table.query(**params)
        names = self._key_names(params["IndexName"])
        for item in response.get("Items", []):
            partition.buffer.append((item, {name: item[name] for name in names}))
        partition._read_from = response.get("LastEvaluatedKey")
        partition._exhausted = partition._read_from is None
        return max(1, int(response.get("ScannedCount", len(response.get("Items", [])))))

    def _encode(self, partitions: list[_Partition]) -> str:
        value = {p.name: p.start for p in partitions}
        return base64.urlsafe_b64encode(json.dumps(value, sort_keys=True).encode()).decode().rstrip("=")

    def _decode(
        self, cursor: str | None, partitions: list[_Partition], owner_sub: str | None
    ) -> dict[str, dict[str, Any] | None]:
        if not cursor:
            return {}
        try:
            value = parse_json(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        except (binascii.Error, ValueError, InvalidRequest):
            value = None
        names = {p.name: p for p in partitions}
        valid = isinstance(value, dict) and value and set(value) <= set(names)
        if valid:
            for name, start in value.items():
                index = names[name].params["IndexName"]
                if start is None:
                    continue
                expected = set(self._key_names(index))
                bound = {"owner_sub": owner_sub} if name == "owner" else {"status": name}
                if not (
                    isinstance(start, dict)
                    and set(start) == expected
                    and all(isinstance(v, str) for v in start.values())
                    and all(start.get(k) == v for k, v in bound.items())
                ):
                    valid = False
        if not valid:
            raise InvalidRequest("The cursor is not valid for this listing; start again without it.", param="cursor")
        return value


def _searching(params: dict[str, Any], text: str) -> dict[str, Any]:
    """``params`` sending back only the keys whose stored ``search`` holds ``text`` (normalised), and
    keys stored before ``search`` existed (matched as they arrive)."""
    return {
        **params,
        "FilterExpression": "contains(#search, :search) OR attribute_not_exists(#search)",
        "ExpressionAttributeNames": {**params.get("ExpressionAttributeNames", {}), "#search": "search"},
        "ExpressionAttributeValues": {**params["ExpressionAttributeValues"], ":search": text},
    }


def _order(item: Mapping[str, Any]) -> tuple[str, str]:
    return (str(item.get("created_at", "")), str(item.get("key_id", "")))


def validate_search(text: str | None) -> str | None:
    """A search as the listing takes it: trimmed, at most ``MAX_SEARCH`` characters (None: no search)."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_SEARCH:
        raise InvalidRequest(f"q must be at most {MAX_SEARCH} characters.", param="q")
    return text.strip()
