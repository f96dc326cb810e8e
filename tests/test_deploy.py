"""The one description (``tools/stack.py``) renders the same roles and environment into both paths.

Static and fast; what the two paths actually deploy is compared by the rehearsal
(``tests/test_deploy_rehearsal.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tools import policies, stack

TEMPLATE = stack.load_template()
DATA = stack.data_stack(TEMPLATE, "dev", "pennyworth-dev")


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CloudFormation path's merged template, from a real ``chalice package`` of the source tree."""
    from tests.test_streaming_infra import packaged

    return packaged.__wrapped__(tmp_path_factory)[0]  # type: ignore[attr-defined]


def test_both_paths_give_each_function_the_same_role(merged: dict[str, Any]) -> None:
    for function in stack.FUNCTIONS:
        assert merged["Resources"][function.role] == DATA["Resources"][function.role] == stack.role_resource(function)
        assert merged["Resources"][function.logical_id]["Properties"]["Role"] == {"Fn::GetAtt": [function.role, "Arn"]}
    assert DATA["Resources"]["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"] == policies.api_policy()


def test_both_paths_set_the_same_environment(merged: dict[str, Any]) -> None:
    # GIVEN the chalice path's outputs, standing for what CloudFormation resolves each value to
    outputs = {key: f"<{key}>" for key in DATA["Outputs"]}
    for function in stack.FUNCTIONS:
        resolved = stack.resolved_environment(TEMPLATE, function, outputs)
        declared = merged["Resources"][function.logical_id]["Properties"]["Environment"]["Variables"]
        # THEN each variable the merged template gives the function is there, with its own output or literal
        ours = {k: v for k, v in declared.items() if k in stack.environment(TEMPLATE, function)}
        assert set(resolved) == set(ours), function.logical_id
        for variable, value in ours.items():
            expected = value if isinstance(value, str) else f"<{stack.output_key(variable)}>"
            assert resolved[variable] == expected, variable
            if not isinstance(value, str):
                output = DATA["Outputs"][stack.output_key(variable)]
                condition, present = stack._unless_absent(value)
                assert output["Value"] == present and output.get("Condition") == condition, variable


def test_a_conditional_variable_is_left_out_when_its_condition_is_false() -> None:
    outputs = {k: "x" for k in DATA["Outputs"] if k != stack.output_key("PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID")}
    resolved = stack.resolved_environment(TEMPLATE, stack.BY_ID["APIHandler"], outputs)
    assert "PENNYWORTH_COGNITO_CONSOLE_CLIENT_ID" not in resolved and resolved["PENNYWORTH_KEYS_TABLE"] == "x"


def test_the_chalice_stack_has_every_data_resource_and_names_chalices_functions() -> None:
    skipped = {k for k, r in TEMPLATE["Resources"].items() if r["Type"] in stack.APP_TYPES}
    skipped |= set(stack.CLOUDFORMATION_ONLY)
    assert set(TEMPLATE["Resources"]) - skipped <= set(DATA["Resources"])
    groups = {
        k: r["Properties"]["LogGroupName"] for k, r in DATA["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"
    }
    assert groups["APIHandlerLogGroup"] == "/aws/lambda/pennyworth-dev"
    assert groups["DailyCostReportLogGroup"] == "/aws/lambda/pennyworth-dev-daily_cost_report"
    assert groups["StreamHandlerLogGroup"] == "/aws/lambda/pennyworth-dev-stream"
    alarm = DATA["Resources"]["LedgerAggregatorIteratorAgeAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "pennyworth-dev-ledger_aggregator"}]
    text = json.dumps(DATA)
    for function in stack.FUNCTIONS:
        assert not re.search(rf'"Ref": "{function.logical_id}"|\$\{{{function.logical_id}[.}}]', text), function
    assert len(json.dumps(DATA, separators=(",", ":"))) <= 51_200  # sent inline: the chalice path has no bucket


def test_a_variable_with_two_values_cannot_be_rendered() -> None:
    template = json.loads(json.dumps(TEMPLATE))
    variables = template["Resources"]["DailyCostReport"]["Properties"]["Environment"]["Variables"]
    variables["PENNYWORTH_KEYS_TABLE"] = {"Ref": "AuditTable"}
    with pytest.raises(ValueError, match="PENNYWORTH_KEYS_TABLE has different values"):
        stack.data_stack(template, "dev", "pennyworth-dev")


def test_gateway_responses_are_what_the_sam_transform_makes_of_the_template() -> None:
    from local.moto_deploy import sam_transform

    # GIVEN the template's API, expanded by the SAM transform (what the CloudFormation path deploys)
    api = {k: v for k, v in TEMPLATE["Resources"]["RestAPI"].items() if k != "Metadata"}
    api["Properties"] = {**api["Properties"], "StageName": "api"}
    api["Properties"]["DefinitionBody"] = {"swagger": "2.0", "info": {"title": "t"}, "paths": {}}
    sam = {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"RestAPI": api}}
    transformed = sam_transform(sam)
    [body] = [
        r["Properties"]["Body"] for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"
    ]
    # THEN the chalice path's extension is the same
    assert stack.gateway_responses(TEMPLATE) == body["x-amazon-apigateway-gateway-responses"]
