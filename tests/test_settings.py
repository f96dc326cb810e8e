from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.settings import ENV, Settings, SettingsError

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_defaults_work_without_any_environment() -> None:
    settings = Settings.from_env({})
    assert settings.keys_table == "pennyworth-local-keys"
    assert settings.upstream_timeout_seconds == 25.0
    assert settings.bedrock_endpoint_url is None
    assert settings.bedrock_region == "us-east-1"


def test_explicit_values_win_and_empty_means_default() -> None:
    settings = Settings.from_env(
        {"AWS_REGION": "eu-west-1", "PENNYWORTH_BEDROCK_REGION": "", "PENNYWORTH_MAX_BODY_BYTES": "10"}
    )
    assert settings.bedrock_region == "eu-west-1" and settings.max_body_bytes == 10


@pytest.mark.parametrize("value", ["soon", "-1", "0"])
def test_bad_numbers_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS"):
        Settings.from_env({"PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS": value})


def test_stream_timeout_defaults_to_five_minutes_and_stops_at_lambdas_fifteen() -> None:
    assert Settings.from_env({}).stream_timeout_seconds == 300.0
    assert Settings.from_env({"PENNYWORTH_STREAM_TIMEOUT_SECONDS": "900"}).stream_timeout_seconds == 900.0
    assert Settings.from_env({"PENNYWORTH_STREAM_TIMEOUT_SECONDS": "0.5"}).stream_timeout_seconds == 0.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("901", "at most 900"),
        ("nan", "a finite number"),
        ("inf", "a finite number"),
        ("0", "positive"),
        ("5m", "a number"),
    ],
)
def test_bad_stream_timeouts_are_refused_by_name(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"PENNYWORTH_STREAM_TIMEOUT_SECONDS must be {message}"):
        Settings.from_env({"PENNYWORTH_STREAM_TIMEOUT_SECONDS": value})


def test_every_variable_is_documented_and_every_documented_one_exists() -> None:
    text = DOC.read_text()
    gateway_table = text.split("## Environment variables", 1)[1].split("Also set by", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", gateway_table, flags=re.M))
    assert documented == set(ENV)


def test_code_reads_no_undeclared_pennyworth_variable() -> None:
    root = Path(__file__).resolve().parent.parent
    used: set[str] = set()
    for path in [root / "app.py", *(root / "chalicelib").rglob("*.py")]:
        used |= set(re.findall(r"\"(PENNYWORTH_[A-Z0-9_]+)\"", path.read_text()))
    assert used <= set(ENV), used - set(ENV)


@pytest.mark.parametrize(
    "name", ["PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS", "PENNYWORTH_SPIKE_FACTOR", "PENNYWORTH_MAX_BODY_BYTES"]
)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity"])
def test_no_number_setting_takes_nan_or_infinity(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
