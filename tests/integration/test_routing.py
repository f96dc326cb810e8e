"""Unknown routes and wrong methods on the running stack: OpenAI envelopes, never an echoed header."""

from __future__ import annotations

from typing import Any

import pytest
import requests


def call(dev_info: dict[str, Any], method: str, path: str) -> requests.Response:
    root = dev_info["base_url"].removesuffix("/v1")
    headers = {"Authorization": f"Bearer {dev_info['api_key']}", "Content-Type": "application/json"}
    return requests.request(method, f"{root}{path}", headers=headers, data="{}", timeout=30)


def openai_error(response: requests.Response, status: int, dev_info: dict[str, Any]) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert dev_info["api_key"] not in response.text and "Authorization" not in response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/completions"), ("GET", "/v1/nothing"), ("PUT", "/x")])
def test_unknown_routes_are_404s(dev_info: dict[str, Any], method: str, path: str) -> None:
    assert openai_error(call(dev_info, method, path), 404, dev_info)["code"] == "unknown_url"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/v1/chat/completions", "POST"), ("DELETE", "/v1/models", "GET"), ("PUT", "/admin/keys", "GET, POST")],
)
def test_wrong_methods_are_405s_with_allow(dev_info: dict[str, Any], method: str, path: str, allowed: str) -> None:
    response = call(dev_info, method, path)
    assert openai_error(response, 405, dev_info)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == allowed
