"""Budget scopes as data: one module builds every storage key; old items read as they are; a team is one more scope."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from chalicelib import errors
from chalicelib.accounting.ledger import Ledger, entry_from_item
from chalicelib.accounting.metering import Meter, worst_case_cost
from chalicelib.catalog.catalog import load_catalog
from chalicelib.keys.store import KeyStore
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared import scopes
from chalicelib.shared.scopes import Scope
from chalicelib.shared.usage import TokenUsage

ROOT = Path(__file__).resolve().parent.parent
NOVA = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro")
MONTH = "MONTH#2026-11"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def meter(usage_table) -> Meter:
    return Meter(Ledger(usage_table), clock=Clock())


def bill(meter: Meter, ticket, request_id: str, *, input_tokens: int = 10, output_tokens: int = 20):
    usage = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    return meter.settle(ticket, request_id=request_id, operation="chat", usage=usage, latency_ms=5, status="ok")


def test_scope_names_round_trip_and_refuse_what_is_not_one() -> None:
    for scope in (scopes.key("abc"), scopes.owner("0f-sub"), scopes.team("t1"), scopes.model("nova-micro")):
        assert Scope.parse(scope.name) == scope
    assert Scope.parse("ALL") == scopes.EVERYTHING and scopes.EVERYTHING.name == "ALL"
    assert scopes.team("t1").month("2026-11") == {"pk": "AGG#TEAM#t1", "sk": "MONTH#2026-11"}
    assert scopes.team("t1").budget_item == {"pk": "BUDGET#TEAM#t1", "sk": "CONFIG"}
    for bad in ("", "KEY#", "NOPE#x", "KEY", "ALL#x"):
        with pytest.raises(ValueError):
            Scope.parse(bad)
    # A team's own key is charged to its team, never to a person; a person's key to them (and a team, if chosen).
    assert scopes.charged("k", scopes.team_owner("t1"), "t1") == [scopes.key("k"), scopes.team("t1")]
    assert scopes.charged("k", "sub", "t1") == [scopes.key("k"), scopes.owner("sub"), scopes.team("t1")]
    assert scopes.charged("k", "sub", None) == [scopes.key("k"), scopes.owner("sub")]


def test_no_module_but_scopes_writes_a_storage_key() -> None:
    # Strings such as "AGG#KEY#…" used to be built by hand in six files: now one module builds them all.
    pattern = re.compile(
        r"(?:^|[^A-Za-z])(KEY|OWNER|TEAM|MODEL|AGG|BUDGET|STREAM|REPORT|PERSON|MEMBER|TEAMOF|DAY|MONTH|REQ|REL|PLAN)#"
    )
    found = []
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        if path == ROOT / "chalicelib" / "shared" / "scopes.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if id(node) not in docstrings and pattern.search(text) and "…" not in text:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text[:60]!r}")
    assert found == []


def test_entries_and_releases_written_before_teams_aggregate_as_they_did(usage_table, drain) -> None:
    # GIVEN items exactly as the previous code wrote them: a key's and an owner's reservations as two fields,
    # no team, no "reserved" map
    common = {"key_id": "k1", "owner_sub": "o1", "type": "entry", "aggregation": "stream"}
    usage_table.put_item(
        Item={
            "pk": "KEY#k1", "sk": "REQ#2026-11-26T10:00:00Z#r1", **common, "request_id": "r1",
            "model": "nova-micro", "bedrock_model_id": "us.amazon.nova-micro-v1:0", "operation": "chat",
            "cost": Decimal("0.25"), "latency_ms": 5, "status": "ok", "timestamp": "2026-11-26T10:00:00Z",
            "reserved_key_usd": Decimal("1"), "reserved_owner_usd": Decimal("2"), "budget_month": "2026-11",
            "input_tokens": 10, "output_tokens": 20, "cache_read_tokens": 0, "cache_write_tokens": 0,
        }
    )  # fmt: skip
    usage_table.put_item(
        Item={
            "pk": "KEY#k1", "sk": "REL#t2", "type": "release", "aggregation": "stream", "ticket_id": "t2",
            "key_id": "k1", "owner_sub": "o1", "budget_month": "2026-11", "reserved_key_usd": Decimal("0.5"),
            "reserved_owner_usd": Decimal("0.75"), "timestamp": "2026-11-26T10:00:01Z",
        }
    )  # fmt: skip
    # ...and the month items their admissions left: committed = the two reservations each
    usage_table.put_item(Item={"pk": "AGG#KEY#k1", "sk": MONTH, "committed": Decimal("1.5"), "billed": 0})
    usage_table.put_item(Item={"pk": "AGG#OWNER#o1", "sk": MONTH, "committed": Decimal("2.75"), "billed": 0})
    # WHEN the aggregator applies them
    drain(usage_table)
    ledger = Ledger(usage_table)
    # THEN each reservation was swapped for the cost on its own scope, as before
    assert ledger.aggregate("KEY#k1", MONTH)["committed"] == Decimal("0.25")
    assert ledger.aggregate("OWNER#o1", MONTH)["committed"] == Decimal("0.25")
    assert ledger.aggregate(scopes.owner("o1"), MONTH)["cost"] == Decimal("0.25")
    assert ledger.aggregate(scopes.EVERYTHING, "DAY#2026-11-26")["requests"] == 1
    # AND the old entry reads as a reservation on each of its scopes, with no team
    [stored] = ledger.entries_for_key("k1")
    entry = entry_from_item(stored)
    assert entry.reserved == {"KEY#k1": Decimal("1"), "OWNER#o1": Decimal("2")} and entry.team_id is None
    # AND usage reports read the old aggregates by owner and by team (all of it: no team)
    day = datetime(2026, 11, 26).date()
    assert [r["group"] for r in ledger.usage(day, day, "owner")] == ["o1"]
    assert [(r["group"], r["cost"]) for r in ledger.usage(day, day, "team")] == [("none", Decimal("0.25"))]


def test_aggregates_written_before_teams_read_as_they_are(usage_table) -> None:
    # GIVEN a month and a day aggregate as the previous aggregator left them (no "billed" on the month)
    usage_table.put_item(Item={"pk": "AGG#OWNER#o1", "sk": MONTH, "type": "aggregate", "cost": Decimal("3"),
                               "committed": Decimal("3.5"), "requests": 4})  # fmt: skip
    usage_table.put_item(Item={"pk": "AGG#OWNER#o1", "sk": "DAY#2026-11-02", "type": "aggregate", "cost": Decimal("3"),
                               "requests": 4, "gsi1pk": "DAY#2026-11-02", "gsi1sk": "OWNER#o1"})  # fmt: skip
    ledger = Ledger(usage_table)
    # THEN they read the same through a scope or its stored name
    assert ledger.aggregate(scopes.owner("o1"), MONTH) == ledger.aggregate("OWNER#o1", MONTH)
    assert ledger.held(scopes.owner("o1"), "2026-11") == Decimal("0.5")
    day = datetime(2026, 11, 2).date()
    assert [(r["group"], r["cost"], r["requests"]) for r in ledger.usage(day, day, "owner")] == [
        ("o1", Decimal("3"), 4)
    ]


def test_a_team_is_one_more_scope_of_admission_billing_and_aggregates(meter, keys_table, usage_table, drain) -> None:
    # GIVEN a person's key charged to a team with a budget, and a team's own key
    worst = worst_case_cost(NOVA, 100, 100)
    meter.set_budget(scopes.team("t1"), worst * 3, actor="admin")
    store = KeyStore(keys_table)
    personal, _ = store.create(owner_sub="o1", team_id="t1")
    owned, _ = store.create(owner_sub=scopes.team_owner("t1"), team_id="t1")
    # WHEN requests of both keys are admitted and billed
    tickets = [meter.admit(k, NOVA, input_tokens=100, max_output_tokens=100) for k in (personal, owned, owned)]
    assert all(t.reservations == {scopes.team("t1"): worst} for t in tickets)
    # THEN the team's budget binds both: a fourth worst case does not fit
    with pytest.raises(errors.QuotaExceeded, match="team t1"):
        meter.admit(personal, NOVA, input_tokens=100, max_output_tokens=100)
    entries = [bill(meter, ticket, f"r{n}") for n, ticket in enumerate(tickets)]
    assert {e.team_id for e in entries} == {"t1"} and entries[0].reserved == {"TEAM#t1": worst}
    drain(usage_table)
    ledger = Ledger(usage_table)
    cost = sum((e.cost for e in entries), Decimal(0))
    team = ledger.aggregate(scopes.team("t1"), MONTH)
    assert (team["cost"], team["committed"], team["requests"]) == (cost, cost, 3)
    # AND the team's own key is nobody's: no owner aggregate counts it
    assert ledger.aggregate(scopes.owner(scopes.team_owner("t1")), MONTH)["requests"] == 0
    assert ledger.aggregate(scopes.owner("o1"), MONTH)["requests"] == 1
    # AND usage by team is exact, with what no team paid for as its own row (none here)
    day = datetime(2026, 11, 26).date()
    assert [(r["group"], r["cost"]) for r in ledger.usage(day, day, "team")] == [("t1", cost)]


def test_a_key_moved_between_teams_mid_flight_is_billed_where_it_was_admitted(
    meter, keys_table, usage_table, drain
) -> None:
    # GIVEN two teams with budgets and a key charged to the first
    worst = worst_case_cost(NOVA, 100, 100)
    for team in ("ta", "tb"):
        meter.set_budget(scopes.team(team), worst * 10, actor="admin")
    key, _ = KeyStore(keys_table).create(owner_sub="o1", team_id="ta")
    ticket = meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    released = meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    # WHEN the key moves to the second team while the requests are in flight
    moved = replace(key, team_id="tb")
    entry = bill(meter, ticket, "r1")
    meter.release(released)
    after = bill(meter, meter.admit(moved, NOVA, input_tokens=100, max_output_tokens=100), "r2")
    drain(usage_table)
    # THEN the first request is billed, and its reservation given back, on the team that admitted it
    ledger = Ledger(usage_table)
    first, second = ledger.aggregate("TEAM#ta", MONTH), ledger.aggregate("TEAM#tb", MONTH)
    assert entry.team_id == "ta" and after.team_id == "tb"
    assert (first["cost"], first["committed"]) == (entry.cost, entry.cost)
    assert (second["cost"], second["committed"]) == (after.cost, after.cost)


def test_a_refusal_by_one_scope_gives_back_what_the_others_took(meter, keys_table, usage_table, drain) -> None:
    # GIVEN a key and owner with room, and a team whose budget is already spent
    worst = worst_case_cost(NOVA, 100, 100)
    meter.set_budget(scopes.owner("o1"), worst * 10, actor="admin")
    key, _ = KeyStore(keys_table).create(owner_sub="o1", team_id="t1", monthly_budget_usd=worst * 10)
    meter.set_budget(scopes.team("t1"), worst * 10, actor="admin")
    usage_table.put_item(Item={**scopes.team("t1").month("2026-11"), "committed": worst * 10})
    # WHEN a request is refused by the team
    with pytest.raises(errors.QuotaExceeded, match="team t1"):
        meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    drain(usage_table)
    # THEN the key's and owner's reservations came back: nothing is held for a request that never ran
    ledger = Ledger(usage_table)
    assert ledger.held(scopes.key(key.key_id), "2026-11") == 0
    assert ledger.held(scopes.owner("o1"), "2026-11") == 0
    assert ledger.aggregate(scopes.key(key.key_id), MONTH)["committed"] == 0
