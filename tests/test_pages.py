"""chalicelib/shared/pages.py: newest first across partitions, every item once, each page bounded."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chalicelib.errors import InvalidRequest
from chalicelib.shared.pages import Source, Tier, decode_position, encode_position, newest_first


class Partition:
    """A partition as ``Query`` reads it newest first: ``Limit``, ``ExclusiveStartKey`` and a filter.

    As DynamoDB does, ``Limit`` counts the items looked at; the filter then drops some, and the
    ``LastEvaluatedKey`` may be an item that was not returned.
    """

    def __init__(self, positions: list[tuple[str, str]], dropped: Any = None) -> None:
        self.items = [{"t": t, "id": i} for t, i in sorted(positions, reverse=True)]
        self.dropped = dropped or (lambda item: False)
        self.queries = 0

    def query(
        self, *, Limit: int, ScanIndexForward: bool, ExclusiveStartKey: Any = None, upto: Any = None
    ) -> dict[str, Any]:
        assert ScanIndexForward is False
        self.queries += 1
        # A key condition bounded by the previous page's last item, inclusive (sk BETWEEN lo AND it).
        items = [item for item in self.items if upto is None or position(item) <= upto]
        start = 0 if ExclusiveStartKey is None else items.index(ExclusiveStartKey) + 1
        page = items[start : start + Limit]
        answer: dict[str, Any] = {"Items": [i for i in page if not self.dropped(i)], "ScannedCount": len(page)}
        if start + Limit < len(items):
            answer["LastEvaluatedKey"] = page[-1]
        return answer


def position(item: Any) -> tuple[str, str]:
    return (item["t"], item["id"])


def read_all(partitions: list[list[Partition]], *, limit: int, budget: int, keep: Any) -> tuple[list[Any], int]:
    seen, after, pages = [], None, 0
    while True:
        tiers = [
            Tier(
                [Source(table, {"upto": after}, position, page_size=7, key_position=position) for table in tier],
                floor=(f"{9 - n}",),
            )
            for n, tier in enumerate(partitions)
        ]
        page = newest_first(tiers, limit=limit, budget=budget, keep=keep, after=after)
        pages += 1
        assert len(page.rows) <= limit
        # Each page reads about its budget: each partition at least once, one page over at most.
        assert page.read <= budget + sum(len(tier) for tier in partitions) * 8
        seen += page.rows
        if page.after is None:
            return seen, pages
        assert after is None or page.after < after  # always moves on
        after = page.after


@pytest.mark.parametrize("seed", range(40))
def test_every_item_once_newest_first_whatever_the_filter_limit_and_budget(seed: int) -> None:
    rng = random.Random(seed)
    tiers = []
    everything = []
    # Some partitions filter on DynamoDB's side (a FilterExpression), the rest only in ``keep``.
    rare = rng.choice([1, 2, 5, 50])
    dropped = (lambda item: int(item["id"], 16) % rare != 0) if rng.random() < 0.5 else None
    for n in range(rng.randint(1, 3)):  # tiers: months, newest first (prefix 9, 8, 7)
        tier = []
        for _ in range(rng.randint(1, 5)):  # shards or keys
            positions = [
                (f"{9 - n}-{rng.randrange(10_000):05d}", f"{rng.getrandbits(32):08x}")
                for _ in range(rng.randint(0, 40))
            ]
            everything += positions
            tier.append(Partition(positions, dropped))
        tiers.append(tier)
    keep = lambda item: int(item["id"], 16) % rare == 0  # noqa: E731
    limit, budget = rng.choice([1, 3, 10, 50]), rng.choice([1, 5, 30, 1000])
    seen, pages = read_all(tiers, limit=limit, budget=budget, keep=keep)
    expected = [p for p in sorted(everything, reverse=True) if int(p[1], 16) % rare == 0]
    assert [position(item) for item in seen] == expected


def test_a_rare_filter_costs_short_pages_not_one_unbounded_read() -> None:
    # GIVEN 4 partitions of 1,000 items each, one match among them all
    partitions = [Partition([(f"9-{n:05d}", f"{shard}{n:07d}") for n in range(1000)]) for shard in range(4)]
    keep = lambda item: item["id"] == "20000007"  # noqa: E731
    # WHEN a page may read 200 items
    tiers = [Tier([Source(p, {}, position, page_size=100) for p in partitions])]
    page = newest_first(tiers, limit=50, budget=200, keep=keep)
    # THEN it stops near 200 items read, with no match yet and a place to go on from
    assert page.rows == [] and page.after is not None and page.read <= 400
    seen, pages = read_all([partitions], limit=50, budget=200, keep=keep)
    assert [item["id"] for item in seen] == ["20000007"] and pages > 5


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    assert decode_position(encode_position(("2026-11-26T10:00:00Z", "abc")), lambda p: len(p) == 2) == (
        "2026-11-26T10:00:00Z",
        "abc",
    )
    assert decode_position(None, lambda p: True) is None
    for bad in ("not base64!", encode_position(("only-one",)), "WzEsMl0"):  # the last: [1,2]
        with pytest.raises(InvalidRequest, match="cursor"):
            decode_position(bad, lambda p: len(p) == 2)
