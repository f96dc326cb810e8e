"""The live catalog beside the file catalog: what a request pays for a catalog kept in DynamoDB.

Side by side, in one run:

* **per request, warm**: resolving a model name as a request does it. File catalog:
  ``Catalog.resolve``. Live catalog: ``LiveCatalog.prefetch()`` (called as a request arrives)
  then ``LiveCatalog()().resolve`` on a snapshot within its freshness bound. Alternated in
  blocks so machine drift hits both alike. Goal: under 0.2 ms added per request.
* **round trips on the request path**: 600 requests, one every 0.5 s of a simulated clock
  (five minutes), against the catalog table (moto, in process). Every DynamoDB call is counted
  and split into those a request waited for and those made in the background. Goal: none
  waited for after the cold start.
* **after an idle spell**: a request 60 s after the last one needs a fresh catalog. With the
  refresh started as it arrives (``prefetch``) its version read runs beside the API key's
  ``GetItem``; the wall time of "key lookup, then resolve" is compared with and without it.
  moto answers in process (its work holds the GIL), so DynamoDB's own latency is modelled
  as a wait of ``--dynamodb-latency-ms`` per call (network time, which overlaps as on AWS).
* **cold start**: the first catalog a function builds. The file catalog parses LiteLLM's
  pinned price map (about 5 MB of JSON) to price it; the live catalog reads the priced items
  (one ``GetItem``, one ``Query``: moto's in-process time here, not DynamoDB's).

Usage: ``python bench/catalog.py [--requests N] [--dynamodb-latency-ms MS]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The project, not bench/ (whose responses.py would shadow the package moto imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)

TABLES = {
    "KeysTable": "bench-keys",
    "UsageTable": "bench-usage",
    "AuditTable": "bench-audit",
    "CatalogTable": "bench-catalog",
}
NAMES = (
    "nova-micro",
    "claude-haiku-4-5-20251001",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "titan-embed-text-v2",
)


def per_call_us(call: Any, rounds: int) -> float:
    started = time.perf_counter()
    for index in range(rounds):
        call(NAMES[index % len(NAMES)])
    return (time.perf_counter() - started) / rounds * 1e6


class Counted:
    """Counts DynamoDB calls on a client, split by whether the request's own thread made them."""

    def __init__(self, client: Any) -> None:
        self.waited: list[str] = []
        self.background: list[str] = []
        self._main = threading.main_thread()
        client.meta.events.register("before-call.dynamodb.*", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        (self.waited if threading.current_thread() is self._main else self.background).append(model.name)

    def reset(self) -> None:
        self.waited.clear()
        self.background.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000, help="resolutions per path (warm)")
    parser.add_argument("--dynamodb-latency-ms", type=float, default=5.0, help="modelled network time per call")
    args = parser.parse_args()

    import boto3
    from moto import mock_aws

    from chalicelib.catalog import CatalogStore, LiveCatalog, Rules, load_catalog, seed_documents
    from chalicelib.observability import logger
    from chalicelib.settings import DEFAULT_CATALOG
    from chalicelib.shared.dynamodb import clients
    from local import bootstrap, moto_patches

    # The service's log lines (the catalog seeded, …) go to stderr: stdout carries one JSON document.
    for handler in logger._logger.handlers:  # Powertools' Logger wraps a standard logger
        if getattr(handler, "stream", None) is sys.stdout:
            handler.setStream(sys.stderr)
    moto_patches.apply()
    result: dict[str, Any] = {"benchmark": "catalog", "names": list(NAMES)}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        bootstrap.create_tables(client, TABLES, streams=False)
        table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLES["CatalogTable"])
        keys = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLES["KeysTable"])
        counted = Counted(table.meta.client)
        latency = [0.0]

        def network(**_: Any) -> None:
            if latency[0]:
                time.sleep(latency[0])

        for resource in (table, keys):
            for client in clients(resource):
                client.meta.events.register("before-send.dynamodb.*", network)

        # -- cold start ------------------------------------------------------------------------
        started = time.perf_counter()
        file_catalog = load_catalog(DEFAULT_CATALOG, region="us-east-1")
        file_cold_ms = (time.perf_counter() - started) * 1000
        store = CatalogStore(table, seed=lambda: seed_documents(DEFAULT_CATALOG, rules=Rules(region="us-east-1")))
        store.load()  # the stack's first read seeds the table (once per stack, not per function)
        clock = [0.0]
        live = LiveCatalog(version=store.version, load=store.load, monotonic=lambda: clock[0])
        counted.reset()
        started = time.perf_counter()
        live()
        live_cold_ms = (time.perf_counter() - started) * 1000
        result["cold_start_ms"] = {
            "file_catalog_with_price_map": round(file_cold_ms, 2),
            "live_catalog_read": round(live_cold_ms, 2),
            "live_catalog_dynamodb_calls": [*counted.waited, *counted.background],
        }

        # -- per request, warm ---------------------------------------------------------------------
        def live_resolve(name: str) -> Any:
            live.prefetch()
            return live().resolve(name)

        file_resolve = file_catalog.resolve
        per_call_us(file_resolve, 5_000)
        per_call_us(live_resolve, 5_000)
        blocks = 20
        samples: dict[str, list[float]] = {"file": [], "live": []}
        for _ in range(blocks):
            samples["file"].append(per_call_us(file_resolve, args.requests // blocks))
            samples["live"].append(per_call_us(live_resolve, args.requests // blocks))
        file_us, live_us = statistics.median(samples["file"]), statistics.median(samples["live"])
        result["warm_per_request_us"] = {
            "file_catalog": round(file_us, 3),
            "live_catalog": round(live_us, 3),
            "added": round(live_us - file_us, 3),
            "goal_added_ms": 0.2,
        }

        # -- round trips over five minutes of traffic ----------------------------------------------
        latency[0] = args.dynamodb_latency_ms / 1000
        counted.reset()
        spent: list[float] = []
        for _ in range(600):
            clock[0] += 0.5
            started = time.perf_counter()
            live.prefetch()
            live().resolve("nova-micro")
            spent.append((time.perf_counter() - started) * 1000)
            running = live._running
            if running is not None:
                running.result(timeout=5)  # the background read ends before the next request here
        result["five_minutes_of_traffic"] = {
            "requests": 600,
            "dynamodb_latency_modelled_ms": args.dynamodb_latency_ms,
            # The slowest are the requests that start a background read: starting a thread, and here
            # moto's in-process work on the GIL while that read runs (on AWS: the network, no GIL).
            "catalog_ms_per_request": {
                "p50": round(statistics.median(spent), 4),
                "p99": round(sorted(spent)[int(0.99 * (len(spent) - 1))], 4),
                "max": round(max(spent), 4),
            },
            "dynamodb_calls_a_request_waited_for": len(counted.waited),
            "dynamodb_calls_in_the_background": len(counted.background),
            "background_calls": {name: counted.background.count(name) for name in sorted(set(counted.background))},
        }

        # -- after an idle spell -------------------------------------------------------------------
        from chalicelib.keys.store import KeyStore

        key_store = KeyStore(keys)
        record, secret = key_store.create(owner_sub="bench")
        headers = {"Authorization": f"Bearer {secret}"}

        def idle_request(prefetch: bool) -> float:
            clock[0] += 60
            started = time.perf_counter()
            if prefetch:
                live.prefetch()
            key_store.authenticate(headers)
            live().resolve("nova-micro")
            return (time.perf_counter() - started) * 1000

        def key_only() -> float:
            started = time.perf_counter()
            key_store.authenticate(headers)
            return (time.perf_counter() - started) * 1000

        for _ in range(5):
            idle_request(True), idle_request(False), key_only()
        idle: dict[str, list[float]] = {"key_lookup_only": [], "with_prefetch": [], "without_prefetch": []}
        for _ in range(40):
            idle["key_lookup_only"].append(key_only())
            idle["with_prefetch"].append(idle_request(True))
            idle["without_prefetch"].append(idle_request(False))
        medians = {name: round(statistics.median(values), 3) for name, values in idle.items()}
        result["after_60s_idle_ms"] = {
            **medians,
            "added_with_prefetch": round(medians["with_prefetch"] - medians["key_lookup_only"], 3),
            "added_without_prefetch": round(medians["without_prefetch"] - medians["key_lookup_only"], 3),
            "dynamodb_latency_modelled_ms": args.dynamodb_latency_ms,
            "note": "each DynamoDB call: moto's in-process work (which holds the GIL, so it does not overlap "
            "here) plus the modelled network wait (which does, as against DynamoDB).",
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
