"""What the protocol parsers share: parameter policies, and (for the OpenAI-shaped ones: chat
completions, embeddings, Responses) typed readers that refuse a bad value with OpenAI's wording.

Every body parameter of a model route has a policy: *passed* to the model, *ignored*
(accepted, documented, harmless), or *refused unless default* (a 400 naming it, unless it
carries the value that asks for nothing). ``checked`` applies them, in each vendor's words.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import Any

from chalicelib.errors import InvalidRequest

PASSED = "passed"
IGNORED = "ignored"
REFUSED_UNLESS_DEFAULT = "refused unless default"
#: OpenAI's words for a parameter it does not know, and for one this gateway refuses (``checked``).
OPENAI_UNKNOWN = "Unrecognized request argument supplied: {name}"
OPENAI_REFUSED = "Unsupported parameter '{name}': {why}"

#: Bound on any requested output length before the model's own limit is checked.
MAX_OUTPUT_TOKENS = 2**31 - 1
_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp);base64,(.*)$", re.DOTALL)


def boolean(source: Mapping[str, Any], name: str, default: bool, *, prefix: str = "") -> bool:
    value = source.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{prefix}{name}' must be a boolean.", param=f"{prefix}{name}")
    return value


def an_object(source: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = source[name]
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{name}' must be an object.", param=name)
    return value


def integer(source: Mapping[str, Any], name: str, *, minimum: int, maximum: int = 2**63 - 1) -> int:
    value = source[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    if value < minimum:
        raise InvalidRequest(f"'{name}' must be at least {minimum}.", param=name)
    if value > maximum:
        raise InvalidRequest(f"'{name}' must be at most {maximum}.", param=name)
    return value


def number(source: Mapping[str, Any], name: str, lower: float, upper: float) -> float:
    value = source[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"'{name}' must be a number.", param=name)
    if not lower <= value <= upper:
        raise InvalidRequest(
            f"'{name}' must be between {lower:g} and {upper:g} for Bedrock models (got {value}).",
            param=name,
        )
    return float(value)


def metadata(source: Mapping[str, Any]) -> None:
    """Refuse a ``metadata`` that ``source`` sets and OpenAI would not take (ignored otherwise)."""
    value = source.get("metadata")
    if value is not None and (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in value.items()
        )
    ):
        raise InvalidRequest(
            "'metadata' must be an object of at most 16 string keys (≤64 chars) and string values (≤512 chars).",
            param="metadata",
        )


def image_url(value: Any, at: str) -> dict[str, Any]:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise InvalidRequest(f"{at}.image_url.url must be a string.", param=f"{at}.image_url")
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"{at}: image URLs are not fetched by this gateway (no server-side downloads). "
            "Send the image inline as a data URL: data:image/png;base64,<...>.",
            param=f"{at}.image_url",
            code="image_url_not_supported",
        )
    match = _DATA_URL.match(url)
    if not match:
        raise InvalidRequest(
            f"{at}: the image must be a base64 data URL of type png, jpeg, gif or webp.",
            param=f"{at}.image_url",
            code="invalid_image_url",
        )
    try:
        base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"{at}: the image data is not valid base64.", param=f"{at}.image_url", code="invalid_image_url"
        ) from None
    out = {"url": url}
    if isinstance(value, dict) and value.get("detail") in ("auto", "low", "high"):
        out["detail"] = value["detail"]
    return out


def mentions_json(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
        if any("json" in text.lower() for text in texts if isinstance(text, str)):
            return True
    return False


def checked(
    body: Mapping[str, Any],
    policies: Mapping[str, str],
    *,
    harmless: Mapping[str, tuple[Any, ...]],
    why: Mapping[str, str],
    unknown: str = OPENAI_UNKNOWN,
    refused: str = OPENAI_REFUSED,
    also: Collection[str] = (),
) -> dict[str, Any]:
    """The parameters ``body`` sets (null is not set), once each is checked against its policy.

    ``unknown`` and ``refused`` are the vendor's messages (``{name}``, and ``{why}`` from ``why``);
    ``also`` names parameters known without a policy (a client's extensions, ignored).

    Raises
    ------
    InvalidRequest
        A parameter with no policy, or a refused one not at a value of ``harmless`` (code
        ``unsupported_parameter``).
    """
    for name in body:
        if name not in policies and name not in also:
            raise InvalidRequest(unknown.format(name=name), param=name)
    present = {k: v for k, v in body.items() if v is not None}
    for name, value in present.items():
        if policies.get(name) == REFUSED_UNLESS_DEFAULT and not any(same(value, d) for d in harmless.get(name, ())):
            raise InvalidRequest(refused.format(name=name, why=why[name]), param=name, code="unsupported_parameter")
    return present


def same(value: Any, expected: Any) -> bool:
    """``value == expected`` as JSON means it: ``true`` is not ``1`` and ``false`` not ``0`` (as they are in Python).

    Numbers compare by value (``1`` and ``1.0`` are one JSON number); lists and objects item by item.
    """
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    if isinstance(value, (int, float)) and isinstance(expected, (int, float)):
        return value == expected
    if isinstance(value, list) and isinstance(expected, list):
        return len(value) == len(expected) and all(same(a, b) for a, b in zip(value, expected, strict=True))
    if isinstance(value, dict) and isinstance(expected, dict):
        return value.keys() == expected.keys() and all(same(value[k], expected[k]) for k in value)
    return type(value) is type(expected) and value == expected


def strings(source: Mapping[str, Any], *names: str) -> None:
    """Refuse any of ``names`` that ``source`` sets to something other than a string."""
    for name in names:
        if name in source and not isinstance(source[name], str):
            raise InvalidRequest(f"'{name}' must be a string.", param=name)
