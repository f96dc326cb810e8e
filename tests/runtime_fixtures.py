"""Scripted streaming handlers for the runtime loop's tests, loaded by name (``_HANDLER``).

They run inside the function process that ``local/lambda_runtime.py`` starts
(``PYTHONPATH`` names this directory), so they import only the standard
library and ``chalicelib.shared.http``: whatever ``chalicelib`` the process
finds is the one under test (the source tree, or the built artifact).
The event's JSON body is the script: ``status``, ``headers``, ``chunks``
(strings), ``raise_after`` (raise once that many chunks are out),
``pause`` (seconds between chunks).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import chalicelib
from chalicelib.shared.http import StreamingResult


def scripted(event: Mapping[str, Any], *, deadline: float) -> StreamingResult:
    script = json.loads(event.get("body") or "{}")
    headers = {
        "Content-Type": "text/event-stream",
        # Where the process imported chalicelib from, and its whole import path: tests check both.
        "X-Chalicelib": chalicelib.__file__ or "",
        "X-Sys-Path": json.dumps(sys.path),
        "X-Deadline": repr(deadline),
        **script.get("headers", {}),
    }

    def chunks() -> Iterator[bytes]:
        for index, text in enumerate(script.get("chunks", [])):
            if index == script.get("raise_after"):
                raise RuntimeError("scripted failure with a private detail: sk-do-not-leak")
            if index and script.get("pause"):
                time.sleep(script["pause"])
            yield text.encode()
        if script.get("raise_after") == len(script.get("chunks", [])):
            raise RuntimeError("scripted failure with a private detail: sk-do-not-leak")

    return StreamingResult(script.get("status", 200), headers, chunks())
