"""The design's boundaries, checked: one layer per folder, the framework at the edge, LiteLLM in one place,
local tools out, one shape per protocol adapter.

``MAY_IMPORT`` is the layering (docs/architecture.md draws it): each folder of chalicelib (a top-level
module counts as one) may import only the folders it lists, all of them below it. Imports under
``if TYPE_CHECKING:`` never run; one that goes anywhere else must be listed, with its reason, in
``TYPE_ONLY``.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHALICELIB = ROOT / "chalicelib"

BOTTOM = {"errors", "settings", "observability"}
#: Which folder may import which (besides itself). Read bottom to top.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "settings": set(),
    "observability": set(),
    # The ground layer: vocabulary everyone uses (bodies, dates, DynamoDB, money and usage, text, HTTP).
    "shared": BOTTOM,
    # The model domain's vocabulary: Conversation, its events, the deadline guard.
    "conversation": BOTTOM | {"shared"},
    "catalog": BOTTOM | {"shared"},
    "keys": BOTTOM | {"shared"},
    # Accounting bills a Payer (any key-like record): it never imports the key store.
    "accounting": BOTTOM | {"shared", "catalog"},
    "gateway": BOTTOM | {"shared", "conversation", "catalog"},
    # ModelService: resolve → check → admit → call → bill.
    "service": BOTTOM | {"shared", "conversation", "catalog", "keys", "accounting", "gateway"},
    # The adapters reach the service and the key store, never the gateway or accounting.
    "protocols": BOTTOM | {"shared", "conversation", "catalog", "keys", "service"},
    "admin": BOTTOM | {"shared", "catalog", "keys", "accounting"},
    "console": BOTTOM | {"shared"},
    # The composition root builds everything below the edge.
    "wiring": BOTTOM
    | {
        "shared",
        "conversation",
        "catalog",
        "keys",
        "accounting",
        "gateway",
        "service",
        "protocols",
        "admin",
        "console",
    },
    # The route table, the error translation, the OpenAPI document.
    "edge": BOTTOM | {"shared", "protocols", "wiring"},
    # The streaming function's entry: an API Gateway event → a route of the edge.
    "streaming": BOTTOM | {"shared", "edge"},
}
#: Type-only imports (``if TYPE_CHECKING:``) that go where ``MAY_IMPORT`` does not allow, and why.
TYPE_ONLY: dict[tuple[str, str], str] = {}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def chalicelib_edges(path: Path) -> list[tuple[str, bool]]:
    """The chalicelib modules ``path`` imports (lazy imports inside functions included), each with
    whether the import is type-only (under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    edges: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from chalicelib.pkg import name``: the module ``name`` when it is one, else the package.
            targets = [
                f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
                for alias in node.names
            ]
        else:
            continue
        edges += [(target, id(node) in type_only) for target in targets if target.startswith("chalicelib.")]
    return edges


def folder_of(module: str) -> str:
    """``chalicelib.accounting.ledger`` → ``accounting``; ``chalicelib.wiring`` → ``wiring``."""
    return module.split(".")[1]


def sources() -> list[Path]:
    return sorted(CHALICELIB.rglob("*.py"))


def test_every_folder_imports_only_the_folders_below_it() -> None:
    upward = []
    for path in sources():
        if path.parent == CHALICELIB and path.name == "__init__.py":
            continue
        source = _module_of(path)
        here = folder_of(source)
        assert here in MAY_IMPORT, f"{path.relative_to(ROOT)}: a new folder; give it its place in MAY_IMPORT"
        for target, type_only in chalicelib_edges(path):
            there = folder_of(target)
            if there == here or there in MAY_IMPORT[here]:
                continue
            if type_only and (source, target) in TYPE_ONLY:
                continue
            upward.append(f"{source} imports {target} ({here} may import {sorted(MAY_IMPORT[here])})")
    assert not upward, "\n".join(upward)


def test_the_layering_has_no_loop() -> None:
    try:
        order = list(TopologicalSorter(MAY_IMPORT).static_order())
    except CycleError as exc:  # pragma: no cover - the message is the point
        raise AssertionError(f"MAY_IMPORT has a loop: {exc.args[1]}") from None
    assert set(order) == set(MAY_IMPORT)
    for folder, allowed in MAY_IMPORT.items():
        assert allowed <= set(MAY_IMPORT), folder


def test_no_module_imports_itself_back() -> None:
    # A loop between two modules of one folder is a loop too (ledger ↔ reconcile was one, through a shim).
    graph: dict[str, set[str]] = {}
    for path in sources():
        source = _module_of(path)
        graph.setdefault(source, set()).update(
            target for target, type_only in chalicelib_edges(path) if not type_only and target != source
        )
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"an import loop: {' → '.join(exc.args[1])}") from None


def test_the_ground_layer_imports_nothing_above_it() -> None:
    for path in (CHALICELIB / "shared").rglob("*.py"):
        above = {folder_of(target) for target, _ in chalicelib_edges(path)} - BOTTOM - {"shared"}
        assert not above, f"{path.relative_to(ROOT)} imports {above}"


def test_accounting_never_imports_the_key_store() -> None:
    for path in (CHALICELIB / "accounting").rglob("*.py"):
        assert not {t for t, _ in chalicelib_edges(path) if folder_of(t) == "keys"}, path


def test_chalicelib_never_imports_chalice_or_local_tooling() -> None:
    for path in CHALICELIB.rglob("*.py"):
        assert not imported_modules(path) & {"chalice", "local", "cli", "tests"}, path


def test_only_the_gateway_package_imports_litellm() -> None:
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in [ROOT / "app.py", *CHALICELIB.rglob("*.py")]
        if "litellm" in imported_modules(path)
    }
    assert importers and all(name.startswith("chalicelib/gateway/") for name in importers), importers


def test_protocol_adapters_reach_nothing_past_the_service() -> None:
    # An adapter translates a wire format; admission, Bedrock and billing are the service's.
    for path in (CHALICELIB / "protocols").rglob("*.py"):
        assert not imported_modules(path) & {"litellm", "boto3", "botocore"}, path
        reached = {folder_of(t) for t, _ in chalicelib_edges(path)} & {
            "gateway",
            "accounting",
            "admin",
            "edge",
            "streaming",
            "wiring",
        }
        assert not reached, f"{path.relative_to(ROOT)} reaches past the service: {reached}"


#: The hooks ``protocols/route.py: ModelRoute.handle`` calls; an adapter's route class defines no other public method.
ROUTE_HOOKS = {"handle", "read_headers", "parse", "fit", "answer_headers", "stream", "whole"}


def adapters() -> list[Path]:
    return sorted(p for p in (CHALICELIB / "protocols").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_adapters_share_one_shape() -> None:
    # Every adapter: parse (wire format in), render (wire format out), route (its routes).
    assert {p.name for p in adapters()} >= {"openai", "openai_chat", "openai_responses", "anthropic", "mcp"}
    for package in adapters():
        missing = {"__init__.py", "parse.py", "render.py", "route.py"} - {p.name for p in package.iterdir()}
        assert not missing, f"protocols/{package.name} has no {sorted(missing)}"
        tree = ast.parse((package / "route.py").read_text())
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
        assert classes, f"protocols/{package.name}/route.py serves no route"
        for node in classes:
            bases = {ast.unparse(base).split("[")[0] for base in node.bases}
            assert bases & {"Route", "ModelRoute"}, f"{package.name}.{node.name}: not a protocols.route.Route"
            public = {
                item.name for item in node.body if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")
            }
            assert public <= ROUTE_HOOKS, f"{package.name}.{node.name}: one entry verb (handle), not {public}"


def test_the_edge_calls_an_adapter_only_through_handle() -> None:
    source = (CHALICELIB / "edge" / "routes.py").read_text()
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Call)
        and ast.unparse(node.func.value.func) == "wiring.adapter"
    }
    assert calls == {"handle"}, calls


def test_app_py_is_a_table_of_contents() -> None:
    # No route of its own: Chalice registered exactly the table's buffered routes, each with its
    # name, authorizer and content types, and the view in between has a few statements of plumbing.
    from app import ADMIN_AUTH, ANY_BODY, app
    from chalicelib.edge.routes import ROUTES

    registered = {
        (method, path): (entry.view_name, entry.authorizer, entry.content_types)
        for path, methods in app.routes.items()
        for method, entry in methods.items()
    }
    expected = {
        (route.method, route.path): (
            route.name,
            ADMIN_AUTH if route.auth == "cognito" else None,
            ANY_BODY if route.any_content_type else ["application/json"],
        )
        for route in ROUTES
        if not route.streamed
    }
    assert registered == expected
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            assert not any("route" in ast.unparse(d) for d in node.decorator_list), f"{node.name}: add a table row"
            body = [n for n in ast.walk(node) if isinstance(n, ast.stmt)]
            assert len(body) <= 12, f"{node.name} has logic; move it into chalicelib"


def test_every_route_is_served_by_exactly_one_function() -> None:
    from chalicelib.edge.routes import ROUTES, STREAM_PATHS

    pairs = [(route.method, route.path) for route in ROUTES]
    assert len(pairs) == len(set(pairs))
    assert all(route.serve is not None and route.name for route in ROUTES)
    assert set(STREAM_PATHS) == {(r.method, r.path) for r in ROUTES if r.streamed}
    assert {envelope for route in ROUTES for envelope in [route.envelope]} <= {"openai", "anthropic"}


def test_chalicelib_is_a_small_tree() -> None:
    # A newcomer reads the layout at a glance: a handful of top modules, the rest in packages.
    top = sorted(p.name for p in CHALICELIB.glob("*.py"))
    assert top == ["__init__.py", "errors.py", "observability.py", "settings.py", "wiring.py"], top
    folders = sorted(p.name for p in CHALICELIB.iterdir() if (p / "__init__.py").exists())
    assert set(folders) | {"errors", "settings", "observability", "wiring"} == set(MAY_IMPORT), folders


def test_a_model_route_cold_start_loads_no_admin_module() -> None:
    """The composition root imports what only the admin API, the console, the reports and the
    aggregator use inside their accessors: both functions' handlers import without them."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import app, chalicelib.streaming.handler\n"
        "print(sorted(m for m in sys.modules if m.startswith(('chalicelib.admin', 'chalicelib.console'))\n"
        "    or m in ('chalicelib.accounting.reports', 'chalicelib.accounting.aggregator')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
