"""schemathesis against a running local stack, from the document the stack itself serves.

Short and seeded (derandomized Hypothesis): every operation of ``GET /openapi.json`` gets
generated requests, valid and invalid, and every answer must be no server error, a documented
status, a documented content type and a body that matches the documented schema. The stack is
its own (a throwaway DevStack): the admin API is called as an admin, so it creates, revokes and
reports, and must not disturb the other integration tests' stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks

from chalicelib.edge.endpoint import Endpoint
from chalicelib.edge.routes import ROUTES
from local.devstack import DevStack, Ports

MAX_EXAMPLES = 12
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack(ports=Ports.free(), log_dir=tmp_path_factory.mktemp("fuzz-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def credentials(fuzz_stack: DevStack) -> dict[str, str]:
    """A bearer value per kind of route: the stack's API key, and a Cognito ID token of its admin."""
    info = fuzz_stack.info
    cognito = boto3.client(
        "cognito-idp",
        region_name=info["cognito"]["region"],
        endpoint_url=info["cognito"]["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    tokens = cognito.initiate_auth(
        ClientId=info["cognito"]["client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": info["admin_username"], "PASSWORD": info["admin_password"]},
    )["AuthenticationResult"]
    return {"api_key": info["api_key"], "cognito": tokens["IdToken"]}


@pytest.fixture(scope="module")
def api_schema(fuzz_stack: DevStack) -> Any:
    # Loaded from the stack: GET /openapi.json itself is under test, and its relative server URL
    # resolves to the stack's root.
    return schemathesis.openapi.from_url(f"{fuzz_stack.api_url}/openapi.json")


def _can_be_invalid(route: Endpoint) -> bool:
    """Whether a request to ``route`` can violate the document: a body or a query (path parameters
    are plain strings here, so nothing can violate them).

    /mcp is left out on purpose: it answers invalid JSON-RPC with a JSON-RPC error and HTTP 200,
    as the MCP transport asks, not with a 4xx.
    """
    return route.path != "/mcp" and bool(route.body or route.query)


CASES = [
    pytest.param(route, mode, id=f"{route.method} {route.path} {mode.value}")
    for route in ROUTES
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or _can_be_invalid(route)
]


# One test per documented operation and generation mode (schemathesis' own pytest loader for
# fixtures does not run on pytest 9, so the Hypothesis test is built here).
@pytest.mark.parametrize(("route", "mode"), CASES)
def test_every_operation_conforms_and_never_fails(
    api_schema: Any, credentials: dict[str, str], route: Endpoint, mode: GenerationMode
) -> None:
    operation = api_schema.find_operation_by_label(f"{route.method} {route.path}")
    assert operation is not None, f"{route.method} {route.path} is not in the served document"
    headers = {"Authorization": f"Bearer {credentials[route.auth]}"} if route.auth else {}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

    run()
