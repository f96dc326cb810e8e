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
and computed, once, the first time ``name`` is looked up; a deferred class (or
block of imports and assignments) stays in the file as comments, and its lines
are run in the module's namespace, once, the first time one of its names is
looked up (compiled at build time beside the module's bytecode, or now).

What the build's trace (``tools/trace_imports.py``) resolved is *hot*: the
bytecode step lists it beside the module's bytecode, with the module's deferred
classes compiled, and ``ready()``, the rewritten module's last line, resolves it
then. A cold path's own work thus happens while LiteLLM is imported, as it did
before, and not after Bedrock has started answering; only what no traced path
uses stays deferred. That warm-up is best effort: a name that cannot be resolved
yet (a circular import still under way) stays deferred.

This file must stay importable with nothing but the standard library: it is
imported by the first rewritten module, before anything else.
"""

import builtins as _builtins
import importlib as _importlib
import marshal as _marshal
import os as _os
import sys as _sys
import threading as _threading
import types as _types

#: module name → its builtins (which hold its deferred names); one entry per rewritten module that ran.
_MODULES = {}
#: A deferred value is computed once, whichever thread asks first (re-entrant: values may use values).
_VALUES = _threading.RLock()
#: Set by the build's trace: every resolution is recorded, in order, per module (see ``resolved``).
_RECORDING = _os.environ.get("PENNYWORTH_LAZY_RECORD") == "1"
_RESOLVED = {}
#: (module, class name) → the (module globals, alias) that answered ``()`` for it (see ``_Names._classes``).
_UNBUILT = {}


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
        if _RECORDING:
            _RESOLVED.setdefault(self.module_globals["__name__"], {})[name] = None
        if spec[0] == "isinstance":  # the classes ``isinstance`` is given for a deferred class (see ``_classes``)
            return self._classes(name, *spec[1])
        if spec[0] == "value":  # ``name = <expression>``, kept as a lambda named spec[1]
            with _VALUES:
                if name not in self.module_globals:
                    self.module_globals[name] = self.module_globals[spec[1]]()
                return self.module_globals[name]
        if spec[0] == "block":  # a class or a block binding names, kept as comments on lines spec[1][0:2]
            with _VALUES:
                if name not in self.module_globals:
                    first, last, flags = spec[1]
                    done = self.__dict__.setdefault("blocks_run", set())
                    if first not in done:
                        done.add(first)
                        try:
                            self._run_block(first, last, flags)
                        except BaseException:
                            done.discard(first)  # as an import that failed: tried again next time
                            raise
                        self._built()
                    if name not in self.module_globals:  # the block ran without binding it
                        raise KeyError(name)
                return self.module_globals[name]
        value = _resolve(spec)
        self.module_globals[name] = value
        return value

    def _classes(self, alias, name, module, attr):
        """What ``alias`` stands for in ``isinstance(x, alias)``: ``name``, a class a deferred ``class``
        statement (``attr`` in ``module``) defines, once that statement has run; ``()`` before.

        Nothing can be an instance of a class (or of a subclass of it) that does not exist yet, and
        asking must not build it. Either answer is kept in the module's globals, so each later check
        is a plain global lookup; ``()`` is dropped again when the statement runs (``_built``).
        """
        with _VALUES:  # a class statement runs under this lock too: no answer outlives its build
            if alias not in self.module_globals:
                defining = _MODULES.get(module)
                if name in self.module_globals or (defining is not None and attr in defining.module_globals):
                    self.module_globals[alias] = self[name]  # built: resolved as any other use of the name
                else:
                    self.module_globals[alias] = ()
                    _UNBUILT.setdefault((module, attr), []).append((self.module_globals, alias))
            return self.module_globals[alias]

    def _built(self):
        """After a deferred block ran: the ``()`` kept for a class it has now built is dropped (``_classes``)."""
        module = self.module_globals["__name__"]
        for key in [key for key in _UNBUILT if key[0] == module and key[1] in self.module_globals]:
            for module_globals, alias in _UNBUILT.pop(key):
                module_globals.pop(alias, None)

    def _run_block(self, first, last, flags):
        compiled = self.compiled()["blocks"].get(first)
        if compiled is not None and compiled[0] == last:
            code = compiled[1]
        else:  # not compiled at build time (a module no traced path imports): compile its lines now
            path = self.module_globals["__file__"]
            with open(path, "rb") as file:
                lines = file.read().splitlines(keepends=True)
            text = b"".join(line[1:] for line in lines[first - 1 : last]).decode()
            # Padded to its own lines, so its tracebacks point at them; with the module's __future__ flags.
            code = compile("\n" * (first - 1) + text, path, "exec", flags=flags, dont_inherit=True)
        exec(code, self.module_globals)  # noqa: S102 - the module's own code, as its import would have run it

    def compiled(self):
        """What the build left beside the module's bytecode: ``blocks`` (compiled) and ``hot`` (names)."""
        found = getattr(self, "_compiled", None)
        if found is None:
            found = self._compiled = _read_compiled(self.module_globals.get("__cached__"))
        return found


def _read_compiled(cached):
    empty = {"blocks": {}, "hot": ()}
    if not cached or not cached.endswith(".pyc"):
        return empty
    try:
        with open(cached[: -len(".pyc")] + ".pennyworth-classes", "rb") as file:
            return {**empty, **_marshal.loads(file.read())}  # noqa: S302 - written by our build beside our bytecode
    except (OSError, ValueError, EOFError, TypeError):
        return empty


class _Module(_types.ModuleType):
    """A rewritten module: attribute access falls back to its deferred names, then to its own ``__getattr__``.

    The deferred names come first: an eager module had them in its dict, where its own
    ``__getattr__`` (renamed ``_pennyworth_module_getattr`` by the rewrite) never saw them.
    """

    def __getattr__(self, name):
        entry = _MODULES.get(self.__name__)
        if entry is not None and name in entry.table:
            try:
                return entry.__missing__(name)
            except KeyError:
                pass
        own = self.__dict__.get("_pennyworth_module_getattr")
        if own is not None:
            return own(name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}", name=name, obj=self)

    def __dir__(self):
        entry = _MODULES.get(self.__name__)
        own = self.__dict__.get("__dir__")
        names = set(own()) if own is not None else set(super().__dir__())
        deferred = {n for n, spec in entry.table.items() if spec[0] != "isinstance"} if entry is not None else set()
        return sorted(names | deferred)


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


def ready(module_globals):
    """The rewritten module's last line: resolve its hot names now (best effort, see the module doc)."""
    names = _MODULES.get(module_globals["__name__"])
    if names is None:
        return
    for name in names.compiled()["hot"]:
        if name not in module_globals and name in names.table:
            try:
                names.__missing__(name)
            except Exception:  # noqa: BLE001, S112 - not resolvable yet: it stays deferred, resolved on first use
                continue


def resolved():
    """module name → the deferred names resolved so far, in order (recorded when PENNYWORTH_LAZY_RECORD=1)."""
    return {module: list(names) for module, names in _RESOLVED.items()}


def star(module_globals, target, needed=()):
    """``from target import *``, also carrying target's deferred public names.

    Those of them in ``needed`` (what the importing module reads while it runs) are
    resolved now: module-level code sees only its dict and the real builtins.
    """
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
    if theirs is not None:
        for name in theirs.table:
            if name.startswith("_") or name in module_globals:
                continue
            if name in needed:
                module_globals[name] = getattr(module, name)
            elif mine is not None:
                mine.table[name] = ("star", target, name)


def unbind(module_globals, names):
    """A deferred ``from x import *`` replaces these earlier bindings: from now on they resolve through x."""
    for name in names:
        module_globals.pop(name, None)
