"""The built artifact and merged template (``make test-artifact``; skipped without a build).

``PENNYWORTH_ARTIFACT_DIR`` names ``build/<stage>/unzipped``; its siblings are
the package (``package/sam.json``, the zips) and ``report.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import ENV

ARTIFACT = os.environ.get("PENNYWORTH_ARTIFACT_DIR")
pytestmark = pytest.mark.skipif(not ARTIFACT, reason="no built artifact (make test-artifact builds one)")


@pytest.fixture(scope="module")
def stage_dir() -> Path:
    return Path(str(ARTIFACT)).resolve().parent


@pytest.fixture(scope="module")
def template(stage_dir: Path) -> dict[str, Any]:
    return json.loads((stage_dir / "package" / "sam.json").read_text())


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def test_sizes_are_within_lambda_limits(stage_dir: Path) -> None:
    report = json.loads((stage_dir / "report.json").read_text())
    for name, size in report["zipped_bytes"].items():
        assert size == (stage_dir / "package" / name).stat().st_size
        assert size <= 50_000_000, name
    assert report["unzipped_bytes"] <= 230_000_000


def test_every_function_is_wired_to_the_merged_resources(template: dict[str, Any]) -> None:
    found = functions(template)
    assert {"APIHandler", "DailyCostReport", "LedgerAggregator"} <= set(found)
    for name, function in found.items():
        props = function["Properties"]
        variables = props["Environment"]["Variables"]
        assert variables["PENNYWORTH_KEYS_TABLE"] == {"Ref": "KeysTable"}, name
        assert variables["PENNYWORTH_COGNITO_USER_POOL_ARN"] == {"Fn::GetAtt": ["UserPool", "Arn"]}, name
        assert variables["PENNYWORTH_STAGE"] in ("dev", "prod"), name
        assert {k for k in variables if k.startswith("PENNYWORTH_")} <= set(ENV), name
        assert props["Layers"] == [{"Ref": "DependenciesLayer"}], name
        assert props["Runtime"] == "python3.12" and props["CodeUri"] == "./deployment.zip", name
        assert f"{name}LogGroup" in function["DependsOn"], name
        role = template["Resources"][props["Role"]["Fn::GetAtt"][0]]
        # Chalice's policy file, verbatim: the intrinsics are resolved by CloudFormation.
        statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        assert statements[0]["Resource"] == {"Fn::GetAtt": [f"{name}LogGroup", "Arn"]}, name


def test_no_chalice_log_group_with_a_dangling_reference(template: dict[str, Any]) -> None:
    text = json.dumps(template)
    assert "${ApiHandler}" not in text and "ApiHandlerLogGroup" not in text


def test_authorizer_points_at_the_user_pool(template: dict[str, Any]) -> None:
    definitions = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["securityDefinitions"]
    for definition in definitions.values():
        authorizer = definition["x-amazon-apigateway-authorizer"]
        assert authorizer["type"] == "cognito_user_pools"
        assert authorizer["providerARNs"] == [{"Fn::GetAtt": ["UserPool", "Arn"]}]


def test_bytecode_is_unchecked_hash_for_python_312(stage_dir: Path) -> None:
    import importlib.util

    with zipfile.ZipFile(stage_dir / "package" / "deployment.zip") as archive:
        names = archive.namelist()
        assert "__pycache__/app.cpython-312.pyc" in names and "chalice/__pycache__/app.cpython-312.pyc" in names
        header = archive.read("chalicelib/gateway/__pycache__/loader.cpython-312.pyc")[:8]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    # PEP 552 flags: bit 0 = hash-based, bit 1 = check_source; unchecked-hash is 0b01.
    assert int.from_bytes(header[4:8], "little") == 0b01


def test_litellm_tokenizes_natively_without_the_pruned_python_tokenizers() -> None:
    # GIVEN an artifact without `tokenizers`/`huggingface_hub` WHEN LiteLLM counts Claude tokens
    # THEN its Rust extension does it (the Python fallback would raise ImportError).
    from chalicelib.gateway import load_litellm

    with pytest.raises(ImportError):
        import tokenizers  # noqa: F401
    litellm = load_litellm()
    messages = [{"role": "user", "content": "Hello, pennyworth!"}]
    assert litellm.token_counter(model="anthropic.claude-haiku-4-5-20251001-v1:0", messages=messages) > 0
    assert litellm.token_counter(model="", messages=messages) > 0


def test_the_openai_base_url_output_names_the_generated_stage_and_routes(template: dict[str, Any]) -> None:
    # The URL users paste is built in infra/template.json; the stage and the paths come from
    # Chalice's generated half. Together they must give …/<stage>/v1 + an SDK path = a real route.
    rest_api = template["Resources"]["RestAPI"]["Properties"]
    stage = rest_api["StageName"]
    assert stage != "v1"  # a v1 stage made every OpenAI URL …/v1/v1
    endpoint = template["Outputs"]["EndpointURL"]["Value"]["Fn::Sub"]
    _, with_domain, without = template["Outputs"]["OpenAIBaseURL"]["Value"]["Fn::If"]
    assert without["Fn::Sub"] == endpoint.rstrip("/") + "/v1"
    assert endpoint.endswith(f"/{stage}/")
    assert with_domain["Fn::Sub"] == "https://${CustomDomainName}/v1"
    paths = set(rest_api["DefinitionBody"]["paths"])
    for sdk_path in ("/models", "/embeddings"):
        assert f"/v1{sdk_path}" in paths, sdk_path
    assert "/admin/keys" in paths and "/mcp" in paths


def test_the_merged_api_keeps_our_gateway_responses(template: dict[str, Any]) -> None:
    ours = json.loads((Path(__file__).resolve().parent.parent / "infra" / "template.json").read_text())
    expected = ours["Resources"]["RestAPI"]["Properties"]["GatewayResponses"]
    assert template["Resources"]["RestAPI"]["Properties"]["GatewayResponses"] == expected
    assert "messageString" not in json.dumps(expected)


#: What a cold chat completion must not load, and why (tools/lazy_imports.py defers it; the
#: unrewritten LiteLLM loads every one of them). A LiteLLM or SDK upgrade that makes one eager
#: again fails here instead of slowing every cold start down.
UNUSED_ON_A_COLD_CHAT = {
    "aiohttp": "LiteLLM's async transport: the gateway calls LiteLLM synchronously",
    "litellm.router": "LiteLLM's router: the gateway picks the deployment itself",
    "litellm.proxy._types": "the LiteLLM proxy's types: the proxy never runs here",
    "litellm.types.integrations.datadog": "a logging integration never configured",
    "litellm.integrations.opentelemetry": "a logging integration never configured",
    "litellm.assistants.main": "an API the gateway does not call",
    "litellm.fine_tuning.main": "an API the gateway does not call",
    "litellm.realtime_api.main": "an API the gateway does not call",
    "litellm.llms.vertex_ai.vertex_embeddings.transformation": "another provider",
    "openai.types.beta.assistant": "the OpenAI SDK's types for an API LiteLLM does not call here",
    "openai.types.graders": "the OpenAI SDK's types for an API LiteLLM does not call here",
    "click": "a command-line toolkit: only httpx's command line imported it, and that is pruned (tools/prune.py)",
    "openai.types.responses.response": "the Responses API's types: LiteLLM's logging only asks whether a chat's "
    "result is one (isinstance, which no longer builds the class: tools/lazy_imports.py, CLASS_CHECK)",
}
#: Modules loaded by a cold chat then a cold stream (987 at the time of writing; 1,085 before isinstance
#: stopped building classes, 3,349 before the imports were deferred). Over this, something a rule kept out is back.
COLD_MODULES_BUDGET = 1_200

_COLD_CHAT = r"""
import importlib.util, json, os, sys
sys.path[:0] = [sys.argv[1]]
compiled = set()  # source files compiled in this process (imports without bytecode, or anything parsing)
sys.addaudithook(lambda event, args: event == "compile" and isinstance(args[1], str) and compiled.add(args[1]))
os.environ.update({"AWS_ACCESS_KEY_ID": "cold", "AWS_SECRET_ACCESS_KEY": "cold"})
from chalicelib.gateway import load_litellm
from chalicelib.gateway.loader import DeferredEncoding
litellm = load_litellm()
common = {"aws_bedrock_runtime_endpoint": sys.argv[2], "aws_region_name": "us-east-1", "num_retries": 0}
messages = [{"role": "user", "content": "Hello"}]
answer = litellm.completion(model="bedrock/converse/us.amazon.nova-micro-v1:0", messages=messages, **common)
after_chat = sorted(sys.modules)
encoding = litellm.main._encoding_cache
deferred = isinstance(encoding, DeferredEncoding) and not encoding.loaded
stream = litellm.completion(
    model="bedrock/converse/us.amazon.nova-micro-v1:0", messages=messages, stream=True, **common
)
# How the gateway calls Bedrock (always a stream): LiteLLM priced its start by counting nothing.
stream_deferred = not encoding.loaded and "litellm.litellm_core_utils.default_encoding" not in sys.modules
chunks = list(stream)
print(json.dumps({
    "text": answer.choices[0].message.content, "chunks": len(chunks), "after_chat": after_chat,
    "after_stream": len(sys.modules), "encoding_deferred": deferred, "stream_deferred": stream_deferred,
    "rewritten": type(sys.modules["litellm"]).__name__, "tokens": litellm.token_counter(model="", text="a b c"),
    "compiled_without_bytecode": sorted(
        path for path in compiled
        if path.startswith(sys.argv[1] + os.sep) and path.endswith(".py")
        and not os.path.exists(importlib.util.cache_from_source(path))
    ),
}))
"""


def test_a_cold_chat_leaves_unloaded_what_it_does_not_use(emulator_url: str) -> None:
    # GIVEN a fresh interpreter over the artifact alone (as Lambda has it)
    artifact = str(Path(str(ARTIFACT)).resolve())
    done = subprocess.run(
        [sys.executable, "-S", "-B", "-c", _COLD_CHAT, artifact, emulator_url],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # WHEN it answers a chat completion and then a stream
    cold = json.loads(done.stdout.strip().splitlines()[-1])
    assert cold["text"] and cold["chunks"] > 1 and cold["tokens"] == 3
    # THEN LiteLLM was rewritten, and what the chat does not use stayed out
    assert cold["rewritten"] == "_Module"
    loaded = {name: why for name, why in UNUSED_ON_A_COLD_CHAT.items() if name in cold["after_chat"]}
    assert not loaded, f"a cold chat loaded what tools/lazy_imports.py keeps out: {loaded}"
    # tiktoken's BPE ranks are loaded by whatever tokenizes, not by a Converse call (loader.py)
    assert cold["encoding_deferred"], "LiteLLM no longer caches its default encoding in litellm.main"
    assert cold["stream_deferred"], "a cold stream loaded tiktoken to price its start (loader._defer_cost_counting)"
    assert cold["after_stream"] <= COLD_MODULES_BUDGET, cold["after_stream"]
    # AND nothing was compiled from source: an import that fails (an optional dependency that is
    # not installed) compiles its module first, so it needs bytecode too (tools/trace_imports.py)
    assert cold["compiled_without_bytecode"] == []
