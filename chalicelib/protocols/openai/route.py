"""The buffered OpenAI routes the Chalice app serves: the models, the key's own status, embeddings.

Chat completions and Responses stream, so they live on the streaming function
(``openai_chat``, ``openai_responses``); these answer at once and stay on API
Gateway's default integration.
"""

from __future__ import annotations

from chalicelib.protocols.openai.parse import parse_embedding_request
from chalicelib.protocols.openai.render import model_list, model_object
from chalicelib.protocols.route import Route
from chalicelib.shared.http import HttpRequest, HttpResult


class ListModels(Route):
    """``GET /v1/models``: the catalog, narrowed to the key's allowlist."""

    def handle(self, request: HttpRequest) -> HttpResult:
        return HttpResult(model_list(self._models.usable_models(self.key(request))))


class GetModel(Route):
    """``GET /v1/models/{model_id}``: one catalog model the key may use."""

    def handle(self, request: HttpRequest) -> HttpResult:
        key = self.key(request)
        # A model outside the key's allowlist is not found (OpenAI's 404), not forbidden: no catalog leak.
        return HttpResult(model_object(self._models.resolve_model(key, request.params["model_id"], hidden=True)))


class KeyStatus(Route):
    """``GET /v1/key``: the calling key's limits, spend and remaining budget (no admin rights needed)."""

    def handle(self, request: HttpRequest) -> HttpResult:
        return HttpResult(self._models.key_status(self.key(request)))


class Embeddings(Route):
    """``POST /v1/embeddings``: validate, embed with Bedrock, bill, answer."""

    def handle(self, request: HttpRequest) -> HttpResult:
        key = self.key(request)
        run = self._models.embed(key, parse_embedding_request(self.body(request)), deadline=request.deadline)
        return HttpResult(run.body, headers=run.headers)
