"""Deferred imports at run time: shipped in the artifact as ``_pennyworth_lazy.py``.

``tools/lazy_imports.py`` rewrites the modules of a few dependencies (LiteLLM,
the OpenAI SDK) so that an import whose names only function bodies use no
longer runs when the module is imported. The rewritten module starts with::

    __builtins__ = __import__("_pennyworth_lazy").install(globals(), {name: spec, ...})

A function looks a global up in its module's dict, then in the builtins it
captured when it was defined (``globals()["__builtins__"]``). ``install``
returns a dict of the real builtins whose ``__missing__`` imports a deferred
name the first time a function asks for it, and stores it in the module's
dict, so the second lookup is an ordinary one. Attribute access from outside
(``litellm.completion``, ``from litellm.utils import x``) goes through the
module's class, switched to ``_Module``, whose ``__getattr__`` resolves the
same names. ``eval`` with the module's globals (how pydantic and
``typing.get_type_hints`` resolve string annotations) finds them the same way.
A deferred module-level value (``name = <expression>``) is kept as a lambda
and computed, once, the first time ``name`` is looked up.

This file must stay importable with nothing but the standard library: it is
imported by the first rewritten module, before anything else.
"""

import builtins as _builtins
import importlib as _importlib
import sys as _sys
import threading as _threading
import types as _types

#: module name → its builtins (which hold its deferred names); one entry per rewritten module that ran.
_MODULES = {}
#: A deferred value is computed once, whichever thread asks first (re-entrant: values may use values).
_VALUES = _threading.RLock()


def _resolve(spec):
    """The value a deferred statement would have bound (raises KeyError when it binds nothing)."""
    kind, target, attr = spec
    if kind == "import":  # ``import a.b.c`` binds ``a``; ``target`` lists every dotted name bound to it
        for dotted in target:
            _importlib.import_module(dotted)
        return _sys.modules[attr]
    if kind == "import_as":  # ``import a.b as c``
        return _importlib.import_module(target)
    module = _importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        if kind == "star":  # ``from target import *`` binds only what target has
            raise KeyError(attr) from None
    try:  # ``from package import submodule``
        return _importlib.import_module(f"{target}.{attr}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{target}.{attr}":
            raise
    raise ImportError(f"cannot import name {attr!r} from {target!r} (deferred import)", name=target)


class _Names(dict):
    """A module's builtins: the real ones, then its deferred names (each resolved once, into its globals)."""

    def __missing__(self, name):
        spec = self.table.get(name)
        if spec is None:
            raise KeyError(name)
        if spec[0] == "value":  # ``name = <expression>``, kept as a lambda named spec[1]
            with _VALUES:
                if name not in self.module_globals:
                    self.module_globals[name] = self.module_globals[spec[1]]()
                return self.module_globals[name]
        value = _resolve(spec)
        self.module_globals[name] = value
        return value


class _Module(_types.ModuleType):
    """A rewritten module: attribute access falls back to its deferred names."""

    def __getattr__(self, name):
        entry = _MODULES.get(self.__name__)
        if entry is not None and name in entry.table:
            try:
                return entry.__missing__(name)
            except KeyError:
                pass
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}", name=name, obj=self)

    def __dir__(self):
        entry = _MODULES.get(self.__name__)
        return sorted(set(super().__dir__()) | set(entry.table if entry is not None else ()))


def install(module_globals, table):
    """Called first by a rewritten module: its builtins, and its module object made to resolve ``table``."""
    names = _Names(_builtins.__dict__)
    names.module_globals = module_globals
    names.table = table
    name = module_globals["__name__"]
    _MODULES[name] = names
    module = _sys.modules.get(name)
    if module is not None and module.__dict__ is module_globals and type(module) is _types.ModuleType:
        module.__class__ = _Module
    return names


def star(module_globals, target):
    """``from target import *``, also carrying target's deferred public names."""
    module = _importlib.import_module(target)
    public = getattr(module, "__all__", None)
    if public is not None:
        for name in public:
            module_globals[name] = getattr(module, name)
        return
    for name, value in list(module.__dict__.items()):
        if not name.startswith("_"):
            module_globals[name] = value
    theirs = _MODULES.get(target)
    mine = _MODULES.get(module_globals["__name__"])
    if theirs is not None and mine is not None:
        for name in theirs.table:
            if not name.startswith("_") and name not in module_globals:
                mine.table[name] = ("star", target, name)


def unbind(module_globals, names):
    """A deferred ``from x import *`` replaces these earlier bindings: from now on they resolve through x."""
    for name in names:
        module_globals.pop(name, None)
