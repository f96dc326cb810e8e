"""Fields nobody asked for: refused, named, with what is allowed, in every body, query and row we own.

A misspelt field silently ignored is a setting silently not applied (``montly_budget_usd``
would leave a key without a budget). The protocol adapters answer in their vendor's
words instead (OpenAI's "Unrecognized request argument", Anthropic's "Extra inputs are not
permitted"); this is the gateway's own API's form.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from chalicelib.errors import InvalidRequest


def refuse_unknown(source: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Nothing, when every field of ``source`` is in ``allowed``.

    Raises
    ------
    InvalidRequest
        ``Unknown field 'x'. Allowed: a, b, c.``, naming the first unknown field (in
        sorted order) as ``param``.
    """
    unknown = sorted(set(source) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unknown field '{unknown[0]}'. Allowed: {', '.join(sorted(allowed))}.", param=unknown[0])
