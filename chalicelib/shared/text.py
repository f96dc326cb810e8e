"""Text that people will read in a terminal: names, reasons, metadata, owners.

A key name such as ``ESC[2J…`` clears an admin's screen when a listing
prints it, and a right-to-left override makes ``invoice‮gnp.exe`` read as
``invoiceexe.png``. Such characters have no place in a label, so they are
refused where the text enters (400 naming the field), and the CLI escapes
whatever older data still carries them.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable

from chalicelib.errors import InvalidRequest

#: Bidirectional embeddings, overrides, isolates and marks: they reorder how the text is shown.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: C0 and C1 controls (ESC, CSI, NUL, newline, …), DEL, bidi controls, line and paragraph separators.
UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{BIDI_CONTROLS}\\u2028\\u2029]")


def visible(text: str) -> str:
    """``text`` with each control or bidi-override character shown as an escape (``\\x1b``, ``\\u202e``)."""
    return UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_unsafe(text: str) -> str | None:
    """The first control or bidi-override character in ``text``, or None."""
    match = UNSAFE.search(text)
    return match.group() if match else None


def check_plain_text(text: str, param: str) -> str:
    """``text`` unchanged, when it holds no control or bidi-override character.

    Raises
    ------
    InvalidRequest
        ``text`` holds one; the message names it by code point, never repeats it.
    """
    found = first_unsafe(text)
    if found is not None:
        name = unicodedata.name(found, "a control character")
        raise InvalidRequest(
            f"{param} contains U+{ord(found):04X} ({name.lower()}); control and bidirectional-override "
            "characters are not allowed in names, reasons and metadata.",
            param=param,
        )
    return text


def _folded(text: str) -> str:
    return re.sub(r"[\s._:]+", "-", text.strip().lower())


def nearest(name: str, candidates: Iterable[str], *, cutoff: float = 0.8) -> str | None:
    """The candidate ``name`` was most likely meant to be (a typo, ``.`` for ``-``, a case), or None.

    A candidate equal to ``name`` once case and separators are folded wins; else the closest by
    ``difflib``'s ratio, if at least ``cutoff`` alike. Never ``name`` itself.
    """
    options = [c for c in dict.fromkeys(candidates) if c != name]
    folded = _folded(name)
    exact = [c for c in options if _folded(c) == folded]
    if exact:
        return exact[0]
    by_fold = {_folded(c): c for c in options}
    close = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=cutoff)
    return by_fold[close[0]] if close else None
