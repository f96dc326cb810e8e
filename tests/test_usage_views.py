"""Usage over a month in a bounded number of reads (everyone's month by key, model or price version is
one index query; a page of keys' spend this month one batch read), the same answer as summing days,
also over months aggregated before months were indexed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.accounting.ledger import Ledger
from chalicelib.shared import scopes
from chalicelib.shared.usage import TokenUsage
from tests.factories import usage_entry

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
MODELS = ("nova-micro", "nova-lite", "claude-haiku-4-5")


class CountingTable:
    """The usage table, counting the reads made through it (queries and item gets)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.reads: list[str] = []
        self.meta, self.name = table.meta, table.name

    def query(self, **params: Any) -> Any:
        self.reads.append(f"query {params.get('IndexName', 'table')}")
        return self._table.query(**params)

    def get_item(self, **params: Any) -> Any:
        self.reads.append("get")
        return self._table.get_item(**params)


def bill_month(usage_table: Any, drain: Any) -> None:
    """Three owners, two keys each, three models, over 26 days of November."""
    ledger = Ledger(usage_table)
    for n in range(156):
        owner = f"owner-{n % 3}"
        ledger.record(
            usage_entry(
                request_id=f"r{n:04d}",
                key_id=f"{owner}-k{n % 2}",
                owner_sub=owner,
                model=MODELS[n % 3 if n % 5 else 0],
                usage=TokenUsage(input_tokens=10 + n, output_tokens=n % 7),
                at=NOVEMBER + timedelta(days=n % 26, minutes=n),
            )
        )
    drain(usage_table)


def by_group(rows: list[dict[str, Any]]) -> dict[str, tuple[int, Decimal]]:
    return {row["group"]: (row["requests"], row["cost"]) for row in rows}


@pytest.mark.parametrize("group_by", ["key", "model", "price"])
def test_a_month_by_key_model_or_price_is_one_index_query_and_equals_its_days(
    usage_table: Any, drain: Any, group_by: str
) -> None:
    bill_month(usage_table, drain)
    counting = CountingTable(usage_table)
    # WHEN the month so far is asked for (today is the 26th)
    fast = Ledger(counting).usage(date(2026, 11, 1), date(2026, 11, 26), group_by, today=date(2026, 11, 26))
    # THEN one query of the month's index partition and one read of its total answer it
    assert counting.reads == ["query by-period", "get"]
    # AND it is what the 26 days add up to
    slow = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), group_by)
    assert by_group(fast) == by_group(slow) and len(fast) == {"key": 6, "model": 3, "price": 3}[group_by]


def test_a_month_with_rows_from_before_months_were_indexed_is_summed_by_day(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    # GIVEN one key's month row as the aggregator wrote it before (not in the index)
    usage_table.update_item(Key=scopes.key("owner-0-k0").month("2026-11"), UpdateExpression="REMOVE gsi1pk, gsi1sk")
    counting = CountingTable(usage_table)
    rows = Ledger(counting).usage(date(2026, 11, 1), date(2026, 11, 30), "key", today=date(2026, 12, 3))
    # THEN the gap is seen and the days answer: nothing is missing
    assert counting.reads.count("query by-period") == 1 + 30
    assert by_group(rows) == by_group(Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 30), "key"))


def test_owners_and_teams_are_summed_by_day_and_part_months_too(usage_table: Any, drain: Any) -> None:
    # An owner's month row does not say whether each of their keys' entries reached it since the
    # index began (a team's own key has no owner row): those groups, and a part of a month, read days,
    # each day's rows of that kind only (a team's: and the day's total, for what no team paid).
    bill_month(usage_table, drain)
    for group_by, first, last, per_day in (("owner", 1, 26, 1), ("team", 1, 26, 2), ("key", 2, 26, 1)):
        counting = CountingTable(usage_table)
        rows = Ledger(counting).usage(date(2026, 11, first), date(2026, 11, last), group_by, today=date(2026, 11, 26))
        assert counting.reads.count("query by-period") == (last - first + 1) * per_day, group_by
        assert sum(row["requests"] for row in rows) == sum(1 for n in range(156) if first - 1 <= n % 26 <= last - 1)


def test_a_persons_month_by_model_day_and_key_are_one_or_two_reads(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    keys = ["owner-1-k0", "owner-1-k1"]
    counting = CountingTable(usage_table)
    ledger = Ledger(counting)
    for group_by, reads in (("model", ["query table", "query table"]), ("day", ["query table"]), ("key", [])):
        counting.reads.clear()
        fast = ledger.usage(
            date(2026, 11, 1), date(2026, 11, 26), group_by, key_ids=keys, owner_sub="owner-1", today=date(2026, 11, 26)
        )
        # THEN their own rows answer (the keys' month rows: one batch read, no query)...
        assert counting.reads == reads, group_by
        # ...what summing every entry or day of their keys answers
        slow = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), group_by, key_ids=keys)
        assert by_group(fast) == by_group(slow) and fast, group_by


def test_a_persons_days_aggregated_before_per_model_rows_fall_back_to_the_entries(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    # GIVEN a day aggregated before a person's per-model rows existed
    for model in MODELS:
        usage_table.delete_item(Key=scopes.owner("owner-2").aggregate(scopes.model_day_period("2026-11-03", model)))
    keys = ["owner-2-k0", "owner-2-k1"]
    rows = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys, owner_sub="owner-2")
    assert by_group(rows) == by_group(
        Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys)
    )


def test_month_costs_are_one_batch_for_a_page_of_keys(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    counting = CountingTable(usage_table)
    wanted = [scopes.key("owner-0-k0"), scopes.key("owner-1-k1"), scopes.key("never-used")]
    costs = Ledger(counting).month_costs(wanted, "2026-11")
    days = by_group(Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 30), "key"))
    assert costs == {wanted[0]: days["owner-0-k0"][1], wanted[1]: days["owner-1-k1"][1], wanted[2]: Decimal(0)}
    assert counting.reads == []  # one BatchGetItem, no query


def test_the_costliest_keys_of_a_month_are_read_alone_and_agree_with_the_whole_report(
    usage_table: Any, drain: Any
) -> None:
    bill_month(usage_table, drain)
    ledger = Ledger(usage_table)
    whole = ledger.usage(date(2026, 11, 1), date(2026, 11, 26), "key", today=date(2026, 11, 26))
    # WHEN the 4 costliest keys of the month so far are asked for
    top = ledger.top_month_rows(date(2026, 11, 1), date(2026, 11, 26), 4, today=date(2026, 11, 26))
    assert top is not None
    rows, groups, totals = top
    # THEN they are the whole report's first four, row for row, of its six; the totals are its totals
    assert rows == whole[:4] and groups == len(whole) == 6
    assert totals["cost"] == sum(row["cost"] for row in whole)
    assert totals["requests"] == sum(row["requests"] for row in whole) == 156
    # AND a part of a month, or a month with a row from before months were indexed, is left to usage()
    assert ledger.top_month_rows(date(2026, 11, 2), date(2026, 11, 26), 4, today=date(2026, 11, 26)) is None
    usage_table.update_item(Key=scopes.key("owner-0-k0").month("2026-11"), UpdateExpression="REMOVE gsi1pk, gsi1sk")
    assert ledger.top_month_rows(date(2026, 11, 1), date(2026, 11, 30), 4, today=date(2026, 12, 3)) is None
