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

#: A global inference profile is called from any commercial region and sends the request to any of
#: them: its foundation model is granted in every region ("*", which also matches the region-less ARN).
GLOBAL_PROFILE = "global"

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
        # A model called in a region of its own (a fallback to another region) is granted there.
        source = model.get("region") or "${AWS::Region}"
        prefix, _, base = model_id.partition(".")
        if prefix in PROFILE_REGIONS or prefix == GLOBAL_PROFILE:
            resources.append(
                sub(f"arn:${{AWS::Partition}}:bedrock:{source}:${{AWS::AccountId}}:inference-profile/{model_id}")
            )
            resources += [
                sub(f"arn:${{AWS::Partition}}:bedrock:{region}::foundation-model/{base}")
                for region in PROFILE_REGIONS.get(prefix, ("*",))
            ]
        else:
            resources.append(sub(f"arn:${{AWS::Partition}}:bedrock:{source}::foundation-model/{model_id}"))
    return list({json.dumps(r, sort_keys=True): r for r in resources}.values())


#: CloudFormation's Fn::Join takes only a literal delimiter, so each partition's guardrail ARNs are
#: spelt out in a branch of their own, picked by the template's InGovCloud condition.
GUARDRAIL_PARTITIONS = ("aws-us-gov", "aws")


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
    special, default = GUARDRAIL_PARTITIONS
    return {
        "Fn::If": [
            "HasGuardrails",
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": actions,
                "Resource": {"Fn::If": ["InGovCloud", _guardrail_arns(special), _guardrail_arns(default)]},
                "Condition": {"StringEquals": {"aws:ResourceAccount": sub("${AWS::AccountId}")}},
            },
            {"Ref": "AWS::NoValue"},
        ]
    }


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
        # A call with a guardrail (Converse's guardrailConfig) is authorised as ApplyGuardrail on it.
        guardrail_statement("ApplyConfiguredGuardrails", ["bedrock:ApplyGuardrail"]),
        # Keys: verify (GetItem), admin CRUD with conditions, list by owner, export (Scan),
        # bulk import (transactions of conditional puts), report/status lookups (BatchGetItem).
        _table(
            "KeysTable",
            "KeysTable",
            ["GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "Query", "Scan", "BatchGetItem"],
            ("by-owner",),
        ),
        # Usage: ledger entries and release records (conditional puts), admission's conditional
        # updates, aggregates read, owner budgets, reports on demand. No transactions: the
        # aggregates are written by the ledger aggregator.
        _table(
            "UsageTable",
            "UsageTable",
            ["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem"],
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
                "Action": ["cognito-idp:ListUsers", "cognito-idp:AdminListGroupsForUser"],
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
            _table("UsageTable", "UsageTable", ["GetItem", "PutItem", "UpdateItem", "Query"], ("by-period",)),
            _table("KeysTable", "KeysTable", ["BatchGetItem"]),
            *_publish_report(),
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
        STREAM_POLICY_FILE: stream_policy(),
    }


def write(directory: Path = ROOT / ".chalice") -> None:
    for name, document in render().items():
        (directory / name).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    write()
