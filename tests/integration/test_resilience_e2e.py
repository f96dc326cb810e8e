"""What `make dev` shows of issue 21, through the real local stack and the official SDK.

A throttled model answers from its fallback, named (header and usage) and billed at the
fallback's price; a guardrail set on a key with the CLI intervenes, ends the answer with
``content_filter`` and is billed its text units.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from click.testing import CliRunner

from cli.main import cli
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID

pytestmark = pytest.mark.integration


def pw_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["--local", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def client(dev_info: dict[str, Any], secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=dev_info["base_url"], api_key=secret, max_retries=0, timeout=30)


def test_a_throttled_model_answers_from_its_fallback_named_and_billed(dev_info: dict[str, Any]) -> None:
    sdk = client(dev_info, dev_info["api_key"])
    raw = sdk.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Hi #emulator:throttle #emulator:only=us"}],
    )
    reply = raw.parse()
    assert raw.headers["x-pennyworth-served-by"].startswith("claude-haiku-4-5-global (global.anthropic.")
    usage = reply.usage.model_extra
    assert usage["served_model"] == "claude-haiku-4-5-global"
    # Billed at the global profile's price ($1 / $5 per million), not the us. profile's ($1.1 / $5.5).
    expected = (Decimal(reply.usage.prompt_tokens) * 1 + Decimal(reply.usage.completion_tokens) * 5) / 1_000_000
    assert Decimal(usage["cost_usd"]) == expected


def test_a_guardrail_set_on_a_key_with_the_cli_intervenes_and_is_billed(
    project: Path, dev_info: dict[str, Any]
) -> None:
    CliRunner().invoke(cli, ["--local", "login"], catch_exceptions=False)
    key = pw_json("keys", "create", "--name", "guarded", "--guardrail", f"{DEMO_GUARDRAIL_ID}:1", "--fallback", "none")
    assert key["guardrail"] == {"id": DEMO_GUARDRAIL_ID, "version": "1"} and key["model_fallback"] == "none"
    sdk = client(dev_info, key["secret"])
    allowed = sdk.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "Hello"}])
    assert allowed.choices[0].finish_reason == "stop"
    assert allowed.usage.model_extra["guardrail_text_units"] > 0
    blocked = sdk.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Hello #emulator:guardrail=input"}]
    )
    assert blocked.choices[0].finish_reason == "content_filter"
    extra = blocked.usage.model_extra
    # The prompt was blocked before the model: no tokens, only the guardrail's text units are billed.
    assert Decimal(extra["guardrail_cost_usd"]) > 0
    assert Decimal(extra["cost_usd"]) == Decimal(extra["guardrail_cost_usd"])
    # A guardrail the stack may not apply is refused when it is set, naming the fix.
    refused = CliRunner().invoke(cli, ["--local", "keys", "update", key["key_id"], "--guardrail", "otherone:1"])
    assert refused.exit_code == 1 and "GuardrailIds" in refused.output
