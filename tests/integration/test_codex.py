"""The real Codex CLI (``codex exec``, pinned in tests/clients/codex) through the local stack, offline.

Codex runs headless with the README's "Use with Codex" configuration (only the
port changed), a fresh key, and every proxy variable pointing at a loopback
"proxy" that refuses and records whatever Codex tries to reach beyond loopback;
nothing leaves the machine. Each answer must come back through pennyworth and
be billed to the key.

The client is installed by ``.ci/run`` (``npm ci`` in tests/clients/codex). Without
it this test fails when ``PENNYWORTH_REQUIRE_CLIENTS=1`` (CI) and is skipped otherwise,
saying how to install it.
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from struct import pack

import pytest

from tests.integration import stack_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "tests" / "clients" / "codex"
CODEX = CLIENT_DIR / "node_modules" / ".bin" / "codex"
PINNED = json.loads((CLIENT_DIR / "package.json").read_text())["dependencies"]["@openai/codex"]
README_SECTION = (ROOT / "README.md").read_text().split("\n## Use with Codex\n", 1)[1].split("\n## ", 1)[0]
#: How long one ``codex exec`` may take (it needs about a second against the local stack).
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def codex() -> Path:
    """The pinned Codex binary, or a failure (CI) / skip (elsewhere) that says how to install it."""
    if not CODEX.exists():
        message = f"Codex is not installed: run `npm ci --prefix {CLIENT_DIR.relative_to(ROOT)}` (or `make clients`)"
        if os.environ.get("PENNYWORTH_REQUIRE_CLIENTS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run([str(CODEX), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.split()[-1] == PINNED, f"{version.stdout!r}: not the pinned {PINNED}"
    return CODEX


class _Refuser(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            data = self.request.recv(4096)
            if not data:
                break
            head += data
        self.server.attempts.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))  # type: ignore[attr-defined]
        self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@pytest.fixture
def refusing_proxy() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP proxy that refuses every request and records it: nothing reaches the internet."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuser)
    server.daemon_threads = True
    server.attempts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.attempts  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def workspace(stack, tmp_path: Path, refusing_proxy):
    """A fresh key, a CODEX_HOME with the README's config (pointed at this stack), a project dir, an env."""
    key_id, plaintext = stack_data.new_key(stack, "codex-user", name="codex")
    [config] = re.findall(r"```toml\n(.*?)```", README_SECTION, flags=re.S)
    assert "http://127.0.0.1:8000/v1" in config
    assert "web_search" not in config  # Codex's defaults: the web search it offers is dropped, not refused
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(config.replace("http://127.0.0.1:8000", stack.api_url))
    project = tmp_path / "project"
    project.mkdir()
    (project / "pixel.png").write_bytes(_png())
    (tmp_path / "home").mkdir()
    proxy, attempts = refusing_proxy
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "CODEX_HOME": str(codex_home),
        "TERM": "dumb",
        "PENNYWORTH_API_KEY": plaintext,
        # Anything beyond loopback goes to the refusing proxy (and is recorded), never out.
        **{name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    return {
        "env": env,
        "project": project,
        "entries": lambda count=None: stack_data.entries(stack, key_id, count),
        "attempts": attempts,
    }


def run_codex(codex: Path, workspace, prompt: str, *overrides: str) -> tuple[list[dict], float]:
    """``codex exec --json`` headless: its JSONL events and the wall time."""
    command = [str(codex), "exec", "--json", "--ephemeral", "--skip-git-repo-check"]
    # Fail fast instead of retrying with backoff (a test wants the first answer).
    retries = [f"model_providers.pennyworth.{name}=0" for name in ("request_max_retries", "stream_max_retries")]
    for setting in (*retries, *overrides):
        command += ["-c", setting]
    command.append(prompt)
    started = time.monotonic()
    result = subprocess.run(
        command,
        cwd=workspace["project"],
        env=workspace["env"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"codex exited {result.returncode}:\n{result.stderr[-3000:]}\n{result.stdout[-2000:]}"
    )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return events, elapsed


def messages_of(events: list[dict]) -> list[str]:
    return [e["item"]["text"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]


def test_codex_answers_through_pennyworth_and_is_billed_to_the_key(codex, workspace) -> None:
    events, elapsed = run_codex(codex, workspace, "Reply with the word pong")
    # The emulator quotes the last user turn back: Codex's environment context, then the prompt.
    [answer] = messages_of(events)
    assert answer.startswith('You said: "') and answer.endswith('Reply with the word pong"')
    [entry] = workspace["entries"](1)
    assert entry["model"] == "claude-haiku-4-5" and entry["status"] == "ok" and entry["cost"] > Decimal(0)
    usage = next(e["usage"] for e in events if e["type"] == "turn.completed")
    assert usage["input_tokens"] == entry["input_tokens"] + entry["cache_read_tokens"] + entry["cache_write_tokens"]
    assert usage["output_tokens"] == entry["output_tokens"]
    assert workspace["attempts"] == [], "Codex tried to reach beyond loopback with the README's config"
    print(f"\ncodex exec through the gateway: {elapsed:.2f} s wall time")


def test_codex_runs_a_tool_and_sends_its_result_back(codex, workspace) -> None:
    # The emulator calls the tool the directive names, with the prompt as its argument; Codex reads the
    # image, returns it as a function_call_output, and the model's next answer describes what came back.
    events, elapsed = run_codex(
        codex, workspace, "pixel.png #emulator:tool=view_image", "include_environment_context=false"
    )
    assert messages_of(events)[-1] == "Tool view_image returned: an image (png, 69 bytes)"
    entries = workspace["entries"](2)
    assert len(entries) == 2 and all(e["cost"] > 0 for e in entries)
    print(f"\ncodex exec with one tool call (two model calls): {elapsed:.2f} s wall time")


def test_codex_with_reasoning_keeps_claudes_thinking_across_the_tool_call(codex, workspace) -> None:
    events, _ = run_codex(
        codex,
        workspace,
        "pixel.png #emulator:tool=view_image",
        "include_environment_context=false",
        'model_reasoning_effort="low"',
        'model_reasoning_summary="auto"',
    )
    reasoning = [
        e["item"]["text"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "reasoning"
    ]
    assert reasoning and "I will call view_image" in reasoning[0]
    assert messages_of(events)[-1] == "Tool view_image returned: an image (png, 69 bytes)"
    assert len(workspace["entries"](2)) == 2
