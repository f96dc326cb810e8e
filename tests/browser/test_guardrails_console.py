"""Guardrails in the console, in a real browser against the real local stack (the emulator plays Bedrock).

A key's guardrail and fallback policy from its Edit dialog, a team's guardrail on the Teams page
(admins), and the guardrail prices on the Models page: each applied by the gateway, not just shown.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Account, ConsolePage
from tests.browser.test_console import admin_api, close_secret, create_key_in_ui, edit_dialog, key_view, openai_client

pytestmark = pytest.mark.integration


def blocked(dev_info: dict[str, Any], secret: str) -> str | None:
    """The finish reason of a prompt the demo guardrail blocks when the call carries it."""
    answer = openai_client(dev_info, secret).chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Hi #emulator:guardrail=input"}], max_tokens=16
    )
    return answer.choices[0].finish_reason


def save(console: ConsolePage, dialog: Any) -> None:
    dialog.get_by_role("button", name="Save changes").click()
    console.page.locator("dialog[open]").wait_for(state="detached")
    console.settle()


def test_the_key_edit_dialog_sets_a_guardrail_and_the_fallback_policy_and_the_gateway_applies_them(
    console: ConsolePage, user: Account, dev_info: dict[str, Any]
) -> None:
    console.sign_in(user)
    console.settle()
    secret = create_key_in_ui(console, "guarded")
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]
    assert blocked(dev_info, secret) == "stop"
    # WHEN the owner gives the key the demo guardrail and forbids fallbacks to other models
    dialog = edit_dialog(console, prefix, "guarded")
    expect(dialog.get_by_label("When the model is throttled or failing")).to_have_value("any")
    dialog.get_by_label("Bedrock guardrail (id:version)").fill("pennyworthdemo:1")
    dialog.get_by_label("When the model is throttled or failing").select_option("same_model")
    console.screenshot("14-edit-key-guardrail", full_page=False)
    save(console, dialog)
    # THEN the API has both, and the gateway applies the guardrail to the next call
    mine = console.call_api("GET", "admin/keys?owner=me")["data"]["data"]
    key = next(k for k in mine if k["prefix"] == prefix)
    assert key["guardrail"] == {"id": "pennyworthdemo", "version": "1"} and key["model_fallback"] == "same_model"
    assert blocked(dev_info, secret) == "content_filter"
    # WHEN a guardrail the stack may not apply is typed THEN the dialog shows the API's refusal, next to it
    dialog = edit_dialog(console, prefix, "guarded")
    expect(dialog.get_by_label("Bedrock guardrail (id:version)")).to_have_value("pennyworthdemo:1")
    dialog.get_by_label("Bedrock guardrail (id:version)").fill("notallowed:1")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog.get_by_role("alert")).to_contain_text("GuardrailIds")
    # AND emptied, the key carries none again (only what changed is sent: the policy stays)
    dialog.get_by_label("Bedrock guardrail (id:version)").fill("")
    save(console, dialog)
    key = console.call_api("GET", f"admin/keys/{key['key_id']}")["data"]
    assert key["guardrail"] is None and key["model_fallback"] == "same_model"
    assert blocked(dev_info, secret) == "stop"
    assert key_view(dev_info, secret)["key_id"] == key["key_id"]


def test_an_admin_sets_a_teams_guardrail_on_its_page_and_the_teams_keys_carry_it(
    console: ConsolePage, admin: Account, dev_info: dict[str, Any]
) -> None:
    page = console.page
    team = admin_api(dev_info, "POST", "admin/teams", {"name": "Guarded Team"})
    secret = admin_api(dev_info, "POST", "admin/keys", {"team": team["id"], "team_owned": True})["secret"]
    console.sign_in(admin)
    console.open(f"teams?team={team['id']}")
    expect(page.locator("#page-title")).to_have_text("Team Guarded Team")
    page.get_by_label("Guardrail (id:version)").fill("pennyworthdemo:DRAFT")
    page.get_by_role("button", name="Save guardrail").click()
    console.settle()
    expect(page.locator(".stats")).to_contain_text("pennyworthdemo (version DRAFT)")
    console.screenshot("21-team-guardrail", full_page=False)
    assert blocked(dev_info, secret) == "content_filter"
    events = console.call_api("GET", f"admin/teams/{team['id']}/audit")["data"]["data"]
    assert events[-1]["changes"]["guardrail"]["to"] == {"id": "pennyworthdemo", "version": "DRAFT"}


def test_an_admin_sets_guardrail_prices_on_the_models_page(console: ConsolePage, admin: Account) -> None:
    page = console.page
    console.sign_in(admin)
    console.open("admin/models")
    card = page.locator("section.card").filter(has_text="Guardrail prices, USD per 1,000 text units")
    expect(card).to_contain_text("In force: LiteLLM's map")
    card.get_by_label("topicPolicyUnits").fill("0.2")
    card.get_by_role("button", name="Save guardrail prices").click()
    console.settle()
    expect(card).to_contain_text("In force: version 1")
    expect(card).to_contain_text("topicPolicyUnits $0.2")
    console.screenshot("22-guardrail-prices", full_page=False)
    found = console.call_api("GET", "admin/guardrail-prices")["data"]
    assert found["in_force"]["per_1000_units"]["topicPolicyUnits"] == "0.2"
    assert found["in_force"]["per_1000_units"]["contentPolicyUnits"] == found["default"]["per_1000_units"][
        "contentPolicyUnits"
    ]
