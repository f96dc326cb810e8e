"""Deploy a stage in one command, by either path: ``python -m tools.deploy {chalice,cloudformation}``.

``make chalice-deploy STAGE=dev`` (``chalice``): checks first, changes nothing until every
check passed; builds the artifact (``tools/package.py``); creates or updates the stack
of everything Chalice does not create (``tools/stack.py: data_stack``: tables, user
pool and clients, topics, queue, alarms, log groups, the functions' roles); publishes
the dependencies layer when its content hash changed; writes the stage's Chalice
config with the concrete values (``build/<stage>/project/.chalice/config.json``, never
committed); creates or updates the streaming function; runs ``chalice deploy``
(``tools/chalice_deploy.py``: with the streaming methods and gateway responses in the
API it creates); then completes what Chalice leaves out (the aggregator's event
source settings, API Gateway's permission to call the streaming function). Chalice's
record of what it deployed is kept in an SSM parameter, so a fresh clone (CI) updates
the same API instead of creating a second one. ``make chalice-delete`` undoes it.

``make deploy`` (``cloudformation``): the same checks, then the merged template as one
stack through a change set (``aws cloudformation package`` + ``deploy``, in boto3).

Both print the OpenAI SDK base URL and the console URL. Every refusal is a
``DeployError`` whose message says what to do; it exits 2 before any change.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import policies, stack

ROOT = Path(__file__).resolve().parent.parent
#: Lambda: a zip uploaded directly (CreateFunction, PublishLayerVersion) is at most 50 MB; function and
#: layers together unzip to at most 250 MiB.
MAX_DIRECT_UPLOAD = 50 * 1000 * 1000
MAX_UNZIPPED = 250 * 1024 * 1024
#: CloudFormation's limit for a template sent inline (the chalice path has no bucket).
MAX_TEMPLATE_BODY = 51_200
#: SSM standard parameters (free) hold up to 4 KB.
MAX_STANDARD_PARAMETER = 4096
#: Stack states from which an update is possible.
UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
CAPABILITIES = ["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
URL_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}
#: The aggregator's event source settings Chalice cannot set (infra/template.json has them all).
EVENT_SOURCE_SETTINGS = (
    "TumblingWindowInSeconds",
    "ParallelizationFactor",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "FilterCriteria",
)
PERMISSION_PREFIX = "pennyworth-stream-"


class DeployError(Exception):
    """The deploy stops here; the message says why and what to do."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Target:
    """Where a deploy goes: the account, region and stack, and the clients to reach them."""

    stage: str
    stack: str
    session: Any
    region: str = ""
    account: str = ""
    partition: str = "aws"
    notes: list[str] = field(default_factory=list)

    def client(self, name: str) -> Any:
        return self.session.client(name, region_name=self.region)

    @property
    def url_suffix(self) -> str:
        return URL_SUFFIX.get(self.partition, "amazonaws.com")


# -- checks (nothing changes before every one has passed) ------------------------------------------


def new_session() -> Any:
    import boto3
    import botocore.exceptions

    try:
        return boto3.Session()
    except botocore.exceptions.ProfileNotFound as exc:
        raise DeployError(f"{exc}: check AWS_PROFILE (aws configure list-profiles).") from None


def check_account(target: Target) -> None:
    """Credentials and region, before anything else."""
    import botocore.exceptions

    # botocore reads AWS_DEFAULT_REGION and profiles; AWS_REGION is what most tools (and Actions) set.
    region = target.session.region_name or os.environ.get("AWS_REGION")
    if not region:
        raise DeployError(
            "no AWS region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or a region in your AWS profile. "
            "Pick one where Bedrock serves the catalog's models (docs/deployment.md)."
        )
    target.region = region
    try:
        identity = target.client("sts").get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        raise DeployError(
            "no AWS credentials: sign in (aws sso login, or AWS_PROFILE=…), or export AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY; in GitHub Actions, aws-actions/configure-aws-credentials does it."
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise DeployError(
            f"AWS refused these credentials ({code}): refresh them (expired session?), then retry."
        ) from None
    target.account = identity["Account"]
    target.partition = identity["Arn"].split(":")[1]


#: Regions a cross-region inference profile may be called from, by profile prefix (Bedrock's "Supported
#: Regions and models for inference profiles").
PROFILE_REGIONS = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-3"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-southeast-1", "ap-southeast-2"),
}


def seed_bedrock_models(catalog_path: Path = policies.CATALOG) -> list[str]:
    """The Bedrock model ids of the seed catalog (what a new stack's catalog starts with)."""
    models = json.loads(catalog_path.read_text())["models"]
    return [m["model_id"] for m in models if m.get("provider", "bedrock") == "bedrock"]


def check_catalog_region(target: Target, catalog_path: Path = policies.CATALOG) -> None:
    """Every seed catalog model can be called from this region: its profile's geography, then Bedrock's list."""
    import botocore.exceptions

    models = seed_bedrock_models(catalog_path)
    wrong = []
    for model_id in models:
        prefix = model_id.partition(".")[0]
        if prefix in PROFILE_REGIONS and target.region not in PROFILE_REGIONS[prefix]:
            wrong.append(model_id)
    if wrong:
        raise DeployError(
            f"region {target.region} cannot call the catalog's cross-region profiles {', '.join(wrong)}: a "
            f"'us.' profile is served only from {', '.join(PROFILE_REGIONS['us'])}. Deploy to one of "
            "those, or change the models' model_id in chalicelib/catalog/catalog.json (the seed of a new stack's "
            "catalog) to your geography's profiles (docs/deployment.md, 'Pick the region')."
        )
    bedrock = target.client("bedrock")
    try:
        offered = {m["modelId"] for m in bedrock.list_foundation_models()["modelSummaries"]}
        profiles = {
            p["inferenceProfileId"]
            for page in bedrock.get_paginator("list_inference_profiles").paginate()
            for p in page["inferenceProfileSummaries"]
        }
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        reason = exc.response.get("Error", {}).get("Code") if isinstance(exc, botocore.exceptions.ClientError) else ""
        note = (
            f"Bedrock's model list could not be read in {target.region} ({reason or type(exc).__name__}); not checked"
        )
        target.notes.append(note)
        log(f"warning: {note}")
        return
    missing = []
    for model_id in models:
        prefix, _, base = model_id.partition(".")
        if prefix in PROFILE_REGIONS:
            if model_id not in profiles:
                missing.append(model_id)
        elif model_id not in offered and base not in offered:
            missing.append(model_id)
    if missing:
        raise DeployError(
            f"Bedrock in {target.region} offers neither model nor inference profile for {', '.join(missing)}. "
            "Deploy to a region that has them, or change those catalog entries (chalicelib/catalog/catalog.json). "
            "Then enable model access in the Bedrock console (Model access) for each."
        )


def check_stack(target: Target, path: str) -> str:
    """'create' or 'update' for the stack; refuses one in a state or of an owner we cannot update."""
    import botocore.exceptions

    try:
        [found] = target.client("cloudformation").describe_stacks(StackName=target.stack)["Stacks"]
    except botocore.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return "create"
        raise
    status = found["StackStatus"]
    tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    owner = tags.get(stack.PATH_TAG)
    outputs = {o["OutputKey"] for o in found.get("Outputs", [])}
    if owner is None and not (path == "cloudformation" and "OpenAIBaseURL" in outputs):
        raise DeployError(
            f"a stack named {target.stack} already exists and is not pennyworth's {path} stack. "
            f"Choose another name (STACK=…), or delete that stack if it is an old attempt."
        )
    if owner is not None and owner != path:
        other = "make deploy" if owner == "cloudformation" else "make chalice-deploy"
        raise DeployError(
            f"stack {target.stack} belongs to the {owner} path ({other}); one stage is deployed by one path. "
            f"Keep using {other}, or choose another stack name (STACK=…), or delete it first."
        )
    if status == "REVIEW_IN_PROGRESS":
        return "create"  # a first change set was made but never executed: CloudFormation takes another
    if status.endswith("_IN_PROGRESS"):
        raise DeployError(f"stack {target.stack} is {status}: wait for it to finish, then run again.")
    if status == "ROLLBACK_COMPLETE" or status.endswith("_FAILED"):
        raise DeployError(
            f"stack {target.stack} is {status} (a previous attempt failed and cannot be updated). See why with "
            f"`aws cloudformation describe-stack-events --stack-name {target.stack}`, fix that, delete the stack "
            f"(`aws cloudformation delete-stack --stack-name {target.stack}`; its tables and user pool are retained "
            "only once created successfully), then run again."
        )
    if status not in UPDATABLE:
        raise DeployError(f"stack {target.stack} is {status}; it cannot be updated from there.")
    return "update"


def check_function_names(target: Target, names: list[str], owns: Callable[[dict[str, str], str], bool]) -> None:
    """A function we are about to create or update is either absent or already ours (by its tags)."""
    import botocore.exceptions

    client = target.client("lambda")
    for name in names:
        try:
            arn = client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                continue
            raise
        tags = client.list_tags(Resource=arn).get("Tags", {})
        if not owns(tags, name):
            raise DeployError(
                f"a Lambda function named {name} already exists in {target.region} and is not this stage's: "
                "deploying would overwrite it. Delete or rename it, or deploy another stage (STAGE=…)."
            )


def check_artifact(build: Path) -> dict[str, Path]:
    """The built zips exist and fit Lambda's limits (direct upload, and unzipped with the layer)."""
    package = build / "package"
    zips = {"function": package / "deployment.zip", "layer": package / "layer.zip"}
    for path in zips.values():
        if not path.is_file():
            raise DeployError(f"{os.path.relpath(path, ROOT)} is missing: run without --no-build, or `make package`.")
    unzipped = 0
    for path in zips.values():
        size = path.stat().st_size
        if size > MAX_DIRECT_UPLOAD:
            raise DeployError(
                f"{path.name} is {size / 1e6:.1f} MB zipped, over Lambda's 50 MB direct upload: move dependencies "
                "out or prune more (tools/prune.py), then `make package` again."
            )
        with zipfile.ZipFile(path) as archive:
            unzipped += sum(info.file_size for info in archive.infolist())
    if unzipped > MAX_UNZIPPED:
        raise DeployError(
            f"function and layer unzip to {unzipped / 2**20:.0f} MiB, over Lambda's 250 MiB: prune dependencies "
            "(tools/prune.py) and `make package` again."
        )
    return zips


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        for item in pair.split():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise DeployError(f"parameter {item!r} is not KEY=VALUE (e.g. ReportEmail=ops@example.com).")
            parameters[key] = value
    return parameters


def check_parameters(template: dict[str, Any], parameters: dict[str, str], path: str) -> None:
    unknown = sorted(set(parameters) - set(template["Parameters"]))
    if unknown:
        raise DeployError(
            f"unknown stack parameter(s) {', '.join(unknown)}; the template has {', '.join(template['Parameters'])}."
        )
    if path == "chalice" and (parameters.get("CustomDomainName") or parameters.get("CustomDomainCertificateArn")):
        raise DeployError(
            "the chalice path does not set up a custom domain; deploy with make deploy (CloudFormation) for one, "
            "or drop CustomDomainName/CustomDomainCertificateArn."
        )
    allowed = parameters.get("AllowedBedrockModels", template["Parameters"]["AllowedBedrockModels"]["Default"])
    patterns = [p.strip() for p in allowed.split(",")]
    if not all(re.fullmatch(r"[A-Za-z0-9.:*?-]+", p) for p in patterns):
        raise DeployError(
            f"AllowedBedrockModels={allowed!r} must be comma-separated Bedrock model id patterns without "
            "spaces, e.g. anthropic.*,amazon.nova-*."
        )
    outside = [m for m in seed_bedrock_models() if not any(fnmatch.fnmatchcase(_base_id(m), p) for p in patterns)]
    if outside:
        raise DeployError(
            f"the seed catalog's {', '.join(outside)} is outside AllowedBedrockModels ({allowed}): the stack's "
            "role could not invoke it. Widen the parameter, or take the model out of chalicelib/catalog/catalog.json."
        )


def _base_id(model_id: str) -> str:
    prefix, dot, rest = model_id.partition(".")
    return rest if dot and prefix in (*PROFILE_REGIONS, "global", "jp", "au", "ca", "us-gov") else model_id


# -- CloudFormation --------------------------------------------------------------------------------


def stack_parameters(template: dict[str, Any], given: dict[str, str], mode: str) -> list[dict[str, Any]]:
    """Given values; on an update, the previous value of every other parameter (as ``aws cloudformation deploy``)."""
    result = []
    for name in template["Parameters"]:
        if name in given:
            result.append({"ParameterKey": name, "ParameterValue": given[name]})
        elif mode == "update":
            result.append({"ParameterKey": name, "UsePreviousValue": True})
    return result


def apply_stack(target: Target, mode: str, path: str, template: dict[str, Any], parameters: list[dict[str, Any]],
                template_url: str | None = None, role_arn: str | None = None) -> dict[str, str]:  # fmt: skip
    """Create or update the stack through a change set; no change set is executed when nothing changes."""
    import botocore.exceptions

    cfn = target.client("cloudformation")
    name = f"pennyworth-{time.strftime('%Y%m%d%H%M%S')}"
    request: dict[str, Any] = {
        "StackName": target.stack,
        "ChangeSetName": name,
        "ChangeSetType": mode.upper(),
        "Parameters": parameters,
        "Capabilities": CAPABILITIES,
        "Tags": [{"Key": stack.PATH_TAG, "Value": path}, {"Key": "pennyworth:stage", "Value": target.stage}],
    }
    if template_url:
        request["TemplateURL"] = template_url
    else:
        body = json.dumps(template, separators=(",", ":"))
        if len(body) > MAX_TEMPLATE_BODY:
            raise DeployError(f"the stack's template is {len(body)} bytes, over CloudFormation's inline limit.")
        request["TemplateBody"] = body
    if role_arn:
        request["RoleARN"] = role_arn
    log(f"{target.stack}: change set {name} ({mode})")
    try:
        cfn.create_change_set(**request)
    except botocore.exceptions.ClientError as exc:
        # CloudFormation makes a FAILED change set when nothing changed; moto refuses the call instead.
        if "No updates are to be performed" not in str(exc):
            raise
        log(f"{target.stack}: no changes")
        return _outputs(cfn, target.stack)
    change_set = _wait(lambda: cfn.describe_change_set(StackName=target.stack, ChangeSetName=name), "Status",
                       done={"CREATE_COMPLETE", "FAILED"})  # fmt: skip
    reason = change_set.get("StatusReason", "")
    no_change = not change_set.get("Changes") and (
        change_set["Status"] == "CREATE_COMPLETE" or "didn't contain changes" in reason or "No updates" in reason
    )
    if no_change and mode == "update":
        cfn.delete_change_set(StackName=target.stack, ChangeSetName=name)
        log(f"{target.stack}: no changes")
    elif change_set["Status"] == "FAILED":
        raise DeployError(f"CloudFormation refused the change set for {target.stack}: {reason}")
    else:
        cfn.execute_change_set(StackName=target.stack, ChangeSetName=name)
        done = _wait(lambda: cfn.describe_stacks(StackName=target.stack)["Stacks"][0], "StackStatus",
                     done=lambda s: not s.endswith("_IN_PROGRESS"), timeout=3600)  # fmt: skip
        if done["StackStatus"] not in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}:
            raise DeployError(
                f"stack {target.stack} ended {done['StackStatus']}: {_failure(cfn, target.stack)}. Fix that, then run "
                "again (a first attempt that rolled back must be deleted first; the command says how)."
            )
        log(f"{target.stack}: {done['StackStatus']}")
    return _outputs(cfn, target.stack)


def _outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    [found] = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def _failure(cfn: Any, stack_name: str) -> str:
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"].endswith("_FAILED")]
    return (
        "; ".join(f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in failed[-3:]) or "no reason"
    )


def _wait(read: Callable[[], dict[str, Any]], key: str, done: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        value = read()
        finished = done(value[key]) if callable(done) else value[key] in done
        if finished:
            return value
        if time.monotonic() > deadline:
            raise DeployError(f"gave up waiting ({key} is still {value[key]})")
        time.sleep(delay)
        delay = min(delay * 2, 5)


# -- the chalice path ------------------------------------------------------------------------------


def layer_name(target: Target) -> str:
    return f"{target.stack}-dependencies"


def publish_layer(target: Target, layer_zip: Path) -> str:
    """The layer version for ``layer_zip``: the latest one if its content hash matches, else a new one."""
    client = target.client("lambda")
    digest = hashlib.sha256(layer_zip.read_bytes()).hexdigest()
    description = f"pennyworth's runtime dependencies except LiteLLM (sha256:{digest})"
    versions = client.list_layer_versions(LayerName=layer_name(target)).get("LayerVersions", [])
    latest = max(versions, key=lambda v: v["Version"], default=None)
    if latest and latest.get("Description") == description:
        log(f"layer {layer_name(target)}: unchanged (version {latest['Version']})")
        return latest["LayerVersionArn"]
    published = client.publish_layer_version(
        LayerName=layer_name(target),
        Description=description,
        Content={"ZipFile": layer_zip.read_bytes()},
        CompatibleRuntimes=["python3.12"],
        CompatibleArchitectures=["x86_64"],
    )
    log(f"layer {layer_name(target)}: published version {published['Version']}")
    return published["LayerVersionArn"]


def chalice_config(
    project: Path, target: Target, template: dict[str, Any], outputs: dict[str, str], layer: str
) -> dict[str, Any]:
    """The stage's Chalice config with the concrete values: roles, layer, each function's environment."""
    config = json.loads((project / ".chalice" / "config.json").read_text())
    stage = config["stages"][target.stage]
    stage["manage_iam_role"] = False
    stage["autogen_policy"] = False
    stage["layers"] = [layer]
    stage["iam_role_arn"] = outputs[stack.role_output_key(stack.BY_ID["APIHandler"])]
    functions = stage.setdefault("lambda_functions", {})
    for function in stack.FUNCTIONS:
        if function.chalice_name is None:
            continue
        settings = functions.setdefault(function.chalice_name, {})
        settings.pop("iam_policy_file", None)
        settings["iam_role_arn"] = outputs[stack.role_output_key(function)]
        settings["environment_variables"] = stack.resolved_environment(template, function, outputs)
    return config


def stream_function_settings(
    target: Target,
    config: dict[str, Any],
    template: dict[str, Any],
    outputs: dict[str, str],
    parameters: dict[str, str],
    layer: str,
) -> dict[str, Any]:
    """The streaming function as the CloudFormation path makes it: the API handler's code and settings, its own."""
    stage = config["stages"][target.stage]
    declared = template["Resources"]["StreamHandler"]["Properties"]
    timeout = int(parameters.get("StreamTimeoutSeconds") or template["Parameters"]["StreamTimeoutSeconds"]["Default"])
    environment = {**config.get("environment_variables", {}), **stage.get("environment_variables", {})}
    environment.update(stack.resolved_environment(template, stack.STREAM, outputs))
    return {
        "FunctionName": stack.STREAM.chalice_function_name(target.stage, target.stack),
        "Runtime": "python3.12",
        "Handler": declared["Handler"],
        "Role": outputs[stack.role_output_key(stack.STREAM)],
        "Timeout": timeout,
        "MemorySize": stage["lambda_memory_size"],
        "Layers": [layer],
        "Description": declared["Description"],
        "Environment": {"Variables": environment},
    }


def put_stream_function(target: Target, settings: dict[str, Any], code: Path) -> str:
    """Create or update the streaming function; touches it only where it differs."""
    import botocore.exceptions

    client = target.client("lambda")
    name = settings["FunctionName"]
    data = code.read_bytes()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    try:
        current = client.get_function_configuration(FunctionName=name)
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        created = _retry_role(
            lambda: client.create_function(
                **settings,
                Code={"ZipFile": data},
                Architectures=["x86_64"],
                Tags={stack.PATH_TAG: "chalice", "pennyworth:stack": target.stack},
            )
        )
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        log(f"function {name}: created")
        return created["FunctionArn"]
    changed = {k: v for k, v in settings.items() if k != "FunctionName" and _current(current, k) != v}
    if changed:
        _retry_role(lambda: client.update_function_configuration(FunctionName=name, **changed))
        client.get_waiter("function_updated_v2").wait(FunctionName=name)
        log(f"function {name}: updated {', '.join(sorted(changed))}")
    if current["CodeSha256"] != sha:
        client.update_function_code(FunctionName=name, ZipFile=data)
        client.get_waiter("function_updated_v2").wait(FunctionName=name)
        log(f"function {name}: new code")
    return current["FunctionArn"]


def _current(configuration: dict[str, Any], key: str) -> Any:
    if key == "Layers":
        return [layer["Arn"] for layer in configuration.get("Layers", [])]
    if key == "Environment":
        return {"Variables": configuration.get("Environment", {}).get("Variables", {})}
    return configuration.get(key)


def _retry_role(call: Callable[[], Any], attempts: int = 10) -> Any:
    """A role made moments ago may not be assumable by Lambda yet (IAM is eventually consistent)."""
    import botocore.exceptions

    for attempt in range(attempts):
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            young_role = exc.response["Error"]["Code"] == "InvalidParameterValueException" and "role" in str(exc)
            if attempt == attempts - 1 or not young_role:
                raise
            time.sleep(min(2**attempt, 10))
    return None


def state_parameter(target: Target) -> str:
    return f"/{target.stack}/chalice/deployed-{target.stage}"


def restore_chalice_state(target: Target, project: Path) -> None:
    """Put Chalice's record of what it deployed back from SSM (a fresh clone has none)."""
    import botocore.exceptions

    path = project / ".chalice" / "deployed" / f"{target.stage}.json"
    try:
        value = target.client("ssm").get_parameter(Name=state_parameter(target))["Parameter"]["Value"]
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ParameterNotFound":
            raise
        return  # never deployed (or its record was not saved): Chalice goes by what the project has
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zlib.decompress(base64.b64decode(value)))


def save_chalice_state(target: Target, project: Path) -> dict[str, Any]:
    path = project / ".chalice" / "deployed" / f"{target.stage}.json"
    raw = path.read_bytes()
    value = base64.b64encode(zlib.compress(raw, 9)).decode()
    if len(value) > MAX_STANDARD_PARAMETER:
        raise DeployError(
            f"Chalice's deployed state is {len(value)} characters compressed, over SSM's 4 KB standard tier."
        )
    ssm = target.client("ssm")
    import botocore.exceptions

    try:
        current = ssm.get_parameter(Name=state_parameter(target))["Parameter"]["Value"]
    except botocore.exceptions.ClientError:
        current = None
    if current != value:
        ssm.put_parameter(
            Name=state_parameter(target),
            Value=value,
            Type="String",
            Tier="Standard",
            Overwrite=True,
            Description="What chalice deploy created for this stage (tools/deploy.py); zlib, base64",
        )
    return json.loads(raw)


def api_extension(target: Target, template: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    from chalicelib.edge.routes import STREAM_PATHS
    from tools.package import stream_methods, streaming_uri

    uri = (
        streaming_uri(stream_arn)
        .replace("${AWS::Partition}", target.partition)
        .replace("${AWS::Region}", target.region)
    )
    paths: dict[str, Any] = {}
    stream_methods(paths, uri=uri, stream_paths=STREAM_PATHS)
    return {"paths": paths, "gateway_responses": stack.gateway_responses(template)}


def run_chalice_deploy(target: Target, project: Path, extension: dict[str, Any], outputs: dict[str, str]) -> None:
    extension_file = project.parent / "api-extension.json"
    extension_file.write_text(json.dumps(extension, indent=2))
    # app.py reads these two at import, when Chalice builds the deployment (the authorizer's pool, the
    # aggregator's stream); the functions themselves get them from their own environment.
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": target.region,
        "PENNYWORTH_COGNITO_USER_POOL_ARN": outputs[stack.output_key("PENNYWORTH_COGNITO_USER_POOL_ARN")],
        "PENNYWORTH_USAGE_STREAM_ARN": outputs[stack.output_key("PENNYWORTH_USAGE_STREAM_ARN")],
    }
    command = [sys.executable, "-m", "tools.chalice_deploy", str(project), target.stage, str(extension_file)]
    log(f"chalice deploy --stage {target.stage}")
    result = subprocess.run(command, cwd=ROOT, env=env)  # noqa: S603 - our interpreter, our module
    if result.returncode != 0:
        raise DeployError(
            f"chalice deploy failed (above). What it created is recorded in {project}/.chalice/deployed; "
            "fix the cause and run the same command again."
        )


def complete_event_source(target: Target, template: dict[str, Any], function_name: str, stream_arn: str,
                          outputs: dict[str, str]) -> None:  # fmt: skip
    """Give the aggregator's mapping (Chalice made it) the template's window, filter, retries and destination."""
    declared = template["Resources"]["LedgerAggregator"]["Properties"]["Events"]
    [source] = declared.values()
    wanted = {k: source["Properties"][k] for k in EVENT_SOURCE_SETTINGS}
    wanted["DestinationConfig"] = {"OnFailure": {"Destination": outputs["LedgerAggregatorFailuresArn"]}}
    client = target.client("lambda")
    # Filtered here, not by the call: moto's FunctionName filter matches no plain name.
    mappings = [
        m
        for page in client.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream_arn)
        for m in page["EventSourceMappings"]
        if m["FunctionArn"].rsplit(":", 1)[-1] == function_name
    ]
    if len(mappings) != 1:
        raise DeployError(f"expected one event source from {stream_arn} to {function_name}, found {len(mappings)}")
    [mapping] = mappings
    changed = {k: v for k, v in wanted.items() if mapping.get(k) != v}
    if changed:
        client.update_event_source_mapping(UUID=mapping["UUID"], **changed)
        log(f"event source of {function_name}: set {', '.join(sorted(changed))}")


def put_stream_permissions(target: Target, function_name: str, api_id: str, api_stage: str) -> None:
    """API Gateway may invoke the streaming function for exactly the streaming methods of this API."""
    import botocore.exceptions

    from chalicelib.edge.routes import STREAM_PATHS
    from tools.package import permission_name

    client = target.client("lambda")
    wanted = {}
    for method, path in STREAM_PATHS:
        source = (
            f"arn:{target.partition}:execute-api:{target.region}:{target.account}:{api_id}/{api_stage}/{method}{path}"
        )
        wanted[PERMISSION_PREFIX + permission_name(method, path).removeprefix("StreamHandlerPermission")] = source
    try:
        statements = json.loads(client.get_policy(FunctionName=function_name)["Policy"])["Statement"]
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        statements = []
    present = {
        s["Sid"]: s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
        for s in statements
        if s["Sid"].startswith(PERMISSION_PREFIX)
    }
    for sid, source in present.items():
        if wanted.get(sid) != source:
            client.remove_permission(FunctionName=function_name, StatementId=sid)
    for sid, source in wanted.items():
        if present.get(sid) != source:
            client.add_permission(
                FunctionName=function_name,
                StatementId=sid,
                Action="lambda:InvokeFunction",
                Principal="apigateway.amazonaws.com",
                SourceArn=source,
            )


def print_urls(base_url: str, console_url: str) -> None:
    print(f"OpenAI SDK base URL: {base_url}")
    print(f"Web console:         {console_url}")


@dataclass
class Options:
    stage: str
    stack: str
    parameters: dict[str, str]
    build: bool = True
    build_dir: Path = ROOT / "build"
    bucket: str | None = None
    role_arn: str | None = None


def prepare(options: Options, path: str, session: Any = None) -> tuple[Target, dict[str, Any], str]:
    """The checks both paths share: account, region, catalog, parameters, the stack's state."""

    target = Target(options.stage, options.stack, session or new_session())
    check_account(target)
    template = stack.load_template()
    check_parameters(template, options.parameters, path)
    check_catalog_region(target)
    mode = check_stack(target, path)
    if mode == "update":
        check_indexes(target, template)
    return target, template, mode


def check_indexes(target: Target, template: dict[str, Any]) -> None:
    """Refuse an update that would add or remove more than one index of a table at once.

    DynamoDB builds one global secondary index per table update, and CloudFormation fails (and
    rolls back) an update that asks for two, as a stack two index-adding releases behind would:
    say so before anything changes.
    """
    cfn, dynamodb = target.client("cloudformation"), target.client("dynamodb")
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=target.stack)
        for r in page["StackResourceSummaries"]
        if r["ResourceType"] == "AWS::DynamoDB::Table" and r.get("PhysicalResourceId")
    }
    for logical, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table" or logical not in physical:
            continue
        wanted = {g["IndexName"] for g in resource["Properties"].get("GlobalSecondaryIndexes", [])}
        table = dynamodb.describe_table(TableName=physical[logical])["Table"]
        present = {g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])}
        added, removed = sorted(wanted - present), sorted(present - wanted)
        if len(added) + len(removed) > 1:
            change = ", ".join([*(f"adds {n}" for n in added), *(f"removes {n}" for n in removed)])
            raise DeployError(
                f"this release {change} on table {physical[logical]} ({logical}), and DynamoDB changes one index "
                "per table update. Deploy the releases in between first (each changes one), then this one; "
                "see docs/deployment.md, 'Upgrading a stack'."
            )


def build(options: Options) -> Path:
    from tools import package

    stage_dir = options.build_dir / options.stage
    if options.build:
        report = package.build(options.stage, options.build_dir.resolve())
        if not report["within_limits"]:
            raise DeployError("the artifact is over a size limit (see above); nothing was deployed.")
    return stage_dir


def deploy_chalice(options: Options, session: Any = None) -> dict[str, Any]:
    """The chalice path, end to end; returns what was deployed (for the rehearsal)."""
    target, template, mode = prepare(options, "chalice", session)
    names = [f.chalice_function_name(target.stage, target.stack) for f in stack.FUNCTIONS]
    check_function_names(target, names, lambda tags, name: _chalice_owns(tags, target))
    stage_dir = build(options)
    zips = check_artifact(stage_dir)
    # Every check has passed: from here on, changes.
    data = stack.data_stack(template, target.stage, target.stack)
    parameters = stack_parameters(template, options.parameters, mode)
    outputs = apply_stack(target, mode, "chalice", data, parameters, role_arn=options.role_arn)
    layer = publish_layer(target, zips["layer"])
    project = stage_dir / "project"
    config = chalice_config(project, target, template, outputs, layer)
    (project / ".chalice" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in _stack(target).get("Parameters", [])}
    settings = stream_function_settings(target, config, template, outputs, {**previous, **options.parameters}, layer)
    stream_arn = put_stream_function(target, settings, zips["function"])
    restore_chalice_state(target, project)
    run_chalice_deploy(target, project, api_extension(target, template, stream_arn), outputs)
    deployed = save_chalice_state(target, project)
    resources = {r["name"]: r for r in deployed["resources"]}
    api_id = resources["rest_api"]["rest_api_id"]
    aggregator = stack.BY_ID["LedgerAggregator"].chalice_function_name(target.stage, target.stack)
    usage_stream = outputs[stack.output_key("PENNYWORTH_USAGE_STREAM_ARN")]
    complete_event_source(target, template, aggregator, usage_stream, outputs)
    api_stage = config["stages"][target.stage]["api_gateway_stage"]
    put_stream_permissions(target, settings["FunctionName"], api_id, api_stage)
    root = f"https://{api_id}.execute-api.{target.region}.{target.url_suffix}/{api_stage}"
    print_urls(f"{root}/v1", f"{root}/console")
    return {"target": target, "outputs": outputs, "api_id": api_id, "layer": layer, "stream": settings["FunctionName"]}


def _chalice_owns(tags: dict[str, str], target: Target) -> bool:
    """Chalice tags its functions ``aws-chalice: version=…:stage=<stage>:app=<app>``; we tag the streaming one."""
    chalice = dict(part.partition("=")[::2] for part in tags.get("aws-chalice", "").split(":"))
    ours = chalice.get("app") == stack.APP_NAME and chalice.get("stage") == target.stage
    return ours or tags.get("pennyworth:stack") == target.stack


def delete_chalice(options: Options, session: Any = None) -> None:
    """Remove what ``deploy_chalice`` created; tables and the user pool are retained, as on the other path."""
    import botocore.exceptions

    target = Target(options.stage, options.stack, session or new_session())
    check_account(target)
    found = _stack(target)
    if found and {t["Key"]: t["Value"] for t in found.get("Tags", [])}.get(stack.PATH_TAG) != "chalice":
        raise DeployError(
            f"stack {target.stack} is not the chalice path's: nothing deleted. Delete a make deploy stack "
            "with `aws cloudformation delete-stack`."
        )
    project = options.build_dir / options.stage / "project"
    if (project / ".chalice" / "config.json").is_file():
        restore_chalice_state(target, project)
        if (project / ".chalice" / "deployed" / f"{target.stage}.json").is_file():
            log(f"chalice delete --stage {target.stage}")
            chalice = Path(sys.executable).with_name("chalice")
            subprocess.run([str(chalice), "delete", "--stage", target.stage], cwd=project, check=True)  # noqa: S603
    client = target.client("lambda")
    name = stack.STREAM.chalice_function_name(target.stage, target.stack)
    try:
        client.delete_function(FunctionName=name)
        log(f"function {name}: deleted")
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    for version in client.list_layer_versions(LayerName=layer_name(target)).get("LayerVersions", []):
        client.delete_layer_version(LayerName=layer_name(target), VersionNumber=version["Version"])
    with contextlib.suppress(botocore.exceptions.ClientError):
        target.client("ssm").delete_parameter(Name=state_parameter(target))
    if found:
        cfn = target.client("cloudformation")
        cfn.delete_stack(StackName=target.stack)
        _wait(lambda: _stack(target) or {"StackStatus": "DELETE_COMPLETE"}, "StackStatus",
              done=lambda s: not s.endswith("_IN_PROGRESS"), timeout=1800)  # fmt: skip
        log(f"{target.stack}: deleted (tables and user pool retained)")


def _stack_physical_ids(target: Target) -> set[str]:
    pages = target.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=target.stack)
    return {r.get("PhysicalResourceId", "") for page in pages for r in page["StackResourceSummaries"]}


def _stack(target: Target) -> dict[str, Any]:
    import botocore.exceptions

    try:
        return target.client("cloudformation").describe_stacks(StackName=target.stack)["Stacks"][0]
    except botocore.exceptions.ClientError:
        return {}


# -- the CloudFormation path -----------------------------------------------------------------------


def upload(target: Target, bucket: str, path: Path, suffix: str) -> str:
    """``s3://bucket/<stack>/<sha256><suffix>``, uploaded unless already there (content-addressed)."""
    import botocore.exceptions

    s3 = target.client("s3")
    key = f"{target.stack}/{hashlib.sha256(path.read_bytes()).hexdigest()}{suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError:
        s3.upload_file(str(path), bucket, key)
    return key


def deploy_cloudformation(options: Options, session: Any = None) -> dict[str, Any]:
    """The CloudFormation path: the merged template as one stack (what ``aws cloudformation deploy`` does)."""
    import botocore.exceptions

    if not options.bucket:
        raise DeployError(
            "the CloudFormation path needs ARTIFACT_BUCKET=<bucket> "
            "(the ArtifactBucketName output of the pennyworth-cicd stack)."
        )
    target, template, mode = prepare(options, "cloudformation", session)
    names = [f"{target.stack}-{f.suffix}" for f in stack.FUNCTIONS]
    ours = _stack_physical_ids(target) if mode == "update" else set()
    check_function_names(target, names, lambda tags, name: name in ours)
    try:
        target.client("s3").head_bucket(Bucket=options.bucket)
    except botocore.exceptions.ClientError:
        raise DeployError(
            f"bucket {options.bucket} cannot be reached with these credentials (ARTIFACT_BUCKET)."
        ) from None
    stage_dir = build(options)
    zips = check_artifact(stage_dir)
    sam = json.loads((stage_dir / "package" / "sam.json").read_text())
    code = upload(target, options.bucket, zips["function"], ".zip")
    layer = upload(target, options.bucket, zips["layer"], ".zip")
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        if props.get("CodeUri") == "./deployment.zip":
            props["CodeUri"] = f"s3://{options.bucket}/{code}"
        if props.get("ContentUri") == "./layer.zip":
            props["ContentUri"] = f"s3://{options.bucket}/{layer}"
    packaged = stage_dir / "packaged.json"
    packaged.write_text(json.dumps(sam, indent=2))
    key = upload(target, options.bucket, packaged, ".template.json")
    url = f"https://{options.bucket}.s3.{target.region}.{target.url_suffix}/{key}"
    outputs = apply_stack(target, mode, "cloudformation", sam, stack_parameters(template, options.parameters, mode),
                          template_url=url, role_arn=options.role_arn)  # fmt: skip
    print_urls(outputs.get("OpenAIBaseURL", "?"), outputs.get("ConsoleUrl", "?"))
    return {"target": target, "outputs": outputs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=["chalice", "chalice-delete", "cloudformation"])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--stack", help="stack name (default pennyworth-<stage>)")
    parser.add_argument("--parameters", nargs="*", default=[], help="stack parameters, KEY=VALUE")
    parser.add_argument("--no-build", action="store_true", help="deploy build/<stage> as it is")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--bucket", help="artifact bucket (CloudFormation path)")
    parser.add_argument("--role-arn", help="CloudFormation execution role for the stack (either path)")
    args = parser.parse_args(argv)
    try:
        options = Options(
            stage=args.stage,
            stack=args.stack or f"pennyworth-{args.stage}",
            parameters=parse_parameters(args.parameters),
            build=not args.no_build,
            build_dir=args.build_dir,
            bucket=args.bucket or None,
            role_arn=args.role_arn or None,
        )
        if args.path == "chalice":
            deploy_chalice(options)
        elif args.path == "chalice-delete":
            delete_chalice(options)
        else:
            deploy_cloudformation(options)
    except DeployError as exc:
        log(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
