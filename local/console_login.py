"""A local stand-in for Cognito's managed login, so the web console signs in under ``make dev``.

moto has no hosted login pages. This WSGI app, mounted on the moto server under
``/console-login``, answers the same endpoints the console uses on AWS
(``/oauth2/authorize``, ``/oauth2/token``, ``/oauth2/revoke``, ``/logout``), with
the same rules: the authorization code flow with PKCE (S256 only), redirect
and sign-out URLs checked against the app client registered in the pool,
single-use codes that expire in five minutes. Passwords are checked by moto's
Cognito (``AdminInitiateAuth``), so the tokens are the pool's real tokens and
the gateway verifies them exactly as it verifies Cognito's.

The sign-in page says plainly that it is local. It has a session cookie of its
own, like Cognito's, so a reload of the console signs in again without a
password; ``/logout`` ends it. Never deployed (``local/`` is not packaged).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

PREFIX = "/console-login"
CODE_TTL_SECONDS = 300
SESSION_TTL_SECONDS = 8 * 3600
COOKIE = "pennyworth_local_login"


@dataclass(frozen=True)
class Client:
    """An app client allowed to use the login, as registered in the pool."""

    pool_id: str
    client_id: str
    callback_urls: tuple[str, ...]
    logout_urls: tuple[str, ...]


@dataclass
class Grant:
    """What a code (or a session) stands for."""

    client: Client
    tokens: dict[str, Any]
    expires: float
    challenge: str | None = None
    redirect_uri: str | None = None
    username: str | None = None


class LocalLogin:
    """The WSGI app; ``cognito`` is a boto3 ``cognito-idp`` client of the moto server it runs in."""

    def __init__(self, cognito_factory: Callable[[], Any]) -> None:
        self._cognito_factory = cognito_factory
        self._cognito: Any = None
        self._codes: dict[str, Grant] = {}
        self._sessions: dict[str, Grant] = {}
        self._lock = threading.Lock()

    @property
    def cognito(self) -> Any:
        if self._cognito is None:
            self._cognito = self._cognito_factory()
        return self._cognito

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        path = request.path[len(PREFIX) :] or "/"
        routes = {
            ("GET", "/oauth2/authorize"): self.authorize,
            ("POST", "/login"): self.login,
            ("POST", "/new-password"): self.new_password,
            ("POST", "/oauth2/token"): self.token,
            ("POST", "/oauth2/revoke"): self.revoke,
            ("GET", "/logout"): self.logout,
            ("OPTIONS", "/oauth2/token"): self.preflight,
            ("OPTIONS", "/oauth2/revoke"): self.preflight,
        }
        handler = routes.get((request.method, path))
        if handler is None:
            response = _page("Not found", "<p>This local sign-in has no such page.</p>", status=404)
        else:
            response = handler(request)
        return response(environ, start_response)

    # Endpoints

    def authorize(self, request: Any) -> Any:
        """``GET /oauth2/authorize``: the sign-in form (or straight back, with a live session)."""
        args = request.args
        client, problem = self._client_for(args.get("client_id"), args.get("redirect_uri"))
        if problem:
            return _page("Sign-in refused", f"<p>{html.escape(problem)}</p>", status=400)
        if args.get("response_type") != "code":
            return _redirect_error(args, "unsupported_response_type", "Only response_type=code is supported.")
        if args.get("code_challenge_method") != "S256" or not args.get("code_challenge"):
            return _redirect_error(args, "invalid_request", "PKCE is required: code_challenge with method S256.")
        session = self._session(request, client)
        if session is not None:
            tokens = self._refresh(client, session.tokens.get("RefreshToken"), session.username)
            if tokens is not None:
                return self._issue(client, tokens, args, session.username)
        return _login_form(dict(args), error=None)

    def login(self, request: Any) -> Any:
        """``POST /login``: check the password with moto's Cognito, then redirect with a code."""
        form = request.form
        oauth = {name: form.get(name, "") for name in _OAUTH_FIELDS}
        client, problem = self._client_for(oauth["client_id"], oauth["redirect_uri"])
        if problem:
            return _page("Sign-in refused", f"<p>{html.escape(problem)}</p>", status=400)
        username = form.get("username", "").strip()
        password = form.get("password", "")
        if not username or not password:
            return _login_form(oauth, error="Enter your email address and password.", username=username)
        try:
            result = self.cognito.admin_initiate_auth(
                UserPoolId=client.pool_id,
                ClientId=client.client_id,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": password},
            )
        except Exception as exc:  # moto's NotAuthorized / UserNotFound / anything else
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            message = (
                "Incorrect email address or password."
                if code in ("NotAuthorizedException", "UserNotFoundException")
                else f"Sign-in failed ({code or type(exc).__name__})."
            )
            return _login_form(oauth, error=message, username=username)
        if result.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
            # An invited user's first sign-in with the temporary password: they choose their own,
            # as Cognito's managed login asks them to.
            return _new_password_form(oauth, username=username, session=result.get("Session", ""), error=None)
        if "AuthenticationResult" not in result:
            challenge = result.get("ChallengeName", "a challenge")
            return _login_form(
                oauth,
                error=f"This user must first answer {challenge} (set a permanent password with "
                "'aws cognito-idp admin-set-user-password --permanent' against the local stack).",
                username=username,
            )
        return self._signed_in(client, result["AuthenticationResult"], oauth, username)

    def new_password(self, request: Any) -> Any:
        """``POST /new-password``: the new password an invited user chose, for the challenge's session."""
        form = request.form
        oauth = {name: form.get(name) for name in _OAUTH_FIELDS}
        client, problem = self._client_for(oauth["client_id"], oauth["redirect_uri"])
        if problem:
            return _page("Sign-in refused", f"<p>{html.escape(problem)}</p>", status=400)
        username, session = form.get("username", ""), form.get("session", "")
        password, again = form.get("password", ""), form.get("confirm", "")
        if password != again:
            return _new_password_form(oauth, username=username, session=session, error="The passwords differ.")
        try:
            result = self.cognito.admin_respond_to_auth_challenge(
                UserPoolId=client.pool_id,
                ClientId=client.client_id,
                ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=session,
                ChallengeResponses={"USERNAME": username, "NEW_PASSWORD": password},
            )
        except Exception as exc:  # moto's InvalidPassword / NotAuthorized / anything else
            message = getattr(exc, "response", {}).get("Error", {}).get("Message") or type(exc).__name__
            return _new_password_form(oauth, username=username, session=session, error=f"Refused: {message}")
        if "AuthenticationResult" not in result:
            return _login_form(oauth, error="Sign in again with your new password.", username=username)
        return self._signed_in(client, result["AuthenticationResult"], oauth, username)

    def _signed_in(self, client: Client, tokens: dict[str, Any], oauth: dict[str, Any], username: str) -> Any:
        response = self._issue(client, tokens, oauth, username)
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[sid] = Grant(
                client=client,
                tokens=tokens,
                expires=time.monotonic() + SESSION_TTL_SECONDS,
                username=username,
            )
        response.set_cookie(COOKIE, sid, path=PREFIX, httponly=True, samesite="Lax", max_age=SESSION_TTL_SECONDS)
        return response

    def token(self, request: Any) -> Any:
        """``POST /oauth2/token``: a code and its PKCE verifier, or a refresh token, for tokens."""
        form = request.form
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self._lock:
                grant = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if grant is None or grant.expires < time.monotonic():
                return _oauth_error("invalid_grant", "The code is unknown, used or expired.")
            if grant.client.client_id != form.get("client_id") or grant.redirect_uri != form.get("redirect_uri"):
                return _oauth_error("invalid_grant", "client_id or redirect_uri differ from the authorization request.")
            if _challenge(verifier) != grant.challenge:
                return _oauth_error("invalid_grant", "The code_verifier does not match the code_challenge.")
            return _json(_token_body(grant.tokens))
        if grant_type == "refresh_token":
            client, problem = self._client_for(form.get("client_id"), None)
            if problem:
                return _oauth_error("invalid_client", problem)
            tokens = self._refresh(client, form.get("refresh_token"), None)
            if tokens is None:
                return _oauth_error("invalid_grant", "The refresh token is not valid.")
            return _json(_token_body(tokens))
        return _oauth_error("unsupported_grant_type", "Use authorization_code or refresh_token.")

    def revoke(self, request: Any) -> Any:
        """``POST /oauth2/revoke``: forget the refresh token (moto's RevokeToken when it has it)."""
        form = request.form
        client, problem = self._client_for(form.get("client_id"), None)
        if problem:
            return _oauth_error("invalid_client", problem)
        # moto may not implement it; revocation is best effort locally.
        with contextlib.suppress(Exception):
            self.cognito.revoke_token(Token=form.get("token", ""), ClientId=client.client_id)
        return _json({})

    def logout(self, request: Any) -> Any:
        """``GET /logout?client_id=&logout_uri=``: end the session, back to a registered sign-out URL."""
        client, problem = self._client_for(request.args.get("client_id"), None)
        logout_uri = request.args.get("logout_uri", "")
        if problem or logout_uri not in client.logout_urls:
            message = problem or "logout_uri is not one of the app client's sign-out URLs."
            return _page("Sign-out refused", f"<p>{html.escape(message)}</p>", status=400)
        with self._lock:
            self._sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = _redirect(logout_uri)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    def preflight(self, request: Any) -> Any:
        return _json({}, status=204)

    # Helpers

    def _client_for(self, client_id: str | None, redirect_uri: str | None) -> tuple[Any, str | None]:
        if not client_id:
            return None, "client_id is missing."
        client = self._find_client(client_id)
        if client is None:
            return None, f"No app client {client_id!r} in the local user pools (restart make dev?)."
        if not client.callback_urls:
            return None, "This app client has no callback URL: it is not the console's client."
        if redirect_uri is not None and redirect_uri not in client.callback_urls:
            return None, f"redirect_uri {redirect_uri!r} is not one of the app client's callback URLs."
        return client, None

    def _find_client(self, client_id: str) -> Client | None:
        for pool in self.cognito.list_user_pools(MaxResults=60).get("UserPools", []):
            try:
                found = self.cognito.describe_user_pool_client(UserPoolId=pool["Id"], ClientId=client_id)
            except Exception:  # noqa: S112 - not this pool's client
                continue
            described = found["UserPoolClient"]
            return Client(
                pool_id=pool["Id"],
                client_id=client_id,
                callback_urls=tuple(described.get("CallbackURLs", [])),
                logout_urls=tuple(described.get("LogoutURLs", [])),
            )
        return None

    def _session(self, request: Any, client: Client) -> Grant | None:
        with self._lock:
            session = self._sessions.get(request.cookies.get(COOKIE, ""))
        if session is None or session.expires < time.monotonic() or session.client.pool_id != client.pool_id:
            return None
        return session

    def _refresh(self, client: Client, refresh_token: str | None, username: str | None) -> dict[str, Any] | None:
        if not refresh_token:
            return None
        try:
            result = self.cognito.admin_initiate_auth(
                UserPoolId=client.pool_id,
                ClientId=client.client_id,
                AuthFlow="REFRESH_TOKEN_AUTH",
                AuthParameters={"REFRESH_TOKEN": refresh_token},
            )
        except Exception:
            return None
        tokens = result.get("AuthenticationResult")
        if not tokens:
            return None
        return {**tokens, "RefreshToken": tokens.get("RefreshToken") or refresh_token}

    def _issue(self, client: Client, tokens: dict[str, Any], oauth: dict[str, Any], username: str | None) -> Any:
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            for stale in [c for c, g in self._codes.items() if g.expires < now]:
                del self._codes[stale]
            self._codes[code] = Grant(
                client=client,
                tokens=tokens,
                expires=now + CODE_TTL_SECONDS,
                challenge=oauth.get("code_challenge"),
                redirect_uri=oauth.get("redirect_uri"),
                username=username,
            )
        query = {"code": code}
        if oauth.get("state"):
            query["state"] = oauth["state"]
        return _redirect(f"{oauth['redirect_uri']}?{urlencode(query)}")


_OAUTH_FIELDS = ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "scope")


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _token_body(tokens: dict[str, Any]) -> dict[str, Any]:
    body = {
        "id_token": tokens["IdToken"],
        "access_token": tokens["AccessToken"],
        "token_type": "Bearer",
        "expires_in": tokens.get("ExpiresIn", 3600),
    }
    if tokens.get("RefreshToken"):
        body["refresh_token"] = tokens["RefreshToken"]
    return body


def _cors(response: Any) -> Any:
    # The console (another port, so another origin) calls /oauth2/token and /oauth2/revoke.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Cache-Control"] = "no-store"
    return response


def _json(body: dict[str, Any], status: int = 200) -> Any:
    from werkzeug.wrappers import Response

    return _cors(Response(json.dumps(body), status=status, mimetype="application/json"))


def _oauth_error(error: str, description: str) -> Any:
    return _json({"error": error, "error_description": description}, status=400)


def _redirect(location: str) -> Any:
    from werkzeug.wrappers import Response

    return Response("", status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _redirect_error(args: Any, error: str, description: str) -> Any:
    query = {"error": error, "error_description": description}
    if args.get("state"):
        query["state"] = args["state"]
    return _redirect(f"{args['redirect_uri']}?{urlencode(query)}")


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:#f5f6f8;
color:#1b1f24;margin:0}
main{max-width:26rem;margin:6vh auto;background:#fff;border:1px solid #d4d9df;border-radius:12px;padding:1.75rem}
.local{background:#fff4e0;border:1px solid #f0c36d;color:#5c3700;border-radius:8px;padding:.7rem .9rem;
margin:0 0 1.25rem}
h1{font-size:1.4rem;margin:0 0 1rem}label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input{font:inherit;width:100%;padding:.5rem .6rem;border:1px solid #8c959f;border-radius:6px;box-sizing:border-box}
button{font:inherit;margin-top:1.25rem;width:100%;padding:.6rem;background:#1f4fd1;color:#fff;border:0;border-radius:6px;cursor:pointer}
.error{background:#fdecea;border:1px solid #efb3ac;color:#7a1a12;border-radius:8px;padding:.6rem .9rem;margin:0 0 1rem}
:focus-visible{outline:3px solid #ffb300;outline-offset:2px}
"""


def _page(title: str, body: str, *, status: int = 200, form_targets: tuple[str, ...] = ()) -> Any:
    from werkzeug.wrappers import Response

    nonce = secrets.token_urlsafe(12)
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)} · pennyworth (local)</title><style nonce="{nonce}">{_STYLE}</style></head>'
        f'<body><main><p class="local" role="note"><strong>Local development sign-in.</strong> '
        "This page exists only in <code>make dev</code>; on AWS, Cognito's managed login is here.</p>"
        f"<h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    headers = {
        # form-action covers the redirect that follows the form, back to the console's origin.
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; "
        f"form-action {' '.join(("'self'", *form_targets))}; frame-ancestors 'none'; base-uri 'none'",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(document, status=status, mimetype="text/html", headers=headers)


def _login_form(oauth: dict[str, Any], *, error: str | None, username: str = "") -> Any:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(str(oauth.get(name) or ""))}">'
        for name in _OAUTH_FIELDS
    )
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        f'{problem}<form method="post" action="{PREFIX}/login">{hidden}'
        '<label for="username">Email address</label>'
        f'<input id="username" name="username" type="email" autocomplete="username" required autofocus '
        f'value="{html.escape(username)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    target = urlsplit(str(oauth.get("redirect_uri") or ""))
    origin = (f"{target.scheme}://{target.netloc}",) if target.scheme in ("http", "https") and target.netloc else ()
    return _page("Sign in to pennyworth", body, form_targets=origin)


def _new_password_form(oauth: dict[str, Any], *, username: str, session: str, error: str | None) -> Any:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(str(oauth.get(name) or ""))}">'
        for name in _OAUTH_FIELDS
    )
    hidden += f'<input type="hidden" name="username" value="{html.escape(username)}">'
    hidden += f'<input type="hidden" name="session" value="{html.escape(session)}">'
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = (
        f"{problem}<p>Welcome, {html.escape(username)}. Your invitation's password was temporary: "
        "choose your own (12 characters or more, with upper and lower case, a digit and a symbol).</p>"
        f'<form method="post" action="{PREFIX}/new-password">{hidden}'
        '<label for="password">New password</label>'
        '<input id="password" name="password" type="password" autocomplete="new-password" required autofocus>'
        '<label for="confirm">New password again</label>'
        '<input id="confirm" name="confirm" type="password" autocomplete="new-password" required>'
        '<button type="submit">Set password and sign in</button></form>'
    )
    target = urlsplit(str(oauth.get("redirect_uri") or ""))
    origin = (f"{target.scheme}://{target.netloc}",) if target.scheme in ("http", "https") and target.netloc else ()
    return _page("Choose your password", body, form_targets=origin)


def mount(app: Callable[..., Iterable[bytes]], endpoint_url: str) -> Callable[..., Iterable[bytes]]:
    """``app`` with the local login answering under ``PREFIX`` (outside moto's request lock:
    the login calls moto itself over HTTP)."""

    def cognito() -> Any:
        import boto3

        return boto3.client(
            "cognito-idp",
            region_name="us-east-1",
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fixed local credentials
        )

    login = LocalLogin(cognito)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PREFIX or path.startswith(f"{PREFIX}/"):
            return login(environ, start_response)
        return app(environ, start_response)

    return wsgi
