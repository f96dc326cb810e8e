"""``chalice`` for the local stack, tolerant of Authorization headers that are not JWTs.

chalice local imitates API Gateway's Cognito authorizer by base64-decoding
the Authorization header as a JWT, and crashes (no response at all) when it
is anything else, e.g. an API key sent to an /admin route. API Gateway would
answer 401 there; here the header is passed on undecoded and the app's own
token check (chalicelib/admin/auth.py) answers the same 401.

Usage: ``python -m local.chalice_local local --stage local --port 8000`` (any chalice command).
"""

from __future__ import annotations

import sys
from typing import Any


def tolerate_non_jwt_authorization() -> None:
    """Patch chalice local's JWT decoding to treat a non-JWT header as carrying no claims."""
    from chalice.local import LocalGatewayAuthorizer

    decode = LocalGatewayAuthorizer._decode_jwt_payload

    def lenient(self: Any, jwt: str) -> dict[str, Any]:
        try:
            claims = decode(self, jwt)
        except (IndexError, ValueError, UnicodeDecodeError, RecursionError):
            return {}
        return claims if isinstance(claims, dict) else {}

    LocalGatewayAuthorizer._decode_jwt_payload = lenient  # type: ignore[method-assign]


def answer_without_nagle() -> None:
    """Send with TCP_NODELAY: chalice local writes headers and body separately, which Nagle plus the
    client's delayed ACK would stall by ~40 ms on every reused keep-alive connection."""
    from chalice.local import ChaliceRequestHandler

    ChaliceRequestHandler.disable_nagle_algorithm = True


def main() -> int:
    from chalice.cli import main as chalice_main

    tolerate_non_jwt_authorization()
    answer_without_nagle()
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
