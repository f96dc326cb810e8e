"""Cognito token verification (chalicelib/admin/auth.py) against moto's user pools and JWKS."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from chalicelib.admin.auth import (
    AdminAuthenticator,
    JwksCache,
    TokenVerifier,
    UserDirectory,
    authenticator_for_pool,
    cognito_issuer,
    fetch_json,
    jwks_url,
)
from chalicelib.errors import AuthenticationFailed, InvalidRequest, ServiceUnavailable
from chalicelib.keys.store import KeyStore
from tests.cognito_helpers import Pool, User, add_user, bearer, make_pool, mint, other_key, sign_in


@pytest.fixture
def member(cognito: Any, pool: Pool) -> User:
    return add_user(cognito, pool, "member@example.com")


@pytest.fixture
def authenticator(cognito: Any, pool: Pool) -> Iterator[AdminAuthenticator]:
    # No endpoint URL: the JWKS comes from the AWS URL, which in-process moto serves.
    yield authenticator_for_pool(
        user_pool_id=pool.user_pool_id,
        client_id=pool.client_id,
        region="us-east-1",
        endpoint_url=None,
        directory=UserDirectory(cognito, pool.user_pool_id),
    )


def refused(authenticator: AdminAuthenticator, token: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        authenticator.authenticate(bearer(token))
    assert caught.value.status_code == 401
    assert caught.value.headers["WWW-Authenticate"] == "Bearer"
    return caught.value


def test_urls_follow_cognito_and_moto_conventions() -> None:
    assert cognito_issuer("eu-west-1_abc") == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc"
    assert (
        jwks_url("eu-west-1_abc") == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/jwks.json"
    )
    assert jwks_url("us-east-1_x", endpoint_url="http://127.0.0.1:8001/") == (
        "http://127.0.0.1:8001/us-east-1_x/.well-known/jwks.json"
    )


def test_real_id_and_access_tokens_give_the_user_with_groups_and_email(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, admin: User, member: User
) -> None:
    # GIVEN real tokens issued by the pool
    admin_tokens = sign_in(cognito, pool, admin)
    member_tokens = sign_in(cognito, pool, member)
    # WHEN each is verified
    by_id = authenticator.authenticate(bearer(admin_tokens["IdToken"]))
    by_access = authenticator.authenticate(bearer(admin_tokens["AccessToken"]))
    plain = authenticator.authenticate(bearer(member_tokens["IdToken"]))
    # THEN the principal carries sub, email (from the directory when the token lacks it) and groups
    assert (by_id.sub, by_id.email, by_id.is_admin, by_id.token_use) == (admin.sub, admin.email, True, "id")
    assert (by_access.sub, by_access.email, by_access.token_use) == (admin.sub, admin.email, "access")
    assert (plain.sub, plain.email, plain.is_admin) == (member.sub, member.email, False)


def test_email_claim_is_used_when_present(authenticator: AdminAuthenticator, pool: Pool, admin: User) -> None:
    token = mint(pool, admin.sub, email="someone@example.org", groups=("admins",))
    assert authenticator.authenticate(bearer(token)).email == "someone@example.org"


def test_forged_token_signed_with_another_key_is_refused(
    authenticator: AdminAuthenticator, pool: Pool, admin: User
) -> None:
    # GIVEN a token with the right claims and moto's kid, but signed by an attacker's key
    forged = mint(pool, admin.sub, groups=("admins",), key=other_key())
    error = refused(authenticator, forged)
    assert error.code == "invalid_token" and "signature" in error.message


def test_unknown_kid_is_refused(authenticator: AdminAuthenticator, pool: Pool, admin: User) -> None:
    error = refused(authenticator, mint(pool, admin.sub, key=other_key(), kid="attacker"))
    assert "not signed by this gateway's user pool" in error.message


def test_expired_token_is_refused_with_a_clear_code(authenticator: AdminAuthenticator, pool: Pool, admin: User) -> None:
    error = refused(authenticator, mint(pool, admin.sub, expires_in=-60))
    assert error.code == "token_expired" and "pennyworth login" in error.message


def test_token_of_another_pool_is_refused(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, admin: User
) -> None:
    # GIVEN a real token of a second pool (moto signs every pool with the same key: only iss differs)
    other_pool = make_pool(cognito, "another-pool")
    stranger = add_user(cognito, other_pool, "stranger@example.com", admin=True)
    token = sign_in(cognito, other_pool, stranger)["IdToken"]
    assert refused(authenticator, token).message == "The token was issued by another user pool."


def test_token_of_another_app_client_is_refused(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, admin: User
) -> None:
    other_client = cognito.create_user_pool_client(
        UserPoolId=pool.user_pool_id, ClientName="other", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    tokens = sign_in(cognito, Pool(pool.user_pool_id, other_client), admin)
    for token in (tokens["IdToken"], tokens["AccessToken"]):
        assert refused(authenticator, token).message == "The token was issued to another app client."


@pytest.mark.parametrize(
    ("token_use", "claims", "message"),
    [
        # an access token dressed up with an id token's audience
        ("access", {"aud": "CLIENT"}, "another app client"),
        # an id token carrying the access token's client_id instead of aud
        ("id", {"aud": None, "client_id": "CLIENT"}, "another app client"),
        ("refresh", {}, "cannot be used here"),
        ("id", {"without": ("token_use",)}, "not valid"),
    ],
)
def test_token_use_misuse_is_refused(
    authenticator: AdminAuthenticator, pool: Pool, admin: User, token_use: str, claims: dict, message: str
) -> None:
    claims = {k: (pool.client_id if v == "CLIENT" else v) for k, v in claims.items()}
    error = refused(authenticator, mint(pool, admin.sub, token_use=token_use, **claims))
    assert message in error.message


def test_unsigned_and_hmac_tokens_are_refused(authenticator: AdminAuthenticator, pool: Pool, admin: User) -> None:
    claims = jwt.decode(mint(pool, admin.sub), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "dummy"})
    public_jwks = fetch_json(jwks_url(pool.user_pool_id))
    # The classic confusion attack: HS256 keyed with the (public) RSA key material.
    hmac_key = public_jwks["keys"][0]["n"].encode()
    confused = jwt.encode(claims, hmac_key, algorithm="HS256", headers={"kid": "dummy"})
    for token in (unsigned, confused):
        assert "RS256" in refused(authenticator, token).message


def test_missing_token_garbage_and_api_keys_are_refused(authenticator: AdminAuthenticator) -> None:
    with pytest.raises(AuthenticationFailed) as missing:
        authenticator.authenticate({})
    assert missing.value.code == "missing_token"
    assert "not a JWT" in refused(authenticator, "garbage").message
    api_key = "pw-abcdefghijkl-" + "x" * 40
    assert "API keys cannot manage keys" in refused(authenticator, api_key).message


def test_jwks_is_fetched_once_and_unknown_kids_refetch_at_most_once_a_minute(pool: Pool, aws: Any) -> None:
    # GIVEN a cache over the real JWKS, counting fetches, on a controllable clock
    fetches: list[str] = []
    now = [1000.0]

    def counting_fetch(url: str) -> dict:
        fetches.append(url)
        return fetch_json(url)

    cache = JwksCache(jwks_url(pool.user_pool_id), fetch=counting_fetch, monotonic=lambda: now[0])
    # WHEN known and unknown kids are looked up repeatedly
    assert cache.key_for("dummy") is not None
    assert cache.key_for("dummy") is not None
    assert cache.key_for("nope") is None  # within a minute of the first fetch: no refetch
    assert len(fetches) == 1
    now[0] += 61
    assert cache.key_for("nope") is None and cache.key_for("nope") is None
    # THEN one more fetch happened for the unknown kid, no more
    assert len(fetches) == 2


def test_jwks_outage_is_a_503_not_a_401(pool: Pool, admin: User) -> None:
    def failing_fetch(url: str) -> dict:
        raise OSError("connection refused")

    verifier = TokenVerifier(
        issuer=pool.issuer, client_id=pool.client_id, jwks=JwksCache("http://x", fetch=failing_fetch)
    )
    with pytest.raises(ServiceUnavailable, match="signing keys"):
        AdminAuthenticator(verifier).authenticate(bearer(mint(pool, admin.sub)))


def test_unconfigured_pool_is_reported_by_setting_name() -> None:
    with pytest.raises(ServiceUnavailable, match="PENNYWORTH_COGNITO_USER_POOL_ID"):
        authenticator_for_pool(user_pool_id=None, client_id="c", region="us-east-1", endpoint_url=None, directory=None)


def test_directory_finds_users_by_email_or_sub_and_refuses_filter_injection(
    cognito: Any, pool: Pool, member: User
) -> None:
    directory = UserDirectory(cognito, pool.user_pool_id)
    assert directory.find(member.email).sub == member.sub
    assert directory.find(member.sub).email == member.email
    assert directory.find("nobody@example.com") is None
    with pytest.raises(InvalidRequest):
        directory.find('x" or email ^= "')


class CountingClient:
    """A Cognito client that counts ListUsers calls (the directory's only call)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def list_users(self, **kwargs: Any) -> Any:
        self.calls += 1
        return self._client.list_users(**kwargs)


def test_a_lookup_miss_is_never_cached(cognito: Any, pool: Pool) -> None:
    # GIVEN a lookup of a user who does not exist yet
    directory = UserDirectory(cognito, pool.user_pool_id)
    assert directory.find("late@example.com") is None
    # WHEN the user is created THEN the very next lookup finds them (no process restart needed)
    late = add_user(cognito, pool, "late@example.com")
    assert directory.find("late@example.com").sub == late.sub
    assert directory.email_of(late.sub) == "late@example.com"


def test_binding_lookups_are_fresh_and_display_lookups_brief(cognito: Any, pool: Pool, member: User) -> None:
    now = [0.0]
    counting = CountingClient(cognito)
    directory = UserDirectory(counting, pool.user_pool_id, ttl_seconds=60, monotonic=lambda: now[0])
    # find() binds keys and budgets to a sub: it asks Cognito every time
    directory.find(member.email)
    directory.find(member.email)
    assert counting.calls == 2
    # email_of() only shows a name: an answer (find's too) is reused for ttl_seconds, then asked again
    assert directory.email_of(member.sub) == member.email
    assert directory.email_of(member.sub) == member.email
    assert counting.calls == 2
    now[0] = 61.0
    assert directory.email_of(member.sub) == member.email
    assert counting.calls == 3
    # and a miss is asked again every time
    directory.email_of("00000000-0000-0000-0000-000000000000")
    directory.email_of("00000000-0000-0000-0000-000000000000")
    assert counting.calls == 5


def test_a_recreated_user_is_a_new_owner(cognito: Any, pool: Pool, member: User) -> None:
    directory = UserDirectory(cognito, pool.user_pool_id)
    assert directory.find(member.email).sub == member.sub
    assert directory.email_of(member.sub) == member.email
    # WHEN the user is deleted and created again with the same e-mail
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=member.email)
    again = add_user(cognito, pool, member.email)
    assert again.sub != member.sub
    # THEN the e-mail names the new sub at once
    assert directory.find(member.email).sub == again.sub
    assert directory.find(member.sub) is None


@pytest.mark.parametrize("token_kind", ["IdToken", "AccessToken"])
def test_a_deleted_or_disabled_users_tokens_stop_working_at_once(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, member: User, token_kind: str
) -> None:
    # GIVEN a signed-in user (tokens are valid for an hour, and the signature stays valid after that user is gone)
    token = sign_in(cognito, pool, member)[token_kind]
    assert authenticator.authenticate(bearer(token)).sub == member.sub
    # WHEN an admin disables the user THEN the token no longer works, long before it expires
    cognito.admin_disable_user(UserPoolId=pool.user_pool_id, Username=member.email)
    assert refused(authenticator, token).code == "user_disabled"
    # AND once enabled again it works again
    cognito.admin_enable_user(UserPoolId=pool.user_pool_id, Username=member.email)
    assert authenticator.authenticate(bearer(token)).sub == member.sub
    # WHEN the user is deleted THEN the token is refused too (it could otherwise create keys for a ghost)
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=member.email)
    assert refused(authenticator, token).code == "user_not_found"


@pytest.mark.parametrize("token_kind", ["IdToken", "AccessToken"])
def test_an_admin_removed_from_the_group_is_no_admin_with_the_old_token(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, admin: User, token_kind: str
) -> None:
    token = sign_in(cognito, pool, admin)[token_kind]  # its cognito:groups claim says admins
    assert authenticator.authenticate(bearer(token)).is_admin
    cognito.admin_remove_user_from_group(UserPoolId=pool.user_pool_id, Username=admin.email, GroupName="admins")
    demoted = authenticator.authenticate(bearer(token))
    assert (demoted.sub, demoted.is_admin) == (admin.sub, False)


def test_a_user_added_to_a_group_after_signing_in_gets_no_rights_from_the_old_token(
    authenticator: AdminAuthenticator, cognito: Any, pool: Pool, member: User
) -> None:
    # Rights come from the token, confirmed by the directory: never granted by the directory alone.
    token = sign_in(cognito, pool, member)["IdToken"]
    cognito.admin_add_user_to_group(UserPoolId=pool.user_pool_id, Username=member.email, GroupName="admins")
    assert not authenticator.authenticate(bearer(token)).is_admin


class OperationCounter:
    """A Cognito client that counts every operation the authenticator makes, by name."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def counted(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(**kwargs)

        return counted


def direct_authenticator(cognito: Any, pool: Pool) -> AdminAuthenticator:
    from chalicelib.admin.auth import JwksCache, TokenVerifier, cognito_issuer, jwks_url

    verifier = TokenVerifier(
        issuer=cognito_issuer(pool.user_pool_id),
        client_id=pool.client_id,
        jwks=JwksCache(jwks_url(pool.user_pool_id)),
    )
    directory = UserDirectory(cognito, pool.user_pool_id)
    return AdminAuthenticator(verifier, directory)


@pytest.mark.parametrize("token_kind", ["IdToken", "AccessToken"])
def test_the_standing_check_is_one_admin_get_user_by_the_tokens_username(
    cognito: Any, pool: Pool, admin: User, member: User, token_kind: str
) -> None:
    counting = OperationCounter(cognito)
    authenticator = direct_authenticator(counting, pool)
    # A member: one AdminGetUser (Cognito's UserRead quota, 120/s), no ListUsers (UserList, 30/s)
    assert authenticator.authenticate(bearer(sign_in(cognito, pool, member)[token_kind])).sub == member.sub
    assert counting.calls == {"admin_get_user": 1}
    # An admin: that, and whether it is still in the group
    counting.calls.clear()
    assert authenticator.authenticate(bearer(sign_in(cognito, pool, admin)[token_kind])).is_admin
    assert counting.calls == {"admin_get_user": 1, "admin_list_groups_for_user": 1}


def test_a_recreated_user_with_the_same_email_is_not_the_tokens_user(cognito: Any, pool: Pool, member: User) -> None:
    authenticator = direct_authenticator(cognito, pool)
    token = sign_in(cognito, pool, member)["AccessToken"]
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=member.email)
    add_user(cognito, pool, member.email)
    assert refused(authenticator, token).code == "user_not_found"


def test_through_the_api_a_disabled_or_demoted_caller_reads_nothing_on_the_very_next_call(
    as_admin: Any, as_alice: Any, cognito: Any, pool: Pool, admin: User, alice: User
) -> None:
    # GIVEN an admin and a member who have just read (a console page's burst of reads), with the
    # deployed defaults: the promise is that off-boarding stops a person at once, reads included
    assert as_alice.call("post", "/admin/keys", {"name": "alice's"}).status_code == 201
    assert as_admin.call("get", "/admin/requests").status_code == 200
    assert as_admin.call("get", "/admin/audit").status_code == 200
    assert as_alice.call("get", "/admin/keys?owner=me").status_code == 200
    # WHEN the admin is demoted THEN their very next read is a member's: the audit log is refused
    cognito.admin_remove_user_from_group(UserPoolId=pool.user_pool_id, Username=admin.email, GroupName="admins")
    refused = as_admin.call("get", "/admin/audit")
    assert refused.status_code == 403, refused.json_body
    everyone = as_admin.call("get", "/admin/keys").json_body["data"]
    assert all(key["owner"]["sub"] == admin.sub for key in everyone)
    # WHEN the member is disabled THEN their very next read is refused
    cognito.admin_disable_user(UserPoolId=pool.user_pool_id, Username=alice.email)
    for path in ("/admin/keys?owner=me", "/admin/requests", f"/admin/owners/{alice.sub}/budget", "/admin/usage"):
        answer = as_alice.call("get", path)
        assert (answer.status_code, answer.json_body["error"]["code"]) == (401, "user_disabled"), path


# -- two keys in one request: refused as ambiguous, however the duplicates arrive (issue 20) -----


def _api_gateway_event(method: str, path: str, pairs: list[tuple[str, str]], resource: str | None = None) -> dict:
    """A REST API proxy event as API Gateway sends it: ``headers`` keeps a repeated header's last
    value, ``multiValueHeaders`` all of them."""
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"httpMethod": method, "resourcePath": resource or path, "path": path, "requestId": "r1"},
        "body": None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def two_keys(monkeypatch: pytest.MonkeyPatch, aws, keys_table, emulator_url: str) -> tuple[str, str]:
    from chalicelib import wiring

    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    wiring.reset()
    store = KeyStore(keys_table)
    return store.create(owner_sub="alice", name="a")[1], store.create(owner_sub="bob", name="b")[1]


@pytest.mark.parametrize("header", ["Authorization", "x-api-key"])
def test_two_different_keys_in_one_header_name_are_refused_on_a_streamed_route(two_keys, header: str) -> None:
    import json

    from chalicelib.streaming.handler import handle

    first, second = two_keys
    value = "Bearer {}" if header == "Authorization" else "{}"
    event = _api_gateway_event(
        "POST",
        "/v1/messages",
        [(header, value.format(first)), (header, value.format(second)), ("anthropic-version", "2023-06-01")],
    )
    event["body"] = json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    )
    result = handle(event, deadline=time.time() + 30)
    body = json.loads(b"".join(result.chunks))
    assert result.status == 401 and "two different" in body["error"]["message"], body


def test_two_different_keys_are_refused_on_a_buffered_route_as_lambda_gets_them(two_keys) -> None:
    import json

    from chalice.local import LambdaContext

    from app import app

    first, second = two_keys
    pairs = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
    answer = app(_api_gateway_event("GET", "/v1/models", pairs), LambdaContext("f", 128))
    error = json.loads(answer["body"])["error"]
    assert answer["statusCode"] == 401 and error["code"] == "ambiguous_api_key", error
    # the same key twice is one key
    same = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {first}")]
    assert app(_api_gateway_event("GET", "/v1/models", same), LambdaContext("f", 128))["statusCode"] == 200
