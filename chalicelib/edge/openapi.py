"""pennyworth's own API as an OpenAPI 3.1 document: every route of the table, how it authenticates,
its bodies and its error envelopes. Served at ``GET /openapi.json`` and kept in ``docs/openapi.json``.

The document is built from ``chalicelib/edge/routes.py: ROUTES``, the table the Chalice app and the
streaming function serve, so a route cannot be served without being described;
``tests/integration/test_schemathesis.py`` checks the running stack against the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from chalicelib.edge.endpoint import Endpoint
from chalicelib.edge.schemas import ERROR_SCHEMAS, SCHEMAS, STATUS_TEXT, STRING, ref

VERSION = "0.1.0"


def document(routes: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (``chalicelib.edge.routes.openapi_document``: of every route)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
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
            for name in (
                "openai",
                "anthropic",
                "mcp",
                "keys",
                "teams",
                "people",
                "audit",
                "accounting",
                "console",
                "gateway",
            )
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


def _operation(route: Endpoint) -> dict[str, Any]:
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
    success: dict[str, Any] = {"description": STATUS_TEXT.get(route.status, "Answer")}
    if route.response is not None:
        success["content"] = {media_type: {"schema": route.response} for media_type in route.media_types}
        if route.stream:
            success["content"]["text/event-stream"] = {
                "schema": {"type": "string", "description": "Server-sent events, as OpenAI sends them."}
            }
    responses: dict[str, Any] = {str(route.status): success}
    for status in route.errors:
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {"application/json": {"schema": ref(ERROR_SCHEMAS[route.envelope])}},
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


def _operation_id(route: Endpoint) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace(".", "_").replace("/", "_").replace("-", "_")
    return f"{route.method.lower()}_{words or 'root'}"
