from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from chalicelib.catalog.catalog import CatalogError, load_catalog
from chalicelib.errors import NotFound
from chalicelib.settings import DEFAULT_CATALOG


def write(tmp_path: Path, models: list[dict]) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"models": models}))
    return path


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
    # us. profile is priced above the base model ($1.10 vs $1.00 per million input).
    assert haiku.prices.per_million()["input"] == "1.1"
    assert haiku.supports_reasoning and "image" in haiku.input_modalities


def test_region_specific_price_wins(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "nova", "bedrock_model_id": "amazon.nova-micro-v1:0"}])
    base = load_catalog(path, region="us-east-1").resolve("nova")
    gov = load_catalog(path, region="us-gov-west-1").resolve("nova")
    assert gov.prices.input > base.prices.input


def test_unpriced_model_is_refused_at_load_unless_free_or_overridden(tmp_path: Path) -> None:
    unknown = {"id": "mystery", "bedrock_model_id": "acme.mystery-v1:0"}
    with pytest.raises(CatalogError, match="no price"):
        load_catalog(write(tmp_path, [unknown]), region="us-east-1")
    free = load_catalog(write(tmp_path, [{**unknown, "free": True}]), region="us-east-1").resolve("mystery")
    assert free.prices.input == 0 and free.free
    priced = load_catalog(
        write(tmp_path, [{**unknown, "prices": {"input_per_million": "0.5", "output_per_million": "1.25"}}]),
        region="us-east-1",
    ).resolve("mystery")
    assert priced.prices.input == Decimal("0.0000005") and priced.prices.output == Decimal("0.00000125")


@pytest.mark.parametrize(
    "models",
    [
        [],
        [{"id": "x"}],
        [
            {"id": "a", "bedrock_model_id": "amazon.nova-micro-v1:0"},
            {"id": "a", "bedrock_model_id": "amazon.nova-lite-v1:0"},
        ],
        [{"id": "a", "bedrock_model_id": "amazon.nova-micro-v1:0", "mode": "image"}],
        [{"id": "a", "bedrock_model_id": "amazon.nova-micro-v1:0", "prices": {"input_per_million": "-1"}}],
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
