"""Streaming through the local stack beside a direct LiteLLM stream to the same emulator.

Both paths stream the same paced answer from the same Bedrock emulator (a
separate process) in the same run, alternating A/B so machine drift hits both:

* **direct**  – ``litellm.completion(stream=True)`` to the emulator, as a bare LiteLLM user would;
* **gateway** – an HTTP client reading ``/v1/chat/completions`` (SSE) from ``make dev``'s
  front, which runs the same streaming handler as the Lambda function: key
  lookup and reservation against moto server, LiteLLM, rendering, billing.

Reported per path: time to the first content piece (what a chat UI waits for),
and total time against the emulator's pacing (``chunk_delay`` × pauses). Then
one long stream (thousands of pieces) through the gateway while the front's
resident memory is sampled: it must stay flat, since no chunk is kept.

Usage: ``python bench/streaming.py [--requests N] [--pieces N] [--delay S]``; prints JSON.
Goals (issue 9): ≤ 50 ms added to the first piece (p50), total within 5% of the pacing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

#: The emulator streams three tokens per piece.
TOKENS_PER_PIECE = 3


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50) * 1000, 1),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
    }


def prompt(pieces: int, delay: float) -> str:
    return f"Stream it #emulator:tokens={pieces * TOKENS_PER_PIECE} #emulator:chunk_delay={delay}"


def direct_stream(emulator_url: str, text: str) -> tuple[float, float, float, int]:
    """(seconds to the first content piece, to the last, total seconds, pieces) for a bare LiteLLM stream."""
    from chalicelib.gateway import load_litellm

    litellm = load_litellm()
    started = time.perf_counter()
    first, last, pieces = None, 0.0, 0
    for chunk in litellm.completion(
        model="bedrock/converse/us.amazon.nova-micro-v1:0",
        messages=[{"role": "user", "content": text}],
        stream=True,
        aws_bedrock_runtime_endpoint=emulator_url,
        aws_region_name="us-east-1",
        num_retries=0,
        timeout=120,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            last = time.perf_counter() - started
            first = first if first is not None else last
    return first or 0.0, last, time.perf_counter() - started, pieces


def gateway_stream(client, api_url: str, key: str, text: str) -> tuple[float, float, float, int]:
    """The same through the gateway's front, read as raw SSE lines."""
    started = time.perf_counter()
    first, last, pieces = None, 0.0, 0
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": text}], "stream": True}
    with client.stream(
        "POST", f"{api_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                pieces += 1
                last = time.perf_counter() - started
                first = first if first is not None else last
    return first or 0.0, last, time.perf_counter() - started, pieces


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def long_stream_memory(client, stack, key: str, pieces: int) -> dict[str, object]:
    """Stream ``pieces`` pieces through the gateway, sampling the front's RSS every 100 ms."""
    pid = stack._processes["api"].pid
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss_kib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    before = rss_kib(pid)
    sampler.start()
    _, _, seconds, received = gateway_stream(client, stack.api_url, key, prompt(pieces, 0.002))
    done.set()
    sampler.join()
    after = rss_kib(pid)
    tenth = max(1, len(samples) // 10)
    early, late = statistics.fmean(samples[:tenth]), statistics.fmean(samples[-tenth:])
    return {
        "pieces": received,
        "seconds": round(seconds, 2),
        "front_rss_mib": {
            "before": round(before / 1024, 1),
            "first_tenth_mean": round(early / 1024, 1),
            "last_tenth_mean": round(late / 1024, 1),
            "peak": round(max(samples) / 1024, 1),
            "after": round(after / 1024, 1),
        },
        "growth_mib_over_stream": round((late - early) / 1024, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="measured streams per path")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured streams per path first")
    parser.add_argument("--pieces", type=int, default=40, help="pieces per measured stream")
    parser.add_argument("--delay", type=float, default=0.1, help="emulator pause between stream events (s)")
    parser.add_argument("--long-pieces", type=int, default=3000, help="pieces of the memory stream")
    args = parser.parse_args()

    import httpx

    from chalicelib.keys.store import KeyStore
    from local.devstack import TABLE_NAMES, DevStack, Ports

    with DevStack(ports=Ports.free(), log_dir=Path(tempfile.mkdtemp(prefix="pennyworth-bench-"))) as stack:
        os.environ.update(stack.env)
        import boto3

        table = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=stack.aws_url).Table(
            TABLE_NAMES["KeysTable"]
        )
        _, key = KeyStore(table).create(owner_sub="bench", name="streaming bench")
        text = prompt(args.pieces, args.delay)
        # The emulator pauses between every event: messageStart, the pieces, block stop, stop, metadata.
        pacing = (args.pieces + 3) * args.delay
        results: dict[str, dict[str, list[float]]] = {
            name: {"first": [], "last": [], "total": []} for name in ("direct", "gateway")
        }
        with httpx.Client(timeout=120) as client:
            for n in range(args.warmup + args.requests):
                for name in ("direct", "gateway") if n % 2 == 0 else ("gateway", "direct"):
                    if name == "direct":
                        first, last, total, pieces = direct_stream(stack.bedrock_url, text)
                    else:
                        first, last, total, pieces = gateway_stream(client, stack.api_url, key, text)
                    assert pieces == args.pieces, (name, pieces)
                    if n >= args.warmup:
                        results[name]["first"].append(first)
                        results[name]["last"].append(last)
                        results[name]["total"].append(total)
            memory = long_stream_memory(client, stack, key, args.long_pieces)
    direct, gateway = results["direct"], results["gateway"]
    added_first = [g - d for g, d in zip(gateway["first"], direct["first"], strict=True)]
    report = {
        "benchmark": "streaming",
        "requests_per_path": args.requests,
        "pieces_per_stream": args.pieces,
        "emulator_pacing_s": round(pacing, 3),
        "direct": {
            "first_piece": summary(direct["first"]),
            "last_piece": summary(direct["last"]),
            "total": summary(direct["total"]),
        },
        "gateway": {
            "first_piece": summary(gateway["first"]),
            "last_piece": summary(gateway["last"]),
            "total": summary(gateway["total"]),
            # After the last piece: billing (one ledger write to moto server, slow next to
            # DynamoDB), the usage chunk and [DONE].
            "after_last_piece": summary([t - last for t, last in zip(gateway["total"], gateway["last"], strict=True)]),
        },
        "added_first_piece_ms": {
            "p50_difference": round((percentile(gateway["first"], 0.5) - percentile(direct["first"], 0.5)) * 1000, 1),
            "paired_median": round(statistics.median(added_first) * 1000, 1),
            "goal_ms": 50,
        },
        "total_over_pacing": {
            "gateway_p50": round(percentile(gateway["total"], 0.5) / pacing, 3),
            "direct_p50": round(percentile(direct["total"], 0.5) / pacing, 3),
            "gateway_last_piece_p50": round(percentile(gateway["last"], 0.5) / pacing, 3),
            "goal": 1.05,
        },
        "long_stream": memory,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
