"""A page of keys' spend this month in one read, the same answer as summing their days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

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


def test_month_costs_are_one_batch_for_a_page_of_keys(usage_table: Any, drain: Any) -> None:
    bill_month(usage_table, drain)
    counting = CountingTable(usage_table)
    wanted = [scopes.key("owner-0-k0"), scopes.key("owner-1-k1"), scopes.key("never-used")]
    costs = Ledger(counting).month_costs(wanted, "2026-11")
    days = by_group(Ledger(usage_table).usage(date(2026, 11, 1), date(2026, 11, 30), "key"))
    assert costs == {wanted[0]: days["owner-0-k0"][1], wanted[1]: days["owner-1-k1"][1], wanted[2]: Decimal(0)}
    assert counting.reads == []  # one BatchGetItem, no query
