"""Rendering of ``pennyworth usage`` (the HTTP side is covered end to end in tests/integration)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console

from cli.usage import RECONCILE_BATCH, RECONCILE_BATCH_BYTES, bar_chart, reconcile_batches, to_csv, usage_table

REPORT = {
    "from": "2026-11-01",
    "to": "2026-11-26",
    "group_by": "key",
    "scope": "all",
    "data": [
        {"group": "aaaaaaaaaaaa", "prefix": "pw-aaaaaaaaaaaa", "name": "laptop", "requests": 3, "input_tokens": 30,
         "output_tokens": 60, "cache_read_tokens": 5, "cache_write_tokens": 0, "cost_usd": "0.000012"},
        {"group": "bbbbbbbbbbbb", "prefix": "pw-bbbbbbbbbbbb", "name": "", "requests": 1, "input_tokens": 1,
         "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": "0"},
    ],
    "total": {"requests": 4, "input_tokens": 31, "output_tokens": 60, "cache_read_tokens": 5,
              "cache_write_tokens": 0, "cost_usd": "0.000012"},
}  # fmt: skip


def render(renderable) -> str:
    console = Console(width=120, record=True)
    console.print(renderable)
    return console.export_text()


def test_csv_has_one_row_per_group_with_exact_money() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(REPORT))))
    assert [r["group"] for r in rows] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert rows[0]["cost_usd"] == "0.000012" and rows[0]["name"] == "laptop"


def test_table_shows_names_and_a_total_row() -> None:
    text = render(usage_table(REPORT))
    assert "pw-aaaaaaaaaaaa (laptop)" in text and "$0.000012" in text and "total" in text


def test_chart_scales_bars_to_the_biggest_cost() -> None:
    lines = render(bar_chart(REPORT)).splitlines()
    assert lines[1].count("█") == 40 and "·" in lines[2]
    assert "No usage" in render(bar_chart({**REPORT, "data": []}))


def test_reconcile_batches_stay_under_the_gateways_body_limit() -> None:
    # 100,000 lines, some long enough that 1,000 of them would pass the gateway's 5 MB body limit (a 413
    # half-way through the file), one longer than any CloudWatch log event can be.
    lines = [(n, ("x" * 20_000 if n % 3 == 0 else "y" * 100)) for n in range(1, 100_001)]
    lines[41] = (42, "z" * (300 * 1024))
    batches, too_long = reconcile_batches(lines)
    assert [number for number, _ in too_long] == [42]
    sent = [line for batch in batches for line in batch]
    assert len(sent) == 99_999 and sent[0] == (1, "y" * 100) and sent[-1][0] == 100_000  # every line once, in order
    for batch in batches:
        assert 1 <= len(batch) <= RECONCILE_BATCH
        assert len(json.dumps({"lines": [line for _, line in batch]})) <= RECONCILE_BATCH_BYTES
