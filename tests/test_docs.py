from __future__ import annotations

import re
from pathlib import Path

from chalicelib.protocols.openai_validation import CHAT_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent


def test_compatibility_table_covers_every_parameter_with_its_policy() -> None:
    text = (ROOT / "docs" / "openai-compatibility.md").read_text()
    rows = re.findall(r"^\| (.+?) \| (passed|ignored|refused) \|", text, flags=re.M)
    documented = {}
    for names, policy in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            documented[name] = policy
    assert set(documented) == set(CHAT_PARAMETERS)
    for name, policy in CHAT_PARAMETERS.items():
        assert policy.startswith(documented[name]), name


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make dev" in readme and "make test" in readme
