"""Builds the objects routes use, once per process (warm Lambdas reuse them).

The ``Chalice todo-app`` pattern: cached accessors, each reading settings once.
Nothing here runs at import time; ``reset()`` clears every cache (tests). What
only the admin API, the console, the reports and the aggregator use is imported
by its accessor, so a model route's cold start does not load it (~20 ms).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.catalog import Catalog, CatalogStore, LiveCatalog, Rules, seed_documents
from chalicelib.gateway import Gateway, Resilience, UpstreamConfig
from chalicelib.gateway.secrets import ParameterSecrets
from chalicelib.keys.audit import AuditLog, DeniedUseRecorder
from chalicelib.keys.store import KeyStore
from chalicelib.keys.teams import TeamPolicies, team_reader
from chalicelib.protocols.route import Route
from chalicelib.service.service import ModelService
from chalicelib.settings import get_settings
from chalicelib.shared.dynamodb import Attempts
from chalicelib.shared.dynamodb import resource as dynamodb_resource

if TYPE_CHECKING:  # imported by their accessors below: a model route's cold start never loads them
    from chalicelib.accounting.aggregator import Aggregator
    from chalicelib.accounting.reports import ReportService, TeamInfo
    from chalicelib.admin.accounting import AccountingService
    from chalicelib.admin.auth import AdminAuthenticator, UserDirectory
    from chalicelib.admin.directory import Directory
    from chalicelib.admin.guardrail_prices import GuardrailPriceAdmin
    from chalicelib.admin.guardrails import GuardrailCheck
    from chalicelib.admin.keys import AdminService
    from chalicelib.admin.models import ModelAdmin
    from chalicelib.admin.people import PeopleService, UserPool
    from chalicelib.admin.requests import RequestLog
    from chalicelib.admin.teams import TeamsService
    from chalicelib.console import ConsoleSite

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


def catalog_rules() -> Rules:
    """What admins may add to this stack's catalog (its template parameters, as settings)."""
    settings = get_settings()
    return Rules(
        region=settings.bedrock_region,
        allowed_bedrock_models=settings.allowed_bedrock_models,
        provider_key_prefix=settings.provider_key_prefix,
        guardrails=settings.guardrails,
    )


@functools.cache
def catalog_store() -> CatalogStore:
    """The catalog table; a new stack's catalog is seeded from the packaged file on first read."""
    settings = get_settings()
    # The seed is what the stack was deployed with (the deploy checks it against AllowedBedrockModels).
    seed = lambda: seed_documents(settings.catalog_path, rules=Rules(region=settings.bedrock_region))  # noqa: E731
    return CatalogStore(dynamodb().Table(settings.catalog_table), seed=seed)


@functools.cache
def live_catalog() -> LiveCatalog:
    """This function's catalog snapshot, fresh within 30 s (``chalicelib/catalog/live.py``)."""
    store = catalog_store()
    return LiveCatalog(version=store.version, load=store.load, wait_seconds=2 * get_settings().dynamodb_timeout_seconds)


def catalog() -> Catalog:
    """The model catalog as this request sees it (a snapshot in memory; see ``live_catalog``)."""
    return live_catalog()()


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
    from chalicelib.accounting.aggregator import Aggregator

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
        secret=provider_secrets(),
    )


@functools.cache
def provider_secrets() -> ParameterSecrets:
    """Provider API keys from SSM (SecureStrings under the stack's prefix), read when first needed."""
    return ParameterSecrets(lambda: aws_client("ssm"), prefix=get_settings().provider_key_prefix)


@functools.cache
def model_service() -> ModelService:
    """The model service: admission, the Bedrock call and billing, shared by every protocol adapter."""
    live = live_catalog()
    return ModelService(
        catalog=catalog,
        gateway=gateway(),
        meter=meter(),
        prefetch=live.prefetch,
        recheck=live.recheck,
        team_policy=team_policies(),
    )


@functools.cache
def team_policies() -> TeamPolicies:
    """Each team's guardrail as this function last read it, fresh within 30 s (``chalicelib/keys/teams.py``)."""
    return TeamPolicies(team_reader(dynamodb().Table(get_settings().usage_table)))


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
    from chalicelib.accounting.reports import ReportConfig, ReportService

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
        describe_teams=describe_teams,
    )


def describe_teams(team_ids: list[str]) -> dict[str, TeamInfo]:
    """Each team's name and its admins' e-mail addresses (the daily report names them in budget alerts)."""
    from chalicelib.accounting.reports import TeamInfo

    found = directory().teams_by_id(team_ids)
    return {
        team_id: TeamInfo(
            team.name,
            tuple(sorted(m.email or m.sub for m in directory().members(team_id) if m.role == "admin")),
        )
        for team_id, team in found.items()
    }


@functools.cache
def cognito() -> Any:
    """The boto3 Cognito user pools client (moto's endpoint locally)."""
    import boto3

    settings = get_settings()
    return boto3.client("cognito-idp", region_name=settings.region, endpoint_url=settings.cognito_endpoint_url)


@functools.cache
def user_directory() -> UserDirectory | None:
    from chalicelib.admin.auth import UserDirectory

    pool_id = get_settings().cognito_user_pool_id
    return UserDirectory(cognito(), pool_id) if pool_id else None


@functools.cache
def admin_authenticator() -> AdminAuthenticator:
    """Verifies admin API tokens against the configured pool (raises when none is configured)."""
    from chalicelib.admin.auth import authenticator_for_pool

    settings = get_settings()
    return authenticator_for_pool(
        user_pool_id=settings.cognito_user_pool_id,
        client_id=settings.cognito_client_id,
        region=settings.region,
        endpoint_url=settings.cognito_endpoint_url,
        directory=user_directory(),
        console_client_id=settings.cognito_console_client_id,
        on_authenticated=lambda principal: people_service().appear(principal),
    )


@functools.cache
def directory() -> Directory:
    """People, teams and memberships (in the usage table)."""
    from chalicelib.admin.directory import Directory

    return Directory(dynamodb().Table(get_settings().usage_table))


@functools.cache
def user_pool() -> UserPool | None:
    from chalicelib.admin.people import UserPool

    pool_id = get_settings().cognito_user_pool_id
    return UserPool(cognito(), pool_id) if pool_id else None


@functools.cache
def people_service() -> PeopleService:
    """``/admin/people``: invitations, off-boarding, the sweep, and the first appearance of every caller."""
    from chalicelib.admin.people import PeopleConfig, PeopleService

    settings = get_settings()
    return PeopleService(
        authenticator=admin_authenticator,
        directory=directory(),
        keys=key_store(),
        audit=audit_log(),
        meter=meter(),
        pool=user_pool,
        users=user_directory,
        config=PeopleConfig(default_budget_usd=settings.default_person_budget_usd, local=settings.stage == "local"),
        max_body_bytes=settings.max_body_bytes,
    )


@functools.cache
def teams_service() -> TeamsService:
    """``/admin/teams``: teams, their budgets and members."""
    from chalicelib.admin.teams import TeamsService

    return TeamsService(
        authenticator=admin_authenticator,
        directory=directory(),
        people=people_service(),
        keys=key_store(),
        audit=audit_log(),
        meter=meter(),
        ledger=ledger(),
        max_body_bytes=get_settings().max_body_bytes,
        guardrails=lambda guardrail: guardrail_check()(guardrail),
        remember=team_policies().remember,
    )


@functools.cache
def guardrail_check() -> GuardrailCheck:
    """Checks a guardrail an admin configures: in the stack's list, and known to Bedrock's control plane."""
    import boto3

    from chalicelib.admin.guardrails import GuardrailCheck

    settings = get_settings()
    bedrock = boto3.client("bedrock", region_name=settings.bedrock_region, endpoint_url=settings.bedrock_endpoint_url)
    return GuardrailCheck(settings.guardrails, bedrock, settings.bedrock_region)


@functools.cache
def admin_service() -> AdminService:
    """The ``/admin`` service with its real dependencies."""
    from chalicelib.admin.keys import AdminService

    return AdminService(
        authenticator=admin_authenticator,
        keys=key_store(),
        audit=audit_log(),
        # An admin's view of the catalog is never older than the table (a key may name a model just added).
        catalog=lambda: live_catalog().refresh(),
        directory=user_directory,
        max_body_bytes=get_settings().max_body_bytes,
        month_costs=ledger().month_costs,
        guardrails=lambda guardrail: guardrail_check()(guardrail),
        people=people_service(),
        teams=directory(),
        meter=meter(),
    )


@functools.cache
def price_map() -> dict[str, Any]:
    """LiteLLM's pinned price map, read once per process when an admin adds or reprices a model."""
    from chalicelib.catalog.prices import bundled_price_map

    return bundled_price_map()


@functools.cache
def model_admin() -> ModelAdmin:
    """``/admin/models``: the catalog's admin API over its table, this function's snapshot, keys and audit."""
    from chalicelib.admin.models import ModelAdmin

    settings = get_settings()
    service = model_service()
    return ModelAdmin(
        authenticator=admin_authenticator,
        store=catalog_store(),
        live=live_catalog(),
        keys=key_store(),
        audit=audit_log(),
        rules=catalog_rules,
        price_map=price_map,
        check_key=provider_secrets().check,
        probe=lambda key, model, deadline: service.probe(key, model, deadline=deadline),
        max_body_bytes=settings.max_body_bytes,
        # The test answers on the buffered API function: inside API Gateway's 29 s.
        test_seconds=min(20.0, settings.upstream_timeout_seconds),
        guardrails=lambda guardrail: guardrail_check()(guardrail),
    )


@functools.cache
def guardrail_price_admin() -> GuardrailPriceAdmin:
    """``/admin/guardrail-prices``: the operator's guardrail prices, in the catalog table."""
    from chalicelib.admin.guardrail_prices import GuardrailPriceAdmin

    settings = get_settings()
    return GuardrailPriceAdmin(
        authenticator=admin_authenticator,
        store=catalog_store(),
        live=live_catalog(),
        audit=audit_log(),
        region=settings.bedrock_region,
        max_body_bytes=settings.max_body_bytes,
    )


@functools.cache
def accounting_service() -> AccountingService:
    """Usage reports, owner budgets, the daily report on demand, ledger reconcile (``/admin``)."""
    from chalicelib.admin.accounting import AccountingService

    return AccountingService(
        authenticator=admin_authenticator,
        keys=key_store(),
        ledger=ledger(),
        meter=meter(),
        reports=report_service,
        directory=user_directory,
        max_body_bytes=get_settings().max_body_bytes,
        price_versions=lambda: {
            alias: list(doc.get("price_versions") or []) for alias, doc in catalog_store().read().documents.items()
        },
        teams=directory(),
        people=people_service(),
        audit=audit_log(),
    )


@functools.cache
def request_log() -> RequestLog:
    """The request log (``GET /admin/requests``): billed requests from the ledger, a page at a time."""
    from chalicelib.admin.requests import RequestLog

    return RequestLog(
        authenticator=admin_authenticator,
        keys=key_store(),
        ledger=ledger(),
        directory=user_directory,
        teams=directory(),
    )


@functools.cache
def console_site() -> ConsoleSite:
    """The web console's page and assets, configured for this stage's sign-in."""
    from chalicelib.console import ConsoleConfig, ConsoleSite

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
