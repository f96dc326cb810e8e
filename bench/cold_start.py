"""Cold start of the built Lambda artifact, beside a bare boto3 ``converse`` (the floor), in one run.

Each sample is a fresh interpreter (``python -S -B``: no site-packages, no
bytecode written) whose only import path is an unzipped artifact, as on
Lambda. DynamoDB is a moto server and Bedrock the emulator, both separate
processes; the artifact is checked for written bytecode afterwards (none may
appear). Cases, each the first request of a cold process:

* ``boto3_converse`` / ``boto3_converse_stream`` (the floor): ``import boto3``, a
  ``bedrock-runtime`` client and one ``converse`` (or ``converse_stream``, drained) with the
  artifact's own boto3, as a gateway without LiteLLM would answer;
* ``api_chat``: the API handler, ``app.app(event, context)``, answering an MCP ``tools/call``
  ``chat`` (imports LiteLLM, calls the emulator, bills in DynamoDB);
* ``chat``: the streaming function's handler, ``chalicelib.streaming.handler.handle``, called
  in-process as the runtime loop calls it, a whole (non-streamed) chat completion;
* ``stream_function_chat`` / ``stream_chat``: the streaming function's real entry point (exec
  wrapper → our Runtime API loop → the handler) started cold under ``local/lambda_runtime.py``,
  one chat completion, not streamed / streamed;
* ``models``, ``unauthorized``: the API handler's first ``GET /v1/models`` with a valid key and
  with a wrong one (non-LLM routes);
* ``bare_litellm_naive`` (``import litellm`` from ``chalice package``'s own output: no pruning,
  no bytecode, no deferred imports), ``bare_boto3_naive`` / ``bare_boto3_artifact`` (``import
  boto3`` from each), for context.

Two clocks: *in process* (from the child's first line to its answer: ``api_chat``, ``chat``,
the floor's ``seconds``) and *from spawn* (from starting the process, interpreter start-up
included: the streaming function's cases, the floor's ``spawn_seconds``). Each answer is divided
by the floor timed the same way; the goal is ≤ 5 for every one (issue 23), with peak RSS ≤ 200 MB.
Usage: ``python bench/cold_start.py [--artifact build/dev/unzipped] [--runs 5] [--profile DIR]``; prints
JSON (``--profile`` adds one untimed, cProfiled pass of each in-process case: where a cold start goes).

``--source`` runs every case against the source tree and this venv's packages instead of a
built artifact (no ``make package`` needed): ``make test`` runs it once, so the benchmark
keeps working between builds. Its numbers are not the artifact's (nothing pruned, nothing
deferred), so its goals are reported but not judged; the cases' statuses are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLES = {
    "KeysTable": "bench-keys",
    "UsageTable": "bench-usage",
    "AuditTable": "bench-audit",
    "CatalogTable": "bench-catalog",
}
#: Each cold answer ÷ the boto3 floor timed the same way; non-LLM routes ÷ a naive ``import boto3``.
GOALS = {"answer_vs_boto3_converse": 5.0, "non_llm_vs_import_boto3": 2.0, "peak_rss_mb": 200}

# Runs in the fresh interpreter: everything it imports comes from sys.argv[1].
CHILD = r"""
import json, os, resource, sys, time
started = time.perf_counter()
sys.path[:0] = [sys.argv[1]]
case = json.loads(sys.argv[2])
if case.get("profile"):
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
result = {}
if "module" in case:
    __import__(case["module"])
    result["seconds"] = time.perf_counter() - started
elif "converse" in case:
    # The floor: what a gateway without LiteLLM does for its first answer.
    import boto3
    client = boto3.client("bedrock-runtime", endpoint_url=case["converse"]["endpoint"], region_name="us-east-1")
    request = {"modelId": case["converse"]["model"], "messages": [{"role": "user", "content": [{"text": "Hello"}]}]}
    if case["converse"]["stream"]:
        events = client.converse_stream(**request)["stream"]
        first = None
        for event in events:
            first = first or time.perf_counter()
        result["first_event_seconds"] = first - started
    else:
        client.converse(**request)
    result.update(seconds=time.perf_counter() - started, status=200)
elif case.get("streaming"):
    # The streaming function's handler, in-process (what the runtime loop calls), the body drained.
    from chalicelib.streaming import handler
    imported = time.perf_counter()
    answer = handler.handle(case["event"], deadline=time.time() + 300)
    body = b"".join(answer.chunks)
    answer.close()
    result.update(
        seconds=time.perf_counter() - started, import_app_seconds=imported - started, status=answer.status,
        body=body[:200].decode("utf-8", "replace"),
    )
else:
    import app
    imported = time.perf_counter()

    class Context:
        aws_request_id = "bench"
        function_name = "pennyworth-bench"
        memory_limit_in_mb = 1769
        invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:pennyworth-bench"
        log_group_name = log_stream_name = function_version = "bench"

        def get_remaining_time_in_millis(self):
            return 28000

    response = app.app(case["event"], Context())
    done = time.perf_counter()
    status = response["statusCode"]
    if case.get("mcp_tool") and status == 200:
        # A tool's failure is a JSON-RPC result with isError: count it as one.
        status = 200 if json.loads(response["body"]).get("result", {}).get("isError") is False else 502
    result.update(
        seconds=done - started, import_app_seconds=imported - started, status=status, body=response["body"][:200],
    )
if case.get("profile"):
    profiler.disable()
    profiler.dump_stats(case["profile"])
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result["answered_at"] = time.time()
print(json.dumps(result))
"""


def event(method: str, path: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event, as Lambda receives it (the one the Runtime API emulator builds)."""
    from local.lambda_runtime import proxy_event

    return proxy_event(method, path, body, headers={"Authorization": f"Bearer {key}", "Host": "bench.local"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def naive_package(build_root: Path) -> Path:
    """``chalice package`` of the project as it is (Chalice's own pip install, no bytecode)."""
    target = build_root / "naive"
    unzipped = target / "unzipped"
    if (unzipped / "litellm").is_dir():
        return unzipped
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    chalice_cli = Path(sys.executable).with_name("chalice")
    # The dev stage names its IAM policies: the local stage would have Chalice generate one by reading
    # app.py, and its analyzer cannot (it fails on the module-level route table).
    command = [str(chalice_cli), "package", "--stage", "dev", str(target / "package")]
    # Chalice prints its progress on stdout, which carries this benchmark's JSON.
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=sys.stderr)
    with zipfile.ZipFile(target / "package" / "deployment.zip") as archive:
        archive.extractall(unzipped)
    return unzipped


def file_count(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*"))


def run_child(root: Path, case: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-S", "-B", "-c", CHILD, str(root), json.dumps(case)]
    spawned = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed ({case.get('name')}):\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    # From spawn: interpreter start-up included, as for the streaming function's cases.
    measured["spawn_seconds"] = measured.pop("answered_at") - spawned
    return measured


def stream_case(artifact: Path, env: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """A cold streaming function: start its exec wrapper, send one event, time what comes back (from spawn)."""
    from local.lambda_runtime import RuntimeAPI

    with RuntimeAPI() as api:
        process = api.start_function(artifact, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = api.started_at or time.monotonic()
        invocation = api.invoke(event)
        arrivals = [arrived for arrived, _ in invocation.body_chunks(timeout=120)]
        result = invocation.result(timeout=5)
        peak_kb = 0
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    if result.mode != "streaming" or len(arrivals) < 1:
        raise SystemExit(f"the streaming function did not stream: {result.mode} {result.error}")
    return {
        "seconds": arrivals[-1] - started,
        "spawn_seconds": arrivals[-1] - started,
        "init_seconds": (api.first_poll_at or started) - started,
        "first_byte_seconds": arrivals[0] - started,
        "first_body_chunk_seconds": (arrivals[1] if len(arrivals) > 1 else arrivals[0]) - started,
        "status": result.status,
        "body": result.body[:200].decode("utf-8", "replace"),
        "peak_rss_mb": peak_kb / 1024,
    }


def source_root(build_root: Path) -> Path:
    """An artifact's layout without building one: the app and this venv's packages, linked into one directory."""
    import sysconfig

    root = Path(tempfile.mkdtemp(prefix="source-", dir=build_root))
    for name in ("app.py", "chalicelib"):
        (root / name).symlink_to(ROOT / name)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not (root / entry.name).exists() and entry.name != "__pycache__" and entry.suffix != ".pth":
            (root / entry.name).symlink_to(entry)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=ROOT / "build" / "dev" / "unzipped")
    parser.add_argument("--naive", type=Path, help="unzipped naive Chalice package (built if omitted)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--profile", type=Path, help="after the timed runs, profile each in-process case once into DIR/<case>.pstats"
    )
    parser.add_argument(
        "--source", action="store_true", help="the source tree and this venv instead of an artifact (goals not judged)"
    )
    args = parser.parse_args(argv)
    scratch = None
    if args.source:
        (ROOT / "build").mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="cold-start-", dir=ROOT / "build"))
        args.artifact = args.naive = source_root(scratch)
    try:
        return measure(args)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch)


def measure(args: argparse.Namespace) -> int:
    artifact = args.artifact.resolve()
    if not (artifact / "app.py").is_file():
        raise SystemExit(f"{artifact} is not an unzipped artifact: run 'make package' first")
    naive = (args.naive or naive_package(ROOT / "build")).resolve()

    import boto3

    from local import bootstrap

    processes = []
    try:
        aws_port = free_port()
        aws_url = f"http://127.0.0.1:{aws_port}"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-p", str(aws_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        emulator = subprocess.Popen(
            [sys.executable, "-m", "local.bedrock_emulator", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(emulator)
        line = emulator.stderr.readline() if emulator.stderr else ""
        match = re.search(r"(http://\S+)", line)
        if not match:
            raise SystemExit(f"the Bedrock emulator did not start: {line!r}")
        bedrock_url = match.group(1)
        wait_http(f"{aws_url}/moto-api/")
        fake = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
        bootstrap.create_tables(boto3.client("dynamodb", endpoint_url=aws_url, **fake), TABLES)
        from chalicelib.keys.store import KeyStore

        table = boto3.resource("dynamodb", endpoint_url=aws_url, **fake).Table(TABLES["KeysTable"])
        _, key = KeyStore(table).create(owner_sub="bench", owner_email="bench@example.com", name="cold start")

        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tempfile.gettempdir(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "POWERTOOLS_SERVICE_NAME": "pennyworth",
            "PENNYWORTH_STAGE": "bench",
            "PENNYWORTH_AWS_ENDPOINT_URL": aws_url,
            "PENNYWORTH_BEDROCK_ENDPOINT_URL": bedrock_url,
            "PENNYWORTH_KEYS_TABLE": TABLES["KeysTable"],
            "PENNYWORTH_USAGE_TABLE": TABLES["UsageTable"],
            "PENNYWORTH_AUDIT_TABLE": TABLES["AuditTable"],
            "PENNYWORTH_CATALOG_TABLE": TABLES["CatalogTable"],
        }
        chat = {"model": "nova-micro", "messages": [{"role": "user", "content": "Hello, cold start"}]}
        mcp_chat = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "chat", "arguments": {"model": "nova-micro", "prompt": "Hello, cold start"}},
        }
        stream_env = {
            k: v for k, v in env.items() if k not in ("PATH", "HOME", "PYTHONDONTWRITEBYTECODE", "AWS_REGION")
        }
        stream_env["PENNYWORTH_STREAM_TIMEOUT_SECONDS"] = "300"
        # The catalog's nova-micro, as the gateway calls it (the emulator answers any model id).
        converse = {"endpoint": bedrock_url, "model": "us.amazon.nova-micro-v1:0"}
        cases = {
            "boto3_converse": (artifact, {"converse": {**converse, "stream": False}}),
            "boto3_converse_stream": (artifact, {"converse": {**converse, "stream": True}}),
            "api_chat": (artifact, {"event": event("POST", "/mcp", key, mcp_chat), "mcp_tool": True}),
            "chat": (artifact, {"event": event("POST", "/v1/chat/completions", key, chat), "streaming": True}),
            "models": (artifact, {"event": event("GET", "/v1/models", key)}),
            "unauthorized": (artifact, {"event": event("GET", "/v1/models", "pw-wrong")}),
            "bare_litellm_naive": (naive, {"module": "litellm"}),
            "bare_boto3_naive": (naive, {"module": "boto3"}),
            "bare_boto3_artifact": (artifact, {"module": "boto3"}),
        }
        stream_cases = {
            "stream_function_chat": event("POST", "/v1/chat/completions", key, chat),
            "stream_chat": event("POST", "/v1/chat/completions", key, {**chat, "stream": True}),
        }
        before = {root: file_count(root) for root in (artifact, naive)}
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in [*cases, *stream_cases]}
        for _ in range(args.runs):  # interleaved, so a burst of load hits every case alike
            for name, (root, case) in cases.items():
                samples[name].append(run_child(root, {"name": name, **case}, env))
            for name, stream_event in stream_cases.items():
                samples[name].append(stream_case(artifact, stream_env, stream_event))
        written = {str(root): file_count(root) - count for root, count in before.items()}
        if args.profile:  # an extra, untimed pass: cProfile slows every call down
            args.profile.mkdir(parents=True, exist_ok=True)
            for name, (root, case) in cases.items():
                run_child(root, {"name": name, **case, "profile": str(args.profile.resolve() / f"{name}.pstats")}, env)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)

    report = summarize(samples, args.runs, artifact)
    if args.source:
        report["artifact"] = "(the source tree and the venv: --source)"
    report["bytecode_files_written"] = written
    print(json.dumps(report, indent=2))
    if args.source:  # numbers of unpruned packages: only the statuses count
        return 0 if report["goals_met"]["statuses"] else 1
    return 0 if all(report["goals_met"].values()) and not any(written.values()) else 1


def median(runs: list[dict[str, Any]], field: str) -> float:
    return round(statistics.median(r[field] for r in runs), 3)


def summarize(samples: dict[str, list[dict[str, Any]]], runs: int, artifact: Path) -> dict[str, Any]:
    """Medians per case, each answer over the floor timed the same way, and the goals."""
    results: dict[str, dict[str, Any]] = {}
    for name, measured in samples.items():
        results[name] = {
            "median_seconds": median(measured, "seconds"),
            "seconds": [round(r["seconds"], 3) for r in measured],
            "median_spawn_seconds": median(measured, "spawn_seconds"),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in measured), 1),
        }
        if "status" in measured[0]:
            results[name]["status"] = measured[0]["status"]
        for extra in (
            "import_app_seconds",
            "first_event_seconds",
            "init_seconds",
            "first_byte_seconds",
            "first_body_chunk_seconds",
        ):
            if extra in measured[0]:
                results[name][f"median_{extra}"] = median(measured, extra)
        if name in ("stream_chat", "api_chat"):
            results[name]["body"] = measured[0]["body"]
    floor = results["boto3_converse"]
    floor_stream = results["boto3_converse_stream"]
    answers = {
        # in process: from the interpreter's first line
        "api_chat": results["api_chat"]["median_seconds"] / floor["median_seconds"],
        "chat": results["chat"]["median_seconds"] / floor["median_seconds"],
        # from spawn: interpreter start-up included on both sides
        "stream_function_chat": results["stream_function_chat"]["median_seconds"] / floor["median_spawn_seconds"],
        "stream_chat": results["stream_chat"]["median_seconds"] / floor_stream["median_spawn_seconds"],
    }
    expected = {"api_chat": 200, "chat": 200, "stream_function_chat": 200, "stream_chat": 200}
    expected |= {"models": 200, "unauthorized": 401, "boto3_converse": 200, "boto3_converse_stream": 200}
    wrong = {
        name: results[name].get("status") for name, status in expected.items() if results[name].get("status") != status
    }
    non_llm = max(results["models"]["median_seconds"], results["unauthorized"]["median_seconds"])
    peak = max(results[name]["peak_rss_mb"] for name in expected if not name.startswith("boto3"))
    ratios = {
        **{f"{name}_vs_boto3_converse": round(value, 2) for name, value in answers.items()},
        # Informational: the streamed answer's first body chunk against the floor's first event, from spawn.
        "stream_chat_first_chunk_vs_boto3_first_event": round(
            results["stream_chat"]["median_first_body_chunk_seconds"]
            / (
                floor_stream["median_first_event_seconds"]
                + floor_stream["median_spawn_seconds"]
                - floor_stream["median_seconds"]
            ),
            2,
        ),
        "non_llm_vs_import_boto3": round(non_llm / results["bare_boto3_naive"]["median_seconds"], 3),
        "non_llm_vs_import_boto3_artifact": round(non_llm / results["bare_boto3_artifact"]["median_seconds"], 3),
        # Informational: the cold chat against LiteLLM's own unoptimised import.
        "chat_vs_bare_litellm_naive": round(
            results["chat"]["median_seconds"] / results["bare_litellm_naive"]["median_seconds"], 3
        ),
        "peak_rss_mb": peak,
    }
    return {
        "python": sys.version.split()[0],
        "runs": runs,
        "artifact": str(artifact),
        "results": results,
        "ratios": ratios,
        "goals": GOALS,
        "goals_met": {
            "answer_vs_boto3_converse": max(answers.values()) <= GOALS["answer_vs_boto3_converse"],
            "non_llm_vs_import_boto3": ratios["non_llm_vs_import_boto3"] <= GOALS["non_llm_vs_import_boto3"],
            "peak_rss_mb": peak <= GOALS["peak_rss_mb"],
            "statuses": not wrong,
        },
        **({"wrong_statuses": wrong} if wrong else {}),
    }


if __name__ == "__main__":
    sys.exit(main())
