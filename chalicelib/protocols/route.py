"""The route step every protocol adapter shares: authenticate, parse the body, converse, answer.

An adapter is a package of three modules: ``parse`` (its wire format → the one internal
``Conversation``), ``render`` (the turn's events → its wire format) and ``route`` (its
routes, each a class whose one entry verb is ``handle(request)``). A model route
subclasses ``ModelRoute`` and says only what differs between protocols: which headers it
reads before the body (``read_headers``), how the body parses (``parse``), what it fits to
the model (``fit``), what its answers carry (``answer_headers``), and how a stream and a
whole answer are written (``stream``, ``whole``). Admission, the call and billing are the
service's (``ModelService.converse``), once for all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Protocol

from chalicelib.catalog import ModelEntry
from chalicelib.conversation.events import Completion
from chalicelib.conversation.request import Conversation
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.service.service import ModelService, Turn
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.http import JSON_HEADERS, SSE_HEADERS, HttpRequest, HttpResult, StreamingResult
from chalicelib.shared.money import usd
from chalicelib.shared.usage import UsageEntry


class Parsed(Protocol):
    """What an adapter's ``parse`` returns: at least the conversation to hold."""

    @property
    def conversation(self) -> Conversation: ...


class Route:
    """One route of a protocol adapter, over the key store and the model service."""

    #: Anthropic's clients send their key as ``x-api-key``; OpenAI's as ``Authorization: Bearer``.
    accepts_x_api_key: ClassVar[bool] = False

    def __init__(self, *, keys: KeyStore, models: ModelService, max_body_bytes: int) -> None:
        self._keys = keys
        self._models = models
        self._max_body_bytes = max_body_bytes

    def handle(self, request: HttpRequest) -> HttpResult | StreamingResult:
        """Answer one request.

        Raises
        ------
        AppError
            Before any byte is sent: the caller's protocol error envelope is the edge's.
        """
        raise NotImplementedError

    def key(self, request: HttpRequest) -> KeyRecord:
        """The authenticated API key of the request (raises ``AuthenticationFailed``).

        The catalog's refresh, when the request will need one, starts first: it runs beside the
        key's lookup, so a fresh catalog adds no round trip to the request.
        """
        self._models.prefetch()
        return self._keys.authenticate(request.headers, accept_x_api_key=self.accepts_x_api_key)

    def body(self, request: HttpRequest) -> dict[str, Any]:
        """The request's JSON object body, refused when over the size limit or malformed."""
        return parse_json_body(request.body, max_bytes=self._max_body_bytes)


class ModelRoute[Request: Parsed](Route):
    """A route that answers with a model's turn: streamed as events arrive, or as one JSON body."""

    #: Which surface the call's log line names (``openai``, ``responses``, ``anthropic``).
    surface: ClassVar[str]
    #: Chat completions write whole answers with non-ASCII escaped, as they always have.
    ascii_json: ClassVar[bool] = False

    def handle(self, request: HttpRequest) -> StreamingResult:
        """Authenticate, parse, converse; then stream the turn's events, or answer with the whole turn.

        Raises
        ------
        AppError
            Before any byte is sent: a bad key, header or body, refused admission, an upstream failure.
        """
        key = self.key(request)
        context = self.read_headers(request.headers)
        parsed = self.parse(self.body(request), context)
        # The bill's ledger write and log line wait until the answer is out (``Turn.finish``, which
        # closing the result runs): whoever sends a ``StreamingResult`` closes it once it is sent.
        turn = self._models.converse(
            key, parsed.conversation, deadline=request.deadline, surface=self.surface, fit=self.fit, hold=True
        )
        try:
            headers = {**turn.headers, **self.answer_headers(turn, parsed)}
            if parsed.conversation.stream:
                return StreamingResult(200, {**headers, **SSE_HEADERS}, self.stream(turn, parsed), on_close=turn.finish)
            body, entry = self.whole(turn, parsed)
            turn.close()
            headers.update(JSON_HEADERS)
            headers["x-pennyworth-cost-usd"] = (usd(entry.cost) if entry is not None else None) or "0"
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=self.ascii_json).encode()
        except BaseException:
            turn.finish()  # no answer to send: billed and stored now
            raise
        return StreamingResult.whole(200, headers, data, on_close=turn.finish)

    # -- what each protocol says ------------------------------------------------------------------

    def read_headers(self, headers: Mapping[str, str]) -> Any:
        """The protocol's own request headers, checked before the body (none by default)."""
        return None

    def parse(self, body: dict[str, Any], context: Any) -> Request:
        """The body (and what ``read_headers`` found) as the protocol's request, holding its ``Conversation``."""
        raise NotImplementedError

    def fit(self, conversation: Conversation, model: ModelEntry) -> Conversation:
        """The conversation adjusted to the model it resolved to, before its capabilities are checked."""
        return conversation

    def answer_headers(self, turn: Turn, request: Request) -> dict[str, str]:
        """Headers the protocol's answer carries, besides admission's and ``x-request-id``."""
        return {}

    def stream(self, turn: Turn, request: Request) -> Iterator[bytes]:
        """The turn's events as the protocol's stream, each sent as soon as it arrives; closes the turn."""
        raise NotImplementedError

    def whole(self, turn: Turn, request: Request) -> tuple[Any, UsageEntry | None]:
        """The whole answer's body and its bill; raises the turn's error if it broke off (billed already)."""
        raise NotImplementedError


def completed(turn: Turn) -> Completion:
    """The turn accumulated to its end.

    Raises
    ------
    AppError
        The answer broke off: what was generated is billed already (partial), and a whole
        answer cannot end in an error event.
    """
    completion = Completion.of(turn)
    if completion.error is not None:
        raise completion.error
    return completion
