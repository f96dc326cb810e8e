"""The scale benchmark in its short mode: the stream design must hold its goals under the contention model
(teams included: one more budget scope, a month item shared by all a team's keys).

``bench/ledger_scale.py`` is the measurement (full load, both designs, JSON); this runs a fifth
of its load for two virtual seconds and asserts what must never happen at any load: an entry
lost or counted twice, aggregates that differ from the entries once the aggregator caught up,
a budget overrun. And that the model bites: today's design, under the same load, loses entries.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

import pytest

from bench import ledger_scale


def short(name: str) -> ledger_scale.Scenario:
    scenario = ledger_scale.SCENARIOS[name]
    return ledger_scale.Scenario(**{**asdict(scenario), "rate": scenario.rate / 5, "keys": max(1, scenario.keys // 5)})


@pytest.mark.parametrize("name", sorted(ledger_scale.SCENARIOS))
def test_the_stream_design_loses_nothing_and_never_overruns(name: str) -> None:
    result = ledger_scale.run("stream", short(name), seconds=2.0, hold_seconds=0.005, seed=7)
    assert result.billed > 0
    assert result.entries_lost == 0 and result.entries_unrecorded == 0
    assert result.double_counted == 0 and result.aggregates_not_equal_entries == 0
    assert result.budget_overruns == 0 and result.admission_errors == 0
    assert Decimal(result.reservations_left_held_usd) == 0  # every reservation became its cost or came back
    if name == "hot-key":
        assert result.refused_budget > 0  # the budget ran out during the run, and held
    if name in ("team-mix", "hot-team"):
        # Teams are one more scope: never overrun, their aggregates exactly their entries' sums.
        assert result.team_budget_overruns == 0 and result.team_aggregates_not_equal_entries == 0
        assert "AGG#TEAM#" in result.busiest_item  # a team's month item is the hottest there is
    if name == "team-mix":
        assert result.refused_budget > 0  # the biggest team's budget ran out during the run, and held
    if name == "owner-mix":
        # Every request path stays within three sequential round trips (see docs/accounting.md).
        assert result.request_path["plain"]["calls_per_request"] == 1.0
        assert result.request_path["plain"]["dynamodb_ms_max"] <= 3 * 10


def test_todays_design_loses_entries_under_the_same_model() -> None:
    scenario = ledger_scale.Scenario(**{**asdict(short("many-keys")), "rate": 150})
    result = ledger_scale.run("today", scenario, seconds=1.0, hold_seconds=0.005, seed=7)
    assert result.conflicts > 0 and result.entries_unrecorded > 0 and result.entries_lost > 0
