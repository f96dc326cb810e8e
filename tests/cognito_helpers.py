"""Cognito for tests: a pool built from the template, real users and tokens, and forged tokens.

Works against in-process moto (``mock_aws``) and against the local stack's moto
server alike: every function takes a boto3 ``cognito-idp`` client.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from local import bootstrap


@dataclass(frozen=True)
class Pool:
    """A user pool and its CLI app client."""

    user_pool_id: str
    client_id: str

    @property
    def issuer(self) -> str:
        region = self.user_pool_id.split("_", 1)[0]
        return f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool_id}"


@dataclass(frozen=True)
class User:
    email: str
    password: str
    sub: str


def make_pool(cognito: Any, name: str = "pennyworth-test-users") -> Pool:
    return Pool(**bootstrap.create_user_pool(cognito, name))


def add_user(cognito: Any, pool: Pool, email: str, *, admin: bool = False) -> User:
    password = f"Pw1!{secrets.token_urlsafe(12)}"
    groups = (bootstrap.ADMINS_GROUP,) if admin else ()
    sub = bootstrap.create_user(cognito, pool.user_pool_id, email, password, groups=groups)
    return User(email=email, password=password, sub=sub)


def sign_in(cognito: Any, pool: Pool, user: User) -> dict[str, str]:
    """Real tokens from Cognito (USER_PASSWORD_AUTH): IdToken, AccessToken, RefreshToken."""
    result = cognito.initiate_auth(
        ClientId=pool.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user.email, "PASSWORD": user.password},
    )
    return result["AuthenticationResult"]


def moto_signing_key() -> Any:
    """The private key moto signs every pool's tokens with (so tests can mint valid-looking ones)."""
    from moto.utilities.utils import load_resource

    return jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json")).key


def other_key() -> Any:
    """A freshly generated RSA key nobody trusts."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def mint(
    pool: Pool,
    sub: str,
    *,
    token_use: str = "id",  # noqa: S107 - a JWT claim, not a password
    key: Any = None,
    kid: str = "dummy",
    expires_in: int = 3600,
    groups: tuple[str, ...] = (),
    email: str | None = None,
    without: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A Cognito-shaped token; signed with moto's key unless ``key`` says otherwise."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": pool.issuer,
        "sub": sub,
        "token_use": token_use,
        "iat": now - 10,
        "auth_time": now - 10,
        "exp": now + expires_in,
        "jti": secrets.token_hex(8),
    }
    payload["aud" if token_use == "id" else "client_id"] = pool.client_id
    if groups:
        payload["cognito:groups"] = list(groups)
    if email:
        payload["email"] = email
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None and k not in without}
    signing_key = key if key is not None else moto_signing_key()
    return jwt.encode(payload, signing_key, algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
