"""Create the tables, user pool and first key on an AWS endpoint (moto locally).

Tables and the user pool are built from ``infra/template.json``, the same
definitions CloudFormation deploys, so local and AWS cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "infra" / "template.json"

#: Template logical id → the ``Settings`` attribute that names the table.
TABLE_SETTINGS = {
    "KeysTable": "keys_table",
    "UsageTable": "usage_table",
    "AuditTable": "audit_table",
    "CatalogTable": "catalog_table",
}
ADMINS_GROUP = "admins"


def template_resources(kind: str, template: Path = TEMPLATE) -> dict[str, dict[str, Any]]:
    """The template's resources of one CloudFormation type, by logical id."""
    resources = json.loads(template.read_text())["Resources"]
    return {name: res for name, res in resources.items() if res["Type"] == kind}


def create_tables(dynamodb_client: Any, table_names: dict[str, str], *, streams: bool = True) -> None:
    """Create every DynamoDB table of the template; ``table_names`` maps logical id → name.

    ``streams=False`` leaves out the tables' streams (``bench/ledger_scale.py`` models its own).
    """
    existing = set(dynamodb_client.list_tables().get("TableNames", []))
    for logical_id, resource in template_resources("AWS::DynamoDB::Table").items():
        name = table_names[logical_id]
        props = resource["Properties"]
        if name in existing:
            if streams and props.get("StreamSpecification"):
                _enable_stream(dynamodb_client, name, props["StreamSpecification"])
            _add_missing_indexes(dynamodb_client, name, props)
            continue
        params: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            params["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if streams and props.get("StreamSpecification"):
            # The usage table's stream feeds the aggregator (local/stream_aggregator.py locally).
            params["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        dynamodb_client.create_table(**params)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb_client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )


def _enable_stream(dynamodb_client: Any, name: str, specification: dict[str, Any]) -> None:
    # Local state saved before the table had its stream (make dev keeps it across restarts).
    if dynamodb_client.describe_table(TableName=name)["Table"].get("StreamSpecification", {}).get("StreamEnabled"):
        return
    dynamodb_client.update_table(TableName=name, StreamSpecification={"StreamEnabled": True, **specification})


def _add_missing_indexes(dynamodb_client: Any, name: str, props: dict[str, Any]) -> None:
    # Local state saved before the template had an index (make dev keeps it across restarts): add it,
    # as CloudFormation does on AWS (one index per update; DynamoDB fills it from the table).
    existing = {
        index["IndexName"]
        for index in dynamodb_client.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
    }
    for index in props.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in existing:
            continue
        attributes = {key["AttributeName"] for key in index["KeySchema"]}
        dynamodb_client.update_table(
            TableName=name,
            AttributeDefinitions=[a for a in props["AttributeDefinitions"] if a["AttributeName"] in attributes],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )


def create_user_pool(cognito_client: Any, pool_name: str) -> dict[str, str]:
    """Create the user pool, CLI app client and admins group; return their ids."""
    pool = next(iter(template_resources("AWS::Cognito::UserPool").values()))["Properties"]
    client = template_resources("AWS::Cognito::UserPoolClient")["UserPoolCliClient"]["Properties"]
    params = {k: v for k, v in pool.items() if k not in ("UserPoolName", "EnabledMfas")}
    pool_id = cognito_client.create_user_pool(PoolName=pool_name, **params)["UserPool"]["Id"]
    client_params = {k: v for k, v in client.items() if k not in ("UserPoolId", "ClientName")}
    client_id = cognito_client.create_user_pool_client(
        UserPoolId=pool_id, ClientName=client["ClientName"], **client_params
    )["UserPoolClient"]["ClientId"]
    for group in template_resources("AWS::Cognito::UserPoolGroup").values():
        props = group["Properties"]
        cognito_client.create_group(
            UserPoolId=pool_id, GroupName=props["GroupName"], Description=props.get("Description", "")
        )
    return {"user_pool_id": pool_id, "client_id": client_id}


def create_console_client(cognito_client: Any, pool_id: str, console_urls: list[str]) -> str:
    """The web console's app client (``ConsoleClient``), sending users back to ``console_urls``; its id."""
    client = template_resources("AWS::Cognito::UserPoolClient")["ConsoleClient"]["Properties"]
    params = {k: v for k, v in client.items() if k not in ("UserPoolId", "CallbackURLs", "LogoutURLs")}
    params.update(CallbackURLs=console_urls, LogoutURLs=console_urls)
    created = cognito_client.create_user_pool_client(UserPoolId=pool_id, **params)
    return created["UserPoolClient"]["ClientId"]


def update_console_client(cognito_client: Any, pool_id: str, client_id: str, console_urls: list[str]) -> None:
    """Point the console's app client at ``console_urls`` (a restarted stack may listen on another port)."""
    client = template_resources("AWS::Cognito::UserPoolClient")["ConsoleClient"]["Properties"]
    # GenerateSecret is fixed at creation: UpdateUserPoolClient does not take it.
    skipped = ("UserPoolId", "ClientName", "CallbackURLs", "LogoutURLs", "GenerateSecret")
    params = {k: v for k, v in client.items() if k not in skipped}
    params.update(CallbackURLs=console_urls, LogoutURLs=console_urls, ClientName=client["ClientName"])
    cognito_client.update_user_pool_client(UserPoolId=pool_id, ClientId=client_id, **params)


def create_user(cognito_client: Any, pool_id: str, email: str, password: str, *, groups: tuple[str, ...] = ()) -> str:
    """A confirmed user with a permanent password; returns its ``sub``."""
    response = cognito_client.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    cognito_client.admin_set_user_password(UserPoolId=pool_id, Username=email, Password=password, Permanent=True)
    for group in groups:
        cognito_client.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
    attributes = {a["Name"]: a["Value"] for a in response["User"]["Attributes"]}
    return attributes["sub"]


def create_report_topic(sns_client: Any, sqs_client: Any, name: str) -> dict[str, str]:
    """The report SNS topic, with an SQS "inbox" subscribed so notifications can be read locally."""
    topic_arn = sns_client.create_topic(Name=name)["TopicArn"]
    queue_url = sqs_client.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns_client.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return {"topic_arn": topic_arn, "inbox_url": queue_url}
