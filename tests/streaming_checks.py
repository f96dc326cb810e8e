"""What the merged template must say about the streaming function, checked on any ``sam.json``.

Used by ``tests/test_streaming_infra.py`` (``make test``: a real ``chalice package``
of the source tree, without dependencies) and ``tests/test_streaming_artifact.py``
(``make test-artifact``: the built ``build/<stage>/package/sam.json``).
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from chalicelib.edge.routes import STREAM_PATHS
from chalicelib.settings import ENV, MAX_STREAM_TIMEOUT_SECONDS
from tools import policies

WRAPPER = "chalicelib/streaming/exec-wrapper"
STREAM_URI = (
    "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
    "${StreamHandler.Arn}/response-streaming-invocations"
)

EXECUTE_API = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"


def check_streaming_template(template: dict[str, Any], deployment_zip: Path) -> None:
    """Every assertion about StreamHandler and the streaming methods; raises AssertionError."""
    resources = template["Resources"]
    api = resources["APIHandler"]["Properties"]
    stream = resources["StreamHandler"]
    props = stream["Properties"]
    stage = resources["RestAPI"]["Properties"]["StageName"]
    paths = resources["RestAPI"]["Properties"]["DefinitionBody"]["paths"]

    # The methods: InvokeWithResponseStream, transfer mode STREAM, a timeout no shorter than any function's.
    for method, path in STREAM_PATHS:
        integration = paths[path][method.lower()]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST", path
        assert integration["uri"] == {"Fn::Sub": STREAM_URI}, path
        assert integration.get("responseTransferMode") == "STREAM", path
        assert MAX_STREAM_TIMEOUT_SECONDS * 1000 <= integration.get("timeoutInMillis", 29_000) <= 900_000, path
        # API Gateway may invoke it for exactly this method and path, on the deployed stage.
        permissions = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["FunctionName"] == {"Ref": "StreamHandler"}
        ]
        sources = [p["SourceArn"]["Fn::Sub"] for p in permissions]
        expected = EXECUTE_API + f"${{RestAPI}}/{stage}/{method}{path}"
        assert expected in sources, (path, sources)
        assert all(
            p["Action"] == "lambda:InvokeFunction" and p["Principal"] == "apigateway.amazonaws.com" for p in permissions
        )
        assert not [s for s in sources if "*" in s], sources
    assert len(permissions) == len(STREAM_PATHS)

    # Every other method stays on the API handler, buffered.
    for path, operations in paths.items():
        for method, operation in operations.items():
            if (method.upper(), path) in STREAM_PATHS or "x-amazon-apigateway-integration" not in operation:
                continue
            integration = operation["x-amazon-apigateway-integration"]
            assert "responseTransferMode" not in integration, (method, path)
            assert "${APIHandler.Arn}/invocations" in json.dumps(integration["uri"]), (method, path)

    # The function: the API handler's code, layer, memory and environment, its own timeout and wrapper.
    parameter = template["Parameters"]["StreamTimeoutSeconds"]
    assert (parameter["Default"], parameter["MaxValue"]) == (300, MAX_STREAM_TIMEOUT_SECONDS)
    assert props["Timeout"] == {"Ref": "StreamTimeoutSeconds"} and api["Timeout"] == 28
    for name in ("Runtime", "CodeUri", "MemorySize", "Layers"):
        assert props[name] == api[name], name
    variables = props["Environment"]["Variables"]
    assert {k: v for k, v in variables.items() if k in api["Environment"]["Variables"]} == api["Environment"][
        "Variables"
    ]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == f"/var/task/{WRAPPER}"
    assert variables["PENNYWORTH_STREAM_TIMEOUT_SECONDS"] == {"Ref": "StreamTimeoutSeconds"}
    assert {k for k in variables if k.startswith("PENNYWORTH_")} <= set(ENV)
    assert re.fullmatch(r"(\w+\.)+\w+", props["Handler"]) and props["Handler"].startswith("chalicelib.streaming.")
    with zipfile.ZipFile(deployment_zip) as archive:
        info = archive.getinfo(WRAPPER)
        assert (info.external_attr >> 16) & 0o777 == 0o755, oct(info.external_attr >> 16)
        module = props["Handler"].rsplit(".", 1)[0].replace(".", "/") + ".py"
        assert module in archive.namelist(), module

    # Its log group (retained like the others) and its role (the rendered policy, nothing else).
    group = resources["StreamHandlerLogGroup"]
    assert "StreamHandlerLogGroup" in stream["DependsOn"]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    suffix = group["Properties"]["LogGroupName"]["Fn::Sub"].rsplit("}", 1)[1]
    assert props["FunctionName"] == {"Fn::Sub": f"${{AWS::StackName}}{suffix}"}
    role = resources[props["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert [p["PolicyDocument"] for p in role["Policies"]] == [policies.stream_policy()]
