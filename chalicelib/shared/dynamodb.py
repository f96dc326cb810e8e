"""DynamoDB: clients whose timeouts fit a Lambda invocation, numbers every implementation parses,
and calls retried within a deadline.

* **Numbers.** ``Decimal`` arithmetic produces exponent forms (``0E-9`` for a
  zero left by ``cost - reserved``, ``2E-8`` for one token of Titan). DynamoDB
  accepts them, but not every implementation does: moto (our local DynamoDB)
  reads a number without a ``.`` as an integer and then fails on that item
  forever. ``normalize_numbers`` rewrites every number a client sends to plain
  positional notation (``0``, ``0.00000002``), at the one place all our writes
  pass through: it is registered on each client ``resource``/``client`` build,
  so no caller can forget it.
* **Timeouts.** botocore waits 60 s to read by default and retries on top: a
  stalled endpoint (accepts, never answers) would hold a request for minutes
  and Lambda would kill it after Bedrock answered, with nothing logged.
  ``client_config`` bounds each attempt; callers bound the whole operation
  with a deadline (``Attempts``).
* **The request path's calls without boto3's resource layer.** A resource (``Table.put_item``)
  deep-copies each request, walks it against the operation's shape to convert every value,
  and walks the answer back: ~0.3 ms of CPU a call, as much again as the low-level client's own
  work. The three calls every model request makes (its key, its reservation, its ledger entry)
  go through ``plain_client(table)``, the same table's low-level client, with values typed by
  ``typed``/``untyped``, and without botocore's client-side check of each request (DynamoDB
  checks every request itself).
* **Calls with a deadline.** botocore's own retries know nothing of the Lambda
  invocation's remaining time, and it does not retry
  ``TransactionConflictException`` at all. Every ledger and meter call goes
  through ``Attempts.call``: transient failures (a conflicting transaction,
  throttling, a timeout, a 5xx) are retried with jittered exponential backoff
  while the next attempt can still finish before ``deadline``; anything else,
  or running out of time, raises the last error.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any


def plain_number(text: str) -> str:
    """``text`` (a DynamoDB number) in positional notation, exactly.

    ``"0E-9"`` → ``"0"``, ``"2E-8"`` → ``"0.00000002"``, ``"1.5E+3"`` → ``"1500"``.
    """
    if text.isascii() and text.isdigit() and (text[0] != "0" or len(text) == 1):
        return text  # a plain integer (most numbers on the request path): already as it would come out
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text  # not a number: let DynamoDB refuse it with its own message
    if not value.is_finite():
        return text
    if not value:
        return "0"
    return format(value.normalize(), "f")


def dynamo_number(value: Decimal | int) -> Decimal:
    """``value`` as a ``Decimal`` that serialises in positional notation (``Decimal("0E-9")`` → ``Decimal("0")``)."""
    return Decimal(plain_number(str(value)))


#: Attribute values with nothing inside to normalise (a string, binary, boolean or null).
_LEAF_KINDS = frozenset({"S", "B", "BOOL", "NULL"})


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, inner),) = value.items()
            if kind == "N" and isinstance(inner, str):
                return {"N": plain_number(inner)}
            if kind == "NS" and isinstance(inner, list):
                return {"NS": [plain_number(v) if isinstance(v, str) else v for v in inner]}
            if kind in _LEAF_KINDS and not isinstance(inner, dict | list):
                return value  # every call walks its whole request: most of it is strings
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def normalize_numbers(params: dict[str, Any], **_: Any) -> None:
    """botocore ``before-parameter-build`` handler: every ``{"N": …}`` in the request in positional notation."""
    for name, value in list(params.items()):
        params[name] = _normalize(value)


def install_number_normalizer(client: Any) -> Any:
    """Register ``normalize_numbers`` on a boto3 DynamoDB client (after boto3's own serialisation)."""
    client.meta.events.register_last("before-parameter-build.dynamodb", normalize_numbers)
    return client


def client_config(*, timeout_seconds: float, attempts: int) -> Any:
    """botocore ``Config``: connect/read timeouts of ``timeout_seconds`` and at most ``attempts`` tries per call."""
    from botocore.config import Config

    return Config(
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": attempts},
        # The ledger counts its own write units in tests and benchmarks; nothing here needs more pools.
        max_pool_connections=16,
    )


def resource(*, region: str, endpoint_url: str | None, timeout_seconds: float, attempts: int) -> Any:
    """A boto3 DynamoDB resource with ``client_config`` and the number normalizer installed."""
    import boto3

    built = boto3.resource(
        "dynamodb",
        region_name=region,
        endpoint_url=endpoint_url,
        config=client_config(timeout_seconds=timeout_seconds, attempts=attempts),
    )
    install_number_normalizer(built.meta.client)
    return built


# -- the low-level client beside a resource ------------------------------------------------

_PLAIN: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_PLAIN_LOCK = threading.Lock()


def plain_client(table: Any) -> Any:
    """The low-level DynamoDB client for ``table``'s endpoint, region and config, without the resource layer.

    One per resource client, built on first use (from the default session, as every resource here
    is), with the number normalizer installed. It takes and returns typed values (``typed``,
    ``untyped``). Whatever watches a table's calls (tests, benchmarks, the contention model)
    must watch ``clients(table)``: both of them.
    """
    source = table.meta.client
    client = _PLAIN.get(source)
    if client is None:
        with _PLAIN_LOCK:
            client = _PLAIN.get(source)
            if client is None:
                import boto3
                from botocore.config import Config

                # Without botocore's own check of each request against the operation's shape: these
                # requests are built here (``typed``), and DynamoDB checks every request itself (a bad
                # one comes back as its ValidationException, never retried). The check walked every
                # attribute of a ledger entry: ~0.2 ms of each model request (bench/overhead.py).
                client = boto3.client(
                    "dynamodb",
                    region_name=source.meta.region_name,
                    endpoint_url=source.meta.endpoint_url,
                    config=source.meta.config.merge(Config(parameter_validation=False)),
                )
                _share_connections(client, source)
                _PLAIN[source] = install_number_normalizer(client)
    return client


def _share_connections(client: Any, source: Any) -> None:
    """Send ``client``'s requests through ``source``'s connection pool (same endpoint, same config).

    A pool of its own would open a second connection to DynamoDB on a cold start: a TLS handshake
    more before the first answer. botocore keeps the pool on the client's endpoint; a test holds
    this to the botocore version installed.
    """
    endpoint, shared = getattr(client, "_endpoint", None), getattr(source, "_endpoint", None)
    if endpoint is not None and shared is not None and hasattr(shared, "http_session"):
        endpoint.http_session = shared.http_session


def clients(table: Any) -> tuple[Any, Any]:
    """Both clients ``table``'s calls go through: its resource's and ``plain_client(table)``."""
    return table.meta.client, plain_client(table)


def typed(item: Any) -> dict[str, Any]:
    """A Python mapping (``str``, ``Decimal``, ``int``, ``bool``, lists, maps, sets) as DynamoDB attribute values."""
    from boto3.dynamodb.types import TypeSerializer

    serialize = TypeSerializer().serialize
    return {name: serialize(value) for name, value in item.items()}


def untyped(item: Any) -> dict[str, Any]:
    """DynamoDB attribute values back as Python (numbers as ``Decimal``), as a resource returns them."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    return {name: deserialize(value) for name, value in item.items()}


# -- calls with a deadline ----------------------------------------------------------------------

#: Error codes worth another attempt. ``TransactionConflictException`` is a plain write
#: on an item a transaction holds; ``TransactionCanceledException`` is checked separately
#: (only its ``TransactionConflict``/throttling reasons are transient).
TRANSIENT_CODES = frozenset(
    {
        "TransactionConflictException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def error_code(exc: BaseException) -> str | None:
    """The DynamoDB error code of a botocore ``ClientError`` (None for other errors)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def cancellation_reasons(exc: BaseException) -> list[str]:
    """The per-item reason codes of a cancelled transaction (``"None"`` for items that were fine)."""
    response = getattr(exc, "response", None) or {}
    return [str(reason.get("Code")) for reason in response.get("CancellationReasons") or []]


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt may not meet: conflicts, throttling, timeouts, 5xx."""
    from botocore.exceptions import BotoCoreError

    if isinstance(exc, BotoCoreError):
        return True  # connect/read timeouts, dropped connections
    code = error_code(exc)
    if code == "TransactionCanceledException":
        reasons = set(cancellation_reasons(exc)) - {"None"}
        return bool(reasons) and reasons <= TRANSIENT_REASONS
    return code in TRANSIENT_CODES


@dataclass
class Attempts:
    """Retry policy and counters. ``timer``/``sleep``/``rng`` are injected by tests and the simulator."""

    timer: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    backoff_seconds: float = 0.025
    max_backoff_seconds: float = 0.4
    #: The longest one attempt can take (botocore's connect + read timeouts): no attempt starts without it.
    attempt_seconds: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    retries: int = 0

    def call[T](
        self, fn: Callable[[], T], *, deadline: float, transient: Callable[[BaseException], bool] = is_transient
    ) -> T:
        """``fn()``, retried while it fails transiently and time remains before ``deadline``."""
        from botocore.exceptions import BotoCoreError, ClientError

        attempt = 0
        while True:
            try:
                return fn()
            except (ClientError, BotoCoreError) as exc:
                if not transient(exc):
                    raise
                delay = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
                delay *= 0.5 + self.rng.random() / 2
                if self.timer() + delay + self.attempt_seconds > deadline:
                    raise
                attempt += 1
                self.retries += 1
                self.sleep(delay)
