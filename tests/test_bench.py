"""Every benchmark in bench/ runs, at a tiny size, and prints the JSON it promises: none can rot unseen.

``bench/overhead.py`` once posted ``/v1/chat/completions`` to the Chalice app after that route
had moved to the streaming function, and answered 403 for months: nothing ran it. Each script
here runs as a user runs it (its own process, its own local servers), with options that make
it small; the numbers mean nothing at this size, so only the shape of the output is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

#: script → (tiny-size options, top-level keys its JSON must have).
TINY: dict[str, tuple[list[str], set[str]]] = {
    "catalog.py": (
        ["--requests", "2000", "--dynamodb-latency-ms", "0"],
        {"benchmark", "cold_start_ms", "warm_per_request_us", "five_minutes_of_traffic", "after_60s_idle_ms"},
    ),
    "cold_start.py": (
        ["--source", "--runs", "1"],
        {"python", "runs", "artifact", "results", "ratios", "goals", "goals_met", "bytecode_files_written"},
    ),
    "console_views.py": (
        ["--keys", "20", "--entries", "300", "--owners", "4", "--runs", "1"],
        {"benchmark", "keys", "entries", "owners", "stacks"},
    ),
    "json_parse.py": (["--rounds", "1"], {"rounds", "bodies"}),
    "keepalive.py": (["--requests", "2"], {"requests_per_gap", "gaps_ms", "servers"}),
    "ledger_scale.py": (["--short", "--seconds", "0.2"], {"model", "runs"}),
    "local_dynamodb.py": (["--requests", "20", "--before-requests", "10", "--every", "5"], {"at", "runs"}),
    "messages.py": (
        ["--requests", "2", "--runs", "1"],
        {"requests_per_route", "first_piece", "whole_stream", "messages_minus_chat_first_piece_p50_ms", "claude_code"},
    ),
    "overhead.py": (
        ["--requests", "2", "--warmup", "1"],
        {
            "benchmark",
            "requests_per_path",
            "direct_litellm",
            "gateway_handler",
            "added_p50_ms",
            "front",
            "http_hop_alone",
            "goals_met",
        },
    ),
    "resilience.py": (
        ["--requests", "4", "--cooldown-requests", "2", "--seam-requests", "2", "--seam-calls", "10"],
        {"benchmark", "requests_per_scenario", "throttle_30pct_no_cooldown", "resets_5pct", "seam", "goals_met"},
    ),
    "responses.py": (
        ["--requests", "1", "--warmup", "0", "--pieces", "4", "--codex-runs", "1"],
        {"benchmark", "requests_per_api", "chat", "responses", "responses_minus_chat_p50_ms", "codex_exec"},
    ),
    "streaming.py": (
        ["--requests", "1", "--warmup", "0", "--pieces", "4", "--delay", "0.01", "--long-pieces", "40"],
        {"benchmark", "requests_per_path", "direct", "gateway", "added_first_piece_ms", "long_stream"},
    ),
    "whole_answers.py": (["--rounds", "1", "--sizes", "30"], {"benchmark", "rounds", "sizes"}),
}
#: Modules in bench/ that are not benchmarks themselves.
NOT_BENCHMARKS = {"baseline_v1.py"}  # the previous ledger design, run by ledger_scale.py


def test_every_benchmark_has_a_tiny_run() -> None:
    scripts = {path.name for path in BENCH.glob("*.py")} - NOT_BENCHMARKS
    assert scripts == set(TINY), "give each new benchmark a tiny size here"


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", sorted(TINY))
def test_the_benchmark_runs_and_prints_its_json(script: str, tmp_path: Path) -> None:
    options, keys = TINY[script]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *options], cwd=ROOT, env=env, capture_output=True, text=True, timeout=580
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout, parse_constant=_refuse)  # one document on stdout, no NaN
    assert isinstance(report, dict) and keys <= report.keys(), sorted(report)
