from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalicelib.protocols.anthropic.parse import COUNT_TOKENS_PARAMETERS, MESSAGES_PARAMETERS
from chalicelib.protocols.openai_chat.parse import CHAT_PARAMETERS
from chalicelib.protocols.openai_responses.parse import RESPONSES_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
COMPATIBILITY = (ROOT / "docs" / "openai-compatibility.md").read_text()
#: The Responses API's section of the compatibility doc; everything before it is about chat completions.
RESPONSES_HEADING = "\n## The Responses API (`POST /v1/responses`)\n"


def documented_policies(text: str) -> dict[str, str]:
    rows = re.findall(r"^\| (.+?) \| (passed|ignored|refused) \|", text, flags=re.M)
    documented = {}
    for names, policy in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            documented[name] = policy
    return documented


@pytest.mark.parametrize(
    ("section", "policies"),
    [
        (COMPATIBILITY.split(RESPONSES_HEADING, 1)[0], CHAT_PARAMETERS),
        (COMPATIBILITY.split(RESPONSES_HEADING, 1)[1].split("\n## ", 1)[0], RESPONSES_PARAMETERS),
    ],
    ids=["chat completions", "responses"],
)
def test_compatibility_table_covers_every_parameter_with_its_policy(section: str, policies: dict) -> None:
    documented = documented_policies(section)
    assert set(documented) == set(policies)
    for name, policy in policies.items():
        assert policy.startswith(documented[name]), name


def test_anthropic_table_covers_every_messages_parameter_with_its_policy() -> None:
    text = (ROOT / "docs" / "anthropic-compatibility.md").read_text()
    parameters = text.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (passed|ignored|refused) \|", parameters, flags=re.M)
    documented = {}
    for names, policy in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            documented[name] = policy
    assert set(documented) == set(MESSAGES_PARAMETERS)
    for name, policy in MESSAGES_PARAMETERS.items():
        assert policy.startswith(documented[name]), name
    # count_tokens takes a subset, each with the same policy, and the page names every one of them
    counted = text.split("`POST /v1/messages/count_tokens` takes", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", counted)) == set(COUNT_TOKENS_PARAMETERS)


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make dev" in readme and "make test" in readme


@pytest.mark.parametrize("client", sorted(p.name for p in (ROOT / "tests" / "clients").iterdir() if p.is_dir()))
def test_readme_states_the_node_version_each_pinned_client_needs(client: str) -> None:
    import json

    directory = ROOT / "tests" / "clients" / client
    [(package, version)] = json.loads((directory / "package.json").read_text())["dependencies"].items()
    lock = json.loads((directory / "package-lock.json").read_text())
    engine = lock["packages"][f"node_modules/{package}"]["engines"]["node"]
    minimum = re.fullmatch(r">=\s*(\d+(?:\.\d+)*)", engine).group(1)  # type: ignore[union-attr]
    while minimum.endswith(".0"):
        minimum = minimum.removesuffix(".0")
    assert f" {version} Node.js {minimum} or newer" in (ROOT / "README.md").read_text().replace("\n", " ")
