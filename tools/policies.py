"""The functions' IAM policies: ``.chalice/policy-*.json``, written from this module.

``python -m tools.policies`` rewrites the files; ``tests/test_infra.py`` fails
when a file differs from what this module renders (e.g. after a catalog
change), so the files stay explicit and reviewable while the Bedrock ARNs
follow ``chalicelib/catalog/catalog.json``.

The documents hold CloudFormation intrinsics (``Fn::GetAtt``, ``Fn::Sub``):
Chalice copies a policy file verbatim into its role resource, and the table,
pool, topic and log group ARNs exist only in the merged template, so
CloudFormation resolves them at deploy time.
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

#: Regions a cross-region inference profile may route a request to, by profile prefix. Bedrock
#: authorises the profile ARN *and* the foundation model in the destination region, so each
#: needs a grant. Source: Bedrock's "Supported Regions and models for inference profiles".
PROFILE_REGIONS = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-3"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1", "ap-southeast-2"),
}

Document = dict[str, Any]


def getatt(resource: str, attribute: str = "Arn") -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def bedrock_resources(catalog_path: Path = CATALOG) -> list[Any]:
    """The model and inference-profile ARNs every catalog entry needs, in catalog order."""
    resources: list[Any] = []
    for model in json.loads(catalog_path.read_text())["models"]:
        model_id = model["bedrock_model_id"]
        prefix, _, base = model_id.partition(".")
        if prefix in PROFILE_REGIONS:
            resources.append(
                sub(
                    f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}:${{AWS::AccountId}}:inference-profile/{model_id}"
                )
            )
            resources += [
                sub(f"arn:${{AWS::Partition}}:bedrock:{region}::foundation-model/{base}")
                for region in PROFILE_REGIONS[prefix]
            ]
        else:
            resources.append(sub(f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}::foundation-model/{model_id}"))
    return resources


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


def _models_and_tables(catalog_path: Path) -> list[Document]:
    """Bedrock on catalog models and the three tables: what serving a model route needs."""
    return [
        {
            "Sid": "InvokeCatalogModels",
            "Effect": "Allow",
            "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
            "Resource": bedrock_resources(catalog_path),
        },
        # Keys: verify (GetItem), admin CRUD with conditions, list by owner, export (Scan),
        # bulk import (transactions of conditional puts), report/status lookups (BatchGetItem).
        _table(
            "KeysTable",
            "KeysTable",
            ["GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "Query", "Scan", "BatchGetItem"],
            ("by-owner",),
        ),
        # Usage: ledger entries and release records (conditional puts), admission's conditional
        # updates, aggregates read, owner and team budgets, reports on demand; the directory of
        # people and teams (its memberships and key records change in transactions, with a
        # ConditionCheck on a membership). The aggregates are written by the ledger aggregator.
        _table(
            "UsageTable",
            "UsageTable",
            ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "BatchGetItem"],
            ("by-period",),
        ),
        # Audit: append-only events (single and batched), reads per key and per day.
        _table("AuditTable", "AuditTable", ["PutItem", "BatchWriteItem", "Query"], ("by-day",)),
    ]


def api_policy(catalog_path: Path = CATALOG) -> Document:
    """The API handler: Bedrock on catalog models, its tables, user lookups, reports on demand."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _logs("APIHandlerLogGroup"),
            *_models_and_tables(catalog_path),
            {
                "Sid": "FindUsers",
                "Effect": "Allow",
                # ListUsers: owners by e-mail, and every admin call checks its user still exists and is
                # enabled; AdminListGroupsForUser: that a token claiming "admins" is still in the group.
                # ListUsersInGroup: who the admins are (people listings; never leaving none).
                "Action": [
                    "cognito-idp:ListUsers",
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


def stream_policy(catalog_path: Path = CATALOG) -> Document:
    """The streaming function (model routes): the API handler's Bedrock and table grants, nothing else.

    The same table grants as the API handler because the model routes run the same key, metering
    and ledger code; no Cognito or report publishing (those are admin routes, which stay on Chalice).
    """
    return {"Version": "2012-10-17", "Statement": [_logs("StreamHandlerLogGroup"), *_models_and_tables(catalog_path)]}


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
