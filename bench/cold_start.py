"""Cold start of the built Lambda artifact, beside a bare ``import litellm`` from Chalice's naive package.

Each sample is a fresh interpreter (``python -S -B``: no site-packages, no
bytecode written) whose only import path is an unzipped artifact, as on
Lambda. It imports ``app`` and calls the real handler, ``app.app(event,
context)`` (or the streaming handler for the model route), with an API
Gateway proxy event, timing from its first line to the response. Cases:

* ``models``: first ``GET /v1/models`` with a valid key (non-LLM route);
* ``unauthorized``: first request with a wrong key (401);
* ``chat``: first ``POST /v1/chat/completions`` (imports LiteLLM, calls the Bedrock emulator), a
  whole answer from the streaming route's handler, ``chalicelib.streaming.handler.handle``, called
  in-process as the runtime loop calls it (the route left the Chalice app);
* ``stream_chat``: the streaming function's real entry point (exec wrapper → our Runtime API
  loop → ``chalicelib.streaming.handler``) started cold under ``local/lambda_runtime.py``, one
  streamed chat completion; timed from process start (interpreter start-up included, unlike
  the cases above) to its first poll of the Runtime API (the end of Lambda's init phase: wrapper,
  interpreter, our loop and the handler module imported), to the prelude (headers out), to the
  first body chunk, and to the end;
* ``bare_litellm_naive``: ``import litellm`` from ``chalice package``'s own output (no pruning, no bytecode);
* ``bare_boto3_naive`` / ``bare_boto3_artifact``: ``import boto3`` from each.

DynamoDB is a moto server and Bedrock the emulator, both separate processes.
The artifact is checked for written bytecode afterwards (none may appear).
Usage: ``python bench/cold_start.py [--artifact build/dev/unzipped] [--runs 3]``; prints JSON.

``--source`` runs every case against the source tree and this venv's packages instead of a
built artifact (no ``make package`` needed): ``make test`` runs it once, so the benchmark
keeps working between builds. Its numbers are not the artifact's (nothing pruned), so its
goals are reported but not judged; the cases' statuses are.
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

TABLES = {"KeysTable": "bench-keys", "UsageTable": "bench-usage", "AuditTable": "bench-audit"}
GOALS = {"chat_vs_bare_litellm": 0.5, "non_llm_vs_import_boto3": 2.0, "peak_rss_mb": 300}

# Runs in the fresh interpreter: everything it imports comes from sys.argv[1].
CHILD = r"""
import json, os, resource, sys, time
started = time.perf_counter()
sys.path[:0] = [sys.argv[1]]
case = json.loads(sys.argv[2])
result = {}
if "module" in case:
    __import__(case["module"])
    result["seconds"] = time.perf_counter() - started
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
    result.update(
        seconds=done - started, import_app_seconds=imported - started, status=response["statusCode"],
        body=response["body"][:200],
    )
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
    command = [str(chalice_cli), "package", "--stage", "local", str(target / "package")]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    with zipfile.ZipFile(target / "package" / "deployment.zip") as archive:
        archive.extractall(unzipped)
    return unzipped


def file_count(directory: Path) -> int:
    return sum(1 for _ in directory.rglob("*"))


def run_child(root: Path, case: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-S", "-B", "-c", CHILD, str(root), json.dumps(case)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise SystemExit(f"benchmark child failed ({case.get('name')}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def stream_case(artifact: Path, env: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """A cold streaming function: start its exec wrapper, send one event, time what comes back."""
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
    parser.add_argument("--runs", type=int, default=3)
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
        }
        chat = {"model": "nova-micro", "messages": [{"role": "user", "content": "Hello, cold start"}]}
        stream_event = event("POST", "/v1/chat/completions", key, {**chat, "stream": True})
        stream_env = {
            k: v for k, v in env.items() if k not in ("PATH", "HOME", "PYTHONDONTWRITEBYTECODE", "AWS_REGION")
        }
        stream_env["PENNYWORTH_STREAM_TIMEOUT_SECONDS"] = "300"
        cases = {
            "models": (artifact, {"event": event("GET", "/v1/models", key)}),
            "unauthorized": (artifact, {"event": event("GET", "/v1/models", "pw-wrong")}),
            "chat": (artifact, {"event": event("POST", "/v1/chat/completions", key, chat), "streaming": True}),
            "bare_litellm_naive": (naive, {"module": "litellm"}),
            "bare_boto3_naive": (naive, {"module": "boto3"}),
            "bare_boto3_artifact": (artifact, {"module": "boto3"}),
        }
        before = {root: file_count(root) for root in (artifact, naive)}
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        samples["stream_chat"] = []
        for _ in range(args.runs):
            for name, (root, case) in cases.items():
                samples[name].append(run_child(root, {"name": name, **case}, env))
            samples["stream_chat"].append(stream_case(artifact, stream_env, stream_event))
        written = {str(root): file_count(root) - count for root, count in before.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)

    results = {}
    for name, runs in samples.items():
        results[name] = {
            "median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
            "seconds": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        }
        if "status" in runs[0]:
            results[name]["status"] = runs[0]["status"]
        for extra in ("import_app_seconds", "init_seconds", "first_byte_seconds", "first_body_chunk_seconds"):
            if extra in runs[0]:
                results[name][f"median_{extra}"] = round(statistics.median(r[extra] for r in runs), 3)
        if name == "stream_chat":
            results[name]["body"] = runs[0]["body"]
    expected = {"models": 200, "unauthorized": 401, "chat": 200, "stream_chat": 200}
    wrong = {name: results[name]["status"] for name, status in expected.items() if results[name]["status"] != status}
    bare = results["bare_litellm_naive"]["median_seconds"]
    boto3_naive = results["bare_boto3_naive"]["median_seconds"]
    non_llm = max(results["models"]["median_seconds"], results["unauthorized"]["median_seconds"])
    peak = max(r["peak_rss_mb"] for name, r in results.items() if name in expected)
    ratios = {
        "chat_vs_bare_litellm": round(results["chat"]["median_seconds"] / bare, 3),
        "non_llm_vs_import_boto3": round(non_llm / boto3_naive, 3),
        "non_llm_vs_import_boto3_artifact": round(non_llm / results["bare_boto3_artifact"]["median_seconds"], 3),
        # Informational: the streaming entry point's first body chunk against the buffered chat's whole answer.
        "stream_first_chunk_vs_chat": round(
            results["stream_chat"]["median_first_body_chunk_seconds"] / results["chat"]["median_seconds"], 3
        ),
        "peak_rss_mb": peak,
    }
    report = {
        "python": sys.version.split()[0],
        "runs": args.runs,
        "artifact": "(the source tree and the venv: --source)" if args.source else str(artifact),
        "results": results,
        "ratios": ratios,
        "goals": GOALS,
        "goals_met": {
            "chat_vs_bare_litellm": ratios["chat_vs_bare_litellm"] <= GOALS["chat_vs_bare_litellm"],
            "non_llm_vs_import_boto3": ratios["non_llm_vs_import_boto3"] <= GOALS["non_llm_vs_import_boto3"],
            "peak_rss_mb": peak <= GOALS["peak_rss_mb"],
            "statuses": not wrong,
        },
        "bytecode_files_written": written,
    }
    print(json.dumps(report, indent=2))
    if args.source:  # numbers of unpruned packages: only the statuses count
        return 0 if report["goals_met"]["statuses"] else 1
    return 0 if all(report["goals_met"].values()) and not any(written.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
