"""Which files the deployed code imports: run by ``tools/package.py`` in a bare interpreter.

Usage: ``python -S -B tools/trace_imports.py BEDROCK_URL ROOT...``. With ``-S``
only the given roots (the staged artifact) are importable. The script does what
a cold Lambda does on each path (import the handler, build the AWS clients,
parse a catalog, a chat completion streamed and not, an embedding, a token
count; the streaming function's runtime loop, handler and route table)
against the Bedrock emulator, then prints every imported file under the
roots, one per line, with the files an import compiled but could not finish
(an optional dependency that is not installed: httpx's command line, httpcore's
SOCKS proxy and trio backend), which every cold start compiles again without
bytecode. Those files get bytecode; a module imported later on a
path not traced here still works, it just compiles in memory. A file whose
deferred names (``tools/lazy_imports.py``) the paths resolved is followed, after
a tab, by those names (comma-separated): they are resolved at import.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def exercise(bedrock_url: str) -> None:
    import app  # noqa: F401 - the Lambda handler module, as Lambda imports it
    from chalicelib import wiring
    from chalicelib.edge.routes import ROUTES
    from chalicelib.gateway import load_litellm
    from chalicelib.streaming import handler
    from chalicelib.streaming import runtime as _runtime  # noqa: F401 - the streaming function's entry point

    # The streaming function's cold path: its route table (which imports every adapter) and an answer.
    assert any(route.streamed for route in ROUTES)
    answer = handler.handle({"httpMethod": "GET", "path": "/trace", "headers": {}}, deadline=0)
    list(answer.chunks)

    wiring.dynamodb().Table("trace")
    # The catalog's code, without a table to read (nothing here reaches the network): the store and
    # snapshot objects, and the parsing a read runs (the seed file goes through the same code).
    wiring.live_catalog()
    from chalicelib.catalog import load_catalog
    from chalicelib.settings import DEFAULT_CATALOG

    load_catalog(DEFAULT_CATALOG, region="us-east-1")
    for service in ("sns", "cloudwatch", "ssm"):
        wiring.aws_client(service)
    wiring.cognito()
    litellm = load_litellm()
    common = {"aws_bedrock_runtime_endpoint": bedrock_url, "aws_region_name": "us-east-1", "num_retries": 0}
    messages = [{"role": "user", "content": "trace"}]
    litellm.completion(model="bedrock/converse/us.amazon.nova-micro-v1:0", messages=messages, **common)
    for _ in litellm.completion(
        model="bedrock/converse/us.amazon.nova-micro-v1:0",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **common,
    ):
        pass
    litellm.embedding(model="bedrock/amazon.titan-embed-text-v2:0", input=["trace"], **common)
    litellm.token_counter(model="", messages=messages)


def main() -> int:
    bedrock_url, roots = sys.argv[1], [os.path.abspath(root) for root in sys.argv[2:]]
    sys.path[:0] = roots
    os.environ.update(
        {
            "PENNYWORTH_LAZY_RECORD": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "AWS_ACCESS_KEY_ID": "trace",
            "AWS_SECRET_ACCESS_KEY": "trace",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    compiled: set[str] = set()  # the staged tree has no bytecode: every import compiles its source

    def audit(event: str, args: tuple[object, ...]) -> None:
        if event == "compile" and isinstance(args[1], str) and args[1].endswith(".py"):
            compiled.add(args[1])

    sys.addaudithook(audit)
    exercise(bedrock_url)
    lazy = sys.modules.get("_pennyworth_lazy")
    hot = lazy.resolved() if lazy is not None else {}
    files: dict[str, Any] = {path: () for path in compiled if os.path.isfile(path)}
    files.update(
        (module.__file__, hot.get(name, ()))
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
    )
    for path in sorted(f for f in files if f.endswith(".py")):
        if any(path.startswith(root + os.sep) for root in roots):
            print(f"{path}\t{','.join(files[path])}" if files[path] else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
