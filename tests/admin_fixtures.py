"""Admin-API fixtures (a moto user pool, users, signed-in callers), shared by the admin test modules.

Registered for every test module by ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import wiring
from tests.cognito_helpers import Pool, User, add_user, bearer, make_pool, sign_in


@pytest.fixture
def cognito(aws: Any) -> Any:
    import boto3

    return boto3.client("cognito-idp", region_name="us-east-1")


@pytest.fixture
def pool(cognito: Any) -> Pool:
    return make_pool(cognito)


@pytest.fixture
def admin(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, "admin@example.com", admin=True)


@pytest.fixture
def alice(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, "alice@example.com")


@pytest.fixture
def bob(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, "bob@example.com")


@pytest.fixture
def admin_client(monkeypatch: pytest.MonkeyPatch, aws: Any, pool: Pool) -> Client:
    monkeypatch.setenv("PENNYWORTH_COGNITO_USER_POOL_ID", pool.user_pool_id)
    monkeypatch.setenv("PENNYWORTH_COGNITO_CLIENT_ID", pool.client_id)
    wiring.reset()
    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client


class Api:
    """The admin API as one signed-in user sees it."""

    def __init__(self, client: Client, token: str) -> None:
        self.client = client
        self.headers = bearer(token)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        return getattr(self.client.http, method)(path, headers=self.headers, body=raw or b"")


@pytest.fixture
def as_admin(admin_client: Client, cognito: Any, pool: Pool, admin: User) -> Api:
    return Api(admin_client, sign_in(cognito, pool, admin)["IdToken"])


@pytest.fixture
def as_alice(admin_client: Client, cognito: Any, pool: Pool, alice: User) -> Api:
    return Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])


@pytest.fixture
def as_bob(admin_client: Client, cognito: Any, pool: Pool, bob: User) -> Api:
    return Api(admin_client, sign_in(cognito, pool, bob)["AccessToken"])  # access tokens work too
