"""The JSON schemas pennyworth's OpenAPI document is made of: small atoms, the component schemas,
and the error answers each kind of route can give.

Response schemas describe what we promise, not every field we send: objects stay open
(extra fields are allowed), so clients may rely on what is listed.
"""

from __future__ import annotations

from typing import Any

# -- atoms -----------------------------------------------------------------------------------


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema``, or null."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "Exact USD as a decimal string."}
#: A Bedrock guardrail (chalicelib/shared/guardrails.py: parse_guardrail), one of the stack's GuardrailIds.
GUARDRAIL = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {
        "id": {
            "type": "string",
            "pattern": r"^([a-z0-9]{1,64}|arn:aws[a-z-]*:bedrock:[a-z0-9-]+:[0-9]{12}:guardrail/[a-z0-9]{1,64})$",
        },
        "version": {"type": "string", "pattern": r"^(DRAFT|[1-9][0-9]{0,7})$", "default": "DRAFT"},
    },
}
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
                    "param": nullable(STRING),
                    "code": nullable(STRING),
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
            "stop_reason": nullable(STRING),
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
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Model")}},
    },
    "KeyStatus": {
        "type": "object",
        "required": ["object", "key_id", "prefix", "limits", "budget", "usage"],
        "properties": {
            "object": {"const": "key"},
            "key_id": STRING,
            "prefix": STRING,
            "name": STRING,
            "allowed_models": nullable({"type": "array", "items": STRING}),
            "expires_at": nullable(TIME),
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
                    "properties": {"index": INTEGER, "message": OBJECT, "finish_reason": nullable(STRING)},
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
            "instructions": nullable(STRING),
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
            "usage": nullable(OBJECT),
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
        "properties": {"sub": STRING, "email": nullable(STRING)},
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
            "status": {"enum": ["active", "expired", "revoked", "disabled"]},
            "owner": ref("Owner"),
            "allowed_models": nullable({"type": "array", "items": STRING}),
            "monthly_budget_usd": nullable(MONEY),
            "rpm_limit": nullable(INTEGER),
            "tpm_limit": nullable(INTEGER),
            "expires_at": nullable(TIME),
            "created_at": TIME,
            "updated_at": nullable(TIME),
            "revoked_at": nullable(TIME),
            "last_used_at": nullable(TIME),
            "previous_secret_valid_until": nullable(TIME),
            "metadata": {"type": "object", "additionalProperties": STRING},
            "import_id": nullable(STRING),
            "admin_limits": {"type": "object", "description": "The limits an admin set: the owner may tighten them."},
            "secret": {"type": "string", "description": "Only in the answers of create, rotate and import."},
            "team": nullable({"type": "string", "description": "The id of the team the key is charged to."}),
            "team_owned": {"type": "boolean", "description": "The team's own key (no personal owner)."},
        },
    },
    "KeyFields": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 200},
            "allowed_models": nullable({"type": "array", "items": STRING, "minItems": 1, "maxItems": 100}),
            "monthly_budget_usd": {"anyOf": [MONEY, {"type": "number", "minimum": 0}, {"type": "null"}]},
            "rpm_limit": nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000_000}),
            "tpm_limit": nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000_000}),
            "expires_at": nullable(TIME),
            "metadata": nullable({"type": "object", "maxProperties": 32, "additionalProperties": STRING}),
            "guardrail": {
                "anyOf": [GUARDRAIL, {"type": "null"}],
                "description": "Every call with the key carries it (wins over its team's and its model's). On a key "
                "charged to a team with a guardrail, admins only.",
            },
            "model_fallback": {
                "enum": ["any", "same_model", "none"],
                "description": "Which catalog fallbacks may serve: any, only the same model, or none.",
            },
            "team": nullable(
                {
                    "type": "string",
                    "description": "Charge the key to this team (id or name) of its owner; null: to its owner alone.",
                }
            ),
        },
    },
    "NewKey": {
        "allOf": [ref("KeyFields")],
        "type": "object",
        "properties": {
            "owner": {"type": "string", "description": "E-mail or sub (admins only)."},
            "team_owned": {"type": "boolean", "description": "The team's own key (team admins and admins)."},
        },
    },
    "Listing": {
        "type": "object",
        "required": ["object", "data", "has_more", "next_cursor"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": OBJECT},
            "has_more": {"type": "boolean"},
            "next_cursor": nullable(STRING),
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
            "group_by": {"enum": ["key", "owner", "team", "model", "day", "price"]},
            "scope": STRING,
            "scope_email": nullable(STRING),
            "data": {"type": "array", "items": OBJECT},
            "total": OBJECT,
            "groups": {**INTEGER, "description": "How many groups there are (with limit=, data holds the first)."},
            "has_more": {"type": "boolean", "description": "With limit=: more groups than data holds."},
        },
    },
    "RequestPage": {
        "type": "object",
        "description": "A page of the request log, newest first. Nothing of a prompt or an answer is stored.",
        "required": ["object", "data", "has_more", "next_cursor", "from", "to", "searched_to", "owner"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("Request")},
            "has_more": {"type": "boolean"},
            "next_cursor": nullable(STRING),
            "from": TIME,
            "to": TIME,
            "searched_to": {**TIME, "description": "How far back this page looked (a short page may have more)."},
            "owner": {
                **nullable(STRING),
                "description": "The sub of the person the page is narrowed to (null: none): send it as `owner` "
                "for the next pages, and the gateway does not look the person up again.",
            },
        },
    },
    "Request": {
        "type": "object",
        "required": ["object", "time", "request_id", "key_id", "model", "status", "cost_usd", "latency_ms"],
        "properties": {
            "object": {"const": "request"},
            "time": TIME,
            "request_id": STRING,
            "key_id": STRING,
            "key_prefix": STRING,
            "key_name": nullable(STRING),
            "owner_sub": nullable(STRING),
            "owner_email": nullable(STRING),
            "team": nullable({"type": "string", "description": "The team charged (its name; its id if gone)."}),
            "team_id": nullable(STRING),
            "model": STRING,
            "protocol": nullable({"type": "string", "description": "openai, responses, anthropic or mcp"}),
            "operation": STRING,
            "status": {"enum": ["ok", "partial"]},
            "input_tokens": INTEGER,
            "output_tokens": INTEGER,
            "cache_read_tokens": INTEGER,
            "cache_write_tokens": INTEGER,
            "cost_usd": MONEY,
            "latency_ms": INTEGER,
            "capped": {"type": "boolean"},
        },
    },
    "Spend": {
        "type": "object",
        "required": ["object", "month", "from", "to", "owner", "total", "by_day", "by_model", "by_key", "budget"],
        "properties": {
            "object": {"const": "spend"},
            "month": STRING,
            "from": DATE,
            "to": DATE,
            "owner": STRING,
            "owner_email": nullable(STRING),
            "total": OBJECT,
            "by_day": {"type": "array", "items": OBJECT},
            "by_model": {"type": "array", "items": OBJECT},
            "by_key": {"type": "array", "items": OBJECT},
            "budget": nullable(ref("OwnerBudget")),
        },
    },
    "Prices": {
        "type": "object",
        "description": "USD per million tokens, exact decimal strings; tiers apply to a whole request whose prompt "
        "(every input token, cached or not) is above their threshold.",
        "required": ["input"],
        "properties": {
            **{name: MONEY for name in ("input", "output", "cache_read", "cache_write", "cache_write_1h")},
            "tiers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["above_input_tokens"],
                    "properties": {
                        "above_input_tokens": {"type": "integer", "minimum": 1},
                        **{name: MONEY for name in ("input", "output", "cache_read", "cache_write", "cache_write_1h")},
                    },
                },
            },
        },
    },
    "CatalogModel": {
        "type": "object",
        "description": "A catalog model as the admin API shows it (admins also see where it is served, its note "
        "and every price version).",
        "required": ["id", "object", "alias", "mode", "enabled", "capabilities", "prices"],
        "properties": {
            "id": STRING,
            "object": {"const": "model"},
            "alias": STRING,
            "aliases": {"type": "array", "items": STRING},
            "mode": {"enum": ["chat", "embedding"]},
            "enabled": {"type": "boolean"},
            "capabilities": OBJECT,
            "prices": OBJECT,
            "provider": {"enum": ["bedrock", "openai"]},
            "model_id": STRING,
            "price_versions": {"type": "array", "items": OBJECT},
        },
    },
    "CatalogModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("CatalogModel")}},
    },
    "ModelFields": {
        "type": "object",
        "description": "A model entry (docs/models.md). Adding needs alias, provider and model_id; prices default "
        "to LiteLLM's pinned price map. Changing prices adds a price version, from effective_from (default now).",
        "additionalProperties": False,
        "properties": {
            "alias": STRING,
            "aliases": {"type": "array", "items": STRING},
            "provider": {"enum": ["bedrock", "openai"]},
            "model_id": STRING,
            "region": nullable(STRING),
            "base_url": nullable(STRING),
            "api_key_parameter": nullable(STRING),
            "mode": {"enum": ["chat", "embedding"]},
            "owned_by": STRING,
            "created": INTEGER,
            "capabilities": OBJECT,
            "dimensions": {"type": "array", "items": INTEGER},
            "default_dimensions": INTEGER,
            "prices": ref("Prices"),
            "free": {"type": "boolean"},
            "enabled": {"type": "boolean"},
            "note": nullable(STRING),
            "force": {"type": "boolean", "description": "Accept a price over $1,000 per million tokens."},
            "effective_from": TIME,
            "prices_from_map": {"type": "boolean", "description": "New prices from LiteLLM's pinned map."},
        },
    },
    "ModelTest": {
        "type": "object",
        "required": ["object", "model", "ok", "status", "latency_ms"],
        "properties": {
            "object": {"const": "model_test"},
            "model": STRING,
            "key_id": STRING,
            "ok": {"type": "boolean"},
            "status": INTEGER,
            "latency_ms": INTEGER,
            "usage": OBJECT,
            "cost_usd": MONEY,
            "price_version": INTEGER,
            "served_by": STRING,
            "error": OBJECT,
        },
    },
    "OwnerBudget": {
        "type": "object",
        "required": ["object", "owner", "period", "monthly_budget_usd", "spent_usd", "remaining_usd"],
        "properties": {
            "object": {"const": "owner_budget"},
            "owner": STRING,
            "owner_email": nullable(STRING),
            "period": STRING,
            "monthly_budget_usd": nullable(MONEY),
            "spent_usd": MONEY,
            "remaining_usd": nullable(MONEY),
        },
    },
    "Team": {
        "type": "object",
        "required": ["object", "id", "name", "monthly_budget_usd", "period", "spent_usd"],
        "properties": {
            "object": {"const": "team"},
            "id": STRING,
            "name": STRING,
            "your_role": nullable({"enum": ["member", "admin"]}),
            "created_at": TIME,
            "created_by": nullable(STRING),
            "monthly_budget_usd": nullable(MONEY),
            "default_member_budget_usd": nullable(MONEY),
            "guardrail": nullable(GUARDRAIL),
            "period": STRING,
            "spent_usd": MONEY,
            "requests": INTEGER,
            "remaining_usd": nullable(MONEY),
            "members": {"type": "array", "items": ref("Member"), "description": "For the team's admins and admins."},
            "keys": OBJECT,
            "notice": {
                "type": "string",
                "description": "Set when a new budget is already spent this month, or "
                "keys of the team carry a guardrail of their own that wins over the team's new one.",
            },
            "keys_with_own_guardrail": {"type": "array", "items": STRING},
        },
    },
    "TeamFields": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "monthly_budget_usd": {"anyOf": [MONEY, {"type": "null"}]},
            "default_member_budget_usd": {"anyOf": [MONEY, {"type": "null"}]},
            "guardrail": {
                "anyOf": [GUARDRAIL, {"type": "null"}],
                "description": "Every call charged to the team carries it unless its key has its own (admins only).",
            },
        },
    },
    "GuardrailPrices": {
        "type": "object",
        "required": ["object", "in_force", "versions", "default"],
        "properties": {
            "object": {"const": "guardrail_prices"},
            "unit": STRING,
            "in_force": {
                "type": "object",
                "description": "Version 0: LiteLLM's map.",
                "properties": {"version": INTEGER, "per_1000_units": {"type": "object", "additionalProperties": MONEY}},
            },
            "versions": {"type": "array", "items": OBJECT},
            "default": OBJECT,
            "audit": {"type": "array", "items": OBJECT},
        },
    },
    "GuardrailPriceChange": {
        "type": "object",
        "additionalProperties": False,
        "required": ["per_1000_units"],
        "properties": {
            "per_1000_units": {
                "type": "object",
                "description": (
                    "USD per 1,000 text units by usage counter (contentPolicyUnits, …: the counters Bedrock "
                    'reports); "0" makes one free, each keeps a price.'
                ),
                "maxProperties": 16,
                "additionalProperties": {"anyOf": [MONEY, {"type": "null"}]},
            },
            "effective_from": {**TIME, "description": "Default: now; never in the past."},
            "force": {"type": "boolean", "description": "Allow a price over $100 per 1,000 text units."},
        },
    },
    "Member": {
        "type": "object",
        "required": ["object", "team", "sub", "role"],
        "properties": {
            "object": {"const": "member"},
            "team": STRING,
            "sub": STRING,
            "email": nullable(STRING),
            "role": {"enum": ["member", "admin"]},
            "status": STRING,
            "added_at": nullable(TIME),
            "added_by": nullable(STRING),
        },
    },
    "Person": {
        "type": "object",
        "required": ["object", "sub", "email", "status", "teams"],
        "properties": {
            "object": {"const": "person"},
            "sub": STRING,
            "email": nullable(STRING),
            "status": {"enum": ["active", "disabled", "removed"]},
            "admin": {"type": "boolean"},
            "teams": {"type": "array", "items": OBJECT},
            "monthly_budget_usd": nullable(MONEY),
            "keys": OBJECT,
            "created_at": nullable(TIME),
            "last_seen_at": nullable(TIME),
            "last_key_used_at": nullable(TIME),
            "last_activity_at": nullable(TIME),
            "temporary_password": {"type": "string", "description": "Local stacks only: there is no mail."},
        },
    },
    "NewPerson": {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": {
            "email": STRING,
            "team": STRING,
            "role": {"enum": ["member", "admin"]},
            "monthly_budget_usd": {"anyOf": [MONEY, {"type": "null"}]},
            "admin": {"type": "boolean"},
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
                    "properties": {"line": INTEGER, "request_id": nullable(STRING), "error": STRING},
                },
            },
            "skipped": INTEGER,
            "cost_usd": MONEY,
        },
    },
}

# -- answers ----------------------------------------------------------------------------------

#: Errors a route with this kind of caller can answer (an OpenAI error envelope each).
V1_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
ADMIN_ERRORS = (400, 401, 403, 404, 409, 413, 500, 503)
STATUS_TEXT = {
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


#: The schema of the error envelope each protocol's routes answer errors in.
ERROR_SCHEMAS = {"openai": "Error", "anthropic": "AnthropicError"}


def page(kind: str, maximum: int) -> dict[str, dict[str, Any]]:
    """The query parameters of a paged listing (keys: also who owns them, and their status)."""
    return {
        "limit": {"type": "integer", "minimum": 1, "maximum": maximum},
        "cursor": STRING,
        **(
            {
                "owner": STRING,
                "team": STRING,
                "status": {"enum": ["active", "expired", "revoked", "disabled"]},
                "q": {"type": "string", "maxLength": 200, "description": "A piece of name, key, owner or metadata."},
                "model": {"type": "string", "description": "Keys that may use this model."},
            }
            if kind == "keys"
            else {}
        ),
    }


MCP_ERROR = {"description": "A JSON-RPC error", "content": {"application/json": {"schema": ref("JsonRpcAnswer")}}}
