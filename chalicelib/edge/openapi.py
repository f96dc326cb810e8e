"""pennyworth's own API as an OpenAPI 3.1 document: every route, how it authenticates, its bodies
and its error envelopes. Served at ``GET /openapi.json`` and kept in ``docs/openapi.json``.

``ROUTES`` has one entry per route. Adding a route to ``app.py`` or to the streaming table
(``chalicelib/streaming/routes.py``) means adding its entry here: ``tests/test_openapi.py``
names any route that is served but not documented, or documented but not served, and
``tests/integration/test_schemathesis.py`` checks the running stack against the document.

Response schemas describe what we promise, not every field we send: objects stay open
(extra fields are allowed), so clients may rely on what is listed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

VERSION = "0.1.0"

# -- shared schemas ---------------------------------------------------------------------------


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "Exact USD as a decimal string."}
TIME = {"type": "string", "description": "ISO 8601 UTC, e.g. 2026-11-26T12:00:00Z."}
DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
OBJECT = {"type": "object"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "The OpenAI error envelope every /v1 and /admin error travels in.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": STRING,
                    "type": STRING,
                    "param": _nullable(STRING),
                    "code": _nullable(STRING),
                },
            }
        },
    },
    "AnthropicError": {
        "type": "object",
        "description": "Anthropic's error envelope: what the Messages routes answer errors with.",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": STRING, "message": STRING},
            },
        },
    },
    "MessagesRequest": {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": STRING,
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["user", "assistant"]},
                        "content": {"anyOf": [STRING, {"type": "array", "items": OBJECT}]},
                    },
                },
            },
            "system": {"anyOf": [STRING, {"type": "array", "items": OBJECT}]},
            "stream": {"type": "boolean"},
            "tools": {"type": "array", "items": OBJECT},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "content", "model", "usage"],
        "properties": {
            "id": STRING,
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "content": {"type": "array", "items": OBJECT},
            "model": STRING,
            "stop_reason": _nullable(STRING),
            "usage": OBJECT,
        },
    },
    "CountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": STRING,
            "messages": {"type": "array", "items": OBJECT},
            "system": {"anyOf": [STRING, {"type": "array", "items": OBJECT}]},
            "tools": {"type": "array", "items": OBJECT},
        },
    },
    "TokenCount": {"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": INTEGER}},
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": STRING, "object": {"const": "model"}, "created": INTEGER, "owned_by": STRING},
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}},
    },
    "KeyStatus": {
        "type": "object",
        "required": ["object", "key_id", "prefix", "limits", "budget", "usage"],
        "properties": {
            "object": {"const": "key"},
            "key_id": STRING,
            "prefix": STRING,
            "name": STRING,
            "allowed_models": _nullable({"type": "array", "items": STRING}),
            "expires_at": _nullable(TIME),
            "limits": OBJECT,
            "budget": OBJECT,
            "usage": OBJECT,
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": STRING,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": {"anyOf": [STRING, {"type": "array", "items": OBJECT}, {"type": "null"}]},
                    },
                },
            },
            "max_tokens": {"type": "integer", "minimum": 1},
            "max_completion_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stream": {"type": "boolean"},
            "stop": {"anyOf": [STRING, {"type": "array", "items": STRING}]},
            "tools": {"type": "array", "items": OBJECT},
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": STRING,
            "object": {"const": "chat.completion"},
            "created": INTEGER,
            "model": STRING,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {"index": INTEGER, "message": OBJECT, "finish_reason": _nullable(STRING)},
                },
            },
            "usage": OBJECT,
        },
    },
    "ResponsesRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": STRING,
            "input": {"anyOf": [STRING, {"type": "array", "items": OBJECT, "minItems": 1}]},
            "instructions": _nullable(STRING),
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean"},
            "store": {"type": "boolean"},
            "tools": {"type": "array", "items": OBJECT},
        },
    },
    "Response": {
        "type": "object",
        "required": ["id", "object", "model", "output"],
        "properties": {
            "id": STRING,
            "object": {"const": "response"},
            "model": STRING,
            "status": STRING,
            "output": {"type": "array", "items": OBJECT},
            "usage": _nullable(OBJECT),
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": STRING,
            "input": {"anyOf": [STRING, {"type": "array", "items": STRING, "minItems": 1}]},
            "encoding_format": {"enum": ["float", "base64"]},
            "dimensions": {"type": "integer", "minimum": 1},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": INTEGER,
                        "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}}, STRING]},
                    },
                },
            },
            "model": STRING,
            "usage": OBJECT,
        },
    },
    "JsonRpcMessage": {
        "description": "A JSON-RPC 2.0 message or batch (MCP, Streamable HTTP, stateless).",
        "anyOf": [OBJECT, {"type": "array", "items": OBJECT}],
    },
    "JsonRpcAnswer": {
        "description": "JSON-RPC 2.0 responses: one, or an array for a batch. Errors are JSON-RPC errors.",
        "anyOf": [
            {"type": "object", "required": ["jsonrpc"], "properties": {"jsonrpc": {"const": "2.0"}}},
            {"type": "array", "items": OBJECT},
        ],
    },
    "Owner": {
        "type": "object",
        "required": ["sub", "email"],
        "properties": {"sub": STRING, "email": _nullable(STRING)},
    },
    "Key": {
        "type": "object",
        "description": "A key's metadata as the admin API shows it (never its hash; its secret only when made).",
        "required": ["object", "key_id", "prefix", "name", "status", "owner", "created_at", "metadata"],
        "properties": {
            "object": {"const": "key"},
            "key_id": STRING,
            "prefix": STRING,
            "name": STRING,
            "status": {"enum": ["active", "expired", "revoked"]},
            "owner": _ref("Owner"),
            "allowed_models": _nullable({"type": "array", "items": STRING}),
            "monthly_budget_usd": _nullable(MONEY),
            "rpm_limit": _nullable(INTEGER),
            "tpm_limit": _nullable(INTEGER),
            "expires_at": _nullable(TIME),
            "created_at": TIME,
            "updated_at": _nullable(TIME),
            "revoked_at": _nullable(TIME),
            "last_used_at": _nullable(TIME),
            "previous_secret_valid_until": _nullable(TIME),
            "metadata": {"type": "object", "additionalProperties": STRING},
            "import_id": _nullable(STRING),
            "admin_limits": {"type": "object", "description": "The limits an admin set: the owner may tighten them."},
            "secret": {"type": "string", "description": "Only in the answers of create, rotate and import."},
        },
    },
    "KeyFields": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "allowed_models": _nullable({"type": "array", "items": STRING, "minItems": 1, "maxItems": 100}),
            "monthly_budget_usd": {"anyOf": [MONEY, {"type": "number", "minimum": 0}, {"type": "null"}]},
            "rpm_limit": _nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000_000}),
            "tpm_limit": _nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000_000}),
            "expires_at": _nullable(TIME),
            "metadata": _nullable({"type": "object", "maxProperties": 32, "additionalProperties": STRING}),
        },
    },
    "NewKey": {
        "allOf": [_ref("KeyFields")],
        "type": "object",
        "properties": {"owner": {"type": "string", "description": "E-mail or sub (admins only)."}},
    },
    "Listing": {
        "type": "object",
        "required": ["object", "data", "has_more", "next_cursor"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": OBJECT},
            "has_more": {"type": "boolean"},
            "next_cursor": _nullable(STRING),
        },
    },
    "ImportRequest": {
        "type": "object",
        "required": ["keys"],
        "additionalProperties": False,
        "properties": {
            "keys": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                # Rows are checked one by one: a bad row is an error in the results, not a 400.
                "items": {"description": "A key row: id, owner, and the fields of KeyFields."},
            }
        },
    },
    "ImportResult": {
        "type": "object",
        "required": ["object", "created", "exists", "error", "results"],
        "properties": {
            "object": {"const": "import_result"},
            "created": INTEGER,
            "exists": INTEGER,
            "error": INTEGER,
            "results": {"type": "array", "items": OBJECT},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["object", "from", "to", "group_by", "scope", "data", "total"],
        "properties": {
            "object": {"const": "usage"},
            "from": DATE,
            "to": DATE,
            "group_by": {"enum": ["key", "owner", "model", "day"]},
            "scope": STRING,
            "scope_email": _nullable(STRING),
            "data": {"type": "array", "items": OBJECT},
            "total": OBJECT,
        },
    },
    "OwnerBudget": {
        "type": "object",
        "required": ["object", "owner", "period", "monthly_budget_usd", "spent_usd", "remaining_usd"],
        "properties": {
            "object": {"const": "owner_budget"},
            "owner": STRING,
            "owner_email": _nullable(STRING),
            "period": STRING,
            "monthly_budget_usd": _nullable(MONEY),
            "spent_usd": MONEY,
            "remaining_usd": _nullable(MONEY),
        },
    },
    "Report": {
        "type": "object",
        "required": ["day", "report", "notification"],
        "properties": {
            "day": DATE,
            "status": STRING,
            "revision": {"type": "integer", "minimum": 1},
            "sent": {"type": "array"},
            "steps": OBJECT,
            "report": OBJECT,
            "notification": STRING,
        },
    },
    "Reconcile": {
        "type": "object",
        "required": ["object", "lines", "entries", "recorded", "failed", "rejected", "skipped", "cost_usd"],
        "properties": {
            "object": {"const": "reconcile"},
            "lines": INTEGER,
            "entries": INTEGER,
            "recorded": INTEGER,
            "failed": {"type": "array", "items": STRING},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["line", "request_id", "error"],
                    "properties": {"line": INTEGER, "request_id": _nullable(STRING), "error": STRING},
                },
            },
            "skipped": INTEGER,
            "cost_usd": MONEY,
        },
    },
}

# -- the routes -------------------------------------------------------------------------------

#: Errors a route with this kind of caller can answer (an OpenAI error envelope each).
V1_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
ADMIN_ERRORS = (400, 401, 403, 404, 409, 413, 500, 503)
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted (notifications only: no body)",
    400: "Invalid request",
    401: "Missing, invalid, revoked or expired credentials",
    403: "Not allowed for this caller",
    404: "Unknown resource",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    429: "Rate limit or budget (Retry-After)",
    500: "Internal error (logged; no details)",
    502: "Bedrock failed",
    503: "A dependency is unavailable",
    504: "Bedrock too slow",
}


@dataclass(frozen=True)
class Route:
    """One operation: where it is, who may call it, what goes in and what comes out."""

    method: str
    path: str
    summary: str
    tag: str
    auth: str | None = None  # "api_key", "cognito" or None
    body: dict[str, Any] | None = None  # JSON schema of the request body
    body_required: bool = True
    response: dict[str, Any] | None = None  # JSON schema of the success body
    status: int = 200
    errors: tuple[int, ...] = ()
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: bool = False  # also answers text/event-stream (stream: true)
    media_types: tuple[str, ...] = ("application/json",)  # of the success body
    error_schema: str = "Error"  # the envelope errors travel in (Anthropic's on the Messages routes)
    extra: dict[int, dict[str, Any]] = field(default_factory=dict)  # status → a full response object


def _page(kind: str, maximum: int) -> dict[str, dict[str, Any]]:
    return {
        "limit": {"type": "integer", "minimum": 1, "maximum": maximum},
        "cursor": STRING,
        **({"owner": STRING, "status": {"enum": ["active", "expired", "revoked"]}} if kind == "keys" else {}),
    }


_MCP_ERROR = {"description": "A JSON-RPC error", "content": {"application/json": {"schema": _ref("JsonRpcAnswer")}}}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", "Liveness; no key needed", "gateway", response={"type": "object"}),
    Route("GET", "/openapi.json", "This document", "gateway", response={"type": "object"}),
    # OpenAI-compatible (API key)
    Route("GET", "/v1/models", "The catalog, narrowed to the key's models", "openai", "api_key",
          response=_ref("ModelList"), errors=V1_ERRORS),
    Route("GET", "/v1/models/{model_id}", "One model the key may use", "openai", "api_key",
          response=_ref("Model"), errors=V1_ERRORS),
    Route("GET", "/v1/key", "The calling key's limits, spend and budget left", "openai", "api_key",
          response=_ref("KeyStatus"), errors=V1_ERRORS),
    Route("POST", "/v1/chat/completions", "OpenAI chat completions (streamed as generated with stream: true)",
          "openai", "api_key", body=_ref("ChatCompletionRequest"), response=_ref("ChatCompletion"),
          errors=V1_ERRORS, stream=True),
    Route("POST", "/v1/responses", "OpenAI Responses (stateless: store is not kept; streamed with stream: true)",
          "openai", "api_key", body=_ref("ResponsesRequest"), response=_ref("Response"), errors=V1_ERRORS,
          stream=True),
    Route("POST", "/v1/embeddings", "OpenAI embeddings", "openai", "api_key", body=_ref("EmbeddingRequest"),
          response=_ref("EmbeddingList"), errors=V1_ERRORS),
    # Anthropic-compatible (the same API key, as x-api-key or a bearer token)
    Route("POST", "/v1/messages", "Anthropic Messages (streamed as generated with stream: true)", "anthropic",
          "api_key", body=_ref("MessagesRequest"), response=_ref("Message"), errors=V1_ERRORS, stream=True,
          error_schema="AnthropicError"),
    Route("POST", "/v1/messages/count_tokens", "Anthropic token counting", "anthropic", "api_key",
          body=_ref("CountTokensRequest"), response=_ref("TokenCount"), errors=V1_ERRORS,
          error_schema="AnthropicError"),
    # MCP (API key; errors are JSON-RPC errors, see docs/mcp.md)
    Route("POST", "/mcp", "MCP over Streamable HTTP, stateless: one JSON-RPC message or batch", "mcp", "api_key",
          body=_ref("JsonRpcMessage"), response=_ref("JsonRpcAnswer"),
          extra={202: {"description": _STATUS_TEXT[202]}, 400: _MCP_ERROR, 401: _MCP_ERROR}),
    Route("GET", "/mcp", "No SSE stream in the stateless server: always 405", "mcp", status=405,
          response=_ref("JsonRpcAnswer")),
    Route("DELETE", "/mcp", "No sessions to end: always 405", "mcp", status=405, response=_ref("JsonRpcAnswer")),
    # Admin API (Cognito token): keys
    Route("POST", "/admin/keys", "Create a key (its secret is in this answer only)", "keys", "cognito",
          body=_ref("NewKey"), body_required=False, response=_ref("Key"), status=201, errors=ADMIN_ERRORS),
    Route("GET", "/admin/keys", "List keys, newest first (admins: any owner)", "keys", "cognito",
          response=_ref("Listing"), errors=ADMIN_ERRORS, query=_page("keys", 100)),
    Route("POST", "/admin/keys/import", "Create keys idempotently per row id", "keys", "cognito",
          body=_ref("ImportRequest"), response=_ref("ImportResult"), errors=ADMIN_ERRORS),
    Route("GET", "/admin/models", "The catalog's models, to choose a key's allowed_models from", "keys", "cognito",
          response=_ref("ModelList"), errors=ADMIN_ERRORS),
    Route("GET", "/admin/keys/export", "Keys as import rows (no secrets)", "keys", "cognito",
          response=_ref("Listing"), errors=ADMIN_ERRORS, query=_page("keys", 1000)),
    Route("GET", "/admin/keys/{key_id}", "One key", "keys", "cognito", response=_ref("Key"), errors=ADMIN_ERRORS),
    Route("PATCH", "/admin/keys/{key_id}", "Change a key (null clears; owners cannot loosen an admin's limits)",
          "keys", "cognito", body=_ref("KeyFields"), response=_ref("Key"), errors=ADMIN_ERRORS),
    Route("POST", "/admin/keys/{key_id}/revoke", "Revoke a key from the next request on", "keys", "cognito",
          body={"type": "object", "additionalProperties": False, "properties": {"reason": _nullable(STRING)}},
          body_required=False, response=_ref("Key"), errors=ADMIN_ERRORS),
    Route("POST", "/admin/keys/{key_id}/rotate", "A new secret; the old one works grace_seconds more", "keys",
          "cognito", body={"type": "object", "additionalProperties": False,
                           "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 604800}}},
          body_required=False, response=_ref("Key"), errors=ADMIN_ERRORS),
    Route("GET", "/admin/keys/{key_id}/audit", "A key's audit events, oldest first", "audit", "cognito",
          response=_ref("Listing"), errors=ADMIN_ERRORS, query=_page("audit", 500)),
    Route("GET", "/admin/audit", "Every key's events of one UTC day (admins)", "audit", "cognito",
          response=_ref("Listing"), errors=ADMIN_ERRORS, query={"day": DATE, **_page("audit", 500)}),
    # Admin API: accounting
    Route("GET", "/admin/usage", "Tokens, requests and exact cost over a date range", "accounting", "cognito",
          response=_ref("Usage"), errors=ADMIN_ERRORS,
          query={"from": DATE, "to": DATE, "group_by": {"enum": ["key", "owner", "model", "day"]}, "owner": STRING}),
    Route("GET", "/admin/owners/{owner}/budget", "An owner's monthly budget and spend ('me': yours)", "accounting",
          "cognito", response=_ref("OwnerBudget"), errors=ADMIN_ERRORS),
    Route("PUT", "/admin/owners/{owner}/budget", "Set or remove an owner's monthly budget (admins)", "accounting",
          "cognito", body={"type": "object", "required": ["monthly_budget_usd"], "additionalProperties": False,
                           "properties": {"monthly_budget_usd": _nullable(MONEY)}},
          response=_ref("OwnerBudget"), errors=ADMIN_ERRORS),
    Route("POST", "/admin/reports/daily", "Run a day's cost report now, once per day; force: a corrected revision "
          "(admins)", "accounting", "cognito",
          body={"type": "object", "additionalProperties": False,
                "properties": {"day": _nullable(DATE), "force": {"type": "boolean"}}},
          body_required=False, response=_ref("Report"), errors=ADMIN_ERRORS),
    Route("GET", "/admin/reports/daily/{day}", "A day's stored report (admins)", "accounting", "cognito",
          response=_ref("Report"), errors=ADMIN_ERRORS),
    # The web console: a static page and its assets (the admin API above checks every call it makes)
    Route("GET", "/console", "The web console's page", "console", response=STRING, media_types=("text/html",),
          errors=(500,)),
    Route("GET", "/console/{asset}", "A console asset (content-hashed names are cached a year)", "console",
          response=STRING, media_types=("text/javascript", "text/css", "image/svg+xml"), errors=(404, 500)),
    Route("POST", "/admin/ledger/reconcile", "Replay usage that failed to persist (admins)", "accounting",
          "cognito", body={"type": "object", "required": ["lines"], "additionalProperties": False,
                           "properties": {"lines": {"type": "array", "items": STRING, "maxItems": 10000}}},
          response=_ref("Reconcile"), errors=ADMIN_ERRORS),
)  # fmt: skip


# -- the document -----------------------------------------------------------------------------


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``ROUTES``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pennyworth",
            "version": VERSION,
            "description": (
                "An OpenAI-compatible gateway to Amazon Bedrock, with an MCP endpoint and an admin API. "
                "Every /v1 and /admin error is an OpenAI error envelope (schema Error); /mcp answers "
                "JSON-RPC errors. On AWS the paths are below the stage (…/api/v1/models): the server URL "
                "is where this document is served from."
            ),
            "license": {"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"},
        },
        "servers": [{"url": ".", "description": "The gateway serving this document"}],
        "tags": [
            {"name": name}
            for name in ("openai", "anthropic", "mcp", "keys", "audit", "accounting", "console", "gateway")
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "api_key": {"type": "http", "scheme": "bearer", "description": "An API key: pw-<key_id>-<secret>."},
                "cognito": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Cognito ID or access token of the stack's user pool (pennyworth login).",
                },
            },
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "security": [{route.auth: []}] if route.auth else [],
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": STRING} for name in re.findall(r"{(\w+)}", route.path)
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": _or_empty(schema)}
        for name, schema in route.query.items()
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": route.body}},
        }
    success: dict[str, Any] = {"description": _STATUS_TEXT.get(route.status, "Answer")}
    if route.response is not None:
        success["content"] = {media_type: {"schema": route.response} for media_type in route.media_types}
        if route.stream:
            success["content"]["text/event-stream"] = {
                "schema": {"type": "string", "description": "Server-sent events, as OpenAI sends them."}
            }
    responses: dict[str, Any] = {str(route.status): success}
    for status in route.errors:
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": _ref(route.error_schema)}},
        }
    for status, response in route.extra.items():
        responses[str(status)] = response
    operation["responses"] = responses
    return operation


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A text query parameter's schema that also admits "": an empty value counts as not given
    (?status=, ?from=). Numbers (?limit=) must be numbers."""
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], ""]}
    if "pattern" in schema:
        return {**schema, "pattern": f"^(?:{schema['pattern'].strip('^$')})?$"}
    return schema


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace(".", "_").replace("/", "_").replace("-", "_")
    return f"{route.method.lower()}_{words or 'root'}"
