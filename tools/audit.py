"""pip-audit over every hash-pinned requirements file: known vulnerabilities fail the build.

Usage: ``python -m tools.audit [--pip-audit PATH]`` (``make audit``).

Each lock file is audited as it is (``--require-hashes --disable-pip``: nothing is resolved
or installed) against PyPI's advisory database. A package that could not be looked up is
"unaudited", not "safe": in CI (``CI`` set) any unaudited package fails the run; elsewhere,
when nothing at all could be looked up (no network, or an index without PyPI's JSON API),
the audit says so and exits 0, so ``make audit`` is safe to run offline. Found
vulnerabilities fail everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.txt", "requirements-dev.txt", "requirements-tools.txt")


def audit(pip_audit: str, lock: Path) -> dict[str, Any]:
    """pip-audit's JSON report for one lock file.

    Raises
    ------
    RuntimeError
        pip-audit itself failed (not: found vulnerabilities).
    """
    command = [pip_audit, "--require-hashes", "--disable-pip", "--progress-spinner", "off", "--format", "json"]
    result = subprocess.run([*command, "-r", str(lock)], capture_output=True, text=True)  # noqa: S603
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise RuntimeError(f"pip-audit failed on {lock.name}: {result.stderr.strip()[-2000:]}") from None


def summarize(report: dict[str, Any]) -> tuple[list[str], list[str], int]:
    """(vulnerabilities as lines, unaudited packages, audited count) of one report."""
    found, unaudited, audited = [], [], 0
    for dependency in report.get("dependencies", []):
        if dependency.get("skip_reason"):
            unaudited.append(f"{dependency['name']}: {dependency['skip_reason']}")
            continue
        audited += 1
        for vuln in dependency.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            found.append(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
    return found, unaudited, audited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    args = parser.parse_args(argv)
    in_ci = bool(os.environ.get("CI"))
    failed = False
    for name in LOCKS:
        found, unaudited, audited = summarize(audit(args.pip_audit, ROOT / name))
        print(f"{name}: {audited} packages audited, {len(found)} known vulnerabilities, {len(unaudited)} unaudited")
        for line in found:
            print(f"  vulnerable: {line}")
        failed |= bool(found)
        if unaudited and (in_ci or audited):
            for line in unaudited:
                print(f"  unaudited: {line}")
            failed |= in_ci
        elif unaudited:
            print(
                f"warning: none of {name}'s packages could be looked up (offline, or an index without PyPI's "
                "JSON API): not audited here. CI audits them.",
                file=sys.stderr,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
