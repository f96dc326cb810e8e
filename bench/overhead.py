"""Warm per-request overhead of the gateway over a direct ``litellm.completion`` call.

Every path calls the same Bedrock emulator (a separate process) in the same
run, taking turns request by request so machine drift hits them alike:

* **direct**  – ``litellm.completion`` to the emulator, as a bare LiteLLM user would.
* **same_call** – the upstream call the gateway makes, made directly: ``litellm.completion``
  with ConverseStream (whatever the client asked for), usage, one kept client, read from
  LiteLLM's chunk iterator to the end. The gateway over it is its own work; the gateway over
  **direct** is that plus, for a whole answer, the price of streaming from Bedrock.
* **gateway** – the streaming function's handler (``chalicelib.streaming.handler.handle``,
  what our Lambda runtime loop calls for ``POST /v1/chat/completions``; no HTTP
  server in between) with an API Gateway event: key lookup, admission and the
  ledger entry against moto server, LiteLLM call, OpenAI shaping, JSON logging.
* **front** – the same request over HTTP/1.1 (one keep-alive connection, as the SDKs
  keep theirs) to the local front ``make dev`` serves (``local/front.py``), started in
  this process: the HTTP hop, the API Gateway event, the handler, the answer (chunked when
  streamed, a whole one with its length in one write). The
  caller is a process of its own, as a client of ``make dev`` is, timed on its own clock;
  this process's CPU is the front's alone.
* **http_hop** – the HTTP hop alone: the same kind of caller (a process of its own) to a stdlib
  server in this process that answers at once with the gateway's last answer, in one write. The
  front's goal allows 1 ms over the in-process one for the hop; this is what the hop costs here.

The aggregator and the people sweep (Lambdas of their own on AWS) are paused while the paths
are timed: on a 2-core machine they took the cores from what was timed.

The difference is what pennyworth adds. A direct call leaves work behind: LiteLLM hands its
success logging to a background executor (~1 ms of CPU) after the call returns. That work is
waited for before the next path starts and counted in the direct call's CPU, not in its wall
time: left to run, it was charged to whichever path came next (the gateway), and it competed
with it for the interpreter. moto server stands in for DynamoDB,
and its latency is not AWS's. So the time spent inside DynamoDB calls (on every client: the
keys' and the ledger's resources, and the plain client beside each that the request path's calls
use) is measured separately (botocore's before-call/after-call events) and the overhead is
reported with and without it. Issue 23's goals are on the overhead without it: ``goal_added_ms``
(in process) and ``goal_added_front_ms`` (through the front), judged on the paired medians. That
counts boto3's own side of each call (building, checking and serialising the request, reading
the answer back into Python types: ~0.25–0.4 ms of CPU a call through the plain client,
~0.45–0.75 ms through a resource) as the gateway's; ``excluding_dynamodb_client``
reports the same figures with the whole client call excluded, to tell the two apart.

A path's time ends when its caller has the whole answer. Our runtime loop then ends the response,
and only after that closes the answer, which stores the bill (the ledger's ``PutItem``) and writes
the request's log line: the caller does not wait for them. So the in-process path is timed to its
last chunk and its answer closed after, as the runtime does (that close is reported as
``gateway_after_the_answer_excluding_dynamodb``, and its CPU counted in the path's CPU); the front
closes its own, and is waited for before the next path starts. A DynamoDB call still running when
the caller had its answer is not subtracted from the caller's wait, not even in part.

``--all-scopes`` gives the key rate limits and a budget and charges it to a team with a
budget: admission then reserves on the key, its owner and the team, three conditional
updates in parallel (by default the key has no limits: one reservation, its owner's).

Usage: ``python bench/overhead.py [--requests N] [--stream] [--all-scopes]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, wait
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


#: Issue 23: what our own code may add to a direct LiteLLM call (DynamoDB's time excluded), in ms.
GOAL_ADDED_MS = 2.0
GOAL_ADDED_FRONT_MS = 3.0


#: The front's caller (its own process): one POST per line of stdin (the body) on one kept-alive
#: connection, as the SDKs keep theirs; prints ``[status, started, ended, detail]`` per request.
FRONT_CALLER = """
import http.client, json, sys, time
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
headers = json.loads(sys.argv[2])
for line in sys.stdin:
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=line.rstrip("\\n").encode(), headers=headers)
    response = connection.getresponse()
    payload = response.read()
    ended = time.perf_counter()
    print(json.dumps([response.status, started, ended, payload[:300].decode(errors="replace")]), flush=True)
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def covered_ms(intervals: list[tuple[float, float]], until: float = float("inf")) -> float:
    """How long at least one of ``intervals`` (start, end in seconds) was running, in ms.

    Only intervals over by ``until`` count: a call still running when the caller had its answer (the
    bill stored after the answer) is not taken off the caller's wait, not even in part.
    """
    total, reached = 0.0, float("-inf")
    for start, end in sorted(interval for interval in intervals if interval[1] <= until):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total * 1000


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def charge_to_a_team(api_key: str) -> None:
    """Give the key limits and a budget, and charge it to a team with a budget (limits never reached)."""
    from chalicelib import wiring
    from chalicelib.keys.store import key_id_of
    from chalicelib.settings import get_settings
    from chalicelib.shared import scopes

    settings = get_settings()
    wiring.dynamodb().Table(settings.keys_table).update_item(
        Key={"key_id": key_id_of(api_key)},
        UpdateExpression="SET rpm_limit = :rpm, tpm_limit = :tpm, monthly_budget_usd = :usd, team_id = :team",
        ExpressionAttributeValues={":rpm": 1_000_000, ":tpm": 1_000_000_000, ":usd": 1_000_000, ":team": "bench"},
    )
    item = {**scopes.team("bench").budget_item, "monthly_budget_usd": 1_000_000, "label": "bench"}
    wiring.dynamodb().Table(settings.usage_table).put_item(Item=item)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first")
    parser.add_argument("--stream", action="store_true", help="measure streamed completions")
    parser.add_argument(
        "--all-scopes", action="store_true", help="reserve on the key, its owner and a team (three updates at once)"
    )
    args = parser.parse_args()

    from local.devstack import DevStack, Ports

    with DevStack(ports=Ports.free(), log_dir=Path(tempfile.mkdtemp(prefix="pennyworth-bench-"))) as stack:
        os.environ.update(stack.env)
        import litellm

        from chalicelib import wiring
        from chalicelib.observability import logger
        from chalicelib.shared.dynamodb import clients
        from chalicelib.streaming.handler import handle
        from local.front import api_gateway_event, serve

        wiring.reset()
        if args.all_scopes:
            charge_to_a_team(stack.info["api_key"])
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

        from litellm.llms.custom_httpx.http_handler import HTTPHandler

        kept = HTTPHandler()

        def same_call() -> None:
            # The upstream call the gateway makes, whether the client streams or not: ConverseStream
            # (so a call given up on stops Bedrock), with usage, through one kept client, read from
            # LiteLLM's own chunk iterator (not its stream wrapper), to the end.
            response = litellm.completion(
                model=f"bedrock/converse/{bedrock_id}",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                aws_bedrock_runtime_endpoint=stack.bedrock_url,
                aws_region_name="us-east-1",
                num_retries=0,
                client=kept,
            )
            for _ in response.completion_stream:
                pass

        # Calls in flight at once (admission's reservations run in parallel) overlap: the time
        # DynamoDB took is the union of their intervals, not their sum.
        storage: list[tuple[float, float]] = []
        # And the CPU the DynamoDB client spent in them (signing, sending, parsing), on each thread.
        storage_cpu = [0.0]
        calls = threading.local()  # admission may call DynamoDB from worker threads

        def before(**_: object) -> None:
            calls.__dict__.setdefault("started", []).append((time.perf_counter(), time.thread_time()))

        def after(**_: object) -> None:
            started, cpu = calls.started.pop()
            storage.append((started, time.perf_counter()))
            storage_cpu[0] += time.thread_time() - cpu

        # Every client: the keys table's resource and the ledger's (entries, admission), which has its
        # own, and beside each the plain client the request path's calls use (``clients``).
        watched = [client for resource in (wiring.dynamodb(), wiring.ledger_dynamodb()) for client in clients(resource)]
        for client in watched:
            client.meta.events.register("before-call.dynamodb.*", before)
            client.meta.events.register("after-call.dynamodb.*", after)

        # Also the whole of each DynamoDB client call (boto3 building and checking the request,
        # serialising it and reading the answer back into Python types), as a second accounting:
        # the goals are judged on the figures above, which count that work as the gateway's.
        client_calls: list[tuple[float, float]] = []
        client_cpu = [0.0]

        def whole_calls(make_api_call: Any) -> Any:
            def timed(*args: Any, **kwargs: Any) -> Any:
                started, cpu = time.perf_counter(), time.thread_time()
                try:
                    return make_api_call(*args, **kwargs)
                finally:
                    client_calls.append((started, time.perf_counter()))
                    client_cpu[0] += time.thread_time() - cpu

            return timed

        for client in {id(c): c for c in watched}.values():
            client._make_api_call = whole_calls(client._make_api_call)

        # Answers to close once the caller has them, as our runtime loop closes each after the end of
        # its response: what closing does (the bill's PutItem, the log line) is not the caller's wait.
        answered: list[Any] = []
        last_answer: list[bytes] = [b"{}"]

        def gateway() -> None:
            event = api_gateway_event("POST", "/v1/chat/completions", "", headers, body)
            result = handle(event, deadline=time.time() + 60)
            try:
                payload = b"".join(result.chunks)
            except BaseException:
                result.close()
                raise
            answered.append(result)
            last_answer[:] = [payload]
            if result.status != 200:
                raise RuntimeError(f"gateway answered {result.status}: {payload[:300]!r}")

        front = serve("127.0.0.1", 0, upstream=stack.api_url, timeout_seconds=60)
        # The front's caller is a process of its own, as a client of ``make dev`` is: in this one it
        # would wait for the interpreter while the front closes the answer it has just sent.
        caller = subprocess.Popen(
            [sys.executable, "-c", FRONT_CALLER, str(front.server_address[1]), json.dumps(headers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        class Hop(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = last_answer[-1]
                head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(data)
                self.wfile.write(head + data)

        hop = ThreadingHTTPServer(("127.0.0.1", 0), Hop)
        hop.daemon_threads = True
        threading.Thread(target=hop.serve_forever, daemon=True).start()
        hop_caller = subprocess.Popen(
            [sys.executable, "-c", FRONT_CALLER, str(hop.server_address[1]), json.dumps(headers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def call_through(process: subprocess.Popen[str], what: str) -> tuple[float, float]:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(body.decode() + "\n")
            process.stdin.flush()
            status, started, ended, detail = json.loads(process.stdout.readline())
            if status != 200:
                raise RuntimeError(f"{what} answered {status}: {detail}")
            return started, ended  # the caller's own clock (perf_counter: one clock for every process)

        def via_front() -> tuple[float, float]:
            return call_through(caller, "the front")

        def via_hop() -> tuple[float, float]:
            return call_through(hop_caller, "the bare HTTP server")

        # The background work each call leaves (LiteLLM's logging executor), to wait for after it.
        from litellm.litellm_core_utils.thread_pool_executor import executor as logging_executor

        left_behind: list[Future[Any]] = []
        submit = logging_executor.submit

        def submit_and_keep(fn: Any, /, *submitted: Any, **options: Any) -> Future[Any]:
            future = submit(fn, *submitted, **options)
            left_behind.append(future)
            return future

        logging_executor.submit = submit_and_keep  # type: ignore[method-assign]

        after_answer: list[float] = []

        def settle() -> None:
            # What each path leaves once its caller has the answer: the in-process answer's close (timed,
            # DynamoDB's own time excluded), the front's (on its handler thread), LiteLLM's logging.
            for result in answered:
                closing, storage_before = time.perf_counter(), len(storage)
                result.close()
                closed = time.perf_counter()
                after_answer.append((closed - closing) * 1000 - covered_ms(storage[storage_before:]))
            answered.clear()
            front.idle()
            wait(left_behind)
            left_behind.clear()

        paths = (
            ("direct", direct),
            ("same_call", same_call),
            ("gateway", gateway),
            ("front", via_front),
            ("http_hop", via_hop),
        )
        for _ in range(args.warmup):
            for _name, call in paths:
                call()
                settle()
        timings: dict[str, list[float]] = {name: [] for name, _ in paths}
        for name in ("gateway", "front"):
            timings[f"{name}_minus_dynamodb"] = []
            timings[f"{name}_minus_dynamodb_client"] = []
        cpu: dict[str, list[float]] = {name: [] for name, _ in paths}
        client_excluded_cpu: dict[str, list[float]] = {name: [] for name, _ in paths}
        # The aggregator and the people sweep are Lambdas of their own on AWS; here they would take
        # the machine's two cores from the paths being timed (and slow moto for everyone).
        after_answer.clear()  # the warm-up's
        with stack.paused("aggregator", "sweep"):
            for _ in range(args.requests):
                for name, call in paths:
                    storage.clear()
                    storage_cpu[0] = 0.0
                    client_calls.clear()
                    client_cpu[0] = 0.0
                    started, started_cpu = time.perf_counter(), time.process_time()
                    window = call()
                    ended = time.perf_counter()
                    if window is not None:
                        started, ended = window
                    elapsed = (ended - started) * 1000
                    settle()  # its CPU belongs to this call; its wall time does not (the caller had its answer)
                    # CPU of every thread of this process (the front's, admission's): robust to a busy machine.
                    spent = time.process_time() - started_cpu
                    cpu[name].append((spent - storage_cpu[0]) * 1000)
                    client_excluded_cpu[name].append((spent - client_cpu[0]) * 1000)
                    timings[name].append(elapsed)
                    if name in ("gateway", "front"):
                        timings[f"{name}_minus_dynamodb"].append(elapsed - covered_ms(storage, ended))
                        timings[f"{name}_minus_dynamodb_client"].append(elapsed - covered_ms(client_calls, ended))
        for process in (caller, hop_caller):
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)
        for server in (front, hop):
            server.shutdown()
            server.server_close()
        direct_s, gateway_s, front_s = (summary(timings[name]) for name in ("direct", "gateway", "front"))
        own_s, own_front_s = summary(timings["gateway_minus_dynamodb"]), summary(timings["front_minus_dynamodb"])

        def paired(name: str, samples: dict[str, list[float]] = timings, baseline: str = "direct") -> float:
            pairs = zip(samples[name], samples[baseline], strict=True)
            return round(statistics.median(g - d for g, d in pairs), 3)

        result = {
            "benchmark": "gateway_overhead",
            "stream": args.stream,
            "all_scopes": args.all_scopes,
            "requests_per_path": args.requests,
            "load_average": [round(load, 2) for load in os.getloadavg()],
            "direct_litellm": direct_s,
            "gateway_handler": gateway_s,
            "added_p50_ms": round(gateway_s["p50_ms"] - direct_s["p50_ms"], 3),
            "added_p99_ms": round(gateway_s["p99_ms"] - direct_s["p99_ms"], 3),
            "paired_added_median_ms": paired("gateway"),
            "ratio_p50": round(gateway_s["p50_ms"] / direct_s["p50_ms"], 3),
            "gateway_excluding_dynamodb": own_s,
            "added_excluding_dynamodb_p50_ms": round(own_s["p50_ms"] - direct_s["p50_ms"], 3),
            "paired_added_excluding_dynamodb_median_ms": paired("gateway_minus_dynamodb"),
            # What the in-process answer's close() took once the caller had it (the bill's PutItem,
            # DynamoDB's own time excluded, and the log line): the function's time, not the caller's.
            "gateway_after_the_answer_excluding_dynamodb": summary(after_answer),
            "front": front_s,
            "front_excluding_dynamodb": own_front_s,
            "front_added_excluding_dynamodb_p50_ms": round(own_front_s["p50_ms"] - direct_s["p50_ms"], 3),
            "front_paired_added_excluding_dynamodb_median_ms": paired("front_minus_dynamodb"),
            # The front against the in-process path, request by request, and the HTTP hop alone (a
            # server that answers the same bytes at once): how much of the front's cost is the hop.
            "front_over_in_process_paired_median_ms": paired("front_minus_dynamodb", baseline="gateway_minus_dynamodb"),
            "http_hop_alone": summary(timings["http_hop"]),
            # The same, counted in CPU time (the DynamoDB client's excluded): what the paths cost the
            # machine whatever else it runs; wall-clock figures move with the load, these much less.
            "cpu_direct_median_ms": round(statistics.median(cpu["direct"]), 3),
            "cpu_paired_added_excluding_dynamodb_median_ms": paired("gateway", cpu),
            "front_cpu_paired_added_excluding_dynamodb_median_ms": paired("front", cpu),
            # The second accounting: the whole DynamoDB client call (boto3's side of it too) excluded.
            "excluding_dynamodb_client": {
                "paired_added_median_ms": paired("gateway_minus_dynamodb_client"),
                "front_paired_added_median_ms": paired("front_minus_dynamodb_client"),
                "cpu_paired_added_median_ms": paired("gateway", client_excluded_cpu),
                "front_cpu_paired_added_median_ms": paired("front", client_excluded_cpu),
            },
            # Over the same upstream call made directly (ConverseStream read to the end): what the
            # gateway's own work costs, apart from the upstream protocol it chooses. For a whole answer
            # the direct call above is one Converse answer, which is cheaper to read and, from the
            # emulator, quicker to start; the gateway streams from Bedrock so that a call it gives up
            # on stops (and stops billing).
            "over_the_same_call": {
                "cpu_same_call_median_ms": round(statistics.median(cpu["same_call"]), 3),
                "paired_added_excluding_dynamodb_median_ms": paired("gateway_minus_dynamodb", baseline="same_call"),
                "front_paired_added_excluding_dynamodb_median_ms": paired("front_minus_dynamodb", baseline="same_call"),
                "cpu_paired_added_excluding_dynamodb_median_ms": paired("gateway", cpu, baseline="same_call"),
                "excluding_dynamodb_client_paired_added_median_ms": paired(
                    "gateway_minus_dynamodb_client", baseline="same_call"
                ),
                "excluding_dynamodb_client_cpu_paired_added_median_ms": paired(
                    "gateway", client_excluded_cpu, baseline="same_call"
                ),
            },
            "goal_added_ms": GOAL_ADDED_MS,
            "goal_added_front_ms": GOAL_ADDED_FRONT_MS,
            "goals_met": {
                "in_process": paired("gateway_minus_dynamodb") <= GOAL_ADDED_MS,
                "front": paired("front_minus_dynamodb") <= GOAL_ADDED_FRONT_MS,
            },
        }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
