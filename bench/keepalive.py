"""Keep-alive reuse through the local servers: no Nagle + delayed-ACK stall (issue 9).

A server that sends its headers and its body in two writes, without ``TCP_NODELAY``, holds the
second write until the client ACKs the first; a client that reuses the connection soon after its
previous request delays that ACK by up to ~40 ms. So a request on a reused keep-alive connection
took ~44 ms instead of ~3 ms when it followed the previous one within 0–30 ms.

This benchmark sends requests over one keep-alive connection, with a gap of 0, 10, 30 and 100 ms
between them, to each server ``make dev`` runs (the local front and, behind it, chalice local;
moto; the Bedrock emulator), and, as a control in the same run, to two small stdlib servers that
answer in two writes: one with Nagle's algorithm (the stall the benchmark must be able to see)
and one without. Prints JSON: per server and gap, the median and 90th percentile of a request's
time, in ms.

Usage: ``python bench/keepalive.py [--requests 30]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# bench/ first on sys.path would shadow libraries (bench/responses.py is not the `responses` moto imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

GAPS_MS = (0, 10, 30, 100)

Request = tuple[str, str, bytes | None, dict[str, str]]


def control_server(*, nagle: bool) -> ThreadingHTTPServer:
    """A stdlib server answering in two writes (headers, then body), with or without Nagle."""

    class TwoWrites(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = not nagle

        def do_GET(self) -> None:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()  # the first write
            self.wfile.write(body)  # the second

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TwoWrites)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def timings(url: str, request: Request, *, gap_ms: int, count: int) -> list[float]:
    """Milliseconds per request over one reused connection, ``gap_ms`` apart (the first, a warm-up, not counted)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    method, path, body, headers = request
    spent = []
    try:
        for n in range(count + 1):
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status >= 400:
                raise RuntimeError(f"{url}{path}: HTTP {response.status}")
            if n:
                spent.append((time.perf_counter() - started) * 1000)
            time.sleep(gap_ms / 1000)
    finally:
        connection.close()
    return spent


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2), "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1], 2)}


def measure(targets: dict[str, tuple[str, Request]], count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for gap in GAPS_MS:  # servers alternate within each gap: they share the machine's conditions
        for name, (url, request) in targets.items():
            results.setdefault(name, {})[f"gap_{gap}ms"] = summary(timings(url, request, gap_ms=gap, count=count))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per server and gap")
    args = parser.parse_args()

    from local.devstack import DevStack, Ports

    with_nagle, without_nagle = control_server(nagle=True), control_server(nagle=False)
    with DevStack(ports=Ports.free(), log_dir=Path(tempfile.mkdtemp(prefix="pennyworth-bench-"))) as stack:
        warm(stack)
        targets: dict[str, tuple[str, Request]] = {
            "control: two writes, Nagle on": (_url(with_nagle), ("GET", "/", None, {})),
            "control: two writes, TCP_NODELAY": (_url(without_nagle), ("GET", "/", None, {})),
            "local front → chalice local (GET /health)": (stack.api_url, ("GET", "/health", None, {})),
            "moto server (DynamoDB ListTables)": (stack.aws_url, _list_tables()),
            "Bedrock emulator (GET /ping)": (stack.bedrock_url, ("GET", "/ping", None, {})),
        }
        results = measure(targets, args.requests)
    with_nagle.shutdown()
    without_nagle.shutdown()
    print(json.dumps({"requests_per_gap": args.requests, "gaps_ms": list(GAPS_MS), "servers": results}, indent=2))
    return 0


def warm(stack: Any) -> None:
    """One chat completion through the front: the front imports LiteLLM in a background thread at
    start (seconds of CPU with the GIL held), which would be measured as the servers' latency."""
    import boto3

    from chalicelib.keys.store import KeyStore
    from local.devstack import TABLE_NAMES

    os.environ.update(stack.env)
    table = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=stack.aws_url)
    _, key = KeyStore(table.Table(TABLE_NAMES["KeysTable"])).create(owner_sub="bench", name="keep-alive bench")
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    timings(stack.api_url, ("POST", "/v1/chat/completions", body, headers), gap_ms=0, count=1)


def _url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _list_tables() -> Request:
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        # moto reads the region from the credential scope; the signature itself is not checked.
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host, Signature=0",
    }
    return ("POST", "/", b"{}", headers)


if __name__ == "__main__":
    sys.exit(main())
