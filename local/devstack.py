"""The local stack: moto server, the Bedrock emulator and ``chalice local``, wired together.

A fourth process, ``local/stream_aggregator.py``, stands in for the aggregator
Lambda: it applies the usage table's stream to the usage aggregates every
quarter second, so ``pennyworth usage`` trails billing by about that much. A
fifth, ``local/people_sweep.py``, stands in for the people sweep's schedule.

``make dev`` runs ``python -m local.devstack`` in the foreground; the
integration tests use ``DevStack`` as a context manager on free ports.
Everything runs on loopback and stops together (Ctrl-C, a crash of any child,
or the launcher being killed).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from local import bootstrap, console_login
from local.bedrock_emulator.guardrails import DEMO_GUARDRAIL_ID

PROJECT_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_DIR / ".pennyworth"
#: What make dev keeps across restarts (make dev FRESH=1 deletes it).
LOCAL_STATE_DIR = STATE_DIR / "state"
REGION = "us-east-1"
ADMIN_EMAIL = "admin@pennyworth.local"
#: A user without admin rights, to see the console (and the API) as most key holders do.
USER_EMAIL = "user@pennyworth.local"
STAGE = "local"
TABLE_NAMES = {
    "KeysTable": "pennyworth-local-keys",
    "UsageTable": "pennyworth-local-usage",
    "AuditTable": "pennyworth-local-audit",
    "CatalogTable": "pennyworth-local-catalog",
}
#: The SSM parameter holding the local OpenAI-compatible upstream's API key (the emulator's /openai/v1).
LOCAL_PROVIDER_PARAMETER = "/pennyworth/local/providers/local-openai"
#: Files in the state directory: moto's pickled AWS, and the stack's ids and secrets.
AWS_STATE = "aws.pickle"
STACK_STATE = "stack.json"
#: Seconds each server gets to stop before SIGKILL: the front and chalice local wait for the
#: answers in flight (their DRAIN_SECONDS), so they are billed; the others stop at once.
STOP_SECONDS = {"api": 20, "chalice": 35}
PORT_ENV = {"api": "PENNYWORTH_PORT", "aws": "PENNYWORTH_AWS_PORT", "bedrock": "PENNYWORTH_BEDROCK_PORT"}
DEFAULT_PORTS = {"api": 8000, "aws": 8001, "bedrock": 8002}


class StackError(RuntimeError):
    """The stack could not start; the message says what to do."""


class StateLock:
    """One stack at a time on a state directory: an exclusive lock on ``<dir>.lock`` beside it.

    Two ``make dev`` of one checkout (on other ports) would each load the state and then
    overwrite each other's saves. The lock is the kernel's (``flock``): it goes with the
    process that holds it, so a crashed stack leaves nothing to clean up. The file lives
    beside the directory, not in it, so ``make dev FRESH=1`` can delete the state while
    holding it.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir.parent / f"{state_dir.name}.lock"
        self._handle: IO[str] | None = None

    def acquire(self, holder: str) -> None:
        """Take the lock, recording ``holder`` (who, and where its API is) in the file.

        Raises
        ------
        StackError
            Another stack holds it; the message names that stack.
        """
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            raise StackError(
                f"Another 'make dev' is using {self.state_dir} ({other}): two stacks cannot share one "
                "saved state. Stop that one first (Ctrl-C in its terminal), or run a second stack from "
                "another checkout."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(holder)
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


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
    #: Where the AWS state (tables, users, ledger) and the stack's ids and secrets are kept across
    #: restarts; None: a throwaway stack (tests).
    state_dir: Path | None = None
    #: False: start from ``state_dir`` but save nothing back (a benchmark's seeded state).
    persist: bool = True
    #: Further options for the moto server (``--skip-patch NAME``: a benchmark's "before").
    moto_args: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    #: chalice local's private port (the front proxies the buffered routes to it); set by start().
    chalice_port: int | None = None
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _provider_key: str = field(default="", repr=False)
    _logs: list[IO[Any]] = field(default_factory=list)
    _lock: StateLock | None = None

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

    def lock_state(self) -> None:
        """Claim ``state_dir`` for this stack (``start`` does it too; ``make dev FRESH=1`` first).

        Raises
        ------
        StackError
            Another stack is using it.
        """
        if self.state_dir is not None and self._lock is None:
            lock = StateLock(self.state_dir)
            lock.acquire(f"pid {os.getpid()}, API at {self.api_url}")
            self._lock = lock

    def start(self) -> dict[str, Any]:
        """Start everything; return the connection details also written to dev.json."""
        self.lock_state()
        try:
            for name in ("api", "aws", "bedrock"):
                _ensure_free(self.host, getattr(self.ports, name), PORT_ENV[name])
        except StackError:
            self._release()
            raise
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            moto = [sys.executable, "-m", "local.moto_server", "-H", self.host, "-p", str(self.ports.aws)]
            saved = self._saved_stack()
            if self.state_dir is not None:
                moto += ["--state" if self.persist else "--load", str(self.state_dir / AWS_STATE)]
            moto += self.moto_args
            self._spawn("aws", moto)
            # The emulator also serves an OpenAI-compatible upstream (/openai/v1) wanting this stack's key,
            # which the stack keeps in SSM (moto) as a deployed stack keeps a provider's key.
            provider_key = (saved or {}).get("provider_key") or f"sk-local-{secrets.token_hex(16)}"
            self._provider_key = provider_key
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
                    "--openai-key",
                    provider_key,
                ],
            )
            # A saved state loads before moto answers: a large one (100,000 ledger entries) takes tens
            # of seconds on a busy machine.
            _wait_http(
                f"{self.aws_url}/moto-api/", self._processes["aws"], "moto server", 120, log=self.log_dir / "aws.log"
            )
            _wait_http(f"{self.bedrock_url}/ping", self._processes["bedrock"], "Bedrock emulator")
            self._bootstrap(saved)
            aggregator = [sys.executable, "-m", "local.stream_aggregator", "--endpoint", self.aws_url]
            self._spawn("aggregator", [*aggregator, "--table", TABLE_NAMES["UsageTable"], "--region", REGION])
            # The people sweep (a 5-minute schedule on AWS): users disabled with aws cognito-idp are noticed.
            self._spawn("sweep", [sys.executable, "-m", "local.people_sweep", "--interval", "30"])
            # chalice local serves the buffered routes on a private port; the front (API Gateway's
            # part) answers the streaming routes itself, as they stream on AWS, and proxies the rest.
            chalice_port = self.chalice_port = _free_port(self.host)
            command = [sys.executable, "-m", "local.chalice_local", "--behind-front", "local", "--stage", STAGE]
            command += ["--host", self.host, "--port", str(chalice_port)]
            # No autoreload: chalice's watcher polls every file under the project
            # (.venv included) and restarts on any change, e.g. each line moto
            # logs, dropping requests mid-flight. Restart make dev after editing.
            command.append("--no-autoreload")
            self._spawn("chalice", command, output=self.api_output)
            front = [sys.executable, "-m", "local.front", "--host", self.host, "--port", str(self.ports.api)]
            front += ["--upstream", f"http://{self.host}:{chalice_port}"]
            self._spawn("api", front, output=self.api_output)
            _wait_http(f"http://{self.host}:{chalice_port}/health", self._processes["chalice"], "chalice local", 60)
            _wait_http(f"{self.api_url}/health", self._processes["api"], "the local front", timeout=60)
        except BaseException:
            self.stop()
            raise
        return self.info

    def _saved_stack(self) -> dict[str, Any] | None:
        """The ids and secrets of the stack saved in ``state_dir``, or None for a first start."""
        if self.state_dir is None:
            return None
        aws_state, stack_state = self.state_dir / AWS_STATE, self.state_dir / STACK_STATE
        if not aws_state.exists() and not stack_state.exists():
            return None
        if not (aws_state.exists() and stack_state.exists()):
            raise StackError(
                f"The local state in {self.state_dir} is incomplete (one of {AWS_STATE}, {STACK_STATE} is missing). "
                "Start clean with 'make dev FRESH=1'."
            )
        try:
            return json.loads(stack_state.read_text())
        except ValueError as exc:
            raise StackError(f"{stack_state} is not valid JSON ({exc}). Start clean with 'make dev FRESH=1'.") from None

    def _bootstrap(self, saved: dict[str, Any] | None) -> None:
        """Create the tables (new ones too), and the pool, admin, report topic and key on a first start."""
        import boto3

        aws = {
            "region_name": REGION,
            "endpoint_url": self.aws_url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        bootstrap.create_tables(boto3.client("dynamodb", **aws), TABLE_NAMES)
        stack = saved or self._first_start(aws)
        stack["provider_key"] = self._provider_key
        boto3.client("ssm", **aws).put_parameter(
            Name=LOCAL_PROVIDER_PARAMETER, Value=self._provider_key, Type="SecureString", Overwrite=True
        )
        console_url = f"{self.api_url}/console"
        if saved is not None:
            # The console client sends users back to this run's port, which may differ from the last.
            cognito = boto3.client("cognito-idp", **aws)
            bootstrap.update_console_client(
                cognito, stack["user_pool_id"], stack["console_client_id"], self._console_urls()
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
            "PENNYWORTH_CATALOG_TABLE": TABLE_NAMES["CatalogTable"],
            "PENNYWORTH_COGNITO_USER_POOL_ID": stack["user_pool_id"],
            "PENNYWORTH_COGNITO_CLIENT_ID": stack["client_id"],
            "PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID": stack["console_client_id"],
            "PENNYWORTH_CONSOLE_AUTH_URL": f"{self.aws_url}{console_login.PREFIX}",
            "PENNYWORTH_REPORT_TOPIC_ARN": stack["report_topic_arn"],
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # moto answers in tens of milliseconds and holds one lock for all requests (a 1,000-key
            # scan holds it for seconds): DynamoDB's timeouts would fire here for no fault of the code.
            "PENNYWORTH_DYNAMODB_TIMEOUT_SECONDS": os.environ.get("PENNYWORTH_DYNAMODB_TIMEOUT_SECONDS", "10"),
            "PENNYWORTH_LEDGER_DEADLINE_SECONDS": os.environ.get("PENNYWORTH_LEDGER_DEADLINE_SECONDS", "20"),
            # The emulator's demo guardrail, which keys and models may apply (`#emulator:guardrail=…`).
            "PENNYWORTH_GUARDRAILS": os.environ.get("PENNYWORTH_GUARDRAILS", DEMO_GUARDRAIL_ID),
            **self.extra_env,
        }
        if self.state_dir is not None and saved is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            state = self.state_dir / STACK_STATE
            state.write_text(json.dumps(stack, indent=2) + "\n")
            state.chmod(0o600)  # the admin password and the bootstrap key
        base_url = f"{self.api_url}/v1"
        self.info = {
            "base_url": base_url,
            "api_key": stack["api_key"],
            "key_id": stack["key_id"],
            "admin_username": ADMIN_EMAIL,
            "admin_password": stack["admin_password"],
            "user_username": USER_EMAIL,
            "user_password": stack["user_password"],
            "console_url": console_url,
            "cognito": {
                "endpoint_url": self.aws_url,
                "region": REGION,
                "user_pool_id": stack["user_pool_id"],
                "client_id": stack["client_id"],
                "console_client_id": stack["console_client_id"],
            },
            "aws_endpoint_url": self.aws_url,
            "bedrock_endpoint_url": self.bedrock_url,
            "mcp_url": f"{self.api_url}/mcp",
            # A local OpenAI-compatible upstream to add models from (pennyworth models add --provider openai).
            "openai_upstream": {
                "base_url": f"{self.bedrock_url}/openai/v1",
                "api_key_parameter": LOCAL_PROVIDER_PARAMETER,
            },
            "report_topic_arn": stack["report_topic_arn"],
            # moto answers queue URLs on any of its hosts: point at this run's port.
            "report_inbox_url": f"{self.aws_url}/{stack['report_inbox_path'].lstrip('/')}",
            "restored": saved is not None,
            "examples": examples(base_url, stack["api_key"]),
        }

    def _console_urls(self) -> list[str]:
        return [f"{self.api_url}/console", f"http://localhost:{self.ports.api}/console"]

    def _first_start(self, aws: dict[str, Any]) -> dict[str, Any]:
        """The user pool, its admin, the report topic and the bootstrap key; their ids and secrets."""
        import boto3

        from chalicelib.keys.store import KeyStore

        cognito = boto3.client("cognito-idp", **aws)
        pool = bootstrap.create_user_pool(cognito, "pennyworth-local-users")
        password = f"Pw1!{secrets.token_urlsafe(12)}"
        admin_sub = bootstrap.create_user(
            cognito, pool["user_pool_id"], ADMIN_EMAIL, password, groups=(bootstrap.ADMINS_GROUP,)
        )
        user_password = f"Pw1!{secrets.token_urlsafe(12)}"
        bootstrap.create_user(cognito, pool["user_pool_id"], USER_EMAIL, user_password)
        # The web console signs in through the local stand-in for Cognito's managed login
        # (local/console_login.py, on the moto server), with an app client of its own.
        console_client_id = bootstrap.create_console_client(cognito, pool["user_pool_id"], self._console_urls())
        reports = bootstrap.create_report_topic(
            boto3.client("sns", **aws), boto3.client("sqs", **aws), "pennyworth-local-reports"
        )
        table = boto3.resource("dynamodb", **aws).Table(TABLE_NAMES["KeysTable"])
        record, api_key = KeyStore(table).create(
            owner_sub=admin_sub, owner_email=ADMIN_EMAIL, name="make dev bootstrap key"
        )
        return {
            "user_pool_id": pool["user_pool_id"],
            "client_id": pool["client_id"],
            "admin_password": password,
            "user_password": user_password,
            "console_client_id": console_client_id,
            "api_key": api_key,
            "key_id": record.key_id,
            "report_topic_arn": reports["topic_arn"],
            "report_inbox_path": urlsplit(reports["inbox_url"]).path,
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

    @contextlib.contextmanager
    def paused(self, *names: str) -> Iterator[None]:
        """Stop the named background processes (the aggregator, the sweep) while inside, then go on.

        For benchmarks: on AWS each is a Lambda of its own, here they share the machine's cores with
        what is being timed. What they would have done meanwhile they do when they go on.
        """
        stopped = [self._processes[name] for name in names if name in self._processes]
        for process in stopped:
            os.killpg(process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for process in stopped:
                os.killpg(process.pid, signal.SIGCONT)

    def dead_child(self) -> str | None:
        """The name of a server that has exited, if any."""
        return next((name for name, proc in self._processes.items() if proc.poll() is not None), None)

    def stop(self) -> None:
        """Stop every server, the last started first (SIGTERM to its process group, then SIGKILL).

        The API (the front, then chalice local) stops first and ends the answers in flight,
        billed, while DynamoDB is still up; then the aggregator, which applies those bills and
        releases their reservations in a last pass; moto, which saves the state, stops last.
        """
        for name in reversed(list(self._processes)):
            proc = self._processes[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_SECONDS.get(name, 5))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


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
    add_model = (
        ".venv/bin/pennyworth --local login && .venv/bin/pennyworth --local models add nova-pro "
        "--provider bedrock --model-id us.amazon.nova-pro-v1:0"
    )
    return {"curl": curl, "openai": python, "add_model": add_model}


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


def _wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 30, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = _last_error(log)
            raise StackError(
                f"{what} exited during start-up (code {process.returncode}); " + (said or "see .pennyworth/logs/.")
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise StackError(f"{what} did not answer at {url} within {timeout:.0f}s; see .pennyworth/logs/.")


def _last_error(log: Path | None) -> str | None:
    """The last ``error:`` line a server wrote to its log, if any (what went wrong, in its words)."""
    if log is None or not log.exists():
        return None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else None


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
            f"  Console    {info['console_url']}  (local sign-in)",
            f"  Admin      {info['admin_username']}  /  {info['admin_password']}",
            f"  User       {info['user_username']}  /  {info['user_password']}",
            f"  MCP        {info['mcp_url']}",
            f"  Upstream   {info['openai_upstream']['base_url']}  (OpenAI-compatible; key in SSM "
            f"{info['openai_upstream']['api_key_parameter']})",
            "  Details    .pennyworth/dev.json",
            "",
            "  State      "
            + (
                "restored: keys, users and the ledger of the last run (make dev FRESH=1 starts clean)"
                if info.get("restored")
                else "new; kept across restarts in .pennyworth/state/ (make dev FRESH=1 starts clean)"
            ),
            "",
            "Try it:",
            "",
            f"  {info['examples']['curl']}",
            "",
            f"  {info['examples']['openai']}",
            "",
            "Add a model without touching code (docs/models.md):",
            "",
            f"  {info['examples']['add_model']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run pennyworth's local stack until Ctrl-C.",
        epilog="Ports: PENNYWORTH_PORT (API, 8000), PENNYWORTH_AWS_PORT (moto, 8001), "
        "PENNYWORTH_BEDROCK_PORT (emulator, 8002).",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=f"delete the saved local state ({LOCAL_STATE_DIR.relative_to(PROJECT_DIR)}/) first: "
        "every local key, user and ledger entry (make dev FRESH=1)",
    )
    args = parser.parse_args(argv)
    try:
        ports = Ports.from_env()
        stack = DevStack(ports=ports, api_output=sys.stdout, state_dir=LOCAL_STATE_DIR)
        stack.lock_state()  # before FRESH deletes anything: never the state of a running stack
        if args.fresh and LOCAL_STATE_DIR.exists():
            shutil.rmtree(LOCAL_STATE_DIR)
            print(f"Deleted the saved local state ({LOCAL_STATE_DIR}).", file=sys.stderr)
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
