"""The admin API through Chalice's test client: moto for DynamoDB and Cognito, real tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.errors import Conflict, InvalidRequest
from chalicelib.keys.audit import Actor, AuditLog, DeniedUseRecorder
from chalicelib.keys.store import KeyStore, decode_cursor, derive_key_id, encode_cursor, hash_key
from tests.admin_fixtures import Api
from tests.cognito_helpers import Pool, User, bearer, mint, other_key
from tests.openai_schema import assert_valid

AUDIT_TABLE = "pennyworth-local-audit"


@pytest.fixture
def client(admin_client: Client) -> Client:
    return admin_client


def assert_error(response: Any, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.body
    assert_valid("ErrorResponse", response.json_body)
    error = response.json_body["error"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def use_key(client: Client, secret: str) -> int:
    return client.http.get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code


# Authentication and permissions


@pytest.mark.parametrize(
    "make_token",
    [
        lambda pool, user: mint(pool, user.sub, groups=("admins",), key=other_key()),  # forged
        lambda pool, user: mint(pool, user.sub, groups=("admins",), expires_in=-5),  # expired
        lambda pool, user: mint(pool, user.sub, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"),
        lambda pool, user: mint(pool, user.sub, aud="another-client"),
        lambda pool, user: mint(pool, user.sub, token_use="access", aud=pool.client_id),
    ],
    ids=["forged", "expired", "wrong-pool", "wrong-client", "access-with-aud"],
)
def test_bad_tokens_get_401_openai_errors_on_every_admin_route(
    client: Client, pool: Pool, admin: User, make_token
) -> None:
    headers = bearer(make_token(pool, admin))
    for method, path in [
        ("get", "/admin/keys"),
        ("post", "/admin/keys"),
        ("get", "/admin/keys/abcdefghijkl"),
        ("post", "/admin/keys/abcdefghijkl/revoke"),
        ("get", "/admin/audit"),
        ("post", "/admin/keys/import"),
    ]:
        response = getattr(client.http, method)(path, headers=headers, body=b"{}")
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_no_token_is_refused(client: Client) -> None:
    # (An API key or other non-JWT in the header is refused by chalicelib.admin.auth, see test_auth.py; through
    # chalice's local Cognito shim it cannot be sent: the shim decodes the header as a JWT and crashes.)
    assert_error(client.http.get("/admin/keys"), 401, "missing_token")


def test_users_manage_only_their_own_keys(as_admin: Api, as_alice: Api, as_bob: Api, alice: User, bob: User) -> None:
    # GIVEN a key of alice's and one of bob's
    alices = as_alice.call("post", "/admin/keys", {"name": "alice laptop"}).json_body
    bobs = as_bob.call("post", "/admin/keys", {"name": "bob ci"}).json_body
    assert alices["owner"] == {"sub": alice.sub, "email": alice.email}
    assert bobs["owner"] == {"sub": bob.sub, "email": bob.email}
    # THEN alice sees and manages hers, and gets 403 on bob's
    assert [k["key_id"] for k in as_alice.call("get", "/admin/keys").json_body["data"]] == [alices["key_id"]]
    for method, suffix, body in [
        ("get", "", None),
        ("patch", "", {"name": "mine now"}),
        ("post", "/revoke", None),
        ("post", "/rotate", None),
        ("get", "/audit", None),
    ]:
        assert_error(as_alice.call(method, f"/admin/keys/{bobs['key_id']}{suffix}", body), 403, "not_key_owner")
    assert_error(as_alice.call("get", f"/admin/keys?owner={bob.email}"), 403, "not_key_owner", "owner")
    assert_error(as_alice.call("post", "/admin/keys", {"owner": bob.email}), 403, "admin_only", "owner")
    assert_error(as_alice.call("get", "/admin/audit"), 403, "admin_only")
    # AND the admin sees both, and can filter by owner (email or sub)
    everyone = {k["key_id"] for k in as_admin.call("get", "/admin/keys").json_body["data"]}
    assert {alices["key_id"], bobs["key_id"]} <= everyone
    by_email = as_admin.call("get", f"/admin/keys?owner={bob.email}").json_body["data"]
    by_sub = as_admin.call("get", f"/admin/keys?owner={bob.sub}").json_body["data"]
    assert [k["key_id"] for k in by_email] == [k["key_id"] for k in by_sub] == [bobs["key_id"]]
    assert as_admin.call("get", f"/admin/keys/{bobs['key_id']}").status_code == 200


# Lifecycle


def test_create_returns_the_secret_once_and_the_key_works(as_admin: Api, client: Client, alice: User) -> None:
    # WHEN an admin creates a key for alice with every field
    response = as_admin.call(
        "post",
        "/admin/keys",
        {
            "owner": alice.email,
            "name": "alice's notebook",
            "allowed_models": ["nova-micro", "us.amazon.nova-micro-v1:0"],
            "monthly_budget_usd": 12.345678,
            "rpm_limit": 60,
            "tpm_limit": 100000,
            "expires_at": "2099-01-31T10:00:00+01:00",
            "metadata": {"team": "research"},
        },
    )
    # THEN the answer is 201 with the secret, exact money as a string and normalised fields
    assert response.status_code == 201, response.body
    key = response.json_body
    assert key["secret"].startswith(f"{key['prefix']}-")
    assert key["owner"] == {"sub": alice.sub, "email": alice.email}
    assert key["allowed_models"] == ["nova-micro"]
    assert key["monthly_budget_usd"] == "12.345678"
    assert key["expires_at"] == "2099-01-31T09:00:00Z"
    assert (key["rpm_limit"], key["tpm_limit"], key["status"]) == (60, 100000, "active")
    # AND the key authenticates, while reads never show the secret again
    assert use_key(client, key["secret"]) == 200
    shown = as_admin.call("get", f"/admin/keys/{key['key_id']}")
    assert "secret" not in shown.json_body and key["secret"].split("-")[-1] not in shown.body.decode()
    assert "secret_hash" not in shown.body.decode()


def test_money_is_exact_from_strings_and_numbers(as_admin: Api) -> None:
    key_id = as_admin.call("post", "/admin/keys", {"monthly_budget_usd": "0.10"}).json_body["key_id"]
    for sent, shown in [("19.99", "19.99"), (0.1, "0.1"), (7, "7"), ("0", "0"), ("1000000000", "1000000000")]:
        body = as_admin.call("patch", f"/admin/keys/{key_id}", {"monthly_budget_usd": sent}).json_body
        assert body["monthly_budget_usd"] == shown
    # A float that binary floating point cannot hold survives because it is never a float.
    body = as_admin.call("patch", f"/admin/keys/{key_id}", '{"monthly_budget_usd": 0.300001}').json_body
    assert body["monthly_budget_usd"] == "0.300001"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"monthly_budget_usd": "-1"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "1e3"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "0.0000001"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": True}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "lots"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "\u0665"}, "monthly_budget_usd"),  # ARABIC-INDIC DIGIT FIVE: Decimal reads it as 5
        ({"monthly_budget_usd": "\uff11.5"}, "monthly_budget_usd"),  # FULLWIDTH DIGIT ONE
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"rpm_limit": 1.5}, "rpm_limit"),
        ({"tpm_limit": "100"}, "tpm_limit"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"allowed_models": ["gpt-5"]}, "allowed_models"),
        ({"allowed_models": []}, "allowed_models"),
        ({"allowed_models": "nova-micro"}, "allowed_models"),
        ({"metadata": {"a": 1}}, "metadata"),
        ({"name": 7}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_fields_are_400s_naming_the_field(as_admin: Api, body: dict, param: str) -> None:
    assert_error(as_admin.call("post", "/admin/keys", body), 400, param=param)


def test_bad_bodies_and_queries_are_400s(as_admin: Api) -> None:
    assert_error(as_admin.call("post", "/admin/keys", "{not json"), 400)
    assert_error(as_admin.call("post", "/admin/keys", "[]"), 400)
    assert_error(as_admin.call("post", "/admin/keys", '{"monthly_budget_usd": NaN}'), 400)
    assert_error(as_admin.call("patch", "/admin/keys/abcdefghijkl", {}), 400)
    assert_error(as_admin.call("get", "/admin/keys?status=sleeping"), 400, param="status")
    assert_error(as_admin.call("get", "/admin/keys?limit=0"), 400, param="limit")
    assert_error(as_admin.call("get", "/admin/keys?cursor=bm9wZQ"), 400, param="cursor")
    assert_error(as_admin.call("get", "/admin/audit?day=yesterday"), 400, param="day")
    assert_error(as_admin.call("get", "/admin/audit?day=20260101"), 400, param="day")
    assert_error(as_admin.call("post", "/admin/keys/abcdefghijkl/rotate", {"grace_seconds": -1}), 400)
    assert_error(as_admin.call("get", "/admin/keys/nope"), 404, "key_not_found")
    assert_error(as_admin.call("post", "/admin/keys", {"owner": "ghost@example.com"}), 400, "unknown_user", "owner")


def test_update_changes_fields_and_null_clears_them(as_alice: Api, client: Client) -> None:
    key = as_alice.call(
        "post", "/admin/keys", {"name": "n", "rpm_limit": 5, "allowed_models": ["nova-micro"]}
    ).json_body
    updated = as_alice.call(
        "patch",
        f"/admin/keys/{key['key_id']}",
        {"name": "renamed", "rpm_limit": None, "allowed_models": None, "metadata": {"k": "v"}},
    ).json_body
    assert (updated["name"], updated["rpm_limit"], updated["allowed_models"]) == ("renamed", None, None)
    assert updated["metadata"] == {"k": "v"} and updated["updated_at"] >= key["updated_at"]
    assert use_key(client, key["secret"]) == 200


def test_revoke_takes_effect_on_the_very_next_request_and_is_audited(
    as_alice: Api, client: Client, alice: User
) -> None:
    key = as_alice.call("post", "/admin/keys", {"name": "short-lived"}).json_body
    assert use_key(client, key["secret"]) == 200
    revoked = as_alice.call("post", f"/admin/keys/{key['key_id']}/revoke", {"reason": "laptop stolen"})
    assert revoked.status_code == 200 and revoked.json_body["status"] == "revoked"
    assert revoked.json_body["revoked_at"]
    # the very next request is refused
    response = client.http.get("/v1/models", headers={"Authorization": f"Bearer {key['secret']}"})
    assert_error(response, 401, "revoked_api_key")
    # revoking twice or changing a revoked key is a conflict
    assert_error(as_alice.call("post", f"/admin/keys/{key['key_id']}/revoke"), 409, "key_revoked")
    assert_error(as_alice.call("patch", f"/admin/keys/{key['key_id']}", {"name": "x"}), 409, "key_revoked")
    events = as_alice.call("get", f"/admin/keys/{key['key_id']}/audit").json_body["data"]
    assert [e["action"] for e in events] == ["created", "revoked", "revoked_use"]
    assert events[1]["actor"] == {"kind": "user", "sub": alice.sub, "email": alice.email}
    assert events[1]["details"] == {"reason": "laptop stolen"}
    assert events[1]["changes"]["status"] == {"from": "active", "to": "revoked"}
    assert events[2]["actor"]["kind"] == "api_key"


def test_rotation_without_grace_stops_the_old_secret_at_once(as_alice: Api, client: Client) -> None:
    key = as_alice.call("post", "/admin/keys", {}).json_body
    rotated = as_alice.call("post", f"/admin/keys/{key['key_id']}/rotate").json_body
    assert rotated["secret"] != key["secret"] and rotated["key_id"] == key["key_id"]
    assert rotated["previous_secret_valid_until"] is None
    assert use_key(client, key["secret"]) == 401
    assert use_key(client, rotated["secret"]) == 200


def test_rotation_with_grace_keeps_the_old_secret_until_the_grace_ends(as_alice: Api, client: Client) -> None:
    key = as_alice.call("post", "/admin/keys", {}).json_body
    rotated = as_alice.call("post", f"/admin/keys/{key['key_id']}/rotate", {"grace_seconds": 3600}).json_body
    assert rotated["previous_secret_valid_until"] is not None
    assert use_key(client, key["secret"]) == 200 and use_key(client, rotated["secret"]) == 200
    # a second rotation without grace ends the first one's grace too
    again = as_alice.call("post", f"/admin/keys/{key['key_id']}/rotate", {"grace_seconds": 0}).json_body
    assert [use_key(client, s) for s in (key["secret"], rotated["secret"], again["secret"])] == [401, 401, 200]
    events = as_alice.call("get", f"/admin/keys/{key['key_id']}/audit").json_body["data"]
    assert [e["action"] for e in events] == ["created", "rotated", "rotated"]
    assert events[1]["details"]["grace_seconds"] == 3600 and events[2]["details"]["grace_seconds"] == 0
    assert "secret" not in json.dumps(events).replace("previous_secret_valid_until", "")


@pytest.mark.parametrize("limit", ["\u00b2", "\u0663", "\uff15", "1\u00b2", "+5", " 5", "0", "1001"])
def test_a_page_size_is_ascii_digits_in_range_never_a_500(as_admin: Api, limit: str) -> None:
    # "²".isdigit() is True and int("²") raises: every paged route must answer 400, not 500.
    key_id = as_admin.call("post", "/admin/keys", {}).json_body["key_id"]
    for path in ("/admin/keys", "/admin/keys/export", "/admin/audit", f"/admin/keys/{key_id}/audit"):
        assert_error(as_admin.call("get", f"{path}?limit={quote(limit)}"), 400, param="limit")


def test_listing_filters_by_status_and_pages_with_a_cursor(as_alice: Api) -> None:
    ids = [as_alice.call("post", "/admin/keys", {"name": f"k{i}"}).json_body["key_id"] for i in range(5)]
    as_alice.call("post", f"/admin/keys/{ids[0]}/revoke")
    seen: list[str] = []
    cursor = None
    while True:
        page = as_alice.call("get", "/admin/keys?limit=2" + (f"&cursor={cursor}" if cursor else "")).json_body
        assert len(page["data"]) <= 2
        seen += [k["key_id"] for k in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert sorted(seen) == sorted(ids)
    active = as_alice.call("get", "/admin/keys?status=active").json_body["data"]
    revoked = as_alice.call("get", "/admin/keys?status=revoked").json_body["data"]
    assert {k["key_id"] for k in active} == set(ids[1:]) and [k["key_id"] for k in revoked] == [ids[0]]


def test_global_audit_lists_the_days_events_for_admins(as_admin: Api, as_alice: Api) -> None:
    key = as_alice.call("post", "/admin/keys", {}).json_body
    as_admin.call("patch", f"/admin/keys/{key['key_id']}", {"monthly_budget_usd": "5"})
    today = datetime.now(UTC).date().isoformat()
    events = as_admin.call("get", f"/admin/audit?day={today}").json_body["data"]
    mine = [e for e in events if e["key_id"] == key["key_id"]]
    assert [e["action"] for e in mine] == ["created", "updated"]
    assert mine[1]["changes"] == {"monthly_budget_usd": {"from": None, "to": "5"}}
    assert as_admin.call("get", "/admin/audit?day=2020-01-01").json_body["data"] == []


# Bulk import and export


def test_import_is_idempotent_per_id_and_reports_bad_rows(as_admin: Api, as_alice: Api, alice: User, client) -> None:
    rows = [
        {"id": "team-a/1", "owner": alice.email, "name": "one", "monthly_budget_usd": "10.50"},
        {"id": "team-a/2", "name": "two", "rpm_limit": 0},
        {"id": "team-a/3", "owner": "ghost@example.com"},
        {"name": "no id"},
        "not an object",
        {"id": "team-a/1", "owner": alice.email},
        {"id": "team-a/4", "allowed_models": ["nova-lite"]},
    ]
    first = as_admin.call("post", "/admin/keys/import", {"keys": rows})
    assert first.status_code == 200, first.body
    body = first.json_body
    assert (body["created"], body["exists"], body["error"]) == (2, 0, 5)
    by_row = {r["row"]: r for r in body["results"]}
    assert by_row[0]["status"] == "created" and by_row[0]["key"]["owner"]["sub"] == alice.sub
    assert by_row[0]["key"]["monthly_budget_usd"] == "10.50".rstrip("0")
    assert by_row[1]["error"]["param"] == "rpm_limit"
    assert by_row[2]["error"]["code"] == "unknown_user"
    assert by_row[3]["error"]["param"] == "id"
    assert by_row[5]["error"]["code"] == "duplicate_id"
    assert by_row[6]["status"] == "created" and by_row[6]["key"]["allowed_models"] == ["nova-lite"]
    assert use_key(client, by_row[0]["secret"]) == 200
    # WHEN the same file is imported again THEN nothing new is created and no secret is shown
    second = as_admin.call("post", "/admin/keys/import", {"keys": rows}).json_body
    assert (second["created"], second["exists"]) == (0, 2)
    assert all("secret" not in r for r in second["results"])
    assert {r["key"]["key_id"] for r in second["results"] if r["status"] == "exists"} == {
        by_row[0]["key"]["key_id"],
        by_row[6]["key"]["key_id"],
    }
    # AND non-admins can import only for themselves
    mine = as_alice.call("post", "/admin/keys/import", {"keys": [{"id": "a"}, {"id": "b", "owner": "bob@x.io"}]})
    statuses = [r["status"] for r in mine.json_body["results"]]
    assert statuses == ["created", "error"] and mine.json_body["results"][1]["error"]["code"] == "admin_only"


def test_import_limits_and_shape(as_admin: Api) -> None:
    assert_error(as_admin.call("post", "/admin/keys/import", {"keys": []}), 400, param="keys")
    assert_error(as_admin.call("post", "/admin/keys/import", {"keys": [{"id": str(i)} for i in range(1001)]}), 400)
    assert_error(as_admin.call("post", "/admin/keys/import", {"rows": []}), 400, param="rows")


def test_export_reimports_as_no_op(as_admin: Api, as_alice: Api) -> None:
    as_alice.call("post", "/admin/keys", {"name": "direct", "monthly_budget_usd": "3"})
    as_admin.call("post", "/admin/keys/import", {"keys": [{"id": "imp-1", "name": "imported"}]})
    revoked = as_alice.call("post", "/admin/keys", {"name": "gone"}).json_body
    as_alice.call("post", f"/admin/keys/{revoked['key_id']}/revoke")
    exported = as_admin.call("get", "/admin/keys/export").json_body["data"]
    assert {r["name"] for r in exported} >= {"direct", "imported", "gone"}
    assert all("secret" not in json.dumps(r) for r in exported)
    again = as_admin.call("post", "/admin/keys/import", {"keys": exported}).json_body
    assert again["created"] == 0 and again["error"] == 0 and again["exists"] == len(exported)


# Domain: KeyStore and AuditLog directly


def test_concurrent_changes_conflict_instead_of_losing_an_update(keys_table: Any) -> None:
    store = KeyStore(keys_table)
    record, _ = store.create(owner_sub="o")
    store.update(record, {"name": "first"})
    with pytest.raises(Conflict, match="changed while"):
        store.update(record, {"name": "stale"})  # still the version read before "first"
    with pytest.raises(Conflict):
        store.rotate(record)
    assert store.get(record.key_id).name == "first"


def test_audit_event_and_change_commit_together(keys_table: Any, aws: Any) -> None:
    # GIVEN an audit item that cannot be written (its event id already exists)
    audit = AuditLog(aws.Table(AUDIT_TABLE))
    store = KeyStore(keys_table)
    record, _ = store.create(owner_sub="o")
    event = audit.record(audit.new_event(record.key_id, "updated", Actor("admin")))
    # WHEN an update is attached to that event THEN neither the update nor the event lands
    with pytest.raises(Exception, match="TransactionCanceled"):
        store.update(record, {"name": "never"}, attach=lambda new: [audit.put_item(event)])
    assert store.get(record.key_id).name == ""


def test_a_rotated_out_secret_in_its_grace_period_is_revoked_with_its_key_and_its_use_audited(
    as_alice: Api, client: Client
) -> None:
    # GIVEN a key rotated with an hour's grace: both secrets work
    key = as_alice.call("post", "/admin/keys", {"name": "rotated"}).json_body
    rotated = as_alice.call("post", f"/admin/keys/{key['key_id']}/rotate", {"grace_seconds": 3600}).json_body
    assert use_key(client, key["secret"]) == use_key(client, rotated["secret"]) == 200
    # WHEN the key is revoked
    as_alice.call("post", f"/admin/keys/{key['key_id']}/revoke", {"reason": "leaked"})
    # THEN the old secret, still in its grace period, is told the key is revoked (not that it is wrong)
    for secret in (key["secret"], rotated["secret"]):
        response = client.http.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert_error(response, 401, "revoked_api_key")
    # AND its use is in the audit log, as the new secret's is
    events = as_alice.call("get", f"/admin/keys/{key['key_id']}/audit").json_body["data"]
    assert [e["action"] for e in events] == ["created", "rotated", "revoked", "revoked_use"]


def test_audit_refuses_secrets_and_unknown_actions(aws: Any) -> None:
    audit = AuditLog(aws.Table(AUDIT_TABLE))
    with pytest.raises(ValueError, match="never carry secrets"):
        audit.new_event("k", "updated", Actor("a"), changes={"secret_hash": {"from": "x", "to": "y"}})
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.new_event("k", "deleted", Actor("a"))


def test_denied_uses_are_recorded_once_per_interval_and_only_with_the_right_secret(keys_table: Any, aws: Any) -> None:
    audit = AuditLog(aws.Table(AUDIT_TABLE))
    clock = [0.0]
    store = KeyStore(keys_table, on_denied=DeniedUseRecorder(audit, monotonic=lambda: clock[0]))
    record, secret = store.create(owner_sub="o", expires_at="2099-01-01T00:00:00Z")
    store.revoke(record)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for token in (secret, secret, wrong, wrong):
        with pytest.raises(Exception, match="revoked|Incorrect"):
            store.authenticate({"Authorization": f"Bearer {token}"})
    assert [e.action for e in audit.for_key(record.key_id).items] == ["revoked_use"]
    clock[0] += 61
    with pytest.raises(Exception, match="revoked"):
        store.authenticate({"Authorization": f"Bearer {secret}"})
    assert len(audit.for_key(record.key_id).items) == 2


def test_expired_use_is_recorded(keys_table: Any, aws: Any) -> None:
    audit = AuditLog(aws.Table(AUDIT_TABLE))
    times = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)])
    now = [next(times)]
    store = KeyStore(keys_table, clock=lambda: now[0], on_denied=DeniedUseRecorder(audit))
    record, secret = store.create(owner_sub="o", expires_at="2026-02-01T00:00:00Z")
    now[0] = next(times)
    with pytest.raises(Exception, match="expired"):
        store.authenticate({"Authorization": f"Bearer {secret}"})
    [event] = audit.for_key(record.key_id).items
    assert event.action == "expired_use" and event.details == {"reason": "expired", "expires_at": record.expires_at}


def test_a_failing_audit_never_turns_a_401_into_a_500(keys_table: Any) -> None:
    def broken(record, reason):
        raise RuntimeError("audit table down")

    store = KeyStore(keys_table, on_denied=broken)
    record, secret = store.create(owner_sub="o")
    store.revoke(record)
    with pytest.raises(Exception, match="revoked"):
        store.authenticate({"Authorization": f"Bearer {secret}"})


def test_import_ids_derive_stable_key_ids_per_owner() -> None:
    assert derive_key_id("o1", "x") == derive_key_id("o1", "x")
    assert len({derive_key_id("o1", "x"), derive_key_id("o2", "x"), derive_key_id("o1", "y")}) == 3
    assert len(derive_key_id("o", "x")) == 12 and derive_key_id("o", "x").isalnum()


def test_import_new_keeps_the_first_key_of_an_id_under_races(keys_table: Any) -> None:
    store = KeyStore(keys_table)
    # GIVEN 150 prepared keys, one of whose ids was taken after the caller looked
    prepared = [store.prepare(key_id=derive_key_id("o", str(i)), owner_sub="o", import_id=str(i)) for i in range(150)]
    winner, winner_secret = store.prepare(key_id=prepared[120][0].key_id, owner_sub="o", import_id="120")
    store.import_new([(winner, winner_secret)])
    # WHEN the batch is written
    outcomes = store.import_new(prepared)
    # THEN every other key is created, and the taken id keeps the first key and secret
    assert sum(o.created for o in outcomes) == 149
    assert not outcomes[120].created and outcomes[120].plaintext is None
    assert store.get(winner.key_id).secret_hash == hash_key(winner_secret)


def test_cursors_are_opaque_and_bound_to_their_listing() -> None:
    cursor = encode_cursor({"key_id": "abc", "owner_sub": "o", "created_at": "t"})
    assert decode_cursor(cursor, {"key_id": None, "owner_sub": "o", "created_at": None})["key_id"] == "abc"
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor, {"key_id": None, "owner_sub": "someone-else", "created_at": None})
    with pytest.raises(InvalidRequest):
        decode_cursor("%%%", {"key_id": None})


def test_budget_survives_the_table_exactly(keys_table: Any) -> None:
    store = KeyStore(keys_table)
    record, _ = store.create(owner_sub="o", monthly_budget_usd=Decimal("0.000001"))
    assert store.get(record.key_id).monthly_budget_usd == Decimal("0.000001")
    later = datetime.now(UTC) + timedelta(days=1)
    assert store.get(record.key_id).effective_status(later) == "active"


# Limits an admin set: the owner may tighten them, never loosen them


LIMITS = {
    "monthly_budget_usd": "10",
    "allowed_models": ["nova-micro", "nova-lite"],
    "rpm_limit": 5,
    "tpm_limit": 1000,
}


def _in_days(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("field", "looser"),
    [
        ("monthly_budget_usd", None),
        ("monthly_budget_usd", "10.000001"),
        ("allowed_models", None),
        ("allowed_models", ["nova-micro", "claude-haiku-4-5"]),
        ("rpm_limit", None),
        ("rpm_limit", 6),
        ("tpm_limit", None),
        ("tpm_limit", 1001),
        ("expires_at", None),
        ("expires_at", "LATER"),
    ],
)
def test_an_owner_cannot_loosen_a_limit_an_admin_set(
    as_admin: Api, as_alice: Api, alice: User, field: str, looser: Any
) -> None:
    # GIVEN an admin gave alice a key with every limit set
    key = as_admin.call("post", "/admin/keys", {"owner": alice.email, **LIMITS, "expires_at": _in_days(30)}).json_body
    assert key["admin_limits"]["monthly_budget_usd"] == "10"
    # WHEN alice loosens or removes one THEN 403, naming the field, and nothing changed
    value = _in_days(60) if looser == "LATER" else looser
    error = assert_error(as_alice.call("patch", f"/admin/keys/{key['key_id']}", {field: value}), 403, "admin_limit")
    assert error["param"] == field
    after = as_alice.call("get", f"/admin/keys/{key['key_id']}").json_body
    assert after[field] == key[field]


def test_an_owner_may_tighten_and_loosen_back_up_to_the_admins_limit(as_admin: Api, as_alice: Api, alice: User) -> None:
    key = as_admin.call("post", "/admin/keys", {"owner": alice.email, **LIMITS, "expires_at": _in_days(30)}).json_body
    path = f"/admin/keys/{key['key_id']}"
    tighter = {
        "monthly_budget_usd": "2.50",
        "allowed_models": ["nova-micro"],
        "rpm_limit": 1,
        "tpm_limit": 10,
        "expires_at": _in_days(1),
    }
    response = as_alice.call("patch", path, tighter)
    assert response.status_code == 200, response.body
    assert response.json_body["monthly_budget_usd"] == "2.5" and response.json_body["rpm_limit"] == 1
    # The admin's limits stay the ceiling: alice may go back up to them, not past them.
    back = as_alice.call("patch", path, {**LIMITS, "expires_at": key["expires_at"]})
    assert back.status_code == 200, back.body
    assert back.json_body["admin_limits"] == key["admin_limits"]
    assert_error(as_alice.call("patch", path, {"rpm_limit": 6}), 403, "admin_limit", "rpm_limit")


def test_an_admin_lifting_a_limit_hands_it_to_the_owner(as_admin: Api, as_alice: Api, alice: User) -> None:
    key = as_admin.call("post", "/admin/keys", {"owner": alice.email, **LIMITS}).json_body
    path = f"/admin/keys/{key['key_id']}"
    assert as_admin.call("patch", path, {"monthly_budget_usd": None}).status_code == 200
    raised = as_alice.call("patch", path, {"monthly_budget_usd": "100"})
    assert raised.status_code == 200 and raised.json_body["monthly_budget_usd"] == "100"
    assert "monthly_budget_usd" not in raised.json_body["admin_limits"]
    # AND an admin raising a limit raises the ceiling
    assert as_admin.call("patch", path, {"rpm_limit": 50}).json_body["admin_limits"]["rpm_limit"] == 50
    assert as_alice.call("patch", path, {"rpm_limit": 50}).status_code == 200


def test_owners_set_their_own_keys_limits_freely(as_alice: Api) -> None:
    key = as_alice.call("post", "/admin/keys", LIMITS).json_body
    assert key["admin_limits"] == {}
    loosened = as_alice.call("patch", f"/admin/keys/{key['key_id']}", {field: None for field in LIMITS})
    assert loosened.status_code == 200, loosened.body


def test_an_expired_key_cannot_be_revived_by_its_owner(
    as_admin: Api, as_alice: Api, alice: User, keys_table: Any, client: Client
) -> None:
    # GIVEN alice's own key, created by herself, that has since expired
    key = as_alice.call("post", "/admin/keys", {"expires_at": _in_days(1)}).json_body
    keys_table.update_item(
        Key={"key_id": key["key_id"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": "2020-01-01T00:00:00Z"},
    )
    path = f"/admin/keys/{key['key_id']}"
    assert as_alice.call("get", path).json_body["status"] == "expired"
    # THEN she can neither remove nor move its expiry; an admin can
    for value in (None, _in_days(10)):
        assert_error(as_alice.call("patch", path, {"expires_at": value}), 403, "key_expired", "expires_at")
    assert use_key(client, key["secret"]) == 401
    revived = as_admin.call("patch", path, {"expires_at": _in_days(10)})
    assert revived.status_code == 200 and revived.json_body["status"] == "active"
    assert use_key(client, key["secret"]) == 200


def test_imported_keys_carry_the_admins_limits(as_admin: Api, as_alice: Api, alice: User) -> None:
    rows = [{"id": "limited", "owner": alice.email, "monthly_budget_usd": "3"}]
    created = as_admin.call("post", "/admin/keys/import", {"keys": rows}).json_body["results"][0]["key"]
    path = f"/admin/keys/{created['key_id']}"
    assert_error(as_alice.call("patch", path, {"monthly_budget_usd": None}), 403, "admin_limit")


def test_keys_from_before_limits_were_recorded_count_every_limit_as_an_admins(
    keys_table: Any, as_alice: Api, alice: User
) -> None:
    # A key written before admin_limits existed: who set its budget is unknown, so it is a ceiling.
    record, _ = KeyStore(keys_table).create(owner_sub=alice.sub, monthly_budget_usd=Decimal("4"), rpm_limit=3)
    keys_table.update_item(Key={"key_id": record.key_id}, UpdateExpression="REMOVE admin_limits")
    path = f"/admin/keys/{record.key_id}"
    assert_error(as_alice.call("patch", path, {"monthly_budget_usd": "5"}), 403, "admin_limit")
    assert as_alice.call("patch", path, {"monthly_budget_usd": "1", "tpm_limit": 99}).status_code == 200
    # AND the limits it had are kept as the ceiling, so she may go back up to them
    assert as_alice.call("patch", path, {"monthly_budget_usd": "4"}).status_code == 200
    assert as_alice.call("get", path).json_body["admin_limits"] == {"monthly_budget_usd": "4", "rpm_limit": 3}


def test_a_deleted_and_recreated_user_does_not_inherit_the_old_keys(
    as_admin: Api, cognito: Any, pool: Pool, alice: User, admin_client: Client
) -> None:
    from tests.cognito_helpers import add_user, sign_in

    # GIVEN a key an admin gave alice (by e-mail: bound to her sub)
    old = as_admin.call("post", "/admin/keys", {"owner": alice.email, "name": "old"}).json_body
    assert old["owner"]["sub"] == alice.sub
    # WHEN alice is deleted and a new user is created with her e-mail
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=alice.email)
    new_alice = add_user(cognito, pool, alice.email)
    # THEN a key given to that e-mail now is the new user's
    new = as_admin.call("post", "/admin/keys", {"owner": alice.email, "name": "new"}).json_body
    assert new["owner"]["sub"] == new_alice.sub
    # AND the new user sees only the new key, and cannot touch the old one
    as_new = Api(admin_client, sign_in(cognito, pool, new_alice)["IdToken"])
    assert [k["key_id"] for k in as_new.call("get", "/admin/keys").json_body["data"]] == [new["key_id"]]
    assert_error(as_new.call("get", f"/admin/keys/{old['key_id']}"), 403, "not_key_owner")
    # AND an admin still finds the old keys by the old sub, to revoke them
    by_old_sub = as_admin.call("get", f"/admin/keys?owner={alice.sub}")
    assert [k["key_id"] for k in by_old_sub.json_body["data"]] == [old["key_id"]]


def test_an_import_asks_the_directory_once_per_owner(as_admin: Api, admin: User, alice: User, monkeypatch) -> None:
    from chalicelib.admin.auth import UserDirectory

    asked: list[str] = []
    original = UserDirectory._list_one

    def counting(self: Any, attribute: str, value: str) -> Any:
        asked.append(value)
        return original(self, attribute, value)

    monkeypatch.setattr(UserDirectory, "_list_one", counting)
    rows = [{"id": f"bulk-{n}", "owner": alice.email} for n in range(30)]
    rows += [{"id": f"ghost-{n}", "owner": "ghost@example.com"} for n in range(5)]
    body = as_admin.call("post", "/admin/keys/import", {"keys": rows}).json_body
    assert (body["created"], body["error"]) == (30, 5)
    # (the caller's own standing is AdminGetUser, not ListUsers: test_auth.py)
    assert sorted(set(asked)) == ["alice@example.com", "ghost@example.com"]
    assert asked.count("alice@example.com") == 1 and asked.count("ghost@example.com") == 1


# Text that reaches admins' terminals: no control or bidi-override characters

TERMINAL_TRICKS = [
    "\x1b[2J\x1b[HAll keys are fine",  # clear screen, then a fake message
    "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",  # an OSC hyperlink
    "invoice\u202egnp.exe",  # right-to-left override
    "a\u2066b\u2069",  # isolates
    "two\nlines",
    "nul\x00byte",
    "line\u2028separator",
    "c1\x9bcontrol",
]


@pytest.mark.parametrize("text", TERMINAL_TRICKS)
@pytest.mark.parametrize(
    ("method", "path", "make_body", "param"),
    [
        ("post", "/admin/keys", lambda t: {"name": t}, "name"),
        ("post", "/admin/keys", lambda t: {"metadata": {"team": t}}, "metadata"),
        ("post", "/admin/keys", lambda t: {"metadata": {t: "x"}}, "metadata"),
        ("patch", "/admin/keys/{key_id}", lambda t: {"name": t}, "name"),
        ("post", "/admin/keys/{key_id}/revoke", lambda t: {"reason": t}, "reason"),
        ("post", "/admin/keys", lambda t: {"owner": f"x{t}@example.com"}, "owner"),
    ],
)
def test_control_and_bidi_characters_are_refused(
    as_admin: Api, method: str, path: str, make_body: Any, param: str, text: str
) -> None:
    key_id = as_admin.call("post", "/admin/keys", {"name": "target"}).json_body["key_id"]
    error = assert_error(as_admin.call(method, path.format(key_id=key_id), make_body(text)), 400, param=param)
    assert "\x1b" not in error["message"] and "\u202e" not in error["message"]
    assert as_admin.call("get", f"/admin/keys/{key_id}").json_body["status"] == "active"


def test_import_rows_with_control_characters_are_refused_row_by_row(as_admin: Api) -> None:
    rows = [{"id": "ok", "name": "fine ✓ 名前 👩‍💻"}, {"id": "bad", "name": "\x1b[31mred"}]
    results = as_admin.call("post", "/admin/keys/import", {"keys": rows}).json_body["results"]
    assert [r["status"] for r in results] == ["created", "error"]
    assert results[1]["error"]["param"] == "name"


def test_ordinary_unicode_is_welcome(as_admin: Api) -> None:
    text = "Café ✓ 名前 עברית 👩‍💻 tab-free"
    key = as_admin.call("post", "/admin/keys", {"name": text, "metadata": {"équipe": text}}).json_body
    assert key["name"] == text and key["metadata"] == {"équipe": text}
