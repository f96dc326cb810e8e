"""Pin a new copy of OpenAI's OpenAPI description for the conformance tests (tests/reference/).

The tests validate our answers against the schemas of ``openapi.yaml`` in
https://github.com/openai/openai-openapi (MIT). The repository carries one
pinned copy, gzipped (3 MB of YAML, 0.4 MB compressed), beside its license and
a record of where it came from (``openai-openapi.json``: commit, date, API
version, the SHA-256 of the YAML). ``tests/openai_schema.py`` reads it; the
record's SHA-256 is checked by ``tests/test_openai_spec.py``.

Usage::

    python -m tools.update_openai_spec --commit <sha>      # download that commit's files
    python -m tools.update_openai_spec --commit <sha> --from DIR  # a checkout of that commit

then run ``make test``: a newer description may find answers that no longer conform.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPOSITORY = "https://github.com/openai/openai-openapi"
RAW = "https://raw.githubusercontent.com/openai/openai-openapi/{commit}/{name}"
REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "reference"
SPEC_GZ = "openai-openapi.yaml.gz"
LICENSE = "openai-openapi.LICENSE"
RECORD = "openai-openapi.json"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(r"^info:\n(?:  .*\n)*?  version: ['\"]?([^'\"\n]+)", re.M)


def _git(source: Path, *args: str) -> str:
    """What git says about the checkout ``source`` ("" when it is not one)."""
    command = ["git", "-C", str(source), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603, S607


def fetch(commit: str, name: str, source: Path | None) -> bytes:
    """``name`` of ``commit``: from the checkout ``source`` (its HEAD must be ``commit``), or downloaded."""
    if source is not None:
        head = _git(source, "rev-parse", "HEAD")
        if head and head != commit:
            raise SystemExit(f"{source} is at {head}, not {commit}: check out that commit first")
        return (source / name).read_bytes()
    with urllib.request.urlopen(RAW.format(commit=commit, name=name), timeout=60) as answer:  # noqa: S310 - https
        return answer.read()


def committed_at(commit: str, source: Path | None) -> str | None:
    """The commit's date (ISO 8601), when a checkout can tell it."""
    return (_git(source, "log", "-1", "--format=%cI", commit) or None) if source is not None else None


def gzipped(data: bytes) -> bytes:
    """``data`` gzipped the same way every time (no name, no time stamp): one commit, one file."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def update(commit: str, *, source: Path | None = None, out: Path = REFERENCE) -> dict[str, Any]:
    """Write the spec of ``commit``, its license and its record into ``out``; returns the record."""
    if not _COMMIT.match(commit):
        raise SystemExit(f"--commit must be a full 40-character commit id, not {commit!r}")
    spec = fetch(commit, "openapi.yaml", source)
    license_text = fetch(commit, "LICENSE", source)
    version = _VERSION.search(spec.decode("utf-8"))
    record = {
        "source": f"{REPOSITORY}/blob/{commit}/openapi.yaml",
        "commit": commit,
        "committed_at": committed_at(commit, source),
        "api_version": version.group(1) if version else None,
        "license": "MIT (openai-openapi.LICENSE)",
        "sha256": hashlib.sha256(spec).hexdigest(),
        "bytes": len(spec),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC_GZ).write_bytes(gzipped(spec))
    (out / LICENSE).write_bytes(license_text)
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True, help="the openai/openai-openapi commit to pin (40 hex digits)")
    parser.add_argument("--from", dest="source", type=Path, help="a local checkout of that commit (offline)")
    parser.add_argument("--out", type=Path, default=REFERENCE, help="default: tests/reference")
    args = parser.parse_args(argv)
    record = update(args.commit, source=args.source, out=args.out)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
