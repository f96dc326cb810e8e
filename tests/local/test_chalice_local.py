"""``chalice local`` as ``make dev`` runs it: API Gateway's answers for unknown routes and methods."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.config import Config
from chalice.local import LocalGateway

from local.chalice_local import openai_routing_errors

KEY = "pw-abcdefghijkl-" + "S" * 40


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> LocalGateway:
    monkeypatch.setattr(LocalGateway, "handle_request", LocalGateway.handle_request)  # undone after the test
    openai_routing_errors()
    from app import app

    return LocalGateway(app, Config())


def error_of(response: dict[str, Any], status: int) -> dict[str, Any]:
    assert response["statusCode"] == status, response
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert KEY not in response["body"] and "Authorization" not in response["body"]
    return body["error"]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/completions?x=1", "/nothing/here", "/admin/keys/a/b/c"])
def test_unknown_routes_are_openai_404s_that_never_echo_the_key(gateway: LocalGateway, path: str) -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    error = error_of(gateway.handle_request("POST", path, headers, b"{}"), 404)
    assert error["code"] == "unknown_url" and error["type"] == "invalid_request_error"
    assert path.split("?")[0] in error["message"]


def test_a_wrong_method_is_an_openai_405_with_allow(gateway: LocalGateway) -> None:
    response = gateway.handle_request("DELETE", "/v1/models", {"authorization": f"Bearer {KEY}"}, None)
    error = error_of(response, 405)
    assert error["code"] == "method_not_allowed"
    assert response["headers"]["Allow"] == "GET"


def test_known_routes_still_reach_the_app(gateway: LocalGateway) -> None:
    response = gateway.handle_request("GET", "/health", {}, None)
    assert response["statusCode"] == 200


@pytest.mark.parametrize(
    ("method", "path", "suggested"),
    [
        ("POST", "/v1/chat/completion", "POST /v1/chat/completions"),
        ("POST", "/chat/completions", "POST /v1/chat/completions"),  # a base URL without /v1
        ("POST", "/v1/v1/chat/completions", "POST /v1/chat/completions"),  # /v1 twice
        ("GET", "/v1/model", "GET /v1/models"),
        ("POST", "/v1/embedding", "POST /v1/embeddings"),
    ],
)
def test_an_unknown_route_names_the_nearest_one(gateway: LocalGateway, method: str, path: str, suggested: str) -> None:
    error = error_of(gateway.handle_request(method, path, {"content-type": "application/json"}, b"{}"), 404)
    assert f"Did you mean {suggested}?" in error["message"], error["message"]
    assert "GET /openapi.json" in error["message"]


def test_a_route_nothing_is_near_gets_no_guess(gateway: LocalGateway) -> None:
    error = error_of(gateway.handle_request("GET", "/wp-admin/setup.php", {}, None), 404)
    assert "Did you mean" not in error["message"]


def test_path_parameters_reach_the_app_decoded_as_api_gateway_passes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalice.local import LambdaEventConverter, RouteMatcher

    from local.chalice_local import decoded_path_parameters

    monkeypatch.setattr(LambdaEventConverter, "create_lambda_event", LambdaEventConverter.create_lambda_event)
    decoded_path_parameters()
    converter = LambdaEventConverter(RouteMatcher(["/admin/teams/{team}/members/{person}"]))
    event = converter.create_lambda_event("DELETE", "/admin/teams/Platform%20Eng/members/a%40example.com", {})
    assert event["pathParameters"] == {"team": "Platform Eng", "person": "a@example.com"}
