"""pennyworth's Chalice app: the buffered routes of the one route table, and three scheduled handlers.

Every route is a row of ``chalicelib/edge/routes.py: ROUTES`` (where it is, who may call it,
what serves it, how it is described); the streaming function serves the streamed rows, this
app registers the others, one Chalice route each, through one view: it hands the request to
``chalicelib.edge.answers.answer``, which calls the row's ``serve`` and translates every error
(an ``AppError`` into its envelope and status; anything else, logged, into a 500 without
details). ``tests/test_architecture.py`` checks that what Chalice registered is the table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Chalice, CognitoUserPoolAuthorizer, Cron, Rate, Response

from chalicelib import wiring
from chalicelib.edge.answers import answer
from chalicelib.edge.endpoint import Endpoint
from chalicelib.edge.routes import ROUTES
from chalicelib.settings import get_settings
from chalicelib.shared.http import HttpRequest, combined_headers

app = Chalice(app_name="pennyworth")
# API Gateway checks the Cognito token of /admin routes in AWS; the app checks it again
# (chalicelib/admin/auth.py) because chalice local and the test client skip authorizers.
ADMIN_AUTH = CognitoUserPoolAuthorizer(
    "PennyworthAdmins", provider_arns=[get_settings().cognito_user_pool_arn], header="Authorization"
)
# Any body type reaches a view that reads one, so a wrong Content-Type gets the route's error, not Chalice's 415.
ANY_BODY = ["*/*"]


def view(route: Endpoint) -> Callable[..., Response]:
    """The Chalice view of one route: the request as ``HttpRequest``, the answer as ``Response``."""

    def serve(**params: str) -> Response:
        current = app.current_request
        context = current.context or {}
        request = HttpRequest(
            method=current.method,
            headers=combined_headers(current.headers, current.to_original_event().get("multiValueHeaders")),
            body=current.raw_body,
            query=dict(current.query_params or {}),
            params=params,
            path=context.get("path"),
            gateway_request_id=context.get("requestId"),
        )
        result = answer(route, request)
        return Response(body=result.body, status_code=result.status, headers=result.headers)

    serve.__name__ = route.name
    return serve


for _route in ROUTES:
    if not _route.streamed:
        _options: dict[str, Any] = {"methods": [_route.method], "name": _route.name}
        if _route.auth == "cognito":
            _options["authorizer"] = ADMIN_AUTH
        if _route.any_content_type:
            _options["content_types"] = ANY_BODY
        app.route(_route.path, **_options)(view(_route))


@app.schedule(Cron(0, 6, "*", "*", "?", "*"), name="daily_cost_report")
def daily_cost_report(event: Any) -> dict[str, Any]:
    """Every day at 06:00 UTC: yesterday's cost report (idempotent; safe to retry)."""
    return wiring.report_service().run_day()


@app.schedule(Rate(5, unit=Rate.MINUTES), name="people_sweep")
def people_sweep(event: Any) -> dict[str, Any]:
    """Every 5 minutes: off-board people disabled or deleted in Cognito directly (chalicelib/admin/people.py)."""
    return wiring.people_service().sweep()


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
