"""Builds the objects routes use, once per process (warm Lambdas reuse them).

The ``Chalice todo-app`` pattern: cached accessors, each reading settings once.
Nothing here runs at import time; ``reset()`` clears every cache (tests).
"""

from __future__ import annotations

import functools
from typing import Any

from chalicelib.catalog import Catalog, load_catalog
from chalicelib.gateway import Gateway, UpstreamConfig
from chalicelib.keys import KeyStore
from chalicelib.ledger import Ledger
from chalicelib.metering import Meter
from chalicelib.reports import ReportConfig, ReportService
from chalicelib.service import OpenAIService
from chalicelib.settings import get_settings


@functools.cache
def dynamodb() -> Any:
    """The boto3 DynamoDB resource (moto when ``PENNYWORTH_AWS_ENDPOINT_URL`` is set)."""
    import boto3

    settings = get_settings()
    return boto3.resource("dynamodb", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)


@functools.cache
def catalog() -> Catalog:
    """The model catalog, loaded and priced on first use."""
    settings = get_settings()
    return load_catalog(settings.catalog_path, region=settings.bedrock_region)


@functools.cache
def key_store() -> KeyStore:
    return KeyStore(dynamodb().Table(get_settings().keys_table))


@functools.cache
def ledger() -> Ledger:
    return Ledger(dynamodb().Table(get_settings().usage_table))


@functools.cache
def meter() -> Meter:
    return Meter(ledger())


@functools.cache
def gateway() -> Gateway:
    settings = get_settings()
    return Gateway(
        UpstreamConfig(
            region=settings.bedrock_region,
            endpoint_url=settings.bedrock_endpoint_url,
            timeout_seconds=settings.upstream_timeout_seconds,
        )
    )


@functools.cache
def openai_service() -> OpenAIService:
    """The ``/v1`` service with its real dependencies."""
    return OpenAIService(
        keys=key_store(),
        catalog=catalog,
        gateway=gateway(),
        meter=meter(),
        max_body_bytes=get_settings().max_body_bytes,
    )


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


def reset() -> None:
    """Forget every cached object and the settings (tests change the environment)."""
    get_settings.cache_clear()
    for accessor in list(globals().values()):
        # Every functools.cache accessor in this module, including ones added later.
        if callable(getattr(accessor, "cache_clear", None)) and getattr(accessor, "__module__", None) == __name__:
            accessor.cache_clear()
