"""Validate bodies against OpenAI's official OpenAPI schemas (the pinned copy in tests/reference).

The spec mixes JSON Schema 2020-12 with OpenAPI 3.0's ``nullable: true`` (111
places, e.g. a stream chunk's ``finish_reason``). A 2020-12 validator ignores
``nullable``, which would reject the ``null`` OpenAI itself sends, so it is
rewritten once into the 2020-12 spelling (``type: [T, "null"]``) on load.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

#: OpenAI's openapi.yaml at the commit tests/reference/openai-openapi.json names (tools/update_openai_spec.py).
SPEC = Path(__file__).resolve().parent / "reference" / "openai-openapi.yaml.gz"


def _nullable_to_2020(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable_to_2020(v) for k, v in node.items()}
        if node.pop("nullable", False) is True:
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
                if "enum" in node:
                    node["enum"] = [*node["enum"], None]
            else:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_2020(item) for item in node]
    return node


@functools.cache
def components() -> dict[str, Any]:
    with gzip.open(SPEC, "rt", encoding="utf-8") as handle:
        # The C loader is ~10x faster on this 3 MB file; both are safe loaders.
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    return _nullable_to_2020(spec["components"])


@functools.cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components()})


def assert_valid(name: str, instance: Any) -> None:
    """Fail with every schema error listed when ``instance`` is not a valid ``name``."""
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message[:300]}"
        for error in validator(name).iter_errors(instance)
    ]
    assert not problems, f"not a valid {name}:\n" + "\n".join(problems)


@functools.cache
def stream_event_schemas() -> dict[str, str]:
    """``ResponseStreamEvent``'s variants by event ``type`` (one schema per type: precise errors)."""
    schemas = components()["schemas"]
    variants = schemas["ResponseStreamEvent"].get("anyOf") or schemas["ResponseStreamEvent"]["oneOf"]
    by_type: dict[str, str] = {}
    for variant in variants:
        name = variant["$ref"].rsplit("/", 1)[1]
        for kind in schemas[name]["properties"]["type"].get("enum", []):
            by_type[kind] = name
    return by_type


def assert_valid_stream_event(event: Any) -> None:
    """Fail unless ``event`` is a valid Responses stream event of its declared ``type``."""
    name = stream_event_schemas().get(event.get("type"))
    assert name is not None, f"not a Responses stream event type: {event.get('type')!r}"
    assert_valid(name, event)
