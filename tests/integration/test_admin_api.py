"""The admin API on the real local stack: chalice local, moto server's Cognito and its JWKS."""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3
import pytest
import requests

from tests.cognito_helpers import Pool, User, add_user, bearer, make_pool, mint, other_key, sign_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cognito(dev_info: dict[str, Any]) -> Any:
    info = dev_info["cognito"]
    return boto3.client(
        "cognito-idp",
        region_name=info["region"],
        endpoint_url=info["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def pool(dev_info: dict[str, Any]) -> Pool:
    return Pool(dev_info["cognito"]["user_pool_id"], dev_info["cognito"]["client_id"])


@pytest.fixture(scope="module")
def admin(dev_info: dict[str, Any], cognito: Any) -> User:
    users = cognito.list_users(
        UserPoolId=dev_info["cognito"]["user_pool_id"], Filter=f'email = "{dev_info["admin_username"]}"'
    )
    sub = {a["Name"]: a["Value"] for a in users["Users"][0]["Attributes"]}["sub"]
    return User(dev_info["admin_username"], dev_info["admin_password"], sub)


@pytest.fixture(scope="module")
def member(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, f"member-{secrets.token_hex(4)}@example.com")


@pytest.fixture(scope="module")
def api(dev_info: dict[str, Any]) -> str:
    return dev_info["base_url"].removesuffix("/v1")


def call(api: str, method: str, path: str, token: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{api}{path}", headers=bearer(token), json=body, timeout=30)


def assert_openai_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    return error


def test_admin_and_member_with_real_tokens(
    api: str, cognito: Any, pool: Pool, admin: User, member: User, dev_info
) -> None:
    admin_token = sign_in(cognito, pool, admin)["IdToken"]
    member_token = sign_in(cognito, pool, member)["IdToken"]
    # the admin creates a key for the member; the member sees it as theirs
    created = call(api, "post", "/admin/keys", admin_token, {"owner": member.email, "monthly_budget_usd": "9.99"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["owner"] == {"sub": member.sub, "email": member.email} and key["monthly_budget_usd"] == "9.99"
    mine = call(api, "get", "/admin/keys", member_token).json()["data"]
    assert key["key_id"] in {k["key_id"] for k in mine} and all(k["owner"]["sub"] == member.sub for k in mine)
    # the member cannot touch the admin's bootstrap key, nor read the global audit
    assert_openai_error(call(api, "get", f"/admin/keys/{dev_info['key_id']}", member_token), 403, "not_key_owner")
    assert_openai_error(call(api, "get", "/admin/audit", member_token), 403, "admin_only")
    # revocation by the member takes effect on the very next request
    headers = {"Authorization": f"Bearer {key['secret']}"}
    assert requests.get(f"{api}/v1/models", headers=headers, timeout=30).status_code == 200
    assert call(api, "post", f"/admin/keys/{key['key_id']}/revoke", member_token).status_code == 200
    assert_openai_error(requests.get(f"{api}/v1/models", headers=headers, timeout=30), 401, "revoked_api_key")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda pool, admin, cognito: mint(pool, admin.sub, groups=("admins",), key=other_key()),
        lambda pool, admin, cognito: mint(pool, admin.sub, groups=("admins",), expires_in=-1),
        lambda pool, admin, cognito: _other_pool_token(cognito),
        lambda pool, admin, cognito: mint(pool, admin.sub, groups=("admins",), aud="some-other-client"),
        lambda pool, admin, cognito: mint(pool, admin.sub, groups=("admins",), token_use="access", aud=pool.client_id),
    ],
    ids=["forged", "expired", "other-pool", "other-client", "access-with-aud"],
)
def test_forged_expired_and_foreign_tokens_are_refused_locally(
    api: str, pool: Pool, admin: User, cognito: Any, make_token
) -> None:
    token = make_token(pool, admin, cognito)
    for method, path in [("get", "/admin/keys"), ("post", "/admin/keys"), ("get", "/admin/audit")]:
        response = call(api, method, path, token, {} if method == "post" else None)
        assert_openai_error(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def _other_pool_token(cognito: Any) -> str:
    other = make_pool(cognito, f"other-{secrets.token_hex(3)}")
    user = add_user(cognito, other, "intruder@example.com", admin=True)
    return sign_in(cognito, other, user)["IdToken"]


def test_an_api_key_on_an_admin_route_is_a_401_not_a_dropped_connection(dev_info) -> None:
    # chalice local decodes Authorization as a JWT on Cognito routes; local.chalice_local keeps
    # it from crashing so the app can answer, as API Gateway would in AWS.
    import urllib.error
    import urllib.request

    base = dev_info["base_url"].removesuffix("/v1")
    request = urllib.request.Request(f"{base}/admin/keys", headers={"Authorization": f"Bearer {dev_info['api_key']}"})
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
        assert json.loads(exc.read())["error"]["type"] == "invalid_request_error"
    else:
        raise AssertionError("an API key was accepted on an admin route")
