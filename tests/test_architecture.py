"""The design's boundaries, checked: the framework at the edge, LiteLLM in one place, local tools out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_chalicelib_never_imports_chalice_or_local_tooling() -> None:
    for path in (ROOT / "chalicelib").rglob("*.py"):
        assert not imported_modules(path) & {"chalice", "local", "cli", "tests"}, path


def test_only_the_gateway_package_imports_litellm() -> None:
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")]
        if "litellm" in imported_modules(path)
    }
    assert importers and all(name.startswith("chalicelib/gateway/") for name in importers), importers


def test_app_py_is_a_table_of_contents() -> None:
    # Every route body is at most a couple of statements: parse, call one function, return.
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "route" for d in node.decorator_list
        ):
            body = [n for n in node.body if not isinstance(n, ast.Expr)]  # docstrings aside
            assert len(body) <= 2, f"{node.name} has logic; move it into chalicelib"


def chalicelib_imports(path: Path) -> set[str]:
    """The chalicelib modules a file imports (full dotted names, first two levels)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        names |= {".".join(m.split(".")[:2]) for m in modules if m.startswith("chalicelib.")}
    return names


def test_protocol_adapters_reach_nothing_past_the_core() -> None:
    # An adapter translates a wire format; admission, Bedrock and billing are the core's.
    for path in (ROOT / "chalicelib" / "protocols").rglob("*.py"):
        assert not imported_modules(path) & {"litellm", "boto3", "botocore"}, path
        reached = chalicelib_imports(path) & {
            "chalicelib.gateway",
            "chalicelib.admin",
            "chalicelib.streaming",
            "chalicelib.wiring",
        }
        assert not reached, f"{path.relative_to(ROOT)} reaches past the core: {reached}"
        metering = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)]
        assert not any(n.module == "chalicelib.accounting.metering" for n in metering), path


def test_the_core_knows_no_protocol_and_no_framework() -> None:
    for folder in ("core", "gateway", "accounting", "keys", "catalog"):
        for path in (ROOT / "chalicelib" / folder).rglob("*.py"):
            reached = chalicelib_imports(path) & {"chalicelib.protocols", "chalicelib.streaming", "chalicelib.admin"}
            assert not reached, f"{path.relative_to(ROOT)} depends on an adapter or an edge: {reached}"


def test_chalicelib_is_a_small_tree() -> None:
    # A newcomer reads the layout at a glance: a handful of top modules, the rest in packages.
    top = sorted(p.name for p in (ROOT / "chalicelib").glob("*.py"))
    assert top == ["__init__.py", "errors.py", "observability.py", "settings.py", "wiring.py"], top
