"""One description of the stack, rendered for both deploy paths.

Where each part is defined, once:

* **Data resources, parameters, alarms, log groups, each function's environment**:
  ``infra/template.json`` (the streaming function gets the API handler's
  environment plus its own, as ``tools/package.py: wire_streaming`` does).
* **IAM statements**: ``tools/policies.py`` (one function per role).
* **The functions**: ``FUNCTIONS`` below (logical id, Chalice name, role, policy).
* **The routes that stream**: ``chalicelib/edge/routes.py: STREAM_PATHS``.

The CloudFormation path (``make deploy``) merges all of it into one stack
(``tools/package.py``). The ``chalice deploy`` path (``make chalice-deploy``,
``tools/deploy.py``) puts everything Chalice does not create in a stack of its
own, ``data_stack()``: the same resources, the same roles with the same
policies, and one output per environment value, so CloudFormation resolves every
``Ref``/``Fn::GetAtt``/``Fn::Sub``/``Fn::If`` on both paths and nothing is
resolved by hand. ``tests/test_deploy.py`` checks that the two renderings grant
the same actions on the same resources and set the same environment, and the
rehearsal (``tests/test_deploy_rehearsal.py``) checks what each path deployed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import policies

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.json"
#: Stack tag naming the path that owns a stack; a stack of the other path (or of something else) is refused.
PATH_TAG = "pennyworth:deploy-path"
#: What the Chalice app is called (``.chalice/config.json``): its functions are ``<app>-<stage>[-<name>]``.
APP_NAME = "pennyworth"
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
#: Resources of the template that exist only on the CloudFormation path: the chalice path's functions, API
#: and layer are made by ``chalice deploy`` and ``tools/deploy.py``, and it has no custom domain yet.
APP_TYPES = ("AWS::Serverless::Function", "AWS::Serverless::Api", "AWS::Serverless::LayerVersion")
CLOUDFORMATION_ONLY = ("CustomDomain", "CustomDomainMapping")

Document = dict[str, Any]


@dataclass(frozen=True)
class Function:
    """One Lambda function of the stack, as both paths name it."""

    logical_id: str
    #: Its name in ``app.py`` (None: the streaming function, which Chalice does not know).
    chalice_name: str | None
    role: str
    #: ``${AWS::StackName}-<suffix>`` names the function and its role on the CloudFormation path.
    suffix: str
    policy: Callable[[], Document]

    def chalice_function_name(self, stage: str, stack: str) -> str:
        """What the function is called on the chalice path (Chalice's own naming; ours for the streaming one)."""
        if self.chalice_name is None:
            return f"{stack}-{self.suffix}"
        if self.chalice_name == "api_handler":
            return f"{APP_NAME}-{stage}"
        return f"{APP_NAME}-{stage}-{self.chalice_name}"


FUNCTIONS = (
    Function("APIHandler", "api_handler", "ApiHandlerRole", "api", policies.api_policy),
    Function("StreamHandler", None, "StreamHandlerRole", "stream", policies.stream_policy),
    Function("DailyCostReport", "daily_cost_report", "DailyCostReportRole", "daily-report", policies.report_policy),
    Function(
        "LedgerAggregator", "ledger_aggregator", "LedgerAggregatorRole", "ledger-aggregator", policies.aggregator_policy
    ),
    Function("PeopleSweep", "people_sweep", "PeopleSweepRole", "people-sweep", policies.people_sweep_policy),
)
BY_ID = {function.logical_id: function for function in FUNCTIONS}
STREAM = BY_ID["StreamHandler"]


def load_template(path: Path = TEMPLATE) -> Document:
    return json.loads(path.read_text())


def role_resource(function: Function) -> Document:
    """The function's role, identical on both paths: its name, Lambda's trust, its one policy."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": {"Fn::Sub": f"${{AWS::StackName}}-{function.suffix}"},
            "AssumeRolePolicyDocument": copy.deepcopy(LAMBDA_TRUST),
            "Policies": [{"PolicyName": f"{function.role}Policy", "PolicyDocument": function.policy()}],
        },
    }


def environment(template: Document, function: Function) -> dict[str, Any]:
    """The function's variables as the template defines them (intrinsics unresolved)."""
    resources = template["Resources"]
    own = resources[function.logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    if function is STREAM:
        api = resources["APIHandler"]["Properties"]["Environment"]["Variables"]
        return copy.deepcopy({**api, **own})
    return copy.deepcopy(own)


def output_key(variable: str) -> str:
    """``PENNYWORTH_KEYS_TABLE`` → ``EnvPENNYWORTHKEYSTABLE`` (output keys are alphanumeric)."""
    return "Env" + re.sub(r"[^A-Za-z0-9]", "", variable)


def role_output_key(function: Function) -> str:
    return f"{function.role}Arn"


def _unless_absent(value: Any) -> tuple[str | None, Any]:
    """``Fn::If [C, v, AWS::NoValue]`` → (C, v): an output shown only under C; else (None, value)."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, present, absent = value["Fn::If"]
        if absent == {"Ref": "AWS::NoValue"}:
            return condition, present
    return None, value


def data_stack(template: Document, stage: str, stack: str) -> Document:
    """The chalice path's stack: everything the template has but the functions, API and layer.

    The same resources and conditions, the five roles (``role_resource``), log groups and alarms
    under the names Chalice gives the functions, and outputs for ``tools/deploy.py``: each role's ARN
    and each environment value (``Env<NAME>``, resolved by CloudFormation).
    """
    template = copy.deepcopy(template)
    resources = template["Resources"]
    names = {f.logical_id: f.chalice_function_name(stage, stack) for f in FUNCTIONS}
    excluded = {k for k, r in resources.items() if r["Type"] in APP_TYPES} | set(CLOUDFORMATION_ONLY)
    excluded |= {f.role for f in FUNCTIONS}
    kept: Document = {}
    for logical_id, resource in resources.items():
        if logical_id in excluded:
            continue
        resource = _name_functions(resource, names)
        function = logical_id.removesuffix("LogGroup")
        if resource["Type"] == "AWS::Logs::LogGroup" and function in names:
            resource["Properties"]["LogGroupName"] = f"/aws/lambda/{names[function]}"
        kept[logical_id] = resource
    for function in FUNCTIONS:
        kept[function.role] = role_resource(function)
    outputs: Document = {}
    for key, output in template.get("Outputs", {}).items():
        if not _references(output, excluded):
            outputs[key] = output
    for function in FUNCTIONS:
        outputs[role_output_key(function)] = {"Value": {"Fn::GetAtt": [function.role, "Arn"]}}
    # The aggregator's failure destination, which tools/deploy.py sets on the event source Chalice makes.
    outputs["LedgerAggregatorFailuresArn"] = {"Value": {"Fn::GetAtt": ["LedgerAggregatorFailures", "Arn"]}}
    for function in FUNCTIONS:
        for variable, value in environment(template, function).items():
            if isinstance(value, str):
                continue  # a literal: nothing to resolve
            condition, value = _unless_absent(value)
            output = {"Value": value, **({"Condition": condition} if condition else {})}
            if outputs.setdefault(output_key(variable), output) != output:
                raise ValueError(f"{variable} has different values in different functions; give each its own name")
    unresolved = _references({"Resources": kept, "Outputs": outputs}, excluded - set(kept))
    if unresolved:
        raise ValueError(f"the chalice path's stack still refers to {sorted(unresolved)}")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"pennyworth {stage}, chalice deploy path: data resources, roles, log groups and alarms "
            "(tools/deploy.py renders this from infra/template.json and tools/policies.py)"
        ),
        "Parameters": template["Parameters"],
        "Conditions": template["Conditions"],
        "Resources": kept,
        "Outputs": outputs,
    }


def _name_functions(value: Any, names: dict[str, str]) -> Any:
    """Replace each reference to a function by the literal name it has on the chalice path."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in names:
            return names[value["Ref"]]
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            text = re.sub(r"\$\{(\w+)\}", lambda m: names.get(m.group(1), m.group(0)), value["Fn::Sub"])
            return {"Fn::Sub": text}
        return {key: _name_functions(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_name_functions(item, names) for item in value]
    return value


def _references(value: Any, names: set[str]) -> set[str]:
    """Which of ``names`` ``value`` refers to (Ref, Fn::GetAtt, ${X} or ${X.Attr} in Fn::Sub)."""
    text = json.dumps(value)
    found = set(re.findall(r'"Ref": "([\w:]+)"', text)) | set(re.findall(r'"Fn::GetAtt": \["(\w+)"', text))
    found |= set(re.findall(r"\$\{(\w+)[.}]", text))
    return found & names


def resolved_environment(template: Document, function: Function, outputs: dict[str, str]) -> dict[str, str]:
    """The function's variables with the values CloudFormation resolved in the data stack's outputs.

    A variable whose output is absent (its condition false) is left out, as ``AWS::NoValue`` leaves it
    out on the CloudFormation path.
    """
    resolved = {}
    for variable, value in environment(template, function).items():
        if isinstance(value, str):
            resolved[variable] = value
        elif output_key(variable) in outputs:
            resolved[variable] = outputs[output_key(variable)]
    return resolved


def gateway_responses(template: Document) -> Document:
    """The REST API's gateway responses as the Swagger extension API Gateway imports.

    ``infra/template.json`` declares them in SAM's shape (``RestAPI.GatewayResponses``), which the
    SAM transform turns into this same extension on the CloudFormation path.
    """
    extension = {}
    for kind, response in template["Resources"]["RestAPI"]["Properties"]["GatewayResponses"].items():
        converted: Document = {}
        if "StatusCode" in response:
            converted["statusCode"] = str(response["StatusCode"])
        headers = response.get("ResponseParameters", {}).get("Headers", {})
        if headers:
            converted["responseParameters"] = {f"gatewayresponse.header.{k}": v for k, v in headers.items()}
        if "ResponseTemplates" in response:
            converted["responseTemplates"] = dict(response["ResponseTemplates"])
        extension[kind] = converted
    return extension
