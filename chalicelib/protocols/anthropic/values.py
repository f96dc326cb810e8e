"""Small Anthropic values both the request (``parse``) and its messages (``messages``) validate.

Refusals use Anthropic's own wording ("Extra inputs are not permitted", "Input should be …"),
naming the field's path as ``param``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.errors import InvalidRequest

#: Thinking efforts of ``output_config.effort``, and the reasoning effort each becomes (Bedrock's top is "high").
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_CACHE_TTLS = ("5m", "1h")


def only(value: Mapping[str, Any], allowed: set[str], at: str) -> None:
    """Refuse a field of ``value`` (at ``at``) that is not in ``allowed``."""
    for name in value:
        if name not in allowed:
            raise InvalidRequest(f"{at}.{name}: Extra inputs are not permitted", param=f"{at}.{name}")


def cache_control(value: Any, where: str) -> dict[str, Any]:
    """A ``cache_control`` value: an ephemeral cache point, with its TTL when one is set."""
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise InvalidRequest(f'{where}: Input should be {{"type": "ephemeral"}}', param=where)
    only(value, {"type", "ttl"}, where)
    if value.get("ttl", "5m") not in _CACHE_TTLS:
        raise InvalidRequest(f"{where}.ttl: Input should be '5m' or '1h'", param=f"{where}.ttl")
    return {"type": "ephemeral", **({"ttl": value["ttl"]} if "ttl" in value else {})}


def effort_of(value: Any, where: str) -> str:
    """The reasoning effort an Anthropic ``effort`` asks for."""
    if not isinstance(value, str) or value not in EFFORTS:  # a list or object is unhashable: no dict lookup
        raise InvalidRequest(f"{where}: Input should be one of {', '.join(EFFORTS)}", param=where)
    return EFFORTS[value]
