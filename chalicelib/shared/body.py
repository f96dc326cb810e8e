"""Request bodies: one JSON parser for every route, with the size limit checked first.

Whatever JSON a caller sends (a body, an MCP message, a page cursor) goes
through ``parse_json``, which refuses what would crash code further down
instead of reaching it: nesting deeper than ``MAX_DEPTH`` (``RecursionError``
in any recursive walk), lone surrogates (``UnicodeEncodeError`` the moment
the string is encoded for DynamoDB, Bedrock or a log line), integers longer
than ``MAX_INT_DIGITS`` and numbers JSON does not have (NaN, Infinity, 1e400).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from chalicelib.errors import InvalidRequest, PayloadTooLarge

#: Deepest nesting of arrays and objects accepted. Real requests (tool schemas included) stay
#: far below; the limit keeps every recursive walk (ours, LiteLLM's, boto3's) off the recursion limit.
MAX_DEPTH = 64
#: Longest integer accepted: every integer we use fits 64 bits (20 digits); 32 leaves room.
MAX_INT_DIGITS = 32
_INT_BOUND = 10**MAX_INT_DIGITS
#: Exact numbers (``Decimal``) get the range a float has.
_MAX_EXPONENT = 308
#: The only way a surrogate gets into a string decoded from valid UTF-8: a ``\uD800``-style escape.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_body(
    raw: bytes | str | None, *, max_bytes: int, required: bool = True, exact_numbers: bool = False
) -> dict[str, Any]:
    """Decode a JSON object body, enforcing the size limit first.

    With ``exact_numbers`` (the admin API: money), numbers with a fraction
    become ``Decimal``. Without ``required``, an empty body is ``{}``.

    Raises
    ------
    PayloadTooLarge
        The body is over ``max_bytes``.
    InvalidRequest
        The body is empty (when required), not a JSON object, or holds
        something ``parse_json`` refuses.
    """
    if raw is None or not raw.strip():
        if not required:
            return {}
        raise InvalidRequest("The request body is empty; send a JSON object.")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The request body is {len(raw)} bytes; the limit is {max_bytes} bytes.")
    body = parse_json(raw, exact_numbers=exact_numbers)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def parse_json(raw: bytes | str, *, exact_numbers: bool = False) -> Any:
    """Decode any JSON value a caller sent, refusing what later code could not survive.

    Raises
    ------
    InvalidRequest
        Not UTF-8 JSON, nested deeper than ``MAX_DEPTH``, a lone surrogate in
        a string or key, an integer over ``MAX_INT_DIGITS`` digits, NaN,
        Infinity or a number out of float range.
    """
    if isinstance(raw, bytes):
        try:
            # Strict UTF-8: json.loads(bytes) would let UTF-8-encoded surrogates through.
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _refused("the body is not valid UTF-8") from None
    else:
        _check_text(raw)
    options: dict[str, Any] = {"parse_constant": _no_constant}
    if exact_numbers:
        options["parse_float"] = Decimal
    try:
        value = json.loads(raw, **options)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, Python's own 4,300-digit integer limit
        raise _refused(str(exc)) from None
    # Strings are looked at one by one only if an escape could have made a surrogate (a C-speed search).
    _check(value, strings=_SURROGATE_ESCAPE.search(raw) is not None)
    return value


def _check(value: Any, *, strings: bool) -> None:
    """Depth, surrogates and number range, in one iterative walk (no recursion to exhaust).

    A refusal names the top-level field it was found under (``param``), as validation would.
    """
    if not isinstance(value, (dict, list)):
        value = [value]  # a bare value is checked like an array's item
    pending: list[tuple[dict[str, Any] | list[Any], int, str | None]] = [(value, 1, None)]
    while pending:
        item, depth, param = pending.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(param)
        if isinstance(item, dict):
            if strings:
                for key in item:
                    _check_text(key, param)  # a bad top-level key names no field
            children: Any = item.items()
        elif item and set(map(type, item)) == {int}:
            # A token-id array (up to 100,000 integers): checked at C speed, not one by one.
            _check_int(min(item), param)
            _check_int(max(item), param)
            continue
        else:
            children = ((None, child) for child in item)
        for key, child in children:
            where = key if depth == 1 and isinstance(key, str) else param
            kind = type(child)
            if kind is dict or kind is list:
                pending.append((child, depth + 1, where))
            elif kind is str:
                if strings:
                    _check_text(child, where)
            elif kind is int:
                _check_int(child, where)
            elif kind is float and not math.isfinite(child):
                raise _refused("a number is out of range", where)
            elif kind is Decimal and not -_MAX_EXPONENT <= child.adjusted() <= _MAX_EXPONENT:
                # 1e999999999 is a valid Decimal, and a gigabyte of digits when printed.
                raise _refused("a number is out of range", where)


def _check_text(text: str, param: str | None = None) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refused("a string holds a lone UTF-16 surrogate (such as \\ud800), which is not text", param) from None


def _check_int(number: int, param: str | None = None) -> None:
    if not -_INT_BOUND < number < _INT_BOUND:
        raise _refused(f"an integer has more than {MAX_INT_DIGITS} digits", param)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _too_deep(param: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"The JSON body is nested more than {MAX_DEPTH} levels deep; send a flatter document.", param=param
    )


def _refused(reason: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"We could not parse the JSON body of your request ({reason}). "
        "Send valid JSON with 'Content-Type: application/json'.",
        param=param,
    )
