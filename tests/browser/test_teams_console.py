"""Teams and people in the console, in a real browser: the issue's walkthrough, start to finish.

An admin creates a team with a budget, invites two people and makes one of them the team's
admin; the team admin creates a team key and the member a personal key charged to the team (each
signing in for the first time with the temporary password the invitation showed); both keys are
used from the openai SDK until the team's budget refuses; the console's usage by team agrees to
the last digit with what the SDK was told and with ``pennyworth usage --group-by team``; disabling
the member stops their key at once.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import openai
import pytest
from click.testing import CliRunner
from playwright.sync_api import expect

from cli.main import cli
from tests.browser.conftest import Account, ConsolePage

pytestmark = pytest.mark.integration


def sign_out(console: ConsolePage) -> None:
    console.page.get_by_role("button", name="Sign out").click()
    console.page.get_by_role("button", name="Sign in").wait_for()


def first_sign_in(console: ConsolePage, email: str, temporary: str, chosen: str) -> None:
    """An invited person's first sign-in: the temporary password, then a password of their own."""
    page = console.page
    # From a fresh load, as ConsolePage.sign_in does: under load, a click on the page the sign-out left
    # could land before its own navigation ended, and be lost.
    page.goto(console.url)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console-login/**")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(temporary)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(chosen)
    page.get_by_label("New password again").fill(chosen)
    page.get_by_role("button", name="Set password and sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    console.settle()


def invite(console: ConsolePage, email: str, team: str) -> str:
    """Invite through the People page; the temporary password a local stack shows instead of mailing it."""
    page = console.page
    page.get_by_role("button", name="Invite").click()
    dialog = page.get_by_role("dialog", name="Invite a person")
    dialog.get_by_label("E-mail address").fill(email)
    dialog.get_by_label("Team", exact=True).select_option(label=team)
    dialog.get_by_role("button", name="Invite").click()
    shown = page.get_by_role("dialog", name=f"{email} is invited")
    password = shown.get_by_label("Temporary password").input_value()
    shown.get_by_role("button", name="Done").click()
    console.settle()
    return password


def new_key(console: ConsolePage, dialog_name: str, name: str, team: str | None = None) -> str:
    page = console.page
    dialog = page.get_by_role("dialog", name=dialog_name)
    dialog.get_by_label("Name").fill(name)
    if team is not None:
        dialog.get_by_label("Charge to team").select_option(label=team)
    dialog.get_by_role("button", name="Create key").click()
    secret_dialog = page.get_by_role("dialog", name="Your new key")
    secret = secret_dialog.get_by_role("textbox").input_value()
    page.get_by_role("button", name="I have saved it").click()
    page.locator("dialog[open]").wait_for(state="detached")
    console.settle()
    return secret


def test_a_team_from_the_console_invitation_to_refusal_to_off_boarding(
    context: Any, dev_info: dict[str, Any], admin: Account, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = ConsolePage(context.new_page(), dev_info["console_url"])
    page = console.page
    console.sign_in(admin)
    # GIVEN an admin's new team with a budget a handful of requests spend
    console.open("teams")
    page.get_by_role("button", name="New team").click()
    dialog = page.get_by_role("dialog", name="New team")
    dialog.get_by_label("Name").fill("Walkthrough")
    dialog.get_by_label("Monthly budget, USD (optional)").fill("0.00003")
    dialog.get_by_role("button", name="Create team").click()
    expect(page.locator("#page-title")).to_have_text("Team Walkthrough")
    team_url = page.url
    # AND two people invited into it; one made its admin on the team's page
    console.open("admin/people")
    lead_password = invite(console, "walk-lead@example.com", "Walkthrough")
    member_password = invite(console, "walk-member@example.com", "Walkthrough")
    row = page.locator("table.data tbody tr").filter(has_text="walk-member@example.com")
    expect(row).to_contain_text("Walkthrough")
    page.goto(team_url)
    console.settle()
    page.get_by_role("button", name="Make walk-lead@example.com a team admin").click()
    members = card(console, "Members").locator("tbody tr").filter(has_text="walk-lead@example.com")
    expect(members).to_contain_text("team admin")
    console.settle()
    console.screenshot("20-team")
    sign_out(console)
    # WHEN the team admin signs in for the first time and creates the team's own key
    first_sign_in(console, "walk-lead@example.com", lead_password, "Pw1!Lead-in-browser-7")
    console.open("teams")
    page.get_by_role("link", name="Walkthrough").click()
    expect(page.locator("#page-title")).to_have_text("Team Walkthrough")
    console.settle()
    page.get_by_role("button", name="Create a team key").click()
    team_secret = new_key(console, "Create a key of team Walkthrough", "ci")
    keys = card(console, "Keys charged to the team").locator("tbody tr").filter(has_text="ci")
    expect(keys).to_contain_text("the team")
    sign_out(console)
    # AND the member creates a personal key charged to the team
    first_sign_in(console, "walk-member@example.com", member_password, "Pw1!Member-in-browser-7")
    console.open("keys")
    page.get_by_role("button", name="Create key").click()
    member_secret = new_key(console, "Create a key", "laptop", team="Walkthrough")
    sign_out(console)
    # THEN both are used from the openai SDK until the team's budget refuses
    told: list[Decimal] = []
    refused = None
    for n in range(40):
        client = openai.OpenAI(
            base_url=dev_info["base_url"], api_key=(team_secret, member_secret)[n % 2], max_retries=0, timeout=30
        )
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="nova-micro", max_tokens=100, messages=[{"role": "user", "content": f"hi {n}"}]
            )
        except openai.RateLimitError as exc:
            refused = exc
            break
        told.append(Decimal(raw.headers["x-pennyworth-cost-usd"]))
        time.sleep(0.3)
    assert refused is not None and len(told) >= 2 and "team" in refused.body["message"]
    billed = sum(told, Decimal(0))
    # AND the console's usage by team agrees to the last digit with the SDK and with the CLI
    console.sign_in(admin)
    shown = _console_team_cost(console, "Walkthrough", billed)
    assert shown == billed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PENNYWORTH_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / ".pennyworth").mkdir()
    (tmp_path / ".pennyworth" / "dev.json").write_text(json.dumps(dev_info))
    assert CliRunner().invoke(cli, ["--local", "login"]).exit_code == 0
    usage = json.loads(CliRunner().invoke(cli, ["--local", "usage", "--group-by", "team", "--json"]).stdout)
    assert {row["name"]: Decimal(row["cost_usd"]) for row in usage["data"]}["Walkthrough"] == billed
    # WHEN the admin disables the member in the console THEN their key is refused at once, saying why
    console.open("admin/people")
    page.get_by_role("button", name="Disable walk-member@example.com").click()
    confirm = page.get_by_role("dialog", name="Disable walk-member@example.com?")
    confirm.get_by_label("Reason (optional, kept in the audit log)").fill("walkthrough")
    confirm.get_by_role("button", name="Disable").click()
    expect(page.locator("table.data tbody tr").filter(has_text="walk-member@example.com")).to_contain_text("disabled")
    console.screenshot("21-people")
    member = openai.OpenAI(base_url=dev_info["base_url"], api_key=member_secret, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as caught:
        member.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "still?"}])
    assert caught.value.body["code"] == "owner_disabled"
    assert console.errors == [] and console.dialogs == []


def card(console: ConsolePage, title: str) -> Any:
    return console.page.locator("section.card").filter(has=console.page.get_by_role("heading", name=title, exact=True))


def _console_team_cost(console: ConsolePage, team: str, expected: Decimal) -> Decimal:
    """The team's cost on the console's Usage page, grouped by team (exact, from the cell's title)."""
    page = console.page
    deadline = time.monotonic() + 15
    while True:
        console.open("admin/usage")
        page.get_by_label("Group by").select_option(label="Team")
        page.get_by_role("button", name="Show usage").click()
        console.settle()
        row = page.locator("table.data tbody tr").filter(has_text=team)
        row.wait_for()
        shown = Decimal(row.locator(".money").last.get_attribute("title").removeprefix("$"))
        if shown >= expected or time.monotonic() > deadline:  # the aggregator trails billing by a moment
            return shown
        time.sleep(0.5)
