"""What the Lambda artifact leaves out of its dependencies, and why.

Every rule names a path (relative to the installed dependencies) and the
reason it is safe to drop. ``make test-artifact`` proves the rules by running
the unit and route tests against the pruned artifact; a rule that removed
something the gateway imports fails there, not in production.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

#: botocore service models the functions (and LiteLLM's Bedrock signer) use. All
#: other ~400 services' models are data files nobody loads (~15 MB zipped).
BOTOCORE_SERVICES = frozenset(
    {
        "dynamodb",  # keys, usage, audit tables
        "cognito-idp",  # admin API: user lookup
        "sns",  # daily report e-mail
        "ssm",  # Slack webhook parameter
        "cloudwatch",  # daily report metrics
        "bedrock-runtime",  # LiteLLM signs Bedrock calls with botocore
        "sts",  # credential providers (assume-role, web identity)
        "sso",  # credential providers (developer profiles; tiny)
        "sso-oidc",
    }
)
#: boto3 resource models: only DynamoDB's ``boto3.resource`` is used.
BOTO3_RESOURCES = frozenset({"dynamodb"})


@dataclass(frozen=True)
class Rule:
    """One path to remove, and why that is safe."""

    path: str
    reason: str


RULES: tuple[Rule, ...] = (
    Rule("litellm/proxy/_experimental", "LiteLLM proxy's admin UI (a static web build); the proxy never runs here"),
    Rule("litellm/proxy/swagger", "the proxy server's Swagger UI assets"),
    Rule(
        "litellm/litellm_core_utils/tokenizers/deepseek_tokenizer.json",
        "tokenizer for DeepSeek models only, loaded lazily when counting their tokens; not in the catalog",
    ),
    Rule(
        "tokenizers",
        "Python fallback for Hugging Face tokenizers; LiteLLM's Rust extension (rust_bridge) tokenizes natively",
    ),
    Rule("huggingface_hub", "only used to download tokenizers from the Hugging Face hub (no network use here)"),
    Rule("hf_xet", "huggingface_hub's Xet storage client (Rust extension, 4 MB zipped)"),
    Rule(
        "httpx/_main.py",
        "httpx's command line. httpx imports it in a try and falls back to a stub when it cannot; it never could "
        "here (it needs rich, not installed), but it imported click first: 13 modules, ~10 ms of every cold start",
    ),
)


def prune(site: Path) -> list[dict[str, object]]:
    """Apply ``RULES`` plus the botocore/boto3 data allow-lists under ``site``; return what went."""
    removed: list[dict[str, object]] = []
    for rule in RULES:
        for target in [site / rule.path, *site.glob(f"{rule.path}-*.dist-info")]:
            if target.exists():
                removed.append({"path": str(target.relative_to(site)), "bytes": _remove(target), "reason": rule.reason})
    for data_dir, keep, reason in (
        (site / "botocore" / "data", BOTOCORE_SERVICES, "botocore service model not called"),
        (site / "boto3" / "data", BOTO3_RESOURCES, "boto3 resource model not used"),
    ):
        dropped = [child for child in sorted(data_dir.iterdir()) if child.is_dir() and child.name not in keep]
        if dropped:
            removed.append(
                {
                    "path": f"{data_dir.relative_to(site)}/<{len(dropped)} services>",
                    "bytes": sum(_remove(child) for child in dropped),
                    "reason": reason,
                }
            )
    return removed


def _remove(target: Path) -> int:
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir() else target.stat().st_size
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    return size
