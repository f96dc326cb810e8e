"""The call policy the core builds for one call: from the key, its owner and the catalog.

Which targets may serve (``call_policy``): the model asked for, then its fallbacks in the
catalog's order, less those the key may not use. A fallback to the same model in another
geography or region (``base_model_id`` equal) needs nothing more; another model must be on the
key's allowlist, and a key whose ``model_fallback`` is ``same_model`` never gets one (``none``:
no fallback at all). A fallback that cannot do what the request needs (images, tools,
reasoning) is left out rather than tried. Each target carries the most specific guardrail:
the key's, else its team's (a team key, or a person's key charged to the team), else the target
model's.

What a guardrail may cost at most (``guardrail_worst_case``), so admission can reserve it: every
text unit of the prompt and of the longest answer, assessed by every policy type.
"""

from __future__ import annotations

from decimal import Decimal

from chalicelib import errors
from chalicelib.catalog import Catalog, ModelEntry
from chalicelib.conversation.request import Conversation
from chalicelib.gateway import CallPolicy, Target, check_capabilities
from chalicelib.keys.store import KeyRecord
from chalicelib.shared.guardrails import Guardrail, GuardrailPrices, text_units

#: An upper bound of the characters in one output token (the longest tokens of BPE vocabularies:
#: runs of spaces or punctuation). Text units bill characters, admission counts tokens.
OUTPUT_CHARACTERS_PER_TOKEN = 32


def call_policy(
    key: KeyRecord,
    model: ModelEntry,
    catalog: Catalog,
    conversation: Conversation,
    *,
    region: str,
    team_guardrail: Guardrail | None = None,
) -> CallPolicy:
    """The ordered targets a call to ``model`` with ``key`` may be served by, and their guardrails.

    ``team_guardrail`` is the guardrail of the team the key is charged to, if any.
    """
    required = key.guardrail_config or team_guardrail
    targets = [_target(required, model, region)]
    allowed = key.model_fallback or "any"
    if allowed != "none":
        for fallback in catalog.fallbacks_of(model):
            if fallback.provider != model.provider:
                continue  # the prompt was built for the model's provider (``Gateway.prompt``)
            same_model = fallback.base_model_id == model.base_model_id
            if not same_model and (allowed == "same_model" or not key.allows_model(fallback.id)):
                continue
            try:
                check_capabilities(conversation, fallback)
                targets.append(_target(required, fallback, region))
            except errors.AppError:
                continue
    return CallPolicy(tuple(targets))


def _target(required: Guardrail | None, model: ModelEntry, region: str) -> Target:
    """The target of ``model`` for a call that must carry ``required`` (the key's or team's guardrail), if any.

    Raises
    ------
    PermissionDenied
        The call must carry a guardrail and ``model`` is not served by Bedrock, which applies
        them: it is never called without it (a fallback like it is left out).
    """
    guardrail = required or model.guardrail
    if model.provider != "bedrock":
        if guardrail is not None:
            raise errors.PermissionDenied(
                f"This key's calls carry the Bedrock guardrail {guardrail}, and '{model.id}' is not served by "
                "Bedrock, which applies it: use a Bedrock model, or ask an admin.",
                param="model",
                code="guardrail_unsupported",
            )
        return Target(model=model, region=None)
    return Target(model=model, region=model.region or region, guardrail=guardrail)


def guardrail_worst_case(
    policy: CallPolicy, prices: GuardrailPrices, *, prompt_bytes: int, max_output_tokens: int | None
) -> Decimal:
    """The most a call's guardrail text units can cost (0 without a guardrail).

    The prompt's characters are at most its UTF-8 bytes; the answer's at most
    ``OUTPUT_CHARACTERS_PER_TOKEN`` per token of the longest answer any target may give. Each
    assessment rounds up to a whole unit, so one more unit is allowed for on each side.
    """
    if not policy.guarded:
        return Decimal(0)
    outputs = (
        [max_output_tokens]
        if max_output_tokens is not None
        else [t.model.max_output_tokens or 0 for t in policy.targets]
    )
    output_characters = max(outputs, default=0) * OUTPUT_CHARACTERS_PER_TOKEN
    units = text_units(prompt_bytes) + 1 + text_units(output_characters) + 1
    return prices.dearest_total * units
