"""Saving and loading moto's in-memory AWS (tables, user pool, topics) so ``make dev`` can restart.

moto keeps every service's state in Python objects (one backend per service,
account and region). ``save`` pickles the backends of ``SERVICES``; ``load``
puts them back into a fresh moto. Two things in them do not pickle as they
are: Cognito's RSA signing key (kept as PEM, so tokens issued before a
restart still verify), the locks some backends hold (recreated unlocked), and SSM's
parameters and tags (provider keys: a dict built from its account and region, and a
defaultdict of a lambda).

A file that cannot be loaded (another moto version, a truncated write) is an
error, never a silent fresh start: the developer decides (``make dev FRESH=1``).
"""

from __future__ import annotations

import copyreg
import hashlib
import os
import pickle
import re
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

#: The services the local stack uses.
SERVICES = ("dynamodb", "cognito-idp", "sns", "sqs", "ssm", "cloudwatch")
_FORMAT = 1


class StateError(RuntimeError):
    """The saved state cannot be loaded; the message says what to do."""


def load_key(pem: bytes) -> Any:
    """An RSA private key back from PEM (pickle finds this function by name)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def _reduce_key(key: Any) -> tuple[Any, tuple[bytes]]:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return load_key, (pem,)


def _register_reducers() -> None:
    from cryptography.hazmat.bindings._rust import openssl

    # copyreg looks up the exact type: the Rust class behind cryptography's RSAPrivateKey ABC.
    copyreg.pickle(openssl.rsa.RSAPrivateKey, _reduce_key)
    copyreg.pickle(type(threading.RLock()), lambda lock: (threading.RLock, ()))
    copyreg.pickle(type(threading.Lock()), lambda lock: (threading.Lock, ()))
    from moto.ssm.models import ParameterDict

    # A defaultdict whose __init__ takes other arguments than its factory: rebuilt from its own.
    copyreg.pickle(ParameterDict, _reduce_parameters)


def load_parameters(account_id: str, region_name: str, state: dict[str, Any], items: dict[str, Any]) -> Any:
    """SSM's parameters back (pickle finds this function by name)."""
    from moto.ssm.models import ParameterDict

    parameters = ParameterDict(account_id, region_name)
    parameters.__dict__.update(state)
    parameters.update(items)
    return parameters


def _reduce_parameters(parameters: Any) -> tuple[Any, tuple[Any, ...]]:
    state = dict(parameters.__dict__)
    return load_parameters, (parameters.account_id, parameters.region_name, state, dict(parameters))


def snapshot() -> bytes:
    """Every backend of ``SERVICES`` as bytes (call with no request in flight)."""
    from moto.backends import get_backend

    _register_reducers()
    backends = {}
    for service in SERVICES:
        for account, regions in dict.items(get_backend(service)):  # type: ignore[call-overload]
            for region, backend in dict.items(regions):
                _picklable(backend)
                backends[(service, account, region)] = backend
    return pickle.dumps({"format": _FORMAT, "backends": backends}, protocol=pickle.HIGHEST_PROTOCOL)


def tag_kinds() -> defaultdict[str, dict[str, str]]:
    """SSM's per-resource tags (pickle finds this function by name, as it cannot a lambda)."""
    return defaultdict(dict)


def _picklable(backend: Any) -> None:
    """Swap the lambdas some backends keep as defaultdict factories for named functions, in place."""
    tags = getattr(backend, "_resource_tags", None)
    if isinstance(tags, defaultdict) and getattr(tags.default_factory, "__name__", "") == "<lambda>":
        backend._resource_tags = defaultdict(tag_kinds, {k: defaultdict(dict, v) for k, v in tags.items()})


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a crash leaves the previous state whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load(path: Path) -> int:
    """Put the backends saved in ``path`` into this process's moto; returns how many.

    Raises
    ------
    StateError
        The file cannot be read or was written by an incompatible moto.
    """
    from moto.backends import get_backend

    _register_reducers()
    try:
        saved = pickle.loads(path.read_bytes())  # noqa: S301 - our own file, written by save()
        if saved.get("format") != _FORMAT:
            raise ValueError(f"format {saved.get('format')!r}")
        backends = saved["backends"]
        for (service, account, region), loaded in backends.items():
            fresh = get_backend(service)[account][region]
            fresh.__dict__.update(loaded.__dict__)
    except Exception as exc:  # anything: pickle, attribute and version errors alike
        raise StateError(
            f"The saved local state in {path} cannot be loaded ({type(exc).__name__}: {exc}). "
            "Start clean with 'make dev FRESH=1' (this deletes every local key, user and ledger entry)."
        ) from None
    return len(backends)


#: Operations that only read (``X-Amz-Target``'s operation name): they never dirty the state.
READ_ONLY = re.compile(r"^(?:(?:Get|Describe|List|BatchGet)[A-Z]\w*|Query|Scan)$")
#: Services whose state is not saved (not in ``SERVICES``): the stream aggregator's polling.
UNSAVED_TARGETS = ("DynamoDBStreams_",)


def may_change(environ: dict[str, Any]) -> bool:
    """Whether a request may change the saved state: not a GET, nor an operation known to only read.

    Anything unknown counts as a change (SNS's and CloudWatch's operations are in their bodies).
    """
    if environ.get("REQUEST_METHOD") == "GET":  # JWKS, moto's own pages, the console's login pages
        return False
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith(UNSAVED_TARGETS):
        return False
    return not (target and READ_ONLY.match(target.rpartition(".")[2]))


class Saver:
    """Saves the state to ``path`` a moment after requests change it, and once more at exit.

    ``lock`` is the lock every request holds (``local/moto_server.py``), so a
    snapshot never sees half a request. Idle means idle: requests that only read
    (the stream aggregator polls four times a second) take no snapshot, and a
    snapshot equal to what was last written is not written again.
    """

    def __init__(self, path: Path, lock: Any, *, interval_seconds: float = 1.0) -> None:
        self.path = path
        self._lock = lock
        self._interval = interval_seconds
        self._dirty = threading.Event()
        self._stopped = threading.Event()
        self._written: bytes | None = hashlib.sha256(path.read_bytes()).digest() if path.exists() else None
        #: How many times the file was written (tests, and what make dev's idleness costs).
        self.writes = 0

    def changed(self, environ: dict[str, Any]) -> None:
        """Note a request that may have changed the state."""
        if may_change(environ):
            self._dirty.set()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="moto-state-saver", daemon=True).start()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.save_if_changed()
            except Exception as exc:  # keep serving, keep trying; say so where make dev's logs are
                print(f"moto state: could not save {self.path}: {type(exc).__name__}: {exc}", file=sys.stderr)

    def save_if_changed(self) -> None:
        if not self._dirty.is_set():
            return
        with self._lock:
            self._dirty.clear()
            data = snapshot()
        digest = hashlib.sha256(data).digest()
        if digest == self._written:
            return
        write(self.path, data)
        self._written = digest
        self.writes += 1

    def stop(self) -> None:
        self._stopped.set()
        self.save_if_changed()
