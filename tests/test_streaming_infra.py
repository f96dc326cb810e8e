"""The merged template's streaming function and methods, from a real ``chalice package``.

The source tree is staged without its dependencies (an empty requirements.txt),
so Chalice generates its template and zip in about a second; then
``tools.package.finish_template`` post-processes it as ``make package`` does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib.edge.routes import STREAM_PATHS
from tests.streaming_checks import check_streaming_template
from tools import package

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    project = tmp_path_factory.mktemp("stream") / "project"
    project.mkdir()
    shutil.copy2(ROOT / "app.py", project / "app.py")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "deployments", "deployed")
    for name in ("chalicelib", ".chalice"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    (project / "requirements.txt").write_text("")
    out = project.parent / "package"
    package.chalice_package(project, "dev", out)
    package.finish_template(out / "sam.json", project)
    return json.loads((out / "sam.json").read_text()), out / "deployment.zip"


def test_the_merged_template_streams_the_model_routes(packaged: tuple[dict[str, Any], Path]) -> None:
    check_streaming_template(*packaged)


def test_the_check_fails_on_a_buffered_integration(packaged: tuple[dict[str, Any], Path]) -> None:
    # GIVEN the same template with one streaming method switched back to buffered THEN the check fails
    template, zip_path = json.loads(json.dumps(packaged[0])), packaged[1]
    method, path = STREAM_PATHS[0]
    del template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"][path][method.lower()][
        "x-amazon-apigateway-integration"
    ]["responseTransferMode"]
    with pytest.raises(AssertionError):
        check_streaming_template(template, zip_path)


def test_routes_chalice_does_not_declare_get_a_streaming_method(packaged: tuple[dict[str, Any], Path]) -> None:
    # /v1/messages is in STREAM_PATHS before app.py (or anything) declares it: API Gateway still needs the method.
    paths = packaged[0]["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for method, path in STREAM_PATHS:
        assert "x-amazon-apigateway-integration" in paths[path][method.lower()]


def test_the_deploy_role_may_pass_the_streaming_role_for_each_stage() -> None:
    text = (ROOT / "infra" / "github-oidc-role.yaml").read_text()
    for stage in ("dev", "prod"):
        assert f":role/${{AppName}}-{stage}-stream" in text
    # The role name the template gives it is the one the deploy role may pass.
    template = json.loads((ROOT / "infra" / "template.json").read_text())
    role = template["Resources"]["StreamHandlerRole"]["Properties"]["RoleName"]
    assert role == {"Fn::Sub": "${AWS::StackName}-stream"}


def test_permission_names_are_unique_and_readable() -> None:
    names = [package.permission_name(method, path) for method, path in STREAM_PATHS]
    assert len(set(names)) == len(names)
    assert (
        package.permission_name("POST", "/v1/messages/count_tokens")
        == "StreamHandlerPermissionPostV1MessagesCountTokens"
    )
