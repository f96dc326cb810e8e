"""pennyworth's own OpenAPI document: complete (every served route, no other), valid, published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator

from chalicelib import errors
from chalicelib.edge.routes import ROUTES, STREAM_PATHS, openapi_document
from chalicelib.edge.schemas import SCHEMAS
from tools import openapi as openapi_tool

ROOT = Path(__file__).resolve().parent.parent


def served_routes() -> set[tuple[str, str]]:
    """(method, path) of everything the gateway answers: the Chalice app and the streaming function."""
    from app import app

    chalice = {(method, path) for path, methods in app.routes.items() for method in methods}
    return chalice | set(STREAM_PATHS)


def documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in openapi_document()["paths"].items() for method in operations}


def test_every_served_route_is_documented_and_nothing_else() -> None:
    missing = served_routes() - documented_routes()
    hint = "add its row to ROUTES in chalicelib/edge/routes.py, then run python -m tools.openapi"
    assert not missing, f"served but not documented: {sorted(missing)}; {hint}"
    extra = documented_routes() - served_routes()
    assert not extra, f"the OpenAPI document describes routes nobody serves: {sorted(extra)}"


def test_the_document_is_valid_openapi_and_its_schemas_valid_json_schema() -> None:
    import schemathesis

    document = openapi_document()
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(ROUTES)


def test_docs_openapi_json_is_current() -> None:
    assert (ROOT / "docs" / "openapi.json").read_text() == openapi_tool.render(), "run: python -m tools.openapi"


ERRORS = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.AppError)]


@pytest.mark.parametrize("cls", ERRORS)
def test_every_error_is_the_documented_envelope(cls: type[errors.AppError]) -> None:
    schema = {**SCHEMAS["Error"], "$defs": {}}
    Draft202012Validator(schema).validate(cls("a message").to_body())


def test_the_gateway_serves_its_document_without_a_key(client: Client) -> None:
    response = client.http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json_body == json.loads(openapi_tool.render())
