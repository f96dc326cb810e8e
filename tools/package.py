"""Build the deployable artifacts for one stage: ``python -m tools.package --stage dev``.

Chalice's own packaging installs every dependency as-is (~90 MB zipped, no
bytecode). This builds a staged Chalice project instead, under
``build/<stage>/project``, whose ``vendor/`` folder holds the pinned runtime
dependencies already installed for Lambda (manylinux x86_64, CPython 3.12),
pruned (``tools/prune.py``) and compiled to bytecode, with an empty
``requirements.txt``. ``chalice package`` and ``chalice deploy`` both zip that
folder as it is, so the two deployment paths ship the same artifact.

Bytecode is compiled with ``--invalidation-mode unchecked-hash``: Lambda's
code directory is read-only, so Python can neither write bytecode nor would it
trust timestamps from a zip; unchecked-hash ``.pyc`` files are used as they
are. ``-X no_debug_ranges`` drops the column tables (only used for the ``^^^``
markers in tracebacks), which keeps the bytecode ~20% smaller.

Output (git-ignored): ``build/<stage>/package/{deployment.zip,sam.json}`` (the
merged template), ``build/<stage>/unzipped/`` (for tests and the benchmark),
``build/<stage>/report.json`` (sizes, pruned paths). Exits non-zero when the
artifact breaks a size limit.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from chalicelib.edge.routes import STREAM_PATHS
from tools import stack
from tools.lazy_imports import RUNTIME_MODULE, rewrite_packages
from tools.policies import STREAM_POLICY_FILE
from tools.prune import prune

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = (3, 12)
#: Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34): wheels up to manylinux_2_34 run there.
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64")
#: Direct upload limit of ``chalice deploy`` (Lambda's CreateFunction with a zip), and our margin under
#: Lambda's 250 MiB unzipped limit (function plus layers).
MAX_ZIPPED = 50 * 1000 * 1000
MAX_UNZIPPED = 230 * 1000 * 1000
#: Where Lambda unpacks the code: bytecode records it as the file name, so tracebacks point there.
TASK_ROOT = "/var/task"
PROJECT_FILES = ("app.py", "chalicelib")
#: What stays in the function zip; every other dependency moves to the dependencies layer, so each
#: upload stays under 50 MB with bytecode (LiteLLM alone is ~39 MB zipped, its Rust extension 17 MB).
FUNCTION_KEEPS = ("litellm", "__pycache__", "chalice", f"{RUNTIME_MODULE}.py")
#: The streaming function and its role (infra/template.json); ``wire_streaming`` completes them.
STREAM_FUNCTION = "StreamHandler"
STREAM_ROLE = "StreamHandlerRole"
#: API Gateway streams a response for at most 15 minutes, and the integration timeout may go that far.
#: The function's own timeout (StreamTimeoutSeconds, at most 900 s) ends an answer first.
STREAM_INTEGRATION_TIMEOUT_MS = 900_000
#: Taken from the API handler Chalice generates: both functions run the same code the same way.
SHARED_FUNCTION_PROPERTIES = ("Runtime", "CodeUri", "MemorySize", "Architectures", "Tracing", "Layers")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def install_dependencies(requirements: Path, target: Path) -> None:
    """Install the pinned runtime dependencies for Lambda into ``target`` (cached by requirements hash)."""
    digest = hashlib.sha256(requirements.read_bytes() + repr(PLATFORMS).encode()).hexdigest()
    stamp = target / ".requirements.sha256"
    if stamp.exists() and stamp.read_text() == digest:
        log(f"dependencies: reusing {target.relative_to(ROOT)}")
        return
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target), "--require-hashes", "--no-deps", "--only-binary=:all:"]
    command += ["--implementation", "cp", "--python-version", "3.12", "--abi", "cp312", "--abi", "abi3"]
    command += ["--abi", "none"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    command += ["-r", str(requirements)]
    log("dependencies: pip install for manylinux x86_64 / CPython 3.12")
    subprocess.run(command, check=True)  # noqa: S603 - our own pip, fixed arguments
    # pip's console scripts and the chalice runtime are not importable code Lambda needs.
    shutil.rmtree(target / "bin", ignore_errors=True)
    stamp.write_text(digest)


def stage_project(stage_dir: Path, deps: Path, pruned: bool = True) -> tuple[Path, list[dict[str, object]]]:
    """A Chalice project dir: our code, .chalice config + policies, vendor/ = pruned deps."""
    project = stage_dir / "project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=ignore)
        else:
            shutil.copy2(source, project / name)
    shutil.copytree(ROOT / ".chalice", project / ".chalice", ignore=shutil.ignore_patterns("deployments", "deployed"))
    # Dependencies come from vendor/; Chalice must not pip-install anything itself.
    (project / "requirements.txt").write_text("")
    vendor = project / "vendor"
    shutil.copytree(deps, vendor, ignore=shutil.ignore_patterns(".requirements.sha256", "__pycache__"))
    removed = prune(vendor) if pruned else []
    return project, removed


_COMPILE = """
import json, py_compile, sys
sys.path.insert(0, sys.argv[2])
from tools.lazy_imports import compile_deferred_classes
for source, cfile, dfile, hot in json.load(open(sys.argv[1])):
    py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    compile_deferred_classes(source, cfile, dfile, tuple(filter(None, hot.split(","))))
"""


def traced_files(project: Path, runtime: Path) -> list[list[str]]:
    """The .py files a cold Lambda imports on its main paths, each with its hot names (tools/trace_imports.py)."""
    from local.bedrock_emulator import start_emulator

    server, url = start_emulator(host="127.0.0.1", port=0)
    try:
        roots = [project, project / "vendor", runtime]
        result = subprocess.run(  # noqa: S603 - our interpreter and script
            [sys.executable, "-S", "-B", str(ROOT / "tools" / "trace_imports.py"), url, *map(str, roots)],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(project.parent)},
        )
    finally:
        server.shutdown()
    if result.returncode != 0:
        raise SystemExit(f"import trace failed (the artifact cannot serve a request):\n{result.stderr[-4000:]}")
    # Each line: a file, then (after a tab) the deferred names the paths resolved in it.
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def compile_bytecode(project: Path) -> int:
    """Unchecked-hash bytecode for every file the traced cold paths import; returns the count.

    Only imported modules get bytecode: compiling all ~9,000 files would add ~20 MB zipped for
    modules Lambda never loads (LiteLLM's proxy server, other providers' SDK types).
    """
    if sys.version_info[:2] != PYTHON_VERSION:
        raise SystemExit(f"bytecode must be compiled by Python {PYTHON_VERSION}, not {sys.version_info[:2]}")
    vendor = project / "vendor"
    # Chalice zips its own runtime (chalice/app.py, chalice/__init__.py) from its install; the
    # trace imports copies of them, and their bytecode goes to vendor/chalice/__pycache__ so it
    # lands next to them in the zip (likewise vendor/__pycache__ for app.py).
    import chalice

    runtime = project.parent / "chalice-runtime"
    shutil.rmtree(runtime, ignore_errors=True)
    (runtime / "chalice").mkdir(parents=True)
    for name in ("app.py", "__init__.py"):
        shutil.copy2(Path(chalice.__file__).parent / name, runtime / "chalice" / name)
    jobs = []
    for traced in traced_files(project, runtime):
        source, hot = Path(traced[0]), traced[1:]
        if source.is_relative_to(runtime):
            relative = source.relative_to(runtime)
        elif source.is_relative_to(vendor):
            relative = source.relative_to(vendor)
        else:
            relative = source.relative_to(project)
        # chalicelib/ is zipped from the project; everything else reaches the zip through vendor/.
        in_zip = (project if relative.parts[0] == "chalicelib" else vendor) / relative
        cfile = in_zip.parent / "__pycache__" / f"{in_zip.stem}.cpython-312.pyc"
        jobs.append((str(source), str(cfile), f"{TASK_ROOT}/{relative}", ",".join(hot)))
    listing = project.parent / "bytecode-jobs.json"
    listing.write_text(json.dumps(jobs))
    command = [sys.executable, "-X", "no_debug_ranges", "-c", _COMPILE, str(listing), str(ROOT)]
    subprocess.run(command, check=True)  # noqa: S603
    shutil.rmtree(runtime)
    return len(jobs)


def split_layer(project: Path, layer: Path) -> None:
    """Move every dependency but LiteLLM from vendor/ to ``layer/python`` (Lambda's /opt/python)."""
    shutil.rmtree(layer, ignore_errors=True)
    (layer / "python").mkdir(parents=True)
    for child in sorted((project / "vendor").iterdir()):
        name = child.name.split("-")[0] if child.name.endswith(".dist-info") else child.name
        if name not in FUNCTION_KEEPS:
            shutil.move(child, layer / "python" / child.name)


def zip_dir(directory: Path, target: Path) -> None:
    """A deterministic zip (sorted entries, fixed timestamps) so unchanged layers hash the same."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(str(path.relative_to(directory)), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = path.stat().st_size
                archive.writestr(info, path.read_bytes())


def chalice_package(project: Path, stage: str, out: Path) -> None:
    """``chalice package --merge-template infra/template.json`` from the staged project."""
    shutil.rmtree(out, ignore_errors=True)
    chalice_cli = Path(sys.executable).with_name("chalice")
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    command = [str(chalice_cli), "package", "--stage", stage, "--merge-template", str(ROOT / "infra" / "template.json")]
    subprocess.run([*command, str(out)], cwd=project, env=env, check=True)  # noqa: S603 - the venv's chalice


def streaming_uri(function_arn: str) -> str:
    """The integration URI that makes API Gateway call InvokeWithResponseStream on ``function_arn``."""
    prefix = "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
    return f"{prefix}{function_arn}/response-streaming-invocations"


def streaming_integration(uri: Any = None) -> dict[str, Any]:
    """A Lambda proxy integration that streams: InvokeWithResponseStream, ``responseTransferMode: STREAM``.

    Set in the OpenAPI extension because CloudFormation takes the REST API from Chalice's Swagger
    body; ``responseTransferMode`` and the ``2021-11-15/…/response-streaming-invocations`` URI are
    from API Gateway's "Set up a Lambda proxy integration with payload response streaming".
    ``uri``: the streaming function's, resolved (the chalice path); by default the merged
    template's ``Fn::Sub``.
    """
    return {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": uri if uri is not None else {"Fn::Sub": streaming_uri(f"${{{STREAM_FUNCTION}.Arn}}")},
        "responseTransferMode": "STREAM",
        "timeoutInMillis": STREAM_INTEGRATION_TIMEOUT_MS,
        "passthroughBehavior": "when_no_match",
        # As Chalice sets it for the API handler: binary request bodies arrive base64-encoded.
        "contentHandling": "CONVERT_TO_TEXT",
        "responses": {"default": {"statusCode": "200"}},
    }


def stream_methods(
    paths: dict[str, Any], uri: Any = None, stream_paths: tuple[tuple[str, str], ...] = STREAM_PATHS
) -> None:
    """Point each of ``stream_paths`` at the streaming function in a Swagger ``paths`` (both deploy paths)."""
    for method, path in stream_paths:
        operation = paths.setdefault(path, {}).setdefault(method.lower(), {})
        operation.setdefault("consumes", ["*/*"])
        operation.setdefault("produces", ["application/json"])
        operation.setdefault("responses", {"200": {"description": "200 response"}})
        operation["x-amazon-apigateway-integration"] = streaming_integration(uri)


def permission_name(method: str, path: str) -> str:
    """``POST /v1/chat/completions`` → ``StreamHandlerPermissionPostV1ChatCompletions``."""
    words = [method, *path.replace("_", "/").replace("-", "/").split("/")]
    return f"{STREAM_FUNCTION}Permission" + "".join(word.capitalize() for word in words if word)


def wire_streaming(
    template: dict[str, Any], policy: dict[str, Any], stream_paths: tuple[tuple[str, str], ...] = STREAM_PATHS
) -> dict[str, Any]:
    """Complete the streaming function from the API handler and point ``stream_paths`` at it.

    ``infra/template.json`` declares StreamHandler (handler, timeout, exec wrapper, log group)
    and its role; Chalice does not know it. From Chalice's output it gets the API handler's
    code, layer, memory and environment (its own variables win), its role gets ``policy``
    (``.chalice/policy-stream.json``), each streaming method's integration is replaced (or
    created) with ``streaming_integration()``, and API Gateway may invoke the function for
    exactly those methods on the deployed stage.
    """
    resources = template["Resources"]
    api = resources["APIHandler"]["Properties"]
    function = resources[STREAM_FUNCTION]["Properties"]
    for name in SHARED_FUNCTION_PROPERTIES:
        if name in api:
            function[name] = copy.deepcopy(api[name])
    own = function.get("Environment", {}).get("Variables", {})
    function["Environment"] = {"Variables": {**copy.deepcopy(api["Environment"]["Variables"]), **own}}
    resources[STREAM_ROLE]["Properties"]["Policies"] = [
        {"PolicyName": f"{STREAM_ROLE}Policy", "PolicyDocument": copy.deepcopy(policy)}
    ]
    rest_api = resources["RestAPI"]["Properties"]
    stream_methods(rest_api["DefinitionBody"]["paths"], stream_paths=stream_paths)
    for method, path in stream_paths:
        source = (
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
            f"${{RestAPI}}/{rest_api['StageName']}/{method.upper()}{path}"
        )
        resources[permission_name(method, path)] = {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": {"Ref": STREAM_FUNCTION},
                # InvokeWithResponseStream is authorised by lambda:InvokeFunction.
                "Action": "lambda:InvokeFunction",
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": source},
            },
        }
    return template


def finish_template(sam_json: Path, project: Path) -> None:
    """Post-process Chalice's merged ``sam.json`` in place: ``wire_streaming``, then every role.

    Each role is replaced by ``tools/stack.py: role_resource``, the one the chalice path's stack
    also gets, so the two paths cannot grant different things (Chalice's own roles carry the same
    policy files; this also names them).
    """
    template = json.loads(sam_json.read_text())
    policy = json.loads((project / ".chalice" / STREAM_POLICY_FILE).read_text())
    template = wire_streaming(template, policy)
    for function in stack.FUNCTIONS:
        template["Resources"][function.role] = stack.role_resource(function)
    sam_json.write_text(json.dumps(template, indent=2) + "\n")


def size_report(zips: dict[str, Path]) -> dict[str, Any]:
    """Zipped size of each upload, unzipped total, and the biggest top-level entries."""
    zipped: dict[str, int] = {}
    unzipped: dict[str, int] = {}
    pyc = 0
    for path in zips.values():
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = info.filename.split("/")
                top = parts[1] if parts[0] == "python" and len(parts) > 1 else parts[0]
                zipped[top] = zipped.get(top, 0) + info.compress_size
                unzipped[top] = unzipped.get(top, 0) + info.file_size
                pyc += info.compress_size if info.filename.endswith(".pyc") else 0
    uploads = {name: path.stat().st_size for name, path in zips.items()}
    total_unzipped = sum(unzipped.values())
    largest = sorted(zipped, key=zipped.__getitem__, reverse=True)[:12]
    return {
        "zipped_bytes": uploads,
        "zipped_total_bytes": sum(uploads.values()),
        "unzipped_bytes": total_unzipped,
        "bytecode_zipped_bytes": pyc,
        "limits": {"zipped_bytes_per_upload": MAX_ZIPPED, "unzipped_bytes": MAX_UNZIPPED},
        "within_limits": max(uploads.values()) <= MAX_ZIPPED and total_unzipped <= MAX_UNZIPPED,
        "largest": {name: {"zipped": zipped[name], "unzipped": unzipped[name]} for name in largest},
    }


def unzip(zips: list[Path], target: Path) -> None:
    """Function and layer in one tree: what Lambda's sys.path (/var/task, /opt/python) resolves to.

    Executable bits are kept, as Lambda keeps them: the exec wrapper must stay runnable.
    """
    shutil.rmtree(target, ignore_errors=True)
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                parts = info.filename.split("/")
                name = "/".join(parts[1:]) if path.name == "layer.zip" else info.filename
                if name and not info.is_dir():
                    destination = target / name
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(info))
                    if (info.external_attr >> 16) & 0o111:
                        destination.chmod(0o755)


def build(stage: str, build_root: Path, dependencies: bool = True) -> dict[str, Any]:
    """Run every step for ``stage``; return the report (also written to report.json).

    ``dependencies=False``: our code only, no dependencies and no bytecode (seconds, not minutes): an
    artifact that cannot serve a request but has every file, function and route the deploy wires
    (the deploy rehearsal, ``tests/test_deploy_rehearsal.py``).
    """
    started = time.monotonic()
    stage_dir = build_root / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    if dependencies:
        deps = build_root / ".deps"
        install_dependencies(ROOT / "requirements.txt", deps)
    else:
        deps = stage_dir / "no-dependencies"
        shutil.rmtree(deps, ignore_errors=True)
        deps.mkdir()
    project, removed = stage_project(stage_dir, deps, pruned=dependencies)
    compiled = 0
    lazy: dict[str, Any] = {}
    if dependencies:
        log("deferred imports: rewriting LiteLLM and the OpenAI SDK (tools/lazy_imports.py)")
        lazy = rewrite_packages(project / "vendor", cache=build_root / ".lazy-imports")
        log("bytecode: tracing cold-start imports, compiling them (unchecked-hash, no debug ranges)")
        compiled = compile_bytecode(project)
    out = stage_dir / "package"
    split_layer(project, stage_dir / "layer")
    log(f"chalice package --stage {stage} --merge-template infra/template.json")
    chalice_package(project, stage, out)
    finish_template(out / "sam.json", project)
    # sam.json's DependenciesLayer (infra/template.json) points at ./layer.zip next to it.
    zip_dir(stage_dir / "layer", out / "layer.zip")
    zips = {"deployment.zip": out / "deployment.zip", "layer.zip": out / "layer.zip"}
    unzip(list(zips.values()), stage_dir / "unzipped")
    report = {
        "stage": stage,
        "artifacts": {name: os.path.relpath(path, ROOT) for name, path in zips.items()},
        "template": os.path.relpath(out / "sam.json", ROOT),
        **size_report(zips),
        "bytecode_files": compiled,
        "pruned": removed,
        "lazy_imports": lazy,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (stage_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--no-dependencies", action="store_true", help="our code only (wiring checks; cannot serve)")
    args = parser.parse_args(argv)
    report = build(args.stage, args.build_dir.resolve(), dependencies=not args.no_dependencies)
    mb = 1_000_000
    for name, size in report["zipped_bytes"].items():
        log(f"\n{name}: {size / mb:.1f} MB zipped (limit {MAX_ZIPPED / mb:.0f} per upload)")
    log(
        f"total: {report['zipped_total_bytes'] / mb:.1f} MB zipped, "
        f"{report['unzipped_bytes'] / mb:.1f} MB unzipped (limit {MAX_UNZIPPED / mb:.0f}), "
        f"bytecode {report['bytecode_zipped_bytes'] / mb:.1f} MB zipped; built in {report['build_seconds']} s"
    )
    for name, sizes in report["largest"].items():
        log(f"  {name:<28} {sizes['zipped'] / mb:6.1f} MB zipped {sizes['unzipped'] / mb:7.1f} MB unzipped")
    if not report["within_limits"]:
        log("error: the artifact is over a size limit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
