"""The pinned copy of OpenAI's OpenAPI description (tests/reference) is whole, recorded and reproducible."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from tools import update_openai_spec

REFERENCE = Path(__file__).resolve().parent / "reference"
RECORD = json.loads((REFERENCE / update_openai_spec.RECORD).read_text())


def test_the_spec_is_the_file_its_record_names() -> None:
    spec = gzip.decompress((REFERENCE / update_openai_spec.SPEC_GZ).read_bytes())
    assert hashlib.sha256(spec).hexdigest() == RECORD["sha256"] and len(spec) == RECORD["bytes"]
    assert f"\n  version: {RECORD['api_version']}\n" in spec.decode()
    assert RECORD["commit"] in RECORD["source"] and RECORD["source"].startswith(update_openai_spec.REPOSITORY)
    assert (REFERENCE / update_openai_spec.LICENSE).read_text().startswith("The MIT License")


def test_every_reference_file_is_small_enough_to_track() -> None:
    for path in REFERENCE.iterdir():
        assert path.stat().st_size < 5_000_000, path


def test_the_update_script_reproduces_the_pinned_files(tmp_path: Path) -> None:
    # GIVEN the upstream files of the pinned commit (here: from the pinned copy itself)
    upstream = tmp_path / "checkout"
    upstream.mkdir()
    (upstream / "openapi.yaml").write_bytes(gzip.decompress((REFERENCE / update_openai_spec.SPEC_GZ).read_bytes()))
    (upstream / "LICENSE").write_bytes((REFERENCE / update_openai_spec.LICENSE).read_bytes())
    # WHEN the update script pins them again
    record = update_openai_spec.update(RECORD["commit"], source=upstream, out=tmp_path / "out")
    # THEN it writes the same bytes and the same record (the date comes from git, absent here)
    for name in (update_openai_spec.SPEC_GZ, update_openai_spec.LICENSE):
        assert (tmp_path / "out" / name).read_bytes() == (REFERENCE / name).read_bytes(), name
    assert {**record, "committed_at": RECORD["committed_at"]} == RECORD
