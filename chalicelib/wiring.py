"""Builds the objects routes use, once per process (warm Lambdas reuse them).

The ``Chalice todo-app`` pattern: cached accessors, each reading settings once.
Nothing here runs at import time; ``reset()`` clears every cache (tests).
"""

from __future__ import annotations

import functools
from typing import Any

from chalicelib.accounting.aggregator import Aggregator
from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.accounting.reports import ReportConfig, ReportService
from chalicelib.admin.accounting import AccountingService
from chalicelib.admin.auth import AdminAuthenticator, UserDirectory, authenticator_for_pool
from chalicelib.admin.guardrails import GuardrailCheck
from chalicelib.admin.keys import AdminService
from chalicelib.catalog.catalog import Catalog, load_catalog
from chalicelib.console import ConsoleConfig, ConsoleSite
from chalicelib.gateway import Gateway, Resilience, UpstreamConfig
from chalicelib.keys.audit import AuditLog, DeniedUseRecorder
from chalicelib.keys.store import KeyStore
from chalicelib.protocols.route import Route
from chalicelib.service.service import ModelService
from chalicelib.settings import get_settings
from chalicelib.shared.dynamodb import Attempts
from chalicelib.shared.dynamodb import resource as dynamodb_resource

#: botocore attempts per call for tables without retry loops of their own (keys, audit, reports).
GENERAL_ATTEMPTS = 3


@functools.cache
def dynamodb() -> Any:
    """The boto3 DynamoDB resource (moto when ``PENNYWORTH_AWS_ENDPOINT_URL`` is set).

    Bounded connect/read timeouts and a few botocore attempts, so a stalled
    DynamoDB fails a request in seconds rather than minutes; every number is
    written in positional notation (``chalicelib/shared/dynamodb.py``).
    """
    settings = get_settings()
    return dynamodb_resource(
        region=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        timeout_seconds=settings.dynamodb_timeout_seconds,
        attempts=GENERAL_ATTEMPTS,
    )


@functools.cache
def ledger_dynamodb() -> Any:
    """The resource the ledger, meter and aggregator use: one botocore attempt per call.

    Their own retry loop (``chalicelib/shared/dynamodb.py: Attempts``) retries within the
    caller's deadline, which botocore's retries cannot know.
    """
    settings = get_settings()
    return dynamodb_resource(
        region=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        timeout_seconds=settings.dynamodb_timeout_seconds,
        attempts=1,
    )


def _attempts() -> Attempts:
    # An attempt can take a connect timeout plus a read timeout.
    return Attempts(attempt_seconds=2 * get_settings().dynamodb_timeout_seconds)


@functools.cache
def catalog() -> Catalog:
    """The model catalog, loaded and priced on first use."""
    settings = get_settings()
    return load_catalog(settings.catalog_path, region=settings.bedrock_region, guardrails=settings.guardrails)


@functools.cache
def key_store() -> KeyStore:
    # Uses of revoked or expired keys (with the right secret) land in the audit log, rate-limited.
    return KeyStore(dynamodb().Table(get_settings().keys_table), on_denied=DeniedUseRecorder(audit_log()))


@functools.cache
def audit_log() -> AuditLog:
    return AuditLog(dynamodb().Table(get_settings().audit_table))


@functools.cache
def ledger() -> Ledger:
    settings = get_settings()
    return Ledger(
        ledger_dynamodb().Table(settings.usage_table),
        attempts=_attempts(),
        deadline_seconds=settings.ledger_deadline_seconds,
    )


@functools.cache
def meter() -> Meter:
    return Meter(ledger())


@functools.cache
def aggregator() -> Aggregator:
    """Applies the usage table's stream to its aggregates (the ``ledger_aggregator`` function)."""
    return Aggregator(ledger_dynamodb().Table(get_settings().usage_table), attempts=_attempts())


@functools.cache
def gateway() -> Gateway:
    settings = get_settings()
    return Gateway(
        UpstreamConfig(
            region=settings.bedrock_region,
            endpoint_url=settings.bedrock_endpoint_url,
            timeout_seconds=settings.upstream_timeout_seconds,
        ),
        # Cooldowns and the retry quota: per warm function (docs/resilience.md says why not shared).
        resilience=Resilience(default_cooldown=settings.throttle_cooldown_seconds),
    )


@functools.cache
def model_service() -> ModelService:
    """The model service: admission, the Bedrock call and billing, shared by every protocol adapter."""
    return ModelService(catalog=catalog, gateway=gateway(), meter=meter())


@functools.cache
def adapter[R: Route](cls: type[R]) -> R:
    """The protocol adapter route ``cls`` (``ChatCompletions``, ``Messages``, ``McpServer``, …), built once.

    Every adapter route stands on the same three things: the key store, the model service and the
    body size limit (``chalicelib/protocols/route.py``).
    """
    return cls(keys=key_store(), models=model_service(), max_body_bytes=get_settings().max_body_bytes)


@functools.cache
def aws_client(service: str) -> Any:
    """A boto3 client for ``service`` in our region (moto's endpoint locally)."""
    import boto3

    settings = get_settings()
    return boto3.client(service, region_name=settings.region, endpoint_url=settings.aws_endpoint_url)


@functools.cache
def report_service() -> ReportService:
    """The daily cost report, publishing to CloudWatch, SNS and (optionally) Slack."""
    settings = get_settings()
    config = ReportConfig(
        topic_arn=settings.report_topic_arn,
        slack_parameter=settings.slack_webhook_parameter,
        spike_threshold_usd=settings.spike_threshold_usd,
        spike_factor=settings.spike_factor,
        namespace=settings.metrics_namespace,
    )
    return ReportService(
        ledger(),
        dynamodb().Table(settings.keys_table),
        config,
        cloudwatch=aws_client("cloudwatch"),
        sns=aws_client("sns"),
        ssm=aws_client("ssm"),
    )


@functools.cache
def cognito() -> Any:
    """The boto3 Cognito user pools client (moto's endpoint locally)."""
    import boto3

    settings = get_settings()
    return boto3.client("cognito-idp", region_name=settings.region, endpoint_url=settings.cognito_endpoint_url)


@functools.cache
def user_directory() -> UserDirectory | None:
    pool_id = get_settings().cognito_user_pool_id
    return UserDirectory(cognito(), pool_id) if pool_id else None


@functools.cache
def admin_authenticator() -> AdminAuthenticator:
    """Verifies admin API tokens against the configured pool (raises when none is configured)."""
    settings = get_settings()
    return authenticator_for_pool(
        user_pool_id=settings.cognito_user_pool_id,
        client_id=settings.cognito_client_id,
        region=settings.region,
        endpoint_url=settings.cognito_endpoint_url,
        directory=user_directory(),
        console_client_id=settings.cognito_console_client_id,
    )


@functools.cache
def guardrail_check() -> GuardrailCheck:
    """Checks a guardrail an admin configures: in the stack's list, and known to Bedrock's control plane."""
    import boto3

    settings = get_settings()
    bedrock = boto3.client("bedrock", region_name=settings.bedrock_region, endpoint_url=settings.bedrock_endpoint_url)
    return GuardrailCheck(settings.guardrails, bedrock, settings.bedrock_region)


@functools.cache
def admin_service() -> AdminService:
    """The ``/admin`` service with its real dependencies."""
    return AdminService(
        authenticator=admin_authenticator,
        keys=key_store(),
        audit=audit_log(),
        catalog=catalog,
        directory=user_directory,
        max_body_bytes=get_settings().max_body_bytes,
        guardrails=lambda guardrail: guardrail_check()(guardrail),
    )


@functools.cache
def accounting_service() -> AccountingService:
    """Usage reports, owner budgets, the daily report on demand, ledger reconcile (``/admin``)."""
    return AccountingService(
        authenticator=admin_authenticator,
        keys=key_store(),
        ledger=ledger(),
        meter=meter(),
        reports=report_service,
        directory=user_directory,
        max_body_bytes=get_settings().max_body_bytes,
    )


@functools.cache
def console_site() -> ConsoleSite:
    """The web console's page and assets, configured for this stage's sign-in."""
    settings = get_settings()
    config = ConsoleConfig(
        auth_url=settings.console_auth_url,
        client_id=settings.cognito_console_client_id,
        local=settings.stage == "local",
    )
    return ConsoleSite(config)


def reset() -> None:
    """Forget every cached object and the settings (tests change the environment)."""
    get_settings.cache_clear()
    for accessor in list(globals().values()):
        # Every functools.cache accessor in this module, including ones added later.
        if callable(getattr(accessor, "cache_clear", None)) and getattr(accessor, "__module__", None) == __name__:
            accessor.cache_clear()
