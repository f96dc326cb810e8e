"""The real local stack (moto server + Bedrock emulator + chalice local), once per session."""

from __future__ import annotations

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
