"""API Gateway proxy event → the streamed route it names → a ``StreamingResult``.

The event is API Gateway's REST proxy payload (format 1.0): ``httpMethod``,
``path``, ``headers``, ``body``, ``isBase64Encoded``. ``deadline`` is the Unix
time (seconds) by which the whole answer must be out: Lambda's invocation
deadline on AWS, the configured function timeout locally. The route, and the
translation of its errors, are the edge's (``chalicelib/edge``), as for the
Chalice app.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from chalicelib.edge.answers import answer
from chalicelib.edge.routes import find, unknown_route
from chalicelib.shared.http import HttpRequest, StreamingResult, combined_headers


def handle(event: Mapping[str, Any], *, deadline: float) -> StreamingResult:
    """Answer one API Gateway proxy event; never raises (errors become answers)."""
    method = str(event.get("httpMethod") or "GET").upper()
    path = str(event.get("path") or "/")
    headers = combined_headers(event.get("headers") or {}, event.get("multiValueHeaders"))
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    context = event.get("requestContext") or {}
    route = find(method, path, streamed=True)
    if route is None:
        error = unknown_route(method, path)
        request_id = str(context.get("requestId") or uuid.uuid4().hex)
        return json_answer(error.to_body(), 404, {"x-request-id": request_id})
    request = HttpRequest(
        method=method,
        headers=headers,
        body=body,
        query=dict(event.get("queryStringParameters") or {}),
        params=dict(event.get("pathParameters") or {}),
        path=context.get("path"),
        gateway_request_id=context.get("requestId"),
        deadline=deadline,
    )
    result = answer(route, request)
    if isinstance(result, StreamingResult):
        return result
    return json_answer(result.body, result.status, result.headers)


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> StreamingResult:
    """A whole JSON body as a one-chunk ``StreamingResult``."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return StreamingResult.whole(status, {"Content-Type": "application/json", **(headers or {})}, data)
