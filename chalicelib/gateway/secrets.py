"""Provider API keys: SSM Parameter Store SecureStrings, read at run time, cached, never logged.

A key is read with ``GetParameter`` (``WithDecryption``) the first time a target needs it and
kept in memory for ``TTL_SECONDS``, so a rotated key is picked up within that time and a
warm function makes no SSM call per request. The value never leaves this module except into
the upstream call: not into logs, errors, the ledger or the audit log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from chalicelib import errors
from chalicelib.observability import logger

TTL_SECONDS = 300.0


class ParameterSecrets:
    """Reads SecureStrings under one SSM path prefix, through an SSM client built on first use."""

    def __init__(
        self,
        ssm: Callable[[], Any],
        *,
        prefix: str,
        ttl_seconds: float = TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ssm = ssm
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    def __call__(self, name: str) -> str:
        """The decrypted value of the parameter ``name``.

        Raises
        ------
        UpstreamError
            ``provider_key_unavailable``: outside the stack's prefix, missing, not readable by the
            function's role, or SSM did not answer (the message names the parameter, never a value).
        """
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        if not name.startswith(self._prefix):
            raise errors.UpstreamError(
                f"The model's API key parameter {name} is outside this stack's ProviderKeyPrefix ({self._prefix}).",
                code="provider_key_unavailable",
            )
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            value = self._ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except (BotoCoreError, ClientError) as exc:
            reason = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            logger.warning("provider key unreadable", extra={"parameter": name, "reason": reason})
            raise errors.UpstreamError(
                f"The model's API key cannot be read from SSM parameter {name} ({reason}); an admin must "
                "store it as a SecureString there.",
                code="provider_key_unavailable",
            ) from None
        with self._lock:
            self._cache[name] = (now, value)
        return value

    def check(self, name: str) -> None:
        """Read ``name`` now (an admin naming it for a model), so a missing key is refused up front.

        Raises
        ------
        UpstreamError
            See ``__call__``.
        """
        with self._lock:
            self._cache.pop(name, None)
        self(name)
