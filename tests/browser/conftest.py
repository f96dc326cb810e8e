"""Browser tests of the web console: Playwright driving Debian's headless chromium.

Playwright's own browser download is not used (``executable_path``). Where no
chromium is installed the tests skip with the reason, except in CI (``CI`` or
``PENNYWORTH_REQUIRE_BROWSER=1``, set by ``.ci/run``), where they fail: a CI
that silently skips its browser tests would hide a broken console.

They run against their own real local stack (moto server, the Bedrock emulator,
chalice local, the local sign-in), started once for this package on free ports and
stopped after it, as Playwright is.
Screenshots for review land in ``build/console/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.devstack import DevStack, Ports

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "build" / "console"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("PENNYWORTH_REQUIRE_BROWSER") == "1"


def missing(reason: str) -> None:
    """Fail in CI, skip (with the reason) on a developer's machine."""
    if browser_required():
        pytest.fail(f"{reason} (browser tests are required here: CI or PENNYWORTH_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(f"{reason}; install it with: apt-get install chromium")


def find_chromium() -> str | None:
    explicit = os.environ.get("PENNYWORTH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        missing("No chromium found (looked for PENNYWORTH_CHROMIUM, " + ", ".join(CHROMIUM_NAMES) + ")")
    return path


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is started, and later tests that call asyncio.run (the MCP client's) would fail.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("The playwright package is not installed (make .venv/.installed)")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[DevStack]:
    logs = tmp_path_factory.mktemp("console-stack-logs")
    with DevStack(ports=Ports.free(), log_dir=logs) as running:
        yield running


@pytest.fixture(scope="package")
def dev_info(stack: DevStack) -> dict[str, Any]:
    return stack.info


@dataclass(frozen=True)
class Account:
    username: str
    password: str


@pytest.fixture(scope="package")
def admin(dev_info: dict[str, Any]) -> Account:
    return Account(dev_info["admin_username"], dev_info["admin_password"])


@pytest.fixture(scope="package")
def user(dev_info: dict[str, Any]) -> Account:
    return Account(dev_info["user_username"], dev_info["user_password"])


@pytest.fixture(scope="package")
def cognito(dev_info: dict[str, Any]) -> Any:
    import boto3

    return boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=dev_info["aws_endpoint_url"])


@pytest.fixture
def context(playwright: Any, chromium: str, tmp_path: Path) -> Iterator[Any]:
    """A browser with a fresh profile (user-data dir) for each test; clipboard allowed."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    browser_context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=chromium,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 860},
        permissions=["clipboard-read", "clipboard-write"],
    )
    browser_context.set_default_timeout(20_000)
    try:
        yield browser_context
    finally:
        browser_context.close()


class ConsolePage:
    """The console in one tab, with what the tests do to it."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # window.alert/confirm/prompt are never used by the console: any one is an injection.
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def sign_in(self, account: Account) -> None:
        self.page.goto(self.url)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/console-login/**")
        self.page.get_by_label("Email address").fill(account.username)
        self.page.get_by_label("Password").fill(account.password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("button", name="Sign out").wait_for()

    def open(self, route: str) -> None:
        self.page.evaluate("route => { location.hash = route; }", f"#/{route}")
        self.page.locator("#page-title").wait_for()
        self.settle()

    def settle(self) -> None:
        """Wait until no loading indicator or busy region is left."""
        self.page.wait_for_function(
            "() => !document.querySelector('.loading, [aria-busy=\"true\"], .progress progress:not([value])')"
        )

    def call_api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call the JSON API from the page, as a user could from the browser's devtools."""
        return self.page.evaluate(
            """async ([method, path, body]) => {
                try {
                  const fn = {GET: PW.api.get, POST: PW.api.post, PUT: PW.api.put}[method];
                  return {ok: true, data: await fn(path, body)};
                } catch (e) { return {ok: false, status: e.status, code: e.code, message: e.message}; }
            }""",
            [method, path, body],
        )

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def console(context: Any, dev_info: dict[str, Any]) -> Iterator[ConsolePage]:
    page = context.new_page()
    wrapper = ConsolePage(page, dev_info["console_url"])
    yield wrapper
    assert wrapper.errors == [], f"JavaScript errors on the page: {wrapper.errors}"
    assert wrapper.dialogs == [], f"Unexpected browser dialogs (an injection?): {wrapper.dialogs}"
