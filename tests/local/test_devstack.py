from __future__ import annotations

import socket

import pytest

from local.devstack import DevStack, Ports, StackError, examples


def test_ports_come_from_the_environment_with_clear_errors() -> None:
    assert Ports.from_env({}) == Ports(api=8000, aws=8001, bedrock=8002)
    assert Ports.from_env({"PENNYWORTH_PORT": "9000"}).api == 9000
    with pytest.raises(StackError, match="PENNYWORTH_AWS_PORT"):
        Ports.from_env({"PENNYWORTH_AWS_PORT": "http"})


def test_a_busy_port_is_a_clear_message_not_a_traceback(tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = Ports.free()
        stack = DevStack(ports=Ports(api=port, aws=ports.aws, bedrock=ports.bedrock), log_dir=tmp_path)
        with pytest.raises(StackError, match=rf"Port {port} .* already in use.*PENNYWORTH_PORT=<port> make dev"):
            stack.start()


def test_examples_use_the_key_and_url() -> None:
    shown = examples("http://127.0.0.1:8000/v1", "pw-abc")
    assert "Bearer pw-abc" in shown["curl"] and 'base_url="http://127.0.0.1:8000/v1"' in shown["openai"]
