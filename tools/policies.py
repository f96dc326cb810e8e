"""The functions' IAM policies: ``.chalice/policy-*.json``, written from this module.

``python -m tools.policies`` rewrites the files; ``tests/test_infra.py`` fails
when a file differs from what this module renders, so the files stay explicit
and reviewable.

The documents hold CloudFormation intrinsics (``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``):
Chalice copies a policy file verbatim into its role resource, and the table, pool,
topic and log group ARNs, and the template's parameters (``AllowedBedrockModels``,
``ProviderKeyPrefix``), exist only in the deployed template, so CloudFormation resolves
them at deploy time.

Models are added at run time (``pennyworth models add``), so Bedrock grants follow the
``AllowedBedrockModels`` parameter (model-id patterns, e.g. ``anthropic.*``), not a file:
the API refuses to add a model outside them, and the role could not invoke one anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "chalicelib" / "catalog" / "catalog.json"
POLICY_FILES = {
    "api_handler": "policy-api.json",
    "daily_cost_report": "policy-report.json",
    "ledger_aggregator": "policy-aggregator.json",
    "people_sweep": "policy-people-sweep.json",
}
#: The streaming function is not a Chalice function: tools/package.py puts this document in its role.
STREAM_POLICY_FILE = "policy-stream.json"
#: Partitions Bedrock is offered in, and the condition that picks one (CloudFormation's Fn::Join takes
#: only a literal delimiter, so each partition's ARNs are spelt out in a branch of their own).
BEDROCK_PARTITIONS = {"InGovCloud": ("aws-us-gov", "aws")}

Document = dict[str, Any]


def getatt(resource: str, attribute: str = "Arn") -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _guardrail_arns(partition: str) -> Document:
    """``arn:<partition>:bedrock:*:*:guardrail/<id>`` for each id of the ``GuardrailIds`` parameter.

    Any region: a model may be called in a region of its own, and a guardrail is used in the
    region of the call. The account is pinned by the statement's ``aws:ResourceAccount`` condition.
    """
    prefix = f"arn:{partition}:bedrock:*:*:guardrail/"
    joined = {"Fn::Join": ["", [prefix, {"Fn::Join": [f",{prefix}", {"Ref": "GuardrailIds"}]}]]}
    return {"Fn::Split": [",", joined]}


def guardrail_statement(sid: str, actions: list[str]) -> Document:
    """``actions`` on the stack's configured guardrails (``GuardrailIds``) in this account; nothing when none is."""
    condition, (special, default) = next(iter(BEDROCK_PARTITIONS.items()))
    return {
        "Fn::If": [
            "HasGuardrails",
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": actions,
                "Resource": {"Fn::If": [condition, _guardrail_arns(special), _guardrail_arns(default)]},
                "Condition": {"StringEquals": {"aws:ResourceAccount": sub("${AWS::AccountId}")}},
            },
            {"Ref": "AWS::NoValue"},
        ]
    }


def _foundation_models(partition: str) -> Document:
    """The foundation-model ARNs of every ``AllowedBedrockModels`` pattern, in every region.

    Any region: a cross-region inference profile sends a request to a foundation model in a region
    of its geography (``global.`` profiles: anywhere), and Bedrock authorises that model's ARN there.
    """
    prefix = f"arn:{partition}:bedrock:*::foundation-model/"
    joined = {"Fn::Join": ["", [prefix, {"Fn::Join": [f",{prefix}", {"Ref": "AllowedBedrockModels"}]}]]}
    return {"Fn::Split": [",", joined]}


def bedrock_statements() -> list[Document]:
    """Invoking the allowed model families, directly or through this account's inference profiles.

    A cross-region (or application) inference profile is authorised as the profile's ARN *and* the
    foundation model it sends to: the profile grant alone reaches no model, so the families in
    ``AllowedBedrockModels`` are exactly what the role can invoke.
    """
    condition, (special, default) = next(iter(BEDROCK_PARTITIONS.items()))
    actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    return [
        {
            "Sid": "InvokeAllowedModels",
            "Effect": "Allow",
            "Action": actions,
            "Resource": {"Fn::If": [condition, _foundation_models(special), _foundation_models(default)]},
        },
        {
            "Sid": "InvokeThroughOwnInferenceProfiles",
            "Effect": "Allow",
            "Action": actions,
            "Resource": [
                sub("arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:inference-profile/*"),
                sub("arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:application-inference-profile/*"),
            ],
        },
    ]


#: The SSM path provider keys live under: the ProviderKeyPrefix parameter, or one of this stack's own.
PROVIDER_KEY_PREFIX = {
    "Fn::If": ["HasProviderKeyPrefix", {"Ref": "ProviderKeyPrefix"}, sub("/pennyworth/${AWS::StackName}/")]
}


def provider_key_statements() -> list[Document]:
    """Reading provider API keys: ``ssm:GetParameter`` under the prefix, decrypted through SSM only."""
    # The choice is made around two plain Fn::Sub strings, not inside a Fn::Sub's variable map:
    # the same ARNs, in the form every CloudFormation implementation resolves (moto's left the
    # nested form an empty string, which the deploy rehearsal caught).
    arn = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    parameters = {
        "Fn::If": [
            "HasProviderKeyPrefix",
            sub(arn + "${ProviderKeyPrefix}*"),
            sub(arn + "/pennyworth/${AWS::StackName}/*"),
        ]
    }
    return [
        {"Sid": "ReadProviderKeys", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": parameters},
        {
            # A SecureString under a customer-managed key needs kms:Decrypt; this one works only when
            # SSM asks, for a parameter under the prefix (SSM's encryption context names it).
            "Sid": "DecryptProviderKeysThroughSsm",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"),
            "Condition": {
                "StringEquals": {"kms:ViaService": sub("ssm.${AWS::Region}.${AWS::URLSuffix}")},
                "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": parameters},
            },
        },
    ]


def _logs(log_group: str) -> Document:
    # No logs:CreateLogGroup: the template creates each group (with retention) before the function.
    return {
        "Sid": "WriteOwnLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": getatt(log_group),
    }


def _table(sid: str, table: str, actions: list[str], indexes: tuple[str, ...] = ()) -> Document:
    resources: list[Any] = [getatt(table)]
    resources += [sub(f"${{{table}.Arn}}/index/{index}") for index in indexes]
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": [f"dynamodb:{action}" for action in actions],
        "Resource": resources,
    }


def _models_and_tables() -> list[Document]:
    """Bedrock on the allowed models, provider keys, and the tables: what serving a model route needs."""
    return [
        *bedrock_statements(),
        *provider_key_statements(),
        # A call with a guardrail (Converse's guardrailConfig) is authorised as ApplyGuardrail on it.
        guardrail_statement("ApplyConfiguredGuardrails", ["bedrock:ApplyGuardrail"]),
        # Keys: verify (GetItem), admin CRUD with conditions, list by owner or by state (Query on
        # the indexes), bulk import (transactions of conditional puts), lookups (BatchGetItem).
        _table(
            "KeysTable",
            "KeysTable",
            ["GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "Query", "BatchGetItem"],
            ("by-owner", "by-status"),
        ),
        # Usage: ledger entries and release records (conditional puts), admission's conditional
        # updates, aggregates read, owner and team budgets, reports on demand, the request log (a
        # team's from by-team); the directory of people and teams (its memberships and key records
        # change in transactions, with a ConditionCheck on a membership). The aggregates are
        # written by the ledger aggregator.
        _table(
            "UsageTable",
            "UsageTable",
            ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchGetItem"],
            ("by-period", "by-team"),
        ),
        # Audit: append-only events (single and batched), reads per key and per day.
        _table("AuditTable", "AuditTable", ["PutItem", "BatchWriteItem", "Query"], ("by-day",)),
        # Catalog: its version (GetItem) and models (Query) read by every function that serves models;
        # changes are transactions of a model's Put and the version's Update; a new stack's first read
        # seeds it (Puts).
        _table("CatalogTable", "CatalogTable", ["GetItem", "Query", "PutItem", "UpdateItem"]),
    ]


def api_policy() -> Document:
    """The API handler: Bedrock on the allowed models, provider keys, its tables, user lookups, reports."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _logs("APIHandlerLogGroup"),
            *_models_and_tables(),
            {
                "Sid": "FindUsers",
                "Effect": "Allow",
                # ListUsers: owners by e-mail; AdminGetUser: that an admin call's user still exists and
                # is enabled; AdminListGroupsForUser: that a token claiming "admins" is still in the group.
                # ListUsersInGroup: who the admins are (people listings; never leaving none).
                "Action": [
                    "cognito-idp:ListUsers",
                    "cognito-idp:AdminGetUser",
                    "cognito-idp:AdminListGroupsForUser",
                    "cognito-idp:ListUsersInGroup",
                ],
                "Resource": getatt("UserPool"),
            },
            {
                "Sid": "ManagePeople",
                "Effect": "Allow",
                # Admins invite (Cognito mails the temporary password), disable, enable and remove
                # people, end their sessions, and grant or take away the admins group.
                "Action": [
                    "cognito-idp:AdminCreateUser",
                    "cognito-idp:AdminDisableUser",
                    "cognito-idp:AdminEnableUser",
                    "cognito-idp:AdminDeleteUser",
                    "cognito-idp:AdminUserGlobalSignOut",
                    "cognito-idp:AdminAddUserToGroup",
                    "cognito-idp:AdminRemoveUserFromGroup",
                ],
                "Resource": getatt("UserPool"),
            },
            # An admin setting a key's guardrail: the admin API checks it exists (GetGuardrail, control plane).
            guardrail_statement("CheckConfiguredGuardrails", ["bedrock:GetGuardrail"]),
            # Admins can run the daily report on demand (POST /admin/reports/daily).
            *_publish_report(),
        ],
    }


def _publish_report() -> list[Document]:
    """Publishing a daily report: metrics in our namespace, the topic, the Slack webhook parameter."""
    return [
        {
            # PutMetricData has no resource-level permissions: "*" is the only valid resource,
            # so the grant is narrowed by the namespace condition instead.
            "Sid": "PublishPennyworthMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "Pennyworth"}},
        },
        {"Sid": "PublishReport", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": {"Ref": "ReportTopic"}},
        {
            "Fn::If": [
                "HasSlackWebhook",
                {
                    # A SecureString under the AWS-managed aws/ssm key needs no kms:Decrypt grant.
                    "Sid": "ReadSlackWebhook",
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter"],
                    "Resource": sub(
                        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SlackWebhookParameter}"
                    ),
                },
                {"Ref": "AWS::NoValue"},
            ]
        },
    ]


def stream_policy() -> Document:
    """The streaming function (model routes): the API handler's Bedrock and table grants, nothing else.

    The same table grants as the API handler because the model routes run the same key, metering
    and ledger code; no Cognito or report publishing (those are admin routes, which stay on Chalice).
    """
    return {"Version": "2012-10-17", "Statement": [_logs("StreamHandlerLogGroup"), *_models_and_tables()]}


def report_policy() -> Document:
    """The daily report: read aggregates and keys, store the report, publish it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _logs("DailyCostReportLogGroup"),
            # BatchGetItem and Query on the table itself: the teams' names and admins, for the report.
            _table(
                "UsageTable",
                "UsageTable",
                ["GetItem", "PutItem", "UpdateItem", "Query", "BatchGetItem"],
                ("by-period",),
            ),
            _table("KeysTable", "KeysTable", ["BatchGetItem"]),
            *_publish_report(),
        ],
    }


def people_sweep_policy() -> Document:
    """The people sweep: list the pool; enter new people, off-board those disabled or deleted in Cognito."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _logs("PeopleSweepLogGroup"),
            {
                "Sid": "ListPool",
                "Effect": "Allow",
                "Action": ["cognito-idp:ListUsers"],
                "Resource": getatt("UserPool"),
            },
            # The directory and budgets (people entered, statuses changed, default budgets set).
            _table("UsageTable", "UsageTable", ["GetItem", "PutItem", "UpdateItem", "Query", "BatchGetItem"]),
            # A person's keys: by owner (the index), read, and marked refused (with each key's event).
            _table("KeysTable", "KeysTable", ["Query", "BatchGetItem", "UpdateItem"], ("by-owner",)),
            _table("AuditTable", "AuditTable", ["PutItem"]),
        ],
    }


def aggregator_policy() -> Document:
    """The ledger aggregator: read the usage table's stream, update aggregates and shard markers."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _logs("LedgerAggregatorLogGroup"),
            # Markers and plans are read with GetItem. A transaction is authorised item by item as
            # its own action: the claim Puts the batch's plan (PutItem) and Updates the marker;
            # aggregates and the marker change in Updates (UpdateItem), as do rate corrections.
            _table("UsageTable", "UsageTable", ["GetItem", "PutItem", "UpdateItem"]),
            {
                # What the event source mapping reads, with the function's role: this table's stream only.
                "Sid": "ReadUsageStream",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                "Resource": [getatt("UsageTable", "StreamArn")],
            },
            {
                # The event source mapping's failure destination: batches whose records expired unapplied.
                "Sid": "ReportExpiredBatches",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": getatt("LedgerAggregatorFailures"),
            },
        ],
    }


def render() -> dict[str, Document]:
    """Policy file name → document."""
    return {
        POLICY_FILES["api_handler"]: api_policy(),
        POLICY_FILES["daily_cost_report"]: report_policy(),
        POLICY_FILES["ledger_aggregator"]: aggregator_policy(),
        POLICY_FILES["people_sweep"]: people_sweep_policy(),
        STREAM_POLICY_FILE: stream_policy(),
    }


def write(directory: Path = ROOT / ".chalice") -> None:
    for name, document in render().items():
        (directory / name).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    write()
