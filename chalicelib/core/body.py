"""Request bodies: one JSON parser for every route, with the size limit checked first."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from chalicelib.errors import InvalidRequest, PayloadTooLarge


def parse_json_body(
    raw: bytes | str | None, *, max_bytes: int, required: bool = True, exact_numbers: bool = False
) -> dict[str, Any]:
    """Decode a JSON object body, enforcing the size limit first.

    With ``exact_numbers`` (the admin API: money), numbers with a fraction
    become ``Decimal`` and NaN/Infinity are refused. Without ``required``, an
    empty body is ``{}``.

    Raises
    ------
    PayloadTooLarge
        The body is over ``max_bytes``.
    InvalidRequest
        The body is empty (when required), not UTF-8 JSON, or not a JSON object.
    """
    if raw is None or not raw.strip():
        if not required:
            return {}
        raise InvalidRequest("The request body is empty; send a JSON object.")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is {len(raw)} bytes; the limit is {max_bytes} bytes.")
    options: dict[str, Any] = {"parse_float": Decimal, "parse_constant": _no_constant} if exact_numbers else {}
    try:
        body = json.loads(raw, **options)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request ({exc}). "
            "Send valid JSON with 'Content-Type: application/json'."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")
