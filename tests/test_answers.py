"""The one error translation: what a route raises becomes its protocol's error answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from chalicelib.edge.answers import answer
from chalicelib.edge.endpoint import Endpoint
from chalicelib.shared.http import HttpRequest


def _answer_to(exc: BaseException, envelope: str = "openai") -> Any:
    def serve(_request: HttpRequest) -> Any:
        raise exc

    route = Endpoint("GET", "/admin/usage", "usage", "admin", name="admin_usage", serve=serve, envelope=envelope)
    return answer(route, HttpRequest(method="GET", headers={}, deadline=None))


@pytest.mark.parametrize(
    "exc",
    [
        ReadTimeoutError(endpoint_url="http://dynamodb"),
        EndpointConnectionError(endpoint_url="http://dynamodb"),
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "Query"),
        ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "AdminGetUser"),
    ],
    ids=["read-timeout", "no-connection", "dynamodb-throttled", "cognito-throttled"],
)
def test_a_data_store_that_did_not_answer_is_a_retryable_503(exc: BaseException) -> None:
    result = _answer_to(exc)
    body = json.loads(json.dumps(result.body))
    assert result.status == 503 and body["error"]["code"] == "store_unavailable", body
    assert result.headers["Retry-After"] == "1" and result.headers["x-request-id"]
    # Nothing of the AWS error (endpoints, table names) reaches the caller.
    assert "dynamodb" not in json.dumps(body).lower()


@pytest.mark.parametrize(
    "exc",
    [
        ParamValidationError(report="Invalid type for parameter Key"),
        ClientError({"Error": {"Code": "ValidationException", "Message": "bad key"}}, "GetItem"),
        ValueError("a bug"),
    ],
    ids=["param-validation", "validation", "plain-bug"],
)
def test_a_bug_stays_a_500_without_details(exc: BaseException) -> None:
    result = _answer_to(exc)
    assert result.status == 500
    assert "bad key" not in json.dumps(result.body) and "Invalid type" not in json.dumps(result.body)


def test_anthropic_routes_get_the_503_in_their_envelope() -> None:
    result = _answer_to(ReadTimeoutError(endpoint_url="http://dynamodb"), envelope="anthropic")
    assert result.status == 503 and result.body["type"] == "error"
