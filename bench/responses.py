"""The Responses API beside chat completions through the local stack, and the real Codex through it.

Both APIs stream the same paced answer from the same Bedrock emulator, through
the same front, key and ledger, alternating A/B in one run so drift hits both:

* **chat**      – ``/v1/chat/completions`` (SSE), read as raw lines;
* **responses** – ``/v1/responses`` (SSE), read as raw lines.

Reported per API: time to the first text piece, to the last, and total (the end
of the stream, after billing), streamed and whole. The difference is what the
Responses adapter costs over the chat adapter (more events per piece, the
final ``Response`` object). Then, if the pinned Codex is installed (``make
clients``), the wall time of ``codex exec`` through the gateway: a plain answer,
and one tool call (two model calls).

Usage: ``python bench/responses.py [--requests N] [--pieces N] [--delay S] [--codex-runs N]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CODEX = ROOT / "tests" / "clients" / "codex" / "node_modules" / ".bin" / "codex"
CODEX_CONFIG = """model = "claude-haiku-4-5"
model_provider = "pennyworth"
check_for_update_on_startup = false
include_environment_context = false
[model_providers.pennyworth]
name = "pennyworth"
base_url = "{api}/v1"
env_key = "PENNYWORTH_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
[features]
plugins = false
goals = false
[agents]
enabled = false
"""


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def stream(client, api: str, key: str, path: str, body: dict) -> tuple[float, float, float, int]:
    """(first text piece, last piece, end of stream, pieces) in seconds, from raw SSE lines."""
    marker = '"content":"' if path.endswith("completions") else '"type":"response.output_text.delta"'
    started = time.perf_counter()
    first, last, pieces = None, 0.0, 0
    with client.stream("POST", f"{api}{path}", json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and marker in line and '"content":""' not in line:
                pieces += 1
                last = time.perf_counter() - started
                first = first if first is not None else last
    return first or 0.0, last, time.perf_counter() - started, pieces


def whole(client, api: str, key: str, path: str, body: dict) -> float:
    started = time.perf_counter()
    response = client.post(f"{api}{path}", json=body, headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return time.perf_counter() - started


def png() -> bytes:
    """A valid 1x1 PNG (for Codex's view_image tool)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def codex_runs(api: str, key: str, runs: int) -> dict[str, object]:
    """Wall time of ``codex exec`` through the gateway (skipped when the client is not installed)."""
    if not CODEX.exists():
        return {"skipped": "Codex is not installed (make clients)"}
    work = Path(tempfile.mkdtemp(prefix="pennyworth-codex-bench-"))
    (work / "codex-home").mkdir()
    (work / "codex-home" / "config.toml").write_text(CODEX_CONFIG.format(api=api))
    (work / "home").mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(work / "home"),
        "CODEX_HOME": str(work / "codex-home"),
        "PENNYWORTH_API_KEY": key,
        "HTTPS_PROXY": "http://127.0.0.1:9",  # nothing leaves loopback (the config sends nothing anyway)
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    (work / "pixel.png").write_bytes(png())
    results: dict[str, list[float]] = {"plain": [], "one_tool_call": []}
    for _ in range(runs):
        for name, prompt in (
            ("plain", "Reply with the word pong"),
            ("one_tool_call", "pixel.png #emulator:tool=view_image"),
        ):
            started = time.perf_counter()
            subprocess.run(
                [str(CODEX), "exec", "--ephemeral", "--skip-git-repo-check", prompt],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=True,
                timeout=120,
            )
            results[name].append(time.perf_counter() - started)
    return {"runs": runs, **{name: summary(samples) for name, samples in results.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="measured requests per API and mode")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pieces", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.02, help="emulator pause between stream events (s)")
    parser.add_argument("--codex-runs", type=int, default=5)
    args = parser.parse_args()

    import boto3
    import httpx

    from chalicelib.keys.store import KeyStore
    from local.devstack import TABLE_NAMES, DevStack, Ports

    text = f"Stream it #emulator:tokens={args.pieces * 3} #emulator:chunk_delay={args.delay}"
    bodies = {
        "chat": ("/v1/chat/completions", {"model": "nova-micro", "messages": [{"role": "user", "content": text}]}),
        "responses": ("/v1/responses", {"model": "nova-micro", "input": text}),
    }
    with DevStack(ports=Ports.free(), log_dir=Path(tempfile.mkdtemp(prefix="pennyworth-bench-"))) as stack:
        os.environ.update(stack.env)
        table = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=stack.aws_url).Table(
            TABLE_NAMES["KeysTable"]
        )
        _, key = KeyStore(table).create(owner_sub="bench", name="responses bench")
        samples = {name: {"first": [], "last": [], "end": [], "whole": []} for name in bodies}
        with httpx.Client(timeout=120) as client:
            for n in range(args.warmup + args.requests):
                for name in ("chat", "responses") if n % 2 == 0 else ("responses", "chat"):
                    path, body = bodies[name]
                    first, last, end, pieces = stream(client, stack.api_url, key, path, {**body, "stream": True})
                    assert pieces == args.pieces, (name, pieces)
                    seconds = whole(client, stack.api_url, key, path, body)
                    if n >= args.warmup:
                        for field, value in (("first", first), ("last", last), ("end", end), ("whole", seconds)):
                            samples[name][field].append(value)
        codex = codex_runs(stack.api_url, key, args.codex_runs)
    report = {
        "benchmark": "responses",
        "requests_per_api": args.requests,
        "pieces_per_stream": args.pieces,
        **{
            name: {
                "stream_first_piece": summary(values["first"]),
                "stream_last_piece": summary(values["last"]),
                "stream_end": summary(values["end"]),
                "whole_answer": summary(values["whole"]),
            }
            for name, values in samples.items()
        },
        "responses_minus_chat_p50_ms": {
            field: round(
                (statistics.median(samples["responses"][field]) - statistics.median(samples["chat"][field])) * 1000, 1
            )
            for field in ("first", "last", "end", "whole")
        },
        "codex_exec": codex,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
