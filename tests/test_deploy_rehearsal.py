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

from chalicelib.edge.routes import STREAM_PATHS
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
        "PeopleSweep": "app.people_sweep",
        "StreamHandler": template["Resources"]["StreamHandler"]["Properties"]["Handler"],
    }
    timeouts = {
        "APIHandler": config["lambda_timeout"],
        "StreamHandler": template["Parameters"]["StreamTimeoutSeconds"]["Default"],
        **{
            f.logical_id: config["lambda_functions"][f.chalice_name]["lambda_timeout"]
            for f in stack.FUNCTIONS
            if f.chalice_name in ("daily_cost_report", "ledger_aggregator", "people_sweep")
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
def test_the_admin_authorizer_trusts_this_stages_user_pool(rehearsal: dict[str, Any], path: str) -> None:
    # app.py reads the pool's ARN when Chalice loads it: on the chalice path, from the deploy's environment
    [authorizer] = client("apigateway").get_authorizers(restApiId=rehearsal[path]["api_id"])["items"]
    assert authorizer["providerARNs"] == [rehearsal[path]["result"]["outputs"]["UserPoolArn"]]


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
    sweep = names["PeopleSweep"]
    swept = [
        rule
        for rule in deployed["rules"]
        if any(
            t["Arn"].endswith(f":function:{sweep}")
            for t in client("events").list_targets_by_rule(Rule=rule["Name"])["Targets"]
        )
    ]
    assert [rule["ScheduleExpression"] for rule in swept] == ["rate(5 minutes)"]


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
                    if arn == "*" or ":bedrock:" in arn or arn.endswith("/*"):
                        # PutMetricData (no resource); Bedrock models (EMULATION_GAPS); the patterns of
                        # provider keys (parameters an admin stores later) and of the keys that encrypt them.
                        continue
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
    # The stack's name as a path segment (the provider keys' default prefix, /pennyworth/<stack>/): alone,
    # it is also a resource's name, the dashboard's on one path and Chalice's API handler's on the other.
    names[f"/{stack_name}/"] = "/STACK/"
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


# -- bad input: each stops before changing anything, and says what to do ---------------------------


def _account_state() -> dict[str, Any]:
    """Everything a deploy could have changed, to show that a refused one changed nothing."""
    return {
        "stacks": sorted(
            (s["StackName"], s["StackStatus"]) for s in client("cloudformation").list_stacks()["StackSummaries"]
        ),
        "functions": sorted(f["FunctionName"] for f in client("lambda").list_functions()["Functions"]),
        "layers": sorted(layer["LayerName"] for layer in client("lambda").list_layers()["Layers"]),
        "apis": sorted(api["id"] for api in client("apigateway").get_rest_apis()["items"]),
        "tables": sorted(client("dynamodb").list_tables()["TableNames"]),
    }


@pytest.fixture
def unchanged(emulated_aws: str) -> Iterator[None]:
    before = _account_state()
    yield
    assert _account_state() == before


PATH_RUNS = {
    "chalice": deploy.deploy_chalice,
    "cloudformation": lambda options: deploy.deploy_cloudformation(
        deploy.Options(**{**options.__dict__, "bucket": BUCKET})
    ),
}


def _refused(path: str, build_dir: Path, stack_name: str, match: str, **environment: str | None) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        with pytest.raises(deploy.DeployError, match=match):
            PATH_RUNS[path](_options(build_dir, stack_name))


NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.mark.parametrize("path", PATHS)
def test_missing_credentials_stop_before_any_change(
    path: str, build_dir: Path, rehearsal: Any, unchanged: None
) -> None:
    _refused(path, build_dir, "pennyworth-nocreds", "no AWS credentials: sign in", **NO_CREDENTIALS)


@pytest.mark.parametrize("path", PATHS)
def test_a_missing_region_stops_before_any_change(path: str, build_dir: Path, rehearsal: Any, unchanged: None) -> None:
    missing = {"AWS_REGION": None, "AWS_DEFAULT_REGION": None, "AWS_CONFIG_FILE": "/nonexistent", "AWS_PROFILE": None}
    _refused(path, build_dir, "pennyworth-noregion", "no AWS region: set AWS_REGION", **missing)


@pytest.mark.parametrize("path", PATHS)
def test_a_region_outside_the_catalogs_profiles_stops_before_any_change(
    path: str, build_dir: Path, rehearsal: Any, unchanged: None
) -> None:
    # GIVEN eu-west-1, from which the catalog's us. inference profiles cannot be called
    _refused(
        path,
        build_dir,
        "pennyworth-eu",
        r"region eu-west-1 cannot call .*us\.amazon\.nova-micro",
        AWS_REGION="eu-west-1",
        AWS_DEFAULT_REGION="eu-west-1",
    )


def test_a_region_whose_bedrock_lacks_a_catalog_model_is_refused() -> None:
    from botocore.stub import Stubber

    # GIVEN Bedrock in us-east-1 offering every profile but no Cohere embedding model
    target = deploy.Target("dev", "pennyworth-dev", boto3.Session(region_name="us-east-1"), region="us-east-1")
    bedrock = boto3.client("bedrock", region_name="us-east-1")
    seed = json.loads(deploy.policies.CATALOG.read_text())["models"]
    catalog = [m["model_id"] for m in seed if m["provider"] == "bedrock"]
    profiles = [m for m in catalog if m.startswith("us.")]
    offered = [m for m in catalog if not m.startswith(("us.", "cohere."))]
    assert profiles and offered and len(profiles) + len(offered) < len(catalog)
    with Stubber(bedrock) as stub:
        stub.add_response("list_foundation_models", {"modelSummaries": [_model(m) for m in offered]})
        stub.add_response("list_inference_profiles", {"inferenceProfileSummaries": [_profile(p) for p in profiles]})
        target.client = lambda name: bedrock  # type: ignore[method-assign]
        # WHEN checked THEN refused, naming the model and what to do
        with pytest.raises(deploy.DeployError, match=r"offers neither model nor inference profile for cohere\.embed"):
            deploy.check_catalog_region(target)


def _model(model_id: str) -> dict[str, Any]:
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{model_id}"
    return {"modelArn": arn, "modelId": model_id}


def _profile(profile_id: str) -> dict[str, Any]:
    now = "2026-01-01T00:00:00Z"
    return {
        "inferenceProfileName": profile_id,
        "inferenceProfileArn": f"arn:aws:bedrock:us-east-1:1:inference-profile/{profile_id}",
        "inferenceProfileId": profile_id,
        "models": [{"modelArn": "arn:aws:bedrock:us-east-1::foundation-model/x"}],
        "status": "ACTIVE",
        "type": "SYSTEM_DEFINED",
        "createdAt": now,
        "updatedAt": now,
    }


@pytest.mark.parametrize("path", PATHS)
def test_a_stack_name_used_by_something_else_stops_before_any_change(
    path: str, build_dir: Path, rehearsal: Any, emulated_aws: str
) -> None:
    # GIVEN an unrelated stack under the name the deploy would use
    name = f"someone-elses-{path}"
    queue = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-q"}}}}
    client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(queue))
    before = _account_state()
    # WHEN deploying onto it THEN refused, and it is left as it was
    _refused(path, build_dir, name, f"a stack named {name} already exists and is not pennyworth's")
    assert _account_state() == before


def test_one_paths_stack_is_not_taken_over_by_the_other(build_dir: Path, rehearsal: Any, unchanged: None) -> None:
    _refused("cloudformation", build_dir, CHALICE_STACK, "belongs to the chalice path")
    _refused("chalice", build_dir, CLOUDFORMATION_STACK, "belongs to the cloudformation path")


def test_a_function_name_used_by_something_else_stops_before_any_change(
    build_dir: Path, rehearsal: Any, emulated_aws: str
) -> None:
    # GIVEN someone's function under the name chalice deploy would give the API handler of stage "qa"
    role = client("iam").create_role(RoleName="someone", AssumeRolePolicyDocument=json.dumps(stack.LAMBDA_TRUST))
    client("lambda").create_function(
        FunctionName="pennyworth-qa", Runtime="python3.12", Handler="x.y", Role=role["Role"]["Arn"],
        Code={"ZipFile": (build_dir / STAGE / "package" / "deployment.zip").read_bytes()},
    )  # fmt: skip
    before = _account_state()
    options = deploy.Options(stage="qa", stack="pennyworth-qa", parameters={}, build=False, build_dir=build_dir)
    with pytest.raises(deploy.DeployError, match="a Lambda function named pennyworth-qa already exists"):
        deploy.deploy_chalice(options)
    assert _account_state() == before


@pytest.mark.parametrize(
    ("status", "match"),
    [
        ("ROLLBACK_COMPLETE", r"ROLLBACK_COMPLETE \(a previous attempt failed.*delete-stack"),
        ("CREATE_FAILED", r"CREATE_FAILED \(a previous attempt failed"),
        ("UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED"),
        ("UPDATE_IN_PROGRESS", "wait for it to finish"),
        ("DELETE_IN_PROGRESS", "wait for it to finish"),
    ],
)
def test_a_half_created_previous_attempt_is_refused_with_what_to_do(status: str, match: str) -> None:
    from botocore.stub import Stubber

    # GIVEN our stack left in a state CloudFormation cannot update from (moto never rolls back, so stubbed)
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    target = deploy.Target("dev", "pennyworth-dev", boto3.Session(region_name="us-east-1"), region="us-east-1")
    described = {
        "StackName": "pennyworth-dev", "StackStatus": status, "CreationTime": "2026-01-01T00:00:00Z",
        "Tags": [{"Key": stack.PATH_TAG, "Value": "chalice"}],
    }  # fmt: skip
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", {"Stacks": [described]}, {"StackName": "pennyworth-dev"})
        target.client = lambda name: cfn  # type: ignore[method-assign]
        with pytest.raises(deploy.DeployError, match=match):
            deploy.check_stack(target, "chalice")


def test_a_first_change_set_never_executed_is_created_again() -> None:
    from botocore.stub import Stubber

    cfn = boto3.client("cloudformation", region_name="us-east-1")
    target = deploy.Target("dev", "pennyworth-dev", boto3.Session(region_name="us-east-1"), region="us-east-1")
    described = {
        "StackName": "pennyworth-dev", "StackStatus": "REVIEW_IN_PROGRESS", "CreationTime": "2026-01-01T00:00:00Z",
        "Tags": [{"Key": stack.PATH_TAG, "Value": "chalice"}],
    }  # fmt: skip
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", {"Stacks": [described]}, {"StackName": "pennyworth-dev"})
        target.client = lambda name: cfn  # type: ignore[method-assign]
        assert deploy.check_stack(target, "chalice") == "create"


def _oversized_build(root: Path, unzipped_bytes: int) -> Path:
    """A copy of the rehearsal's build whose layer unzips to ``unzipped_bytes`` (zeros: a tiny zip)."""
    import shutil
    import zipfile

    shutil.copytree(root / STAGE, root.parent / "oversized" / STAGE, dirs_exist_ok=True)
    layer = root.parent / "oversized" / STAGE / "package" / "layer.zip"
    with zipfile.ZipFile(layer, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("python/big.bin", "w") as out:
        chunk = bytes(2**20)
        for _ in range(unzipped_bytes // len(chunk)):
            out.write(chunk)
    return root.parent / "oversized"


@pytest.mark.parametrize("path", PATHS)
def test_a_layer_over_lambdas_unzipped_limit_stops_before_any_change(
    path: str, build_dir: Path, rehearsal: Any, unchanged: None
) -> None:
    # GIVEN function + layer that unzip past 250 MiB THEN refused before the stack is touched
    oversized = _oversized_build(build_dir, deploy.MAX_UNZIPPED + 2**20)
    with pytest.raises(deploy.DeployError, match="over Lambda's 250 MiB"):
        PATH_RUNS[path](_options(oversized, f"pennyworth-big-{path}"))


def test_a_layer_over_the_direct_upload_limit_stops_before_any_change(
    build_dir: Path, rehearsal: Any, unchanged: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a layer zip larger than the direct-upload limit (lowered here: a 50 MB random file is slow to make)
    oversized = _oversized_build(build_dir, 2**20)
    monkeypatch.setattr(deploy, "MAX_DIRECT_UPLOAD", (oversized / STAGE / "package" / "layer.zip").stat().st_size - 1)
    with pytest.raises(deploy.DeployError, match="over Lambda's 50 MB direct upload"):
        deploy.deploy_chalice(_options(oversized, "pennyworth-big-upload"))


@pytest.mark.parametrize("path", PATHS)
def test_the_catalog_table_its_parameters_and_their_grants_reach_both_functions_that_serve_models(
    rehearsal: dict[str, Any], path: str
) -> None:
    stack_name = rehearsal[path]["result"]["target"].stack
    functions = rehearsal[path]["first"]["functions"]
    template = stack.load_template()
    families = template["Parameters"]["AllowedBedrockModels"]["Default"].split(",")
    for logical in ("APIHandler", "StreamHandler"):
        variables = functions[logical]["Environment"]["Variables"]
        # The catalog table exists; the families and the key prefix are the parameters' (defaults) as resolved.
        assert client("dynamodb").describe_table(TableName=variables["PENNYWORTH_CATALOG_TABLE"])
        assert variables["PENNYWORTH_ALLOWED_BEDROCK_MODELS"].split(",") == families
        assert variables["PENNYWORTH_PROVIDER_KEY_PREFIX"] == f"/pennyworth/{stack_name}/"
        statements = {s.get("Sid"): s for d in _role_documents(functions[logical]["Role"]) for s in d["Statement"]}
        # Bedrock: exactly one foundation-model pattern per family, in the stack's partition.
        assert statements["InvokeAllowedModels"]["Resource"] == [
            f"arn:aws:bedrock:*::foundation-model/{family}" for family in families
        ]
        # Provider keys: GetParameter under the prefix, decrypted only through SSM, for those parameters.
        read = statements["ReadProviderKeys"]
        assert read["Action"] in ("ssm:GetParameter", ["ssm:GetParameter"])
        assert read["Resource"].endswith(f":parameter/pennyworth/{stack_name}/*")
        decrypt = statements["DecryptProviderKeysThroughSsm"]
        assert decrypt["Condition"]["StringEquals"]["kms:ViaService"] == "ssm.us-east-1.amazonaws.com"
        assert decrypt["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"] == read["Resource"]


def test_a_seed_model_outside_the_allowed_families_is_refused_before_any_change() -> None:
    template = stack.load_template()
    with pytest.raises(deploy.DeployError, match=r"amazon.nova-micro.*outside AllowedBedrockModels"):
        deploy.check_parameters(
            template, {"AllowedBedrockModels": "anthropic.*,cohere.embed-*,amazon.titan-*"}, "chalice"
        )
    with pytest.raises(deploy.DeployError, match="model id patterns"):
        deploy.check_parameters(template, {"AllowedBedrockModels": "anthropic.* ; rm -rf"}, "cloudformation")
    deploy.check_parameters(template, {"AllowedBedrockModels": "anthropic.*,amazon.*,cohere.*"}, "chalice")


def test_unknown_and_malformed_parameters_are_refused() -> None:
    with pytest.raises(deploy.DeployError, match="not KEY=VALUE"):
        deploy.parse_parameters(["ReportEmail"])
    with pytest.raises(deploy.DeployError, match="unknown stack parameter"):
        deploy.check_parameters(stack.load_template(), {"ReportEmial": "x"}, "chalice")
    with pytest.raises(deploy.DeployError, match="custom domain"):
        deploy.check_parameters(stack.load_template(), {"CustomDomainName": "llm.example.com"}, "chalice")


def test_the_command_exits_2_with_the_reason_on_stderr(capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NO_CREDENTIALS.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert deploy.main(["chalice", "--stage", STAGE, "--no-build"]) == 2
    assert capsys.readouterr().err.startswith("error: no AWS credentials")


# -- what the emulated AWS could not check ---------------------------------------------------------


def _cloudformation_types() -> dict[str, str]:
    """Every resource type either path's stack holds (after the SAM transform), with a logical id."""
    from local import moto_deploy

    sam = json.loads((ROOT / "infra" / "template.json").read_text())
    found = {}
    for template in (sam, stack.data_stack(sam, STAGE, CHALICE_STACK)):
        for logical, resource in template["Resources"].items():
            found.setdefault(resource["Type"], logical)
    del moto_deploy
    return found


def _moto_models() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    from local import moto_deploy

    moto_deploy.apply()
    return set(get_model_map())


#: Resource types the stacks use that moto's CloudFormation skips (created by neither moto nor our patches).
SKIPPED_TYPES = {
    "AWS::Logs::MetricFilter": "the metric filters counting unrecorded usage and cut answers",
    "AWS::SNS::Subscription": "the e-mail subscriptions (only with ReportEmail)",
    "AWS::Cognito::UserPoolDomain": "the console's sign-in domain (only with ConsoleUrl)",
    "AWS::Cognito::ManagedLoginBranding": "the console's sign-in page (only with ConsoleUrl)",
    "AWS::ApiGateway::DomainName": "the custom domain (only with CustomDomainName)",
    "AWS::ApiGateway::BasePathMapping": "the custom domain's mapping (only with CustomDomainName)",
}


@pytest.mark.parametrize("resource_type", sorted(SKIPPED_TYPES))
@pytest.mark.xfail(strict=True, reason="moto's CloudFormation skips this type: not rehearsed (docs/deployment.md)")
def test_moto_creates(resource_type: str) -> None:
    assert resource_type in _moto_models(), SKIPPED_TYPES[resource_type]


def test_every_type_the_stacks_use_is_emulated_or_listed_as_a_gap() -> None:
    used = set(_cloudformation_types()) - {"AWS::Serverless::Function", "AWS::Serverless::Api"}
    used -= {"AWS::Serverless::LayerVersion"}
    assert used - _moto_models() == set(SKIPPED_TYPES)


@pytest.mark.xfail(
    strict=True, reason="moto has no Bedrock ListFoundationModels: the region's model list is not rehearsed"
)
def test_moto_lists_bedrock_models(emulated_aws: str) -> None:
    client("bedrock").list_foundation_models()


#: What no emulator here can show; docs/deployment.md lists each (tests/test_docs-style check below).
NOT_REHEARSED = (
    "IAM is not enforced",
    "functions are not invoked",
    "no rollback",
    "Lambda's size limits",
)


@pytest.mark.parametrize("gap", NOT_REHEARSED)
def test_each_gap_is_in_the_deployment_guide(gap: str) -> None:
    text = (ROOT / "docs" / "deployment.md").read_text()
    assert gap in text
    for resource_type in SKIPPED_TYPES:
        assert resource_type in text


# Last: it takes down what the rehearsal deployed.
def test_chalice_delete_removes_what_it_created_and_keeps_the_tables_and_pool(
    rehearsal: dict[str, Any], build_dir: Path
) -> None:
    tables = client("dynamodb").list_tables()["TableNames"]
    ours = [t for t in tables if t.startswith(f"{CHALICE_STACK}-") and not t.startswith(CLOUDFORMATION_STACK)]
    pools = client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    deploy.delete_chalice(_options(build_dir, CHALICE_STACK))
    functions = {f["FunctionName"] for f in client("lambda").list_functions()["Functions"]}
    assert not functions & set(rehearsal["chalice"]["names"].values())
    assert rehearsal["chalice"]["api_id"] not in {a["id"] for a in client("apigateway").get_rest_apis()["items"]}
    assert not client("lambda").list_layer_versions(LayerName=f"{CHALICE_STACK}-dependencies")["LayerVersions"]
    assert CHALICE_STACK not in {s["StackName"] for s in client("cloudformation").list_stacks(
        StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])["StackSummaries"]}  # fmt: skip
    # Retained, as on the CloudFormation path (DeletionPolicy: Retain): every table the template declares.
    retained = {t.removeprefix(f"{CHALICE_STACK}-").rsplit("-", 1)[0] for t in ours}
    assert retained == {"KeysTable", "UsageTable", "AuditTable", "CatalogTable"}
    declared = {k: r for k, r in stack.load_template()["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(declared) == retained and all(r["DeletionPolicy"] == "Retain" for r in declared.values())
    assert set(ours) <= set(client("dynamodb").list_tables()["TableNames"])
    assert client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"] == pools


@pytest.mark.parametrize(
    ("present", "refused"),
    [
        (["by-period", "by-team"], None),  # up to date
        (["by-period"], None),  # one behind: one index added, as DynamoDB allows
        ([], r"adds by-period, adds by-team on table pennyworth-dev-usage \(UsageTable\)"),  # two behind
        (["by-period", "by-team", "old"], None),  # one removed
        (["by-team", "old", "older"], r"adds by-period, removes old, removes older"),
    ],
)
def test_an_update_that_changes_two_indexes_of_a_table_is_refused_before_any_change(
    present: list[str], refused: str | None
) -> None:
    from botocore.stub import Stubber

    # GIVEN a deployed usage table with ``present`` indexes (the template wants by-period and by-team)
    template = stack.load_template()
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    target = deploy.Target("dev", "pennyworth-dev", boto3.Session(region_name="us-east-1"), region="us-east-1")
    target.client = lambda name: {"cloudformation": cfn, "dynamodb": ddb}[name]  # type: ignore[method-assign]
    resource = {
        "LogicalResourceId": "UsageTable", "PhysicalResourceId": "pennyworth-dev-usage",
        "ResourceType": "AWS::DynamoDB::Table", "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
        "ResourceStatus": "CREATE_COMPLETE",
    }  # fmt: skip
    indexes = [{"IndexName": name} for name in present]
    with Stubber(cfn) as cfn_stub, Stubber(ddb) as ddb_stub:
        cfn_stub.add_response(
            "list_stack_resources", {"StackResourceSummaries": [resource]}, {"StackName": "pennyworth-dev"}
        )
        ddb_stub.add_response(
            "describe_table",
            {"Table": {"TableName": "pennyworth-dev-usage", "GlobalSecondaryIndexes": indexes}},
            {"TableName": "pennyworth-dev-usage"},
        )
        # WHEN the deploy checks the update THEN more than one index change per table is refused, with what to do
        if refused is None:
            deploy.check_indexes(target, template)
        else:
            with pytest.raises(deploy.DeployError, match=refused):
                deploy.check_indexes(target, template)
