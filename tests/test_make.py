"""The Makefile's deploy-side targets fail early and clearly, and never after the work is done."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("ARTIFACT_BUCKET", "CI")}
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=cwd, env={**environment, **(env or {})},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_deploy_without_an_artifact_bucket_fails_before_building(tmp_path: Path) -> None:
    started = time.monotonic()
    result = make("deploy", f"BUILD_ROOT={tmp_path}")
    assert result.returncode != 0
    assert "ARTIFACT_BUCKET" in result.stderr and "docs/deployment.md" in result.stderr
    assert time.monotonic() - started < 10  # not after a 35 s build
    assert "chalice package" not in result.stdout + result.stderr


@pytest.fixture
def offline_tools(tmp_path: Path) -> Path:
    """A tools venv whose pip cannot install anything (no network), and no actionlint on PATH."""
    venv = tmp_path / "tools"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'ERROR: Could not install packages (network is unreachable)' >&2\nexit 1\n")
    python.chmod(0o755)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (time.time() + 3600, time.time() + 3600))  # newer than the lock
    return venv


def _path_without_actionlint() -> str:
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "actionlint").exists())


def test_workflow_lint_offline_is_a_warning_locally(offline_tools: Path) -> None:
    result = make("lint-workflows", f"TOOLS_VENV={offline_tools}", env={"PATH": _path_without_actionlint()})
    assert result.returncode == 0, result.stderr
    assert "warning: actionlint" in result.stderr and "not linted" in result.stderr


def test_workflow_lint_offline_fails_in_ci(offline_tools: Path) -> None:
    env = {"PATH": _path_without_actionlint(), "CI": "true"}
    result = make("lint-workflows", f"TOOLS_VENV={offline_tools}", env=env)
    assert result.returncode != 0 and "actionlint" in result.stderr


@pytest.mark.parametrize("target", ["chalice-deploy", "chalice-delete"])
def test_chalice_deploy_without_credentials_fails_before_building(target: str) -> None:
    # GIVEN no AWS credentials anywhere WHEN the one command runs THEN it stops at once, saying what to do
    env = {
        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }  # fmt: skip
    started = time.monotonic()
    result = make(target, env=env)
    assert result.returncode != 0
    assert "error: no AWS credentials" in result.stderr, result.stderr
    assert time.monotonic() - started < 30 and "chalice package" not in result.stdout + result.stderr
