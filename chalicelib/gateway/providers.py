"""Provider adapters: how one upstream call is made, whoever serves it.

An ``Upstream`` is everything one upstream call needs: which provider adapter, the model string
LiteLLM routes on, where (a Bedrock region or inference profile, or a base URL) and the
reference to its credentials (an SSM parameter; Bedrock uses the function's role). A call
policy's ``Target`` (``policy.py``: a catalog model, the region it is called in, its guardrail)
names its ``Upstream``; the gateway hands LiteLLM the adapter's options for it, and what served
a call is its upstream's ``served_by``, which the bill records.

Two adapters:

* ``Bedrock``: Converse (chat) and InvokeModel (embeddings) through LiteLLM's ``bedrock/``
  provider, in the target's region or the stack's, signed by the function's role; the
  prompt gets Bedrock's adaptations (``prompts.bedrock_prompt``).
* ``OpenAICompatible``: any OpenAI-compatible API (OpenAI, vLLM, Ollama, …) through
  LiteLLM's ``openai/`` provider, at the target's ``base_url``, with the API key read from
  SSM Parameter Store at run time (``secrets.ParameterSecrets``); the prompt is sent as
  OpenAI's, less what only Anthropic models understand.

Another provider (Anthropic's own API, Vertex AI) is one more adapter here, one more name in
``chalicelib/catalog/entry.py: PROVIDERS``, and its grants; see docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.catalog import ModelEntry
from chalicelib.conversation.request import Conversation
from chalicelib.gateway import read_deadline
from chalicelib.gateway.loader import load_litellm
from chalicelib.gateway.prompts import BedrockPrompt, bedrock_prompt, litellm_options


@dataclass(frozen=True)
class Upstream:
    """Where and how one call is sent: provider, LiteLLM's model string, region or base URL, credentials."""

    provider: str
    #: The model string LiteLLM routes on: ``bedrock/converse/<id>``, ``bedrock/<id>``, ``openai/<id>``.
    model: str
    region: str | None = None
    base_url: str | None = None
    #: Where its API key is kept: an SSM SecureString's name (None: the function's role signs the call).
    credentials: str | None = None

    @property
    def served_by(self) -> str:
        """What the ledger records as having served a call."""
        return self.model


def upstream_of(model: ModelEntry, region: str | None = None) -> Upstream:
    """The upstream a catalog model is served by (``region``: where a Bedrock model is called, default its own)."""
    return Upstream(
        provider=model.provider,
        model=model.litellm_model,
        region=(region or model.region) if model.provider == "bedrock" else None,
        base_url=model.base_url,
        credentials=model.api_key_parameter,
    )


class Provider(Protocol):
    """A provider adapter: what a call to one of its targets needs besides the prompt."""

    #: How errors name the upstream ("Bedrock", "the OpenAI-compatible upstream").
    label: str

    def options(self, target: Upstream) -> dict[str, Any]:
        """LiteLLM's keyword arguments that say where the target is and how to sign in."""
        ...

    def prompt(self, conversation: Conversation) -> BedrockPrompt:
        """The messages and options this provider is sent for a conversation (built once per call)."""
        ...

    def client(self, target: Upstream) -> Any:
        """The client a call to ``target`` (chat or embeddings) is sent through, kept for the warm function.

        LiteLLM caches its own clients by their settings, the timeout among them; each request's
        timeout is what is left of its deadline, so without a client of ours every call built a
        new client and opened a new connection (a TLS handshake to Bedrock per request, and the
        old connections left open in LiteLLM's cache). The timeout is still applied per call
        (``call_timeout`` where LiteLLM sends none).
        """
        ...


class Bedrock:
    """Amazon Bedrock through LiteLLM, signed by the function's role."""

    label = "Bedrock"

    def __init__(self, *, region: str, endpoint_url: str | None) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None

    def options(self, target: Upstream) -> dict[str, Any]:
        options: dict[str, Any] = {"aws_region_name": target.region or self._region}
        if self._endpoint_url:
            options["aws_bedrock_runtime_endpoint"] = self._endpoint_url
        return options

    def prompt(self, conversation: Conversation) -> BedrockPrompt:
        return bedrock_prompt(conversation)

    def client(self, target: Upstream) -> Any:
        # One connection pool for every region: httpx keeps a connection per host.
        if self._client is None:
            self._client = _timed_handler()
        return self._client


class OpenAICompatible:
    """Any OpenAI-compatible API through LiteLLM's ``openai/`` provider, its key read from SSM."""

    label = "The upstream"

    def __init__(self, *, secret: Callable[[str], str]) -> None:
        self._secret = secret
        #: One SDK client per base URL and key parameter, with the key it was built with (a rotated
        #: key gets a new one; the old is dropped). Two models at one base URL with different keys
        #: keep a client each instead of replacing each other's on every other call.
        self._clients: dict[tuple[str, str | None], tuple[str, Any]] = {}

    def options(self, target: Upstream) -> dict[str, Any]:
        # A server without keys (a local Ollama) still needs some value: the SDK refuses none.
        key = self._secret(target.credentials) if target.credentials else "none"
        return {"api_base": target.base_url, "api_key": key}

    def prompt(self, conversation: Conversation) -> BedrockPrompt:
        options = litellm_options(conversation)
        if options.pop("thinking", None) is not None:
            options.setdefault("reasoning_effort", "medium")
        return [_openai_message(m) for m in conversation.messages], options

    def client(self, target: Upstream) -> Any:
        key = self._secret(target.credentials) if target.credentials else "none"
        where = (target.base_url or "", target.credentials)
        kept = self._clients.get(where)
        if kept is None or kept[0] != key:
            load_litellm()
            from openai import OpenAI

            # Retries are the call policy's (resilience.py), never the SDK's.
            kept = (key, OpenAI(api_key=key, base_url=target.base_url, max_retries=0))
            self._clients[where] = kept
        return kept[1]


#: The timeout of the upstream call this thread (or task) is making: see ``call_timeout``.
_CALL_TIMEOUT: ContextVar[float | None] = ContextVar("pennyworth_call_timeout", default=None)


@contextmanager
def call_timeout(seconds: float) -> Iterator[None]:
    """Calls made inside take at most ``seconds`` each, through a kept client LiteLLM gives no timeout.

    LiteLLM's Bedrock embeddings send through the client they are given without a timeout (they
    pass theirs only to a client they build, and cache that client by it: a new connection per
    batch). The kept client applies this one instead, so each batch still ends by the deadline.
    """
    token = _CALL_TIMEOUT.set(seconds)
    try:
        yield
    finally:
        _CALL_TIMEOUT.reset(token)


def _timed_handler() -> Any:
    """LiteLLM's HTTP client, sending the ``call_timeout`` in force when a call comes without a timeout.

    Its connections' reads end at the deadline of the call that sent them (``read_deadline.py``),
    set again before each request: LiteLLM builds a new httpx client when its own was closed.
    """
    load_litellm()  # LiteLLM imported its way (offline, the collector paused), not by the import below
    from litellm.llms.custom_httpx.http_handler import HTTPHandler

    class TimedHandler(HTTPHandler):
        def post(self, *args: Any, **kwargs: Any) -> Any:
            # ``timeout`` is post's seventh parameter: given positionally, it is left as it is.
            if len(args) < 7 and kwargs.get("timeout") is None:
                kwargs["timeout"] = _CALL_TIMEOUT.get()
            read_deadline.bound(self.client)
            return super().post(*args, **kwargs)

    return TimedHandler()


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message without what only Anthropic models take (cache points, thinking blocks)."""
    cleaned = {k: v for k, v in message.items() if k not in ("cache_control", "thinking_blocks")}
    content = cleaned.get("content")
    if isinstance(content, list):
        cleaned["content"] = [
            {k: v for k, v in part.items() if k != "cache_control"} if isinstance(part, dict) else part
            for part in content
        ]
    return cleaned
