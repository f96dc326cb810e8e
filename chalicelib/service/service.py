"""The billed model call, once for every protocol: resolve → check → admit → call → bill.

Every adapter (OpenAI chat, Responses, Anthropic Messages, the MCP tools)
hands a ``Conversation`` to ``ModelService.converse`` and gets a ``Turn``:
its events arrive as Bedrock produces them, and the call is billed exactly
once however the turn ends: completed, cut by the upstream, out of time, or
abandoned by a caller that stops reading (``Turn.close``). Embeddings go
through ``ModelService.embed`` under the same admission and ledger.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.metering import Meter, Ticket, asks_long_cache
from chalicelib.catalog import Catalog, ModelEntry
from chalicelib.conversation import deadline as deadline_guard
from chalicelib.conversation.deadline import Direct, Guarded
from chalicelib.conversation.events import (
    Billed,
    Completion,
    Event,
    Failed,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from chalicelib.conversation.request import Conversation, EmbeddingRequest
from chalicelib.gateway import (
    Attempt,
    BedrockPrompt,
    CallPolicy,
    Gateway,
    Target,
    check_capabilities,
    embedding_limits,
    embedding_texts,
    prompt_input,
)
from chalicelib.keys.store import KeyRecord
from chalicelib.keys.teams import TeamPolicy
from chalicelib.observability import logger
from chalicelib.service.policy import call_policy, guardrail_worst_case
from chalicelib.shared.dates import isoformat
from chalicelib.shared.guardrails import GuardrailPrices, guardrail_cost, text_units
from chalicelib.shared.money import usd
from chalicelib.shared.text import nearest
from chalicelib.shared.usage import TokenUsage, UsageEntry

#: How each kind of model is named and called, for a request that sent one to the other's route.
_MODE_NAMES = {"chat": "a chat model", "embedding": "an embedding model"}
_MODE_USE = {
    "chat": "call it with POST /v1/chat/completions, /v1/responses or /v1/messages (MCP: the chat tool).",
    "embedding": "call it with POST /v1/embeddings (MCP: the embed tool).",
}
#: Time kept back from a deadline to bill and close the answer after the upstream stops.
BILLING_MARGIN_SECONDS = 3.0


@dataclass
class Turn:
    """One admitted model call: its id, model, admission headers, and its events as they come.

    ``events`` ends with ``Billed`` (a complete answer) or ``Failed`` (an answer that broke
    off; what was generated is billed). Close the turn when you stop reading early.
    """

    request_id: str
    model: ModelEntry
    headers: dict[str, str]
    events: Iterator[Event]
    started: float
    #: The upstream target answering (the model asked for, or one of its fallbacks).
    served: Target | None = None

    #: The bill's ledger write and log line, when the turn was started with ``hold``: ``finish`` runs them.
    held: list[Callable[[], None]] = field(default_factory=list)

    def __iter__(self) -> Iterator[Event]:
        return self.events

    def close(self) -> None:
        """Stop the upstream call and bill what it produced (idempotent)."""
        close = getattr(self.events, "close", None)
        if close is not None:
            close()

    def finish(self) -> None:
        """``close``, then store the bill and write the call's log line if they were held (idempotent).

        A turn started with ``hold`` settles its bill as it ends (the usage report and the cost
        header carry it) but leaves the ledger's ``PutItem`` and the log line to this call, which
        the streaming function makes once the answer has left: the caller does not wait for them.
        """
        try:
            self.close()
        finally:
            _run_held(self.held)


@dataclass
class EmbeddingRun:
    """One billed embeddings call."""

    request_id: str
    model: ModelEntry
    body: dict[str, Any]
    entry: UsageEntry
    latency_ms: int
    headers: dict[str, str] = field(default_factory=dict)


class ModelService:
    """Admission, the Bedrock call and billing, below every protocol adapter."""

    def __init__(
        self,
        *,
        catalog: Callable[[], Catalog],
        gateway: Gateway,
        meter: Meter,
        clock: Callable[[], float] = time.time,
        prefetch: Callable[[], None] | None = None,
        recheck: Callable[[], Catalog] | None = None,
        team_policy: Callable[[str], TeamPolicy] | None = None,
    ) -> None:
        self._catalog = catalog
        self._gateway = gateway
        self._meter = meter
        self._clock = clock
        self._prefetch = prefetch
        #: The catalog read again after a name was not found (a model added on another function).
        self._recheck = recheck
        #: A team's policy (its guardrail), from this function's copy (``chalicelib/keys/teams.py``).
        self._team_policy = team_policy

    def prefetch(self) -> None:
        """Start refreshing the catalog snapshot if this request will need it (never waits).

        Called as a request arrives, before its API key is looked up, so a refresh after an idle
        spell runs beside that lookup instead of after it (``chalicelib/catalog/live.py``).
        """
        if self._prefetch is not None:
            self._prefetch()

    # -- chat ------------------------------------------------------------------------------------

    def converse(
        self,
        key: KeyRecord,
        conversation: Conversation,
        *,
        deadline: float,
        surface: str,
        fit: Callable[[Conversation, ModelEntry], Conversation] | None = None,
        catalog: Catalog | None = None,
        hold: bool = False,
    ) -> Turn:
        """Admit and start one model call for an authenticated key; its answer comes as the turn's events.

        ``deadline`` is the Unix time by which the whole answer must be out: the upstream
        call gets what is left of it, minus a margin to bill. Bedrock is called here, so an
        upstream failure before any output raises (with the admission headers) instead of
        starting an answer that could only be an error. ``fit`` lets an adapter adjust the
        conversation to the model it resolved to (once), before its capabilities are checked.
        ``catalog`` resolves the model in that catalog instead of this function's snapshot (the
        model test reads a fresh one). With ``hold``, the bill's ledger write and log line wait for
        ``Turn.finish`` (which the caller must make, once the answer is out); without, they are made
        as the call is billed.

        Raises
        ------
        AppError
            Unknown or disallowed model, what the model cannot do, refused admission, or an
            upstream failure before any output (the reservation is then released).
        """
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        model = self.resolve_model(key, conversation.model, mode="chat", catalog=catalog)
        if fit is not None:
            conversation = fit(conversation, model)
        check_capabilities(conversation, model)
        log = {"request_id": request_id, "key_id": key.key_id, "model": model.id, "surface": surface}
        log.update(stream=conversation.stream, **conversation.annotations)
        # Who may serve the call: the model asked for, then the fallbacks this key may use.
        team = self._team_policy(key.team_id) if key.team_id and self._team_policy is not None else None
        policy = call_policy(
            key,
            model,
            catalog or self._catalog(),
            conversation,
            region=self._gateway.region,
            team_guardrail=team.guardrail if team is not None else None,
        )
        # What reaches the upstream, built once: admission bounds its tokens, the call sends it.
        prompt = self._gateway.prompt(conversation, model)
        bound = prompt_input(prompt).token_bound  # UTF-8 bytes: also a bound of the characters
        # Guardrail text units are priced at the operator's prices in force now (or LiteLLM's map), for
        # admission and for the bill alike, whichever region serves.
        pricing = _GuardrailPricing(catalog or self._catalog(), isoformat(datetime.fromtimestamp(self._clock(), UTC)))
        ticket = self._meter.admit(
            key,
            model,
            input_tokens=bound,
            max_output_tokens=conversation.max_tokens,
            long_cache=asks_long_cache(*prompt),
            alternatives=tuple(target.model for target in policy.targets[1:]),
            surcharge=guardrail_worst_case(
                policy,
                pricing(policy.primary.region) if policy.guarded else GuardrailPrices(),
                prompt_bytes=bound,
                max_output_tokens=conversation.max_tokens,
            ),
        )
        call = _Call(ticket, conversation, prompt, policy, request_id, deadline, started, log, pricing, hold=hold)
        events = self._run(call)
        first: Event | None = None
        try:
            first = next(events)
        except errors.AppError as exc:
            exc.headers.update({**ticket.headers, "x-request-id": request_id})
            exc.context.update(log, latency_ms=_ms(started))
            raise
        finally:
            if first is None:
                _run_held(call.held)  # failed before any output (billed when given up on): no turn to finish
        headers = {**ticket.headers, "x-request-id": request_id}
        if call.served is not None:
            headers["x-pennyworth-served-by"] = call.served.describe()
        return Turn(request_id, model, headers, _Resumed(first, events), started, served=call.served, held=call.held)

    def _run(self, call: _Call) -> Iterator[Event]:
        """The upstream's events, then exactly one ``Billed`` or ``Failed``; billed however it ends.

        Before any event is yielded, a failure is raised instead (the caller still has an HTTP
        status to give): released when Bedrock produced nothing billable, billed (partial) when
        the gateway gave up on a call Bedrock had received (a timeout: Bedrock read the prompt,
        and may have generated) or when output had been read ahead.
        """
        ticket, conversation, prompt, request_id, deadline = (
            call.ticket,
            call.conversation,
            call.prompt,
            call.request_id,
            call.deadline,
        )
        answer = _Answer()
        failure: errors.AppError | None = None
        upstream: Guarded | Direct | None = None
        called = opened = False
        try:
            self._time_left(deadline, request_id)
            called = True
            served = self._gateway.chat(
                conversation,
                call.policy,
                prompt,
                stop_at=deadline - BILLING_MARGIN_SECONDS,
                attempts=call.attempts,
            )
            call.served = served.target
            stream = served.events
            opened = True
            # Each read of a stream may wait as long as the whole answer had; a stall near the end
            # must not hold the function past its deadline (it would die unbilled).
            # Read here when its reads end by then themselves (a client of ours); else on a worker.
            upstream = deadline_guard.until(
                stream, deadline - BILLING_MARGIN_SECONDS, clock=self._clock, reads=served.bounded_reads
            )
            for event in upstream:
                if not answer.take(event):
                    continue  # the usage report: reported after billing, with the billed usage
                answer.yielded = True
                yield event
                if answer.finished is None and self._clock() > deadline - BILLING_MARGIN_SECONDS:
                    raise deadline_guard.time_limit()
        except errors.AppError as exc:
            failure = exc
        except GeneratorExit:
            # The caller stopped reading (client gone): stop Bedrock, bill what it generated,
            # including what was read ahead and never sent.
            answer.take_unread(upstream)
            self._bill(call, answer, "abandoned")
            raise
        except Exception:
            # A bug of ours: the caller still gets a clean end, and the call is billed.
            logger.exception("model call failed", extra=call.log)
            failure = errors.InternalError("The gateway hit an internal error mid-answer; it has been logged.")
        answer.take_unread(upstream)
        if failure is None and answer.finished is None:
            failure = errors.UpstreamError(
                "The Bedrock stream ended before the model finished; the answer is incomplete.",
                code="upstream_stream_cut",
            )
        if failure is not None:
            failure.headers.update({"x-request-id": request_id})
            gave_up = called and isinstance(failure, errors.UpstreamTimeout)
            if gave_up and not opened and self._gateway.reads_whole(prompt):
                # LiteLLM reads this answer whole: Bedrock goes on generating it for nobody, and bills
                # it. Bill the most it may generate (the reservation caps it, as always).
                answer.assumed_output = conversation.max_tokens or call.target.model.max_output_tokens or 0
            if not answer.produced and not answer.yielded and not gave_up:
                # Refused or broken off before any output: Bedrock bills nothing.
                self._meter.release(ticket)
                failure.headers.update(ticket.headers)
                raise failure
            call.log = {**call.log, "failure": failure.code}  # e.g. answer_time_limit: counted by the template
        entry = self._bill(call, answer, "ok" if failure is None else "cut")
        if failure is not None:
            failure.headers.update(ticket.headers)
            if not answer.yielded:
                raise failure  # nothing sent yet: the caller answers with the error's status (billed)
            yield Failed(failure, entry)
            return
        report = answer.report
        yield UsageReport(
            entry.usage,
            reasoning_tokens=report.reasoning_tokens if report else 0,
            guardrail_units=dict(entry.guardrail_units),
        )
        yield Billed(entry)

    def _bill(self, call: _Call, answer: _Answer, outcome: str) -> UsageEntry:
        """Settle the call at the prices of the target that served (or was last tried), guardrail units included."""
        ticket, prompt, log = call.ticket, call.prompt, call.log
        served = call.target
        report = answer.report
        if report is not None and (report.usage.input_tokens or report.usage.output_tokens or report.guardrail_units):
            usage = report.usage
            units = dict(report.guardrail_units)
        else:
            # Cut before Bedrock's usage report: bill the whole prompt as Bedrock counts it, and
            # what was produced, counted with a local tokenizer (an estimate; the entry is partial).
            usage = self._gateway.estimate_usage(prompt, "".join(answer.produced))
            if answer.assumed_output > usage.output_tokens:
                usage = dataclasses.replace(usage, output_tokens=answer.assumed_output)
            units = self._estimated_guardrail_units(served, prompt, answer.produced, call.pricing)
        prices = call.pricing(served.region) if units else GuardrailPrices()
        guardrail_usd = guardrail_cost(prices, units) if units else Decimal(0)
        latency_ms = _ms(call.started)
        entry = self._meter.settle(
            ticket,
            request_id=call.request_id,
            operation="chat",
            usage=usage,
            latency_ms=latency_ms,
            status="ok" if outcome == "ok" else "partial",
            protocol=log["surface"],
            served=served.model,
            served_by=served.served_by,
            served_region=served.region or "",
            guardrail_units=units,
            guardrail_usd=guardrail_usd,
            guardrail_price_version=prices.version,
            record=not call.hold,
        )
        line = {
            **log,
            "status": 200,
            "outcome": outcome,
            "latency_ms": latency_ms,
            "served_by": served.served_by,
            "served_model": served.model.id,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "guardrail_units": sum(units.values()),
            "cost_usd": str(entry.cost),
        }
        if call.hold:
            call.held.append(lambda: self._store(entry, line))
        else:
            logger.info("chat completion", extra=line)
        return entry

    def _store(self, entry: UsageEntry, line: dict[str, Any]) -> None:
        """A held bill: the ledger entry (``Meter.record`` never raises), then the call's log line."""
        self._meter.record(entry)
        logger.info("chat completion", extra=line)

    def _estimated_guardrail_units(
        self, served: Target, prompt: BedrockPrompt, produced: list[str], pricing: _GuardrailPricing
    ) -> dict[str, int]:
        """The text units a guardrail may have used when Bedrock's report was cut off: every priced policy."""
        if served.guardrail is None:
            return {}
        characters = sum(len(text) for text in prompt_input(prompt).texts)
        units = text_units(characters) + text_units(sum(len(text) for text in produced))
        return {counter: units for counter, price in pricing(served.region).per_unit.items() if price > 0}

    def _time_left(self, deadline: float, request_id: str) -> float:
        left = deadline - self._clock() - BILLING_MARGIN_SECONDS
        if left < 1:
            raise errors.UpstreamTimeout(
                "No time is left in this request for a model call.",
                code="answer_time_limit",
                headers={"x-request-id": request_id},
            )
        return left

    # -- embeddings ------------------------------------------------------------------------------

    def embed(
        self,
        key: KeyRecord,
        request: EmbeddingRequest,
        *,
        deadline: float | None = None,
        surface: str = "openai",
        catalog: Catalog | None = None,
    ) -> EmbeddingRun:
        """Admit, embed, bill: one embeddings call for an authenticated key (routes and MCP tools).

        ``deadline`` is the Unix time by which the whole request must be answered: the Bedrock
        calls end a margin before it (to bill), and what was embedded by then is billed.

        Raises
        ------
        AppError
            Unknown or disallowed model, inputs over the model's limits, refused admission,
            an upstream failure, or no time left (what Bedrock did embed is still billed).
        """
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        entry = self.resolve_model(key, request.model, mode="embedding", catalog=catalog)
        texts = embedding_texts(request, embedding_limits(entry))
        log = {"request_id": request_id, "key_id": key.key_id, "model": entry.id, "surface": surface}
        # A token is at least one UTF-8 byte (as in PromptInput.token_bound), so bytes bound the tokens.
        ticket = self._meter.admit(key, entry, input_tokens=sum(len(t.encode()) for t in texts), max_output_tokens=0)
        stop_at = None if deadline is None else deadline - BILLING_MARGIN_SECONDS
        try:
            outcome = self._gateway.embed(request, entry, texts=texts, stop_at=stop_at)
        except errors.AppError as exc:
            self._meter.release(ticket)
            exc.headers.update({**ticket.headers, "x-request-id": request_id})
            raise
        latency_ms = _ms(started)
        if outcome.error is not None and not outcome.usage.input_tokens:
            self._meter.release(ticket)
        else:
            usage_entry = self._meter.settle(
                ticket,
                request_id=request_id,
                operation="embedding",
                usage=outcome.usage,
                latency_ms=latency_ms,
                status="ok" if outcome.error is None else "partial",
                protocol=surface,
                served_by=self._gateway.target(entry).served_by,
                served_region=self._gateway.region_of(entry) or "",
            )
        if outcome.error is not None:
            outcome.error.headers.update({**ticket.headers, "x-request-id": request_id})  # the cost, if billed
            outcome.error.context.update(log, latency_ms=latency_ms, input_tokens=outcome.usage.input_tokens)
            raise outcome.error
        logger.info(
            "embeddings",
            extra={
                **log,
                "status": 200,
                "inputs": len(texts),
                "latency_ms": latency_ms,
                "input_tokens": outcome.usage.input_tokens,
                "cost_usd": str(usage_entry.cost),
            },
        )
        headers = {**ticket.headers, "x-request-id": request_id}
        return EmbeddingRun(request_id, entry, outcome.body, usage_entry, latency_ms, headers=headers)

    # -- the catalog, as a key sees it -----------------------------------------------------------

    def usable_models(self, key: KeyRecord, mode: str | None = None) -> list[ModelEntry]:
        """The catalog models ``key`` may call, in catalog order (optionally one mode)."""
        return [m for m in self._catalog() if key.allows_model(m.id) and (mode is None or m.mode == mode)]

    def _find(self, name: str, catalog: Catalog | None) -> ModelEntry | None:
        """The served entry named ``name``; a miss in this function's catalog rereads the table once.

        Raises
        ------
        ServiceUnavailable
            The model's stored entry cannot be read (``Catalog.resolve``).
        """
        source = catalog or self._catalog()
        entry = source.find(name)
        if entry is None and catalog is None and self._recheck is not None:
            source = self._recheck()
            entry = source.find(name)
        if entry is None and name in source.broken:
            source.resolve(name)  # raises: the model is out of service until an admin fixes it
        return entry

    def resolve_model(
        self,
        key: KeyRecord,
        name: str,
        *,
        mode: str | None = None,
        hidden: bool = False,
        catalog: Catalog | None = None,
    ) -> ModelEntry:
        """The catalog entry for ``name`` if ``key`` may use it (in ``catalog``, default this function's).

        ``hidden``: a model outside the key's allowlist is not found, as if it did not exist
        (OpenAI's answer to ``GET /v1/models/{id}``: it tells nothing of the catalog). Hints in the
        messages name only models the key may use.

        Raises
        ------
        NotFound
            No such model, a model of the other kind (an embedding model for chat), or (``hidden``) one
            the key may not use.
        PermissionDenied
            The key may not use it (unless ``hidden``).
        """
        entry = self._find(name, catalog)
        if entry is not None and not key.allows_model(entry.id):
            if not hidden:
                raise errors.PermissionDenied(
                    f"This API key is not allowed to use the model '{name}'.",
                    param="model",
                    code="model_not_allowed",
                )
            entry = None
        if entry is None:
            usable = [n for model in self.usable_models(key, mode) for n in (model.id, *model.aliases)]
            guess = nearest(name, usable)
            raise errors.NotFound(
                f"The model '{name}' does not exist or you do not have access to it."
                + (f" Did you mean '{guess}'?" if guess else "")
                + " GET /v1/models lists the models this key may use.",
                param="model",
                code="model_not_found",
            )
        if mode is not None and entry.mode != mode:
            raise errors.NotFound(
                f"The model '{name}' is {_MODE_NAMES[entry.mode]}, not {_MODE_NAMES[mode]}: {_MODE_USE[entry.mode]}",
                param="model",
                code="model_not_found",
            )
        return entry

    def key_status(self, key: KeyRecord) -> dict[str, Any]:
        """What a key holder may know about its own key: its limits, this month's spend and budget left."""
        return {
            "object": "key",
            "key_id": key.key_id,
            "prefix": key.prefix,
            "name": key.name,
            "owner": {"sub": key.owner_sub, "email": key.owner_email},
            "allowed_models": list(key.allowed_models) if key.allowed_models is not None else None,
            "expires_at": key.expires_at,
            "limits": {"rpm": key.rpm_limit, "tpm": key.tpm_limit},
            **self._meter.spend(key),  # budget, usage
        }

    def admit_count(self, key: KeyRecord, model: ModelEntry) -> dict[str, str]:
        """Admit a token count: free, but a request against the key's requests per minute; its headers.

        Raises
        ------
        RateLimited
            The key's requests per minute are spent.
        """
        return self._meter.admit_free(key, model).headers

    def count_tokens(self, model: ModelEntry, *, messages: list[dict[str, Any]] | None = None, text: str = "") -> int:
        """A local estimate of a prompt's tokens for ``model`` (no Bedrock call, nothing billed)."""
        return self._gateway.count_tokens(model, messages=messages, text=text)

    # -- the model test ----------------------------------------------------------------------------

    def probe(self, key: KeyRecord, model: ModelEntry, *, deadline: float) -> dict[str, Any]:
        """One minimal call to ``model`` through the whole path, billed to ``key``: what ``models test`` reports.

        The model is called as a caller would call it (admission, the upstream, the bill), even when
        it is disabled, so an admin can try a model before turning it on. The outcome is data: an
        upstream refusal is reported (``ok`` false, the error), not raised.
        """
        started = time.perf_counter()
        catalog = Catalog([replace(model, enabled=True)])
        result: dict[str, Any] = {"object": "model_test", "model": model.id, "key_id": key.key_id}
        try:
            if model.mode == "embedding":
                run = self.embed(
                    key,
                    EmbeddingRequest(model=model.id, inputs=(PROBE_TEXT,)),
                    deadline=deadline,
                    surface="model_test",
                    catalog=catalog,
                )
                entry, request_id = run.entry, run.request_id
                answer = f"{len(run.body['data'][0]['embedding'])} dimensions"
            else:
                conversation = Conversation(
                    model=model.id, messages=[{"role": "user", "content": PROBE_TEXT}], max_tokens=PROBE_MAX_TOKENS
                )
                turn = self.converse(key, conversation, deadline=deadline, surface="model_test", catalog=catalog)
                try:
                    completion = Completion.of(turn)
                finally:
                    turn.close()
                if completion.error is not None:
                    raise completion.error
                entry, request_id = completion.entry, turn.request_id
                answer = "".join(b.text for b in completion.blocks if b.kind == "text")[:200]
        except errors.AppError as exc:
            result.update(ok=False, status=exc.status_code, latency_ms=_ms(started), error=exc.to_body()["error"])
            result["request_id"] = exc.headers.get("x-request-id")
            return result
        assert entry is not None
        result.update(
            ok=True,
            status=200,
            latency_ms=_ms(started),
            request_id=request_id,
            answer=answer,
            usage={name: getattr(entry.usage, name) for name in TOKEN_FIELDS},
            cost_usd=usd(entry.cost) or "0",
            price_version=entry.price_version,
            served_by=entry.served_by,
        )
        return result


#: What the model test sends: short, answerable by any chat model, cheap on every price list.
PROBE_TEXT = "Reply with the single word OK."
PROBE_MAX_TOKENS = 16
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")


@dataclass
class _Call:
    """One admitted chat call, as its run and its bill need it."""

    ticket: Ticket
    conversation: Conversation
    prompt: BedrockPrompt
    policy: CallPolicy
    request_id: str
    deadline: float
    started: float
    log: dict[str, Any]
    #: The guardrail prices the call is billed at (in force when it was admitted).
    pricing: _GuardrailPricing
    #: The target answering, once one started to.
    served: Target | None = None
    #: Every upstream attempt made, in order (the gateway appends them).
    attempts: list[Attempt] = field(default_factory=list)
    #: Whether the bill's ledger write and log line wait in ``held`` for ``Turn.finish`` (else: made as billed).
    hold: bool = False
    held: list[Callable[[], None]] = field(default_factory=list)

    @property
    def target(self) -> Target:
        """The target the bill names: the one serving, else the last one tried (a timed-out attempt), else the first."""
        if self.served is not None:
            return self.served
        return self.attempts[-1].target if self.attempts else self.policy.primary


@dataclass(frozen=True)
class _GuardrailPricing:
    """The guardrail prices in force at one moment, by region (read only for calls with a guardrail)."""

    catalog: Catalog
    moment: str

    def __call__(self, region: str | None) -> GuardrailPrices:
        return self.catalog.guardrail_prices(region, self.moment)


@dataclass
class _Answer:
    """What a call has produced so far, as billing needs it."""

    produced: list[str] = field(default_factory=list)
    report: UsageReport | None = None
    finished: Finished | None = None
    #: Whether any event reached the caller (after that, a failure is an event, not an exception).
    yielded: bool = False
    #: Output tokens Bedrock is assumed to generate though nobody reads them (``Gateway.reads_whole``).
    assumed_output: int = 0

    def take(self, event: Event) -> bool:
        """Fold in one upstream event; whether the caller gets it (the usage report waits for the bill)."""
        if isinstance(event, UsageReport):
            self.report = event
            return False
        if isinstance(event, Finished):
            self.finished = event
        else:
            self.produced.append(_text_of(event))
        return True

    def take_unread(self, upstream: Guarded | Direct | None) -> None:
        """Stop the upstream and fold in what it had read ahead that the caller never took."""
        if upstream is not None:
            for event in upstream.close():
                self.take(event)


def _run_held(held: list[Callable[[], None]]) -> None:
    """Run (and empty) a turn's held work, each item once; one failing does not skip the next."""
    while held:
        work = held.pop(0)
        try:
            work()
        except Exception:
            logger.exception("held work after an answer failed")


class _Resumed:
    """``first``, then the rest of a started generator; closing it closes (and so bills) the rest."""

    def __init__(self, first: Event, rest: Iterator[Event]) -> None:
        self._first: list[Event] = [first]
        self._rest = rest

    def __iter__(self) -> _Resumed:
        return self

    def __next__(self) -> Event:
        if self._first:
            return self._first.pop()
        return next(self._rest)

    def close(self) -> None:
        self._first.clear()
        _close(self._rest)


def _text_of(event: Event) -> str:
    if isinstance(event, TextDelta):
        return event.text
    if isinstance(event, ReasoningDelta):
        return event.text
    if isinstance(event, ToolCallDelta):
        return event.arguments
    if isinstance(event, ToolCallStart):
        return event.name
    return ""


def _close(upstream: Iterator[Event] | None) -> None:
    close = getattr(upstream, "close", None)
    if close is not None:
        close()


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def usage_of(entry: UsageEntry | None) -> TokenUsage:
    """The billed usage of an entry (zeros when nothing was billed)."""
    return entry.usage if entry is not None else TokenUsage()
