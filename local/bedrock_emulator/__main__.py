"""CLI: python -m local.bedrock_emulator --host 127.0.0.1 --port 8766."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from .guardrails import add_guardrail
from .server import EmulatorServer


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m local.bedrock_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8766, help="port to bind; 0 picks a free port (default 8766)")
    parser.add_argument(
        "--strict-profiles",
        action="store_true",
        help="reject profile-only base ids and profile prefixes a model has no real profile for",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--guardrail",
        action="append",
        default=[],
        metavar="ID",
        help="a guardrail id the emulator knows besides 'pennyworthdemo' (versions DRAFT and 1); repeatable",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed the draws of #emulator:rate (repeatable runs)")
    parser.add_argument(
        "--openai-key",
        default=None,
        help="the API key the OpenAI-compatible mode (/openai/v1) requires (default: $EMULATOR_OPENAI_KEY, else any)",
    )
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit so the socket is closed."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Bind, announce readiness on stderr, serve until interrupted."""
    args = _parse_args(argv)
    for guardrail_id in args.guardrail:
        add_guardrail(guardrail_id)
    key = args.openai_key or os.environ.get("EMULATOR_OPENAI_KEY") or None
    server = EmulatorServer(
        (args.host, args.port),
        strict_profiles=args.strict_profiles,
        verbose=args.verbose,
        seed=args.seed,
        openai_key=key,
    )
    signal.signal(signal.SIGTERM, _stop)
    print(f"bedrock emulator listening on {server.base_url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
