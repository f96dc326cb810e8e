"""Every Python example in the README's Clients section runs, unmodified but for the port, against the stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("\n## Clients\n", 1)[1].split("\n## ", 1)[0]
EXAMPLES = {
    heading: code
    for heading, body in re.findall(r"^### (.+?)\n(.*?)(?=^### |\Z)", SECTION, flags=re.M | re.S)
    for code in re.findall(r"```python\n(.*?)```", body, flags=re.S)
}


def test_the_section_has_an_example_per_client() -> None:
    assert set(EXAMPLES) == {
        "openai SDK",
        "openai SDK: the Responses API",
        "anthropic SDK",
        "LangChain",
        "MCP (Python SDK)",
    }


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("openai SDK", ["get_weather {'city':", "Tool get_weather returned: sunny", "2 256"]),
        (
            "anthropic SDK",
            [
                "['thinking', 'text'] You said: \"Hello from the anthropic SDK\"",
                'You said: "Stream, please"',
                "input_tokens=",
            ],
        ),
        (
            "openai SDK: the Responses API",
            ['get_weather {"city":', "Tool get_weather returned: sunny", 'You said: "Stream, please"', "cost: 0.0"],
        ),
        (
            "LangChain",
            ['You said: "Hello from LangChain"', 'You said: "Stream, please"', "'name': 'GetWeather'", "1024"],
        ),
        (
            "MCP (Python SDK)",
            ["['chat', 'list_models', 'embed', 'get_usage', 'count_tokens']", 'You said: "Hello over MCP"'],
        ),
    ],
)
def test_readme_example_runs(dev_info, tmp_path: Path, heading: str, expected: list[str]) -> None:
    api = dev_info["base_url"].removesuffix("/v1")
    script = tmp_path / "example.py"
    script.write_text(EXAMPLES[heading].replace("http://127.0.0.1:8000", api))
    env = {**os.environ, "PENNYWORTH_KEY": dev_info["api_key"]}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    for fragment in expected:
        assert fragment in result.stdout, result.stdout
