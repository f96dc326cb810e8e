"""Bedrock Guardrails, as the emulator applies them: a registry, assessments, text units and traces.

A Converse request may carry ``guardrailConfig`` (``guardrailIdentifier``, ``guardrailVersion``,
``trace``). The emulator knows the guardrails in ``GUARDRAILS`` (the demo one, plus any given
with ``--guardrail ID``); another identifier or version is Bedrock's ``ValidationException``.
The guardrail assesses the prompt (the ``guardContent`` blocks when there are any, else every
user text) and the answer, and reports what it assessed in the trace's ``invocationMetrics``:
one text unit per started 1,000 characters, per policy the guardrail has, which is what
Bedrock bills. It intervenes when a user message asks it to (``#emulator:guardrail=input`` or
``=output``): the prompt is then never sent to the model (no tokens, no output assessment),
or the model's answer is replaced by the guardrail's message after it was generated (and billed).

The control plane's ``GetGuardrail`` (``GET /guardrails/{id}?guardrailVersion=V``) answers for
the same registry, so a gateway can check a guardrail exists when it is configured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import BedrockError, validation

#: What one text unit holds (Bedrock: "a text unit can contain up to 1,000 characters").
UNIT_CHARACTERS = 1000
#: The usage counters of an assessment, by the policy that produces each.
POLICY_UNITS = {
    "content": "contentPolicyUnits",
    "topic": "topicPolicyUnits",
    "word": "wordPolicyUnits",
    "sensitive_information": "sensitiveInformationPolicyUnits",
    "contextual_grounding": "contextualGroundingPolicyUnits",
}
DEMO_GUARDRAIL_ID = "pennyworthdemo"


@dataclass(frozen=True)
class GuardrailSpec:
    """One guardrail the emulator knows: its versions, policies and messages."""

    guardrail_id: str
    versions: frozenset[str] = frozenset({"DRAFT", "1"})
    policies: tuple[str, ...] = ("content", "topic", "word", "sensitive_information")
    blocked_input: str = "Sorry, the model cannot answer this question (blocked by the guardrail)."
    blocked_output: str = "Sorry, the model's answer was withheld (blocked by the guardrail)."
    name: str = field(default="")


GUARDRAILS: dict[str, GuardrailSpec] = {DEMO_GUARDRAIL_ID: GuardrailSpec(DEMO_GUARDRAIL_ID, name="pennyworth-demo")}


def add_guardrail(guardrail_id: str) -> GuardrailSpec:
    """Register another guardrail (``--guardrail ID``) with the demo's policies."""
    spec = GuardrailSpec(guardrail_id, name=guardrail_id)
    GUARDRAILS[guardrail_id] = spec
    return spec


def _bare(identifier: str) -> str:
    """An id from an id or a guardrail ARN (``arn:aws:bedrock:…:guardrail/ID``)."""
    return identifier.rsplit("/", 1)[1] if identifier.startswith("arn:") and "/" in identifier else identifier


@dataclass(frozen=True)
class GuardrailCall:
    """The guardrail a request asks for."""

    spec: GuardrailSpec
    version: str
    trace: bool


def parse_guardrail_config(raw: object) -> GuardrailCall | None:
    """The request's ``guardrailConfig``, checked as Bedrock checks it (None when absent)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise validation("guardrailConfig must be an object with guardrailIdentifier and guardrailVersion.")
    identifier, version = raw.get("guardrailIdentifier"), raw.get("guardrailVersion")
    if not isinstance(identifier, str) or not identifier or not isinstance(version, str) or not version:
        raise validation("guardrailConfig needs guardrailIdentifier and guardrailVersion (strings).")
    trace = raw.get("trace", "disabled")
    if trace not in ("enabled", "disabled", "enabled_full"):
        raise validation("guardrailConfig.trace must be enabled, enabled_full or disabled.")
    spec = GUARDRAILS.get(_bare(identifier))
    if spec is None or version not in spec.versions:
        raise validation(
            f"The guardrail identifier or version provided in the request does not exist: {identifier} {version}."
        )
    return GuardrailCall(spec, version, trace != "disabled")


def units(characters: int) -> int:
    """Text units for ``characters`` assessed: one per started 1,000."""
    return math.ceil(characters / UNIT_CHARACTERS) if characters > 0 else 0


def assessment(spec: GuardrailSpec, characters: int, *, blocked: bool) -> dict[str, object]:
    """One assessment: what each policy found, and the units it used."""
    usage = {counter: 0 for counter in POLICY_UNITS.values()}
    for policy in spec.policies:
        usage[POLICY_UNITS[policy]] = units(characters)
    usage["sensitiveInformationPolicyFreeUnits"] = 0
    found: dict[str, object] = {}
    if blocked:
        found["topicPolicy"] = {"topics": [{"name": "emulated-denied-topic", "type": "DENY", "action": "BLOCKED"}]}
    return {
        **found,
        "invocationMetrics": {
            "guardrailProcessingLatency": 25,
            "usage": usage,
            "guardrailCoverage": {"textCharacters": {"guarded": characters, "total": characters}},
        },
    }


def trace(
    call: GuardrailCall,
    input_characters: int,
    output_characters: int | None,
    *,
    blocked_input: bool,
    blocked_output: bool,
) -> dict[str, object]:
    """The ``trace.guardrail`` of a response (``output_characters`` None: the output was never assessed)."""
    guardrail_id = call.spec.guardrail_id
    body: dict[str, object] = {
        "inputAssessment": {guardrail_id: assessment(call.spec, input_characters, blocked=blocked_input)}
    }
    if output_characters is not None:
        body["outputAssessments"] = {guardrail_id: [assessment(call.spec, output_characters, blocked=blocked_output)]}
    if blocked_input or blocked_output:
        body["actionReason"] = "Guardrail blocked."
    return {"guardrail": body}


def get_guardrail(guardrail_id: str, version: str | None, region: str) -> dict[str, object]:
    """The control plane's ``GetGuardrail`` answer.

    Raises
    ------
    BedrockError
        ``ResourceNotFoundException`` for an unknown guardrail or version.
    """
    spec = GUARDRAILS.get(_bare(guardrail_id))
    wanted = version or "DRAFT"
    if spec is None or wanted not in spec.versions:
        raise BedrockError("ResourceNotFoundException", f"Guardrail {guardrail_id} version {wanted} was not found.")
    arn = f"arn:aws:bedrock:{region}:123456789012:guardrail/{spec.guardrail_id}"
    return {
        "name": spec.name or spec.guardrail_id,
        "guardrailId": spec.guardrail_id,
        "guardrailArn": arn,
        "version": wanted,
        "status": "READY",
        "blockedInputMessaging": spec.blocked_input,
        "blockedOutputsMessaging": spec.blocked_output,
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
