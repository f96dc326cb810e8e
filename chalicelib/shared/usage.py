"""Usage: the tokens a call used and the bill it produced, as every layer passes them on.

``TokenUsage`` counts tokens the way Bedrock bills them; ``UsageEntry`` is one
billed call: what the ledger stores (``chalicelib/accounting/ledger.py``), what
a turn's last event carries, what every protocol renders its cost from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as Bedrock bills them: ``input_tokens`` excludes cache reads and writes.

    ``cache_write_tokens`` counts every prompt-cache write; ``cache_write_1h_tokens`` is the part
    of them written with a 1-hour TTL (Bedrock's ``cacheDetails``), billed at its own price.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's ``prompt_tokens``: every input token, cached or not."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class UsageEntry:
    """One billed request, as the ledger stores it."""

    request_id: str
    key_id: str
    owner_sub: str
    model: str
    bedrock_model_id: str
    operation: str
    usage: TokenUsage
    cost: Decimal
    latency_ms: int
    status: str
    timestamp: str
    #: The team the request was admitted under (its key was charged to it then), if any.
    team_id: str | None = None
    #: What admission reserved, by budget scope name (``KEY#…``, ``OWNER#…``, ``TEAM#…``; see
    #: ``chalicelib/shared/scopes.py``): given back there as this entry is aggregated.
    reserved: dict[str, Decimal] = field(default_factory=dict)
    #: The month admission reserved in (``YYYY-MM``): its reservation is given back there, whenever
    #: the entry is billed. Empty: the entry's own month (entries from before this field existed).
    budget_month: str = ""
    #: The rate-limit window admission counted ``counted_tokens`` in (epoch seconds), if any.
    rate_window: int | None = None
    counted_tokens: int = 0
    #: True when ``cost`` was capped at the reservation; ``usage_cost`` is then what the usage costs.
    capped: bool = False
    usage_cost: Decimal | None = None
    #: The client protocol the request came in by (``openai``, ``responses``, ``anthropic``, ``mcp``);
    #: empty on entries from before it was recorded.
    protocol: str = ""
    #: Which of the model's price versions billed it (0: an entry from before prices were versioned).
    price_version: int = 0
    #: What served the call: the LiteLLM model string of the upstream target (``bedrock/converse/…``,
    #: ``openai/…``); a fallback's when one served. Empty: an entry from before it was recorded
    #: (``bedrock_model_id`` says it).
    served_by: str = ""
    #: The AWS region the serving Bedrock target was called in ("" for other providers and older entries).
    served_region: str = ""
    #: The model the caller asked for, when another one served (a fallback); ``model`` is the one that served.
    requested_model: str = ""
    #: Guardrail text units Bedrock reported, by usage counter, and what they cost (part of ``cost``).
    guardrail_units: dict[str, int] = field(default_factory=dict)
    guardrail_usd: Decimal = Decimal(0)
    #: Which version of the operator's guardrail prices billed ``guardrail_units`` (0: LiteLLM's map).
    guardrail_price_version: int = 0

    @property
    def day(self) -> str:
        return self.timestamp[:10]

    @property
    def month(self) -> str:
        return self.timestamp[:7]

    @property
    def reservation_month(self) -> str:
        """The month whose ``committed`` this entry's reservation and cost belong to."""
        return self.budget_month or self.month

    def reserved_on(self, scope: str) -> Decimal:
        """What admission reserved on one scope (by name) for this request; 0 when nothing."""
        return self.reserved.get(scope, Decimal(0))

    @property
    def most_reserved(self) -> Decimal:
        return max(self.reserved.values(), default=Decimal(0))

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (money as strings, never a float): the reconcile format."""
        data = asdict(self)
        for name in MONEY_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        data["reserved"] = {scope: str(amount) for scope, amount in self.reserved.items()}
        if data["team_id"] is None:
            del data["team_id"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageEntry:
        """Inverse of ``to_json`` (trusting its input: ``reconcile.parse_line`` validates first)."""
        values = dict(data)
        values["usage"] = TokenUsage(**values["usage"])
        for name in MONEY_FIELDS:
            if values.get(name) is not None:
                values[name] = Decimal(str(values[name]))
        values["reserved"] = {scope: Decimal(str(amount)) for scope, amount in (values.get("reserved") or {}).items()}
        return cls(**values)

    @property
    def fell_back(self) -> bool:
        """True when another model than the one asked for served."""
        return bool(self.requested_model) and self.requested_model != self.model

    def served_fields(self) -> dict[str, Any]:
        """What an answer's final usage says besides the cost: who served it, and a guardrail's charge.

        ``served_model`` is the catalog model that answered (a fallback, when it says another name
        than the one asked for) and ``served_by`` the upstream (its LiteLLM model string, and
        ``@<region>`` for Bedrock);
        ``guardrail_text_units`` and ``guardrail_cost_usd`` only when a guardrail assessed the call.
        """
        out: dict[str, Any] = {"served_model": self.model}
        if self.served_by:
            out["served_by"] = f"{self.served_by}@{self.served_region}" if self.served_region else self.served_by
        if self.guardrail_units:
            out["guardrail_text_units"] = sum(self.guardrail_units.values())
            out["guardrail_cost_usd"] = format(self.guardrail_usd.normalize(), "f") if self.guardrail_usd else "0"
        return out


#: The money fields of ``UsageEntry`` (written as strings in JSON, never floats).
MONEY_FIELDS = ("cost", "usage_cost", "guardrail_usd")
