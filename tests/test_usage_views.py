"""Usage over a month in a bounded number of reads: month aggregates, an owner's per-model days, and
the same answer as summing days or entries, also over data aggregated before those existed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.accounting.ledger import Ledger
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


def test_a_month_by_key_is_one_index_query_and_equals_its_days(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    counting = CountingTable(usage_table)
    ledger = Ledger(counting)
    # WHEN the month so far is asked for (today is the 26th)
    fast = ledger.usage(date(2026, 11, 1), date(2026, 11, 26), "key", today=date(2026, 11, 26))
    # THEN one query of the month's index partition and one read of its total answer it
    assert counting.reads == ["query by-period", "get"]
    # AND it is what the 26 days add up to
    slow = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "key")
    assert by_group(fast) == by_group(slow) and len(fast) == 6


def test_a_month_with_rows_from_before_months_were_indexed_is_summed_by_day(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    # GIVEN one key's month row as the aggregator wrote it before (not in the index)
    usage_table.update_item(
        Key={"pk": "AGG#KEY#owner-0-k0", "sk": "MONTH#2026-11"}, UpdateExpression="REMOVE gsi1pk, gsi1sk"
    )
    counting = CountingTable(usage_table)
    rows = Ledger(counting).usage(date(2026, 11, 1), date(2026, 11, 30), "key", today=date(2026, 12, 3))
    # THEN the gap is seen and the days answer: nothing is missing
    assert counting.reads.count("query by-period") == 1 + 30
    assert by_group(rows) == by_group(Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 30), "key"))


def test_an_owners_month_by_model_and_by_day_are_one_or_two_queries(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    keys = ["owner-1-k0", "owner-1-k1"]
    counting = CountingTable(usage_table)
    ledger = Ledger(counting)
    fast = ledger.usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys, owner_sub="owner-1")
    assert counting.reads == ["query table", "query table"]  # the owner's per-model days, and their day totals
    slow = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys)  # the entries
    assert by_group(fast) == by_group(slow) and set(by_group(fast)) == {"nova-micro", "nova-lite"}
    counting.reads.clear()
    days = ledger.usage(date(2026, 11, 1), date(2026, 11, 26), "day", key_ids=keys, owner_sub="owner-1")
    assert counting.reads == ["query table"]
    assert by_group(days) == by_group(
        Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "day", key_ids=keys)
    )


def test_an_owners_days_aggregated_before_per_model_rows_fall_back_to_the_entries(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    # GIVEN a day aggregated before the owner's per-model rows existed
    for model in MODELS:
        usage_table.delete_item(Key={"pk": "AGG#OWNER#owner-2", "sk": f"MODELDAY#2026-11-03#{model}"})
    keys = ["owner-2-k0", "owner-2-k1"]
    rows = Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys, owner_sub="owner-2")
    assert by_group(rows) == by_group(
        Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 26), "model", key_ids=keys)
    )


def test_month_costs_are_one_batch_for_a_page_of_keys(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    costs = Ledger(usage_table).month_costs(["KEY#owner-0-k0", "KEY#owner-1-k1", "KEY#never-used"], "2026-11")
    days = by_group(Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 30), "key"))
    assert costs == {
        "KEY#owner-0-k0": days["owner-0-k0"][1],
        "KEY#owner-1-k1": days["owner-1-k1"][1],
        "KEY#never-used": Decimal(0),
    }
