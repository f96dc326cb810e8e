"""The web console in a real browser against the real local stack (see conftest.py)."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from local import bootstrap
from tests.browser.conftest import Account, ConsolePage
from tests.waiting import eventually

pytestmark = pytest.mark.integration

XSS_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>"><b>bold</b>'


def create_key_in_ui(console: ConsolePage, name: str, *, budget: str = "", models: tuple[str, ...] = ()) -> str:
    """Create a key through the dialog; returns the secret the console shows once."""
    page = console.page
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Create a key")
    dialog.get_by_label("Name").fill(name)
    if budget:
        dialog.get_by_label("Monthly budget, USD (optional)").fill(budget)
    if models:
        dialog.get_by_label("Only these:").check()
        for model in models:
            dialog.get_by_label(model, exact=False).first.check()
    dialog.get_by_role("button", name="Create key").click()
    secret_dialog = page.get_by_role("dialog", name="Your new key")
    secret_dialog.wait_for()
    secret = secret_dialog.get_by_role("textbox").input_value()
    assert re.fullmatch(r"pw-[a-z0-9]{12}-[A-Za-z0-9]{40}", secret), secret
    return secret


def close_secret(console: ConsolePage) -> None:
    console.page.get_by_role("button", name="I have saved it").click()
    console.page.locator("dialog[open]").wait_for(state="detached")
    console.settle()


def row(console: ConsolePage, text: str) -> Any:
    return console.page.locator("table.data tbody tr").filter(has_text=text)


def key_view(dev_info: dict[str, Any], secret: str) -> dict[str, Any]:
    """``GET /v1/key``: the key's own limits and this month's usage, as the key holder reads it."""
    return openai_client(dev_info, secret).get("/key", cast_to=dict)


def openai_client(dev_info: dict[str, Any], secret: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=dev_info["base_url"], api_key=secret, max_retries=0, timeout=30)


# --- Signing in and out ------------------------------------------------------------------------


def test_sign_in_page_says_it_is_local_and_tokens_stay_out_of_storage(console: ConsolePage, admin: Account) -> None:
    page = console.page
    page.goto(console.url)
    expect(page.get_by_text("Local development stack.")).to_be_visible()
    expect(page.locator("#local-badge")).to_be_visible()
    console.screenshot("01-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console-login/oauth2/authorize**")
    expect(page.get_by_text("Local development sign-in.")).to_be_visible()
    # The authorization request is the code flow with PKCE, as on Cognito's managed login.
    assert "code_challenge_method=S256" in page.url and "response_type=code" in page.url
    console.screenshot("02-local-login")

    # GIVEN a wrong password THEN the login page says so and issues nothing
    page.get_by_label("Email address").fill(admin.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Incorrect email address or password."

    page.get_by_label("Password").fill(admin.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    console.settle()
    # The code is gone from the address bar; no token in any web storage or cookie of the console.
    assert "code=" not in page.url
    storage = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert "eyJ" not in storage, storage
    assert page.evaluate("() => localStorage.length") == 0

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    storage = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
    assert "eyJ" not in storage
    # After sign-out the login's own session is gone as well: signing in asks for the password.
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Password").wait_for()


def test_reload_signs_in_again_silently_while_the_login_session_lasts(console: ConsolePage, user: Account) -> None:
    console.sign_in(user)
    console.page.reload()
    console.page.get_by_role("button", name="Sign out").wait_for()
    expect(console.page.get_by_text(user.username)).to_be_visible()


# --- Keys: create, use, spend, rotate, revoke ---------------------------------------------------


def test_create_a_key_use_it_with_the_openai_sdk_and_see_the_usage(
    console: ConsolePage, admin: Account, dev_info: dict[str, Any]
) -> None:
    page = console.page
    console.sign_in(admin)
    console.settle()
    secret = create_key_in_ui(console, "browser test key", budget="5.00", models=("nova-micro",))
    dialog = page.get_by_role("dialog", name="Your new key")
    assert "shown only once" in dialog.inner_text()
    console.screenshot("03-secret-once", full_page=False)
    # The copy button puts exactly the secret on the clipboard.
    dialog.get_by_role("button", name="Copy key").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]
    expect(row(console, prefix).get_by_text("active")).to_be_visible()

    reply = openai_client(dev_info, secret).chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Hello from the console test"}]
    )
    assert reply.choices[0].message.content
    # Usage trails billing by the aggregator's delay (docs/accounting.md): wait for the key to count it.
    mine = eventually(lambda: key_view(dev_info, secret), lambda view: view["usage"]["requests"] >= 1)
    assert mine["usage"]["requests"] == 1

    console.open("keys")
    assert "of $5.00" in row(console, prefix).inner_text()
    console.screenshot("04-my-keys")

    console.open("spend")
    per_model = page.get_by_role("list", name="Cost per model")
    assert "nova-micro" in per_model.inner_text()
    assert "1 request" in page.get_by_role("list", name="Cost per key").filter(has_text=prefix).inner_text()
    expect(page.get_by_role("img", name=re.compile("Cost per day"))).to_be_visible()
    console.screenshot("05-my-spend")

    console.open("admin/usage")
    page.get_by_label("Group by").select_option("model")
    page.get_by_role("button", name="Show usage").click()
    console.settle()
    expect(row(console, "nova-micro")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text(encoding="utf-8")
    assert csv_text.splitlines()[0].startswith('"Model","Requests"')
    assert any(line.startswith('"nova-micro",') for line in csv_text.splitlines())
    console.screenshot("06-admin-usage")


def test_rotate_with_grace_then_revoke_with_confirmation(
    console: ConsolePage, user: Account, dev_info: dict[str, Any]
) -> None:
    from openai import AuthenticationError

    page = console.page
    console.sign_in(user)
    console.settle()
    old_secret = create_key_in_ui(console, "rotate me")
    close_secret(console)
    prefix = old_secret.rsplit("-", 1)[0]

    row(console, prefix).get_by_role("button", name="Rotate rotate me").click()
    dialog = page.get_by_role("dialog", name="Rotate “rotate me”")
    dialog.get_by_label("The current secret stops working").select_option("3600")
    dialog.get_by_role("button", name="Rotate key").click()
    secret_dialog = page.get_by_role("dialog", name="The key's new secret")
    new_secret = secret_dialog.get_by_role("textbox").input_value()
    assert new_secret != old_secret and new_secret.startswith(prefix)
    assert "previous secret keeps working until" in secret_dialog.inner_text()
    close_secret(console)
    # During the grace period both secrets work.
    for secret in (old_secret, new_secret):
        assert openai_client(dev_info, secret).models.list().data

    row(console, prefix).get_by_role("button", name="Revoke rotate me").click()
    dialog = page.get_by_role("dialog", name="Revoke “rotate me”?")
    # The safe choice has the focus; Escape-free cancel leaves the key alone.
    assert page.evaluate("() => document.activeElement.textContent") == "Cancel"
    console.screenshot("07-revoke-confirmation", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(row(console, prefix).get_by_text("active")).to_be_visible()

    row(console, prefix).get_by_role("button", name="Revoke rotate me").click()
    dialog = page.get_by_role("dialog", name="Revoke “rotate me”?")
    dialog.get_by_label("Reason (optional, kept in the audit log)").fill("test over")
    dialog.get_by_role("button", name="Revoke key").click()
    console.settle()
    expect(row(console, prefix).get_by_text("revoked")).to_be_visible()
    with pytest.raises(AuthenticationError, match="revoked"):
        openai_client(dev_info, new_secret).models.list()
    with pytest.raises(AuthenticationError):
        openai_client(dev_info, old_secret).models.list()


# --- Permissions live in the API -----------------------------------------------------------------


def test_a_plain_user_cannot_see_or_change_another_users_keys(
    console: ConsolePage, user: Account, dev_info: dict[str, Any]
) -> None:
    page = console.page
    console.sign_in(user)
    console.settle()
    # No admin section for a plain user...
    assert page.locator("#admin-nav").count() == 0
    assert "make dev bootstrap key" not in page.locator("main").inner_text()

    # ...and opening an admin page anyway shows only what the API gives a plain user.
    console.open("admin/keys")
    assert "make dev bootstrap key" not in page.locator("main").inner_text()
    console.open("admin/audit")
    assert "Only admins can read the whole audit log" in page.get_by_role("alert").inner_text()
    console.screenshot("08-user-refused-admin-page")
    console.open("admin/report")
    assert "Only admins" in page.get_by_role("alert").inner_text()

    # A hand-made request (no button needed) to change the admin's key is refused by the API.
    admin_key = dev_info["key_id"]
    for method, path, body in (
        ("POST", f"admin/keys/{admin_key}/revoke", {}),
        ("POST", f"admin/keys/{admin_key}/rotate", {}),
        ("GET", f"admin/keys/{admin_key}", None),
        ("PUT", f"admin/owners/{dev_info['admin_username']}/budget", {"monthly_budget_usd": "1"}),
    ):
        answer = console.call_api(method, path, body)
        assert answer["ok"] is False and answer["status"] == 403, (path, answer)
    # The admin's key still works.
    assert openai_client(dev_info, dev_info["api_key"]).models.list().data


# --- Untrusted text -------------------------------------------------------------------------------


def test_xss_payloads_in_names_metadata_and_reasons_render_as_text(console: ConsolePage, admin: Account) -> None:
    page = console.page
    console.sign_in(admin)
    console.settle()
    secret = create_key_in_ui(console, XSS_NAME)
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]
    name_cell = row(console, prefix).locator(".key-name")
    assert name_cell.inner_text() == XSS_NAME
    assert name_cell.locator("img, script, b").count() == 0

    key_id = prefix.split("-", 1)[1]
    payload = '<svg onload="window.__xss=3">'
    assert console.call_api("POST", f"admin/keys/{key_id}/revoke", {"reason": payload})["ok"]
    console.open("admin/audit")
    audit = page.locator("main")
    # Names and reasons appear in the change list as the text they are.
    assert f"Name: {XSS_NAME}" in audit.inner_text() and f"Reason: {payload}" in audit.inner_text()
    assert audit.locator("img, script, svg[onload], b").count() == 0
    console.open("admin/keys")
    page.get_by_label("Search").fill("onerror")
    assert row(console, prefix).locator(".key-name").inner_text() == XSS_NAME
    assert page.evaluate("() => window.__xss") is None
    console.screenshot("09-xss-as-text")


# --- Accessibility, narrow screens --------------------------------------------------------------


AXE_PAGES = [
    "keys",
    "spend",
    "requests",
    "connect",
    "admin/keys",
    "admin/models",
    "admin/owners",
    "admin/usage",
    "admin/audit",
    "admin/report",
]


def axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


def test_every_page_passes_the_axe_accessibility_check(console: ConsolePage, admin: Account) -> None:
    page = console.page
    page.goto(console.url)
    found = {"sign-in": axe_violations(page)}
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Password").wait_for()
    found["local login"] = axe_violations(page)
    page.get_by_label("Email address").fill(admin.username)
    page.get_by_label("Password").fill(admin.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    for route in AXE_PAGES:
        console.open(route)
        found[route] = axe_violations(page)
    console.open("keys")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("dialog", name="Create a key").wait_for()
    found["create dialog"] = axe_violations(page)
    page.keyboard.press("Escape")
    page.locator("dialog[open]").wait_for(state="detached")
    page.get_by_role("button", name=re.compile("^Edit ")).first.click()
    page.get_by_role("dialog", name=re.compile("^Edit ")).wait_for()
    found["edit dialog"] = axe_violations(page)
    assert {name: v for name, v in found.items() if v} == {}


def test_keyboard_only_create_and_dismiss(console: ConsolePage, user: Account) -> None:
    page = console.page
    console.sign_in(user)
    console.settle()
    page.get_by_role("button", name="Create key").focus()
    page.keyboard.press("Enter")
    page.get_by_role("dialog", name="Create a key").wait_for()
    # The dialog takes the focus on its first field.
    assert page.evaluate("() => document.activeElement.name") == "name"
    page.keyboard.type("keyboard key")
    page.keyboard.press("Enter")
    page.get_by_role("dialog", name="Your new key").wait_for()
    page.keyboard.press("Escape")
    page.locator("dialog[open]").wait_for(state="detached")
    # Focus comes back into the page, not lost on <body>.
    assert page.evaluate("() => document.activeElement !== document.body")
    expect(row(console, "keyboard key")).to_be_visible()


def test_narrow_screen_layout_has_no_sideways_scrolling(console: ConsolePage, user: Account) -> None:
    page = console.page
    page.set_viewport_size({"width": 390, "height": 844})
    console.sign_in(user)
    for route in ("keys", "spend", "requests", "connect"):
        console.open(route)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{route} is {overflow}px wider than the screen"
        console.screenshot(f"10-narrow-{route.replace('/', '-')}")


def test_connect_panel_fills_in_the_users_key_prefix_and_base_urls(
    console: ConsolePage, cognito: Any, dev_info: dict[str, Any]
) -> None:
    # GIVEN a brand-new user with one key
    email = "connect@pennyworth.local"
    password = "Pw1!connect-panel-test"
    bootstrap.create_user(cognito, dev_info["cognito"]["user_pool_id"], email, password)
    page = console.page
    console.sign_in(Account(email, password))
    console.settle()
    expect(page.get_by_text("You have no keys yet")).to_be_visible()
    secret = create_key_in_ui(console, "for my tools")
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]

    console.open("connect")
    text = page.locator("main").inner_text()
    root = dev_info["base_url"].removesuffix("/v1")
    assert f'export PENNYWORTH_API_KEY="{prefix}-…"' in text
    assert secret not in text  # the secret itself is never shown again
    assert f'base_url="{dev_info["base_url"]}"' in text  # the openai SDK
    assert f"curl {dev_info['base_url']}/chat/completions" in text
    assert f'export ANTHROPIC_BASE_URL="{root}"' in text  # Claude Code: the root, without /v1
    assert 'export ANTHROPIC_AUTH_TOKEN="$PENNYWORTH_API_KEY"' in text
    assert f'base_url = "{dev_info["base_url"]}"' in text and 'wire_api = "responses"' in text  # Codex
    assert 'env_key = "PENNYWORTH_API_KEY"' in text
    # AND the Codex snippet is the README's tested configuration (tests/integration/test_codex.py runs it)
    import tomllib

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Use with Codex\n", 1)[1].split("\n## ", 1)[0]
    [tested] = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    expected = tomllib.loads(tested.replace("http://127.0.0.1:8000/v1", dev_info["base_url"]))
    codex = page.locator(".card", has_text="Codex (~/.codex/config.toml)").locator("pre").inner_text()
    shown = tomllib.loads(codex)
    assert {**shown, "model": expected["model"]} == expected, shown  # the model is the one chosen above
    console.screenshot("11-connect")


# --- Editing a key ---------------------------------------------------------------------------------


def admin_api(dev_info: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """The admin API as the dev admin calls it with the CLI's token (not through the page)."""
    import boto3
    import requests

    cognito = boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=dev_info["aws_endpoint_url"])
    token = cognito.initiate_auth(
        ClientId=dev_info["cognito"]["client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": dev_info["admin_username"], "PASSWORD": dev_info["admin_password"]},
    )["AuthenticationResult"]["IdToken"]
    root = dev_info["base_url"].removesuffix("/v1")
    answer = requests.request(
        method, f"{root}/{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code < 300, answer.text
    return answer.json()


def edit_dialog(console: ConsolePage, prefix: str, name: str) -> Any:
    row(console, prefix).get_by_role("button", name=f"Edit {name}").click()
    dialog = console.page.get_by_role("dialog", name=f"Edit “{name}”")
    dialog.wait_for()
    return dialog


def test_edit_a_keys_name_budget_models_expiry_and_limits_and_the_gateway_applies_them(
    console: ConsolePage, user: Account, dev_info: dict[str, Any]
) -> None:
    from openai import PermissionDeniedError

    page = console.page
    console.sign_in(user)
    console.settle()
    secret = create_key_in_ui(console, "edit me")
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]
    expires = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()

    # WHEN the owner changes every field in the dialog
    dialog = edit_dialog(console, prefix, "edit me")
    dialog.get_by_label("Name").fill("edited key")
    dialog.get_by_label("Monthly budget, USD").fill("2.50")
    dialog.get_by_label("Only these:").check()
    dialog.get_by_label("nova-micro", exact=True).check()
    dialog.get_by_label("Expires on").fill(expires)
    dialog.get_by_label("Requests per minute").fill("7")
    dialog.get_by_label("Tokens per minute").fill("9000")
    console.screenshot("12-edit-key", full_page=False)
    dialog.get_by_role("button", name="Save changes").click()
    page.locator("dialog[open]").wait_for(state="detached")
    console.settle()

    # THEN the list shows it, and the gateway applies it to the very next request
    text = row(console, prefix).inner_text()
    assert "edited key" in text and "of $2.50" in text and "nova-micro" in text, text
    view = key_view(dev_info, secret)
    assert view["name"] == "edited key"
    assert view["allowed_models"] == ["nova-micro"]
    assert view["expires_at"].startswith(expires)
    assert view["limits"] == {"rpm": 7, "tpm": 9000}
    assert Decimal(view["budget"]["monthly_usd"]) == Decimal("2.50"), view["budget"]
    with pytest.raises(PermissionDeniedError, match="not allowed to use the model"):
        openai_client(dev_info, secret).chat.completions.create(
            model="nova-lite", messages=[{"role": "user", "content": "not this one"}], max_tokens=16
        )

    # WHEN the owner empties the budget and goes back to every model THEN only that changes
    dialog = edit_dialog(console, prefix, "edited key")
    assert Decimal(dialog.get_by_label("Monthly budget, USD").input_value()) == Decimal("2.50")
    assert dialog.get_by_label("nova-micro", exact=True).is_checked()
    dialog.get_by_label("Monthly budget, USD").fill("")
    dialog.get_by_label("Every model in the catalog").check()
    dialog.get_by_role("button", name="Save changes").click()
    page.locator("dialog[open]").wait_for(state="detached")
    console.settle()
    view = key_view(dev_info, secret)
    assert view["allowed_models"] is None and view["limits"] == {"rpm": 7, "tpm": 9000}
    assert view["budget"]["monthly_usd"] is None, view["budget"]
    assert (
        openai_client(dev_info, secret)
        .chat.completions.create(
            model="nova-lite", messages=[{"role": "user", "content": "any model now"}], max_tokens=16
        )
        .choices
    )

    # WHEN an admin sets a budget on the key THEN the owner sees why, and cannot loosen it
    mine = console.call_api("GET", "admin/keys?owner=me")["data"]["data"]
    key_id = next(k["key_id"] for k in mine if k["prefix"] == prefix)
    admin_api(dev_info, "PATCH", f"admin/keys/{key_id}", {"monthly_budget_usd": "1.00"})
    console.open("spend")
    console.open("keys")  # the list again, as the API has it now
    dialog = edit_dialog(console, prefix, "edited key")
    assert "An admin limited this to $1.00" in dialog.inner_text()
    dialog.get_by_label("Monthly budget, USD").fill("5")
    dialog.get_by_role("button", name="Save changes").click()
    alert = dialog.get_by_role("alert")
    expect(alert).to_contain_text("An admin limited monthly_budget_usd")
    console.screenshot("13-edit-refused", full_page=False)
    # ...but may tighten it
    dialog.get_by_label("Monthly budget, USD").fill("0.75")
    dialog.get_by_role("button", name="Save changes").click()
    page.locator("dialog[open]").wait_for(state="detached")
    console.settle()
    assert Decimal(key_view(dev_info, secret)["budget"]["monthly_usd"]) == Decimal("0.75")

    # WHEN the owner is put on a team THEN they may charge the key to it from the dialog
    team = admin_api(dev_info, "POST", "admin/teams", {"name": "Edit Dialog Team"})
    admin_api(dev_info, "POST", f"admin/teams/{team['id']}/members", {"person": dev_info["user_username"]})
    dialog = edit_dialog(console, prefix, "edited key")
    dialog.get_by_label("Charge to team").select_option(label="Edit Dialog Team")
    dialog.get_by_role("button", name="Save changes").click()
    page.locator("dialog[open]").wait_for(state="detached")
    console.settle()
    assert console.call_api("GET", f"admin/keys/{key_id}")["data"]["team"] == team["id"]


# --- The request log -------------------------------------------------------------------------------


def test_the_request_log_shows_each_billed_request_filters_and_exports_what_usage_says(
    console: ConsolePage, cognito: Any, dev_info: dict[str, Any]
) -> None:
    # GIVEN a new person whose key (named like a spreadsheet formula) made two requests
    email = "requests@pennyworth.local"
    password = "Pw1!request-log-test"
    bootstrap.create_user(cognito, dev_info["cognito"]["user_pool_id"], email, password)
    page = console.page
    console.sign_in(Account(email, password))
    console.settle()
    secret = create_key_in_ui(console, "=HYPERLINK(1)")
    close_secret(console)
    prefix = secret.rsplit("-", 1)[0]
    client = openai_client(dev_info, secret)
    ids = set()
    for text in ("first", "second"):
        reply = client.chat.completions.with_raw_response.create(
            model="nova-micro", messages=[{"role": "user", "content": f"the {text} secret prompt"}]
        )
        ids.add(reply.headers["x-request-id"])
    billed = eventually(lambda: key_view(dev_info, secret), lambda view: view["usage"]["requests"] >= 2)["budget"]

    # WHEN they open the request log THEN both requests are there, and nothing of what they said
    console.open("requests")
    expect(page.get_by_role("note")).to_contain_text("No prompt or answer text is stored")
    rows = page.locator("table.data tbody tr")
    expect(rows).to_have_count(2)
    shown = page.locator("table.data").inner_text()
    assert prefix in shown and "nova-micro" in shown and "secret prompt" not in shown
    assert {rows.nth(n).locator("code.request-id").inner_text() for n in range(2)} == ids
    assert page.locator("table.data thead").get_by_text("Person").count() == 0  # a member sees their own only
    console.screenshot("14-request-log")

    # WHEN they filter on another model THEN nothing matches; on theirs, both again
    page.get_by_label("Model").select_option("nova-lite")
    page.get_by_role("button", name="Show requests").click()
    console.settle()
    expect(page.get_by_text("No request matches these filters in this range.")).to_be_visible()
    page.get_by_label("Model").select_option("nova-micro")
    page.get_by_role("button", name="Show requests").click()
    console.settle()
    expect(rows).to_have_count(2)

    # WHEN they download the CSV THEN it holds both requests, the costs add up to the usage to
    # the last digit, and the formula-like key name is defused
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    header = [cell.strip('"') for cell in lines[0].split(",")]
    assert header[:4] == ["time", "request_id", "key_prefix", "key_name"]
    data = list(csv.DictReader(lines))
    assert {r["request_id"] for r in data} == ids
    assert {r["key_name"] for r in data} == {"'=HYPERLINK(1)"}
    assert sum(Decimal(r["cost_usd"]) for r in data) == Decimal(billed["spent_usd"]) > 0

    # AND another person's requests are the API's to refuse, whatever the page offers
    answer = console.call_api("GET", f"admin/requests?owner={dev_info['admin_username']}")
    assert answer["ok"] is False and answer["status"] == 403, answer
    expect(page.get_by_label("Team")).to_be_hidden()  # on no team: nothing to choose

    # WHEN they become a team's admin and their key is charged to it THEN they pick the team and
    # read its requests, each naming the team and the person
    team = admin_api(dev_info, "POST", "admin/teams", {"name": "Log Team"})
    admin_api(dev_info, "POST", f"admin/teams/{team['id']}/members", {"person": email, "role": "admin"})
    mine = console.call_api("GET", "admin/keys?owner=me")["data"]["data"]
    key_id = next(k["key_id"] for k in mine if k["prefix"] == prefix)
    admin_api(dev_info, "PATCH", f"admin/keys/{key_id}", {"team": team["id"]})
    client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "charged"}], max_tokens=8)
    eventually(
        lambda: console.call_api("GET", f"admin/requests?team={team['id']}")["data"]["data"],
        lambda found: len(found) == 1,
    )
    console.open("spend")
    console.open("requests")
    page.get_by_label("Team").select_option(label="Log Team")
    page.get_by_role("button", name="Show requests").click()
    console.settle()
    expect(rows).to_have_count(1)
    assert "Log Team" in rows.first.inner_text() and email in rows.first.inner_text()


# --- Readable audit, the create dialog, narrow screens (issue 20) ---------------------------------


def test_the_audit_log_reads_as_sentences_and_nothing_is_cut_off(
    console: ConsolePage, admin: Account, dev_info: dict[str, Any]
) -> None:
    # GIVEN a key created, changed, rotated with a grace period and revoked with a reason
    page = console.page
    console.sign_in(admin)
    console.settle()
    created = console.call_api("POST", "admin/keys", {"name": "audit me", "monthly_budget_usd": "5.00"})["data"]
    key_id = created["key_id"]
    change = {"monthly_budget_usd": "12.50", "allowed_models": ["nova-micro"], "rpm_limit": 60,
              "metadata": {"ticket": "OPS-1234"}}  # fmt: skip
    patch = "([path, body]) => PW.api.patch(path, body).then(() => true)"
    assert page.evaluate(patch, [f"admin/keys/{key_id}", change])
    assert console.call_api("POST", f"admin/keys/{key_id}/rotate", {"grace_seconds": 600})["ok"]
    reason = "The laptop was lost on a train; a new key replaces it, see ticket OPS-1235 for every detail."
    assert console.call_api("POST", f"admin/keys/{key_id}/revoke", {"reason": reason})["ok"]
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        console.open("admin/audit")
        events = row(console, f"pw-{key_id}")
        # THEN each change reads as what it means, not as JSON
        joined = "\n".join(events.all_inner_texts())
        for shown in ("Budget: $5.00 → $12.50", "Models: every model → nova-micro", "Requests/min: no limit → 60",
                      "Metadata: none → ticket: OPS-1234", "Old secret kept for: 10 min", f"Reason: {reason}",
                      "Status: active → revoked"):  # fmt: skip
            assert shown in joined.replace("\n", " "), (shown, joined)
        assert "null" not in joined and '"' not in joined and "owner_sub" not in joined
        # AND no column is cut off: the table fits its box, the page fits the screen
        region = page.get_by_role("region", name=re.compile("events on"))
        assert region.evaluate("e => e.scrollWidth - e.clientWidth") <= 0, width
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0, width
        console.screenshot(f"12-audit-{width}")


def test_the_create_dialog_shows_model_choices_only_for_only_these(console: ConsolePage, user: Account) -> None:
    page = console.page
    console.sign_in(user)
    console.settle()
    page.get_by_role("button", name="Create key").click()
    dialog = page.get_by_role("dialog", name="Create a key")
    dialog.wait_for()
    boxes = dialog.locator("input[type=checkbox]")  # by role, hidden ones would not be found at all
    assert boxes.count() > 1
    # "Every model" is chosen: no model checkbox is shown
    expect(dialog.get_by_label("Every model in the catalog")).to_be_checked()
    for index in range(boxes.count()):
        expect(boxes.nth(index)).to_be_hidden()
    dialog.get_by_label("Only these:").check()
    expect(dialog.get_by_label("nova-micro", exact=False).first).to_be_visible()
    console.screenshot("13-create-only-these", full_page=False)
    dialog.get_by_label("Every model in the catalog").check()
    expect(boxes.first).to_be_hidden()


#: Pieces of a table cell that start left of its value column (in the narrow card layout), as text.
ORPHANS = """() => {
  const stray = [];
  for (const cell of document.querySelectorAll("table.data tbody th, table.data tbody td")) {
    const style = getComputedStyle(cell);
    if (style.display !== "grid") continue;
    const first = parseFloat(style.gridTemplateColumns.split(" ")[0]);
    const valueLeft = cell.getBoundingClientRect().left + parseFloat(style.paddingLeft) + first;
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const box of range.getClientRects()) {
        if (box.left < valueLeft - 1) stray.push(`${cell.dataset.label}: ${node.textContent.trim()}`);
      }
    }
  }
  return stray;
}"""


def test_at_390_px_every_tab_is_in_sight_and_no_word_strays_from_its_value(
    console: ConsolePage, admin: Account
) -> None:
    page = console.page
    page.set_viewport_size({"width": 390, "height": 844})
    console.sign_in(admin)
    console.settle()
    assert console.call_api("POST", "admin/keys", {"name": "narrow budget", "monthly_budget_usd": "5.00"})["ok"]
    for route in ("keys", "spend", "requests", "connect", *AXE_PAGES[4:]):
        console.open(route)
        # Every tab of the navigation is on the screen (none scrolled away past its edge)
        links = page.locator("#nav a")
        for index in range(links.count()):
            box = links.nth(index).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (route, links.nth(index).inner_text())
        assert page.locator("#nav").evaluate("e => e.scrollWidth - e.clientWidth") <= 0
        # and each table value (e.g. "$0.00 of $5.00") stays together beside its label
        assert page.evaluate(ORPHANS) == [], route
        assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0, route
        console.screenshot(f"14-narrow-{route.replace('/', '-')}")


def test_the_consoles_csv_defuses_exactly_as_the_clis(console: ConsolePage, user: Account) -> None:
    import csv
    import io

    from cli import csvfile

    cells = ['=HYPERLINK("https://evil.example","x")', "+1", "-1", "-0.5", "-x", "@SUM(A1)", "\tx", "\rx",
             "'=quoted", "''+twice", "'-5", "plain", "", "5", "a,b", 'say "hi"']  # fmt: skip
    console.sign_in(user)
    text = console.page.evaluate(
        "cells => PW.toCsv(cells.map((v) => ({v})), [{label: 'Value', value: (r) => r.v}])", cells
    )
    [_, *rows] = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows] == [csvfile.defuse(c) for c in cells]
