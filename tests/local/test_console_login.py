"""The local stand-in for Cognito's managed login (local/console_login.py), against moto in process."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from werkzeug.test import Client

from local import bootstrap
from local.console_login import PREFIX, LocalLogin, mount
from tests.cognito_helpers import Pool, User

CONSOLE = "http://127.0.0.1:8000/console"


@pytest.fixture
def console_client(cognito: Any, pool: Pool) -> str:
    return bootstrap.create_console_client(cognito, pool.user_pool_id, [CONSOLE])


@pytest.fixture
def browser(cognito: Any) -> Client:
    return Client(LocalLogin(lambda: cognito))


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_query(client_id: str, challenge: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CONSOLE,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "openid email",
    }
    return {**query, **(overrides or {})}


def sign_in(browser: Client, client_id: str, user: User, challenge: str, password: str | None = None) -> Any:
    form = {**authorize_query(client_id, challenge), "username": user.email, "password": password or user.password}
    return browser.post(f"{PREFIX}/login", data=form)


def code_of(response: Any) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CONSOLE
    query = parse_qs(location.query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def exchange(browser: Client, client_id: str, code: str, verifier: str, overrides: dict[str, str] | None = None) -> Any:
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "redirect_uri": CONSOLE,
        "code_verifier": verifier,
        **(overrides or {}),
    }
    return browser.post(f"{PREFIX}/oauth2/token", data=form)


def test_code_flow_with_pkce_gives_the_pools_own_tokens(
    browser: Client, console_client: str, alice: User, pool: Pool
) -> None:
    verifier, challenge = pkce()
    form = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(authorize_query(console_client, challenge))}")
    assert form.status_code == 200 and "Local development sign-in" in form.get_data(as_text=True)
    code = code_of(sign_in(browser, console_client, alice, challenge))
    answer = exchange(browser, console_client, code, verifier)
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    body = answer.get_json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["aud"] == console_client and claims["iss"] == pool.issuer and claims["sub"] == alice.sub
    assert body["refresh_token"] and body["token_type"] == "Bearer"
    # A code is good once.
    again = exchange(browser, console_client, code, verifier)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_verifier": "the-wrong-verifier-" + "x" * 30},
        {"redirect_uri": "http://127.0.0.1:8000/elsewhere"},
        {"client_id": "another-client"},
        {"code": "made-up"},
    ],
    ids=["wrong-verifier", "other-redirect", "other-client", "unknown-code"],
)
def test_a_code_is_refused_with_anything_but_its_own_verifier_client_and_redirect(
    browser: Client, console_client: str, alice: User, overrides: dict[str, str]
) -> None:
    verifier, challenge = pkce()
    code = code_of(sign_in(browser, console_client, alice, challenge))
    answer = exchange(browser, console_client, code, verifier, overrides)
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_grant"
    assert "id_token" not in answer.get_json()


def test_wrong_password_shows_the_form_again_and_issues_nothing(
    browser: Client, console_client: str, alice: User
) -> None:
    _, challenge = pkce()
    response = sign_in(browser, console_client, alice, challenge, password="Wrong-password-1!")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "Incorrect email address or password." in text
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"redirect_uri": "https://attacker.example/console"}, 400),
        ({"client_id": "no-such-client"}, 400),
        ({"code_challenge_method": "plain"}, 302),  # refused back to the console, as OAuth says
        ({"response_type": "token"}, 302),
    ],
)
def test_authorize_refuses_unregistered_redirects_and_anything_but_code_with_s256(
    browser: Client, console_client: str, overrides: dict[str, str], status: int
) -> None:
    _, challenge = pkce()
    query = authorize_query(console_client, challenge, overrides)
    response = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(query)}")
    assert response.status_code == status
    if status == 302:
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query["error"] and "code" not in query
    else:
        assert "attacker.example" not in response.headers.get("Location", "")


def test_the_cli_client_cannot_use_the_login(browser: Client, pool: Pool) -> None:
    _, challenge = pkce()
    response = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(authorize_query(pool.client_id, challenge))}")
    assert response.status_code == 400 and "no callback URL" in response.get_data(as_text=True)


def test_session_signs_in_again_without_password_until_logout(
    browser: Client, console_client: str, alice: User
) -> None:
    verifier, challenge = pkce()
    code_of(sign_in(browser, console_client, alice, challenge))
    # A second authorization (a reload of the console) goes straight back with a code.
    verifier, challenge = pkce()
    again = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(authorize_query(console_client, challenge))}")
    assert exchange(browser, console_client, code_of(again), verifier).status_code == 200
    # Sign-out only to a registered URL; then the session is gone.
    refused = browser.get(
        f"{PREFIX}/logout?{urlencode({'client_id': console_client, 'logout_uri': 'https://x.example'})}"
    )
    assert refused.status_code == 400
    out = browser.get(f"{PREFIX}/logout?{urlencode({'client_id': console_client, 'logout_uri': CONSOLE})}")
    assert out.status_code == 302 and out.headers["Location"] == CONSOLE
    _, challenge = pkce()
    form = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(authorize_query(console_client, challenge))}")
    assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)


def test_refresh_token_grant(browser: Client, console_client: str, alice: User) -> None:
    verifier, challenge = pkce()
    tokens = exchange(browser, console_client, code_of(sign_in(browser, console_client, alice, challenge)), verifier)
    refresh = tokens.get_json()["refresh_token"]
    form = {"grant_type": "refresh_token", "client_id": console_client, "refresh_token": refresh}
    answer = browser.post(f"{PREFIX}/oauth2/token", data=form)
    assert answer.status_code == 200 and answer.get_json()["id_token"]
    bad = browser.post(f"{PREFIX}/oauth2/token", data={**form, "refresh_token": "nonsense"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_grant"


def test_the_form_escapes_what_it_echoes(browser: Client, console_client: str) -> None:
    _, challenge = pkce()
    hostile = '"><script>alert(1)</script>'
    query = authorize_query(console_client, challenge, {"state": hostile})
    text = browser.get(f"{PREFIX}/oauth2/authorize?{urlencode(query)}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text


def test_mount_sends_only_its_prefix_to_the_login() -> None:
    seen: list[str] = []

    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"moto"]

    app = Client(mount(moto, "http://127.0.0.1:1"))
    assert app.get("/moto-api/").get_data() == b"moto"
    assert app.get("/console-loginx").get_data() == b"moto"
    assert app.get(f"{PREFIX}/nothing-here").status_code == 404
    assert seen == ["/moto-api/", "/console-loginx"]


def test_an_invited_user_chooses_a_password_at_first_sign_in(
    browser: Client, console_client: str, cognito: Any, pool: Pool
) -> None:
    # GIVEN a user invited with a temporary password (what POST /admin/people does)
    cognito.admin_create_user(
        UserPoolId=pool.user_pool_id, Username="new@example.com", TemporaryPassword="Pw1!Temporary-123",
        UserAttributes=[{"Name": "email", "Value": "new@example.com"}], MessageAction="SUPPRESS",
    )  # fmt: skip
    user = User(email="new@example.com", password="Pw1!Temporary-123", sub="")
    verifier, challenge = pkce()
    # WHEN they sign in with it THEN they are asked for a password of their own, not handed a code
    asked = sign_in(browser, console_client, user, challenge)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and "Choose your password" in page and 'name="session"' in page
    session = page.split('name="session" value="', 1)[1].split('"', 1)[0]
    form = {**authorize_query(console_client, challenge), "username": user.email, "session": session}
    # a typo in the repeat is caught before Cognito is asked
    differ = browser.post(f"{PREFIX}/new-password", data={**form, "password": "Pw1!Chosen-4567", "confirm": "x"})
    assert "The passwords differ." in differ.get_data(as_text=True)
    chosen = browser.post(f"{PREFIX}/new-password", data={**form, "password": "Pw1!Chosen-4567",
                                                           "confirm": "Pw1!Chosen-4567"})  # fmt: skip
    # AND then they are signed in with the pool's tokens, and the new password is theirs from now on
    tokens = exchange(browser, console_client, code_of(chosen), verifier).get_json()
    assert jwt.decode(tokens["id_token"], options={"verify_signature": False})["email"] == "new@example.com"
    assert cognito.admin_get_user(UserPoolId=pool.user_pool_id, Username="new@example.com")["UserStatus"] == (
        "CONFIRMED"
    )
