"""The real Claude Code (``claude -p``, pinned in tests/clients/claude-code) against the running stack.

Headless and offline: a fresh HOME, nonessential traffic off, and every proxy
variable pointed at a closed loopback port, so anything but the gateway
(127.0.0.1, in NO_PROXY) fails at once instead of leaving the machine. The
client is installed by ``make clients`` (and by .ci/run, which sets
PENNYWORTH_REQUIRE_CLIENTS=1 so a missing client fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.accounting.ledger import Ledger
from chalicelib.keys.store import KeyStore
from local.devstack import TABLE_NAMES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "tests" / "clients" / "claude-code"
CLAUDE = CLIENT_DIR / "node_modules" / ".bin" / "claude"
PINNED = json.loads((CLIENT_DIR / "package.json").read_text())["dependencies"]["@anthropic-ai/claude-code"]


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


def table(stack: Any, name: str) -> Any:
    dynamodb = boto3.resource(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=stack.aws_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return dynamodb.Table(TABLE_NAMES[name])


def new_key(stack: Any, **limits: Any) -> tuple[str, str]:
    record, plaintext = KeyStore(table(stack, "KeysTable")).create(owner_sub="claude-code", name="cc", **limits)
    return record.key_id, plaintext


def run_claude(
    claude: Path, stack: Any, key: str, tmp_path: Path, *args: str, model: str | None = "claude-haiku-4-5"
) -> tuple[dict[str, Any], float]:
    """``claude -p …`` as the README tells users to run it; its JSON result and the wall time."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens, every stray connection fails
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": stack.api_url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "HTTPS_PROXY": closed,
        "HTTP_PROXY": closed,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if model is not None:
        env["ANTHROPIC_MODEL"] = model
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


@pytest.mark.parametrize("model", ["claude-haiku-4-5", None], ids=["claude-haiku-4-5", "default-model"])
def test_claude_code_answers_through_the_gateway_billed_to_the_key(
    claude: Path, stack: Any, tmp_path: Path, model: str | None
) -> None:
    # GIVEN a fresh key; Claude Code's full request (system prompt, thinking, cache points), offered no tools
    key_id, plaintext = new_key(stack)
    # WHEN it answers a prompt (the default model is claude-opus-5-5: adaptive thinking, a system message)
    result, _ = run_claude(claude, stack, plaintext, tmp_path, "Reply with the word pong", "--tools", "", model=model)
    # THEN the answer came through the gateway (the emulator quotes the prompt back) ...
    assert result["is_error"] is False and "pong" in result["result"], result
    # ... and one model call is in the ledger, for that key, with the usage Claude Code was told
    [entry] = Ledger(table(stack, "UsageTable")).entries_for_key(key_id)
    assert entry["model"] == (model or "claude-opus-5-5") and entry["status"] == "ok"
    assert entry["cost"] > Decimal(0)
    assert result["usage"]["output_tokens"] == entry["output_tokens"]


def test_claude_code_runs_a_tool_and_sends_the_signed_thinking_back(claude: Path, stack: Any, tmp_path: Path) -> None:
    # GIVEN a model turn that calls Bash (the emulator obeys #emulator:tool) with thinking on
    key_id, plaintext = new_key(stack)
    prompt = "echo hello-from-pennyworth #emulator:tool=Bash"
    # WHEN Claude Code runs it (--bare: the prompt alone, so the emulator's command is the prompt's)
    result, _ = run_claude(claude, stack, plaintext, tmp_path, prompt, "--bare", "--allowedTools", "Bash")
    # THEN it ran the tool, sent the result and its signed thinking back (the emulator checks the
    # signature, as Bedrock does), and the model answered from the tool's output
    assert result["is_error"] is False and result["num_turns"] == 2, result
    assert "hello-from-pennyworth" in result["result"]
    entries = Ledger(table(stack, "UsageTable")).entries_for_key(key_id)
    assert len(entries) == 2 and all(e["status"] == "ok" for e in entries)


def test_a_spent_budget_stops_claude_code_at_once(claude: Path, stack: Any, tmp_path: Path) -> None:
    key_id, plaintext = new_key(stack, monthly_budget_usd=Decimal("0.0000001"))
    result, elapsed = run_claude(claude, stack, plaintext, tmp_path, "hi", "--bare")
    assert result["is_error"] is True and "budget" in result["result"], result
    assert elapsed < 20  # x-should-retry: false, not ten retries with backoff
    assert Ledger(table(stack, "UsageTable")).entries_for_key(key_id) == []
