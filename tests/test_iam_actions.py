"""Every DynamoDB action a function's code makes is one its IAM policy grants.

moto checks no IAM, so a policy can look right and still be refused on AWS. DynamoDB authorises a
``TransactWriteItems`` item by item, each as its own action (a ``Put`` needs ``dynamodb:PutItem``,
a ``ConditionCheck`` ``dynamodb:ConditionCheckItem``), and a ``Query`` on an index needs the
index's ARN. These tests record what the real code sends while it works on moto and hold it
against the policy files the template uses.
"""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib import errors
from chalicelib.accounting.aggregator import Aggregator
from chalicelib.accounting.ledger import Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.catalog import load_catalog
from chalicelib.keys.store import KeyStore
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.dynamodb import clients
from chalicelib.shared.usage import TokenUsage
from local.stream_aggregator import shard_records
from tests.conftest import TABLE_NAMES
from tests.test_reports import service as report_service

POLICIES = Path(__file__).resolve().parents[1] / ".chalice"
NOVA = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro")
#: What a transaction's item is authorised as.
ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
LOGICAL = {name: logical for logical, name in TABLE_NAMES.items()}

Need = tuple[str, str, str | None]  # action, table's logical id, index (None: the table itself)


def record_actions(table: Any) -> set[Need]:
    """The IAM actions the DynamoDB calls on ``table`` (or a resource) need from now on (added as they are made).

    Both its clients are watched: its resource's and the plain one the request path uses.
    """
    needs: set[Need] = set()

    def on_call(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            for item in params["TransactItems"]:
                [(kind, body)] = item.items()
                needs.add((ITEM_ACTIONS[kind], LOGICAL[body["TableName"]], None))
        elif model.name in ("BatchGetItem", "BatchWriteItem"):
            for table in params["RequestItems"]:
                needs.add((model.name, LOGICAL[table], None))
        else:
            needs.add((model.name, LOGICAL[params["TableName"]], params.get("IndexName")))

    for client in clients(table):
        client.meta.events.register("before-parameter-build.dynamodb", on_call)
    return needs


def granted(policy_file: str) -> set[Need]:
    """What ``policy_file`` allows on the tables: (action, table, index) for each statement's resources."""
    grants: set[Need] = set()
    for statement in json.loads((POLICIES / policy_file).read_text())["Statement"]:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            if "Fn::GetAtt" in resource and resource["Fn::GetAtt"][1] == "Arn":
                target: tuple[str, str | None] = (resource["Fn::GetAtt"][0], None)
            elif "Fn::Sub" in resource and "/index/" in resource["Fn::Sub"]:
                table, index = resource["Fn::Sub"].removeprefix("${").split(".Arn}/index/")
                target = (table, index)
            else:
                continue
            grants |= {
                (action.removeprefix("dynamodb:"), *target) for action in actions if action.startswith("dynamodb:")
            }
    return grants


def refused(needs: set[Need], policy_file: str) -> set[Need]:
    return needs - granted(policy_file)


def bill(meter: Meter, ticket: Any, request_id: str) -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=5)
    meter.settle(ticket, request_id=request_id, operation="chat", usage=usage, latency_ms=5, status="ok")


@pytest.fixture
def usage(usage_table, keys_table) -> dict[str, Any]:
    """A key with every limit (rpm, tpm, its own budget, its owner's) and one without any."""
    store = KeyStore(keys_table)
    limited, _ = store.create(owner_sub="owner-1", rpm_limit=100, tpm_limit=100_000, monthly_budget_usd=Decimal("5"))
    plain, _ = store.create(owner_sub="owner-2")
    return {"limited": limited, "plain": plain}


def test_the_request_path_needs_only_what_the_api_and_stream_functions_are_granted(
    usage_table, keys_table, usage
) -> None:
    # GIVEN the meter of a function, with owner budgets set (an admin's route, on the API function too)
    meter = Meter(Ledger(usage_table), clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC))
    needs = record_actions(usage_table)
    meter.set_owner_budget("owner-1", Decimal("50"), actor="admin")
    meter.set_owner_budget("owner-2", Decimal("0.000001"), actor="admin")
    # WHEN requests are admitted, billed, released, and refused half-way (the owner's budget)
    for key in (usage["limited"], usage["plain"]):
        try:
            ticket = meter.admit(key, NOVA, input_tokens=10, max_output_tokens=20)
        except errors.QuotaExceeded:
            continue
        bill(meter, ticket, f"r-{key.key_id}")
    meter.release(meter.admit(usage["limited"], NOVA, input_tokens=10, max_output_tokens=20))
    meter.spend(usage["limited"])
    assert {need[0] for need in needs} >= {"UpdateItem", "PutItem", "GetItem"}
    # THEN each function that serves model calls is allowed every one of those calls
    for policy in ("policy-api.json", "policy-stream.json"):
        assert refused(needs, policy) == set(), policy


def test_a_teams_guardrail_is_read_on_the_request_path_with_only_what_both_model_functions_are_granted(
    usage_table,
) -> None:
    from chalicelib.keys.teams import TeamPolicies, team_reader

    # GIVEN a team with a guardrail in the directory (the usage table)
    usage_table.put_item(Item={"pk": "DIRECTORY", "sk": "TEAM#t1", "team_id": "t1",
                               "guardrail": {"id": "abc123", "version": "1"}})  # fmt: skip
    needs = record_actions(usage_table)
    # WHEN a function serving model calls reads the team's policy
    assert TeamPolicies(team_reader(usage_table))("t1").guardrail is not None
    # THEN both functions may (a GetItem of the usage table)
    assert needs == {("GetItem", "UsageTable", None)}
    for policy in ("policy-api.json", "policy-stream.json"):
        assert refused(needs, policy) == set(), policy


def test_the_aggregator_needs_only_what_its_policy_grants(usage_table, keys_table, usage, monkeypatch) -> None:
    from chalicelib.accounting import aggregator as module

    # GIVEN billed, released and rate-corrected requests on the stream, in a plan of several chunks
    monkeypatch.setattr(module, "MAX_ROWS_PER_TRANSACTION", 5)
    meter = Meter(Ledger(usage_table), clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC))
    meter.set_owner_budget("owner-1", Decimal("50"), actor="admin")
    for n in range(3):
        ticket = meter.admit(usage["limited"], NOVA, input_tokens=10, max_output_tokens=200)
        bill(meter, ticket, f"r{n}")
    meter.release(meter.admit(usage["limited"], NOVA, input_tokens=10, max_output_tokens=20))
    shard, records = shard_records(usage_table)
    aggregator = Aggregator(usage_table)
    needs = record_actions(usage_table)
    # WHEN the aggregator applies them
    result = aggregator.apply(shard, [dict(record) for record in records])
    assert result.applied == 4 and result.transactions > 1
    # THEN its role may make every call it made (the plan's Put inside the claim's transaction too)
    assert ("PutItem", "UsageTable", None) in needs
    assert refused(needs, "policy-aggregator.json") == set()


def test_the_daily_report_needs_only_what_its_policy_grants(usage_table, keys_table, usage, aws) -> None:
    # GIVEN a day with usage
    meter = Meter(Ledger(usage_table), clock=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC))
    ticket = meter.admit(usage["limited"], NOVA, input_tokens=10, max_output_tokens=20)
    bill(meter, ticket, "r")
    shard, records = shard_records(usage_table)
    Aggregator(usage_table).apply(shard, [dict(record) for record in records])
    topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="reports")["TopicArn"]
    reports = report_service(usage_table, keys_table, topic)  # its clock: 2026-11-26 06:00 UTC
    assert keys_table.meta.client is usage_table.meta.client  # one client: recording it records both
    needs = record_actions(usage_table)
    # WHEN the report runs, then is forced to run again
    reports.run(date(2026, 11, 25))
    reports.run(date(2026, 11, 25), force=True)
    # THEN its role may make every call it made
    assert any(need[0] == "Query" for need in needs)
    assert refused(needs, "policy-report.json") == set()


def test_the_catalog_is_read_seeded_and_changed_with_only_what_both_model_functions_are_granted(aws: Any) -> None:
    from chalicelib.catalog import CatalogStore, Rules, seed_documents
    from chalicelib.catalog.entry import new_document
    from chalicelib.catalog.prices import bundled_price_map
    from chalicelib.keys.audit import Actor, AuditLog, Subject

    # GIVEN a new stack's empty catalog table, and its audit log
    catalog = aws.Table(TABLE_NAMES["CatalogTable"])
    audit = AuditLog(aws.Table(TABLE_NAMES["AuditTable"]))
    store = CatalogStore(catalog, seed=lambda: seed_documents(DEFAULT_CATALOG, rules=Rules(region="us-east-1")))
    needs = record_actions(catalog)
    # WHEN a function reads it first (seeding it), checks its version, and an admin adds a model (audited)
    store.load()
    store.version()
    stored = store.read()
    document = new_document({"alias": "nova-pro", "provider": "bedrock", "model_id": "us.amazon.nova-pro-v1:0"},
                            rules=Rules(region="us-east-1"), price_map=bundled_price_map, now="2026-12-01T00:00:00Z",
                            actor="admin")  # fmt: skip
    event = audit.put_item(audit.new_event(Subject("model", "nova-pro"), "added", Actor(sub="a")))
    store.put(document, read_version=stored.version, previous=None, attach=[event])
    assert {need[0] for need in needs} >= {"GetItem", "Query", "PutItem", "UpdateItem"}
    # THEN both functions that serve models may make every one of those calls (the admin API runs on the first)
    for policy in ("policy-api.json", "policy-stream.json"):
        assert refused(needs, policy) == set(), policy


def test_provider_keys_are_read_with_exactly_the_granted_action_under_the_granted_prefix(aws: Any) -> None:
    import boto3

    from chalicelib.gateway.secrets import ParameterSecrets
    from chalicelib.settings import ENV

    # GIVEN a provider key under the stack's prefix
    ssm = boto3.client("ssm", region_name="us-east-1")
    name = f"{ENV['PENNYWORTH_PROVIDER_KEY_PREFIX']}providers/openai"
    ssm.put_parameter(Name=name, Value="sk-test", Type="SecureString")
    calls: list[tuple[str, dict[str, Any]]] = []
    ssm.meta.events.register(
        "before-parameter-build.ssm.*", lambda model, params, **_: calls.append((model.name, dict(params)))
    )
    # WHEN the gateway reads it (twice: the second from its cache)
    secrets = ParameterSecrets(lambda: ssm, prefix=ENV["PENNYWORTH_PROVIDER_KEY_PREFIX"])
    assert secrets(name) == secrets(name) == "sk-test"
    # THEN it made one GetParameter, decrypted, of a name the grant's pattern covers
    assert [(action, params["Name"], params["WithDecryption"]) for action, params in calls] == [
        ("GetParameter", name, True)
    ]
    statement = next(s for s in json.loads((POLICIES / "policy-stream.json").read_text())["Statement"]
                     if s.get("Sid") == "ReadProviderKeys")  # fmt: skip
    assert statement["Action"] == ["ssm:GetParameter"]
    _, given, own = statement["Resource"]["Fn::If"]
    assert given["Fn::Sub"].endswith(":parameter${ProviderKeyPrefix}*")
    # The stack's own prefix (no ProviderKeyPrefix given) covers the name read, whatever the stack's name.
    pattern = own["Fn::Sub"].split(":parameter", 1)[1].replace("${AWS::StackName}", "*")
    assert fnmatch.fnmatchcase(name, pattern), (name, pattern)
    # AND a name outside the prefix is never asked for
    with pytest.raises(errors.UpstreamError):
        secrets("/other-team/openai")
    assert len(calls) == 1


def cognito_granted(policy_file: str) -> set[str]:
    """The Cognito actions ``policy_file`` allows on the user pool."""
    found: set[str] = set()
    for statement in json.loads((POLICIES / policy_file).read_text())["Statement"]:
        if statement.get("Resource") == {"Fn::GetAtt": ["UserPool", "Arn"]}:
            found |= {a.removeprefix("cognito-idp:") for a in statement["Action"] if a.startswith("cognito-idp:")}
    return found


def record_cognito(client: Any) -> set[str]:
    calls: set[str] = set()
    client.meta.events.register("before-parameter-build.cognito-idp", lambda model, **_: calls.add(model.name))
    return calls


def test_teams_and_people_need_only_what_the_api_function_is_granted(
    as_admin: Any, admin_client: Any, cognito: Any, pool: Any, alice: Any, bob: Any, usage_table: Any
) -> None:
    from chalicelib import wiring
    from tests.admin_fixtures import Api
    from tests.cognito_helpers import sign_in

    # GIVEN the clients the admin routes use, recorded from now on
    recorded = [record_actions(wiring.dynamodb()), record_actions(wiring.ledger_dynamodb())]
    cognito_calls = record_cognito(wiring.cognito())
    # WHEN an admin and a team admin do everything teams and people offer
    as_admin.call("post", "/admin/teams", {"name": "Red", "monthly_budget_usd": "10"})
    as_admin.call("post", "/admin/teams/red/members", {"person": alice.email, "role": "admin"})
    as_admin.call("post", "/admin/teams/red/members", {"person": bob.email})
    as_alice = Api(admin_client, sign_in(cognito, pool, alice)["IdToken"])
    as_bob = Api(admin_client, sign_in(cognito, pool, bob)["IdToken"])
    team_key = as_alice.call("post", "/admin/keys", {"team": "red", "team_owned": True}).json_body
    as_bob.call("post", "/admin/keys", {"team": "red"})
    as_alice.call("get", "/admin/keys?team=red")
    as_alice.call("patch", f"/admin/keys/{team_key['key_id']}", {"monthly_budget_usd": "5"})
    as_alice.call("put", f"/admin/owners/{bob.email}/budget", {"monthly_budget_usd": "3"})
    as_alice.call("get", "/admin/usage?team=red&group_by=key")
    as_admin.call("get", "/admin/usage?group_by=team")
    as_admin.call("patch", "/admin/teams/red", {"name": "Red Team", "default_member_budget_usd": "2"})
    as_admin.call("post", "/admin/people", {"email": "new@example.com", "team": "red team", "admin": True})
    as_admin.call("patch", "/admin/people/new@example.com", {"admin": False})
    as_admin.call("get", "/admin/people")
    as_admin.call("post", f"/admin/people/{bob.email}/disable")
    as_admin.call("post", f"/admin/people/{bob.email}/enable")
    as_admin.call("delete", f"/admin/teams/red team/members/{bob.email}")
    as_admin.call("post", "/admin/people/sweep")
    as_admin.call("delete", "/admin/people/new@example.com")
    answer = as_admin.call("delete", "/admin/teams/red team?force=true")
    assert answer.status_code == 200, answer.body
    needs = recorded[0] | recorded[1]
    # THEN the API function may make every DynamoDB and Cognito call they made
    assert ("ConditionCheckItem", "UsageTable", None) in needs and ("UpdateItem", "KeysTable", None) in needs
    assert refused(needs, "policy-api.json") == set()
    assert {"AdminCreateUser", "AdminDisableUser", "AdminDeleteUser", "ListUsersInGroup"} <= cognito_calls
    assert cognito_calls - cognito_granted("policy-api.json") == set()


def test_the_sweep_needs_only_what_its_policy_grants(
    as_alice: Any, alice: Any, bob: Any, cognito: Any, pool: Any
) -> None:
    from chalicelib import wiring

    # GIVEN a person with a key, disabled in Cognito directly, and one deleted there
    as_alice.call("post", "/admin/keys", {})
    cognito.admin_disable_user(UserPoolId=pool.user_pool_id, Username=alice.email)
    cognito.admin_delete_user(UserPoolId=pool.user_pool_id, Username=bob.email)
    wiring.reset()  # the scheduled function is a process of its own
    recorded = [record_actions(wiring.dynamodb()), record_actions(wiring.ledger_dynamodb())]
    cognito_calls = record_cognito(wiring.cognito())
    # WHEN the sweep runs (as its Lambda does, on its schedule's event)
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        event = client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
        )
        result = client.lambda_.invoke("people_sweep", event).payload
    assert result["disabled"] == 1
    # THEN its role may make every call it made
    needs = recorded[0] | recorded[1]
    assert refused(needs, "policy-people-sweep.json") == set()
    assert cognito_calls - cognito_granted("policy-people-sweep.json") == set()


def test_the_daily_report_names_teams_with_only_what_its_policy_grants(as_admin: Any, usage_table: Any) -> None:
    from chalicelib import wiring

    as_admin.call("post", "/admin/teams", {"name": "Red"})
    recorded = [record_actions(wiring.dynamodb()), record_actions(wiring.ledger_dynamodb())]
    team = wiring.directory().find_team("red")
    assert wiring.describe_teams([team.team_id])[team.team_id].name == "Red"
    assert refused(recorded[0] | recorded[1], "policy-report.json") == set()
