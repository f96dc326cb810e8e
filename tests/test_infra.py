"""The deployment sources: merge template, per-function IAM policies, Chalice stage config.

Static checks, fast enough for ``make test``. The built artifact and the merged
template are checked by ``tests/test_artifact.py`` (``make test-artifact``),
cfn-lint and checkov by ``make validate``.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import ENV
from tools import policies, stack

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = json.loads((ROOT / "infra" / "template.json").read_text())
RESOURCES = TEMPLATE["Resources"]
CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
FUNCTIONS = {
    "api_handler": "APIHandler",
    "daily_cost_report": "DailyCostReport",
    "ledger_aggregator": "LedgerAggregator",
    "people_sweep": "PeopleSweep",
}
DEPLOYED_STAGES = ("dev", "prod")

#: The only wildcards allowed in our IAM documents, each because AWS offers nothing narrower.
ALLOWED_WILDCARDS = {
    # PutMetricData supports no resource-level permissions; the statement is narrowed by namespace.
    ("PublishPennyworthMetrics", "Resource"),
    # The model families of AllowedBedrockModels (patterns such as anthropic.*), in any region a
    # cross-region profile may send a request to.
    ("InvokeAllowedModels", "Resource"),
    # This account's inference profiles: a profile grant reaches no model without the family's grant.
    ("InvokeThroughOwnInferenceProfiles", "Resource"),
    # Parameters under the stack's ProviderKeyPrefix.
    ("ReadProviderKeys", "Resource"),
    # A customer-managed key's id is unknown here: narrowed to SSM's use, for parameters under the prefix.
    ("DecryptProviderKeysThroughSsm", "Resource"),
    # The GuardrailIds parameter's ids, in any region (a model may be called in a region of its own)
    # and any account in the ARN, pinned to this account by the aws:ResourceAccount condition:
    # CloudFormation cannot join a list with a delimiter holding ${AWS::AccountId}.
    ("ApplyConfiguredGuardrails", "Resource"),
    ("CheckConfiguredGuardrails", "Resource"),
}


def walk_statements(document: Any) -> list[dict[str, Any]]:
    """Every IAM statement in a document, including those inside ``Fn::If`` branches."""
    found: list[dict[str, Any]] = []
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Fn::If" in statement:
            found += [branch for branch in statement["Fn::If"][1:] if "Effect" in branch]
        else:
            found.append(statement)
    return found


def wildcards(statement: dict[str, Any]) -> list[tuple[str, str]]:
    hits = []
    for field in ("Action", "Resource", "NotAction", "NotResource"):
        values = statement.get(field, [])
        for value in values if isinstance(values, list) else [values]:
            text = json.dumps(value)
            if "*" in text:
                hits.append((statement.get("Sid", "?"), field))
    return hits


POLICY_NAMES = (*policies.POLICY_FILES.values(), policies.STREAM_POLICY_FILE)


def policy_documents() -> dict[str, dict[str, Any]]:
    return {name: json.loads((ROOT / ".chalice" / name).read_text()) for name in POLICY_NAMES}


def test_policy_files_are_what_tools_policies_renders() -> None:
    # GIVEN the catalog and the rendering rules WHEN rendered THEN the committed files match
    assert policy_documents() == policies.render(), "run: python -m tools.policies"


@pytest.mark.parametrize("name", sorted(POLICY_NAMES))
def test_policies_have_no_avoidable_wildcard(name: str) -> None:
    document = policy_documents()[name]
    hits = [hit for statement in walk_statements(document) for hit in wildcards(statement)]
    assert set(hits) <= ALLOWED_WILDCARDS, hits


def test_wildcard_check_catches_a_wildcard() -> None:
    statement = {"Sid": "Bad", "Effect": "Allow", "Action": ["dynamodb:*"], "Resource": {"Fn::Sub": "${T.Arn}/index/*"}}
    assert wildcards(statement) == [("Bad", "Action"), ("Bad", "Resource")]


def test_the_streaming_role_calls_models_and_tables_and_nothing_admin() -> None:
    statements = walk_statements(policies.stream_policy())
    actions = {action for statement in statements for action in statement["Action"]}
    assert {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"} <= actions
    assert {a.split(":")[0] for a in actions} == {"logs", "bedrock", "dynamodb", "ssm", "kms"}
    assert {a for a in actions if a.split(":")[0] in ("ssm", "kms")} == {"ssm:GetParameter", "kms:Decrypt"}
    assert statements[0]["Resource"] == {"Fn::GetAtt": ["StreamHandlerLogGroup", "Arn"]}
    # The model routes run the same key, metering and ledger code as the API handler.
    api = {s["Sid"]: s for s in walk_statements(policies.api_policy())}
    for statement in statements[1:]:
        assert statement == api[statement["Sid"]]


def test_metrics_grant_is_limited_to_our_namespace() -> None:
    statement = next(s for s in walk_statements(policies.report_policy()) if s["Sid"] == "PublishPennyworthMetrics")
    assert statement["Action"] == ["cloudwatch:PutMetricData"]
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": ENV["PENNYWORTH_METRICS_NAMESPACE"]}}


def resolve_bedrock_arns(resource: Any, partition: str, models: list[str]) -> list[str]:
    """The ARNs a Bedrock grant names once CloudFormation resolves it (``Fn::If``/``Fn::Split``/``Fn::Join``)."""
    if "Fn::If" in resource:
        condition, special, default = resource["Fn::If"]
        assert condition == "InGovCloud"
        return resolve_bedrock_arns(special if partition == "aws-us-gov" else default, partition, models)
    if "Fn::Split" in resource:
        delimiter, joined = resource["Fn::Split"]
        return resolve_bedrock_arns(joined, partition, models).split(delimiter)  # type: ignore[return-value]
    if "Fn::Join" in resource:
        delimiter, parts = resource["Fn::Join"]
        if parts == {"Ref": "AllowedBedrockModels"}:
            return delimiter.join(models)  # type: ignore[return-value]
        return delimiter.join(resolve_bedrock_arns(part, partition, models) for part in parts)  # type: ignore[return-value]
    assert isinstance(resource, str), resource
    return resource  # type: ignore[return-value]


@pytest.mark.parametrize("partition", ["aws", "aws-us-gov"])
def test_bedrock_grants_are_exactly_the_allowed_families_in_the_stacks_partition(partition: str) -> None:
    import fnmatch

    from chalicelib.catalog.entry import bedrock_base_id

    # GIVEN the template's default families (what a stack deployed with no parameter gets)
    models = TEMPLATE["Parameters"]["AllowedBedrockModels"]["Default"].split(",")
    statement = next(s for s in walk_statements(policies.api_policy()) if s["Sid"] == "InvokeAllowedModels")
    # WHEN CloudFormation resolves the grant
    arns = resolve_bedrock_arns(statement["Resource"], partition, models)
    # THEN it names one foundation-model pattern per family, in the stack's partition, nothing else
    assert arns == [f"arn:{partition}:bedrock:*::foundation-model/{m}" for m in models]
    # AND every Bedrock model of the seed catalog is among them (what the deploy checks too)
    for model in json.loads(policies.CATALOG.read_text())["models"]:
        base = bedrock_base_id(model["model_id"])  # us., global., … profiles send to the family's model
        assert any(fnmatch.fnmatchcase(f"arn:{partition}:bedrock:us-east-1::foundation-model/{base}", a) for a in arns)
    # AND a family left out is not granted
    assert not any(
        fnmatch.fnmatchcase(f"arn:{partition}:bedrock:us-east-1::foundation-model/ai21.jamba-v1", a) for a in arns
    )


def test_guardrails_are_applied_and_checked_only_on_the_stacks_guardrail_ids_in_this_account() -> None:
    for document, sid, action in (
        (policies.api_policy(), "ApplyConfiguredGuardrails", "bedrock:ApplyGuardrail"),
        (policies.api_policy(), "CheckConfiguredGuardrails", "bedrock:GetGuardrail"),
        (policies.stream_policy(), "ApplyConfiguredGuardrails", "bedrock:ApplyGuardrail"),
    ):
        wrapped = next(s for s in document["Statement"] if "Fn::If" in s and s["Fn::If"][1].get("Sid") == sid)
        condition, statement, otherwise = wrapped["Fn::If"]
        # Only when GuardrailIds names some, and nothing otherwise
        assert condition == "HasGuardrails" and otherwise == {"Ref": "AWS::NoValue"}
        assert statement["Action"] == [action]
        assert statement["Condition"] == {"StringEquals": {"aws:ResourceAccount": {"Fn::Sub": "${AWS::AccountId}"}}}
        arns = json.dumps(statement["Resource"])
        assert '"Ref": "GuardrailIds"' in arns and ":guardrail/" in arns
    # The streaming role never checks guardrails (that is the admin API's)
    assert "CheckConfiguredGuardrails" not in json.dumps(policies.stream_policy())
    variables = RESOURCES["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["PENNYWORTH_GUARDRAILS"] == {"Fn::Join": [",", {"Ref": "GuardrailIds"}]}


def test_provider_keys_are_read_only_under_the_prefix_and_decrypted_only_through_ssm() -> None:
    statements = {s["Sid"]: s for s in walk_statements(policies.api_policy())}
    read, decrypt = statements["ReadProviderKeys"], statements["DecryptProviderKeysThroughSsm"]
    assert read["Action"] == ["ssm:GetParameter"]
    condition, given, own = read["Resource"]["Fn::If"]
    # The parameter's prefix when set, else the stack's own: the same choice as the environment's.
    assert [condition, *policies.PROVIDER_KEY_PREFIX["Fn::If"][1:]] == [
        "HasProviderKeyPrefix",
        {"Ref": "ProviderKeyPrefix"},
        {"Fn::Sub": "/pennyworth/${AWS::StackName}/"},
    ]
    assert given["Fn::Sub"].endswith(":parameter${ProviderKeyPrefix}*")
    assert own["Fn::Sub"].endswith(":parameter/pennyworth/${AWS::StackName}/*")
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.${AWS::URLSuffix}"}
    }
    assert decrypt["Condition"]["StringLike"] == {"kms:EncryptionContext:PARAMETER_ARN": read["Resource"]}
    # The function's environment names the same prefix the grant is for.
    variables = RESOURCES["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["PENNYWORTH_PROVIDER_KEY_PREFIX"] == policies.PROVIDER_KEY_PREFIX
    assert variables["PENNYWORTH_ALLOWED_BEDROCK_MODELS"] == {"Fn::Join": [",", {"Ref": "AllowedBedrockModels"}]}
    assert ENV["PENNYWORTH_ALLOWED_BEDROCK_MODELS"] == TEMPLATE["Parameters"]["AllowedBedrockModels"]["Default"]


def test_dynamodb_grants_name_only_our_tables_and_real_indexes() -> None:
    indexes = {
        name: {i["IndexName"] for i in RESOURCES[name]["Properties"].get("GlobalSecondaryIndexes", [])}
        for name in ("KeysTable", "UsageTable", "AuditTable", "CatalogTable")
    }
    for document in policy_documents().values():
        for statement in walk_statements(document):
            if not any(a.startswith("dynamodb:") for a in statement["Action"]):
                continue
            for resource in statement["Resource"]:
                if "Fn::GetAtt" in resource:
                    assert resource["Fn::GetAtt"][0] in indexes
                else:
                    table, index = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/([\w-]+)", resource["Fn::Sub"]).groups()
                    assert index in indexes[table]


def test_every_intrinsic_in_the_policies_names_a_template_resource_or_parameter() -> None:
    known = set(RESOURCES) | set(TEMPLATE["Parameters"]) | set(TEMPLATE["Conditions"]) | {"AWS::NoValue"}
    text = json.dumps(policy_documents())
    names = set(re.findall(r'"Ref": "([\w:]+)"', text)) | set(re.findall(r'"Fn::GetAtt": \["(\w+)"', text))
    names |= {n for n in re.findall(r"\$\{([\w:]+)(?:\.Arn)?\}", text) if not n.startswith("AWS::")}
    names |= set(re.findall(r'"Fn::If": \["(\w+)"', text))
    # Names an Fn::Sub defines in its own variable map are the Sub's, not the template's.
    local = {
        name
        for found in re.findall(r'"Fn::Sub": \["[^"]*", \{([^}]*)', text)
        for name in re.findall(r'"(\w+)":', found)
    }
    assert names - local <= known, names - local - known


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_deployed_stages_use_explicit_policies_per_function(stage: str) -> None:
    config = CONFIG["stages"][stage]
    assert config["autogen_policy"] is False
    assert config["api_gateway_endpoint_type"] == "REGIONAL"
    files = {name: fn["iam_policy_file"] for name, fn in config["lambda_functions"].items()}
    assert files == policies.POLICY_FILES


@pytest.mark.parametrize(("function", "resource"), sorted(FUNCTIONS.items()))
def test_functions_get_their_resources_wired_by_reference(function: str, resource: str) -> None:
    variables = RESOURCES[resource]["Properties"]["Environment"]["Variables"]
    assert set(variables) <= set(ENV)
    assert variables["PENNYWORTH_KEYS_TABLE"] == {"Ref": "KeysTable"}
    assert variables["PENNYWORTH_USAGE_TABLE"] == {"Ref": "UsageTable"}
    assert variables["PENNYWORTH_AUDIT_TABLE"] == {"Ref": "AuditTable"}
    # Every resource override carries its Type: local/bootstrap.py filters resources by it.
    assert RESOURCES[resource]["Type"] == "AWS::Serverless::Function"
    if function == "ledger_aggregator":
        assert variables["PENNYWORTH_USAGE_STREAM_ARN"] == {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
        return  # the aggregator touches nothing but the usage table
    assert variables["PENNYWORTH_COGNITO_USER_POOL_ID"] == {"Ref": "UserPool"}
    assert variables["PENNYWORTH_COGNITO_CLIENT_ID"] == {"Ref": "UserPoolCliClient"}
    assert variables["PENNYWORTH_COGNITO_USER_POOL_ARN"] == {"Fn::GetAtt": ["UserPool", "Arn"]}
    if function == "people_sweep":
        # The sweep enters people (with the default budget) and off-boards them: no report to publish.
        assert variables["PENNYWORTH_DEFAULT_PERSON_BUDGET_USD"] == {"Ref": "DefaultPersonBudgetUSD"}
        return
    assert variables["PENNYWORTH_REPORT_TOPIC_ARN"] == {"Ref": "ReportTopic"}


@pytest.mark.parametrize("resource", sorted(FUNCTIONS.values()))
def test_each_function_has_a_retained_log_group_its_role_can_write(resource: str) -> None:
    group = RESOURCES[f"{resource}LogGroup"]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    suffix = group["Properties"]["LogGroupName"]["Fn::Sub"].rsplit("}", 1)[1]
    assert RESOURCES[resource]["Properties"]["FunctionName"] == {"Fn::Sub": f"${{AWS::StackName}}{suffix}"}
    assert f"{resource}LogGroup" in RESOURCES[resource]["DependsOn"]


@pytest.mark.parametrize(("function", "resource"), sorted(FUNCTIONS.items()))
def test_duration_alarm_fires_at_80_percent_of_the_configured_timeout(function: str, resource: str) -> None:
    for stage in DEPLOYED_STAGES:
        config = CONFIG["stages"][stage]
        timeout = config["lambda_functions"][function].get("lambda_timeout", config["lambda_timeout"])
        assert RESOURCES[f"{resource}DurationAlarm"]["Properties"]["Threshold"] == timeout * 1000 * 0.8


def test_the_aggregator_reads_the_usage_stream_exactly_as_it_needs() -> None:
    from chalicelib.accounting.aggregator import wanted
    from chalicelib.accounting.ledger import STREAM_AGGREGATION

    # GIVEN the usage table's stream and the aggregator's event source
    assert RESOURCES["UsageTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    source = RESOURCES["LedgerAggregator"]["Properties"]["Events"]["LedgerAggregatorDynamodbEventSource"]
    props = source["Properties"]
    assert source["Type"] == "DynamoDB" and props["Stream"] == {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
    # A tumbling window makes Lambda put shardId in the event (the aggregator's exactly-once needs it);
    # one batch per shard at a time, retried whole (never bisected), expired batches to the queue.
    assert props["TumblingWindowInSeconds"] > 0 and props["ParallelizationFactor"] == 1
    assert props["BisectBatchOnFunctionError"] is False and props["MaximumRetryAttempts"] == -1
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["LedgerAggregatorFailures", "Arn"]}
    assert props["StartingPosition"] == "TRIM_HORIZON"
    # The filter lets through exactly what the aggregator sums.
    [only] = props["FilterCriteria"]["Filters"]
    pattern = json.loads(only["Pattern"])
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"aggregation": {"S": [STREAM_AGGREGATION]}}}}
    entry = {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": {"aggregation": {"S": STREAM_AGGREGATION}, "type": {"S": "entry"}}},
    }
    assert wanted(entry) and not wanted({**entry, "eventName": "MODIFY"})
    # Someone is told when the aggregates fall behind or lose records.
    for name, metric in (
        ("LedgerAggregatorIteratorAgeAlarm", "IteratorAge"),
        ("LedgerAggregatorErrorsAlarm", "Errors"),
    ):
        alarm = RESOURCES[name]["Properties"]
        assert alarm["MetricName"] == metric and alarm["Dimensions"][0]["Value"] == {"Ref": "LedgerAggregator"}
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    queue = RESOURCES["LedgerAggregatorFailuresAlarm"]["Properties"]
    assert queue["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["LedgerAggregatorFailures", "QueueName"]}


def test_app_declares_the_aggregator_chalice_packages() -> None:
    from app import app

    [source] = [s for s in app.event_sources if s.name == "ledger_aggregator"]
    assert source.starting_position == "TRIM_HORIZON" and "LedgerAggregator" in RESOURCES


def test_gateway_errors_are_openai_envelopes_with_cors() -> None:
    responses = RESOURCES["RestAPI"]["Properties"]["GatewayResponses"]
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for response in responses.values():
        assert response["ResponseParameters"]["Headers"]["Access-Control-Allow-Origin"] == "'*'"
        template = response["ResponseTemplates"]["application/json"]
        # $context.error.messageString is already a quoted JSON string: substitute a sample.
        body = json.loads(template.replace("$context.error.messageString", '"Missing Authentication Token"'))
        assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["param"] is None


def test_authorizer_trusts_this_stacks_user_pool() -> None:
    definitions = RESOURCES["RestAPI"]["Properties"]["DefinitionBody"]["securityDefinitions"]
    app_source = (ROOT / "app.py").read_text()
    for name, definition in definitions.items():
        assert f'"{name}"' in app_source, f"authorizer {name} is not declared in app.py"
        assert definition["x-amazon-apigateway-authorizer"]["providerARNs"] == [{"Fn::GetAtt": ["UserPool", "Arn"]}]


def test_tables_are_on_demand_encrypted_and_recoverable() -> None:
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            props = resource["Properties"]
            assert props["BillingMode"] == "PAY_PER_REQUEST", name
            assert props["SSESpecification"]["SSEEnabled"] is True, name
            assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
            assert resource["DeletionPolicy"] == "Retain", name


def test_cost_alarm_watches_the_metric_the_report_publishes() -> None:
    from chalicelib.accounting.reports import metric_data

    names = {datum["MetricName"] for datum in metric_data(__import__("datetime").date(2026, 1, 1), _report())}
    props = RESOURCES["CostSpikeAlarm"]["Properties"]
    assert props["Namespace"] == ENV["PENNYWORTH_METRICS_NAMESPACE"] and props["MetricName"] in names
    assert props["Dimensions"] == []


def _report() -> dict[str, Any]:
    row = {"cost_usd": "1.5", "requests": 3, "input_tokens": 10, "output_tokens": 5}
    return {"total": row, "by_model": [{"id": "nova-micro", **row}]}


def test_github_oidc_role_is_pinned_and_passes_only_our_roles() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation short-form tags (!Sub, !Ref, …) as plain values.
    Loader.add_multi_constructor(
        "!",
        lambda loader, suffix, node: {
            suffix: loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_scalar(node)
        },
    )
    role = yaml.load((ROOT / "infra" / "github-oidc-role.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    trust = role["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    conditions = trust["Condition"]
    assert conditions["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    subjects = json.dumps(conditions["StringEquals"]["token.actions.githubusercontent.com:sub"])
    assert "*" not in subjects and "repo:" in subjects
    documents = [
        role["Resources"][name]["Properties"]["PolicyDocument"] for name in ("DeployPolicy", "ChaliceDeployPolicy")
    ]
    execution = role["Resources"]["CloudFormationExecutionRole"]["Properties"]
    documents += [policy["PolicyDocument"] for policy in execution["Policies"]]
    pass_role = [s for d in documents for s in d["Statement"] if "iam:PassRole" in json.dumps(s["Action"])]
    assert len(pass_role) == 3  # the execution role, and the function roles (by CloudFormation and by chalice deploy)
    for statement in pass_role:
        # Exact role ARNs only, each limited to the one service it is handed to.
        assert "*" not in json.dumps(statement["Resource"])
        assert set(statement["Condition"]["StringEquals"]) == {"iam:PassedToService"}
    # Each function's role in each deployed stage, once: a function added to the stack is passed by both paths.
    function_roles = [
        {"Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/${{AppName}}-{stage}-{function.suffix}"}
        for stage in DEPLOYED_STAGES
        for function in stack.FUNCTIONS
    ]
    to_lambda = [
        s for s in pass_role if s["Condition"]["StringEquals"]["iam:PassedToService"] == "lambda.amazonaws.com"
    ]
    assert len(to_lambda) == 2 and all(s["Resource"] == function_roles for s in to_lambda)
    assert all(s["Action"] != "*" for d in documents for s in d["Statement"])


#: What CloudFormation calls to create each resource type the template holds (its handler's create
#: permissions, as the resource schemas list them; the first one each needs).
CREATE_ACTIONS = {
    "AWS::ApiGateway::BasePathMapping": "apigateway:POST",
    "AWS::ApiGateway::DomainName": "apigateway:POST",
    "AWS::CloudWatch::Alarm": "cloudwatch:PutMetricAlarm",
    "AWS::CloudWatch::Dashboard": "cloudwatch:PutDashboard",
    "AWS::Cognito::ManagedLoginBranding": "cognito-idp:CreateManagedLoginBranding",
    "AWS::Cognito::UserPool": "cognito-idp:CreateUserPool",
    "AWS::Cognito::UserPoolClient": "cognito-idp:CreateUserPoolClient",
    "AWS::Cognito::UserPoolDomain": "cognito-idp:CreateUserPoolDomain",
    "AWS::Cognito::UserPoolGroup": "cognito-idp:CreateGroup",
    "AWS::DynamoDB::Table": "dynamodb:CreateTable",
    "AWS::IAM::Role": "iam:CreateRole",
    "AWS::Logs::LogGroup": "logs:CreateLogGroup",
    "AWS::Logs::MetricFilter": "logs:PutMetricFilter",
    "AWS::SNS::Subscription": "sns:Subscribe",
    "AWS::SNS::Topic": "sns:CreateTopic",
    "AWS::SQS::Queue": "sqs:CreateQueue",
    "AWS::Serverless::Api": "apigateway:POST",
    "AWS::Serverless::Function": "lambda:CreateFunction",
    "AWS::Serverless::LayerVersion": "lambda:PublishLayerVersion",
}


def test_the_deploy_role_can_create_every_resource_type_the_template_holds() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    role = yaml.load((ROOT / "infra" / "github-oidc-role.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    execution = role["Resources"]["CloudFormationExecutionRole"]["Properties"]
    granted = {
        action
        for policy in execution["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    types = {resource["Type"] for resource in RESOURCES.values()}
    # A type added to the template needs its create action here, and in the role (IAM is not
    # enforced by the offline rehearsal, so this is where a missing grant shows).
    assert types <= set(CREATE_ACTIONS), sorted(types - set(CREATE_ACTIONS))
    assert {t: CREATE_ACTIONS[t] for t in types if CREATE_ACTIONS[t] not in granted} == {}


GATEWAY_RESPONSES = RESOURCES["RestAPI"]["Properties"]["GatewayResponses"]


@pytest.mark.parametrize("kind", sorted(GATEWAY_RESPONSES))
def test_gateway_responses_never_repeat_what_the_caller_sent(kind: str) -> None:
    # API Gateway's messageString for an unknown route carries the whole Authorization header
    # ("Authorization=Bearer pw-…"): no response may include it, nor any request value.
    text = json.dumps(GATEWAY_RESPONSES[kind])
    for leak in ("messageString", "$input", "$method.request", "$util"):
        assert leak not in text, (kind, leak)
    body = json.loads(GATEWAY_RESPONSES[kind]["ResponseTemplates"]["application/json"])
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]


def test_unknown_routes_on_aws_are_openai_404s() -> None:
    missing = GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == 404
    body = json.loads(missing["ResponseTemplates"]["application/json"])
    assert body["error"]["code"] == "unknown_url" and body["error"]["type"] == "invalid_request_error"


#: The stack's URLs with sample values for CloudFormation's substitutions.
SAMPLE = {
    "RestAPI": "abc123",
    "AWS::Region": "eu-west-1",
    "AWS::URLSuffix": "amazonaws.com",
    "CustomDomainName": "llm.example.com",
}


def substitute(value: Any) -> str:
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{([\w:]+)\}", lambda m: SAMPLE[m.group(1)], text)


def test_one_stage_name_for_every_deployed_stage_and_it_is_not_v1() -> None:
    # The stage is the first path segment of the execute-api URL; the routes start with /v1. A stage
    # named v1 made the OpenAI base URL …/v1/v1. Alarms and the dashboard name the stage too.
    stages = {CONFIG["stages"][stage]["api_gateway_stage"] for stage in DEPLOYED_STAGES}
    assert stages == {"api"}
    text = json.dumps(TEMPLATE)
    named = set(re.findall(r'"Name": "Stage",\s*"Value": "(\w+)"', text))
    named |= set(re.findall(r'\\"Stage\\", \\"(\w+)\\"', text))
    assert named == stages


@pytest.mark.parametrize("custom_domain", [False, True])
def test_the_openai_base_url_output_is_what_an_sdk_and_the_cli_need(custom_domain: bool) -> None:
    from app import app
    from cli.config import gateway_root

    output = TEMPLATE["Outputs"]["OpenAIBaseURL"]["Value"]
    condition, with_domain, without = output["Fn::If"]
    assert condition == "HasCustomDomain"
    url = substitute(with_domain if custom_domain else without)
    root = "https://llm.example.com" if custom_domain else "https://abc123.execute-api.eu-west-1.amazonaws.com/api"
    assert url == f"{root}/v1"
    # An OpenAI SDK appends its paths to the base URL: they must be routes the app has.
    for sdk_path in ("/models", "/embeddings"):
        assert f"/v1{sdk_path}" in app.routes
    # The CLI finds the admin API from the same URL.
    assert gateway_root(url) == root and "/admin/keys" in app.routes


#: The log events an operator must see, by the metric the template counts them in.
LEDGER_EVENTS = {
    "UsageUnrecorded": "usage_unrecorded",
    "ReservationUnreleased": "reservation_unreleased",
    "UsageCapped": "usage_capped",
}
#: And answers cut at the function's time limit (a sign the timeout is too short for the answers asked).
COUNTED_LINES = {**LEDGER_EVENTS, "AnswersCutAtTimeLimit": "failure=answer_time_limit"}
METRIC_FILTERS = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::Logs::MetricFilter"]


def filter_selects(pattern: str) -> tuple[str, str]:
    """The field and value a ``{ $.field = "value" }`` metric filter pattern selects (the only shape we use)."""
    match = re.fullmatch(r'\{ \$\.([a-z_]+) = "([a-z_]+)" \}', pattern)
    assert match, pattern
    return match.group(1), match.group(2)


def filter_event(pattern: str) -> str:
    field, value = filter_selects(pattern)
    return value if field == "event" else f"{field}={value}"


def test_ledger_log_events_are_counted_from_every_function_that_bills_and_unrecorded_bills_alarm() -> None:
    from chalicelib.accounting.ledger import CAPPED_EVENT, UNRECORDED_EVENT, UNRELEASED_EVENT

    assert set(LEDGER_EVENTS.values()) == {UNRECORDED_EVENT, UNRELEASED_EVENT, CAPPED_EVENT}
    counted = {
        (f["LogGroupName"]["Ref"], filter_event(f["FilterPattern"]), t["MetricName"], t["MetricNamespace"])
        for f in METRIC_FILTERS
        for t in f["MetricTransformations"]
    }
    # Both functions that bill (buffered routes and streamed ones) count each event in its metric; and both
    # that serve models count the catalog items they cannot read.
    assert counted - {c for c in counted if c[2] == "CatalogItemUnreadable"} == {
        (f"{function}LogGroup", event, metric, "Pennyworth")
        for function in ("APIHandler", "StreamHandler")
        for metric, event in COUNTED_LINES.items()
    }
    alarm = RESOURCES["UsageUnrecordedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("Pennyworth", "UsageUnrecorded", "Sum")
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and "reconcile" in alarm["AlarmDescription"]


def test_an_unreadable_catalog_item_is_counted_from_both_functions_and_alarms() -> None:
    from chalicelib.catalog.store import UNREADABLE_EVENT

    counted = {
        (f["LogGroupName"]["Ref"], filter_event(f["FilterPattern"]), t["MetricName"])
        for f in METRIC_FILTERS
        for t in f["MetricTransformations"]
        if t["MetricName"] == "CatalogItemUnreadable"
    }
    assert counted == {
        (f"{fn}LogGroup", UNREADABLE_EVENT, "CatalogItemUnreadable") for fn in ("APIHandler", "StreamHandler")
    }
    alarm = RESOURCES["CatalogItemUnreadableAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "CatalogItemUnreadable",
        0,
        "GreaterThanThreshold",
    )
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_metric_filters_match_the_log_lines_the_ledger_writes(usage_table, service_logs) -> None:
    from unittest import mock

    from botocore.exceptions import ClientError

    from chalicelib.accounting.ledger import Ledger, Release
    from chalicelib.shared.dynamodb import plain_client
    from tests.factories import usage_entry

    # GIVEN DynamoDB refusing every write
    ledger = Ledger(usage_table, backoff_seconds=0)
    refusal = ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "PutItem")
    with mock.patch.object(plain_client(usage_table), "put_item", side_effect=refusal):
        # WHEN a bill and a release cannot be stored
        assert ledger.record(usage_entry()) is False
        release = Release(
            ticket_id="t1", key_id="k1", owner_sub="owner-1", budget_month="2026-11",
            reserved={"KEY#k1": Decimal("0.1")}, rate_window=None, counted_tokens=0, timestamp="2026-11-26T10:00:00Z",
        )  # fmt: skip
        assert ledger.record_release(release) is False
    # THEN the JSON lines CloudWatch gets are exactly what the template's filters select
    events = [json.loads(line).get("event") for line in service_logs.lines()]
    patterns = {
        filter_event(r["Properties"]["FilterPattern"])
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Logs::MetricFilter"
    }
    assert {"usage_unrecorded", "reservation_unreleased"} <= set(events) & patterns
