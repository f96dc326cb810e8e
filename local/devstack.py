"""The local stack: moto server, the Bedrock emulator and ``chalice local``, wired together.

``make dev`` runs ``python -m local.devstack`` in the foreground; the
integration tests use ``DevStack`` as a context manager on free ports.
Everything runs on loopback and stops together (Ctrl-C, a crash of any child,
or the launcher being killed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local import bootstrap

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_DIR / ".pennyworth"
REGION = "us-east-1"
ADMIN_EMAIL = "admin@pennyworth.local"
STAGE = "local"
TABLE_NAMES = {
    "KeysTable": "pennyworth-local-keys",
    "UsageTable": "pennyworth-local-usage",
    "AuditTable": "pennyworth-local-audit",
}
PORT_ENV = {"api": "PENNYWORTH_PORT", "aws": "PENNYWORTH_AWS_PORT", "bedrock": "PENNYWORTH_BEDROCK_PORT"}
DEFAULT_PORTS = {"api": 8000, "aws": 8001, "bedrock": 8002}


class StackError(RuntimeError):
    """The stack could not start; the message says what to do."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of the three servers."""

    api: int
    aws: int
    bedrock: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Ports:
        env = os.environ if environ is None else environ
        values = {}
        for name, variable in PORT_ENV.items():
            raw = env.get(variable) or str(DEFAULT_PORTS[name])
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise StackError(f"{variable}={raw!r} is not a port number (1-65535).")
            values[name] = int(raw)
        return cls(**values)

    @classmethod
    def free(cls) -> Ports:
        """Three currently free ports (tests run beside a developer's ``make dev``)."""
        sockets = [socket.socket() for _ in range(3)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            api, aws, bedrock = (sock.getsockname()[1] for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()
        return cls(api=api, aws=aws, bedrock=bedrock)


@dataclass
class DevStack:
    """Starts and stops the three servers and bootstraps a user pool, an admin and a key."""

    ports: Ports
    host: str = "127.0.0.1"
    log_dir: Path = STATE_DIR / "logs"
    api_output: IO[Any] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: How long a streamed answer may take (the streaming function's timeout on AWS).
    stream_timeout: float = 300.0
    info: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _logs: list[IO[Any]] = field(default_factory=list)

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.ports.aws}"

    @property
    def bedrock_url(self) -> str:
        return f"http://{self.host}:{self.ports.bedrock}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.ports.api}"

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> dict[str, Any]:
        """Start everything; return the connection details also written to dev.json."""
        for name in ("api", "aws", "bedrock"):
            _ensure_free(self.host, getattr(self.ports, name), PORT_ENV[name])
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("aws", [sys.executable, "-m", "local.moto_server", "-H", self.host, "-p", str(self.ports.aws)])
            self._spawn(
                "bedrock",
                [
                    sys.executable,
                    "-m",
                    "local.bedrock_emulator",
                    "--host",
                    self.host,
                    "--port",
                    str(self.ports.bedrock),
                ],
            )
            _wait_http(f"{self.aws_url}/moto-api/", self._processes["aws"], "moto server")
            _wait_http(f"{self.bedrock_url}/ping", self._processes["bedrock"], "Bedrock emulator")
            self._bootstrap()
            # chalice local serves the buffered routes on a private port; the front (API Gateway's
            # part) answers the streaming routes itself, as they stream on AWS, and proxies the rest.
            chalice_port = _free_port(self.host)
            command = [sys.executable, "-m", "local.chalice_local", "local", "--stage", STAGE]
            command += ["--host", self.host, "--port", str(chalice_port)]
            # No autoreload: chalice's watcher polls every file under the project
            # (.venv included) and restarts on any change, e.g. each line moto
            # logs, dropping requests mid-flight. Restart make dev after editing.
            command.append("--no-autoreload")
            self._spawn("chalice", command, output=self.api_output)
            front = [sys.executable, "-m", "local.front", "--host", self.host, "--port", str(self.ports.api)]
            front += ["--upstream", f"http://{self.host}:{chalice_port}", "--timeout", str(self.stream_timeout)]
            self._spawn("api", front, output=self.api_output)
            _wait_http(f"http://{self.host}:{chalice_port}/health", self._processes["chalice"], "chalice local", 60)
            _wait_http(f"{self.api_url}/health", self._processes["api"], "the local front", timeout=60)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _bootstrap(self) -> None:
        import boto3

        aws = {
            "region_name": REGION,
            "endpoint_url": self.aws_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        bootstrap.create_tables(boto3.client("dynamodb", **aws), TABLE_NAMES)
        cognito = boto3.client("cognito-idp", **aws)
        pool = bootstrap.create_user_pool(cognito, "pennyworth-local-users")
        password = f"Pw1!{secrets.token_urlsafe(12)}"
        admin_sub = bootstrap.create_user(
            cognito, pool["user_pool_id"], ADMIN_EMAIL, password, groups=(bootstrap.ADMINS_GROUP,)
        )
        reports = bootstrap.create_report_topic(
            boto3.client("sns", **aws), boto3.client("sqs", **aws), "pennyworth-local-reports"
        )
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "PENNYWORTH_AWS_ENDPOINT_URL": self.aws_url,
            "PENNYWORTH_BEDROCK_ENDPOINT_URL": self.bedrock_url,
            "PENNYWORTH_KEYS_TABLE": TABLE_NAMES["KeysTable"],
            "PENNYWORTH_USAGE_TABLE": TABLE_NAMES["UsageTable"],
            "PENNYWORTH_AUDIT_TABLE": TABLE_NAMES["AuditTable"],
            "PENNYWORTH_COGNITO_USER_POOL_ID": pool["user_pool_id"],
            "PENNYWORTH_COGNITO_CLIENT_ID": pool["client_id"],
            "PENNYWORTH_REPORT_TOPIC_ARN": reports["topic_arn"],
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            **self.extra_env,
        }
        from chalicelib.keys.store import KeyStore

        table = boto3.resource("dynamodb", **aws).Table(TABLE_NAMES["KeysTable"])
        record, api_key = KeyStore(table).create(
            owner_sub=admin_sub, owner_email=ADMIN_EMAIL, name="make dev bootstrap key"
        )
        base_url = f"{self.api_url}/v1"
        self.info = {
            "base_url": base_url,
            "api_key": api_key,
            "key_id": record.key_id,
            "admin_username": ADMIN_EMAIL,
            "admin_password": password,
            "cognito": {
                "endpoint_url": self.aws_url,
                "region": REGION,
                "user_pool_id": pool["user_pool_id"],
                "client_id": pool["client_id"],
            },
            "aws_endpoint_url": self.aws_url,
            "bedrock_endpoint_url": self.bedrock_url,
            "mcp_url": f"{self.api_url}/mcp",
            "report_topic_arn": reports["topic_arn"],
            "report_inbox_url": reports["inbox_url"],
            "examples": examples(base_url, api_key),
        }

    def _spawn(self, name: str, command: list[str], output: IO[Any] | None = None) -> None:
        if output is None:
            output = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(output)
        self._processes[name] = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=self.env or {**os.environ, **self.extra_env},
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def dead_child(self) -> str | None:
        """The name of a server that has exited, if any."""
        return next((name for name, proc in self._processes.items() if proc.poll() is not None), None)

    def stop(self) -> None:
        """Stop every server (SIGTERM to its process group, then SIGKILL)."""
        for proc in self._processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self._processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def examples(base_url: str, api_key: str) -> dict[str, str]:
    """Ready-to-paste curl and openai-SDK commands for this stack."""
    body = '{"model": "nova-micro", "messages": [{"role": "user", "content": "Hello, pennyworth!"}]}'
    curl = (
        f"curl -s {base_url}/chat/completions -H 'Authorization: Bearer {api_key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    python = (
        "python -c 'from openai import OpenAI; "
        f'client = OpenAI(base_url="{base_url}", api_key="{api_key}"); '
        'print(client.chat.completions.create(model="nova-micro", '
        'messages=[{"role": "user", "content": "Hello, pennyworth!"}]).choices[0].message.content)\''
    )
    return {"curl": curl, "openai": python}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ensure_free(host: str, port: int, variable: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise StackError(
                f"Port {port} on {host} is already in use (is another 'make dev' running?). "
                f"Stop what uses it, or choose another port: {variable}=<port> make dev"
            ) from None


def _wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited during start-up (code {process.returncode}); see .pennyworth/logs/.")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise StackError(f"{what} did not answer at {url} within {timeout:.0f}s; see .pennyworth/logs/.")


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the launcher dies, so no orphaned servers.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _banner(info: dict[str, Any]) -> str:
    return "\n".join(
        [
            "",
            "pennyworth dev stack is up (Ctrl-C stops everything).",
            "",
            f"  Base URL   {info['base_url']}",
            f"  API key    {info['api_key']}",
            f"  Admin      {info['admin_username']}  /  {info['admin_password']}",
            f"  MCP        {info['mcp_url']}",
            "  Details    .pennyworth/dev.json",
            "",
            "Try it:",
            "",
            f"  {info['examples']['curl']}",
            "",
            f"  {info['examples']['openai']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run pennyworth's local stack until Ctrl-C.",
        epilog="Ports: PENNYWORTH_PORT (API, 8000), PENNYWORTH_AWS_PORT (moto, 8001), "
        "PENNYWORTH_BEDROCK_PORT (emulator, 8002).",
    )
    parser.parse_args(argv)
    try:
        ports = Ports.from_env()
        stack = DevStack(ports=ports, api_output=sys.stdout)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("Starting moto server, the Bedrock emulator and chalice local…", file=sys.stderr, flush=True)
        info = stack.start()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    STATE_DIR.mkdir(exist_ok=True)
    dev_json = STATE_DIR / "dev.json"
    dev_json.write_text(json.dumps(info, indent=2) + "\n")
    dev_json.chmod(0o600)
    print(_banner(info), flush=True)
    try:
        while (dead := stack.dead_child()) is None:
            time.sleep(0.5)
        print(f"error: {dead} stopped unexpectedly; see .pennyworth/logs/{dead}.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping…", file=sys.stderr)
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
