"""API Gateway proxy event → the streaming route it names → a ``StreamingResult``.

The event is API Gateway's REST proxy payload (format 1.0): ``httpMethod``,
``path``, ``headers``, ``body``, ``isBase64Encoded``. ``deadline`` is the Unix
time (seconds) by which the whole answer must be out: Lambda's invocation
deadline on AWS, the configured function timeout locally.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from typing import Any

from chalicelib import errors
from chalicelib.observability import logger
from chalicelib.shared.http import StreamingResult
from chalicelib.streaming.routes import find_route


def handle(event: Mapping[str, Any], *, deadline: float) -> StreamingResult:
    """Answer one API Gateway proxy event; never raises (errors become answers)."""
    method = str(event.get("httpMethod") or "GET").upper()
    path = str(event.get("path") or "/")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    route = find_route(method, path)
    if route is None:
        error: errors.AppError = errors.NotFound(f"Unknown request URL: {method} {path}.", code="unknown_url")
        return json_answer(error.to_body(), 404, {"x-request-id": request_id_of(event, error)})
    try:
        return route.handler(headers, body, deadline)
    except errors.AppError as exc:
        error = exc
        extra = {"route": route.name, "status": exc.status_code, "error_code": exc.code, **exc.context}
        logger.info("request failed", extra=extra)
    except Exception:
        logger.exception("unhandled error", extra={"route": route.name})
        error = errors.InternalError("The gateway hit an internal error; it has been logged.")
    # The id goes on the error before it is rendered: protocols whose envelope or headers repeat it
    # (Anthropic's request_id) then name the same request as x-request-id, refused before the model call or not.
    error.headers["x-request-id"] = request_id_of(event, error)
    body = route.error_body(error)
    return json_answer(body, error.status_code, error.headers)


def request_id_of(event: Mapping[str, Any], error: errors.AppError) -> str:
    """The id a caller quotes when asking about a failed request: the model call's, else API Gateway's."""
    known = error.headers.get("x-request-id")
    if known:
        return known
    context = event.get("requestContext") or {}
    return str(context.get("requestId") or uuid.uuid4().hex)


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> StreamingResult:
    """A whole JSON body as a one-chunk ``StreamingResult``."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return StreamingResult(status, {"Content-Type": "application/json", **(headers or {})}, iter([data]))
