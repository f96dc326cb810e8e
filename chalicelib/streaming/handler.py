"""API Gateway proxy event → the streaming route it names → a ``StreamingResult``.

The event is API Gateway's REST proxy payload (format 1.0): ``httpMethod``,
``path``, ``headers``, ``body``, ``isBase64Encoded``. ``deadline`` is the Unix
time (seconds) by which the whole answer must be out: Lambda's invocation
deadline on AWS, the configured function timeout locally.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from chalicelib import errors
from chalicelib.core.http import StreamingResult
from chalicelib.observability import logger
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
        return json_answer(errors.NotFound(f"Unknown request URL: {method} {path}.").to_body(), 404)
    try:
        return route.handler(headers, body, deadline)
    except errors.AppError as exc:
        extra = {"route": route.name, "status": exc.status_code, "error_code": exc.code, **exc.context}
        logger.info("request failed", extra=extra)
        return json_answer(route.error_body(exc), exc.status_code, exc.headers)
    except Exception:
        logger.exception("unhandled error", extra={"route": route.name})
        error = errors.InternalError("The gateway hit an internal error; it has been logged.")
        return json_answer(route.error_body(error), error.status_code)


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> StreamingResult:
    """A whole JSON body as a one-chunk ``StreamingResult``."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return StreamingResult(status, {"Content-Type": "application/json", **(headers or {})}, iter([data]))
