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


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions"])
def test_two_keys_in_repeated_headers_are_refused_by_the_front_and_chalice_local(
    stack: Any, dev_info: dict[str, Any], path: str
) -> None:
    # GIVEN two valid keys of two owners, sent as two Authorization headers (as a buggy proxy might)
    import http.client
    import json
    from urllib.parse import urlsplit

    from tests.integration import stack_data

    _, other = stack_data.new_key(stack, "someone-else", name="other")
    url = urlsplit(dev_info["base_url"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    body = json.dumps({"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]})
    connection.putrequest("POST" if path.endswith("completions") else "GET", path)
    connection.putheader("Authorization", f"Bearer {dev_info['api_key']}")
    connection.putheader("Authorization", f"Bearer {other}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body.encode())
    response = connection.getresponse()
    # THEN neither key is guessed: the request is refused as ambiguous
    error = json.loads(response.read())["error"]
    assert response.status == 401 and error["code"] == "ambiguous_api_key", error
