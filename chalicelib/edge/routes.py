"""The one table of routes: every entry point reads it.

``app.py`` registers each buffered route (``streamed=False``) on the Chalice app, the
streaming function (``chalicelib/streaming/handler.py``, and ``make dev``'s local front) serves
the streamed ones, ``tools/package.py`` points those API Gateway methods at the streaming
function (``STREAM_PATHS``), and the OpenAPI document describes them all
(``openapi_document``). Adding a route is adding its row: what serves it, who may call it,
how it is described. Each row's ``serve`` parses nothing itself: it hands the request to one
chalicelib object, built once by ``chalicelib/wiring.py``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from chalicelib import errors, wiring
from chalicelib.edge import openapi
from chalicelib.edge.endpoint import Endpoint, Serve
from chalicelib.edge.schemas import (
    ADMIN_ERRORS,
    DATE,
    MCP_ERROR,
    MONEY,
    STATUS_TEXT,
    STRING,
    V1_ERRORS,
    nullable,
    page,
    ref,
)
from chalicelib.protocols.anthropic.route import CountTokens, Messages
from chalicelib.protocols.mcp.route import McpServer
from chalicelib.protocols.openai.route import Embeddings, GetModel, KeyStatus, ListModels
from chalicelib.protocols.openai_chat.route import ChatCompletions
from chalicelib.protocols.openai_responses.route import Responses
from chalicelib.protocols.route import Route
from chalicelib.shared.http import HttpResult
from chalicelib.shared.text import nearest


def _adapter(cls: type[Route]) -> Serve:
    """A protocol adapter's route, built once (``wiring.adapter``), answering with ``handle``."""
    return lambda request: wiring.adapter(cls).handle(request)


def _health(request: Any) -> HttpResult:
    return HttpResult({"status": "ok"})


def _openapi(request: Any) -> HttpResult:
    return HttpResult(openapi_document())


ADMIN = "cognito"
KEY = "api_key"
OBJECT_RESPONSE = {"type": "object"}

ROUTES: tuple[Endpoint, ...] = (
    Endpoint("GET", "/health", "Liveness; no key needed", "gateway", name="health", serve=_health,
             response={"type": "object"}),
    Endpoint("GET", "/openapi.json", "This document", "gateway", name="openapi_document", serve=_openapi,
             response={"type": "object"}),
    # OpenAI-compatible (API key)
    Endpoint("GET", "/v1/models", "The catalog, narrowed to the key's models", "openai", KEY,
             name="list_models", serve=_adapter(ListModels), response=ref("ModelList"), errors=V1_ERRORS),
    Endpoint("GET", "/v1/models/{model_id}", "One model the key may use", "openai", KEY,
             name="get_model", serve=_adapter(GetModel), response=ref("Model"), errors=V1_ERRORS),
    Endpoint("GET", "/v1/key", "The calling key's limits, spend and budget left", "openai", KEY,
             name="key_status", serve=_adapter(KeyStatus), response=ref("KeyStatus"), errors=V1_ERRORS),
    Endpoint("POST", "/v1/chat/completions", "OpenAI chat completions (streamed as generated with stream: true)",
             "openai", KEY, name="chat_completions", serve=_adapter(ChatCompletions), streamed=True,
             body=ref("ChatCompletionRequest"), response=ref("ChatCompletion"), errors=V1_ERRORS, stream=True),
    Endpoint("POST", "/v1/responses", "OpenAI Responses (stateless: store is not kept; streamed with stream: true)",
             "openai", KEY, name="responses", serve=_adapter(Responses), streamed=True,
             body=ref("ResponsesRequest"), response=ref("Response"), errors=V1_ERRORS, stream=True),
    Endpoint("POST", "/v1/embeddings", "OpenAI embeddings", "openai", KEY, name="embeddings",
             serve=_adapter(Embeddings), any_content_type=True, body=ref("EmbeddingRequest"),
             response=ref("EmbeddingList"), errors=V1_ERRORS),
    # Anthropic-compatible (the same API key, as x-api-key or a bearer token)
    Endpoint("POST", "/v1/messages", "Anthropic Messages (streamed as generated with stream: true)", "anthropic",
             KEY, name="messages", serve=_adapter(Messages), streamed=True, envelope="anthropic",
             body=ref("MessagesRequest"), response=ref("Message"), errors=V1_ERRORS, stream=True),
    Endpoint("POST", "/v1/messages/count_tokens", "Anthropic token counting", "anthropic", KEY,
             name="messages_count_tokens", serve=_adapter(CountTokens), streamed=True, envelope="anthropic",
             body=ref("CountTokensRequest"), response=ref("TokenCount"), errors=V1_ERRORS),
    # MCP (API key; errors are JSON-RPC errors, see docs/mcp.md). GET and DELETE are served so they get
    # the endpoint's 405 rather than API Gateway's 403.
    Endpoint("POST", "/mcp", "MCP over Streamable HTTP, stateless: one JSON-RPC message or batch", "mcp", KEY,
             name="mcp", serve=_adapter(McpServer), any_content_type=True, body=ref("JsonRpcMessage"),
             response=ref("JsonRpcAnswer"),
             extra={202: {"description": STATUS_TEXT[202]}, 400: MCP_ERROR, 401: MCP_ERROR}),
    Endpoint("GET", "/mcp", "No SSE stream in the stateless server: always 405", "mcp", name="mcp",
             serve=_adapter(McpServer), any_content_type=True, status=405, response=ref("JsonRpcAnswer")),
    Endpoint("DELETE", "/mcp", "No sessions to end: always 405", "mcp", name="mcp", serve=_adapter(McpServer),
             any_content_type=True, status=405, response=ref("JsonRpcAnswer")),
    # Admin API (Cognito token): keys. API Gateway checks the token in AWS; the app checks it again
    # (chalicelib/admin/auth.py) because chalice local and the test client skip authorizers.
    Endpoint("POST", "/admin/keys", "Create a key (its secret is in this answer only)", "keys", ADMIN,
             name="admin_create_key", serve=lambda r: wiring.admin_service().create_key(r.headers, r.body),
             any_content_type=True, body=ref("NewKey"), body_required=False, response=ref("Key"), status=201,
             errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/keys", "List keys, newest first (admins: any owner)", "keys", ADMIN,
             name="admin_list_keys", serve=lambda r: wiring.admin_service().list_keys(r.headers, r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("keys", 100)),
    Endpoint("POST", "/admin/keys/import", "Create keys idempotently per row id", "keys", ADMIN,
             name="admin_import_keys", serve=lambda r: wiring.admin_service().import_keys(r.headers, r.body),
             any_content_type=True, body=ref("ImportRequest"), response=ref("ImportResult"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/keys/export", "Keys as import rows (no secrets)", "keys", ADMIN,
             name="admin_export_keys", serve=lambda r: wiring.admin_service().export_keys(r.headers, r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("keys", 1000)),
    Endpoint("GET", "/admin/keys/{key_id}", "One key", "keys", ADMIN, name="admin_get_key",
             serve=lambda r: wiring.admin_service().get_key(r.headers, r.params["key_id"]),
             response=ref("Key"), errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/keys/{key_id}", "Change a key (null clears; owners cannot loosen an admin's limits)",
             "keys", ADMIN, name="admin_update_key",
             serve=lambda r: wiring.admin_service().update_key(r.headers, r.params["key_id"], r.body),
             any_content_type=True, body=ref("KeyFields"), response=ref("Key"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/keys/{key_id}/revoke", "Revoke a key from the next request on", "keys", ADMIN,
             name="admin_revoke_key",
             serve=lambda r: wiring.admin_service().revoke_key(r.headers, r.params["key_id"], r.body),
             any_content_type=True,
             body={"type": "object", "additionalProperties": False, "properties": {"reason": nullable(STRING)}},
             body_required=False, response=ref("Key"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/keys/{key_id}/rotate", "A new secret; the old one works grace_seconds more", "keys",
             ADMIN, name="admin_rotate_key",
             serve=lambda r: wiring.admin_service().rotate_key(r.headers, r.params["key_id"], r.body),
             any_content_type=True,
             body={"type": "object", "additionalProperties": False,
                   "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 604800}}},
             body_required=False, response=ref("Key"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/keys/{key_id}/audit", "A key's audit events, oldest first", "audit", ADMIN,
             name="admin_key_audit",
             serve=lambda r: wiring.admin_service().key_audit(r.headers, r.params["key_id"], r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("audit", 500)),
    Endpoint("GET", "/admin/audit", "Every key's events of one UTC day (admins)", "audit", ADMIN,
             name="admin_audit", serve=lambda r: wiring.admin_service().audit(r.headers, r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query={"day": DATE, **page("audit", 500)}),
    # Admin API: the model catalog (admins; anyone signed in may list it, to choose a key's models)
    Endpoint("GET", "/admin/models", "The catalog's models with their prices (admins: all of each, disabled too)",
             "models", ADMIN, name="admin_list_models", serve=lambda r: wiring.model_admin().list_models(r.headers),
             response=ref("CatalogModelList"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/models", "Add a model (priced from LiteLLM's map unless prices are given; admins)",
             "models", ADMIN, name="admin_add_model",
             serve=lambda r: wiring.model_admin().add_model(r.headers, r.body), any_content_type=True,
             body=ref("ModelFields"), response=ref("CatalogModel"), status=201, errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/models/{alias}", "One model", "models", ADMIN, name="admin_get_model",
             serve=lambda r: wiring.model_admin().get_model(r.headers, r.params["alias"]),
             response=ref("CatalogModel"), errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/models/{alias}", "Change a model; new prices are a new version from effective_from "
             "(admins)", "models", ADMIN, name="admin_update_model",
             serve=lambda r: wiring.model_admin().update_model(r.headers, r.params["alias"], r.body),
             any_content_type=True, body=ref("ModelFields"), response=ref("CatalogModel"), errors=ADMIN_ERRORS),
    Endpoint("DELETE", "/admin/models/{alias}", "Remove a model (force: also from the keys that allow it; admins)",
             "models", ADMIN, name="admin_remove_model",
             serve=lambda r: wiring.model_admin().remove_model(r.headers, r.params["alias"], r.query),
             response=OBJECT_RESPONSE, errors=ADMIN_ERRORS, query={"force": {"type": "boolean"}}),
    Endpoint("POST", "/admin/models/{alias}/test", "Call the model once through the whole path, billed to a key; "
             "status, latency, tokens, exact cost (admins)", "models", ADMIN, name="admin_test_model",
             serve=lambda r: wiring.model_admin().test_model(r.headers, r.params["alias"], r.body),
             any_content_type=True,
             body={"type": "object", "additionalProperties": False, "properties": {"key_id": STRING}},
             body_required=False, response=ref("ModelTest"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/models/{alias}/audit", "A model's audit events, oldest first (admins)", "audit", ADMIN,
             name="admin_model_audit",
             serve=lambda r: wiring.model_admin().model_audit(r.headers, r.params["alias"], r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("audit", 500)),
    # Admin API: guardrail prices (operator data in the catalog table; LiteLLM's map by default)
    Endpoint("GET", "/admin/guardrail-prices", "Guardrail prices per 1,000 text units: in force, every version, "
             "LiteLLM's defaults, the audit log (admins)", "models", ADMIN, name="admin_guardrail_prices",
             serve=lambda r: wiring.guardrail_price_admin().get(r.headers),
             response=ref("GuardrailPrices"), errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/guardrail-prices", "Set guardrail prices: a new version from effective_from, the "
             "counters not sent carried over (admins)", "models", ADMIN, name="admin_set_guardrail_prices",
             serve=lambda r: wiring.guardrail_price_admin().update(r.headers, r.body), any_content_type=True,
             body=ref("GuardrailPriceChange"), response=ref("GuardrailPrices"), errors=ADMIN_ERRORS),
    # Admin API: accounting (usage reports, owner budgets, the daily report on demand, reconcile)
    Endpoint("GET", "/admin/usage", "Tokens, requests and exact cost over a date range", "accounting", ADMIN,
             name="admin_usage", serve=lambda r: wiring.accounting_service().usage(r.headers, r.query),
             response=ref("Usage"), errors=ADMIN_ERRORS,
             query={"from": DATE, "to": DATE, "group_by": {"enum": ["key", "owner", "team", "model", "day", "price"]},
                    "owner": STRING, "team": STRING, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}),
    Endpoint("GET", "/admin/spend", "A month of one person's spend by day, model and key, and their budget "
             "(yours; anyone's for admins)", "accounting", ADMIN, name="admin_spend",
             serve=lambda r: wiring.accounting_service().spend(r.headers, r.query), response=ref("Spend"),
             errors=ADMIN_ERRORS, query={"month": {"type": "string", "pattern": r"^\d{4}-\d{2}$"}, "owner": STRING}),
    Endpoint("GET", "/admin/owners/{owner}/budget", "An owner's monthly budget and spend ('me': yours)", "accounting",
             ADMIN, name="admin_owner_budget",
             serve=lambda r: wiring.accounting_service().owner_budget(r.headers, r.params["owner"]),
             response=ref("OwnerBudget"), errors=ADMIN_ERRORS),
    Endpoint("PUT", "/admin/owners/{owner}/budget", "Set or remove an owner's monthly budget (admins)", "accounting",
             ADMIN, name="admin_set_owner_budget",
             serve=lambda r: wiring.accounting_service().set_owner_budget(r.headers, r.params["owner"], r.body),
             any_content_type=True,
             body={"type": "object", "required": ["monthly_budget_usd"], "additionalProperties": False,
                   "properties": {"monthly_budget_usd": nullable(MONEY)}},
             response=ref("OwnerBudget"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/reports/daily", "Run a day's cost report now, once per day; force: a corrected "
             "revision (admins)", "accounting", ADMIN, name="admin_run_report",
             serve=lambda r: wiring.accounting_service().run_report(r.headers, r.body), any_content_type=True,
             body={"type": "object", "additionalProperties": False,
                   "properties": {"day": nullable(DATE), "force": {"type": "boolean"}}},
             body_required=False, response=ref("Report"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/reports/daily/{day}", "A day's stored report (admins)", "accounting", ADMIN,
             name="admin_get_report",
             serve=lambda r: wiring.accounting_service().get_report(r.headers, r.params["day"]),
             response=ref("Report"), errors=ADMIN_ERRORS),
    # Admin API: the request log (members: their own requests; admins: everyone's)
    Endpoint("GET", "/admin/requests", "Billed requests, newest first: time, key, person, team, model, protocol, "
             "tokens, cost, latency, status, request id (no prompt or answer is stored)", "accounting", ADMIN,
             name="admin_requests", serve=lambda r: wiring.request_log().list(r.headers, r.query),
             response=ref("RequestPage"), errors=ADMIN_ERRORS,
             query={"from": STRING, "to": STRING, "key": STRING, "owner": STRING, "team": STRING, "model": STRING,
                    "status": {"enum": ["ok", "partial"]}, "limit": {"type": "integer", "minimum": 1, "maximum": 200},
                    "cursor": STRING}),
    # Admin API: teams (a shared budget, members and team admins, the team's own keys)
    Endpoint("GET", "/admin/teams", "Teams: every team (admins), or yours", "teams", ADMIN, name="admin_list_teams",
             serve=lambda r: wiring.teams_service().list_teams(r.headers, r.query), response=ref("Listing"),
             errors=ADMIN_ERRORS, query=page("teams", 100)),
    Endpoint("POST", "/admin/teams", "Create a team with a monthly budget (admins)", "teams", ADMIN,
             name="admin_create_team", serve=lambda r: wiring.teams_service().create_team(r.headers, r.body),
             any_content_type=True, body={"allOf": [ref("TeamFields")], "required": ["name"]}, response=ref("Team"),
             status=201, errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/teams/{team}", "A team (id or name): this month's spend; members for its admins",
             "teams", ADMIN, name="admin_get_team",
             serve=lambda r: wiring.teams_service().get_team(r.headers, r.params["team"]), response=ref("Team"),
             errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/teams/{team}", "Rename a team or set its budgets (null clears)", "teams", ADMIN,
             name="admin_update_team",
             serve=lambda r: wiring.teams_service().update_team(r.headers, r.params["team"], r.body),
             any_content_type=True, body=ref("TeamFields"), response=ref("Team"), errors=ADMIN_ERRORS),
    Endpoint("DELETE", "/admin/teams/{team}", "Delete a team; refused while keys are charged to it unless "
             "force=true revokes them (admins)", "teams", ADMIN, name="admin_delete_team",
             serve=lambda r: wiring.teams_service().delete_team(r.headers, r.params["team"], r.query),
             response={"type": "object"}, errors=ADMIN_ERRORS, query={"force": {"enum": ["true", "false"]}}),
    Endpoint("POST", "/admin/teams/{team}/members", "Put a person on a team, as member or team admin", "teams",
             ADMIN, name="admin_add_member",
             serve=lambda r: wiring.teams_service().add_member(r.headers, r.params["team"], r.body),
             any_content_type=True,
             body={"type": "object", "required": ["person"], "additionalProperties": False,
                   "properties": {"person": STRING, "role": {"enum": ["member", "admin"]}}},
             response=ref("Member"), status=201, errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/teams/{team}/members/{person}", "Change a member's role (never your own)", "teams",
             ADMIN, name="admin_update_member",
             serve=lambda r: wiring.teams_service().update_member(r.headers, r.params["team"], r.params["person"],
                                                                  r.body),
             any_content_type=True,
             body={"type": "object", "required": ["role"], "additionalProperties": False,
                   "properties": {"role": {"enum": ["member", "admin"]}}},
             response=ref("Member"), errors=ADMIN_ERRORS),
    Endpoint("DELETE", "/admin/teams/{team}/members/{person}", "Take a person off a team (their keys charged to "
             "it are charged to them alone)", "teams", ADMIN, name="admin_remove_member",
             serve=lambda r: wiring.teams_service().remove_member(r.headers, r.params["team"], r.params["person"]),
             response=ref("Member"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/teams/{team}/audit", "A team's audit events, oldest first", "audit", ADMIN,
             name="admin_team_audit",
             serve=lambda r: wiring.teams_service().team_audit(r.headers, r.params["team"], r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("audit", 100)),
    # Admin API: people (invite, off-board; the sweep notices people disabled in Cognito directly)
    Endpoint("GET", "/admin/people", "Everyone, with teams and last activity (admins)", "people", ADMIN,
             name="admin_list_people", serve=lambda r: wiring.people_service().list_people(r.headers, r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("people", 100)),
    Endpoint("POST", "/admin/people", "Invite a person: Cognito e-mails a temporary password (admins)", "people",
             ADMIN, name="admin_invite_person", serve=lambda r: wiring.people_service().invite(r.headers, r.body),
             any_content_type=True, body=ref("NewPerson"), response=ref("Person"), status=201, errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/people/sweep", "Compare the directory with the user pool now (admins)", "people",
             ADMIN, name="admin_people_sweep", serve=lambda r: wiring.people_service().run_sweep(r.headers),
             any_content_type=True, body_required=False, response={"type": "object"}, errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/people/{person}", "A person (e-mail or sub)", "people", ADMIN, name="admin_get_person",
             serve=lambda r: wiring.people_service().get_person(r.headers, r.params["person"]),
             response=ref("Person"), errors=ADMIN_ERRORS),
    Endpoint("PATCH", "/admin/people/{person}", "Grant or take away admin rights (admins)", "people", ADMIN,
             name="admin_update_person",
             serve=lambda r: wiring.people_service().update_person(r.headers, r.params["person"], r.body),
             any_content_type=True,
             body={"type": "object", "required": ["admin"], "additionalProperties": False,
                   "properties": {"admin": {"type": "boolean"}}},
             response=ref("Person"), errors=ADMIN_ERRORS),
    Endpoint("DELETE", "/admin/people/{person}", "Remove a person from the pool and every team; their keys stay "
             "refused (admins)", "people", ADMIN, name="admin_remove_person",
             serve=lambda r: wiring.people_service().remove(r.headers, r.params["person"], r.body),
             any_content_type=True, body_required=False,
             body={"type": "object", "additionalProperties": False, "properties": {"reason": nullable(STRING)}},
             response=ref("Person"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/people/{person}/disable", "Disable a person: their personal keys stop at once (admins)",
             "people", ADMIN, name="admin_disable_person",
             serve=lambda r: wiring.people_service().disable(r.headers, r.params["person"], r.body),
             any_content_type=True, body_required=False,
             body={"type": "object", "additionalProperties": False, "properties": {"reason": nullable(STRING)}},
             response=ref("Person"), errors=ADMIN_ERRORS),
    Endpoint("POST", "/admin/people/{person}/enable", "Enable a person: the keys that were active work again "
             "(admins)", "people", ADMIN, name="admin_enable_person",
             serve=lambda r: wiring.people_service().enable(r.headers, r.params["person"]), any_content_type=True,
             body_required=False, response=ref("Person"), errors=ADMIN_ERRORS),
    Endpoint("GET", "/admin/people/{person}/audit", "A person's audit events, oldest first", "audit", ADMIN,
             name="admin_person_audit",
             serve=lambda r: wiring.people_service().person_audit(r.headers, r.params["person"], r.query),
             response=ref("Listing"), errors=ADMIN_ERRORS, query=page("audit", 100)),
    # The web console: a static page and its assets, public (the admin API above checks every call it makes)
    Endpoint("GET", "/console", "The web console's page", "console", name="console_page",
             serve=lambda r: wiring.console_site().page(r.path), response=STRING, media_types=("text/html",),
             errors=(500,)),
    Endpoint("GET", "/console/{asset}", "A console asset (content-hashed names are cached a year)", "console",
             name="console_asset", serve=lambda r: wiring.console_site().asset(r.params["asset"]),
             response=STRING, media_types=("text/javascript", "text/css", "image/svg+xml"), errors=(404, 500)),
    Endpoint("POST", "/admin/ledger/reconcile", "Replay usage that failed to persist (admins)", "accounting",
             ADMIN, name="admin_reconcile",
             serve=lambda r: wiring.accounting_service().reconcile(r.headers, r.body), any_content_type=True,
             body={"type": "object", "required": ["lines"], "additionalProperties": False,
                   "properties": {"lines": {"type": "array", "items": STRING, "maxItems": 10000}}},
             response=ref("Reconcile"), errors=ADMIN_ERRORS),
)  # fmt: skip

#: (method, path) of every streamed route (packaging and the local front).
STREAM_PATHS: tuple[tuple[str, str], ...] = tuple((r.method, r.path) for r in ROUTES if r.streamed)


def find(method: str, path: str, *, streamed: bool) -> Endpoint | None:
    """The route for ``method path`` served by the streaming function (or by the Chalice app), or None.

    A trailing slash is tolerated.
    """
    path = path.rstrip("/") or "/"
    return next((r for r in ROUTES if (r.method, r.path, r.streamed) == (method, path, streamed)), None)


def unknown_route(method: str, path: str) -> errors.UnknownRoute:
    """The 404 for a request no route answers, naming the route it most likely meant.

    Most are a base URL set one ``/v1`` short or long, or a path one letter off
    (``/v1/chat/completion``).
    """
    path = path.rstrip("/") or "/"
    literal = [r for r in ROUTES if "{" not in r.path]
    paths = [r.path for r in literal]
    tried = [path, f"/v1{path}", re.sub(r"^(/v1)+", "/v1", path)]
    meant = next((p for p in tried[1:] if p in paths and p != path), None) or nearest(path, paths, cutoff=0.85)
    hint = ""
    if meant is not None:
        methods = [r.method for r in literal if r.path == meant]
        shown = method if method in methods else methods[0]
        hint = f" Did you mean {shown} {meant}?"
    return errors.UnknownRoute(
        f"Unknown request URL: {method} {path}.{hint} The routes are listed at GET /openapi.json."
    )


def envelope_at(path: str) -> str:
    """The error envelope of the protocol served at ``path``, whatever the method (OpenAI's elsewhere)."""
    path = path.rstrip("/") or "/"
    return next((r.envelope for r in ROUTES if r.path == path), "openai")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """This API as an OpenAPI 3.1 document (also ``docs/openapi.json``)."""
    return openapi.document(ROUTES)
