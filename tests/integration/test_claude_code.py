"""The real Claude Code (``claude -p``, pinned in tests/clients/claude-code) against the running stack.

Claude Code runs headless with the README's "Use with Claude Code" variables
(read from that section; only the gateway's address and the key changed), a
fresh HOME, and every proxy variable pointing at a loopback "proxy" that
refuses and records whatever Claude Code tries to reach beyond loopback:
nothing leaves the machine, and the tests check nothing tried. The client is
installed by ``make clients`` (and by .ci/run, which sets
PENNYWORTH_REQUIRE_CLIENTS=1 so a missing client fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.accounting.ledger import Ledger
from tests.integration import stack_data
from tests.integration.stack_data import table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "tests" / "clients" / "claude-code"
CLAUDE = CLIENT_DIR / "node_modules" / ".bin" / "claude"
PINNED = json.loads((CLIENT_DIR / "package.json").read_text())["dependencies"]["@anthropic-ai/claude-code"]
README_SECTION = (ROOT / "README.md").read_text().split("\n## Use with Claude Code\n", 1)[1].split("\n## ", 1)[0]


def readme_environment() -> dict[str, str]:
    """The variables the README exports, as written (comments dropped)."""
    [script] = re.findall(r"```bash\n(.*?)```", README_SECTION, flags=re.S)
    variables = {}
    for line in script.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").split("#", 1)[0].strip().partition("=")
            variables[name] = value
    assert variables["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8000", variables
    return variables


@pytest.fixture(scope="module")
def claude() -> Path:
    if not CLAUDE.exists():
        message = f"Claude Code {PINNED} is not installed: run `make clients` (npm ci in {CLIENT_DIR})."
        if os.environ.get("PENNYWORTH_REQUIRE_CLIENTS"):
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run([CLAUDE, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith(PINNED), version.stdout
    return CLAUDE


def new_key(stack: Any, **limits: Any) -> tuple[str, str]:
    return stack_data.new_key(stack, "claude-code", name="cc", **limits)


class _Refuser(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        head = self.request.recv(4096)
        self.server.attempts.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))  # type: ignore[attr-defined]
        self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def refusing_proxy() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP proxy that refuses and records every request: nothing reaches the internet."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuser)
    server.daemon_threads = True
    server.attempts = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.attempts  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def run_claude(
    claude: Path,
    stack: Any,
    key: str,
    tmp_path: Path,
    proxy: str,
    *args: str,
    default_model: bool = False,
    fail_fast: bool = True,
) -> tuple[dict[str, Any], float]:
    """``claude -p …`` with the README's variables; its JSON result and the wall time."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    variables = {**readme_environment(), "ANTHROPIC_BASE_URL": stack.api_url, "ANTHROPIC_AUTH_TOKEN": key}
    if default_model:
        variables = {k: v for k, v in variables.items() if not k.startswith(("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_"))}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        **({"CLAUDE_CODE_MAX_RETRIES": "1"} if fail_fast else {}),
        **variables,
        **{name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    started = time.monotonic()
    done = subprocess.run(
        [str(claude), "-p", *args, "--output-format", "json", "--no-session-persistence"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout), elapsed


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "claude-opus-5-5"], ids=["readme-model", "default-model"])
def test_claude_code_answers_through_the_gateway_billed_to_the_key(
    claude: Path, stack: Any, tmp_path: Path, refusing_proxy: tuple[str, list[str]], model: str
) -> None:
    # GIVEN a fresh key; Claude Code's full request (system prompt, thinking, cache points), offered no tools
    key_id, plaintext = new_key(stack)
    # WHEN it answers a prompt (the default model is claude-opus-5-5: adaptive thinking, a system message)
    proxy, attempts = refusing_proxy
    prompt = "Reply with the word pong"
    result, _ = run_claude(
        claude, stack, plaintext, tmp_path, proxy, prompt, "--tools", "", default_model=model == "claude-opus-5-5"
    )
    # THEN the answer came through the gateway (the emulator quotes the prompt back) ...
    assert result["is_error"] is False and "pong" in result["result"], result
    # ... and one model call is in the ledger, for that key, with the usage Claude Code was told
    [entry] = stack_data.entries(stack, key_id, 1)
    assert entry["model"] == model and entry["status"] == "ok"
    assert entry["cost"] > Decimal(0)
    assert result["usage"]["output_tokens"] == entry["output_tokens"]
    assert attempts == []  # nothing tried to leave the machine


def test_claude_code_runs_a_tool_and_sends_the_signed_thinking_back(
    claude: Path, stack: Any, tmp_path: Path, refusing_proxy: tuple[str, list[str]]
) -> None:
    # GIVEN a model turn that calls Bash (the emulator obeys #emulator:tool) with thinking on
    key_id, plaintext = new_key(stack)
    prompt = "echo hello-from-pennyworth #emulator:tool=Bash"
    # WHEN Claude Code runs it (--bare: the prompt alone, so the emulator's command is the prompt's)
    proxy, attempts = refusing_proxy
    result, _ = run_claude(claude, stack, plaintext, tmp_path, proxy, prompt, "--bare", "--allowedTools", "Bash")
    # THEN it ran the tool, sent the result and its signed thinking back (the emulator checks the
    # signature, as Bedrock does), and the model answered from the tool's output
    assert result["is_error"] is False and result["num_turns"] == 2, result
    assert "hello-from-pennyworth" in result["result"]
    entries = stack_data.entries(stack, key_id, 2)
    assert len(entries) == 2 and all(e["status"] == "ok" for e in entries)
    assert attempts == []


def test_a_spent_budget_stops_claude_code_at_once(
    claude: Path, stack: Any, tmp_path: Path, refusing_proxy: tuple[str, list[str]]
) -> None:
    key_id, plaintext = new_key(stack, monthly_budget_usd=Decimal("0.0000001"))
    # Claude Code's own retry policy (about ten, with backoff): only x-should-retry stops it
    result, elapsed = run_claude(claude, stack, plaintext, tmp_path, refusing_proxy[0], "hi", "--bare", fail_fast=False)
    assert result["is_error"] is True and "budget" in result["result"], result
    assert elapsed < 15  # x-should-retry: false, not ten retries with backoff
    assert Ledger(table(stack, "UsageTable")).entries_for_key(key_id) == []


def test_claude_code_uses_a_model_added_at_run_time(
    claude: Path, stack: Any, tmp_path: Path, refusing_proxy: tuple[str, list[str]]
) -> None:
    from chalicelib.catalog import CatalogStore, Rules
    from chalicelib.catalog.entry import new_document
    from chalicelib.catalog.prices import bundled_price_map

    # GIVEN a model the seed catalog does not have, added while the stack runs (as the admin API stores it)
    store = CatalogStore(table(stack, "CatalogTable"))
    stored = store.read()
    if "nova-pro-cc" not in stored.live():
        document = new_document(
            {"alias": "nova-pro-cc", "provider": "bedrock", "model_id": "us.amazon.nova-pro-v1:0"},
            rules=Rules(region="us-east-1"), price_map=bundled_price_map, now="2026-01-01T00:00:00Z", actor="test",
        )  # fmt: skip
        store.put({**document, "position": 1000}, read_version=stored.version, previous=None)
    key_id, plaintext = new_key(stack)
    proxy, attempts = refusing_proxy
    # WHEN Claude Code is pointed at it
    try:
        options = ("--tools", "", "--model", "nova-pro-cc")
        result, _ = run_claude(claude, stack, plaintext, tmp_path, proxy, "Reply with the word pong", *options)
    finally:
        # The stack is shared by the session: the model is removed (as the admin API removes one) so a
        # later test may add its Bedrock model under another alias.
        stored = store.read()
        current = stored.live().get("nova-pro-cc")
        if current is not None:
            store.put({**current, "removed_at": "2026-01-01T00:00:01Z", "enabled": False},
                      read_version=stored.version, previous=current)  # fmt: skip
    # THEN it answers through the gateway, billed to the key under that model
    assert result["is_error"] is False and "pong" in result["result"], result
    [entry] = stack_data.entries(stack, key_id, 1)
    assert entry["model"] == "nova-pro-cc" and entry["served_by"] == "bedrock/converse/us.amazon.nova-pro-v1:0"
    assert attempts == []
