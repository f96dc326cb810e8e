"""tools/audit.py: vulnerabilities fail; an unreachable advisory service is a warning offline, an error in CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools import audit


def fake_pip_audit(tmp_path: Path, report: dict[str, Any]) -> str:
    script = tmp_path / "pip-audit"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(report)}\nEOF\n")
    script.chmod(0o755)
    return str(script)


VULNERABLE = {"dependencies": [
    {"name": "litellm", "version": "1.82.7", "vulns": [{"id": "GHSA-x", "fix_versions": ["1.82.9"]}]},
    {"name": "boto3", "version": "1.44.8", "vulns": []},
]}  # fmt: skip
UNREACHABLE = {"dependencies": [{"name": "boto3", "skip_reason": "Dependency not found on PyPI"}]}
CLEAN = {"dependencies": [{"name": "boto3", "version": "1.44.8", "vulns": []}]}


@pytest.mark.parametrize(
    ("report", "ci", "code"),
    [(VULNERABLE, False, 1), (VULNERABLE, True, 1), (UNREACHABLE, False, 0), (UNREACHABLE, True, 1),
     (CLEAN, False, 0), (CLEAN, True, 0)],
)  # fmt: skip
def test_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, report: dict, ci: bool, code: int
) -> None:
    monkeypatch.delenv("CI", raising=False)
    if ci:
        monkeypatch.setenv("CI", "true")
    assert audit.main(["--pip-audit", fake_pip_audit(tmp_path, report)]) == code
    captured = capsys.readouterr()
    if report is VULNERABLE:
        assert "litellm 1.82.7: GHSA-x (fixed in 1.82.9)" in captured.out
    if report is UNREACHABLE and not ci:
        assert "not audited here" in captured.err


def test_a_failing_pip_audit_is_an_error_not_a_pass(tmp_path: Path) -> None:
    script = tmp_path / "pip-audit"
    script.write_text("#!/bin/sh\necho boom >&2\nexit 2\n")
    script.chmod(0o755)
    with pytest.raises(RuntimeError, match="boom"):
        audit.main(["--pip-audit", str(script)])
