"""Catalog models as OpenAI's ``model`` and ``list`` objects (the gateway shapes embeddings itself)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chalicelib.catalog import ModelEntry


def model_object(model: ModelEntry) -> dict[str, Any]:
    """OpenAI's ``model`` object."""
    return model.to_openai()


def model_list(models: Iterable[ModelEntry]) -> dict[str, Any]:
    """OpenAI's ``list`` of ``model`` objects."""
    return {"object": "list", "data": [model_object(m) for m in models]}
