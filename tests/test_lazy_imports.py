"""tools/lazy_imports.py: a rewritten package means what the original meant, with its imports run late.

Each test writes a small package into a temporary site, rewrites it as the
artifact build does, and imports it in a fresh interpreter (``-S``: only the
site is importable), so module state never leaks between tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools.lazy_imports import LazyPackage, Project, RewriteError, rewrite_packages


def site_with(tmp_path: Path, files: dict[str, str]) -> Path:
    site = tmp_path / "site"
    for name, source in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"))
    return site


def rewrite(site: Path, *packages: str, required: tuple[str, ...] = ()) -> dict:
    return rewrite_packages(site, tuple(LazyPackage(name, "test", required) for name in packages))


def run(site: Path, code: str) -> dict:
    """Run ``code`` in a fresh interpreter over ``site``; it sets ``result``, which comes back as JSON."""
    script = f"import sys, json\nsys.path.insert(0, {str(site)!r})\n{textwrap.dedent(code)}\nprint(json.dumps(result))"
    done = subprocess.run([sys.executable, "-S", "-B", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


HEAVY = {
    "pkg/__init__.py": "",
    # Stands for an expensive module: importing it is recorded.
    "pkg/heavy.py": """
        import sys
        sys.modules.setdefault("loaded", type(sys)("loaded")).__dict__.setdefault("names", []).append(__name__)
        class Heavy:
            pass
        def helper():
            return "helped"
        def decorate(function):
            return function
        VALUE = 42
    """,
}


def loaded_code(expression: str) -> str:
    return f"""
        import pkg.user as user
        before = "pkg.heavy" in sys.modules
        value = {expression}
        result = {{"before": before, "after": "pkg.heavy" in sys.modules, "value": repr(value)}}
    """


def test_an_import_only_functions_use_runs_at_their_first_call(tmp_path: Path) -> None:
    # GIVEN a module whose function is the only reader of an import
    site = site_with(
        tmp_path, {**HEAVY, "pkg/user.py": "from pkg.heavy import helper\ndef call():\n    return helper()\n"}
    )
    rewrite(site, "pkg")
    # WHEN it is imported, THEN the import has not run; WHEN the function runs, THEN it has, once
    assert run(site, loaded_code("user.call()")) == {"before": False, "after": True, "value": "'helped'"}


@pytest.mark.parametrize(
    "use",
    [
        "class Sub(Heavy):\n    pass\nassert Sub\n",  # a base class, of a class used at import
        "@decorate\ndef f():\n    pass\n",  # a decorator
        "X = VALUE + 1\nassert X\n",  # a module-level value used at import
        "def f(x=VALUE):\n    return x\n",  # a default value
        "import dataclasses\n@dataclasses.dataclass\nclass D:\n    h: Heavy\nassert D\n",  # a class-body annotation
        "ITEMS = [v for v in (VALUE,)]\nlen(ITEMS)\n",  # a comprehension, read by a call
    ],
)
def test_what_runs_at_import_time_still_imports_eagerly(tmp_path: Path, use: str) -> None:
    user = "from pkg.heavy import Heavy, VALUE, decorate\n" + use
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert run(site, loaded_code("None"))["before"] is True


def test_function_annotations_become_strings_that_still_resolve(tmp_path: Path) -> None:
    # GIVEN a module without `from __future__ import annotations` annotating with a heavy type
    user = """
        from pkg.heavy import Heavy
        def make(x: Heavy) -> Heavy:
            return x
        class Box:
            def get(self) -> Heavy:
                return Heavy()
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import typing
        import pkg.user as user
        before = "pkg.heavy" in sys.modules
        hints = typing.get_type_hints(user.make)
        import pkg.heavy
        result = {"before": before, "same": hints["x"] is pkg.heavy.Heavy and hints["return"] is pkg.heavy.Heavy,
                  "method": typing.get_type_hints(user.Box.get)["return"] is pkg.heavy.Heavy}
    """
    # THEN the signature no longer imports it, and get_type_hints finds the very class
    assert run(site, code) == {"before": False, "same": True, "method": True}


def test_pydantic_reads_a_class_body_annotation_and_a_serializer_return_type(tmp_path: Path) -> None:
    user = """
        from pydantic import BaseModel, model_serializer
        from pkg.kinds import Kind
        from pkg.heavy import helper
        class Model(BaseModel):
            kind: Kind
            @model_serializer
            def dump(self) -> dict:
                return {"kind": self.kind.value, "helper": helper()}
    """
    kinds = "import enum\nclass Kind(enum.Enum):\n    A = 'a'\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/kinds.py": kinds, "pkg/user.py": user})
    rewrite(site, "pkg")
    pydantic_site = Path(__import__("pydantic").__file__).parent.parent
    code = f"""
        sys.path.append({str(pydantic_site)!r})
        import pkg.user as user
        before = "pkg.heavy" in sys.modules
        dumped = user.Model(kind="a").model_dump()
        result = {{"before": before, "dumped": dumped}}
    """
    assert run(site, code) == {"before": False, "dumped": {"kind": "a", "helper": "helped"}}


def test_attribute_access_from_outside_resolves_deferred_names(tmp_path: Path) -> None:
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": "from pkg.heavy import VALUE, Heavy as Renamed\n"})
    rewrite(site, "pkg")
    code = """
        import pkg.user as user
        from pkg.user import VALUE
        import pkg.heavy
        result = {"value": VALUE, "renamed": user.Renamed is pkg.heavy.Heavy, "in_dir": "VALUE" in dir(user),
                  "has_missing": hasattr(user, "missing")}
    """
    assert run(site, code) == {"value": 42, "renamed": True, "in_dir": True, "has_missing": False}


def test_a_deferred_import_that_fails_fails_where_it_is_used(tmp_path: Path) -> None:
    # GIVEN an import of a module that is not there (a pruned module): importing the user works
    site = site_with(
        tmp_path, {"pkg/__init__.py": "", "pkg/user.py": "import pkg.gone\ndef call():\n    return pkg.gone\n"}
    )
    rewrite(site, "pkg")
    code = """
        import pkg.user as user
        try:
            user.call()
        except ModuleNotFoundError as exc:
            result = exc.name
    """
    # THEN the first use raises the import error, loudly, naming the module
    assert run(site, code) == "pkg.gone"


def test_import_of_two_submodules_binding_one_name_loads_both(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "X = 'a'\n",
        "pkg/b.py": "X = 'b'\n",
        "pkg/user.py": "import pkg.a\nimport pkg.b\ndef call():\n    return pkg.a.X + pkg.b.X\n",
    }
    site = site_with(tmp_path, files)
    rewrite(site, "pkg")
    assert run(site, "import pkg.user\nresult = [pkg.user.call(), 'pkg.a' in sys.modules]") == ["ab", True]


def test_a_rebound_name_stays_eager(tmp_path: Path) -> None:
    user = """
        try:
            from pkg.heavy import helper
        except ImportError:
            helper = None
        from pkg.heavy import VALUE
        VALUE = 1
        def call():
            return VALUE
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert run(site, loaded_code("user.call()")) == {"before": True, "after": True, "value": "1"}


def test_a_module_that_reads_its_own_globals_is_left_as_it_is(tmp_path: Path) -> None:
    user = "from pkg.heavy import helper\ndef call(name):\n    return globals()[name]()\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    report = rewrite(site, "pkg")
    assert "pkg.user" in report["modules_left_as_they_are"]
    assert run(site, loaded_code("user.call('helper')"))["before"] is True


STAR = {
    "pkg/__init__.py": "",
    "pkg/api.py": """
        from pkg.heavy import helper
        __all__ = ["call", "limit"]
        limit = 3
        def call():
            return helper()
        def hidden():
            return "not exported"
    """,
    "pkg/loose.py": "from pkg.heavy import Heavy\nname = 'loose'\n_private = 'no'\ndef make():\n    return Heavy()\n",
}


def test_a_star_import_is_deferred_and_carries_the_names_it_would_bind(tmp_path: Path) -> None:
    front = """
        name = "mine"
        from pkg.api import *
        from pkg.loose import *
        def use():
            return call(), limit, name
    """
    site = site_with(tmp_path, {**HEAVY, **STAR, "pkg/front.py": front})
    rewrite(site, "pkg")
    code = """
        import pkg.front as front
        before = sorted(m for m in ("pkg.api", "pkg.loose", "pkg.heavy") if m in sys.modules)
        used = front.use()
        result = {"before": before, "used": list(used), "hidden": hasattr(front, "hidden"),
                  "private": hasattr(front, "_private"), "make": type(front.make()).__name__}
    """
    # THEN nothing ran at import; the star import's `name` replaced the earlier one, as it would have;
    # `__all__` is honoured and private names stay out
    assert run(site, code) == {
        "before": [],
        "used": ["helped", 3, "loose"],
        "hidden": False,
        "private": False,
        "make": "Heavy",
    }


def test_a_name_bound_after_a_star_import_wins_over_it(tmp_path: Path) -> None:
    front = "from pkg.loose import *\nname = 'mine'\ndef use():\n    return name\n"
    site = site_with(tmp_path, {**HEAVY, **STAR, "pkg/front.py": front})
    rewrite(site, "pkg")
    assert run(site, "import pkg.front\nresult = pkg.front.use()") == "mine"


def test_a_star_import_read_at_import_time_stays_eager(tmp_path: Path) -> None:
    front = "from pkg.api import *\nLIMIT_TWICE = limit * 2\n"
    site = site_with(tmp_path, {**HEAVY, **STAR, "pkg/front.py": front})
    rewrite(site, "pkg")
    assert run(site, "import pkg.front\nresult = [pkg.front.LIMIT_TWICE, 'pkg.api' in sys.modules]") == [6, True]


def test_type_checking_imports_are_left_alone(tmp_path: Path) -> None:
    user = """
        from typing import TYPE_CHECKING
        from pkg.heavy import helper
        if TYPE_CHECKING:
            from pkg.gone import Nothing
        def f(x: "Nothing") -> None:
            return helper()
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert "TYPE_CHECKING" in (site / "pkg" / "user.py").read_text()
    assert run(site, "import pkg.user\nresult = pkg.user.f(1)") == "helped"


def test_lines_after_a_deferred_import_keep_their_numbers(tmp_path: Path) -> None:
    # Tracebacks from the artifact point at the same lines as the upstream source.
    user = '"""Doc."""\nfrom pkg.heavy import (\n    helper,\n    VALUE,\n)\n\n'
    user += "def fail():\n    raise ValueError(helper())\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import traceback, pkg.user
        try:
            pkg.user.fail()
        except ValueError as exc:
            result = traceback.extract_tb(exc.__traceback__)[-1].lineno
    """
    # One line is added (the runtime is installed after the docstring): raise was on line 8.
    assert run(site, code) == 9


def test_the_build_fails_when_a_required_module_can_no_longer_be_rewritten(tmp_path: Path) -> None:
    # GIVEN an upgrade after which the module the rule exists for reads its own namespace
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": "from pkg.heavy import helper\nNAMES = globals()\n"})
    # THEN the build stops instead of shipping a silently slower artifact
    with pytest.raises(RewriteError, match="pkg.user can no longer be rewritten"):
        rewrite(site, "pkg", required=("pkg.user",))


def test_a_cached_rewrite_gives_the_same_files(tmp_path: Path) -> None:
    files = {**HEAVY, "pkg/user.py": "from pkg.heavy import helper\ndef call():\n    return helper()\n"}
    first, second = site_with(tmp_path / "a", files), site_with(tmp_path / "b", files)
    packages = (LazyPackage("pkg", "test", ()),)
    cache = tmp_path / "cache"
    made = rewrite_packages(first, packages, cache=cache)
    assert made["cached"] is False
    report = rewrite_packages(second, packages, cache=cache)
    assert report == {**made, "cached": True}
    assert (second / "pkg" / "user.py").read_text() == (first / "pkg" / "user.py").read_text()
    assert (second / "_pennyworth_lazy.py").read_text() == (first / "_pennyworth_lazy.py").read_text()


def test_star_exports_follow_all_and_nested_star_imports(tmp_path: Path) -> None:
    site = site_with(tmp_path, {**HEAVY, **STAR, "pkg/again.py": "from pkg.loose import *\nextra = 1\n"})
    project = Project(site, ("pkg",))
    assert set(project.exports("pkg.api") or {}) == {"call", "limit"}
    assert {"name", "make", "Heavy", "extra"} <= set(project.exports("pkg.again") or {})
    assert "_private" not in (project.exports("pkg.again") or {})


def test_a_module_level_value_only_functions_read_is_computed_once_on_first_use(tmp_path: Path) -> None:
    # GIVEN `name = <call>` (a pydantic TypeAdapter, a config instance) that only functions read
    user = """
        from pkg.heavy import Heavy
        INSTANCE = Heavy()
        LABEL = str(INSTANCE.__class__.__name__)
        def get():
            return INSTANCE, LABEL
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import threading
        import pkg.user as user
        before = "pkg.heavy" in sys.modules
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(user.get()[0])) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = {"before": before, "label": user.get()[1], "one_instance": len({id(i) for i in seen}) == 1,
                  "attribute": user.INSTANCE is seen[0]}
    """
    # THEN it is computed when first asked for, once, whatever thread asks (and from outside too)
    assert run(site, code) == {"before": False, "label": "Heavy", "one_instance": True, "attribute": True}


def test_a_value_read_at_import_time_is_computed_at_import_time(tmp_path: Path) -> None:
    user = """
        from pkg.heavy import helper
        FIRST = helper()
        SECOND = FIRST + "!"
        assert SECOND
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert run(site, loaded_code("user.SECOND")) == {"before": True, "after": True, "value": "'helped!'"}


def test_a_class_only_functions_use_is_defined_on_first_use_as_it_would_have_been(tmp_path: Path) -> None:
    # GIVEN classes nothing reads at import time: a subclass of a heavy class, a dataclass, a
    # pydantic model, a type alias; the module has `from __future__ import annotations`
    user = """
        \"\"\"Types.\"\"\"
        from __future__ import annotations
        import dataclasses
        from pydantic import BaseModel
        from pkg.heavy import Heavy, helper

        class Sub(Heavy):
            \"\"\"A subclass.\"\"\"
            def __init__(self) -> None:
                super().__init__()
            def hello(self) -> str:
                return __class__.__name__ + helper()

        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            y: int = 2

        class Model(BaseModel):
            point: int
            sub_name: str = "Sub"

        Alias = Sub | None

        def fail():
            raise ValueError("line 26 of the original")
        def make():
            return Sub(), Point(1), Model(point=3)
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    pydantic_site = Path(__import__("pydantic").__file__).parent.parent
    code = f"""
        sys.path.append({str(pydantic_site)!r})
        import dataclasses, pickle, traceback
        import pkg.user as user
        before = "pkg.heavy" in sys.modules
        sub, point, model = user.make()
        import pkg.heavy
        try:
            user.fail()
        except ValueError as exc:
            line = traceback.extract_tb(exc.__traceback__)[-1].lineno
        result = {{
            "before": before,
            "sub": [isinstance(sub, pkg.heavy.Heavy), sub.hello(), type(sub).__qualname__, type(sub).__module__,
                    type(sub).__doc__],
            "point": [dataclasses.astuple(point), [f.name for f in dataclasses.fields(point)]],
            "model": model.model_dump(),
            "alias": str(user.Alias),
            "same_class": type(sub) is user.Sub,
            "pickled": pickle.loads(pickle.dumps(point)) == point,
            "line": line,
        }}
    """
    assert run(site, code) == {
        "before": False,
        "sub": [True, "Subhelped", "Sub", "pkg.user", "A subclass."],
        "point": [[1, 2], ["x", "y"]],
        "model": {"point": 3, "sub_name": "Sub"},
        "alias": "pkg.user.Sub | None",
        "same_class": True,
        "pickled": True,
        "line": 27,  # 26 in the original: one line is added at the top (the runtime)
    }


def test_a_deferred_class_traceback_points_at_its_own_lines(tmp_path: Path) -> None:
    user = "from pkg.heavy import Heavy\nclass Sub(Heavy):\n    def fail(self):\n        raise ValueError\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import traceback, pkg.user
        try:
            pkg.user.Sub().fail()
        except ValueError as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            result = [frame.lineno, frame.line]
    """
    # The class is kept as comments: its frames keep their line numbers (+1: the runtime's line)
    assert run(site, code) == [5, "#        raise ValueError"]


def test_a_deferred_class_after_edits_that_change_line_counts_is_found_again(tmp_path: Path) -> None:
    # GIVEN a multi-line deferred import and a multi-line annotation above a deferred class
    user = """
        from pkg.heavy import (
            Heavy,
            helper,
        )
        def f(x: dict[
            str, int]) -> None:
            return helper()
        VALUE = (
            helper()
        )
        class Sub(Heavy):
            def name(self):
                return "sub"
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert run(site, "import pkg.user\nresult = [pkg.user.Sub().name(), pkg.user.VALUE]") == ["sub", "helped"]


def test_a_module_with_its_own_getattr_resolves_its_deferred_names_first(tmp_path: Path) -> None:
    # GIVEN a module whose __getattr__ answers names it does not have (LiteLLM's lazy attributes)
    # and whose deferred import binds a name that __getattr__ would send back to this module
    user = """
        from pkg.heavy import Heavy
        def __getattr__(name):
            if name == "Heavy":
                import pkg.user
                return getattr(pkg.user, "Heavy")  # looping, if Heavy were not found first
            if name == "extra":
                return "from __getattr__"
            raise AttributeError(name)
        def make():
            return Heavy()
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import pkg.user as user, pkg.heavy
        result = [user.Heavy is pkg.heavy.Heavy, user.extra, hasattr(user, "missing"), "extra" in dir(user)]
    """
    assert run(site, code) == [True, "from __getattr__", False, False]


def test_an_eager_star_import_binds_the_deferred_names_module_level_code_reads(tmp_path: Path) -> None:
    # GIVEN a star import of a module whose class is deferred, read by a default value at import
    files = {
        **HEAVY,
        "pkg/kinds.py": "import enum\nclass Kind(enum.Enum):\n    LOCAL = 'local'\n",
        "pkg/user.py": "from pkg.kinds import *\ndef enable(kind=Kind.LOCAL):\n    return kind.value\n",
    }
    site = site_with(tmp_path, files)
    rewrite(site, "pkg")
    assert run(site, "import pkg.user\nresult = pkg.user.enable()") == "local"


def test_deferred_classes_compiled_beside_the_bytecode_are_run_from_there(tmp_path: Path) -> None:
    # GIVEN a rewritten module compiled as the artifact's bytecode step compiles it
    import py_compile

    from tools.lazy_imports import compile_deferred_classes

    user = "from pkg.heavy import Heavy\nclass Sub(Heavy):\n    def name(self):\n        return 'compiled'\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    source = site / "pkg" / "user.py"
    cfile = site / "pkg" / "__pycache__" / "user.cpython-312.pyc"
    cfile.parent.mkdir(exist_ok=True)
    py_compile.compile(str(source), cfile=str(cfile), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert compile_deferred_classes(str(source), str(cfile), "/var/task/pkg/user.py") == 1
    # WHEN the commented source says something else (it is never compiled once the build did it)
    source.write_text(source.read_text().replace("'compiled'", "'from the source'"))
    code = """
        import pkg.user, traceback
        result = [pkg.user.Sub().name(), pkg.user.Sub.name.__code__.co_filename]
    """
    # THEN the compiled class runs, naming the file where Lambda has it
    assert run(site, code) == ["compiled", "/var/task/pkg/user.py"]


def compile_like_the_build(site: Path, module: str, hot: tuple[str, ...] = ()) -> None:
    import py_compile

    from tools.lazy_imports import compile_deferred_classes

    source = site / (module.replace(".", "/") + ".py")
    cfile = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
    cfile.parent.mkdir(exist_ok=True)
    py_compile.compile(str(source), cfile=str(cfile), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    compile_deferred_classes(str(source), str(cfile), str(source), hot)


def test_the_names_a_traced_path_resolved_are_resolved_at_import(tmp_path: Path) -> None:
    # GIVEN the build's trace resolved `helper` and `Sub` (a cold path uses them), not `Other`
    user = """
        from pkg.heavy import helper
        import pkg.gone
        class Sub:
            pass
        class Other:
            pass
        def use():
            return helper(), pkg.gone
    """
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    compile_like_the_build(site, "pkg.user", hot=("helper", "Sub", "pkg", "Other_not_deferred"))
    code = """
        import pkg.user as user
        names = vars(user)
        result = {"heavy": "pkg.heavy" in sys.modules, "Sub": "Sub" in names, "Other": "Other" in names}
        try:
            user.use()
        except ModuleNotFoundError as exc:
            result["gone"] = exc.name
    """
    # THEN they are bound when the module has been imported, the rest stays deferred, and a hot
    # name that cannot be resolved (pkg.gone is missing) leaves the import working: its use fails
    assert run(site, code) == {"heavy": True, "Sub": True, "Other": False, "gone": "pkg.gone"}


def test_a_block_that_only_binds_names_runs_when_one_of_them_is_first_used(tmp_path: Path) -> None:
    # GIVEN blocks that only bind names (an optional import with its fallback, a data file read
    # into a value) and a block that calls something for its effect
    user = """
        import json, sys
        try:
            from pkg.heavy import helper
        except ImportError:
            helper = None
        try:
            import pkg.missing as missing
        except ImportError:
            missing = "fallback"
        with open(__file__.replace("user.py", "data.json")) as f:
            data = json.load(f)
        TEXT = json.dumps(data)
        try:
            sys.modules.setdefault("effects", type(sys)("effects"))
        except Exception:
            pass
        def use():
            return helper(), missing, TEXT
    """
    files = {**HEAVY, "pkg/user.py": user, "pkg/data.json": '{"a": 1}'}
    site = site_with(tmp_path, files)
    rewrite(site, "pkg")
    code = """
        import pkg.user as user
        before = ["pkg.heavy" in sys.modules, "data" in vars(user), "effects" in sys.modules]
        result = {"before": before, "use": list(user.use())}
    """
    # THEN the binding blocks wait for their names (the fallback still applies), the other runs
    assert run(site, code) == {"before": [False, False, True], "use": ["helped", "fallback", '{"a": 1}']}


def test_an_annotated_value_is_deferred_whole(tmp_path: Path) -> None:
    user = "from typing import Final\nfrom pkg.heavy import helper\nLABEL: Final[str] = helper()\n"
    site = site_with(tmp_path, {**HEAVY, "pkg/user.py": user})
    rewrite(site, "pkg")
    assert run(site, loaded_code("user.LABEL")) == {"before": False, "after": True, "value": "'helped'"}


def test_isinstance_against_a_class_nobody_built_yet_does_not_build_it(tmp_path: Path) -> None:
    # GIVEN deferred classes that record being built, one of them imported by another module,
    # and functions asking isinstance about them (alone, in nested tuples, shadowed by a parameter)
    kinds = """
        BUILT = []
        class Big:
            BUILT.append("Big")
        class Sub(Big):
            BUILT.append("Sub")
        def make():
            return Sub()
    """
    user = """
        from pkg.kinds import Big, Sub
        class Local:
            pass
        def check(x):
            return [isinstance(x, Big), isinstance(x, (int, (Sub, str))), isinstance(x, Local)]
        def shadowed(x, Big=int):
            return isinstance(x, Big)
        def local():
            return Local()
    """
    site = site_with(tmp_path, {"pkg/__init__.py": "", "pkg/kinds.py": kinds, "pkg/user.py": user})
    rewrite(site, "pkg")
    code = """
        import pkg.user as user
        result = {"unbuilt": [user.check(1), user.check(1.5), "pkg.kinds" in sys.modules, "Local" in vars(user)]}
        import pkg.kinds as kinds
        result["imported"] = [user.check(1.5), list(kinds.BUILT)]
        result["shadowed"] = user.shadowed(3)
        made = kinds.make()
        result["built"] = [user.check(made), user.check(user.local()), list(kinds.BUILT)]
        result["still"] = user.check(1.5)
        # each answer is kept in the module's globals: a later check is a plain global lookup
        result["kept"] = vars(user)["_pennyworth_isinstance_Big"] is kinds.Big
    """
    # THEN asking does not build (nor import) them, a parameter's meaning is kept, and once they
    # are built the answers are the real ones
    assert run(site, code) == {
        "unbuilt": [[False, True, False], [False, False, False], False, False],
        "imported": [[False, False, False], []],
        "shadowed": True,
        "built": [[True, True, False], [False, False, True], ["Big", "Sub"]],
        "still": [False, False, False],
        "kept": True,
    }
