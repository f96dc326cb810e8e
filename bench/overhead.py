"""Warm per-request overhead of the gateway over a direct ``litellm.completion`` call.

Both paths call the same Bedrock emulator (a separate process) in the same
run, alternating A/B so machine drift hits both alike:

* **direct**  – ``litellm.completion`` to the emulator, as a bare LiteLLM user would.
* **gateway** – the streaming function's handler (``chalicelib.streaming.handler.handle``,
  what our Lambda runtime loop calls for ``POST /v1/chat/completions``; no HTTP
  server in between) with an API Gateway event: key lookup, admission and the
  ledger entry against moto server, LiteLLM call, OpenAI shaping, JSON logging.

The difference is what pennyworth adds. moto server stands in for DynamoDB,
and its latency is not AWS's. So the time spent inside DynamoDB calls (on both
clients: the keys' and the ledger's) is measured separately (botocore's
before-call/after-call events) and the overhead is reported with and without it.

Usage: ``python bench/overhead.py [--requests N] [--stream]``; prints JSON.
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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first")
    parser.add_argument("--stream", action="store_true", help="measure streamed completions")
    args = parser.parse_args()

    from local.devstack import DevStack, Ports

    with DevStack(ports=Ports.free(), log_dir=Path(tempfile.mkdtemp(prefix="pennyworth-bench-"))) as stack:
        os.environ.update(stack.env)
        import litellm

        from chalicelib import wiring
        from chalicelib.observability import logger
        from chalicelib.streaming.handler import handle
        from local.front import api_gateway_event

        wiring.reset()
        litellm.suppress_debug_info = True
        # Keep logging in the measured path, but off stdout, which carries the JSON result.
        for handler in logger.handlers:
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        messages = [{"role": "user", "content": "Benchmark me, please."}]
        body = json.dumps({"model": "nova-micro", "messages": messages, "stream": args.stream}).encode()
        headers = {"Authorization": f"Bearer {stack.info['api_key']}", "Content-Type": "application/json"}
        bedrock_id = wiring.catalog().resolve("nova-micro").bedrock_model_id

        def direct() -> None:
            response = litellm.completion(
                model=f"bedrock/converse/{bedrock_id}",
                messages=messages,
                stream=args.stream,
                aws_bedrock_runtime_endpoint=stack.bedrock_url,
                aws_region_name="us-east-1",
                num_retries=0,
            )
            if args.stream:
                for _ in response:
                    pass

        storage_ms = [0.0]
        calls = threading.local()  # admission may call DynamoDB from worker threads

        def before(**_: object) -> None:
            calls.__dict__.setdefault("started", []).append(time.perf_counter())

        def after(**_: object) -> None:
            storage_ms[0] += (time.perf_counter() - calls.started.pop()) * 1000

        # Both clients: the keys table's, and the ledger's (entries, admission), which has its own.
        for resource in (wiring.dynamodb(), wiring.ledger_dynamodb()):
            resource.meta.client.meta.events.register("before-call.dynamodb.*", before)
            resource.meta.client.meta.events.register("after-call.dynamodb.*", after)

        def gateway() -> None:
            event = api_gateway_event("POST", "/v1/chat/completions", "", headers, body)
            result = handle(event, deadline=time.time() + 60)
            try:
                payload = b"".join(result.chunks)
            finally:
                result.close()
            if result.status != 200:
                raise RuntimeError(f"gateway answered {result.status}: {payload[:300]!r}")

        for _ in range(args.warmup):
            direct()
            gateway()
        timings: dict[str, list[float]] = {"direct": [], "gateway": [], "gateway_minus_dynamodb": []}
        for _ in range(args.requests):
            for name, call in (("direct", direct), ("gateway", gateway)):
                storage_ms[0] = 0.0
                started = time.perf_counter()
                call()
                elapsed = (time.perf_counter() - started) * 1000
                timings[name].append(elapsed)
                if name == "gateway":
                    timings["gateway_minus_dynamodb"].append(elapsed - storage_ms[0])
        direct_s, gateway_s = summary(timings["direct"]), summary(timings["gateway"])
        own_s = summary(timings["gateway_minus_dynamodb"])
        pairs = [g - d for g, d in zip(timings["gateway"], timings["direct"], strict=True)]
        own_pairs = [g - d for g, d in zip(timings["gateway_minus_dynamodb"], timings["direct"], strict=True)]
        result = {
            "benchmark": "gateway_overhead",
            "stream": args.stream,
            "requests_per_path": args.requests,
            "direct_litellm": direct_s,
            "gateway_handler": gateway_s,
            "added_p50_ms": round(gateway_s["p50_ms"] - direct_s["p50_ms"], 3),
            "added_p99_ms": round(gateway_s["p99_ms"] - direct_s["p99_ms"], 3),
            "paired_added_median_ms": round(statistics.median(pairs), 3),
            "ratio_p50": round(gateway_s["p50_ms"] / direct_s["p50_ms"], 3),
            "gateway_excluding_dynamodb": own_s,
            "added_excluding_dynamodb_p50_ms": round(own_s["p50_ms"] - direct_s["p50_ms"], 3),
            "paired_added_excluding_dynamodb_median_ms": round(statistics.median(own_pairs), 3),
            "goal_added_p50_ms": 10,
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
