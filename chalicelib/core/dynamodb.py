"""DynamoDB clients: timeouts that fit a Lambda invocation, and numbers every implementation parses.

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
  with a deadline (see ``chalicelib/accounting/ledger.py``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


def plain_number(text: str) -> str:
    """``text`` (a DynamoDB number) in positional notation, exactly.

    ``"0E-9"`` → ``"0"``, ``"2E-8"`` → ``"0.00000002"``, ``"1.5E+3"`` → ``"1500"``.
    """
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


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((kind, inner),) = value.items()
            if kind == "N" and isinstance(inner, str):
                return {"N": plain_number(inner)}
            if kind == "NS" and isinstance(inner, list):
                return {"NS": [plain_number(v) if isinstance(v, str) else v for v in inner]}
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
