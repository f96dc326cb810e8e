"""Encoder for the AWS event-stream binary framing (application/vnd.amazon.eventstream)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_STRING_HEADER_TYPE = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    """Headers as name-length, name, type 7 (string), value-length, value."""
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode("utf-8")
        raw_value = value.encode("utf-8")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING_HEADER_TYPE, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One framed message: prelude, prelude CRC, headers, payload, message CRC."""
    raw_headers = _encode_headers(headers)
    total = _PRELUDE.size + _CRC.size + len(raw_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    head = prelude + _CRC.pack(zlib.crc32(prelude) & 0xFFFFFFFF) + raw_headers + payload
    # The message CRC covers every byte before it, prelude CRC included.
    return head + _CRC.pack(zlib.crc32(head) & 0xFFFFFFFF)


def _json(payload: Mapping[str, object]) -> bytes:
    """Compact JSON bytes for an event payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_event(event_type: str, payload: Mapping[str, object]) -> bytes:
    """A ConverseStream event such as contentBlockDelta."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, _json(payload))


def encode_exception(exception_type: str, payload: Mapping[str, object]) -> bytes:
    """A modelled in-stream exception such as modelStreamErrorException."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, _json(payload))
