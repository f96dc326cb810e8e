"""The catalog's seed file, its lookups, and the snapshot every warm function serves from."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.catalog import Catalog, CatalogError, LiveCatalog, load_catalog
from chalicelib.errors import NotFound
from chalicelib.settings import DEFAULT_CATALOG


def write(tmp_path: Path, models: list[dict]) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": models}))
    return path


def bedrock(alias: str, model_id: str, **extra: Any) -> dict[str, Any]:
    return {"alias": alias, "provider": "bedrock", "model_id": model_id, **extra}


def test_default_catalog_prices_every_model_from_litellms_map() -> None:
    catalog = load_catalog(DEFAULT_CATALOG, region="us-east-1")
    names = {m.id for m in catalog}
    assert {"nova-micro", "claude-haiku-4-5", "titan-embed-text-v2"} <= names
    nova = catalog.resolve("nova-micro")
    # The cross-region profile's own price ($0.035 / $0.14 per million), exactly.
    assert nova.prices.input == Decimal("3.5e-08")
    assert nova.prices.output == Decimal("1.4e-07")
    assert nova.prices.per_million()["input"] == "0.035"
    haiku = catalog.resolve("us.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert haiku.id == "claude-haiku-4-5"
    # us. profile is priced above the base model ($1.10 vs $1.00 per million input); 1-hour writes at $2.20.
    assert haiku.prices.per_million()["input"] == "1.1"
    assert haiku.prices.per_million()["cache_write_1h"] == "2.2"
    assert haiku.supports_reasoning and "image" in haiku.input_modalities
    # Claude Haiku 5.5 costs 5x above 100k input tokens: a tier of its own.
    [tier] = catalog.resolve("claude-haiku-5-5").prices.tiers
    assert (tier.above_input_tokens, tier.input) == (100_000, Decimal("5.5e-07"))


def test_region_specific_price_wins(tmp_path: Path) -> None:
    path = write(tmp_path, [bedrock("nova", "amazon.nova-micro-v1:0")])
    base = load_catalog(path, region="us-east-1").resolve("nova")
    gov = load_catalog(path, region="us-gov-west-1").resolve("nova")
    assert gov.prices.input > base.prices.input


def test_unpriced_model_is_refused_at_load_unless_free_or_overridden(tmp_path: Path) -> None:
    unknown = bedrock("mystery", "acme.mystery-v1:0")
    with pytest.raises(CatalogError, match="no price"):
        load_catalog(write(tmp_path, [unknown]), region="us-east-1")
    free = load_catalog(write(tmp_path, [{**unknown, "free": True}]), region="us-east-1").resolve("mystery")
    assert free.prices.input == 0 and free.free
    priced = load_catalog(
        write(tmp_path, [{**unknown, "prices": {"input": "0.5", "output": "1.25"}}]), region="us-east-1"
    ).resolve("mystery")
    assert priced.prices.input == Decimal("0.0000005") and priced.prices.output == Decimal("0.00000125")


@pytest.mark.parametrize(
    "models",
    [
        [],
        [{"alias": "x"}],
        [bedrock("a", "amazon.nova-micro-v1:0"), bedrock("a", "amazon.nova-lite-v1:0")],
        [bedrock("a", "amazon.nova-micro-v1:0", mode="image")],
        [bedrock("a", "amazon.nova-micro-v1:0", prices={"input": "-1"})],
        [bedrock("a", "amazon.nova-micro-v1:0"), bedrock("b", "amazon.nova-micro-v1:0")],
    ],
)
def test_malformed_catalogs_are_refused(tmp_path: Path, models: list[dict]) -> None:
    with pytest.raises(CatalogError):
        load_catalog(write(tmp_path, models), region="us-east-1")


def test_resolve_unknown_or_wrong_mode_is_model_not_found() -> None:
    catalog = load_catalog(DEFAULT_CATALOG, region="us-east-1")
    with pytest.raises(NotFound) as caught:
        catalog.resolve("gpt-4o")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(NotFound):
        catalog.resolve("titan-embed-text-v2", mode="chat")


# -- the live snapshot: fresh within its bound, no read per request --------------------------------


class FakeTable:
    """A catalog whose version and loads are counted, on a clock the test moves."""

    def __init__(self) -> None:
        self.version = 1
        self.version_reads = 0
        self.loads = 0
        self.fail = False
        self.gate: threading.Event | None = None

    def read_version(self) -> int:
        self.version_reads += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise TimeoutError("DynamoDB did not answer")
        return self.version

    def load(self) -> Catalog:
        self.loads += 1
        if self.fail:
            raise TimeoutError("DynamoDB did not answer")
        return Catalog([], version=self.version)


@pytest.fixture
def table() -> FakeTable:
    return FakeTable()


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def live(table: FakeTable, clock: list[float]) -> LiveCatalog:
    return LiveCatalog(version=table.read_version, load=table.load, monotonic=lambda: clock[0], wait_seconds=2)


def settle(live: LiveCatalog) -> None:
    """Wait for a background refresh to finish (the request did not)."""
    running = live._running
    if running is not None:
        running.result(timeout=5)


def test_a_warm_function_serves_its_snapshot_without_reading_the_table(live: LiveCatalog, table, clock) -> None:
    first = live()
    assert table.loads == 1
    for _ in range(1000):
        clock[0] += 0.005  # 5 s of requests
        assert live() is first
    assert (table.loads, table.version_reads) == (1, 0)


def test_after_ten_seconds_the_version_is_checked_in_the_background_and_reloaded_only_on_change(
    live: LiveCatalog, table, clock
) -> None:
    first = live()
    clock[0] += 11
    table.gate = threading.Event()  # the check is slow: the request must not wait for it
    assert live() is first
    table.gate.set()
    settle(live)
    assert (table.version_reads, table.loads) == (1, 1)  # unchanged: no reload
    table.version = 2
    clock[0] += 11
    live()
    settle(live)
    assert table.loads == 2 and live().version == 2


def test_a_change_is_seen_by_every_request_after_the_bound_even_after_an_idle_spell(
    live: LiveCatalog, table, clock
) -> None:
    # GIVEN a function that served, then sat idle while the catalog changed
    live()
    table.version = 2
    clock[0] += 3600
    # WHEN the next request arrives THEN it is served from the changed catalog (the bound holds)
    live.prefetch()  # as the request arrives: the read runs beside the key lookup
    assert live().version == 2


def test_the_bound_counts_from_when_a_read_began(live: LiveCatalog, table, clock) -> None:
    # GIVEN a background refresh that read the version just before a change
    live()
    clock[0] += 11
    live()
    settle(live)
    began = clock[0]
    table.version = 2  # changed right after that read
    # WHEN time passes up to the bound THEN the change is seen no later than 30 s after the read began
    clock[0] = began + 29.9
    live()
    settle(live)
    clock[0] = began + 30.0
    assert live().version == 2


def test_an_unreachable_table_serves_the_snapshot_it_has_and_says_so(
    live: LiveCatalog, table, clock, service_logs
) -> None:
    first = live()
    table.fail = True
    clock[0] += 60
    assert live() is first
    lines = [json.loads(line) for line in service_logs.lines()]
    assert any(line.get("event") == "catalog_stale" for line in lines)


def test_a_cold_function_without_a_snapshot_fails_loudly(live: LiveCatalog, table) -> None:
    table.fail = True
    with pytest.raises(TimeoutError):
        live()


def test_a_name_the_snapshot_does_not_know_is_checked_against_the_table_at_most_once_a_second(
    live: LiveCatalog, table, clock
) -> None:
    # GIVEN a fresh snapshot, and a model added since by another function
    live()
    table.version = 2
    clock[0] += 1.5
    # WHEN a caller names it THEN the table is read, and the new catalog answers
    assert live.recheck().version == 2
    # AND a stream of unknown names costs at most one read a second
    reads = table.version_reads
    for _ in range(100):
        clock[0] += 0.001
        live.recheck()
    assert table.version_reads == reads
