"""pytest plugin: run the tests against the built Lambda artifact instead of the dev venv.

``make test-artifact`` runs ``pytest -p tools.artifact_plugin`` with
``PENNYWORTH_ARTIFACT_DIR=build/<stage>/unzipped``. Before any test module is
imported, the artifact goes first on ``sys.path`` and ``app``/``chalicelib``
and the runtime dependencies are imported from it. At the end the session
fails if any runtime dependency was loaded from the venv instead, which is
how a pruned module would otherwise hide: a regular package's submodules are
only looked up inside the artifact, so pruning a needed one raises there.

Test-only packages (pytest, moto, the emulator's deps) still come from the
venv; ``chalice.test`` and the rest of Chalice's dev tooling too, because the
artifact carries only Chalice's runtime (``chalice/app.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from pathlib import Path

import pytest

_ARTIFACT: Path | None = None


def artifact_dir() -> Path:
    raw = os.environ.get("PENNYWORTH_ARTIFACT_DIR")
    if not raw or not (Path(raw) / "app.py").is_file():
        raise pytest.UsageError("PENNYWORTH_ARTIFACT_DIR must name an unzipped artifact (run make package first)")
    return Path(raw).resolve()


def runtime_packages(artifact: Path) -> set[str]:
    """Top-level importable names the artifact ships (its runtime dependencies and our code)."""
    names = set()
    for child in artifact.iterdir():
        if child.name.endswith((".dist-info", ".data")) or child.name.startswith(("_", ".")):
            continue
        if child.is_dir() or child.suffix in (".py", ".so"):
            names.add(child.name.split(".")[0])
    return names


class PrunedFinder:
    """Refuses packages the artifact prunes whole, which the venv would otherwise still supply."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (pruned from the artifact)", name=name)
        return None


def pruned_packages() -> set[str]:
    from tools.prune import RULES

    return {rule.path for rule in RULES if "/" not in rule.path}


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    global _ARTIFACT
    _ARTIFACT = artifact_dir()
    sys.path.insert(0, str(_ARTIFACT))
    sys.meta_path.insert(0, PrunedFinder(pruned_packages()))
    import chalice

    # Chalice's test client lives in the venv's full Chalice; the runtime part stays the artifact's.
    chalice.__path__.append(_venv_chalice())
    for name in ("app", "chalicelib.wiring", "litellm", "boto3"):
        module = importlib.import_module(name)
        if not Path(module.__file__).is_relative_to(_ARTIFACT):
            raise pytest.UsageError(f"{name} was imported from {module.__file__}, not from the artifact")


def _venv_chalice() -> str:
    for entry in sys.path:
        candidate = Path(entry) / "chalice" / "test.py"
        if candidate.is_file() and _ARTIFACT is not None and not candidate.parent.is_relative_to(_ARTIFACT):
            return str(candidate.parent)
    raise pytest.UsageError("the venv's chalice (for chalice.test) was not found")


def leaks(artifact: Path, modules: dict[str, object]) -> list[str]:
    """Runtime modules that were loaded from outside the artifact."""
    shipped = runtime_packages(artifact)
    # Aliases such as six.moves.* or zipp.compat.overlay.zipfile name standard-library modules.
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    found = []
    for name, module in modules.items():
        top = name.split(".")[0]
        path = getattr(module, "__file__", None)
        if top == "chalice" or top not in shipped or not path:
            continue
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(artifact) and not resolved.is_relative_to(stdlib):
            found.append(f"{name} ({path})")
    return sorted(found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ARTIFACT is None:
        return
    outside = leaks(_ARTIFACT, dict(sys.modules))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if outside:
        if reporter:
            reporter.write_line(f"artifact: {len(outside)} runtime modules came from outside it:", red=True)
            for line in outside[:30]:
                reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line(f"artifact: every runtime module came from {_ARTIFACT}", green=True)
