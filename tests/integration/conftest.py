"""The real local stack (moto server + Bedrock emulator + chalice local), once per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.devstack import DevStack, Ports


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    logs: Path = tmp_path_factory.mktemp("stack-logs")
    with DevStack(ports=Ports.free(), log_dir=logs) as running:
        yield running


@pytest.fixture(scope="session")
def dev_info(stack: DevStack) -> dict[str, Any]:
    return stack.info


@pytest.fixture
def openai_client(dev_info: dict[str, Any]):
    from openai import OpenAI

    return OpenAI(base_url=dev_info["base_url"], api_key=dev_info["api_key"], max_retries=0, timeout=30)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev_info: dict[str, Any]) -> Path:
    """A project directory whose .pennyworth/dev.json points at the test stack; config in tmp."""
    (tmp_path / ".pennyworth").mkdir()
    (tmp_path / ".pennyworth" / "dev.json").write_text(json.dumps(dev_info))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PENNYWORTH_CONFIG_DIR", str(tmp_path / "config"))
    for variable in ("PENNYWORTH_PROFILE", "PENNYWORTH_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path
