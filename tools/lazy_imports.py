"""Deferred imports in the artifact: LiteLLM and the OpenAI SDK load what they use when they use it.

``import litellm`` executed ~3,000 modules (2.2 s, most of a cold start) because
every module imports, at its top, everything any of its functions might use:
every provider, the proxy's types, the logging integrations, the OpenAI SDK's
evals, graders and beta assistants. The gateway calls a few of those functions.
This rule rewrites the modules of ``LAZY_PACKAGES`` in the staged artifact so that
what nothing reads while a module is being imported is made the first time one of
its names is looked up (``tools/lazy_runtime.py``, shipped as
``_pennyworth_lazy.py``, resolves the names through the module's builtins and its
module class). Nothing is stubbed or dropped: a name resolves to the very object
the eager module would have bound, or raises the same error where it is used.

What is deferred, per module (``Project.plan``):

* a top-level ``import``/``from … import`` none of whose names is read at import
  time (module level, class bodies, decorators, default values) or bound by
  anything else; a name several such imports bind resolves to the last one's;
* a top-level ``name = <expression>`` (kept as a lambda), ``class`` or block made
  only of imports and assignments (``try: import x / except ImportError: x =
  None``), kept as comments, whose names only functions or other deferred
  definitions read, and whose reads are each bound by one statement;
* ``from x import *`` when x's public names are known statically (its
  ``__all__`` literal, or what it binds) and none is read at import time; the
  earlier bindings it replaces by other values are unbound at that point.

A function's ``isinstance(x, C)`` (``C`` alone or in a tuple), where ``C`` is a class a
deferred ``class`` statement defines (here, or in the module it is imported from), reads
``_pennyworth_isinstance_C`` instead: a deferred name that stands for the class once built,
else ``()``, kept in the module's globals either way (a plain lookup on every later check).
Nothing is an instance of a class that does not exist yet, and asking must not build it:
LiteLLM's logging asks, on every chat, whether the result is a Responses API object, which
built the OpenAI SDK's Responses types on every cold start.

Signature and module-level variable annotations become strings (PEP 563, which
``from __future__ import annotations`` gives; class bodies keep theirs, as
pydantic, dataclasses and TypedDict read them while a class is built):
``typing.get_type_hints`` and pydantic evaluate them with the module's globals,
which resolve deferred names. A module that calls ``globals()`` (or ``locals()``
or ``vars()`` at module level) is left as it is: it reads its namespace directly.

A module is rewritten by exact edits of its source at the AST's positions (its
comments stay, its lines keep their numbers but for the install line); the result
must compile, or the build stops. The bytecode step (``compile_deferred_classes``)
compiles each imported module's deferred classes and blocks beside its bytecode,
with the names the build's trace resolved in it (hot: resolved as its import ends,
so a cold path's own work is not left for after Bedrock has answered).

``tests/test_lazy_imports.py`` holds the semantics; ``make test-artifact`` runs
every LiteLLM path the gateway uses against the rewritten artifact and fails when a
cold chat loads a module a rule keeps out (``tests/test_artifact.py``): a LiteLLM
upgrade that defeats a rule is a failing test, not a silent slow start.
"""

from __future__ import annotations
import __future__

import ast
import collections
import hashlib
import json
import marshal
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the runtime half lands in the artifact (importable from /var/task).
RUNTIME_MODULE = "_pennyworth_lazy"
#: A rewritten module's own ``__getattr__`` is renamed so its deferred names come first.
MODULE_GETATTR = "_pennyworth_module_getattr"
#: ``isinstance(x, Name)`` in a function, where ``Name`` is a deferred class, reads this prefix + ``Name``:
#: the class, or ``()`` until it is built (``tools/lazy_runtime.py``, ``_Names._classes``).
CLASS_CHECK = "_pennyworth_isinstance_"
#: Beside a module's bytecode (``x.cpython-312.pyc`` → ``x.cpython-312.pennyworth-classes``): its
#: deferred classes and blocks, compiled (run instead of compiling their commented lines), and its hot names.
CLASSES_SUFFIX = ".pennyworth-classes"
RUNTIME_SOURCE = Path(__file__).with_name("lazy_runtime.py")


@dataclass(frozen=True)
class LazyPackage:
    """A package whose modules' imports are deferred, why that is worth it, and the modules that must be."""

    name: str
    reason: str
    #: Modules whose rewrite is the point: the build fails when one can no longer be rewritten.
    required: tuple[str, ...]


LAZY_PACKAGES: tuple[LazyPackage, ...] = (
    LazyPackage(
        "litellm",
        "its __init__ and core modules import every provider, the proxy's types and the logging "
        "integrations at their top; the gateway calls completion, embedding and token counting",
        ("litellm", "litellm.main", "litellm.utils", "litellm.litellm_core_utils.litellm_logging"),
    ),
    LazyPackage(
        "openai",
        "LiteLLM's types import the SDK, whose package __init__s import every type it has "
        "(evals, graders, beta assistants: ~0.5 s); LiteLLM reads a few of them",
        ("openai.types", "openai.types.beta", "openai.types.responses", "openai.types.chat"),
    ),
)

#: Names whose use means a module reads its own namespace as a dict.
_NAMESPACE_READERS = frozenset({"globals"})
_MODULE_LEVEL_NAMESPACE_READERS = frozenset({"globals", "locals", "vars"})

Spec = tuple[str, Any, str]


class RewriteError(RuntimeError):
    """A rewritten module would not mean what the original meant; the build stops."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_star(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and any(alias.name == "*" for alias in stmt.names)


def _is_future(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


class _ImportTime(ast.NodeVisitor):
    """Names read and bound while a module body runs (function and lambda bodies excluded).

    Function annotations and module-level variable annotations are not read: they are
    strings in every rewritten module (see ``_signature_annotations``).
    """

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.binds: collections.Counter[str] = collections.Counter()
        self.bind_lines: dict[str, list[int]] = collections.defaultdict(list)

    def bind(self, name: str, line: int) -> None:
        self.binds[name] += 1
        self.bind_lines[name].append(line)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loads.add(node.id)
        else:
            self.bind(node.id, node.lineno)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name, node.lineno)
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)
        for param in getattr(node, "type_params", []):
            self.visit(param)

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node.name, node.lineno)
        for expr in [*node.decorator_list, *node.bases, *node.keywords, *getattr(node, "type_params", [])]:
            self.visit(expr)
        body = _ImportTime()  # names a class body binds are class attributes, not module globals
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign):
                # pydantic, dataclasses and TypedDict evaluate these while the class is built
                body.annotation(stmt.annotation)
                if stmt.value is not None:
                    body.visit(stmt.value)
            else:
                body.visit(stmt)
        self.loads |= body.loads

    def annotation(self, node: ast.expr) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return
        self.visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        # A module-level variable annotation is a string once rewritten: never evaluated.
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        for stmt in node.orelse if _is_type_checking(node.test) else [*node.body, *node.orelse]:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.bind(alias.asname or alias.name.split(".")[0], node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.bind(alias.asname or alias.name, node.lineno)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name, node.lineno)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.bind(node.name, node.lineno)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name, node.lineno)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest, node.lineno)
        self.generic_visit(node)


def _has_future_annotations(tree: ast.Module) -> bool:
    return any(_is_future(stmt) and any(a.name == "annotations" for a in stmt.names) for stmt in tree.body)


def _reads_namespace(source: bytes, tree: ast.Module, module_level: _ImportTime) -> bool:
    if module_level.loads & _MODULE_LEVEL_NAMESPACE_READERS:
        return True
    if not any(name.encode() in source for name in _NAMESPACE_READERS):
        return False
    return any(isinstance(node, ast.Name) and node.id in _NAMESPACE_READERS for node in ast.walk(tree))


def _assigned(stmt: ast.stmt) -> set[str]:
    """Names an assignment statement binds directly (``__all__ = [...]``, ``__all__ += [...]``)."""
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _bound_names(stmt: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(stmt, ast.Import):
        return [alias.asname or alias.name.split(".")[0] for alias in stmt.names]
    return [alias.asname or alias.name for alias in stmt.names]


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    future: bool
    import_time: _ImportTime
    #: What each top-level statement reads while it runs, and binds (same order as ``tree.body``).
    statement_loads: list[set[str]]
    statement_binds: list[set[str]]
    rewritable: bool | None = None
    #: Names read at import time once the deferred values are left out (see ``Project.deferred_values``).
    loads: set[str] | None = None
    values: list[ast.stmt] | None = None
    blocks: dict[int, set[str]] | None = None  # id(statement) → the names a deferred definition binds

    def absolute(self, stmt: ast.ImportFrom) -> str:
        if not stmt.level:
            return str(stmt.module)
        parts = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        parts = parts[: len(parts) - (stmt.level - 1)]
        return ".".join([*parts, stmt.module] if stmt.module else parts)


@dataclass
class Plan:
    """What a module's rewrite does: the statements it defers and the names it resolves late."""

    deferred: list[ast.stmt]
    lazy_stars: dict[ast.stmt, list[str]]  # statement → earlier bindings it replaces (unbound there)
    eager_stars: list[ast.stmt]
    table: dict[str, Spec]
    values: list[ast.stmt]  # assignments evaluated on first use


class Project:
    """The modules of some packages under ``site``, analysed together (star imports cross modules)."""

    def __init__(self, site: Path, packages: tuple[str, ...]) -> None:
        self.site = site
        self.paths: dict[str, tuple[Path, bool]] = {}
        for package in packages:
            root = site / package
            if not (root / "__init__.py").is_file():
                raise RewriteError(f"{package} is not a package under {site}")
            for path in sorted(root.rglob("*.py")):
                relative = path.relative_to(site).with_suffix("")
                is_package = relative.name == "__init__"
                name = ".".join(relative.parts[:-1] if is_package else relative.parts)
                self.paths[name] = (path, is_package)
        self._modules: dict[str, _Module] = {}
        self._exports: dict[str, dict[str, Spec] | None] = {}
        self._bindings: dict[str, dict[str, list[tuple[int, tuple[Any, ...]]]]] = {}

    def module(self, name: str) -> _Module:
        if name not in self._modules:
            path, is_package = self.paths[name]
            tree = ast.parse(path.read_bytes(), filename=str(path))
            import_time = _ImportTime()
            statement_loads: list[set[str]] = []
            statement_binds: list[set[str]] = []
            for stmt in tree.body:
                visitor = _ImportTime()
                if not _is_future(stmt) and not _is_star(stmt):
                    visitor.visit(stmt)
                statement_loads.append(visitor.loads)
                statement_binds.append(set(visitor.binds))
                import_time.loads |= visitor.loads
                import_time.binds.update(visitor.binds)
                for bound, lines in visitor.bind_lines.items():
                    import_time.bind_lines[bound].extend(lines)
            future = _has_future_annotations(tree)
            self._modules[name] = _Module(
                name, path, is_package, tree, future, import_time, statement_loads, statement_binds
            )
        return self._modules[name]

    def rewritable(self, name: str) -> bool:
        module = self.module(name)
        if module.rewritable is None:
            getattr_defs = [s for s in module.tree.body if isinstance(s, ast.FunctionDef) and s.name == "__getattr__"]
            module.rewritable = not _reads_namespace(module.path.read_bytes(), module.tree, module.import_time) and (
                module.import_time.binds["__getattr__"] == len(getattr_defs) <= 1
            )
        return module.rewritable

    # --- what a binding is bound to -------------------------------------------------------------

    def bindings(self, name: str) -> dict[str, list[tuple[int, tuple[Any, ...]]]]:
        """Each module-level name → [(line, origin)]; an import's origin is what it imports."""
        if name in self._bindings:
            return self._bindings[name]
        module = self.module(name)
        found: dict[str, list[tuple[int, tuple[Any, ...]]]] = collections.defaultdict(list)

        def walk(stmts: list[ast.stmt]) -> None:
            for stmt in stmts:
                if isinstance(stmt, ast.ImportFrom) and not _is_star(stmt) and not _is_future(stmt):
                    for alias in stmt.names:
                        origin = ("from", module.absolute(stmt), alias.name)
                        found[alias.asname or alias.name].append((stmt.lineno, origin))
                elif isinstance(stmt, ast.Import):
                    for alias in stmt.names:
                        top = alias.name if alias.asname else alias.name.split(".")[0]
                        found[alias.asname or top].append((stmt.lineno, ("module", top)))
                elif isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                    walk(stmt.orelse)
                elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
                    for field in ("body", "orelse", "finalbody"):
                        walk(getattr(stmt, field, []))
                    for handler in getattr(stmt, "handlers", []):
                        walk(handler.body)

        walk(module.tree.body)
        for bound, lines in module.import_time.bind_lines.items():
            imported = {line for line, _ in found.get(bound, [])}
            for line in lines:
                if line not in imported:
                    found[bound].append((line, ("def", name, bound, line)))
        for entries in found.values():
            entries.sort()
        self._bindings[name] = found
        return found

    def origin(self, spec: tuple[Any, ...], depth: int = 0) -> tuple[Any, ...]:
        """Where a value comes from, following ``from x import a`` through modules that import ``a``."""
        if spec[0] in ("from", "star") and spec[1] in self.paths and depth < 32:
            entries = self.bindings(spec[1]).get(spec[2], [])
            if len(entries) == 1:
                only = entries[0][1]
                return self.origin(only, depth + 1) if only[0] in ("from", "module") else only
        if spec[0] == "star":
            return ("from", spec[1], spec[2])
        return spec

    def deferred_class(self, name: str, bound: str, spec: Spec) -> tuple[str, str] | None:
        """Where ``bound`` (deferred in module ``name``) is defined, when a deferred ``class`` statement defines it.

        (module, class name): the class exists only once that statement has run, so until
        then nothing is an instance of it (nor of a subclass, which needs it built first).
        """
        if spec[0] == "block":
            origin: tuple[Any, ...] = ("def", name, bound)
        elif spec[0] in ("from", "star"):
            origin = self.origin(spec)
        else:
            return None
        if origin[0] != "def" or origin[1] not in self.paths or not self.rewritable(origin[1]):
            return None
        values, _ = self.deferred_values(origin[1])
        if any(isinstance(stmt, ast.ClassDef) and stmt.name == origin[2] for stmt in values):
            return origin[1], origin[2]
        return None

    def exports(self, name: str, active: tuple[str, ...] = ()) -> dict[str, Spec] | None:
        """What ``from name import *`` binds, or None when that cannot be known from the source."""
        if name not in self.paths or name in active:
            return None
        if name not in self._exports:
            self._exports[name] = self._compute_exports(name, (*active, name))
        return self._exports[name]

    def _compute_exports(self, name: str, active: tuple[str, ...]) -> dict[str, Spec] | None:
        module = self.module(name)
        if not self.rewritable(name):
            return None
        if "__all__" in module.import_time.binds:
            listed: list[str] = []
            statements = [stmt for stmt in module.tree.body if "__all__" in _assigned(stmt)]
            if len(statements) != module.import_time.binds["__all__"]:
                return None  # bound somewhere this scan does not read (a branch, a loop)
            for stmt in statements:
                value = getattr(stmt, "value", None)
                if not isinstance(value, (ast.List, ast.Tuple)) or not all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
                ):
                    return None
                strings = [e.value for e in value.elts if isinstance(e, ast.Constant)]
                listed = listed + strings if isinstance(stmt, ast.AugAssign) else strings
            return {n: ("from", name, n) for n in listed}
        result: dict[str, Spec] = {}
        for stmt in module.tree.body:
            if _is_star(stmt):
                target = module.absolute(stmt)  # type: ignore[arg-type]
                if target == name:
                    continue  # ``from . import *`` in a package's own __init__ binds nothing new
                inner = self.exports(target, active)
                if inner is None:
                    return None
                result.update(inner)
        for bound in module.import_time.binds:
            if not bound.startswith("_"):
                result[bound] = ("star", name, bound)
        return result

    # --- the plan ---------------------------------------------------------------------------------

    def deferred_values(self, name: str) -> tuple[list[ast.stmt], set[str]]:
        """Module-level definitions made on first use, and what the rest reads at import time.

        ``name = <expression>``, ``class name: ...`` and a block that only binds names
        (``try: import x / except ImportError: x = None``, ``if sys.version_info …: from …
        import …``, ``with open(…) as f: data = json.load(f)``), whose names nothing at
        import time reads but other deferred definitions, are made the first time one of
        their names is looked up: a pydantic ``TypeAdapter``, a provider's config instance,
        a type alias, a TypedDict or a model the gateway never builds, a JSON file only a
        tokenizer reads, no longer cost anything (nor import anything) until used. What such
        a definition reads must be bound by one statement, so it sees what it would have.
        """
        module = self.module(name)
        if module.values is not None and module.loads is not None:
            return module.values, module.loads
        owners: dict[str, set[int]] = collections.defaultdict(set)
        for index, bound in enumerate(module.statement_binds):
            for each in bound:
                owners[each].add(index)
        candidates: dict[int, set[str]] = {}
        for index, stmt in enumerate(module.tree.body):
            target = _definition_target(stmt)
            targets = {target} if target is not None else _block_targets(stmt, module.statement_binds[index])
            if not targets or any(owners[t] != {index} for t in targets):
                continue
            if all(len(owners[read]) <= 1 for read in module.statement_loads[index]):
                candidates[index] = targets
        deferred = set(candidates)
        while True:
            loads = set().union(*(reads for i, reads in enumerate(module.statement_loads) if i not in deferred))
            keep = {i for i in deferred if not candidates[i] & loads}
            if keep == deferred:
                break
            deferred = keep
        module.values = [module.tree.body[i] for i in sorted(deferred)]
        module.loads = loads
        module.blocks = {id(module.tree.body[i]): candidates[i] for i in deferred}
        return module.values, loads

    def _replaces(self, name: str, bound: str, spec: Spec, line: int) -> bool:
        """Does a star import at ``line`` rebind ``bound`` to a different value than it had?"""
        earlier = [entry for entry in self.bindings(name).get(bound, []) if entry[0] < line]
        if not earlier:
            return False
        theirs = self.origin(spec)
        return theirs != ("from", name, bound) and theirs != self.origin(earlier[-1][1])

    def _already(self, name: str, bound: str, spec: Spec, line: int) -> bool:
        """Is ``bound`` already bound, before ``line``, to the value the star import would give it?"""
        earlier = [entry for entry in self.bindings(name).get(bound, []) if entry[0] < line]
        return bool(earlier) and not self._replaces(name, bound, spec, line)

    def _deferrable_imports(self, module: _Module, loads: set[str]) -> set[ast.stmt]:
        """Top-level imports none of whose names is read at import time or bound by anything else.

        A name several top-level imports bind (``ChatModel`` from two modules) resolves to the
        last one's, as it would have, as long as all of them are deferred.
        """
        imports = [s for s in module.tree.body if isinstance(s, (ast.Import, ast.ImportFrom)) and not _is_star(s)]
        imports = [s for s in imports if not _is_future(s)]
        by_name: dict[str, list[ast.stmt]] = collections.defaultdict(list)
        for stmt in imports:
            for bound in _bound_names(stmt):  # type: ignore[arg-type]
                by_name[bound].append(stmt)
        binds = module.import_time.binds
        deferrable = {
            stmt
            for stmt in imports
            if not any(n in loads or binds[n] != len(by_name[n]) for n in _bound_names(stmt))  # type: ignore[arg-type]
        }
        while True:  # a name bound by an eager import must not resolve to a deferred one's value
            keep = {s for s in deferrable if all(set(by_name[n]) <= deferrable for n in _bound_names(s))}  # type: ignore[arg-type]
            if keep == deferrable:
                return deferrable
            deferrable = keep

    def plan(self, name: str) -> Plan | None:
        if not self.rewritable(name):
            return None
        module = self.module(name)
        values, loads = self.deferred_values(name)
        plan = Plan([], {}, [], {}, values)
        deferrable = self._deferrable_imports(module, loads)
        flags = __future__.annotations.compiler_flag if module.future else 0
        for stmt in values:
            target = _definition_target(stmt)
            if target is not None and not isinstance(stmt, ast.ClassDef):
                plan.table[target] = ("value", _value_function(target), target)
                continue
            first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
            for bound in sorted((module.blocks or {})[id(stmt)]):
                plan.table[bound] = ("block", (first, stmt.end_lineno, flags), bound)
        by_top: dict[str, list[str]] = collections.defaultdict(list)
        for stmt in module.tree.body:
            if _is_future(stmt):
                continue
            if _is_star(stmt):
                assert isinstance(stmt, ast.ImportFrom)
                target = module.absolute(stmt)
                if target == name:
                    continue
                names = self.exports(target)
                if names is None or any(
                    n in loads and not self._already(name, n, spec, stmt.lineno) for n, spec in names.items()
                ):
                    plan.eager_stars.append(stmt)
                    continue
                plan.lazy_stars[stmt] = sorted(n for n, s in names.items() if self._replaces(name, n, s, stmt.lineno))
                for n, spec in names.items():
                    if self.origin(spec) == ("from", name, n) or self._already(name, n, spec, stmt.lineno):
                        continue  # its own name re-exported, or already bound to the same object
                    plan.table[n] = spec
                continue
            if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                continue
            if stmt not in deferrable:
                continue
            plan.deferred.append(stmt)
            if isinstance(stmt, ast.ImportFrom):
                target = module.absolute(stmt)
                for alias in stmt.names:
                    plan.table[alias.asname or alias.name] = ("from", target, alias.name)
            else:
                for alias in stmt.names:
                    if alias.asname:
                        plan.table[alias.asname] = ("import_as", alias.name, alias.asname)
                    else:
                        by_top[alias.name.split(".")[0]].append(alias.name)
        for top, dotted in by_top.items():
            plan.table[top] = ("import", tuple(dotted), top)
        return plan

    # --- the rewrite ------------------------------------------------------------------------------

    def rewrite(self, name: str, plan: Plan) -> str | None:
        """The module's new source, or None when it stays as it is.

        Exact text edits on the original source, each keeping its lines (its formatting and
        comments stay, and every line keeps its number but for the one the runtime's install
        adds after the docstring and ``__future__`` imports): a deferred import becomes
        ``pass``, a star import a call into the runtime, a deferred value a lambda, a
        deferred class comments, a signature annotation its string.
        """
        if not (plan.deferred or plan.lazy_stars or plan.eager_stars or plan.values):
            return None
        module = self.module(name)
        original = module.path.read_bytes().splitlines(keepends=True)
        edits: list[tuple[ast.AST, str, str]] = [(stmt, "pass", "statement") for stmt in plan.deferred]
        blocks: set[tuple[int, int, int]] = set()
        for stmt in plan.values:
            target = _definition_target(stmt)
            if target is None or isinstance(stmt, ast.ClassDef):
                blocks.add(plan.table[sorted((module.blocks or {})[id(stmt)])[0]][1])
                continue
            value = getattr(stmt, "value", None)
            assert value is not None
            # A lambda: a simple statement (valid after a `;`), on the lines of the assignment.
            text = f"{_value_function(target)} = lambda: " + " \\\n" * (value.lineno - stmt.lineno)
            edits.append((stmt, text + f"({_segment(original, value)})", "inline"))
        for stmt, names in plan.lazy_stars.items():
            edits.append((stmt, _runtime_call("unbind", tuple(names)) if names else "pass", "statement"))
        for stmt in module.tree.body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__":
                # The module's own __getattr__ runs after its deferred names, as it did when they
                # were in its dict (tools/lazy_runtime.py, _Module): renamed, as an edit of its name.
                edits.append((_name_of(stmt, original), MODULE_GETATTR, "inline"))
        for stmt in plan.eager_stars:
            # What this module reads at import time must be bound now, deferred over there or not.
            target = module.absolute(stmt)  # type: ignore[arg-type]
            needed = tuple(sorted(module.loads or ()))
            call = f"__import__({RUNTIME_MODULE!r}).star(globals(), {target!r}, {needed!r})"
            edits.append((stmt, call, "statement"))
        lambdas = {
            id(stmt)
            for stmt in plan.values
            if _definition_target(stmt) is not None and not isinstance(stmt, ast.ClassDef)
        }
        if not module.future:
            for node in _signature_annotations(module.tree, skip=lambdas):
                edits.append((node, repr(ast.unparse(node)), "inline"))
        classes = {bound: self.deferred_class(name, bound, spec) for bound, spec in plan.table.items()}
        defined = {bound: where for bound, where in classes.items() if where is not None}
        if module.import_time.binds.get("isinstance"):
            defined = {}
        aliases: dict[str, Spec] = {}
        for node in _isinstance_sites(module.tree, defined, skip=lambdas):
            # Asking whether something is an instance of a class nobody has built yet must not build
            # it (LiteLLM's logging asks, on every chat, whether a result is a Responses API object).
            alias = CLASS_CHECK + node.id
            aliases[alias] = ("isinstance", (node.id, *defined[node.id]), alias)
            edits.append((node, alias, "inline"))
        lines = list(original)
        for node, text, mode in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
            _replace(lines, node, text, mode)
        lines = b"".join(lines).splitlines(keepends=True)
        if len(lines) != len(original):
            raise RewriteError(f"{name}: an edit changed the number of lines")
        head = [stmt for stmt in module.tree.body[:1] if _is_docstring(stmt)]
        head += [stmt for stmt in module.tree.body if _is_future(stmt)]
        at = max(stmt.end_lineno or stmt.lineno for stmt in head) if head else module.tree.body[0].lineno - 1
        for first, last, _ in blocks:
            # A deferred class or block stays in the file as comments (tracebacks show it); the runtime
            # runs its compiled code, or compiles these lines less their "#", when it is first needed.
            for index in range(first - 1, last):
                lines[index] = b"#" + lines[index]
        table = {  # +1: the install line
            bound: ("block", (spec[1][0] + 1, spec[1][1] + 1, spec[1][2]), bound) if spec[0] == "block" else spec
            for bound, spec in plan.table.items()
        } | aliases
        lines.insert(at, f"__builtins__ = __import__({RUNTIME_MODULE!r}).install(globals(), {table!r})\n".encode())
        if lines and not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        lines.append(f"__import__({RUNTIME_MODULE!r}).ready(globals())\n".encode())
        source = b"".join(lines).decode()
        try:
            compile(source, str(module.path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise RewriteError(f"{name}: the rewrite is not valid Python ({exc})") from exc
        return source

    def rewrite_all(self) -> dict[str, tuple[Plan | None, str | None]]:
        """Every module's plan and new source (None: unchanged)."""
        plans = {name: self.plan(name) for name in self.paths}
        return {name: (plan, self.rewrite(name, plan) if plan else None) for name, plan in plans.items()}


def _definition_target(stmt: ast.stmt) -> str | None:
    """The name a top-level ``class`` or ``name = <expression>`` binds, when it can be made later.

    An expression of constants has nothing to save; one with a walrus, ``yield`` or
    ``await`` would mean something else inside a lambda.
    """
    if isinstance(stmt, ast.ClassDef):
        return None if stmt.name.startswith("__") else stmt.name
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.simple:
        target, value = stmt.target, stmt.value
    else:
        return None
    if not isinstance(target, ast.Name) or target.id.startswith("__"):
        return None
    nodes = list(ast.walk(value))
    if not any(isinstance(node, (ast.Call, ast.Name)) for node in nodes):
        return None
    if any(isinstance(node, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await)) for node in nodes):
        return None
    return target.id


def _block_targets(stmt: ast.stmt, bound: set[str]) -> set[str]:
    """The names a top-level ``try``/``if``/``with`` binds, when all it does is bind names.

    Only imports, assignments to names, ``pass`` and nested blocks of those: a call made for
    its effect (``uvloop.install()``) would not happen if nothing read what the block binds.
    """
    if not isinstance(stmt, (ast.Try, ast.If, ast.With)) or (isinstance(stmt, ast.If) and _is_type_checking(stmt.test)):
        return set()
    return {name for name in bound if not name.startswith("__")} if _only_binds(stmt) else set()


def _only_binds(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.Pass)):
        return True
    if isinstance(stmt, ast.ImportFrom):
        return not _is_star(stmt)
    if isinstance(stmt, ast.Assign):
        return all(
            isinstance(t, ast.Name) or (isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name) for e in t.elts))
            for t in stmt.targets
        )
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name)
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Constant)
    if isinstance(stmt, ast.If):
        return all(_only_binds(s) for s in [*stmt.body, *stmt.orelse])
    if isinstance(stmt, ast.With):
        return all(_only_binds(s) for s in stmt.body)
    if isinstance(stmt, ast.Try):
        handlers = [s for handler in stmt.handlers for s in handler.body]
        return all(_only_binds(s) for s in [*stmt.body, *handlers, *stmt.orelse, *stmt.finalbody])
    return False


def _value_function(name: str) -> str:
    return f"_pennyworth_value_{name}"


def _segment(lines: list[bytes], node: ast.AST) -> str:
    """``node``'s exact source text (positions are UTF-8 byte offsets)."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    if first == last:
        return lines[first][node.col_offset : node.end_col_offset].decode()
    chunks = [lines[first][node.col_offset :], *lines[first + 1 : last], lines[last][: node.end_col_offset]]
    return b"".join(chunks).decode()


def _name_of(function: ast.FunctionDef, lines: list[bytes]) -> ast.AST:
    """A node spanning exactly the name of ``def name(``, for an edit that renames it."""
    line = lines[function.lineno - 1]
    start = line.find(b"def ", function.col_offset) + len(b"def ")
    while line[start : start + 1] in (b" ", b"\t"):
        start += 1
    if line[start : start + len(function.name)] != function.name.encode():
        raise RewriteError(f"cannot find the name of {function.name} on line {function.lineno}")
    node = ast.Name(function.name)
    node.lineno = node.end_lineno = function.lineno
    node.col_offset, node.end_col_offset = start, start + len(function.name)
    return node


def _isinstance_sites(tree: ast.Module, classes: dict[str, Any], skip: set[int]) -> list[ast.Name]:
    """Names in ``classes`` given as ``isinstance``'s classes (alone or in a tuple) in a function's body.

    Only where the name is the module's global: not where the function (or a function
    around it, or one within) binds it, nor where it binds ``isinstance``. What runs at import
    time is left alone (such a name is not deferred), and so are statements in ``skip`` (ids),
    which are replaced whole.
    """
    found: list[ast.Name] = []

    def classes_of(node: ast.expr) -> list[ast.Name]:
        if isinstance(node, ast.Name):
            return [node]
        if isinstance(node, ast.Tuple):
            return [name for element in node.elts for name in classes_of(element)]
        return []

    def function(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        bound = _bound_anywhere(node)
        if "isinstance" in bound:
            return
        body: list[ast.AST] = [node.body] if isinstance(node, ast.Lambda) else list(node.body)
        for part in body:
            for call in ast.walk(part):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "isinstance"
                    and len(call.args) == 2
                    and not call.keywords
                ):
                    continue
                found.extend(n for n in classes_of(call.args[1]) if n.id in classes and n.id not in bound)

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if id(child) in skip:
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                function(child)
            else:
                walk(child)

    if classes:
        walk(tree)
    return found


def _bound_anywhere(node: ast.AST) -> set[str]:
    """Every name a function (with what it nests, its signature included) binds: a superset of its locals."""
    names: set[str] = set()
    for each in ast.walk(node):
        if isinstance(each, ast.Name) and not isinstance(each.ctx, ast.Load):
            names.add(each.id)
        elif isinstance(each, ast.arg):
            names.add(each.arg)
        elif isinstance(each, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(each.name)
        elif isinstance(each, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name.split(".")[0] for alias in each.names)
        elif isinstance(each, (ast.Global, ast.Nonlocal)):
            names.update(each.names)
        elif isinstance(each, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and each.name:
            names.add(each.name)
        elif isinstance(each, ast.MatchMapping) and each.rest:
            names.add(each.rest)
    return names


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _signature_annotations(tree: ast.Module, skip: set[int]) -> list[ast.expr]:
    """Annotations that become strings: function signatures (not in function bodies), module-level variables.

    A class body's own annotations are left as they are (pydantic, dataclasses and
    TypedDict read them while the class is built); so are a nested function's, which
    may name its enclosing function's locals. Statements in ``skip`` (ids) are replaced whole.
    """
    found: list[ast.expr] = []

    def walk(stmts: list[ast.stmt], in_class: bool) -> None:
        for stmt in stmts:
            if id(stmt) in skip:
                continue
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = stmt.args
                for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                    if arg is not None and arg.annotation is not None:
                        found.append(arg.annotation)
                if stmt.returns is not None:
                    found.append(stmt.returns)
            elif isinstance(stmt, ast.ClassDef):
                walk(stmt.body, True)
            elif isinstance(stmt, ast.AnnAssign) and not in_class:
                found.append(stmt.annotation)
            elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(stmt, field, []), in_class)
                for handler in getattr(stmt, "handlers", []):
                    walk(handler.body, in_class)

    walk(tree.body, False)
    return [node for node in found if not (isinstance(node, ast.Constant) and isinstance(node.value, str))]


def _replace(lines: list[bytes], node: ast.AST, text: str, mode: str) -> None:
    """Replace ``node``'s exact source span (UTF-8 byte offsets) with ``text``, keeping its lines.

    ``text`` that spans fewer lines than the node is padded: with newlines after a statement
    that ends its line, else with backslash continuations (inside a signature, an annotated
    assignment, after a lambda, before what follows a statement on its last line).
    """
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    start, end = node.col_offset, node.end_col_offset or 0
    before, after = lines[first][:start], lines[last][end:]
    missing = last - first - text.count("\n")
    if missing <= 0:
        padding = ""
    elif mode == "statement" and not after.strip(b" \t\r\n"):
        padding, after = "\n" * missing, b"\n"
    else:
        padding = " \\\n" * missing
    lines[first : last + 1] = [before + text.encode() + padding.encode() + after]


def _runtime_call(function: str, argument: object) -> str:
    return f"__import__({RUNTIME_MODULE!r}).{function}(globals(), {argument!r})"


def rewrite_packages(
    site: Path, packages: tuple[LazyPackage, ...] = LAZY_PACKAGES, cache: Path | None = None
) -> dict[str, Any]:
    """Rewrite ``packages`` under ``site`` in place and install the runtime; returns a report.

    Parsing LiteLLM and the SDK (~50 MB of source) takes half a minute, so the result is
    kept in ``cache``, keyed by the sources read and by this tool's own code.
    """
    key = _cache_key(site, packages)
    stored = cache / key if cache is not None else None
    cached = stored is not None and (stored / "report.json").is_file()
    if cached:
        assert stored is not None
        report = json.loads((stored / "report.json").read_text())
        for relative in report["files"]:
            shutil.copyfile(stored / "files" / relative, site / relative)
    else:
        report = _rewrite(site, packages)
        if stored is not None and cache is not None:
            shutil.rmtree(cache, ignore_errors=True)
            for relative in report["files"]:
                (stored / "files" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(site / relative, stored / "files" / relative)
            (stored / "report.json").write_text(json.dumps(report))
    (site / f"{RUNTIME_MODULE}.py").write_text(RUNTIME_SOURCE.read_text())
    return {"cached": cached, **{name: value for name, value in report.items() if name != "files"}}


def _rewrite(site: Path, packages: tuple[LazyPackage, ...]) -> dict[str, Any]:
    project = Project(site, tuple(p.name for p in packages))
    results = project.rewrite_all()
    for package in packages:
        for required in package.required:
            if results.get(required, (None, None))[1] is None:
                raise RewriteError(f"{required} can no longer be rewritten: update tools/lazy_imports.py")
    files: list[str] = []
    deferred = 0
    for name, (plan, source) in results.items():
        if plan is None or source is None:
            continue
        path = project.paths[name][0]
        path.write_text(source)
        files.append(str(path.relative_to(site)))
        deferred += len(plan.table)
    return {
        "packages": {p.name: p.reason for p in packages},
        "modules_rewritten": len(files),
        "names_deferred": deferred,
        "modules_left_as_they_are": sorted(name for name, (plan, _) in results.items() if plan is None),
        "files": files,
    }


def _cache_key(site: Path, packages: tuple[LazyPackage, ...]) -> str:
    digest = hashlib.sha256()
    for tool in (Path(__file__), RUNTIME_SOURCE):
        digest.update(tool.read_bytes())
    for package in packages:
        digest.update(repr(package).encode())
        for path in sorted((site / package.name).rglob("*.py")):
            digest.update(str(path.relative_to(site)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def compile_deferred_classes(source: str, cfile: str, dfile: str, hot: tuple[str, ...] = ()) -> int:
    """Compile a rewritten module's deferred classes and blocks beside its bytecode ``cfile``; returns how many.

    Run by the bytecode step (``tools/package.py``), under the same interpreter flags, for the
    modules a cold path imports, with ``hot``: the deferred names the build's trace resolved in
    that module, which its ``ready()`` resolves at import (``tools/lazy_runtime.py``). A class
    a cold path needs then costs what it cost before, when it did (no compiling at run time,
    nothing left for after Bedrock has answered), and one no path needs costs nothing. Code
    objects carry ``dfile``, so tracebacks name the file where Lambda has it.
    """
    lines = Path(source).read_bytes().splitlines(keepends=True)
    prefix = f"__builtins__ = __import__({RUNTIME_MODULE!r}).install(globals(), ".encode()
    install = next((line for line in lines if line.startswith(prefix)), None)
    if install is None:
        return 0
    call = ast.parse(install).body[0].value  # type: ignore[attr-defined]
    table: dict[str, Spec] = ast.literal_eval(call.args[1])
    blocks = {}
    for kind, where, _ in table.values():
        if kind == "block" and where[0] not in blocks:
            first, last, flags = where
            text = b"".join(line[1:] for line in lines[first - 1 : last]).decode()
            code = compile("\n" * (first - 1) + text, dfile, "exec", flags=flags, dont_inherit=True)
            blocks[first] = (last, code)
    hot = tuple(name for name in hot if name in table)
    if blocks or hot:
        compiled = {"blocks": blocks, "hot": hot}
        Path(cfile[: -len(".pyc")] + CLASSES_SUFFIX).write_bytes(marshal.dumps(compiled))
    return len(blocks)
