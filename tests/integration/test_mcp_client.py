"""The official MCP Python SDK client against ``/mcp`` on the running local stack.

Each test has a hard timeout: a transport that waits for an SSE stream or a
session that never comes must fail the test, not stall the suite.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import anyio
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def mcp_url(dev_info: dict[str, Any]) -> str:
    return dev_info["mcp_url"]


def with_session(url: str, key: str, body: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``body(session)`` in an initialised SDK session (streamable HTTP, bearer key)."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def main() -> Any:
        with anyio.fail_after(45):
            async with (
                create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http,
                streamable_http_client(url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                result = await session.initialize()
                assert result.server_info.name == "pennyworth"
                return await body(session)

    return anyio.run(main)


def test_connect_list_and_call_every_tool(dev_info) -> None:
    async def body(session) -> dict[str, Any]:
        tools = await session.list_tools()
        out: dict[str, Any] = {"tools": {tool.name for tool in tools.tools}}
        await session.send_ping()
        for name, arguments in [
            ("list_models", {}),
            ("chat", {"prompt": "Hello over MCP", "max_tokens": 50}),
            ("embed", {"input": ["alpha beta gamma", "delta epsilon zeta eta"], "dimensions": 256}),
            ("count_tokens", {"text": "How many tokens is this?", "model": "nova-micro"}),
        ]:
            out[name] = await session.call_tool(name, arguments)
        for _ in range(100):  # usage trails billing by the aggregator's delay (a fraction of a second locally)
            out["get_usage"] = await session.call_tool("get_usage", {})
            if (out["get_usage"].structured_content or {}).get("usage", {}).get("requests", 0) >= 2:
                break
            await anyio.sleep(0.2)
        out["bad"] = await session.call_tool("chat", {"prompt": "x", "temperature": 5})
        out["throttled"] = await session.call_tool("chat", {"prompt": "x #emulator:throttle"})
        return out

    out = with_session(mcp_url(dev_info), dev_info["api_key"], body)
    assert out["tools"] == {"chat", "list_models", "embed", "get_usage", "count_tokens"}
    for name in ("list_models", "chat", "embed", "count_tokens", "get_usage"):
        result = out[name]
        assert not result.is_error, (name, result)
        # The SDK has checked structured_content against each tool's outputSchema.
        assert result.structured_content and result.content[0].type == "text"
    assert out["chat"].content[0].text == 'You said: "Hello over MCP"'
    assert Decimal(out["chat"].structured_content["cost_usd"]) > 0
    assert {m["id"] for m in out["list_models"].structured_content["models"]} >= {"nova-micro", "titan-embed-text-v2"}
    assert out["embed"].structured_content["dimensions"] == 256
    assert out["count_tokens"].structured_content["input_tokens"] > 0
    assert out["get_usage"].structured_content["usage"]["requests"] >= 2  # the chat and embed calls just billed
    assert out["bad"].is_error and "temperature" in out["bad"].content[0].text
    assert out["throttled"].is_error and "429" in out["throttled"].content[0].text


def test_a_wrong_key_fails_the_connection_instead_of_hanging(dev_info) -> None:
    async def body(session) -> None:
        raise AssertionError("a session opened with a wrong key")

    with pytest.raises(Exception) as caught:  # noqa: B017, PT011 - the SDK wraps the 401 in its own types
        with_session(mcp_url(dev_info), "pw-aaaaaaaaaaaa-" + "A" * 40, body)
    assert "AssertionError" not in repr(caught.value)


def test_the_high_level_client_negotiates_down_from_the_newest_protocol(dev_info) -> None:
    # Client(mode="auto") first probes a post-2025 protocol, then falls back to initialize.
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def main() -> tuple[str, str]:
        with anyio.fail_after(45):
            headers = {"Authorization": f"Bearer {dev_info['api_key']}"}
            async with (
                create_mcp_http_client(headers=headers) as http,
                Client(streamable_http_client(mcp_url(dev_info), http_client=http)) as client,
            ):
                result = await client.call_tool("chat", {"prompt": "via Client"})
                return client.protocol_version, result.content[0].text

    version, text = anyio.run(main)
    assert version == "2025-11-25" and text == 'You said: "via Client"'


def test_raw_posts_behave_like_a_stateless_server(dev_info) -> None:
    import urllib.error
    import urllib.request

    def send(method: str, payload: Any = None, accept: str = "application/json") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(
            mcp_url(dev_info),
            method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={
                "Authorization": f"Bearer {dev_info['api_key']}",
                "Content-Type": "application/json",
                "Accept": accept,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, headers, body = send("POST", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, accept="text/event-stream")
    assert status == 200 and headers["Content-Type"].startswith("application/json") and json.loads(body)["result"] == {}
    assert not any(name.lower() == "mcp-session-id" for name in headers)
    assert send("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"})[0] == 202
    assert send("GET")[0] == 405 and send("DELETE")[0] == 405
