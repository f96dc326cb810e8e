"""The console's Models page in a real browser against the real local stack: the live catalog, by hand."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Account, ConsolePage

pytestmark = pytest.mark.integration


def model_row(console: ConsolePage, alias: str) -> Any:
    return console.page.locator("table.data tbody tr").filter(has=console.page.locator("strong", has_text=alias))


def test_add_reprice_disable_test_and_remove_a_model_without_touching_code(
    console: ConsolePage, admin: Account
) -> None:
    page = console.page
    console.sign_in(admin)
    # The admin has a key to bill the test to.
    assert console.call_api("POST", "admin/keys", {"name": "models page"})["ok"]
    console.open("admin/models")
    # GIVEN the seeded catalog, with prices per million tokens
    expect(model_row(console, "nova-micro")).to_contain_text("$0.035")
    console.screenshot("20-models")

    # WHEN an admin adds a model with a bad price THEN the form says which field
    page.get_by_role("button", name="Add a model").click()
    dialog = page.get_by_role("dialog", name="Add a model")
    dialog.get_by_label("Alias").fill("nova-pro-ui")
    dialog.get_by_label("Model id").fill("us.amazon.nova-pro-v1:0")
    dialog.get_by_label("Input", exact=True).fill("0.90")
    dialog.get_by_label("Output", exact=True).fill("3.10")
    dialog.get_by_label("Cache read").fill("99999")
    dialog.get_by_role("button", name="Add model").click()
    expect(dialog.locator(".form-error")).to_contain_text("over $1000")
    expect(dialog.get_by_label("Cache read")).to_have_attribute("aria-invalid", "true")
    # AND with a sane one it is added, and listed at once
    dialog.get_by_label("Cache read").fill("0.225")
    dialog.get_by_role("button", name="Add model").click()
    dialog.wait_for(state="detached")
    console.settle()
    row = model_row(console, "nova-pro-ui")
    expect(row).to_contain_text("$0.9")
    expect(row).to_contain_text("$3.1")
    expect(row).to_contain_text("enabled")

    # WHEN its price changes THEN the new price shows (a new version)
    row.get_by_role("button", name="Edit nova-pro-ui").click()
    edit = page.get_by_role("dialog", name="Edit nova-pro-ui")
    edit.get_by_label("Input", exact=True).fill("1.20")
    edit.get_by_role("button", name="Save changes").click()
    edit.wait_for(state="detached")
    console.settle()
    expect(model_row(console, "nova-pro-ui")).to_contain_text("$1.2")
    versions = console.call_api("GET", "admin/models/nova-pro-ui")["data"]["price_versions"]
    assert [(v["version"], v["input"], v["output"]) for v in versions] == [(1, "0.9", "3.1"), (2, "1.2", "3.1")]

    # WHEN it is disabled THEN it says so; enabled again
    model_row(console, "nova-pro-ui").get_by_role("button", name="Disable nova-pro-ui").click()
    expect(model_row(console, "nova-pro-ui")).to_contain_text("disabled")
    model_row(console, "nova-pro-ui").get_by_role("button", name="Enable nova-pro-ui").click()
    expect(model_row(console, "nova-pro-ui")).to_contain_text("enabled")

    # WHEN it is tested THEN the status, latency, tokens and exact cost are reported
    model_row(console, "nova-pro-ui").get_by_role("button", name="Test nova-pro-ui").click()
    result = page.get_by_role("dialog", name="Test of nova-pro-ui")
    # The API function's first model call imports LiteLLM (seconds), as a cold Lambda would.
    expect(result).to_contain_text("200 OK", timeout=60_000)
    expect(result).to_contain_text("Cost (exact)")
    expect(result).to_contain_text("bedrock/converse/us.amazon.nova-pro-v1:0")
    console.screenshot("21-model-test")
    result.get_by_role("button", name="Close").click()

    # AND the key dialog's model picker offers it (it reads the live catalog)
    console.open("keys")
    page.get_by_role("button", name="Create key").click()
    create = page.get_by_role("dialog", name="Create a key")
    create.get_by_label("Only these:").check()
    expect(create.get_by_label("nova-pro-ui", exact=False)).to_be_visible()
    create.get_by_role("button", name="Cancel").click()

    # WHEN it is removed THEN it is gone
    console.open("admin/models")
    model_row(console, "nova-pro-ui").get_by_role("button", name="Remove nova-pro-ui").click()
    page.get_by_role("dialog", name="Remove nova-pro-ui?").get_by_role("button", name="Remove model").click()
    console.settle()
    expect(model_row(console, "nova-pro-ui")).to_have_count(0)


def test_a_plain_user_is_refused_the_models_page(console: ConsolePage, user: Account) -> None:
    console.sign_in(user)
    console.open("admin/models")
    # The list is readable (a key's picker needs it), changes are not.
    expect(console.page.locator("table.data")).to_be_visible()
    refused = console.call_api("POST", "admin/models", {"alias": "x", "provider": "bedrock", "model_id": "m"})
    assert refused["ok"] is False and refused["status"] == 403 and refused["code"] == "admin_only"
