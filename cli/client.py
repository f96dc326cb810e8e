"""HTTP client for the gateway's admin API: signs requests with the session's token.

Reused by every command group (``keys`` here; ``usage`` and ``ledger`` later):
build one with ``GatewayClient(profile, session)`` and call ``get``/``post``/
``patch``, or ``pages`` to follow cursors. Errors arrive as ``cli.errors``
exceptions, never as ``requests`` ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cli.auth import Session
from cli.config import Profile
from cli.errors import ApiError, CliError, NetworkError

DEFAULT_TIMEOUT_SECONDS = 60.0


class GatewayClient:
    """Calls ``<base_url><path>`` with ``Authorization: Bearer <ID token>``."""

    def __init__(
        self, profile: Profile, session: Session | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        import requests

        self.profile = profile
        self.session = session or Session(profile)
        self.timeout = timeout
        self._http = requests.Session()
        self._http.headers["User-Agent"] = "pennyworth-cli"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        return self.request("DELETE", path, params=params, body=body)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a listing, following ``next_cursor``.

        Raises
        ------
        CliError
            The gateway sent a cursor it had sent before: following it would go round forever.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        followed: set[str] = set()
        while True:
            page = self.get(path, query)
            yield page
            if not page.get("has_more") or not page.get("next_cursor"):
                return
            query["cursor"] = next_cursor(page, followed)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """One call; a 401 for an expired token is retried once after refreshing the session.

        Raises
        ------
        ApiError
            The gateway answered with an error status.
        NetworkError
            The gateway could not be reached.
        NotLoggedIn, SessionExpired
            There is no usable session.
        """
        response = self._send(method, path, params, body, self.session.id_token())
        if response.status_code == 401 and _error(response).get("code") == "token_expired":
            tokens = self.session.cache.get(self.profile.name)
            if tokens is not None:
                response = self._send(method, path, params, body, self.session.refresh(tokens).id_token)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _error(response))
        return response.json() if response.content else None

    def _send(self, method: str, path: str, params: Any, body: Any, token: str) -> Any:
        import requests

        url = f"{self.profile.base_url}{path}"
        try:
            return self._http.request(
                method,
                url,
                params={k: v for k, v in (params or {}).items() if v is not None},
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise NetworkError(
                f"The gateway at {self.profile.base_url} did not answer within {self.timeout:.0f}s."
            ) from None
        except requests.RequestException as exc:
            hint = (
                "Is the local stack running? Start it with 'make dev'."
                if self.profile.name == "local"
                else "Check your network connection and the profile's base_url (or --endpoint)."
            )
            raise NetworkError(
                f"Could not reach the gateway at {self.profile.base_url} ({type(exc).__name__}).", hint
            ) from None


def _error(response: Any) -> dict[str, Any]:
    """The OpenAI error object of a response (API Gateway's own errors are ``{"message": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:200] or response.reason}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    if isinstance(body, dict) and "message" in body:
        return {"message": body["message"]}
    return {"message": str(body)[:200]}


def next_cursor(page: Mapping[str, Any], followed: set[str]) -> str:
    """``page``'s ``next_cursor``, remembered in ``followed``; a cursor seen before stops the listing.

    Raises
    ------
    CliError
        ``followed`` holds it already.
    """
    cursor = str(page["next_cursor"])
    if cursor in followed:
        raise CliError(
            "The gateway sent the same page cursor twice; the listing stopped rather than go round forever.",
            hint="This is a gateway bug: please report it with the command you ran.",
        )
    followed.add(cursor)
    return cursor
