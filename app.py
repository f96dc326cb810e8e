"""pennyworth's routes. Each parses the request, calls one chalicelib function, returns.

Errors are translated once, by ``openai_errors``: a raised ``AppError`` becomes
its OpenAI envelope and status; anything else is logged and becomes a 500
envelope without details (never a traceback).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from chalice import Chalice, CognitoUserPoolAuthorizer, Cron, Response

from chalicelib import wiring
from chalicelib.errors import AppError, InternalError
from chalicelib.observability import logger
from chalicelib.settings import get_settings
from chalicelib.shared.http import HttpResult

app = Chalice(app_name="pennyworth")
# Any body type reaches the view so a wrong Content-Type gets an OpenAI error, not Chalice's 415.
ANY_BODY = ["*/*"]


def openai_errors(view: Callable[..., HttpResult]) -> Callable[..., Response]:
    """Wrap a view: ``HttpResult`` → Response, ``AppError`` → OpenAI error envelope."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            result = view(*args, **kwargs)
        except AppError as exc:
            # The one log line of a refused or failed request (never the key or the prompt).
            extra = {"route": view.__name__, "status": exc.status_code, "error_code": exc.code, **exc.context}
            logger.info("request failed", extra=extra)
            error = exc
        except Exception:
            logger.exception("unhandled error")
            error = InternalError("The gateway hit an internal error; it has been logged.")
        else:
            return Response(body=result.body, status_code=result.status, headers=result.headers)
        headers = {**error.headers, "x-request-id": error.headers.get("x-request-id") or _request_id()}
        return Response(body=error.to_body(), status_code=error.status_code, headers=headers)

    return wrapper


def _request_id() -> str:
    # API Gateway's own id for the request (in its logs too); chalice local has none.
    context = getattr(app.current_request, "context", None) or {}
    return str(context.get("requestId") or uuid.uuid4().hex)


@app.route("/health", methods=["GET"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.route("/openapi.json", methods=["GET"])
def openapi_document() -> dict[str, Any]:
    """This API as OpenAPI 3.1 (chalicelib/edge/openapi.py; also docs/openapi.json)."""
    from chalicelib.edge import openapi  # only this route needs it

    return openapi.document()


@app.route("/v1/models", methods=["GET"])
@openai_errors
def list_models() -> HttpResult:
    return wiring.openai_service().list_models(app.current_request.headers)


@app.route("/v1/models/{model_id}", methods=["GET"])
@openai_errors
def get_model(model_id: str) -> HttpResult:
    return wiring.openai_service().get_model(app.current_request.headers, model_id)


@app.route("/v1/key", methods=["GET"])
@openai_errors
def key_status() -> HttpResult:
    return wiring.openai_service().key_status(app.current_request.headers)


@app.route("/v1/embeddings", methods=["POST"], content_types=ANY_BODY)
@openai_errors
def embeddings() -> HttpResult:
    request = app.current_request
    return wiring.openai_service().embeddings(request.headers, request.raw_body)


# MCP (Streamable HTTP, stateless). GET and DELETE are declared so they get the endpoint's
# 405 rather than API Gateway's 403; JSON-RPC errors are answered by chalicelib/protocols/mcp.py itself.
@app.route("/mcp", methods=["POST", "GET", "DELETE"], content_types=ANY_BODY)
@openai_errors
def mcp() -> HttpResult:
    request = app.current_request
    return wiring.mcp_server().handle(request.method, request.headers, request.raw_body)


@app.schedule(Cron(0, 6, "*", "*", "?", "*"), name="daily_cost_report")
def daily_cost_report(event: Any) -> dict[str, Any]:
    """Every day at 06:00 UTC: yesterday's cost report (idempotent; safe to retry)."""
    return wiring.report_service().run_day()


# The usage table's stream → the usage aggregates, exactly once (chalicelib/accounting/aggregator.py).
# infra/template.json completes the event source: the real stream, a tumbling window (for shardId),
# filtering, retries and the failure destination.
@app.on_dynamodb_record(
    stream_arn=get_settings().usage_stream_arn,
    batch_size=10_000,
    starting_position="TRIM_HORIZON",
    name="ledger_aggregator",
    maximum_batching_window_in_seconds=4,
)
def ledger_aggregator(event: Any) -> dict[str, Any]:
    return wiring.aggregator().handle(event.to_dict(), remaining_ms=event.context.get_remaining_time_in_millis)


# Admin API: key lifecycle. API Gateway checks the Cognito token in AWS; the app checks it
# again (chalicelib/admin/auth.py) because chalice local and the test client skip authorizers.
ADMIN_AUTH = CognitoUserPoolAuthorizer(
    "PennyworthAdmins", provider_arns=[get_settings().cognito_user_pool_arn], header="Authorization"
)


def _query() -> dict[str, str]:
    return dict(app.current_request.query_params or {})


@app.route("/admin/keys", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_create_key() -> HttpResult:
    request = app.current_request
    return wiring.admin_service().create_key(request.headers, request.raw_body)


@app.route("/admin/keys", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_list_keys() -> HttpResult:
    return wiring.admin_service().list_keys(app.current_request.headers, _query())


@app.route("/admin/models", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_list_models() -> HttpResult:
    return wiring.admin_service().list_models(app.current_request.headers)


@app.route("/admin/keys/import", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_import_keys() -> HttpResult:
    request = app.current_request
    return wiring.admin_service().import_keys(request.headers, request.raw_body)


@app.route("/admin/keys/export", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_export_keys() -> HttpResult:
    return wiring.admin_service().export_keys(app.current_request.headers, _query())


@app.route("/admin/keys/{key_id}", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_get_key(key_id: str) -> HttpResult:
    return wiring.admin_service().get_key(app.current_request.headers, key_id)


@app.route("/admin/keys/{key_id}", methods=["PATCH"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_update_key(key_id: str) -> HttpResult:
    request = app.current_request
    return wiring.admin_service().update_key(request.headers, key_id, request.raw_body)


@app.route("/admin/keys/{key_id}/revoke", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_revoke_key(key_id: str) -> HttpResult:
    request = app.current_request
    return wiring.admin_service().revoke_key(request.headers, key_id, request.raw_body)


@app.route("/admin/keys/{key_id}/rotate", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_rotate_key(key_id: str) -> HttpResult:
    request = app.current_request
    return wiring.admin_service().rotate_key(request.headers, key_id, request.raw_body)


@app.route("/admin/keys/{key_id}/audit", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_key_audit(key_id: str) -> HttpResult:
    return wiring.admin_service().key_audit(app.current_request.headers, key_id, _query())


@app.route("/admin/audit", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_audit() -> HttpResult:
    return wiring.admin_service().audit(app.current_request.headers, _query())


# Admin API: accounting (usage reports, owner budgets, the daily report on demand, reconcile).


@app.route("/admin/usage", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_usage() -> HttpResult:
    return wiring.accounting_service().usage(app.current_request.headers, _query())


@app.route("/admin/owners/{owner}/budget", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_owner_budget(owner: str) -> HttpResult:
    return wiring.accounting_service().owner_budget(app.current_request.headers, owner)


@app.route("/admin/owners/{owner}/budget", methods=["PUT"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_set_owner_budget(owner: str) -> HttpResult:
    request = app.current_request
    return wiring.accounting_service().set_owner_budget(request.headers, owner, request.raw_body)


@app.route("/admin/reports/daily", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_run_report() -> HttpResult:
    request = app.current_request
    return wiring.accounting_service().run_report(request.headers, request.raw_body)


@app.route("/admin/reports/daily/{day}", methods=["GET"], authorizer=ADMIN_AUTH)
@openai_errors
def admin_get_report(day: str) -> HttpResult:
    return wiring.accounting_service().get_report(app.current_request.headers, day)


@app.route("/admin/ledger/reconcile", methods=["POST"], authorizer=ADMIN_AUTH, content_types=ANY_BODY)
@openai_errors
def admin_reconcile() -> HttpResult:
    request = app.current_request
    return wiring.accounting_service().reconcile(request.headers, request.raw_body)


# The web console: a static page and its assets, public (the JSON API above checks every call).


@app.route("/console", methods=["GET"])
@openai_errors
def console_page() -> HttpResult:
    return wiring.console_site().page(app.current_request.context.get("path"))


@app.route("/console/{asset}", methods=["GET"])
@openai_errors
def console_asset(asset: str) -> HttpResult:
    return wiring.console_site().asset(asset)
