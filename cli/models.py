"""``pennyworth models …``: the live model catalog (list, show, add, update, enable, disable, remove, test, audit),
and the guardrail prices (``models guardrail-prices``).

Prices are typed as USD per million tokens and sent as strings, so they stay exact. Every
command takes ``--json``; a table is the default.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

from cli import output
from cli.errors import CliError
from cli.keys import NONE_WORDS, guardrail_body

RATES = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
_TIER = re.compile(r"^([0-9]+)(k?):(.+)$")


@click.group()
def models() -> None:
    """The model catalog: what callers may use, where it is served, what it costs (admins change it)."""


# Options shared by add and update.


def _model_options(command: Any) -> Any:
    options = [
        click.option("--provider", type=click.Choice(["bedrock", "openai"]), help="Where it is served."),
        click.option("--model-id", metavar="ID", help="The provider's model id (Bedrock: model or profile id)."),
        click.option(
            "--alias-name",
            "aliases",
            multiple=True,
            metavar="NAME",
            help="Another name callers may send (repeat; e.g. the id Claude Code sends).",
        ),  # fmt: skip
        click.option(
            "--region", metavar="REGION", help='Bedrock: region to call it in (default: the stack\'s; "none").'
        ),
        click.option("--base-url", metavar="URL", help="OpenAI-compatible: the API's base URL (…/v1)."),
        click.option(
            "--api-key-parameter",
            metavar="NAME",
            help="OpenAI-compatible: the SSM SecureString holding its API key (under ProviderKeyPrefix).",
        ),  # fmt: skip
        click.option("--mode", type=click.Choice(["chat", "embedding"]), help="chat (default) or embedding."),
        click.option("--input-price", metavar="USD", help="USD per million input tokens, e.g. 1.10."),
        click.option("--output-price", metavar="USD", help="USD per million output tokens."),
        click.option("--cache-read-price", metavar="USD", help="USD per million tokens read from the prompt cache."),
        click.option("--cache-write-price", metavar="USD", help="USD per million tokens written to the cache (5 min)."),
        click.option(
            "--cache-write-1h-price", metavar="USD", help="USD per million tokens written to the cache (1 h)."
        ),
        click.option(
            "--tier",
            "tiers",
            multiple=True,
            metavar="ABOVE:RATE=USD,…",
            help="Rates above an input-token threshold, e.g. 200k:input=6.6,output=24.75 (repeat).",
        ),  # fmt: skip
        click.option("--free", is_flag=True, default=None, help="Bill it at $0 on purpose."),
        click.option("--tools/--no-tools", default=None, help="It can call tools."),
        click.option("--vision/--no-vision", default=None, help="It takes images."),
        click.option("--reasoning/--no-reasoning", default=None, help="It can reason (thinking)."),
        click.option("--prompt-caching/--no-prompt-caching", default=None, help="It caches prompts."),
        click.option("--max-output-tokens", type=int, metavar="N", help="Most output tokens it can produce."),
        click.option("--context-window", type=int, metavar="N", help="Most tokens its context holds."),
        click.option("--dimensions", multiple=True, type=int, metavar="N", help="Embedding sizes it offers (repeat)."),
        click.option("--note", metavar="TEXT", help='A note for admins ("" clears it).'),
        click.option(
            "--fallback",
            "fallbacks",
            multiple=True,
            metavar="ALIAS",
            help='A model tried when this one is throttled or failing, in order (repeat; "none": no fallbacks).',
        ),
        click.option(
            "--guardrail",
            metavar="ID[:VERSION]",
            help='Bedrock guardrail every call carries, e.g. "abc123:1" (version DRAFT if left out; "none": clear).',
        ),
        click.option("--force", is_flag=True, help="Accept a price over $1,000 per million tokens."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _body(
    provider: str | None, model_id: str | None, aliases: tuple[str, ...], region: str | None, base_url: str | None,
    api_key_parameter: str | None, mode: str | None, input_price: str | None, output_price: str | None,
    cache_read_price: str | None, cache_write_price: str | None, cache_write_1h_price: str | None,
    tiers: tuple[str, ...], free: bool | None, tools: bool | None, vision: bool | None, reasoning: bool | None,
    prompt_caching: bool | None, max_output_tokens: int | None, context_window: int | None,
    dimensions: tuple[int, ...], note: str | None, force: bool, fallbacks: tuple[str, ...] = (),
    guardrail: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The JSON body for the options given (prices stay strings: exact money)."""
    body: dict[str, Any] = {}
    for name, value in (("provider", provider), ("model_id", model_id), ("mode", mode), ("base_url", base_url),
                        ("api_key_parameter", api_key_parameter)):  # fmt: skip
        if value is not None:
            body[name] = None if value.lower() == "none" and name != "model_id" else value
    if region is not None:
        body["region"] = None if region.lower() == "none" else region
    if aliases:
        body["aliases"] = [] if aliases == ("none",) else list(aliases)
    rates = {"input": input_price, "output": output_price, "cache_read": cache_read_price,
             "cache_write": cache_write_price, "cache_write_1h": cache_write_1h_price}  # fmt: skip
    prices: dict[str, Any] = {name: value for name, value in rates.items() if value is not None}
    if tiers:
        prices["tiers"] = [_tier(text) for text in tiers]
    if prices:
        body["prices"] = prices
    if free:
        body["free"] = True
    capabilities = {"tools": tools, "vision": vision, "reasoning": reasoning, "prompt_caching": prompt_caching,
                    "max_output_tokens": max_output_tokens, "context_window": context_window}  # fmt: skip
    capabilities = {k: v for k, v in capabilities.items() if v is not None}
    if capabilities:
        body["capabilities"] = capabilities
    if dimensions:
        body["dimensions"] = list(dimensions)
    if note is not None:
        body["note"] = note or None
    if fallbacks:
        body["fallbacks"] = None if fallbacks == ("none",) else list(fallbacks)
    if guardrail is not None:
        body["guardrail"] = None if guardrail.lower() in NONE_WORDS else guardrail_body(guardrail)
    if force:
        body["force"] = True
    return body


def _tier(text: str) -> dict[str, Any]:
    """``200k:input=6.6,output=24.75`` → ``{"above_input_tokens": 200000, "input": "6.6", …}``."""
    match = _TIER.match(text.strip())
    if match is None:
        raise click.BadParameter(f"expected ABOVE:RATE=USD,… such as 200k:input=6.6, got {text!r}", param_hint="--tier")
    tier: dict[str, Any] = {"above_input_tokens": int(match.group(1)) * (1000 if match.group(2) else 1)}
    for pair in match.group(3).split(","):
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in RATES:
            raise click.BadParameter(f"{pair!r}: rates are {', '.join(RATES)}", param_hint="--tier")
        tier[name] = value.strip()
    return tier


# Commands


@models.command(name="list")
@output.json_option
@click.pass_obj
def list_models(state: Any, json_: bool) -> None:
    """List the catalog's models with their prices (USD per million tokens); admins see disabled ones too."""
    output.show(state.client().get("/admin/models"), json_, lambda r: _models_table(r["data"]))


@models.command()
@click.argument("alias")
@output.json_option
@click.pass_obj
def show(state: Any, alias: str, json_: bool) -> None:
    """Show one model: where it is served, what it can do, and every version of its prices."""
    model = state.client().get(f"/admin/models/{quote(alias, safe='')}")
    if json_:
        output.emit_json(model)
        return
    output.print_table(_model_panel(model))
    if model.get("price_versions"):
        output.print_table(_versions_table(model["price_versions"]))


@models.command()
@click.argument("alias")
@_model_options
@click.option("--disabled", is_flag=True, help="Add it disabled (test it, then enable it).")
@output.json_option
@click.pass_obj
def add(state: Any, alias: str, disabled: bool, json_: bool, **options: Any) -> None:
    """Add a model; without prices it is priced from LiteLLM's pinned price map (admins)."""
    body = {"alias": alias, **_body(**options)}
    if disabled:
        body["enabled"] = False
    for required in ("provider", "model_id"):
        if required not in body:
            raise click.UsageError(f"--{required.replace('_', '-')} is required.")
    model = state.client().post("/admin/models", body)
    output.show(model, json_, _model_panel)
    if not json_:
        output.notice(f"Added {output.markup(alias)}: served at once here, by every warm function within 30 s.")


@models.command()
@click.argument("alias")
@_model_options
@click.option("--effective-from", metavar="TIME", help="New prices apply from this ISO 8601 time (default: now).")
@click.option("--prices-from-map", is_flag=True, help="New prices from LiteLLM's pinned price map.")
@output.json_option
@click.pass_obj
def update(
    state: Any, alias: str, effective_from: str | None, prices_from_map: bool, json_: bool, **options: Any
) -> None:
    """Change a model; new prices become a new price version, from --effective-from (admins)."""
    body = _body(**options)
    if effective_from is not None:
        body["effective_from"] = effective_from
    if prices_from_map:
        body["prices_from_map"] = True
    if not body:
        raise click.UsageError("Nothing to change: give at least one option (see --help).")
    model = state.client().patch(f"/admin/models/{quote(alias, safe='')}", body)
    output.show(model, json_, _model_panel)


def _switch(state: Any, alias: str, enabled: bool, json_: bool) -> None:
    model = state.client().patch(f"/admin/models/{quote(alias, safe='')}", {"enabled": enabled})
    output.show(model, json_, _model_panel)


@models.command()
@click.argument("alias")
@output.json_option
@click.pass_obj
def disable(state: Any, alias: str, json_: bool) -> None:
    """Stop serving a model (its keys and prices stay; enable brings it back)."""
    _switch(state, alias, False, json_)


@models.command()
@click.argument("alias")
@output.json_option
@click.pass_obj
def enable(state: Any, alias: str, json_: bool) -> None:
    """Serve a disabled model again."""
    _switch(state, alias, True, json_)


@models.command()
@click.argument("alias")
@click.option("--force", is_flag=True, help="Also take it out of the allowlists of the keys that name it (audited).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@output.json_option
@click.pass_obj
def remove(state: Any, alias: str, force: bool, yes: bool, json_: bool) -> None:
    """Remove a model; refused while keys allow it, unless --force (admins). Its price history is kept."""
    if not yes:
        click.confirm(f"Remove {alias}? Callers naming it will get 404 from now on", abort=True, err=True)
    path = f"/admin/models/{quote(alias, safe='')}" + ("?force=true" if force else "")
    result = state.client().request("DELETE", path)
    if json_:
        output.emit_json(result)
        return
    changed = result.get("keys_changed") or []
    output.notice(
        f"Removed {output.markup(alias)}."
        + (f" Taken out of {len(changed)} key(s): {output.markup(', '.join(changed))}." if changed else "")
    )


@models.command(name="test")
@click.argument("alias")
@click.option("--key", "key_id", metavar="KEY_ID", help="Bill the test to this key (default: your newest usable key).")
@output.json_option
@click.pass_obj
def test_model(state: Any, alias: str, key_id: str | None, json_: bool) -> None:
    """Call a model once through the whole path; report status, latency, tokens and the exact cost."""
    result = state.client().post(f"/admin/models/{quote(alias, safe='')}/test", {"key_id": key_id} if key_id else {})
    output.show(result, json_, _test_panel)
    if not result.get("ok"):
        raise CliError(f"The test of {alias} failed: {result.get('error', {}).get('message', 'no details')}")


@models.command()
@click.argument("alias")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Events per page.")
@output.json_option
@click.pass_obj
def audit(state: Any, alias: str, limit: int, json_: bool) -> None:
    """Show a model's audit log: who changed what, before and after."""
    path = f"/admin/models/{quote(alias, safe='')}/audit"
    events = [e for page in state.client().pages(path, {"limit": limit}) for e in page["data"]]
    output.show({"object": "list", "data": events}, json_, lambda r: _audit_table(r["data"]))


@models.command(name="guardrail-prices")
@click.option(
    "--set",
    "prices",
    multiple=True,
    metavar="COUNTER=USD",
    help='USD per 1,000 text units of one usage counter, e.g. contentPolicyUnits=0.10 (repeat; "none": drop it).',
)
@click.option("--effective-from", metavar="TIME", help="The new prices apply from this ISO 8601 time (default: now).")
@click.option("--force", is_flag=True, help="Allow a price over $100 per 1,000 text units.")
@output.json_option
@click.pass_obj
def guardrail_prices(state: Any, prices: tuple[str, ...], effective_from: str | None, force: bool, json_: bool) -> None:
    """Show Bedrock guardrail prices (LiteLLM's map unless an admin set them), or set them (--set; a new version)."""
    if not prices:
        if effective_from or force:
            raise click.UsageError("--effective-from and --force go with --set.")
        found = state.client().get("/admin/guardrail-prices")
    else:
        body: dict[str, Any] = {"per_1000_units": dict(_counter_price(p) for p in prices)}
        if effective_from:
            body["effective_from"] = effective_from
        if force:
            body["force"] = True
        found = state.client().patch("/admin/guardrail-prices", body)
    output.show(found, json_, _guardrail_prices_table)
    if not json_ and found.get("versions"):
        output.print_table(_guardrail_versions_table(found["versions"]))


def _counter_price(text: str) -> tuple[str, str | None]:
    counter, sep, price = text.partition("=")
    if not sep or not counter.strip():
        raise click.BadParameter(f"expected COUNTER=USD, got {text!r}", param_hint="--set")
    price = price.strip()
    return counter.strip(), None if price.lower() in NONE_WORDS else price


# Rendering


def money(value: Any) -> str | None:
    return None if value in (None, "") else f"${value}"


def _tiers_text(prices: dict[str, Any]) -> str | None:
    tiers = prices.get("tiers") or []
    return "; ".join(f">{t['above_input_tokens']}: ${t['input']} in / ${t['output']} out" for t in tiers) or None


def _models_table(data: list[dict[str, Any]]) -> output.TableData:
    rows = []
    for m in data:
        if m.get("status") == "unreadable":
            rows.append((m["id"], None, None, "UNREADABLE", None, None, None, None, None, m.get("error")))
            continue
        p = m["prices"]
        enabled = "yes" if m["enabled"] else "no"
        rows.append((
            m["id"], m["mode"], m.get("provider"), enabled, money(p["input"]), money(p["output"]),
            money(p["cache_read"]), money(p["cache_write"]), money(p["cache_write_1h"]), _tiers_text(p),
        ))  # fmt: skip
    return output.table(
        f"{len(data)} models (prices: USD per million tokens)",
        ["model", "mode", "provider", "enabled", "input", "output", "cache read", "write 5m", "write 1h", "tiers"],
        rows,
    )


def _model_panel(model: dict[str, Any]) -> output.TableData:
    p = model["prices"]
    capabilities = model.get("capabilities") or {}
    rows = [
        ("alias", model["id"]),
        ("other names", model.get("aliases") or None),
        ("mode", model["mode"]),
        ("enabled", "yes" if model["enabled"] else "no"),
        ("provider", model.get("provider")),
        ("model id", model.get("model_id")),
        ("LiteLLM model", model.get("litellm_model")),
        ("region", model.get("region")),
        ("base URL", model.get("base_url")),
        ("API key (SSM)", model.get("api_key_parameter")),
        (
            "capabilities",
            ", ".join(k for k in ("tools", "vision", "reasoning", "prompt_caching") if capabilities.get(k)) or None,
        ),
        (
            "max output / context",
            f"{capabilities.get('max_output_tokens') or '-'} / {capabilities.get('context_window') or '-'}",
        ),
        (
            "prices (USD/M)",
            f"in ${p['input']}, out ${p['output']}, cache read ${p['cache_read']}, "
            f"write 5m ${p['cache_write']}, write 1h ${p['cache_write_1h']}",
        ),  # fmt: skip
        ("tiers", _tiers_text(p)),
        ("price version", f"{p['version']} (from {_since(p['effective_from'])}, {p['source']})"),
        ("note", model.get("note") or None),
        ("updated", f"{model.get('updated_at')} by {model.get('updated_by')}" if model.get("updated_at") else None),
    ]
    return output.table(model["id"], ["field", "value"], rows, panel=True)


def _since(moment: str) -> str:
    """A version's start: its time, or "the start" for a model's first prices (in force from the beginning)."""
    return "the start" if moment.startswith("1970-") else moment


def _versions_table(versions: list[dict[str, Any]]) -> output.TableData:
    return output.table(
        "Price versions (USD per million tokens)",
        ["version", "from", "input", "output", "cache read", "write 5m", "write 1h", "tiers", "source", "by"],
        [
            (v["version"], _since(v["effective_from"]), money(v["input"]), money(v["output"]), money(v["cache_read"]),
             money(v["cache_write"]), money(v["cache_write_1h"]), _tiers_text(v), v["source"], v.get("set_by"))
            for v in versions
        ],
    )  # fmt: skip


def _guardrail_prices_table(found: dict[str, Any]) -> output.TableData:
    current, default = found["in_force"], found["default"]["per_1000_units"]
    counters = sorted(set(current["per_1000_units"]) | set(default))
    title = f"Guardrail prices in force (USD per 1,000 text units; version {current['version'] or 'LiteLLM map'})"
    return output.table(
        title,
        ["counter", "in force", "LiteLLM's map"],
        [(c, money(current["per_1000_units"].get(c)), money(default.get(c))) for c in counters],
    )


def _guardrail_versions_table(versions: list[dict[str, Any]]) -> output.TableData:
    return output.table(
        "Guardrail price versions",
        ["version", "from", "prices (USD per 1,000 text units)", "by", "at"],
        [
            (v["version"], v["effective_from"], ", ".join(f"{k} ${p}" for k, p in sorted(v["per_1000_units"].items())),
             v.get("set_by"), v.get("set_at"))
            for v in versions
        ],
    )  # fmt: skip


def _test_panel(result: dict[str, Any]) -> output.TableData:
    usage = result.get("usage") or {}
    rows = [
        ("model", result["model"]),
        ("status", f"{result['status']} {'ok' if result['ok'] else 'failed'}"),
        ("latency", f"{result['latency_ms']} ms"),
        ("billed to key", result.get("key_id")),
        ("tokens in / out", f"{usage.get('input_tokens', 0)} / {usage.get('output_tokens', 0)}" if usage else None),
        ("cost", money(result.get("cost_usd"))),
        ("price version", result.get("price_version")),
        ("served by", result.get("served_by")),
        ("answer", result.get("answer")),
        ("error", (result.get("error") or {}).get("message")),
        ("request id", result.get("request_id")),
    ]
    return output.table(f"Test of {result['model']}", ["field", "value"], rows, panel=True)


def _audit_table(events: list[dict[str, Any]]) -> output.TableData:
    def changes(event: dict[str, Any]) -> str:
        parts = []
        for name, change in event["changes"].items():
            if name == "price_versions":
                parts.append(f"price versions: {len(change.get('from') or [])} → {len(change.get('to') or [])}")
            else:
                parts.append(f"{name}: {change.get('from')} → {change.get('to')}")
        parts += [f"{name}={value}" for name, value in event["details"].items() if value is not None]
        return "; ".join(parts)

    return output.table(
        f"{len(events)} events",
        ["time (UTC)", "action", "actor", "what changed"],
        [(e["at"], e["action"], e["actor"].get("email") or e["actor"].get("sub"), changes(e) or None) for e in events],
    )
