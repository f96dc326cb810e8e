"""Profiles (which gateway, which user pool), the token cache, and the local stack's dev.json.

Lookup order for the profile: ``--local`` (the ``make dev`` stack, from
``.pennyworth/dev.json`` found from the current directory upwards), then
``--profile`` / ``PENNYWORTH_PROFILE``, then ``default_profile`` in the config
file, then ``default``. ``--endpoint`` / ``PENNYWORTH_ENDPOINT`` overrides the
profile's gateway URL.

Files live in ``PENNYWORTH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/pennyworth``,
else ``~/.config/pennyworth``: ``config.toml`` (written by you) and
``tokens.json`` (written by ``pennyworth login``, mode 0600). The local stack's
session is kept beside its dev.json instead (``.pennyworth/tokens.json``): two
checkouts, two stacks, two sessions.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cli.errors import ConfigError

CONFIG_FILE = "config.toml"
TOKENS_FILE = "tokens.json"
DEV_JSON = Path(".pennyworth") / "dev.json"
LOCAL_PROFILE = "local"
AUTH_FLOWS = ("srp", "password")


def config_dir() -> Path:
    """Where the config file and token cache live."""
    explicit = os.environ.get("PENNYWORTH_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "pennyworth"


@dataclass(frozen=True)
class Profile:
    """One gateway and the user pool that guards its admin API."""

    name: str
    base_url: str
    user_pool_id: str
    client_id: str
    region: str
    cognito_endpoint_url: str | None = None
    auth_flow: str = "srp"
    username: str | None = None
    password: str | None = None  # only for the local stack, whose dev.json holds the admin password
    #: Where this profile's session is cached; None: the config directory. The local stack keeps
    #: its session beside its dev.json, so each checkout's stack has its own.
    session_dir: Path | None = None

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/admin"


def find_dev_json(start: Path | None = None) -> Path | None:
    """``.pennyworth/dev.json`` in ``start`` (default: cwd) or the nearest parent that has one."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / DEV_JSON
        if candidate.is_file():
            return candidate
    return None


def local_profile(start: Path | None = None) -> Profile:
    """The ``make dev`` stack's profile.

    Raises
    ------
    ConfigError
        No dev.json was found, or it is malformed.
    """
    path = find_dev_json(start)
    if path is None:
        raise ConfigError(
            "No local stack found: .pennyworth/dev.json is missing here and in every parent directory.",
            "Start it in the project directory with 'make dev' (and run this command from there).",
        )
    try:
        info = json.loads(path.read_text())
        cognito = info["cognito"]
        return Profile(
            name=LOCAL_PROFILE,
            base_url=gateway_root(info["base_url"]),
            user_pool_id=cognito["user_pool_id"],
            client_id=cognito["client_id"],
            region=cognito["region"],
            cognito_endpoint_url=cognito["endpoint_url"],
            # moto accepts any SRP proof, so locally the password is checked only by USER_PASSWORD_AUTH.
            auth_flow="password",
            username=info.get("admin_username"),
            password=info.get("admin_password"),
            session_dir=path.parent,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid dev.json ({exc}).", "Restart the stack: make dev") from None


def gateway_root(url: str) -> str:
    """The gateway's root (where ``/admin`` and ``/mcp`` are) from any URL a user pastes.

    The stack's ``OpenAIBaseURL`` output (``…/api/v1``), Chalice's ``EndpointURL``
    (``…/api/``), a custom domain (``https://llm.example.com/v1``) and the local
    stack's ``http://127.0.0.1:8000/v1`` all work. On an ``execute-api`` host the
    first path segment is the API Gateway stage, so the root is the stage's URL
    whatever follows (a stack deployed when the stage was ``v1`` included).

    Raises
    ------
    ConfigError
        ``url`` is not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{url!r} is not a gateway URL.",
            "Use the stack's OpenAIBaseURL output (https://….execute-api.<region>.amazonaws.com/api/v1), "
            "or your custom domain's https://<domain>/v1.",
        )
    segments = [segment for segment in parts.path.split("/") if segment]
    if parts.hostname and ".execute-api." in parts.hostname:
        segments = segments[:1]
    elif segments[-1:] == ["v1"]:
        segments = segments[:-1]
    return urlunsplit((parts.scheme, parts.netloc, "/".join(["", *segments]) if segments else "", "", ""))


def load_config(directory: Path | None = None) -> dict[str, Any]:
    """The parsed ``config.toml`` ({} when there is none).

    Raises
    ------
    ConfigError
        The file is not valid TOML.
    """
    path = (directory or config_dir()) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def resolve_profile(*, local: bool, name: str | None, endpoint: str | None) -> Profile:
    """The profile this invocation uses (see the module docstring for the order).

    Raises
    ------
    ConfigError
        The named profile does not exist or lacks a required setting.
    """
    if local:
        profile = local_profile()
    else:
        config = load_config()
        chosen = name or os.environ.get("PENNYWORTH_PROFILE") or config.get("default_profile") or "default"
        profile = _profile_from_config(chosen, config)
    override = endpoint or os.environ.get("PENNYWORTH_ENDPOINT")
    if override:
        profile = Profile(**{**asdict(profile), "base_url": gateway_root(override)})
    return profile


def _profile_from_config(name: str, config: dict[str, Any]) -> Profile:
    where = config_dir() / CONFIG_FILE
    section = (config.get("profiles") or {}).get(name)
    if section is None:
        raise ConfigError(
            f"No profile '{name}' in {where}.",
            f"Add a [profiles.{name}] section with base_url, user_pool_id, client_id and region "
            "(see docs/cli.md), or use --local for the 'make dev' stack.",
        )
    missing = [k for k in ("base_url", "user_pool_id", "client_id") if not section.get(k)]
    if missing:
        raise ConfigError(f"Profile '{name}' in {where} lacks {', '.join(missing)}.")
    flow = section.get("auth_flow", "srp")
    if flow not in AUTH_FLOWS:
        raise ConfigError(f"Profile '{name}': auth_flow must be one of {', '.join(AUTH_FLOWS)}, not {flow!r}.")
    return Profile(
        name=name,
        base_url=gateway_root(section["base_url"]),
        user_pool_id=section["user_pool_id"],
        client_id=section["client_id"],
        region=section.get("region") or section["user_pool_id"].split("_", 1)[0],
        cognito_endpoint_url=section.get("cognito_endpoint_url"),
        auth_flow=flow,
        username=section.get("username"),
    )


@dataclass
class Tokens:
    """A cached Cognito session for one profile and pool."""

    id_token: str
    access_token: str
    refresh_token: str | None
    expires_at: float
    username: str
    user_pool_id: str

    def expiring(self, within_seconds: float = 60) -> bool:
        return time.time() + within_seconds >= self.expires_at


class TokenCache:
    """``tokens.json``: sessions by profile name, readable by the owner only (0600)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / TOKENS_FILE

    def get(self, profile: str) -> Tokens | None:
        entry = self._read().get(profile)
        if not isinstance(entry, dict):
            return None
        try:
            return Tokens(**entry)
        except TypeError:
            return None  # an older or damaged entry: treat as logged out

    def put(self, profile: str, tokens: Tokens) -> None:
        data = self._read()
        data[profile] = asdict(tokens)
        self._write(data)

    def delete(self, profile: str) -> bool:
        data = self._read()
        if profile not in data:
            return False
        del data[profile]
        self._write(data)
        return True

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(".tmp")
        # Created 0600 from the start (never world-readable, even briefly), then renamed into place.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
