"""The buffered OpenAI routes served by the Chalice app: models, the key's own status, embeddings.

Chat completions stream, so they live on the streaming function
(``openai_chat``); these answer at once and stay on API Gateway's default
integration.
"""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.keys.store import KeyStore
from chalicelib.protocols.openai_validation import parse_embedding_request
from chalicelib.service.service import ModelService
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.http import HttpResult


class OpenAIService:
    """Implements the buffered ``/v1/*`` routes over injected keys and the model service."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        models: ModelService,
        max_body_bytes: int,
    ) -> None:
        self._keys = keys
        self._models = models
        self._max_body_bytes = max_body_bytes

    def list_models(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /v1/models``: the catalog, narrowed to the key's allowlist."""
        key = self._keys.authenticate(headers)
        return HttpResult({"object": "list", "data": [m.to_openai() for m in self._models.usable_models(key)]})

    def get_model(self, headers: Mapping[str, str], model_id: str) -> HttpResult:
        """``GET /v1/models/{id}``: one catalog model the key may use."""
        key = self._keys.authenticate(headers)
        return HttpResult(self._models.resolve_model(key, model_id).to_openai())

    def key_status(self, headers: Mapping[str, str]) -> HttpResult:
        """``GET /v1/key``: the calling key's limits, spend and remaining budget (no admin rights needed)."""
        return HttpResult(self._models.key_status(self._keys.authenticate(headers)))

    def embeddings(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /v1/embeddings``: validate, embed with Bedrock, bill, answer."""
        key = self._keys.authenticate(headers)
        request = parse_embedding_request(parse_json_body(raw_body, max_bytes=self._max_body_bytes))
        run = self._models.embed(key, request)
        return HttpResult(run.body, headers={"x-request-id": run.request_id, **run.headers})
