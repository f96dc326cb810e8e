"""The deploy rehearsal: both deploy paths, end to end, against moto server.

``tools/deploy.py`` runs as a user runs it (``make chalice-deploy`` and ``make deploy``),
with ``AWS_ENDPOINT_URL`` pointing every AWS call, ``chalice deploy``'s included, at a
moto server started here with ``local/moto_deploy.py``'s patches. The artifact is
built without dependencies (``tools/package.py --no-dependencies``: every file, function
and route, in a second), so it can be wired but not run. Each path runs twice; the
second run must change nothing.

What moto cannot check is listed in ``EMULATION_GAPS`` (and docs/deployment.md): each
is an expected failure with its reason in the test summary, strict where a probe can
tell, so a moto that learns it makes the list shorter.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.streaming.routes import STREAM_PATHS
from tools import deploy, package, stack

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
CHALICE_STACK = "pennyworth-dev"
CLOUDFORMATION_STACK = "pennyworth-dev-cfn"
BUCKET = "pennyworth-artifacts"
API_STAGE = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]["api_gateway_stage"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port), "--deploy"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2)  # noqa: S310 - our local server
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def emulated_aws(moto_url: str) -> Iterator[str]:
    """Every AWS call of this process and its children goes to the moto server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_url)
        patch.setenv("AWS_REGION", "us-east-1")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield moto_url


def client(name: str) -> Any:
    return boto3.client(name, region_name="us-east-1")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("build")
    report = package.build(STAGE, root, dependencies=False)
    assert report["within_limits"]
    return root


def _options(build_dir: Path, stack_name: str, **extra: Any) -> deploy.Options:
    return deploy.Options(stage=STAGE, stack=stack_name, parameters={}, build=False, build_dir=build_dir, **extra)


def snapshot(names: dict[str, str], api_id: str, stack_name: str) -> dict[str, Any]:
    """What a deploy left behind, to compare two runs: configurations, code, API, mappings, stack, layers."""
    lam, apigw, cfn = client("lambda"), client("apigateway"), client("cloudformation")
    functions = {}
    for logical, name in names.items():
        config = lam.get_function_configuration(FunctionName=name)
        config.pop("ResponseMetadata")
        functions[logical] = config
    [found] = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    methods = {}
    for resource in apigw.get_resources(restApiId=api_id, limit=500)["items"]:
        for method in resource.get("resourceMethods", {}):
            integration = apigw.get_integration(restApiId=api_id, resourceId=resource["id"], httpMethod=method)
            integration.pop("ResponseMetadata")
            methods[f"{method} {resource['path']}"] = integration
    return {
        "functions": functions,
        "mappings": lam.list_event_source_mappings()["EventSourceMappings"],
        "apis": [api["id"] for api in apigw.get_rest_apis()["items"]],
        "methods": methods,
        "stack": {k: found.get(k) for k in ("StackStatus", "LastUpdatedTime", "Outputs", "Parameters")},
        "layers": lam.list_layers()["Layers"],
        "rules": client("events").list_rules()["Rules"],
    }


@pytest.fixture(scope="module")
def rehearsal(emulated_aws: str, build_dir: Path) -> dict[str, Any]:
    """Both paths, each twice; what each deployed and how long each run took."""
    client("s3").create_bucket(Bucket=BUCKET)
    results: dict[str, Any] = {"seconds": {}}
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "chalice": lambda: deploy.deploy_chalice(_options(build_dir, CHALICE_STACK)),
        "cloudformation": lambda: deploy.deploy_cloudformation(
            _options(build_dir, CLOUDFORMATION_STACK, bucket=BUCKET)
        ),
    }
    for path, run in runs.items():
        started = time.monotonic()
        first = run()
        results["seconds"][f"{path} (first)"] = round(time.monotonic() - started, 1)
        names, api_id = _deployed_names(path, first)
        results[path] = {"result": first, "names": names, "api_id": api_id}
    for path in runs:
        deployed = results[path]
        deployed["first"] = snapshot(deployed["names"], deployed["api_id"], deployed["result"]["target"].stack)
    for path, run in runs.items():
        started = time.monotonic()
        run()
        results["seconds"][f"{path} (again)"] = round(time.monotonic() - started, 1)
        deployed = results[path]
        deployed["second"] = snapshot(deployed["names"], deployed["api_id"], deployed["result"]["target"].stack)
    print(f"\ndeploy rehearsal timings (seconds): {results['seconds']}")
    return results


def _deployed_names(path: str, result: dict[str, Any]) -> tuple[dict[str, str], str]:
    target = result["target"]
    if path == "chalice":
        names = {f.logical_id: f.chalice_function_name(target.stage, target.stack) for f in stack.FUNCTIONS}
        return names, result["api_id"]
    names = {f.logical_id: f"{target.stack}-{f.suffix}" for f in stack.FUNCTIONS}
    api_id = result["outputs"]["OpenAIBaseURL"].split("//")[1].split(".")[0]
    return names, api_id


PATHS = ("chalice", "cloudformation")


@pytest.mark.parametrize("path", PATHS)
def test_the_stack_is_created_and_prints_the_urls(rehearsal: dict[str, Any], path: str, capsys: Any) -> None:
    deployed = rehearsal[path]
    assert deployed["first"]["stack"]["StackStatus"] == "CREATE_COMPLETE"
    [api] = [a for a in client("apigateway").get_rest_apis()["items"] if a["id"] == deployed["api_id"]]
    assert api["name"] == stack.APP_NAME
    assert API_STAGE in {s["stageName"] for s in client("apigateway").get_stages(restApiId=api["id"])["item"]}


@pytest.mark.parametrize("path", PATHS)
def test_functions_have_the_configured_handler_layer_memory_timeout_and_role(
    rehearsal: dict[str, Any], path: str
) -> None:
    functions = rehearsal[path]["first"]["functions"]
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][STAGE]
    template = stack.load_template()
    expected_handlers = {
        "APIHandler": "app.app",
        "DailyCostReport": "app.daily_cost_report",
        "LedgerAggregator": "app.ledger_aggregator",
        "StreamHandler": template["Resources"]["StreamHandler"]["Properties"]["Handler"],
    }
    timeouts = {
        "APIHandler": config["lambda_timeout"],
        "StreamHandler": template["Parameters"]["StreamTimeoutSeconds"]["Default"],
        **{
            f.logical_id: config["lambda_functions"][f.chalice_name]["lambda_timeout"]
            for f in stack.FUNCTIONS
            if f.chalice_name in ("daily_cost_report", "ledger_aggregator")
        },
    }
    layer_arns = {layer["LatestMatchingVersion"]["LayerVersionArn"] for layer in rehearsal[path]["first"]["layers"]}
    for function in stack.FUNCTIONS:
        deployed = functions[function.logical_id]
        assert deployed["Handler"] == expected_handlers[function.logical_id], function
        assert deployed["Runtime"] == "python3.12"
        assert deployed["Timeout"] == timeouts[function.logical_id], function
        memory = config["lambda_functions"].get(function.chalice_name or "", {}).get("lambda_memory_size")
        assert deployed["MemorySize"] == (memory or config["lambda_memory_size"]), function
        [layer] = deployed["Layers"]
        assert layer["Arn"] in layer_arns, function
        assert deployed["Role"].endswith(f":role/{rehearsal[path]['result']['target'].stack}-{function.suffix}")


def _methods(rehearsal: dict[str, Any], path: str) -> dict[str, Any]:
    return rehearsal[path]["first"]["methods"]


@pytest.mark.parametrize("path", PATHS)
def test_the_model_routes_stream_from_the_streaming_function(rehearsal: dict[str, Any], path: str) -> None:
    names = rehearsal[path]["names"]
    methods = _methods(rehearsal, path)
    for method, route in STREAM_PATHS:
        integration = methods[f"{method} {route}"]
        assert integration["responseTransferMode"] == "STREAM", route
        assert integration["type"] == "AWS_PROXY" and integration["httpMethod"] == "POST"
        assert integration["uri"].endswith(f":function:{names['StreamHandler']}/response-streaming-invocations"), (
            integration["uri"]
        )
        assert "/2021-11-15/functions/" in integration["uri"]
        assert int(integration["timeoutInMillis"]) == package.STREAM_INTEGRATION_TIMEOUT_MS
    buffered = {k: v for k, v in methods.items() if tuple(k.split(" ")) not in STREAM_PATHS and v.get("uri")}
    assert buffered and all(v["responseTransferMode"] == "BUFFERED" for v in buffered.values())
    assert all(v["uri"].endswith(f":function:{names['APIHandler']}/invocations") for v in buffered.values())


def test_both_paths_serve_the_same_routes_with_the_same_gateway_responses_and_authorizers(
    rehearsal: dict[str, Any],
) -> None:
    apigw = client("apigateway")
    seen = {}
    for path in PATHS:
        api_id = rehearsal[path]["api_id"]
        methods = {}
        for resource in apigw.get_resources(restApiId=api_id, limit=500)["items"]:
            for method in resource.get("resourceMethods", {}):
                found = apigw.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod=method)
                integration = _methods(rehearsal, path)[f"{method} {resource['path']}"]
                methods[f"{method} {resource['path']}"] = (
                    found["authorizationType"],
                    integration["responseTransferMode"],
                    integration.get("timeoutInMillis"),
                    integration.get("contentHandling"),
                )
        responses = {
            r["responseType"]: (str(r.get("statusCode")), r.get("responseParameters"), r.get("responseTemplates"))
            for r in apigw.get_gateway_responses(restApiId=api_id)["items"]
        }
        authorizers = [(a["name"], a["type"]) for a in apigw.get_authorizers(restApiId=api_id)["items"]]
        seen[path] = (methods, responses, authorizers)
    assert seen["chalice"] == seen["cloudformation"]
    methods, responses, authorizers = seen["chalice"]
    assert "MISSING_AUTHENTICATION_TOKEN" in responses and authorizers == [("PennyworthAdmins", "COGNITO_USER_POOLS")]
    assert methods["POST /admin/keys"][0] == "COGNITO_USER_POOLS" and methods["GET /v1/models"][0] == "NONE"


@pytest.mark.parametrize("path", PATHS)
def test_api_gateway_may_call_the_streaming_function_for_exactly_its_methods(
    rehearsal: dict[str, Any], path: str
) -> None:
    names, api_id = rehearsal[path]["names"], rehearsal[path]["api_id"]
    policy = json.loads(client("lambda").get_policy(FunctionName=names["StreamHandler"])["Policy"])
    sources = set()
    for statement in policy["Statement"]:
        assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
        assert statement["Action"] == "lambda:InvokeFunction"
        sources.add(statement["Condition"]["ArnLike"]["AWS:SourceArn"])
    prefix = f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/{API_STAGE}/"
    assert sources == {f"{prefix}{method}{route}" for method, route in STREAM_PATHS}


@pytest.mark.parametrize("path", PATHS)
def test_the_aggregator_reads_the_usage_stream_and_the_report_is_scheduled(
    rehearsal: dict[str, Any], path: str
) -> None:
    names = rehearsal[path]["names"]
    deployed = rehearsal[path]["first"]
    template = stack.load_template()
    [declared] = template["Resources"]["LedgerAggregator"]["Properties"]["Events"].values()
    [mapping] = [m for m in deployed["mappings"] if m["FunctionArn"].endswith(f":function:{names['LedgerAggregator']}")]
    for setting in deploy.EVENT_SOURCE_SETTINGS:
        assert mapping[setting] == declared["Properties"][setting], setting
    assert (mapping["BatchSize"], mapping["StartingPosition"]) == (10_000, "TRIM_HORIZON")
    queue = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert client("sqs").get_queue_url(QueueName=queue.rsplit(":", 1)[1])["QueueUrl"]
    table = mapping["EventSourceArn"].split(":table/")[1].split("/")[0]
    described = client("dynamodb").describe_table(TableName=table)["Table"]
    assert described["LatestStreamArn"] == mapping["EventSourceArn"]
    report = names["DailyCostReport"]
    scheduled = [
        rule
        for rule in deployed["rules"]
        if any(
            t["Arn"].endswith(f":function:{report}")
            for t in client("events").list_targets_by_rule(Rule=rule["Name"])["Targets"]
        )
    ]
    assert [rule["ScheduleExpression"] for rule in scheduled] == ["cron(0 6 * * ? *)"]


def _role_documents(role_arn: str) -> list[dict[str, Any]]:
    iam = client("iam")
    name = role_arn.rsplit("/", 1)[1]
    documents = []
    for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
        documents.append(json.loads(document) if isinstance(document, str) else document)
    return documents


def _exists(arn: str) -> bool:
    """Whether the resource an IAM statement names exists in the emulated account."""
    service, rest = arn.split(":")[2], arn.split(":", 5)[5]
    if service == "dynamodb":
        table = rest.split("/")[1]
        described = client("dynamodb").describe_table(TableName=table)["Table"]
        if "/index/" in rest:
            return rest.split("/index/")[1] in {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        if "/stream/" in rest:
            return described.get("LatestStreamArn") == arn
        return True
    if service == "cognito-idp":
        return bool(client("cognito-idp").describe_user_pool(UserPoolId=rest.split("/")[1]))
    if service == "sns":
        return arn in {t["TopicArn"] for t in client("sns").list_topics()["Topics"]}
    if service == "sqs":
        return bool(client("sqs").get_queue_url(QueueName=rest))
    if service == "logs":
        name = rest.removeprefix("log-group:").removesuffix(":*")
        return name in {
            g["logGroupName"] for g in client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        }
    raise AssertionError(f"no check for {arn}")


@pytest.mark.parametrize("path", PATHS)
def test_every_role_names_only_resources_that_exist(rehearsal: dict[str, Any], path: str) -> None:
    checked = 0
    for function in stack.FUNCTIONS:
        role = rehearsal[path]["first"]["functions"][function.logical_id]["Role"]
        for document in _role_documents(role):
            for statement in document["Statement"]:
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                for arn in resources:
                    if arn == "*" or ":bedrock:" in arn:
                        continue  # PutMetricData (no resource); Bedrock models (EMULATION_GAPS)
                    assert _exists(arn), (function.logical_id, arn)
                    checked += 1
    assert checked >= 20


def _normalise(value: Any, names: dict[str, str]) -> Any:
    """Physical names and ids → their logical ids, so two deployments compare."""
    text = json.dumps(value, sort_keys=True)
    for physical, logical in sorted(names.items(), key=lambda item: -len(item[0])):
        text = text.replace(physical, f"<{logical}>")
    text = re.sub(r"/stream/[0-9T:.\-]+", "/stream/<time>", text)
    return json.loads(text)


def _physical_names(path: str, rehearsal: dict[str, Any]) -> dict[str, str]:
    stack_name = rehearsal[path]["result"]["target"].stack
    resources = client("cloudformation").list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    names = {r["PhysicalResourceId"]: r["LogicalResourceId"] for r in resources if r.get("PhysicalResourceId")}
    # A queue's physical id is its URL; its ARN holds only the name.
    names |= {physical.rsplit("/", 1)[1]: logical for physical, logical in names.items() if "://" in physical}
    names |= {name: logical for logical, name in rehearsal[path]["names"].items()}
    names[f"{stack_name}-"] = "STACK-"
    return names


def test_both_paths_grant_the_same_actions_on_the_same_resources_and_set_the_same_environment(
    rehearsal: dict[str, Any],
) -> None:
    seen = {}
    for path in PATHS:
        names = _physical_names(path, rehearsal)
        functions = rehearsal[path]["first"]["functions"]
        seen[path] = {
            f.logical_id: {
                "environment": _normalise(functions[f.logical_id]["Environment"]["Variables"], names),
                "policies": _normalise(_role_documents(functions[f.logical_id]["Role"]), names),
            }
            for f in stack.FUNCTIONS
        }
    for function in stack.FUNCTIONS:
        chalice, cloudformation = seen["chalice"][function.logical_id], seen["cloudformation"][function.logical_id]
        statements = [json.dumps(s, sort_keys=True) for d in chalice["policies"] for s in d["Statement"]]
        expected = [json.dumps(s, sort_keys=True) for d in cloudformation["policies"] for s in d["Statement"]]
        differ = set(statements) ^ set(expected)
        assert statements == expected, (function.logical_id, sorted(differ))
        assert chalice["environment"] == cloudformation["environment"], function.logical_id
    # And the comparison sees real values: tables, the pool and the topic, not placeholders.
    api = seen["chalice"]["APIHandler"]["environment"]
    assert api["PENNYWORTH_KEYS_TABLE"] == "<KeysTable>" and api["PENNYWORTH_REPORT_TOPIC_ARN"] == "<ReportTopic>"


@pytest.mark.parametrize("path", PATHS)
def test_a_second_run_changes_nothing(rehearsal: dict[str, Any], path: str) -> None:
    first, second = rehearsal[path]["first"], rehearsal[path]["second"]
    assert second["stack"] == first["stack"]  # no change set executed
    assert second["layers"] == first["layers"]  # no new layer version
    assert second["apis"] == first["apis"]  # the same API, not a second one
    assert second["methods"] == first["methods"]
    # Chalice re-applies its batch size and window on every deploy (same values): only LastModified moves.
    assert _without(second["mappings"], "LastModified") == _without(first["mappings"], "LastModified")
    assert second["rules"] == first["rules"]
    for logical, config in first["functions"].items():
        again = second["functions"][logical]
        assert again["CodeSha256"] == config["CodeSha256"], logical
        changed = {k for k in config if k not in ("LastModified", "RevisionId") and config[k] != again.get(k)}
        assert not changed, (logical, changed)


def _without(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != key} for item in items]


def test_the_chalice_path_keeps_chalices_record_in_ssm(rehearsal: dict[str, Any], build_dir: Path) -> None:
    # GIVEN a fresh clone (no .chalice/deployed) WHEN deploying again THEN the same API is updated
    deployed = build_dir / STAGE / "project" / ".chalice" / "deployed" / f"{STAGE}.json"
    deployed.unlink()
    again = deploy.deploy_chalice(_options(build_dir, CHALICE_STACK))
    assert again["api_id"] == rehearsal["chalice"]["api_id"]
    assert len(client("apigateway").get_rest_apis()["items"]) == len(rehearsal["chalice"]["second"]["apis"])
