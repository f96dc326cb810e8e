from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from local import devstack
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


def test_two_stacks_cannot_share_one_saved_state(tmp_path: Path) -> None:
    # GIVEN a stack holding a state directory
    state = tmp_path / "state"
    first = DevStack(ports=Ports.free(), log_dir=tmp_path / "logs", state_dir=state)
    first.lock_state()
    (state / "aws.pickle").parent.mkdir(parents=True)
    (state / "aws.pickle").write_bytes(b"the first stack's")
    try:
        # WHEN a second stack (other ports) starts on the same state
        second = DevStack(ports=Ports.free(), log_dir=tmp_path / "logs", state_dir=state)
        with pytest.raises(StackError, match="Another 'make dev' is using") as refused:
            second.start()
        # THEN it says which stack holds it, and started nothing
        assert f"pid {os.getpid()}, API at {first.api_url}" in str(refused.value)
        assert second.dead_child() is None and not second._processes
        assert (state / "aws.pickle").read_bytes() == b"the first stack's"
    finally:
        first.stop()
    # AND once the first stops, the state is free
    second.lock_state()
    second.stop()


def test_make_dev_fresh_never_deletes_the_state_of_a_running_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (devstack.PROJECT_DIR / "build").mkdir(exist_ok=True)  # main() names the state relative to the project
    scratch = Path(tempfile.mkdtemp(prefix="fresh-", dir=devstack.PROJECT_DIR / "build"))
    try:
        state = scratch / "state"
        state.mkdir()
        (state / "aws.pickle").write_bytes(b"in use")
        monkeypatch.setattr(devstack, "LOCAL_STATE_DIR", state)
        running = DevStack(ports=Ports.free(), state_dir=state)
        running.lock_state()
        try:
            assert devstack.main(["--fresh"]) == 1
        finally:
            running.stop()
        assert (state / "aws.pickle").read_bytes() == b"in use"
        assert "Another 'make dev' is using" in capsys.readouterr().err
    finally:
        shutil.rmtree(scratch)


@pytest.mark.integration
def test_make_devs_output_names_the_address_to_use_not_chalice_locals(tmp_path: Path) -> None:
    output = (tmp_path / "out.txt").open("w+b")
    with DevStack(ports=Ports.free(), log_dir=tmp_path / "logs", api_output=output) as stack:
        shown = (tmp_path / "out.txt").read_text()
        assert f"Serving on {stack.api_url} " in shown
        assert f":{stack.chalice_port}" not in shown and shown.count("Serving on") == 1
    output.close()
