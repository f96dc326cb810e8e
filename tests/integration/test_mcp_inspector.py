"""The README's MCP Inspector command, with the pinned Inspector (tests/clients/mcp-inspector), against the stack.

On Node.js 20 an unpinned ``npx @modelcontextprotocol/inspector`` resolved 0.15.0,
which refuses HTTP servers: the README pins a version, and this runs exactly its
command (``npx <package>@<version>`` replaced by the installed binary of that
version, the address and key by the stack's). Installed by ``make clients``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "tests" / "clients" / "mcp-inspector"
PACKAGE = "@modelcontextprotocol/inspector"
PINNED = json.loads((CLIENT_DIR / "package.json").read_text())["dependencies"][PACKAGE]
INSPECTOR = CLIENT_DIR / "node_modules" / ".bin" / "mcp-inspector"
README = (ROOT / "README.md").read_text()


def readme_command() -> list[str]:
    """The README's ``npx @modelcontextprotocol/inspector@… --cli …`` command, as words."""
    lines = README.split(f"\nnpx {PACKAGE}@", 1)[1].split("\n```", 1)[0]
    return shlex.split(f"npx {PACKAGE}@{lines.replace(chr(92) + chr(10), ' ')}")


@pytest.fixture(scope="module")
def inspector() -> Path:
    if not INSPECTOR.exists():
        message = f"The MCP Inspector {PINNED} is not installed: run `make clients` (npm ci in {CLIENT_DIR})."
        if os.environ.get("PENNYWORTH_REQUIRE_CLIENTS"):
            pytest.fail(message)
        pytest.skip(message)
    return INSPECTOR


def test_the_readme_pins_the_tested_inspector() -> None:
    assert readme_command()[:2] == ["npx", f"{PACKAGE}@{PINNED}"]
    installed = CLIENT_DIR / "node_modules" / PACKAGE / "package.json"
    if installed.exists():
        assert json.loads(installed.read_text())["version"] == PINNED


def test_the_readme_command_lists_the_tools(inspector: Path, dev_info: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN the README's command, pointed at this stack with its key
    root = dev_info["mcp_url"].removesuffix("/mcp")
    words = [str(inspector)] + [
        word.replace("http://127.0.0.1:8000", root).replace("$PENNYWORTH_KEY", dev_info["api_key"])
        for word in readme_command()[2:]
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    # WHEN it runs
    result = subprocess.run(words, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    # THEN it lists the gateway's tools
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    tools = [tool["name"] for tool in json.loads(result.stdout)["tools"]]
    assert tools == ["chat", "list_models", "embed", "get_usage", "count_tokens"]
