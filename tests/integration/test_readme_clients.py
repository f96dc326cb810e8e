"""Every Python example in the README's Clients section runs, unmodified but for the port, against the stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
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


QUICKSTART = README.read_text().split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]


def test_the_quickstart_stream_is_seen_arriving_piece_by_piece(dev_info, tmp_path: Path) -> None:
    # GIVEN the Quickstart's openai example, with this stack's address and key
    [code] = re.findall(r"```python\n(.*?)```", QUICKSTART, flags=re.S)
    assert '"pw-…"' in code and "#emulator:chunk_delay=" in code
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace("http://127.0.0.1:8000", dev_info["base_url"].removesuffix("/v1")).replace(
        '"pw-…"', repr(dev_info["api_key"])
    ))  # fmt: skip
    # WHEN it runs, its output read as it comes
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    arrivals: list[tuple[float, bytes]] = []
    while piece := os.read(process.stdout.fileno(), 4096):  # type: ignore[union-attr]
        arrivals.append((time.monotonic(), piece))
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
    # THEN the streamed answer came in pieces, the emulator's pauses between them
    text = b"".join(piece for _, piece in arrivals).decode()
    assert text.endswith('You said: "Count with me: one two three four five six seven eight"\n'), text
    streamed = [(at, piece) for at, piece in arrivals if b"Hello, pennyworth!" not in piece]
    assert len(streamed) >= 4, arrivals
    assert streamed[-1][0] - streamed[0][0] >= 0.2 * (len(streamed) - 2)
