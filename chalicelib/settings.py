"""Runtime settings: every environment variable the gateway reads, in one place.

The table in ``docs/configuration.md`` documents each variable; ``ENV`` below is
the single list of names the code uses, and ``tests/test_settings.py`` checks
that the two agree.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

#: Every environment variable the Lambda functions read, with its default.
ENV: dict[str, str | None] = {
    "PENNYWORTH_STAGE": "local",
    "PENNYWORTH_KEYS_TABLE": "pennyworth-local-keys",
    "PENNYWORTH_USAGE_TABLE": "pennyworth-local-usage",
    "PENNYWORTH_AUDIT_TABLE": "pennyworth-local-audit",
    "PENNYWORTH_CATALOG_TABLE": "pennyworth-local-catalog",
    "PENNYWORTH_CATALOG_PATH": None,
    # The template's AllowedBedrockModels (what the functions' role may invoke), comma-separated.
    "PENNYWORTH_ALLOWED_BEDROCK_MODELS": "anthropic.*,amazon.nova-*,amazon.titan-*,cohere.embed-*,meta.*,mistral.*",
    "PENNYWORTH_PROVIDER_KEY_PREFIX": "/pennyworth/local/",
    "PENNYWORTH_AWS_ENDPOINT_URL": None,
    "PENNYWORTH_BEDROCK_ENDPOINT_URL": None,
    "PENNYWORTH_BEDROCK_REGION": None,
    "PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS": "25",
    "PENNYWORTH_THROTTLE_COOLDOWN_SECONDS": "2",
    "PENNYWORTH_GUARDRAILS": None,
    "PENNYWORTH_STREAM_TIMEOUT_SECONDS": "300",
    "PENNYWORTH_MAX_BODY_BYTES": "5000000",
    "PENNYWORTH_COGNITO_USER_POOL_ID": None,
    "PENNYWORTH_COGNITO_CLIENT_ID": None,
    "PENNYWORTH_COGNITO_ENDPOINT_URL": None,
    "PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID": None,
    "PENNYWORTH_CONSOLE_AUTH_URL": None,
    # A harmless placeholder: the deployed template's authorizer gets the real pool's ARN.
    "PENNYWORTH_COGNITO_USER_POOL_ARN": "arn:aws:cognito-idp:us-east-1:000000000000:userpool/us-east-1_placeholder",
    "PENNYWORTH_REPORT_TOPIC_ARN": None,
    "PENNYWORTH_SLACK_WEBHOOK_PARAMETER": None,
    "PENNYWORTH_SPIKE_THRESHOLD_USD": None,
    "PENNYWORTH_SPIKE_FACTOR": "3",
    "PENNYWORTH_METRICS_NAMESPACE": "Pennyworth",
    "PENNYWORTH_DYNAMODB_TIMEOUT_SECONDS": "2",
    "PENNYWORTH_LEDGER_DEADLINE_SECONDS": "2.5",
    # The monthly budget a person starts with when they first appear ("none": no bound unless an admin sets one).
    "PENNYWORTH_DEFAULT_PERSON_BUDGET_USD": "10",
    # A harmless placeholder: the deployed template points the aggregator at the usage table's stream.
    "PENNYWORTH_USAGE_STREAM_ARN": (
        "arn:aws:dynamodb:us-east-1:000000000000:table/pennyworth-local-usage/stream/2020-01-01T00:00:00.000"
    ),
    "AWS_REGION": "us-east-1",
}

DEFAULT_CATALOG = Path(__file__).parent / "catalog" / "catalog.json"
#: Lambda's longest function timeout, which is also API Gateway's longest streamed response (15 min).
MAX_STREAM_TIMEOUT_SECONDS = 900


class SettingsError(ValueError):
    """An environment variable holds a value the gateway cannot use."""


@dataclass(frozen=True)
class Settings:
    """Frozen view of the environment, built once per process by ``get_settings``."""

    stage: str
    region: str
    keys_table: str
    usage_table: str
    audit_table: str
    catalog_table: str
    catalog_path: Path
    allowed_bedrock_models: tuple[str, ...]
    provider_key_prefix: str
    aws_endpoint_url: str | None
    bedrock_endpoint_url: str | None
    bedrock_region: str
    upstream_timeout_seconds: float
    throttle_cooldown_seconds: float
    guardrails: tuple[str, ...]
    stream_timeout_seconds: float
    max_body_bytes: int
    cognito_user_pool_id: str | None
    cognito_client_id: str | None
    cognito_endpoint_url: str | None
    cognito_user_pool_arn: str
    cognito_console_client_id: str | None
    console_auth_url: str | None
    report_topic_arn: str | None
    slack_webhook_parameter: str | None
    spike_threshold_usd: Decimal | None
    spike_factor: Decimal
    metrics_namespace: str
    dynamodb_timeout_seconds: float
    ledger_deadline_seconds: float
    usage_stream_arn: str
    default_person_budget_usd: Decimal | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable in ``ENV`` from ``environ`` (default: the process)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else ENV[name]

        region = get("AWS_REGION") or "us-east-1"
        return cls(
            stage=get("PENNYWORTH_STAGE") or "local",
            region=region,
            keys_table=_required(get, "PENNYWORTH_KEYS_TABLE"),
            usage_table=_required(get, "PENNYWORTH_USAGE_TABLE"),
            audit_table=_required(get, "PENNYWORTH_AUDIT_TABLE"),
            catalog_table=_required(get, "PENNYWORTH_CATALOG_TABLE"),
            catalog_path=Path(get("PENNYWORTH_CATALOG_PATH") or DEFAULT_CATALOG),
            allowed_bedrock_models=_patterns(get, "PENNYWORTH_ALLOWED_BEDROCK_MODELS"),
            provider_key_prefix=_parameter_prefix(get, "PENNYWORTH_PROVIDER_KEY_PREFIX"),
            aws_endpoint_url=get("PENNYWORTH_AWS_ENDPOINT_URL"),
            bedrock_endpoint_url=get("PENNYWORTH_BEDROCK_ENDPOINT_URL"),
            bedrock_region=get("PENNYWORTH_BEDROCK_REGION") or region,
            upstream_timeout_seconds=_number(get, "PENNYWORTH_UPSTREAM_TIMEOUT_SECONDS", float),
            throttle_cooldown_seconds=_number(get, "PENNYWORTH_THROTTLE_COOLDOWN_SECONDS", float, maximum=60),
            guardrails=_guardrail_ids(get("PENNYWORTH_GUARDRAILS")),
            stream_timeout_seconds=_number(
                get, "PENNYWORTH_STREAM_TIMEOUT_SECONDS", float, maximum=MAX_STREAM_TIMEOUT_SECONDS
            ),
            max_body_bytes=_number(get, "PENNYWORTH_MAX_BODY_BYTES", int),
            cognito_user_pool_id=get("PENNYWORTH_COGNITO_USER_POOL_ID"),
            cognito_client_id=get("PENNYWORTH_COGNITO_CLIENT_ID"),
            cognito_endpoint_url=get("PENNYWORTH_COGNITO_ENDPOINT_URL") or get("PENNYWORTH_AWS_ENDPOINT_URL"),
            cognito_user_pool_arn=_required(get, "PENNYWORTH_COGNITO_USER_POOL_ARN"),
            cognito_console_client_id=get("PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID"),
            console_auth_url=_url(get, "PENNYWORTH_CONSOLE_AUTH_URL"),
            report_topic_arn=get("PENNYWORTH_REPORT_TOPIC_ARN"),
            slack_webhook_parameter=get("PENNYWORTH_SLACK_WEBHOOK_PARAMETER"),
            spike_threshold_usd=(
                _number(get, "PENNYWORTH_SPIKE_THRESHOLD_USD", Decimal)
                if get("PENNYWORTH_SPIKE_THRESHOLD_USD")
                else None
            ),
            spike_factor=_number(get, "PENNYWORTH_SPIKE_FACTOR", Decimal),
            metrics_namespace=get("PENNYWORTH_METRICS_NAMESPACE") or "Pennyworth",
            dynamodb_timeout_seconds=_number(get, "PENNYWORTH_DYNAMODB_TIMEOUT_SECONDS", float),
            ledger_deadline_seconds=_number(get, "PENNYWORTH_LEDGER_DEADLINE_SECONDS", float),
            usage_stream_arn=_required(get, "PENNYWORTH_USAGE_STREAM_ARN"),
            default_person_budget_usd=_budget(get, "PENNYWORTH_DEFAULT_PERSON_BUDGET_USD"),
        )


def _guardrail_ids(raw: str | None) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in (raw or "").split(",") if part.strip())
    bad = [i for i in ids if not re.fullmatch(r"[a-z0-9]{1,64}", i)]
    if bad:
        raise SettingsError(
            f"PENNYWORTH_GUARDRAILS must list guardrail ids (lower-case letters and digits); got {bad[0]!r}"
        )
    return ids


def _required(get, name: str) -> str:
    value = get(name)
    if not value:
        raise SettingsError(f"{name} must be set")
    return value


def _patterns(get, name: str) -> tuple[str, ...]:
    patterns = tuple(part.strip() for part in (_required(get, name)).split(",") if part.strip())
    if not patterns or not all(re.fullmatch(r"[A-Za-z0-9.:*?-]+", p) for p in patterns):
        raise SettingsError(f"{name} must be comma-separated model id patterns such as anthropic.*, got {get(name)!r}")
    return patterns


def _parameter_prefix(get, name: str) -> str:
    value = _required(get, name)
    if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)*/", value):
        raise SettingsError(f"{name} must be an SSM path starting and ending with /, got {value!r}")
    return value


def _url(get, name: str) -> str | None:
    value = get(name)
    if value is None:
        return None
    if not re.match(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$", value):
        raise SettingsError(f"{name} must be an http(s) URL without query or fragment, got {value!r}")
    return value.rstrip("/")


def _budget(get, name: str) -> Decimal | None:
    """A USD amount of at least 0 with at most 6 decimals, or None for "none"."""
    raw = get(name)
    if raw is None or raw.strip().lower() in ("none", "unlimited"):
        return None
    if not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,6})?", raw.strip()):
        raise SettingsError(f'{name} must be a USD amount such as "10.00", or "none", got {raw!r}')
    return Decimal(raw.strip())


def _number(get, name: str, kind: type, maximum: float | None = None):
    raw = get(name)
    try:
        value = kind(raw)
    except (TypeError, ValueError, InvalidOperation):
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), Decimal("Infinity")):  # NaN is unequal to itself
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    if maximum is not None and not value <= maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {raw!r}")
    return value


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (cached: Lambda reuses them across warm invocations)."""
    return Settings.from_env()
