"""The Messages API beside chat completions through the local stack, and the real Claude Code's wall time.

Both routes stream the same paced answer from the same emulator, alternating
A/B so machine drift hits both: the difference is the Anthropic adapter's own
cost (parsing, rendering, the extra catalog lookup). Then ``claude -p``
(pinned in tests/clients/claude-code; skipped when not installed) answers a
prompt through the gateway, offline, N times: what a Claude Code user waits.

Usage: ``python bench/messages.py [--requests N] [--runs N]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = ROOT / "tests" / "clients" / "claude-code" / "node_modules" / ".bin" / "claude"
PROMPT = "Stream it #emulator:tokens=30 #emulator:chunk_delay=0.02"


def first_and_total(client, path: str, headers: dict[str, str], body: dict) -> tuple[float, float]:
    """Seconds to the first text piece and to the end of the stream."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", path, headers=headers, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and ('"text_delta"' in line or '"content":"' in line and '"content":""' not in line):
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="streams per route")
    parser.add_argument("--runs", type=int, default=5, help="claude -p runs")
    args = parser.parse_args()

    import httpx

    from local.devstack import DevStack, Ports

    with tempfile.TemporaryDirectory() as logs, DevStack(ports=Ports.free(), log_dir=Path(logs)) as stack:
        key = stack.info["api_key"]
        routes = {
            "messages": (
                "/v1/messages",
                {"x-api-key": key, "anthropic-version": "2023-06-01"},
                {
                    "model": "nova-micro",
                    "max_tokens": 200,
                    "stream": True,
                    "messages": [{"role": "user", "content": PROMPT}],
                },
            ),
            "chat_completions": (
                "/v1/chat/completions",
                {"authorization": f"Bearer {key}"},
                {"model": "nova-micro", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
            ),
        }
        samples: dict[str, dict[str, list[float]]] = {name: {"first": [], "total": []} for name in routes}
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            for path, headers, body in routes.values():
                first_and_total(client, path, headers, body)  # warm up
            for _ in range(args.requests):
                for name, (path, headers, body) in routes.items():
                    first, total = first_and_total(client, path, headers, body)
                    samples[name]["first"].append(first)
                    samples[name]["total"].append(total)
        result: dict = {
            "requests_per_route": args.requests,
            "first_piece": {name: ms(s["first"]) for name, s in samples.items()},
            "whole_stream": {name: ms(s["total"]) for name, s in samples.items()},
        }
        result["messages_minus_chat_first_piece_p50_ms"] = round(
            result["first_piece"]["messages"]["p50_ms"] - result["first_piece"]["chat_completions"]["p50_ms"], 1
        )
        if CLAUDE.exists():
            result["claude_code"] = claude_runs(stack, key, args.runs)
        else:
            result["claude_code"] = "not installed (make clients)"
    print(json.dumps(result, indent=2))
    return 0


def claude_runs(stack, key: str, runs: int) -> dict:
    """Wall time of ``claude -p`` answering through the gateway (claude-haiku-4-5, Claude Code's full request)."""
    times = []
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "ANTHROPIC_BASE_URL": stack.api_url,
            "ANTHROPIC_AUTH_TOKEN": key,
            "ANTHROPIC_MODEL": "claude-haiku-4-5",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        command = [str(CLAUDE), "-p", "Reply with the word pong", "--tools", "", "--no-session-persistence"]
        for _ in range(runs + 1):
            started = time.perf_counter()
            subprocess.run(
                command, env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120
            )
            times.append(time.perf_counter() - started)
    return {"runs": runs, "wall": ms(times[1:]), "first_run_ms": round(times[0] * 1000, 1)}


if __name__ == "__main__":
    sys.exit(main())
