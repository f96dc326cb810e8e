"""``pennyworth models guardrail-prices``: what it sends, and what it prints (escaped on a terminal)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.test_cli_output import EVIL, assert_harmless, terminal_run
from tests.test_cli_teams import Recorder, api, run  # noqa: F401 - the fixture

SHOWN = {
    "object": "guardrail_prices", "unit": "USD per 1,000 text units",
    "in_force": {"version": 1, "per_1000_units": {"contentPolicyUnits": "0.1", "topicPolicyUnits": "0.15"}},
    "versions": [{"version": 1, "effective_from": "2027-01-01T00:00:00Z", "set_by": EVIL, "set_at": EVIL,
                  "per_1000_units": {"contentPolicyUnits": "0.1", "topicPolicyUnits": "0.15"}}],
    "default": {"source": "litellm 1", "per_1000_units": {"contentPolicyUnits": "0.15", "topicPolicyUnits": "0.15"}},
}  # fmt: skip


def test_it_shows_the_prices_in_force_beside_litellms_and_sets_a_new_version(api: Recorder) -> None:  # noqa: F811
    api.answers.update({("GET", "/admin/guardrail-prices"): SHOWN, ("PATCH", "/admin/guardrail-prices"): SHOWN})
    shown = run("models", "guardrail-prices")
    assert "contentPolicyUnits\t$0.1\t$0.15\n" in shown.stdout  # in force, then LiteLLM's
    assert "\n1\t2027-01-01T00:00:00Z\t" in shown.stdout  # the versions
    run("models", "guardrail-prices", "--set", "contentPolicyUnits=0.10", "--set", "wordPolicyUnits=none",
        "--effective-from", "2027-01-01T00:00:00Z", "--force", "--json")  # fmt: skip
    assert api.calls[-1] == (
        "PATCH",
        "/admin/guardrail-prices",
        {"per_1000_units": {"contentPolicyUnits": "0.10", "wordPolicyUnits": None},
         "effective_from": "2027-01-01T00:00:00Z", "force": True},
    )  # fmt: skip


def test_a_malformed_price_or_a_lone_effective_time_is_a_usage_error(api: Recorder) -> None:  # noqa: F811
    assert CliRunner().invoke(cli, ["models", "guardrail-prices", "--set", "contentPolicyUnits"]).exit_code == 2
    assert CliRunner().invoke(cli, ["models", "guardrail-prices", "--effective-from", "2027"]).exit_code == 2
    assert api.calls == []


def test_untrusted_text_is_escaped_on_a_terminal(api: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    api.answers[("GET", "/admin/guardrail-prices")] = SHOWN
    assert_harmless(terminal_run(monkeypatch, "models", "guardrail-prices"), folded=True)
