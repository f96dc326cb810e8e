"""The web console's server side: the page, its assets and headers, the console's app client.

The browser tests (tests/browser/) drive the console itself; these check what
the Lambda serves and what the console may rely on, without a browser.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import wiring
from chalicelib.console.site import STATIC_DIR, ConsoleConfig, ConsoleSite
from chalicelib.errors import NotFound
from chalicelib.settings import Settings, SettingsError
from tests.admin_fixtures import Api
from tests.cognito_helpers import Pool, User, bearer, mint, sign_in

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ConsoleConfig(auth_url="https://pw-1a2b3c4d.auth.eu-west-1.amazoncognito.com", client_id="abc123", local=False)


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


@pytest.fixture
def site() -> ConsoleSite:
    return ConsoleSite(CONFIG)


# The page


def test_page_names_hashed_assets_under_the_path_it_was_asked_for(site: ConsoleSite) -> None:
    # GIVEN the path API Gateway reports for the v1 stage WHEN the page is built
    result = site.page("/v1/console")
    tags = tags_of(result.body)
    sources = [a["src"] for t, a in tags if t == "script"] + [a["href"] for t, a in tags if t == "link"]
    # THEN every asset is an absolute path under /v1/console/ with a 12-hex digest that serves
    assert sources and all(re.fullmatch(r"/v1/console/[a-z-]+\.[0-9a-f]{12}\.(js|css|svg)", s) for s in sources)
    for source in sources:
        served = site.asset(source.rsplit("/", 1)[1])
        assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert result.headers["Cache-Control"] == "no-cache"
    assert result.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "base"),
    [
        ("/v1/console", "/v1/console/"),
        ("/v1/console/", "/v1/console/"),
        ("/console", "/console/"),
        (None, "/console/"),
        ('/x"><script>/console', "/console/"),  # anything odd falls back, never reaches the page
        ("/v1/admin", "/console/"),
    ],
)
def test_base_path_comes_from_the_request_path_or_falls_back(site: ConsoleSite, path: str | None, base: str) -> None:
    meta = next(a for t, a in tags_of(site.page(path).body) if t == "meta" and a.get("name") == "pennyworth-config")
    assert json.loads(meta["content"])["base"] == base


def test_page_has_no_inline_script_style_or_event_handler() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    for tag, attrs in tags_of(html):
        assert tag != "style", "inline <style>"
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
        if tag == "script":
            assert attrs.get("src"), "inline <script>"


def test_config_meta_escapes_its_json(site: ConsoleSite) -> None:
    hostile = ConsoleSite(ConsoleConfig(auth_url='https://a.example"><script>x</script>', client_id="c", local=True))
    body = hostile.page("/console").body
    assert "<script>x</script>" not in body
    meta = next(a for t, a in tags_of(body) if t == "meta" and a.get("name") == "pennyworth-config")
    assert json.loads(meta["content"])["auth_url"] == 'https://a.example"><script>x</script>'


def test_headers_carry_a_strict_content_security_policy(site: ConsoleSite) -> None:
    csp = dict(
        part.strip().split(" ", 1) for part in site.page("/console").headers["Content-Security-Policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    # The API (same origin) and the sign-in domain's token endpoint, nothing else.
    assert csp["connect-src"] == "'self' https://pw-1a2b3c4d.auth.eu-west-1.amazoncognito.com"
    assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'"
    assert csp["require-trusted-types-for"] == "'script'" and csp["trusted-types"] == "'none'"
    headers = site.asset("app.js").headers
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"


def test_scripts_never_build_html_from_strings() -> None:
    # Untrusted text (key names, metadata, reasons) must reach the page as text; Trusted Types
    # enforce it in the browser, and this keeps such sinks out of the source in the first place.
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\"on"
    )
    for path in STATIC_DIR.glob("*.js"):
        code = re.sub(r"^\s*//.*$", "", path.read_text(), flags=re.M)  # comments may name them
        assert not sinks.search(code), path.name


# Assets


@pytest.mark.parametrize(
    "name",
    ["app.000000000000.js", "index.html", "../settings.py", "app.JS", "site.py", "app.js.map", "%2e%2e", "", "a" * 300],
)
def test_unknown_or_stale_assets_are_404(site: ConsoleSite, name: str) -> None:
    with pytest.raises(NotFound):
        site.asset(name)


def test_unversioned_asset_names_are_served_but_revalidated(site: ConsoleSite) -> None:
    result = site.asset("console.css")
    assert result.headers["Content-Type"] == "text/css; charset=utf-8"
    assert result.headers["Cache-Control"] == "no-cache"
    assert result.body == (STATIC_DIR / "console.css").read_text()


def test_a_changed_file_gets_a_new_digest(tmp_path: Path) -> None:
    for path in STATIC_DIR.iterdir():
        (tmp_path / path.name).write_text(path.read_text())
    before = ConsoleSite(CONFIG, root=tmp_path).page("/console").body
    (tmp_path / "app.js").write_text((tmp_path / "app.js").read_text() + "\n// changed\n")
    after = ConsoleSite(CONFIG, root=tmp_path).page("/console").body
    digest = re.compile(r"/console/app\.([0-9a-f]{12})\.js")
    assert digest.search(before)[1] != digest.search(after)[1]


# Through the app (Chalice's test client)


@pytest.fixture
def app_client(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PENNYWORTH_CONSOLE_AUTH_URL", "http://127.0.0.1:8001/console-login")
    monkeypatch.setenv("PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID", "console-client")
    wiring.reset()
    from app import app

    with Client(app, stage_name="local") as client:
        yield client


def test_console_routes_serve_the_page_and_assets_without_a_token(app_client: Any) -> None:
    page = app_client.http.get("/console")
    headers = {k.lower(): v for k, v in page.headers.items()}
    assert page.status_code == 200 and headers["content-type"].startswith("text/html")
    assert "connect-src 'self' http://127.0.0.1:8001" in headers["content-security-policy"]
    script = next(a["src"] for t, a in tags_of(page.body.decode()) if t == "script")
    asset = app_client.http.get(script)
    assert asset.status_code == 200
    assert {k.lower(): v for k, v in asset.headers.items()}["cache-control"].endswith("immutable")
    missing = app_client.http.get("/console/app.000000000000.js")
    assert missing.status_code == 404 and missing.json_body["error"]["code"] == "not_found"


def test_admin_models_lists_the_catalog_for_any_signed_in_user(as_alice: Api) -> None:
    response = as_alice.call("get", "/admin/models")
    assert response.status_code == 200
    models = {m["id"]: m["mode"] for m in response.json_body["data"]}
    assert models["nova-micro"] == "chat" and models["titan-embed-text-v2"] == "embedding"


def test_admin_models_needs_a_token(admin_client: Client) -> None:
    response = admin_client.http.get("/admin/models")
    assert response.status_code == 401 and response.json_body["error"]["code"] == "missing_token"


# The console's app client


@pytest.fixture
def console_client_id(cognito: Any, pool: Pool, monkeypatch: pytest.MonkeyPatch) -> str:
    from local import bootstrap

    client_id = bootstrap.create_console_client(cognito, pool.user_pool_id, ["http://127.0.0.1:8000/console"])
    monkeypatch.setenv("PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID", client_id)
    wiring.reset()
    return client_id


def test_tokens_of_the_console_client_are_accepted(
    admin_client: Client, cognito: Any, pool: Pool, alice: User, console_client_id: str
) -> None:
    tokens = cognito.admin_initiate_auth(
        UserPoolId=pool.user_pool_id,
        ClientId=console_client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": alice.email, "PASSWORD": alice.password},
    )["AuthenticationResult"]
    for token in (tokens["IdToken"], tokens["AccessToken"]):
        response = admin_client.http.get("/admin/keys", headers=bearer(token))
        assert response.status_code == 200, response.body
    # The CLI's client still works beside it; a third client of the same pool does not.
    cli_token = sign_in(cognito, pool, alice)["IdToken"]
    assert admin_client.http.get("/admin/keys", headers=bearer(cli_token)).status_code == 200
    other = mint(pool, alice.sub, aud="some-other-client")
    refused = admin_client.http.get("/admin/keys", headers=bearer(other))
    assert refused.status_code == 401 and refused.json_body["error"]["code"] == "invalid_token"


def test_without_a_console_client_its_tokens_are_refused(
    admin_client: Client, pool: Pool, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID", raising=False)
    wiring.reset()
    token = mint(pool, alice.sub, aud="console-client-not-configured")
    assert admin_client.http.get("/admin/keys", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize(
    "value",
    [
        "https://x.example; script-src *",
        "javascript:alert(1)",
        "https://x.example/a b",
        "https://x.example/?q=1",
        "ftp://x.example",
    ],
)
def test_the_auth_url_setting_refuses_what_could_break_the_csp(value: str) -> None:
    with pytest.raises(SettingsError, match="PENNYWORTH_CONSOLE_AUTH_URL"):
        Settings.from_env({"PENNYWORTH_CONSOLE_AUTH_URL": value})


def test_the_auth_url_setting_accepts_cognito_and_local_urls() -> None:
    for value in ("https://pw-1a2b3c4d.auth.us-east-1.amazoncognito.com", "http://127.0.0.1:8001/console-login/"):
        assert Settings.from_env({"PENNYWORTH_CONSOLE_AUTH_URL": value}).console_auth_url == value.rstrip("/")


# The template


TEMPLATE = json.loads((ROOT / "infra" / "template.json").read_text())


def test_the_console_client_is_a_public_code_flow_client_sent_back_to_the_console_only() -> None:
    client = TEMPLATE["Resources"]["ConsoleClient"]
    props = client["Properties"]
    assert client["Condition"] == "HasConsole"
    assert props["GenerateSecret"] is False  # a browser cannot keep a secret: PKCE instead
    assert props["AllowedOAuthFlows"] == ["code"]  # no implicit flow: tokens never in a URL
    assert props["CallbackURLs"] == props["LogoutURLs"] and len(props["CallbackURLs"]) == 1
    assert "ALLOW_USER_PASSWORD_AUTH" not in props["ExplicitAuthFlows"]
    assert props["EnableTokenRevocation"] is True


def test_the_api_function_learns_the_console_client_and_sign_in_domain() -> None:
    variables = TEMPLATE["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID"]["Fn::If"][1] == {"Ref": "ConsoleClient"}
    domain = variables["PENNYWORTH_CONSOLE_AUTH_URL"]["Fn::If"][1]["Fn::Sub"]
    assert domain == "https://${ConsoleAuthDomain}.auth.${AWS::Region}.amazoncognito.com"
    # The console URL the template registers matches the URL the deployed API serves it at.
    output = TEMPLATE["Outputs"]["ConsoleUrl"]["Value"]["Fn::If"][2]["Fn::Sub"]
    stage = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"]["api_gateway_stage"]
    assert output == f"https://${{RestAPI}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{stage}/console"
    pattern = re.compile(TEMPLATE["Parameters"]["ConsoleUrl"]["AllowedPattern"])
    assert pattern.match("https://abc123.execute-api.eu-west-1.amazonaws.com/v1/console")
    assert pattern.match("") and not pattern.match("http://abc.example/console")
