"""The emulator's documented deterministic tokenizer."""

from __future__ import annotations

import math
import re

# One token per run of word characters, and one per other non-space character:
# "Hello, world!" -> ["Hello", ",", "world", "!"] = 4 tokens. Unicode-aware, so a
# run of CJK characters without spaces is a single token.
TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")

# Fixed cost of one image block (in a message or inside a toolResult).
IMAGE_TOKENS = 1000

# Binary documents (pdf, docx, ...) cost one token per this many bytes, rounded up.
DOCUMENT_BYTES_PER_TOKEN = 4

# Document formats whose bytes are decoded as UTF-8 and tokenized like text.
TEXT_DOCUMENT_FORMATS = frozenset({"txt", "md", "csv", "html"})


def count_tokens(text: str) -> int:
    """Number of tokens in text under TOKEN_PATTERN."""
    return sum(1 for _ in TOKEN_PATTERN.finditer(text))


def truncate_to_tokens(text: str, limit: int) -> str:
    """Prefix of text holding at most limit tokens, cut right after the last kept token."""
    if limit <= 0:
        return ""
    for index, match in enumerate(TOKEN_PATTERN.finditer(text), start=1):
        if index == limit:
            return text[: match.end()]
    return text


def end_of_token(text: str, limit: int) -> int | None:
    """Character offset where the limit-th token ends, or None if text has fewer tokens."""
    if limit <= 0:
        return 0
    for index, match in enumerate(TOKEN_PATTERN.finditer(text), start=1):
        if index == limit:
            return match.end()
    return None


def split_for_stream(text: str, tokens_per_chunk: int = 3) -> list[str]:
    """Split text into consecutive pieces of a few tokens each; the pieces join back to text."""
    cuts = [m.end() for i, m in enumerate(TOKEN_PATTERN.finditer(text), start=1) if i % tokens_per_chunk == 0]
    pieces: list[str] = []
    start = 0
    for cut in cuts:
        if cut > start:
            pieces.append(text[start:cut])
            start = cut
    if start < len(text):
        pieces.append(text[start:])
    return pieces or ([text] if text else [])


def document_tokens(fmt: str, data: bytes) -> int:
    """Token cost of a document's bytes: tokenized text for text formats, else bytes/4."""
    if fmt in TEXT_DOCUMENT_FORMATS:
        return count_tokens(data.decode("utf-8", errors="replace"))
    return math.ceil(len(data) / DOCUMENT_BYTES_PER_TOKEN)
