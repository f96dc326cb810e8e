"""The model entry: the one schema of a catalog model, what an admin sends, stores and reads back.

A model entry says what callers send (``alias``, and other ``aliases`` such as the ids
Claude Code sends), where it is served (``provider`` and its ``model_id``; a Bedrock
``region`` or inference profile, or an OpenAI-compatible ``base_url`` and the SSM
parameter holding its key), what it can do (``capabilities``), what it costs (versioned
``price_versions``), whether it is ``enabled``, and a ``note``.

Three forms, one module:

* an admin's request body (``new_document``, ``updated_document``): every bad value is an
  ``InvalidRequest`` naming its field;
* the stored document (``entry_from_document``): read back from DynamoDB, where anyone with
  console access can edit it, so it is checked again and an unreadable one raises
  ``CatalogError`` (that model goes out of service, nothing else);
* ``ModelEntry``: what the request path uses.

A model may also list ``fallbacks`` (catalog aliases tried in order when it is throttled or
failing; checked against the whole catalog by ``catalog.check_fallbacks``) and carry a
``guardrail`` (``{"id", "version"}``, one of the stack's ``GuardrailIds``) every call to it
carries (docs/resilience.md).
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.catalog.prices import (
    BEGINNING,
    PriceVersion,
    litellm_version,
    map_entry,
    parse_prices,
    price_versions_from_document,
    prices_from_map,
    version_in_force,
    zero_prices,
)
from chalicelib.errors import InvalidRequest
from chalicelib.shared.dates import isoformat
from chalicelib.shared.guardrails import Guardrail, parse_guardrail
from chalicelib.shared.money import Prices
from chalicelib.shared.text import check_plain_text

#: Where a model can be served: the provider adapters of ``chalicelib/gateway/providers.py``.
PROVIDERS = ("bedrock", "openai")
MODES = ("chat", "embedding")
CAPABILITIES = ("tools", "vision", "reasoning", "prompt_caching", "max_output_tokens", "context_window")
#: What an admin may send when adding a model (``prices``/``free``/``force``/``effective_from`` shape its prices).
FIELDS = (
    "alias",
    "aliases",
    "provider",
    "model_id",
    "region",
    "base_url",
    "api_key_parameter",
    "mode",
    "owned_by",
    "created",
    "capabilities",
    "dimensions",
    "default_dimensions",
    "prices",
    "free",
    "enabled",
    "note",
    "fallbacks",
    "guardrail",
)
#: What only shapes a change, never stored as such.
CHANGE_FLAGS = ("force", "effective_from", "prices_from_map")
#: Fields that cannot change once a model exists (remove it and add it again instead).
FIXED_FIELDS = ("alias", "mode")
MAX_ALIASES = 16
MAX_NOTE = 500
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,255}")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]")
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_PARAMETER = re.compile(r"(/[A-Za-z0-9_.-]+)+")
#: Geography prefixes of Bedrock cross-region inference profile ids (``us.anthropic.…``).
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "jp", "au", "ca", "us-gov")
#: The most targets a call walks (the model asked for and its fallbacks, transitively).
MAX_TARGETS = 8


class CatalogError(ValueError):
    """A catalog (a file, or a stored item) that cannot be read: the message says what is wrong."""


@dataclass(frozen=True)
class Rules:
    """What this deployment lets an admin add: the stack's template parameters, as settings.

    ``allowed_bedrock_models`` are model-id patterns (``anthropic.*``) the functions' IAM role
    may invoke; a Bedrock model outside them would be refused by AWS, so it is refused here
    first. ``provider_key_prefix`` is the SSM path under which provider keys may live.
    """

    region: str
    allowed_bedrock_models: tuple[str, ...] = ("*",)
    provider_key_prefix: str = "/"
    #: The guardrail ids the stack may apply (``GuardrailIds``); None: not checked (a seed, a test).
    guardrails: tuple[str, ...] | None = None

    def allows_bedrock(self, model_id: str) -> bool:
        """True when the role may invoke ``model_id`` (its base id, without a profile's geography)."""
        base = bedrock_base_id(model_id)
        return any(fnmatch.fnmatchcase(base, pattern) for pattern in self.allowed_bedrock_models)


@dataclass(frozen=True)
class ModelEntry:
    """One model a key may call, as the request path sees it."""

    id: str
    provider: str
    model_id: str
    mode: str
    owned_by: str
    created: int
    price_versions: tuple[PriceVersion, ...]
    input_modalities: tuple[str, ...]
    supports_tools: bool
    supports_reasoning: bool
    max_output_tokens: int | None
    dimensions: tuple[int, ...]
    default_dimensions: int | None
    free: bool
    #: Other names clients may send for this model (e.g. the Anthropic model ids Claude Code sends).
    aliases: tuple[str, ...] = ()
    region: str | None = None
    base_url: str | None = None
    api_key_parameter: str | None = None
    supports_prompt_caching: bool = False
    context_window: int | None = None
    enabled: bool = True
    note: str = ""
    revision: int = 0
    updated_at: str | None = None
    updated_by: str | None = None
    #: Catalog aliases tried in order when this model is throttled or failing.
    fallbacks: tuple[str, ...] = ()
    #: The guardrail every call to this model carries (one an admin put on a key, or the key's team's, wins).
    guardrail: Guardrail | None = None
    #: The stored document this entry was read from (what the admin API shows).
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def bedrock_model_id(self) -> str:
        """The Bedrock model or inference-profile id ("" for a model served elsewhere)."""
        return self.model_id if self.provider == "bedrock" else ""

    @property
    def base_model_id(self) -> str:
        """The upstream model without a cross-region profile's geography: the same model, whatever the geography."""
        return bedrock_base_id(self.model_id) if self.provider == "bedrock" else f"{self.base_url}/{self.model_id}"

    @property
    def litellm_model(self) -> str:
        """The model string LiteLLM routes on (Bedrock's Converse for chat)."""
        if self.provider == "openai":
            return f"openai/{self.model_id}"
        if self.mode == "chat":
            return f"bedrock/converse/{self.model_id}"
        return f"bedrock/{self.model_id}"

    @property
    def prices(self) -> Prices:
        """The prices in force now (``price_at`` for another moment)."""
        return self.price_at(isoformat_now()).prices

    def price_at(self, moment: str) -> PriceVersion:
        """The price version in force at ``moment`` (ISO 8601 UTC)."""
        return version_in_force(self.price_versions, moment)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``model`` object."""
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by}


def isoformat_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def bedrock_base_id(model_id: str) -> str:
    """A Bedrock id without its cross-region profile's geography (``us.anthropic.x`` → ``anthropic.x``)."""
    prefix, dot, rest = model_id.partition(".")
    return rest if dot and prefix in PROFILE_PREFIXES else model_id


# -- the stored document → ModelEntry --------------------------------------------------------------


def entry_from_document(document: Mapping[str, Any]) -> ModelEntry:
    """The entry a stored (or seed) document describes.

    Raises
    ------
    CatalogError
        The document is not a valid model (hand-edited, truncated, of a newer schema).
    """
    try:
        alias = _name(document.get("alias"), "alias")
        fields = _checked(document, partial=False)
        versions = price_versions_from_document(document.get("price_versions"))
        revision = document.get("revision", 0)
        if isinstance(revision, Decimal):
            revision = int(revision)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise InvalidRequest("revision must be a whole number.", param="revision")
    except InvalidRequest as exc:
        name = document.get("alias") if isinstance(document.get("alias"), str) else "?"
        raise CatalogError(f"model {name!r}: {exc.message}") from None
    capabilities = fields["capabilities"]
    return ModelEntry(
        id=alias,
        provider=fields["provider"],
        model_id=fields["model_id"],
        mode=fields["mode"],
        owned_by=fields.get("owned_by") or _owner_of(fields["provider"], fields["model_id"]),
        created=fields.get("created") or 0,
        price_versions=versions,
        input_modalities=("text", "image") if capabilities.get("vision") else ("text",),
        supports_tools=bool(capabilities.get("tools", fields["mode"] == "chat")),
        supports_reasoning=bool(capabilities.get("reasoning", False)),
        max_output_tokens=capabilities.get("max_output_tokens"),
        dimensions=tuple(fields.get("dimensions") or ()),
        default_dimensions=fields.get("default_dimensions"),
        free=bool(fields.get("free", False)),
        aliases=tuple(fields.get("aliases") or ()),
        region=fields.get("region"),
        base_url=fields.get("base_url"),
        api_key_parameter=fields.get("api_key_parameter"),
        supports_prompt_caching=bool(capabilities.get("prompt_caching", False)),
        context_window=capabilities.get("context_window"),
        enabled=bool(fields.get("enabled", True)),
        note=fields.get("note") or "",
        fallbacks=tuple(fields.get("fallbacks") or ()),
        guardrail=parse_guardrail(fields.get("guardrail")),
        revision=revision,
        updated_at=document.get("updated_at") if isinstance(document.get("updated_at"), str) else None,
        updated_by=document.get("updated_by") if isinstance(document.get("updated_by"), str) else None,
        document=dict(document),
    )


# -- an admin's request → the stored document ----------------------------------------------------


def new_document(
    body: Mapping[str, Any],
    *,
    rules: Rules,
    price_map: Callable[[], Mapping[str, Any]],
    now: str,
    actor: str | None,
) -> dict[str, Any]:
    """The stored document of a model an admin adds (prices and capabilities completed from the map).

    Raises
    ------
    InvalidRequest
        A bad field (``param`` names it), a Bedrock model outside the stack's allowed families,
        a provider key outside its SSM prefix, or a chat or embedding model with no price
        anywhere (nothing is ever billed at $0 by accident: set ``prices`` or ``free``).
    """
    unknown = sorted(set(body) - set(FIELDS) - set(CHANGE_FLAGS))
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}'. Allowed: {', '.join(sorted((*FIELDS, *CHANGE_FLAGS)))}.", param=unknown[0]
        )
    for required in ("alias", "provider", "model_id"):
        if body.get(required) in (None, ""):
            raise InvalidRequest(f"{required} is required.", param=required)
    fields = _checked(body, partial=False)
    _check_rules(fields, rules)
    known = _map_prices_entry(fields, rules, price_map)
    capabilities = _capabilities_with_defaults(fields, known)
    _check_capability_limits(capabilities)
    document: dict[str, Any] = {
        "alias": fields["alias"],
        "aliases": fields.get("aliases") or [],
        "provider": fields["provider"],
        "model_id": fields["model_id"],
        "mode": fields["mode"],
        "owned_by": fields.get("owned_by") or _owner_of(fields["provider"], fields["model_id"]),
        "created": fields.get("created") or int(time.time()),
        "capabilities": capabilities,
        "free": bool(fields.get("free", False)),
        "enabled": fields.get("enabled", True),
        "note": fields.get("note") or "",
    }
    for name in ("region", "base_url", "api_key_parameter", "default_dimensions", "guardrail"):
        if fields.get(name) is not None:
            document[name] = fields[name]
    if fields.get("fallbacks"):
        document["fallbacks"] = fields["fallbacks"]
    if fields.get("dimensions"):
        document["dimensions"] = fields["dimensions"]
        document.setdefault("default_dimensions", fields["dimensions"][-1])
    first = _first_prices(fields, body, known)
    document["price_versions"] = [
        PriceVersion(1, BEGINNING, first[0], first[1], set_by=actor, set_at=now).to_document()
    ]
    check_document(document)
    return document


def updated_document(
    current: Mapping[str, Any],
    body: Mapping[str, Any],
    *,
    rules: Rules,
    price_map: Callable[[], Mapping[str, Any]],
    now: str,
    actor: str | None,
) -> dict[str, Any]:
    """``current`` (a stored document) with an admin's changes; new prices become a new version.

    ``effective_from`` (default: now) says when new prices take effect; it may be in the future
    (a scheduled change), never in the past (a bill already made would change meaning).

    Raises
    ------
    InvalidRequest
        A bad field, an attempt to change ``alias`` or ``mode``, an ``effective_from`` in the
        past or before the latest version, or a change that leaves the model inconsistent.
    """
    unknown = sorted(set(body) - set(FIELDS) - set(CHANGE_FLAGS))
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}'. Allowed: {', '.join(sorted((*FIELDS, *CHANGE_FLAGS)))}.", param=unknown[0]
        )
    for name in FIXED_FIELDS:
        if name in body and body[name] != current.get(name):
            raise InvalidRequest(
                f"{name} cannot change: remove the model and add it again under the new {name}.", param=name
            )
    changes = _checked({**body, "mode": current.get("mode", "chat")}, partial=True)
    merged: dict[str, Any] = {key: value for key, value in current.items()}
    for name in FIELDS:
        if name in ("prices", "free") or name not in body:
            continue
        if name == "capabilities":
            # Capabilities change one by one; null removes one (max_output_tokens: no limit known).
            combined = {**(current.get("capabilities") or {}), **changes["capabilities"]}
            for capability, value in (body["capabilities"] or {}).items():
                if value is None:
                    combined.pop(capability, None)
            merged["capabilities"] = combined
        elif changes.get(name) is None:
            merged.pop(name, None)  # null clears an optional field (region, base_url, note, …)
        else:
            merged[name] = changes[name]
    fields = _checked(merged, partial=False)
    _check_rules(fields, rules)
    _check_capability_limits(fields["capabilities"])
    versions, unreadable = _stored_versions(current.get("price_versions"))
    new_prices: tuple[Prices, str] | None = None
    if "prices" in body or body.get("free") is True or body.get("prices_from_map"):
        known = _map_prices_entry(fields, rules, price_map) if body.get("prices_from_map") else {}
        new_prices = _first_prices({**fields, "free": body.get("free", False)}, body, known)
        merged["free"] = bool(body.get("free", False))
    elif body.get("free") is False and current.get("free"):
        raise InvalidRequest("A free model needs prices to stop being free: send prices too.", param="prices")
    if new_prices is None and unreadable is not None:
        raise InvalidRequest(
            f"This model's stored prices cannot be read ({unreadable}): send prices, which replace them.",
            param="prices",
        )
    if new_prices is not None:
        effective = effective_from(body.get("effective_from"), now, versions)
        # Numbers keep rising past unreadable versions, so no ledger entry's version is reused.
        # (Every model had a version 1: an unreadable list is taken to have held at least that.)
        floor = max(unreadable_count(current), 1) if unreadable is not None else 0
        number = max([int(v.get("version", 0)) for v in versions] + [floor]) + 1
        if unreadable is not None:
            effective = BEGINNING if not versions else effective
        versions.append(
            PriceVersion(number, effective, new_prices[0], new_prices[1], set_by=actor, set_at=now).to_document()
        )
    elif "effective_from" in body:
        raise InvalidRequest("effective_from goes with new prices: send prices too.", param="effective_from")
    merged["price_versions"] = versions
    check_document(merged)
    return merged


def _stored_versions(raw: Any) -> tuple[list[dict[str, Any]], str | None]:
    """A stored model's price versions, re-read; none and the reason when they cannot be read."""
    try:
        return [v.to_document() for v in price_versions_from_document(raw)], None
    except InvalidRequest as exc:
        return [], exc.message


def unreadable_count(document: Mapping[str, Any]) -> int:
    """How many versions a stored list held, readable or not (so new numbers never repeat old ones)."""
    raw = document.get("price_versions")
    return len(raw) if isinstance(raw, list) else 0


def check_document(document: Mapping[str, Any]) -> ModelEntry:
    """The entry a document to be stored describes, every field checked.

    Raises
    ------
    InvalidRequest
        What ``entry_from_document`` would find wrong, naming the field.
    """
    try:
        return entry_from_document(document)
    except CatalogError as exc:
        message = str(exc)
        raise InvalidRequest(message.split(": ", 1)[-1], param=_param_in(message)) from None


def _param_in(message: str) -> str | None:
    found = re.search(r"\b(price_versions\[[0-9]+\][\w.\[\]]*|[a-z_]+(?:\.[a-z_0-9]+)*)\b", message.split(": ", 1)[-1])
    return found.group(1) if found else None


def effective_from(raw: Any, now: str, versions: Sequence[Mapping[str, Any]]) -> str:
    if raw is None:
        moment = now
    else:
        from chalicelib.shared.dates import parse_time

        try:
            moment = isoformat(parse_time(str(raw).strip())) if isinstance(raw, str) else ""
        except ValueError:
            moment = ""
        if not moment:
            raise InvalidRequest(
                f"effective_from must be an ISO 8601 time such as 2027-01-01T00:00:00Z; got {raw!r}.",
                param="effective_from",
            )
        if moment < now:
            raise InvalidRequest(
                "effective_from is in the past: a price change applies from now on or from a later time, "
                "never to requests already billed.",
                param="effective_from",
            )
    latest = versions[-1].get("effective_from") if versions else None
    if isinstance(latest, str) and moment < latest:
        raise InvalidRequest(
            f"effective_from is before the latest price version's ({latest}); prices change in order.",
            param="effective_from",
        )
    return moment


def _first_prices(fields: Mapping[str, Any], body: Mapping[str, Any], known: Mapping[str, Any]) -> tuple[Prices, str]:
    """The prices a new version holds, and where they came from."""
    if fields.get("free"):
        if body.get("prices") is not None:
            raise InvalidRequest("A free model has no prices: send free or prices, not both.", param="prices")
        return zero_prices(), "free"
    if body.get("prices") is not None:
        prices = parse_prices(body["prices"], force=bool(body.get("force")))
        source = "admin"
    else:
        found = prices_from_map(known) if known else None
        if found is None:
            raise InvalidRequest(
                f"The model '{fields['model_id']}' has no price in LiteLLM's price map: set prices "
                '(USD per million tokens, e.g. {"input": "0.50", "output": "1.50"}) or "free": true. '
                "Nothing is billed at $0 by accident.",
                param="prices",
                code="price_required",
            )
        prices, source = found, f"litellm {litellm_version()}"
    if fields.get("mode", "chat") == "chat" and "prices" in body and (body["prices"] or {}).get("output") is None:
        raise InvalidRequest("prices.output is required for a chat model.", param="prices.output")
    return prices, source


def _map_prices_entry(
    fields: Mapping[str, Any], rules: Rules, price_map: Callable[[], Mapping[str, Any]]
) -> Mapping[str, Any]:
    model_id = fields["model_id"]
    if fields["provider"] == "bedrock":
        region = fields.get("region") or rules.region
        names = [f"bedrock/{region}/{model_id}", model_id, f"bedrock/{model_id}"]
    else:
        names = [model_id, f"openai/{model_id}"]
    return map_entry(price_map(), names)


def _capabilities_with_defaults(fields: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    given = fields.get("capabilities") or {}
    chat = fields["mode"] == "chat"
    defaults = {
        "tools": bool(known.get("supports_function_calling", True)) if chat else False,
        "vision": bool(known.get("supports_vision", False)),
        "reasoning": bool(known.get("supports_reasoning", False)),
        "prompt_caching": bool(known.get("supports_prompt_caching", False)),
        "max_output_tokens": _positive_or_none(known.get("max_output_tokens")) if chat else None,
        "context_window": _positive_or_none(known.get("max_input_tokens")),
    }
    merged = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    return {k: v for k, v in merged.items() if v is not None}


def _positive_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _check_capability_limits(capabilities: Mapping[str, Any]) -> None:
    output, window = capabilities.get("max_output_tokens"), capabilities.get("context_window")
    if output is not None and window is not None and window < output:
        raise InvalidRequest(
            f"capabilities.context_window ({window}) is smaller than capabilities.max_output_tokens ({output}): "
            "a model's context holds its output.",
            param="capabilities.context_window",
        )


def _check_rules(fields: Mapping[str, Any], rules: Rules) -> None:
    check_guardrail(parse_guardrail(fields.get("guardrail")), rules.guardrails)
    provider = fields["provider"]
    if provider == "bedrock":
        for name in ("base_url", "api_key_parameter"):
            if fields.get(name) is not None:
                raise InvalidRequest(
                    f"{name} is for OpenAI-compatible models; Bedrock uses the stack's role.", param=name
                )
        if not rules.allows_bedrock(fields["model_id"]):
            raise InvalidRequest(
                f"The Bedrock model '{bedrock_base_id(fields['model_id'])}' is outside the models this "
                f"stack may invoke (AllowedBedrockModels: {', '.join(rules.allowed_bedrock_models)}). Its IAM "
                "role would be refused by Bedrock: deploy the stack with a wider AllowedBedrockModels parameter "
                "to add it.",
                param="model_id",
                code="model_not_allowed_by_stack",
            )
        return
    if fields.get("region") is not None:
        raise InvalidRequest("region is for Bedrock models; an OpenAI-compatible model has a base_url.", param="region")
    if fields.get("base_url") is None:
        raise InvalidRequest(
            "base_url is required for an OpenAI-compatible model (e.g. https://api.openai.com/v1).", param="base_url"
        )
    parameter = fields.get("api_key_parameter")
    if parameter is not None and not parameter.startswith(rules.provider_key_prefix):
        raise InvalidRequest(
            f"api_key_parameter must be an SSM parameter under {rules.provider_key_prefix} (the stack's "
            "ProviderKeyPrefix): its role may read nothing else.",
            param="api_key_parameter",
        )


def check_guardrail(guardrail: Guardrail | None, allowed: tuple[str, ...] | None, where: str = "guardrail") -> None:
    """Refuse a guardrail the stack may not apply (outside its ``GuardrailIds``).

    Raises
    ------
    InvalidRequest
        ``guardrail_not_allowed``: the stack's role would be refused ``bedrock:ApplyGuardrail``.
    """
    if guardrail is None or allowed is None or guardrail.guardrail_id in allowed:
        return
    listed = ", ".join(allowed) if allowed else "none"
    raise InvalidRequest(
        f"{where}: '{guardrail.guardrail_id}' is not one of the guardrails this stack may apply ({listed}). Add it "
        "to the stack's GuardrailIds parameter (which grants bedrock:ApplyGuardrail on it) and deploy first.",
        param="guardrail",
        code="guardrail_not_allowed",
    )


def _owner_of(provider: str, model_id: str) -> str:
    if provider == "bedrock":
        base = bedrock_base_id(model_id)
        return base.split(".")[0] if "." in base else "aws"
    return "openai-compatible"


# -- field by field ---------------------------------------------------------------------------


def _checked(source: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The fields of ``source`` parsed; without ``partial``, the required ones must be there."""
    out: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        if name in source:
            out[name] = parse(source[name], name)
    if not partial:
        for name in ("alias", "provider", "model_id"):
            if out.get(name) is None:
                raise InvalidRequest(f"{name} is required.", param=name)
        out.setdefault("mode", "chat")
        out.setdefault("capabilities", {})
        if out["mode"] != "embedding" and (out.get("dimensions") or out.get("default_dimensions") is not None):
            raise InvalidRequest("dimensions are for embedding models.", param="dimensions")
        dimensions, default = out.get("dimensions"), out.get("default_dimensions")
        if default is not None and dimensions and default not in dimensions:
            raise InvalidRequest("default_dimensions must be one of dimensions.", param="default_dimensions")
        names = [out["alias"], *(out.get("aliases") or [])]
        if len(set(names)) != len(names):
            raise InvalidRequest("aliases must differ from each other and from alias.", param="aliases")
    return out


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{param} must be a non-empty name.", param=param)
    check_plain_text(value, param)
    if not _NAME.fullmatch(value):
        raise InvalidRequest(
            f"{param} must be 1-128 characters: letters, digits and . _ : @ / + - (starting with a letter or "
            f"digit); got {value!r}.",
            param=param,
        )
    return value


def _aliases(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ALIASES:
        raise InvalidRequest(f"{param} must be a list of at most {MAX_ALIASES} names.", param=param)
    return [_name(item, f"{param}[{index}]") for index, item in enumerate(value)]


def _provider(value: Any, param: str) -> str:
    if value not in PROVIDERS:
        raise InvalidRequest(
            f"{param} must be one of {', '.join(PROVIDERS)} (bedrock: Amazon Bedrock through the stack's role; "
            f"openai: any OpenAI-compatible API, e.g. OpenAI, vLLM, Ollama); got {value!r}.",
            param=param,
            code="unknown_provider",
        )
    return value


def _model_id(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be the provider's model id.", param=param)
    check_plain_text(value, param)
    if not _MODEL_ID.fullmatch(value):
        raise InvalidRequest(f"{param} must be the provider's model id (no spaces); got {value!r}.", param=param)
    return value


def _optional(pattern: re.Pattern[str], what: str) -> Callable[[Any, str], str | None]:
    def parse(value: Any, param: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRequest(f"{param} must be {what}.", param=param)
        check_plain_text(value, param)
        if not pattern.fullmatch(value):
            raise InvalidRequest(f"{param} must be {what}; got {value!r}.", param=param)
        return value.rstrip("/") if pattern is _URL else value

    return parse


def _mode(value: Any, param: str) -> str:
    if value not in MODES:
        raise InvalidRequest(f"{param} must be one of {', '.join(MODES)}; got {value!r}.", param=param)
    return value


def _text(limit: int) -> Callable[[Any, str], str | None]:
    def parse(value: Any, param: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidRequest(f"{param} must be a string of at most {limit} characters.", param=param)
        return check_plain_text(value, param)

    return parse


def _whole(most: int, *, minimum: int = 1) -> Callable[[Any, str], int | None]:
    def parse(value: Any, param: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= most:
            raise InvalidRequest(
                f"{param} must be a whole number from {minimum} to {most}; got {value!r}.", param=param
            )
        return value

    return parse


def _flag(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{param} must be true or false.", param=param)
    return value


def _capabilities(value: Any, param: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{param} must be an object: {', '.join(CAPABILITIES)}.", param=param)
    unknown = sorted(set(value) - set(CAPABILITIES))
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{param}.{unknown[0]}'. Allowed: {', '.join(CAPABILITIES)}.", param=f"{param}.{unknown[0]}"
        )
    out: dict[str, Any] = {}
    for name in ("tools", "vision", "reasoning", "prompt_caching"):
        if value.get(name) is not None:
            out[name] = _flag(value[name], f"{param}.{name}")
    for name in ("max_output_tokens", "context_window"):
        if name in value:
            out[name] = _whole(100_000_000)(value[name], f"{param}.{name}")
    return out


def _dimensions(value: Any, param: str) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 16:
        raise InvalidRequest(f"{param} must be a list of at most 16 sizes.", param=param)
    return [_whole(100_000)(item, f"{param}[{index}]") for index, item in enumerate(value)]  # type: ignore[misc]


def _fallbacks(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) >= MAX_TARGETS:
        raise InvalidRequest(
            f"{param} must be a list of at most {MAX_TARGETS - 1} catalog aliases, in the order they are tried.",
            param=param,
        )
    names = [_name(item, f"{param}[{index}]") for index, item in enumerate(value)]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"{param} names a model twice.", param=param)
    return names


def _guardrail(value: Any, param: str) -> dict[str, str] | None:
    guardrail = parse_guardrail(value, param)
    return guardrail.to_json() if guardrail is not None else None


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "alias": _name,
    "aliases": _aliases,
    "provider": _provider,
    "model_id": _model_id,
    "region": _optional(_REGION, "an AWS region such as us-east-1"),
    "base_url": _optional(
        _URL, "an http(s) URL without query, fragment or credentials, e.g. https://api.openai.com/v1"
    ),
    "api_key_parameter": _optional(_PARAMETER, "an SSM parameter name starting with /"),
    "mode": _mode,
    "owned_by": _text(64),
    "created": _whole(4_102_444_800, minimum=0),
    "capabilities": _capabilities,
    "dimensions": _dimensions,
    "default_dimensions": _whole(100_000),
    "free": _flag,
    "enabled": _flag,
    "note": _text(MAX_NOTE),
    "fallbacks": _fallbacks,
    "guardrail": _guardrail,
}
