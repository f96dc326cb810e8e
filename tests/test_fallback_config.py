"""Fallbacks and guardrails as catalog data: each bad configuration is a clear error when it is set.

A fallback list naming an unknown model, the model itself, a model of another mode, or one that
loops back; a guardrail the stack may not apply or Bedrock does not have: each is refused by the
admin API (or the seed file) naming the field, never left to fail a caller's request. And a
fallback that goes away later never turns a good request into a failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import errors, wiring
from chalicelib.catalog.catalog import CatalogError, load_catalog
from chalicelib.conversation.request import Conversation
from chalicelib.keys.store import KeyRecord
from chalicelib.service.policy import call_policy
from chalicelib.settings import DEFAULT_CATALOG
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID
from tests.admin_fixtures import Api

NOVA_PRO = "us.amazon.nova-pro-v1:0"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, emulator_url: str, admin_client: Client) -> Client:
    monkeypatch.setenv("PENNYWORTH_BEDROCK_ENDPOINT_URL", emulator_url)
    monkeypatch.setenv("PENNYWORTH_GUARDRAILS", DEMO_GUARDRAIL_ID)
    wiring.reset()
    return admin_client


def error_of(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.body
    return response.json_body["error"]


def nova_pro(**extra: Any) -> dict[str, Any]:
    return {"alias": "pro", "provider": "bedrock", "model_id": NOVA_PRO, **extra}


@pytest.mark.parametrize(
    ("fallbacks", "says"),
    [
        (["no-such-model"], "not a catalog model"),
        (["pro"], "the model itself"),
        (["titan-embed-text-v2"], "another mode (embedding)"),
        (["nova-micro", "nova-micro"], "twice"),
        ("nova-micro", "list"),
        ([f"m{i}" for i in range(8)], "at most 7"),
    ],
)
def test_a_bad_fallback_list_is_refused_naming_it(client: Client, as_admin: Api, fallbacks: Any, says: str) -> None:
    error = error_of(as_admin.call("post", "/admin/models", nova_pro(fallbacks=fallbacks)))
    assert error["param"] == "fallbacks" and says in error["message"], error


def test_a_loop_of_fallbacks_is_refused_and_a_good_list_is_kept(client: Client, as_admin: Api) -> None:
    # GIVEN nova-lite falls back to nova-micro
    changed = as_admin.call("patch", "/admin/models/nova-lite", {"fallbacks": ["nova-micro"]})
    assert changed.status_code == 200 and changed.json_body["fallbacks"] == ["nova-micro"]
    # WHEN nova-micro is told to fall back to nova-lite THEN the loop is refused, named
    error = error_of(as_admin.call("patch", "/admin/models/nova-micro", {"fallbacks": ["nova-lite"]}))
    assert error["param"] == "fallbacks" and "nova-micro → nova-lite → nova-micro" in error["message"]
    # AND null clears a list
    cleared = as_admin.call("patch", "/admin/models/nova-lite", {"fallbacks": None})
    assert cleared.status_code == 200 and cleared.json_body["fallbacks"] == []


def test_a_guardrail_outside_the_stacks_list_or_unknown_to_bedrock_is_refused(client: Client, as_admin: Api) -> None:
    # A guardrail the stack's role may not apply (not in GuardrailIds)
    error = error_of(as_admin.call("post", "/admin/models", nova_pro(guardrail={"id": "other1", "version": "1"})))
    assert error["code"] == "guardrail_not_allowed" and "GuardrailIds" in error["message"]
    # A version Bedrock's control plane does not have (the emulator answers GetGuardrail)
    error = error_of(
        as_admin.call("post", "/admin/models", nova_pro(guardrail={"id": DEMO_GUARDRAIL_ID, "version": "7"}))
    )
    assert error["code"] == "guardrail_not_found"
    # A malformed one
    error = error_of(as_admin.call("post", "/admin/models", nova_pro(guardrail={"id": "Bad Id!"})))
    assert error["param"] == "guardrail.id"
    # The demo guardrail is accepted and shown
    added = as_admin.call("post", "/admin/models", nova_pro(guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"}))
    assert added.status_code == 201 and added.json_body["guardrail"] == {"id": DEMO_GUARDRAIL_ID, "version": "1"}


def test_a_seed_file_with_a_loop_does_not_load(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_CATALOG.read_text())
    for model in document["models"]:
        if model["alias"] == "claude-haiku-4-5-global":
            model["fallbacks"] = ["claude-haiku-4-5"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CatalogError, match="loop back"):
        load_catalog(path, region="us-east-1")


def key(**fields: Any) -> KeyRecord:
    return KeyRecord(key_id="k", owner_sub="o", owner_email=None, name="k", secret_hash="h", status="active",
                     created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z", **fields)  # fmt: skip


def test_a_fallback_the_catalog_no_longer_serves_is_left_out_not_failed(tmp_path: Path) -> None:
    # GIVEN claude-haiku-4-5 falls back to its global profile, which is then taken out of the catalog
    document = json.loads(DEFAULT_CATALOG.read_text())
    document["models"] = [m for m in document["models"] if m["alias"] != "claude-haiku-4-5-global"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CatalogError):  # a seed is checked whole
        load_catalog(path, region="us-east-1")
    full = load_catalog(DEFAULT_CATALOG, region="us-east-1")
    from chalicelib.catalog.catalog import Catalog

    shrunk = Catalog([m for m in full.every() if m.id != "claude-haiku-4-5-global"])
    haiku = shrunk.resolve("claude-haiku-4-5")
    conversation = Conversation(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}])
    # WHEN a call's policy is built THEN the missing fallback is left out: the model alone serves
    policy = call_policy(key(), haiku, shrunk, conversation, region="us-east-1")
    assert [t.model.id for t in policy.targets] == ["claude-haiku-4-5"]


def test_a_guarded_key_is_never_served_by_a_model_bedrock_does_not_serve(tmp_path: Path) -> None:
    document = json.loads(DEFAULT_CATALOG.read_text())
    document["models"].append(
        {"alias": "local-llama", "provider": "openai", "model_id": "llama", "base_url": "http://127.0.0.1:9/v1",
         "prices": {"input": "1", "output": "1"}}
    )  # fmt: skip
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    catalog = load_catalog(path, region="us-east-1")
    llama = catalog.resolve("local-llama")
    conversation = Conversation(model="local-llama", messages=[{"role": "user", "content": "hi"}])
    guarded = key(guardrail={"id": DEMO_GUARDRAIL_ID, "version": "1"})
    with pytest.raises(errors.PermissionDenied) as raised:
        call_policy(guarded, llama, catalog, conversation, region="us-east-1")
    assert raised.value.code == "guardrail_unsupported"
    # Without a guardrail it is served as usual, with no region
    assert call_policy(key(), llama, catalog, conversation, region="us-east-1").primary.region is None


@pytest.mark.parametrize(
    ("field", "looser"),
    [
        ("guardrail", None),
        ("guardrail", {"id": "pennyworthdemo", "version": "DRAFT"}),
        ("model_fallback", "any"),
        ("model_fallback", "same_model"),
    ],
)
def test_an_owner_cannot_drop_or_swap_an_admins_guardrail_or_loosen_the_fallback_policy(
    client: Client, as_admin: Api, as_alice: Api, alice: Any, field: str, looser: Any
) -> None:
    # GIVEN an admin gave alice a key that carries the demo guardrail and allows no fallback
    limits = {"guardrail": {"id": DEMO_GUARDRAIL_ID, "version": "1"}, "model_fallback": "none"}
    created = as_admin.call("post", "/admin/keys", {"owner": alice.email, "name": "guarded", **limits})
    assert created.status_code == 201, created.body
    key = created.json_body
    assert key["guardrail"] == limits["guardrail"] and key["model_fallback"] == "none"
    # WHEN alice loosens either THEN 403 naming the field, and nothing changed
    error = error_of(as_alice.call("patch", f"/admin/keys/{key['key_id']}", {field: looser}), 403)
    assert error["code"] == "admin_limit" and error["param"] == field
    assert as_alice.call("get", f"/admin/keys/{key['key_id']}").json_body[field] == key[field]


def test_a_key_guardrail_is_checked_when_it_is_set(client: Client, as_admin: Api) -> None:
    error = error_of(as_admin.call("post", "/admin/keys", {"name": "x", "guardrail": {"id": "other1", "version": "1"}}))
    assert error["code"] == "guardrail_not_allowed"
    error = error_of(
        as_admin.call("post", "/admin/keys", {"name": "x", "guardrail": {"id": DEMO_GUARDRAIL_ID, "version": "9"}})
    )
    assert error["code"] == "guardrail_not_found"
    error = error_of(as_admin.call("post", "/admin/keys", {"name": "x", "model_fallback": "sometimes"}))
    assert error["param"] == "model_fallback"
