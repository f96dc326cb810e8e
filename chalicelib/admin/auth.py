"""Who is calling the admin API: Cognito JWT verification, in the app itself.

In AWS, API Gateway's Cognito authorizer checks the token before the Lambda
runs; ``chalice local`` and ``chalice.test.Client`` skip authorizers, so the
app verifies every token as well (signature against the pool's JWKS, issuer,
app client, ``token_use``, expiry). Local must not be an open door.

The JWKS is fetched on first use (never at import) and cached per process; an
unknown ``kid`` triggers at most one refetch per minute, so forged tokens
cannot make the gateway hammer Cognito.

A token's signature stays valid for its whole hour, whatever happens to its user, so
every call, a read as much as a change, also asks the pool whether the user still exists,
is enabled and (for an ``admins`` claim) is still an admin: ``AdminGetUser`` (Cognito's
``UserRead`` quota, 120 requests/s per account) and ``AdminListGroupsForUser``
(``UserResourceRead``, 50/s). Nothing about a caller is remembered between calls: a person
disabled, deleted or demoted is refused from their very next call (docs/security.md).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import AuthenticationFailed, InvalidRequest, ServiceUnavailable
from chalicelib.keys.store import KEY_PREFIX, bearer_token
from chalicelib.observability import logger

ADMINS_GROUP = "admins"
TOKEN_USES = ("id", "access")
_JWKS_TIMEOUT_SECONDS = 5
_EMAIL_RE = re.compile(r"^[^@\s\"\\]+@[^@\s\"\\]+$")
_SUB_RE = re.compile(r"^[A-Za-z0-9-]{1,128}$")
#: Cognito usernames: 1-128 characters without whitespace (a verified token's claim, sent as a value).
_USERNAME_RE = re.compile(r"^\S{1,128}$")


def cognito_issuer(user_pool_id: str, region: str | None = None) -> str:
    """The ``iss`` of the pool's tokens (moto uses the AWS form too); a pool id starts with its region."""
    region = user_pool_id.split("_", 1)[0] if "_" in user_pool_id else region
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def jwks_url(user_pool_id: str, *, region: str | None = None, endpoint_url: str | None = None) -> str:
    """Where the pool publishes its signing keys (``endpoint_url``: moto server, locally)."""
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{user_pool_id}/.well-known/jwks.json"
    return f"{cognito_issuer(user_pool_id, region)}/.well-known/jwks.json"


def fetch_json(url: str) -> dict[str, Any]:
    """GET ``url`` and decode its JSON body (the JWKS fetcher).

    Raises
    ------
    OSError
        The URL could not be fetched (``requests`` errors are ``OSError``s) or is not JSON.
    """
    import requests  # imported on the first admin call only, to keep cold starts of /v1 fast

    response = requests.get(url, timeout=_JWKS_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.json()


class JwksCache:
    """The pool's signing keys by ``kid``: fetched once, refetched for an unknown kid at most once a minute."""

    def __init__(
        self,
        url: str,
        *,
        fetch: Callable[[str], Mapping[str, Any]] = fetch_json,
        min_refresh_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._fetch = fetch
        self._min_refresh = min_refresh_seconds
        self._monotonic = monotonic
        self._keys: dict[str, Any] | None = None
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> Any | None:
        """The ``PyJWK`` with this kid, or None when the pool has no such key.

        Raises
        ------
        ServiceUnavailable
            The JWKS could not be fetched and none is cached.
        """
        with self._lock:
            if self._keys is None or (kid not in self._keys and self._may_refresh()):
                self._refresh()
            return (self._keys or {}).get(kid)

    def _may_refresh(self) -> bool:
        return self._fetched_at is None or self._monotonic() - self._fetched_at >= self._min_refresh

    def _refresh(self) -> None:
        import jwt

        self._fetched_at = self._monotonic()
        try:
            key_set = jwt.PyJWKSet.from_dict(dict(self._fetch(self._url)))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            logger.warning("could not fetch the user pool's JWKS", extra={"url": self._url, "error": str(exc)})
            if self._keys is None:
                raise ServiceUnavailable(
                    "The gateway could not fetch the user pool's signing keys; retry in a minute."
                ) from None
            return
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}


@dataclass(frozen=True)
class Principal:
    """A verified caller of the admin API."""

    sub: str
    email: str | None
    groups: tuple[str, ...]
    token_use: str

    @property
    def is_admin(self) -> bool:
        return ADMINS_GROUP in self.groups


class TokenVerifier:
    """Checks a Cognito token's signature, issuer, app client, ``token_use`` and expiry.

    ``client_id`` is the app client tokens must be issued to; ``other_client_ids``
    are further clients of the same pool whose tokens are equally accepted (the
    web console's client: its users sign in through the managed login).
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        jwks: JwksCache,
        other_client_ids: tuple[str, ...] = (),
        token_uses: tuple[str, ...] = TOKEN_USES,
        leeway_seconds: int = 0,
    ) -> None:
        self._issuer = issuer
        self._client_ids = frozenset((client_id, *other_client_ids))
        self._jwks = jwks
        self._token_uses = token_uses
        self._leeway = leeway_seconds

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once every check passed.

        Raises
        ------
        AuthenticationFailed
            A malformed, forged, expired or misused token, or one of another pool or app client.
        ServiceUnavailable
            The pool's signing keys cannot be fetched.
        """
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("The token is not a JWT.") from None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise _invalid("The token is not signed the way Cognito signs tokens (RS256 with a key id).")
        key = self._jwks.key_for(kid)
        if key is None:
            raise _invalid("The token is not signed by this gateway's user pool.")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed(
                "Your session has expired; sign in again (pennyworth login).", code="token_expired"
            ) from None
        except jwt.InvalidIssuerError:
            raise _invalid("The token was issued by another user pool.") from None
        except jwt.InvalidSignatureError:
            raise _invalid("The token's signature is not valid.") from None
        except jwt.PyJWTError as exc:
            raise _invalid(f"The token is not valid ({exc}).") from None
        self._check_use(claims)
        return claims

    def _check_use(self, claims: Mapping[str, Any]) -> None:
        use = claims.get("token_use")
        if use not in self._token_uses:
            raise _invalid(f"A '{use}' token cannot be used here; send an ID or access token.")
        # ID tokens name their app client in ``aud``; access tokens in ``client_id`` and have no ``aud``.
        if use == "id":
            if "client_id" in claims or claims.get("aud") not in self._client_ids:
                raise _invalid("The token was issued to another app client.")
        elif "aud" in claims or claims.get("client_id") not in self._client_ids:
            raise _invalid("The token was issued to another app client.")


def _invalid(message: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code="invalid_token")


def is_sub(text: str) -> bool:
    """True for a string shaped like a Cognito ``sub`` (and safe inside a ListUsers filter)."""
    return bool(_SUB_RE.match(text))


@dataclass(frozen=True)
class DirectoryUser:
    """A user of the pool, as key ownership (and sign-in standing) needs it."""

    sub: str
    email: str | None
    username: str | None = None
    enabled: bool = True


class UserDirectory:
    """Looks users up in the pool (``ListUsers``).

    Keys and budgets are bound to a user's ``sub``, so the lookups that bind
    (``find``: an e-mail or sub named by a caller) always ask Cognito: a user
    created a second ago is found, and a user deleted and created again with
    the same e-mail is the new ``sub``, never the old one. Lookups that only
    show a name (``email_of``) reuse an answer for ``ttl_seconds``. Misses are
    never cached.
    """

    def __init__(
        self,
        client: Any,
        user_pool_id: str,
        *,
        ttl_seconds: float = 60.0,
        max_cached: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._pool_id = user_pool_id
        self._ttl = ttl_seconds
        self._max_cached = max_cached
        self._monotonic = monotonic
        self._emails: dict[str, tuple[float, str | None]] = {}

    def find(self, who: str) -> DirectoryUser | None:
        """The user with this email (when ``who`` has an ``@``) or this sub, asked now; None when there is none.

        Raises
        ------
        InvalidRequest
            ``who`` is neither an email address nor a sub.
        ServiceUnavailable
            Cognito could not be asked.
        """
        if _EMAIL_RE.match(who):
            attribute = "email"
        elif _SUB_RE.match(who):
            attribute = "sub"
        else:
            raise InvalidRequest(f"{who!r} is neither an email address nor a user id (sub).", param="owner")
        user = self._list_one(attribute, who)
        if user is not None:
            self._remember(user)
        return user

    def standing(self, sub: str, *, username: str | None = None) -> DirectoryUser | None:
        """The user with this sub as the pool has them now (never cached); None when there is none.

        A token stays valid for its whole lifetime (an hour) after its user is
        deleted or disabled: the admin API asks here. With the token's ``username``
        claim it is one ``AdminGetUser`` (a user deleted and created again under the
        same name has another sub, and is not this one); without, ``ListUsers``.

        Raises
        ------
        ServiceUnavailable
            Cognito could not be asked.
        """
        if not _SUB_RE.match(sub):
            return None
        if username and _USERNAME_RE.match(username):
            user = self._get_one(username)
            if user is not None and user.sub != sub:
                user = None
        else:
            user = self._list_one("sub", sub)
        if user is not None:
            self._remember(user)
        return user

    def in_group(self, user: DirectoryUser, group: str) -> bool:
        """True when ``user`` is in ``group`` now (``AdminListGroupsForUser``, never cached).

        Raises
        ------
        ServiceUnavailable
            Cognito could not be asked.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"UserPoolId": self._pool_id, "Username": user.username or user.sub, "Limit": 60}
        try:
            while True:
                response = self._client.admin_list_groups_for_user(**request)
                if any(g.get("GroupName") == group for g in response.get("Groups", [])):
                    return True
                if not response.get("NextToken"):
                    return False
                request["NextToken"] = response["NextToken"]
        except (BotoCoreError, ClientError) as exc:
            logger.warning("Cognito AdminListGroupsForUser failed", extra={"error": str(exc)})
            raise ServiceUnavailable("The gateway could not reach the user directory; retry later.") from None

    def email_of(self, sub: str) -> str | None:
        """The e-mail of the user with this sub, for display (cached briefly); None when unknown.

        Raises
        ------
        ServiceUnavailable
            Cognito could not be asked.
        """
        cached = self._emails.get(sub)
        if cached is not None and self._monotonic() - cached[0] < self._ttl:
            return cached[1]
        if not _SUB_RE.match(sub):
            return None
        user = self._list_one("sub", sub)
        if user is None:
            self._emails.pop(sub, None)
            return None
        self._remember(user)
        return user.email

    def _remember(self, user: DirectoryUser) -> None:
        if len(self._emails) >= self._max_cached:
            self._emails.clear()
        self._emails[user.sub] = (self._monotonic(), user.email)

    def _get_one(self, username: str) -> DirectoryUser | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.admin_get_user(UserPoolId=self._pool_id, Username=username)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "UserNotFoundException":
                return None
            logger.warning("Cognito AdminGetUser failed", extra={"error": str(exc)})
            raise ServiceUnavailable("The gateway could not reach the user directory; retry later.") from None
        except BotoCoreError as exc:
            logger.warning("Cognito AdminGetUser failed", extra={"error": str(exc)})
            raise ServiceUnavailable("The gateway could not reach the user directory; retry later.") from None
        attributes = {a["Name"]: a["Value"] for a in response.get("UserAttributes", [])}
        if "sub" not in attributes:
            return None
        return DirectoryUser(
            sub=attributes["sub"],
            email=attributes.get("email"),
            username=response.get("Username"),
            enabled=response.get("Enabled", True) is not False,
        )

    def _list_one(self, attribute: str, value: str) -> DirectoryUser | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # The regexes above exclude quotes and backslashes, so the filter cannot be broken out of.
            response = self._client.list_users(UserPoolId=self._pool_id, Filter=f'{attribute} = "{value}"', Limit=2)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("Cognito ListUsers failed", extra={"error": str(exc)})
            raise ServiceUnavailable("The gateway could not reach the user directory; retry later.") from None
        users = response.get("Users", [])
        if len(users) != 1:
            return None
        attributes = {a["Name"]: a["Value"] for a in users[0].get("Attributes", [])}
        return DirectoryUser(
            sub=attributes["sub"],
            email=attributes.get("email"),
            username=users[0].get("Username"),
            enabled=users[0].get("Enabled", True) is not False,
        )


class AdminAuthenticator:
    """Turns a request's bearer token into a ``Principal`` (email from the token or the directory).

    ``on_authenticated(principal)`` runs after every successful verification (the people
    directory meets the caller there); it may refuse the caller by raising.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        directory: UserDirectory | None = None,
        on_authenticated: Callable[[Principal], None] | None = None,
    ) -> None:
        self._verifier = verifier
        self._directory = directory
        self._on_authenticated = on_authenticated

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The verified caller, as the token says and the directory confirms now.

        Raises
        ------
        AuthenticationFailed
            No token, an API key instead of a token, or a token ``TokenVerifier`` refuses.
        ServiceUnavailable
            The pool's signing keys cannot be fetched.
        """
        token = bearer_token(headers)
        if token is None:
            raise AuthenticationFailed(
                "Sign in first: the admin API needs a Cognito token as 'Authorization: Bearer <token>' "
                "(the pennyworth CLI sends it after 'pennyworth login').",
                code="missing_token",
            )
        if token.startswith(f"{KEY_PREFIX}-"):
            raise _invalid("API keys cannot manage keys; sign in with 'pennyworth login' and use its token.")
        claims = self._verifier.verify(token)
        claimed = claims.get("cognito:groups") or []
        groups = tuple(g for g in claimed if isinstance(g, str)) if isinstance(claimed, list) else ()
        # ID tokens name the user in ``cognito:username``, access tokens in ``username``.
        username = claims.get("cognito:username", claims.get("username"))
        user = self._standing(claims["sub"], username if isinstance(username, str) else None)
        directory = self._directory
        # A user removed from the group after signing in: the token's claim is up to an hour old.
        if user is not None and directory is not None and ADMINS_GROUP in groups:
            groups = groups if directory.in_group(user, ADMINS_GROUP) else tuple(g for g in groups if g != ADMINS_GROUP)
        principal = Principal(
            sub=claims["sub"],
            email=self._email(claims, user),
            groups=groups,
            token_use=claims["token_use"],
        )
        if self._on_authenticated is not None:
            self._on_authenticated(principal)
        return principal

    def _standing(self, sub: str, username: str | None = None) -> DirectoryUser | None:
        """The token's user as the pool has them now; refuses a user deleted or disabled since signing in.

        A Cognito token's signature stays valid until it expires (an hour), whatever
        happened to its user; API Gateway's authorizer checks no more than that.
        """
        if self._directory is None:
            return None
        user = self._directory.standing(sub, username=username)
        if user is None:
            raise AuthenticationFailed(
                "This user no longer exists in the user pool; its tokens are no longer accepted.",
                code="user_not_found",
            )
        if not user.enabled:
            raise AuthenticationFailed(
                "This user has been disabled; ask an admin to enable it, then sign in again.", code="user_disabled"
            )
        return user

    def _email(self, claims: Mapping[str, Any], user: DirectoryUser | None) -> str | None:
        email = claims.get("email")
        if isinstance(email, str) and _EMAIL_RE.match(email):
            return email
        # Access tokens carry no email (and moto's ID tokens carry the sub there): the directory's.
        return user.email if user is not None else None


def authenticator_for_pool(
    *,
    user_pool_id: str | None,
    client_id: str | None,
    region: str,
    endpoint_url: str | None,
    directory: UserDirectory | None,
    console_client_id: str | None = None,
    on_authenticated: Callable[[Principal], None] | None = None,
) -> AdminAuthenticator:
    """The authenticator for one pool and its app clients (the CLI's, and the console's when set).

    Raises
    ------
    ServiceUnavailable
        No pool or app client is configured, so no token can be verified.
    """
    if not user_pool_id or not client_id:
        raise ServiceUnavailable(
            "The admin API is not configured: PENNYWORTH_COGNITO_USER_POOL_ID and "
            "PENNYWORTH_COGNITO_CLIENT_ID must be set.",
            code="admin_api_not_configured",
        )
    verifier = TokenVerifier(
        issuer=cognito_issuer(user_pool_id, region),
        client_id=client_id,
        other_client_ids=(console_client_id,) if console_client_id else (),
        jwks=JwksCache(jwks_url(user_pool_id, region=region, endpoint_url=endpoint_url)),
    )
    return AdminAuthenticator(verifier, directory, on_authenticated)
