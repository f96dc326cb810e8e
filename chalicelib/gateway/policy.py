"""The call policy: what the core hands the gateway with a conversation, and what the gateway reports back.

The core (``chalicelib/service/policy.py``) builds a ``CallPolicy`` from the key, its owner and
the catalog: the ordered upstream ``Target``s (the model asked for, then its fallbacks the key
may use), the guardrail each attempt carries, and the retry rules. The gateway walks it
(``resilience.py``) and reports the ``Target`` that served; the bill uses that target's model
and prices, and names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.catalog import ModelEntry
from chalicelib.gateway.providers import Upstream, upstream_of
from chalicelib.shared.guardrails import Guardrail


@dataclass(frozen=True)
class Target:
    """One upstream a call can be sent to: a catalog model (its id, prices, provider), where, and its guardrail."""

    model: ModelEntry
    #: The region a Bedrock call goes to (the model's own, or the stack's); None for other providers.
    region: str | None = None
    guardrail: Guardrail | None = None

    @property
    def upstream(self) -> Upstream:
        """How the call is made (``providers.py``)."""
        return upstream_of(self.model, self.region)

    @property
    def key(self) -> str:
        """What a cooldown is kept under: the upstream model in its region (or at its base URL)."""
        return f"{self.model.litellm_model}@{self.region or self.model.base_url}"

    @property
    def served_by(self) -> str:
        """What the ledger records as having served a call: LiteLLM's model string (``served_region``: where)."""
        return self.upstream.served_by

    def describe(self) -> str:
        """A person's view of the target (the ``x-pennyworth-served-by`` header)."""
        where = f"in {self.region}" if self.region else f"at {self.model.base_url}"
        return f"{self.model.id} ({self.model.model_id} {where})"


@dataclass(frozen=True)
class RetryRules:
    """How many attempts each target gets for transient faults (the AWS SDKs' standard mode: 3)."""

    max_attempts: int = 3


@dataclass(frozen=True)
class CallPolicy:
    """How one call reaches the upstream: its targets in order, their guardrails, the retry rules."""

    targets: tuple[Target, ...]
    retries: RetryRules = RetryRules()

    @property
    def primary(self) -> Target:
        """The target of the model the caller asked for."""
        return self.targets[0]

    @property
    def guarded(self) -> bool:
        """True when any target carries a guardrail (admission reserves its charges)."""
        return any(target.guardrail is not None for target in self.targets)
