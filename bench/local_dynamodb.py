"""Does the local DynamoDB (``make dev``'s moto server) stay flat over thousands of requests?

Starts ``local/moto_server.py`` on a free port and drives it, over HTTP, with
what a chat request does to DynamoDB: the key's ``GetItem``, then the real
``Meter`` (admission, billing) — and, for the stream design, the local
aggregator (``local/stream_aggregator.py``) draining the stream every 25
requests, as ``make dev``'s fourth process does. Every ``--every`` requests it
records the server's resident memory (``/proc/<pid>/status``, Linux) and the
median time per request of that stretch.

Runs, one after the other (each on a fresh server):

* ``moto as released, today's design`` — the ledger of da4004c on moto without
  ``local/moto_patches.py``: the 7.5 MB/request growth of issue 12 (stopped
  at ``--before-requests``, or earlier if the server passes 3 GB);
* ``patched moto, today's design`` — the same requests, moto patched;
* ``patched moto, stream design`` — the request path ``make dev`` runs now, ``--requests`` long;
* the same with ``--state`` (``make dev``'s default: moto's state saved every second).

Prints JSON: per run, the samples and the growth per 1,000 requests of memory
(MB) and of time per request (ms), fitted over the second half of the run.

Usage: ``python bench/local_dynamodb.py [--requests 10000] [--before-requests 600]``
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/ first on sys.path would shadow libraries (bench/responses.py is not the `responses` moto imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_name, "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

TABLES = {
    "KeysTable": "pennyworth-local-keys",
    "UsageTable": "pennyworth-local-usage",
    "AuditTable": "pennyworth-local-audit",
    "CatalogTable": "pennyworth-local-catalog",
}
MEMORY_CEILING_MB = 3000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_server(patched: bool, *, state: bool = False) -> tuple[subprocess.Popen, str]:
    from local.devstack import Ports, _wait_http

    port = Ports.free().aws
    command = [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    folder = Path(tempfile.mkdtemp(prefix="pennyworth-moto-"))
    if state:  # make dev saves moto's state every second a request changed it (local/moto_state.py)
        command += ["--state", str(folder / "moto-state.pickle")]
    log = open(folder / "moto.log", "wb")  # noqa: SIM115 - lives with the server
    process = subprocess.Popen(
        [*command] + ([] if patched else ["--no-patches"]), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/moto-api/", process, "moto server")
    return process, url


def drive(label: str, *, patched: bool, design: str, requests: int, every: int, state: bool = False) -> dict[str, Any]:
    import boto3

    from chalicelib.catalog import load_catalog
    from chalicelib.keys.store import KeyStore
    from chalicelib.settings import DEFAULT_CATALOG
    from chalicelib.shared.dynamodb import resource as dynamodb_resource
    from chalicelib.shared.usage import TokenUsage
    from local import bootstrap

    process, url = start_server(patched, state=state)
    try:
        bootstrap.create_tables(boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url), TABLES)
        resource = dynamodb_resource(region="us-east-1", endpoint_url=url, timeout_seconds=30, attempts=3)
        keys = resource.Table(TABLES["KeysTable"])
        usage = resource.Table(TABLES["UsageTable"])
        record, _ = KeyStore(keys).create(
            owner_sub="bench", monthly_budget_usd=__import__("decimal").Decimal("1000"), rpm_limit=100000
        )
        model = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro")
        if design == "today":
            from bench import baseline_v1 as today

            meter: Any = today.Meter(today.Ledger(usage))
            drain = None
        else:
            from chalicelib.accounting.ledger import Ledger
            from chalicelib.accounting.metering import Meter
            from local.stream_aggregator import StreamDrain

            meter = Meter(Ledger(usage, deadline_seconds=30))
            drain = StreamDrain(usage)
        samples = []
        window: list[float] = []
        started = time.monotonic()
        for n in range(1, requests + 1):
            begun = time.perf_counter()
            keys.get_item(Key={"key_id": record.key_id})
            ticket = meter.admit(record, model, input_tokens=500, max_output_tokens=200)
            meter.settle(
                ticket,
                request_id=f"req-{n}",
                operation="chat",
                usage=TokenUsage(input_tokens=400, output_tokens=150),
                latency_ms=1,
                status="ok",
            )
            window.append((time.perf_counter() - begun) * 1000)
            if drain is not None and n % 25 == 0:
                drain.drain()
            if n % every == 0:
                memory = rss_mb(process.pid)
                samples.append(
                    {
                        "requests": n,
                        "rss_mb": round(memory, 1),
                        "ms_per_request_p50": round(statistics.median(window), 1),
                    }
                )
                window = []
                if memory > MEMORY_CEILING_MB:
                    break
        if drain is not None:
            drain.drain()
        return {
            "run": label,
            "requests": samples[-1]["requests"] if samples else 0,
            "seconds": round(time.monotonic() - started, 1),
            "rss_mb_first": samples[0]["rss_mb"] if samples else None,
            "rss_mb_last": samples[-1]["rss_mb"] if samples else None,
            "rss_mb_per_1000_requests": _slope(samples, "rss_mb"),
            "ms_per_request_growth_per_1000_requests": _slope(samples, "ms_per_request_p50"),
            "samples": samples,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _slope(samples: list[dict[str, Any]], field: str) -> float | None:
    """Least-squares growth per 1,000 requests over the second half of the run (past the warm-up)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return None
    xs = [s["requests"] / 1000 for s in half]
    ys = [s[field] for s in half]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return round(sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread, 2) if spread else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from chalicelib.observability import logger

    logger._logger.handlers = []  # the aggregator's log lines would interleave with the JSON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests of the patched runs")
    parser.add_argument("--before-requests", type=int, default=600, help="requests of the unpatched run")
    parser.add_argument("--every", type=int, default=100, help="sample every N requests")
    args = parser.parse_args(argv)
    report = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": [
            drive(
                "moto as released, today's design",
                patched=False,
                design="today",
                requests=args.before_requests,
                every=args.every,
            ),
            drive(
                "patched moto, today's design",
                patched=True,
                design="today",
                requests=args.before_requests,
                every=args.every,
            ),
            drive(
                "patched moto, stream design (make dev)",
                patched=True,
                design="stream",
                requests=args.requests,
                every=args.every * 5,
            ),
        ],
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
