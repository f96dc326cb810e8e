"""A request's answer, and the one error translation every entry point uses.

``answer`` calls the route; whatever it raises becomes the route protocol's error
envelope with the error's status: an ``AppError`` is the request's one log line
("request failed", never the key or the prompt); anything else is logged with its
traceback and becomes a 500 ``InternalError`` without details (never a traceback).
The Chalice app turns the ``HttpResult`` into its ``Response``; the streaming function
sends it as a one-chunk JSON body.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from chalicelib import errors
from chalicelib.edge.endpoint import Endpoint
from chalicelib.observability import logger
from chalicelib.protocols.anthropic.render import error_body as anthropic_error_body
from chalicelib.protocols.anthropic.render import for_anthropic_clients
from chalicelib.settings import get_settings
from chalicelib.shared.http import HttpRequest, HttpResult, StreamingResult


def answer(route: Endpoint, request: HttpRequest) -> HttpResult | StreamingResult:
    """The route's answer to ``request``, or its error envelope; never raises.

    Every request has one deadline: the streaming function's comes from Lambda; a buffered
    route's is ``PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS`` from now, inside API Gateway's 29 s.
    """
    assert route.serve is not None, route.name
    if request.deadline is None:
        request = dataclasses.replace(request, deadline=time.time() + get_settings().upstream_timeout_seconds)
    try:
        return route.serve(request)
    except errors.AppError as exc:
        # The one log line of a refused or failed request (never the key or the prompt).
        extra = {"route": route.name, "status": exc.status_code, "error_code": exc.code, **exc.context}
        logger.info("request failed", extra=extra)
        error = exc
    except Exception as exc:
        unavailable = store_unavailable(exc)
        if unavailable is not None:
            logger.warning("data store unavailable", extra={"route": route.name, "reason": str(exc)[:300]})
            error = unavailable
        else:
            logger.exception("unhandled error", extra={"route": route.name})
            error = errors.InternalError("The gateway hit an internal error; it has been logged.")
    return failure(error, route.envelope, request.gateway_request_id)


#: AWS error codes that mean "not now", not "wrong": DynamoDB's (and Cognito's) throttles and outages.
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalErrorException",
        "ServiceUnavailable",
    }
)


def store_unavailable(exc: BaseException) -> errors.AppError | None:
    """A retryable 503 for an AWS call that timed out, could not connect or was throttled; else None.

    Such a failure on a read (an admin's usage report, a key listing) says nothing is wrong with
    the request: the caller may retry, and is told so, instead of getting a 500.
    """
    if not type(exc).__module__.startswith("botocore"):
        return None
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BrokenConnection

    # Timeouts and broken connections only: a ParamValidationError, say, is a bug and stays a 500.
    transient = isinstance(exc, (BrokenConnection, HTTPClientError)) or (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
    )
    if not transient:
        return None
    return errors.ServiceUnavailable(
        "A data store the gateway reads did not answer in time; nothing was changed. Retry shortly.",
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


def failure(error: errors.AppError, envelope: str, gateway_request_id: str | None) -> HttpResult:
    """``error`` as the ``envelope`` protocol's error answer, naming the request it failed.

    The id goes on the error before it is rendered: protocols whose envelope or headers
    repeat it (Anthropic's ``request_id``) then name the same request as ``x-request-id``,
    refused before the model call or not. It is the model call's id when there was one,
    else API Gateway's (in its logs too), else a new one.
    """
    error.headers["x-request-id"] = error.headers.get("x-request-id") or gateway_request_id or uuid.uuid4().hex
    return HttpResult(error_body(error, envelope), status=error.status_code, headers=error.headers)


def error_body(error: errors.AppError, envelope: str) -> Any:
    """The error envelope of a protocol: OpenAI's (``errors.AppError.to_body``) or Anthropic's.

    Anthropic's also sets the headers Anthropic's SDKs act on (``request-id``, no retrying a spent budget).
    """
    if envelope == "anthropic":
        return anthropic_error_body(for_anthropic_clients(error))
    return error.to_body()
