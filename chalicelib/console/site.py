"""Serves the web console: one HTML page and its versioned CSS/JS, with strict headers.

The console is plain files in ``static/`` (no build step). Each CSS/JS file is
served under a content-hashed name (``console.3f2a9c01b4de.js``) that may be
cached for a year; the page itself is ``no-cache`` and names the current
hashes, so a deploy is picked up on the next load. The page carries its
configuration (sign-in URL, app client, its own path) in a ``<meta>`` element,
never in an inline script: the Content-Security-Policy allows scripts from this
origin only, and Trusted Types forbid HTML-from-strings sinks altogether.

A request's ``requestContext.path`` (``/api/console`` behind API Gateway's
stage, ``/console`` behind a custom domain or locally) tells the page where it
lives: asset URLs are absolute paths under it, and the JSON API is its parent.
(Not a ``<base href>``: that would also move the ``#/keys`` links away from the
document when its URL has no trailing slash, reloading the page on every click.)
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import NotFound
from chalicelib.shared.http import HttpResult

STATIC_DIR = Path(__file__).parent / "static"
PAGE = "index.html"
#: Served files and their media types; nothing else in ``static/`` is reachable.
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
IMMUTABLE = "public, max-age=31536000, immutable"
_ASSET_RE = re.compile(r"^(?P<stem>[a-z0-9-]{1,40})(?:\.(?P<digest>[0-9a-f]{12}))?(?P<ext>\.(?:css|js|svg))$")
_PLACEHOLDER_RE = re.compile(r"\{\{(?P<what>asset|config)(?: (?P<arg>[a-z0-9.-]+))?\}\}")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*/console/?$")


@dataclass(frozen=True)
class ConsoleConfig:
    """What the page needs to sign users in; none of it is secret."""

    auth_url: str | None
    client_id: str | None
    local: bool

    def to_json(self) -> dict[str, Any]:
        return {"auth_url": self.auth_url, "client_id": self.client_id, "local": self.local}


class ConsoleSite:
    """The console's page and assets, read from ``root`` once per process."""

    def __init__(self, config: ConsoleConfig, *, root: Path = STATIC_DIR) -> None:
        self._config = config
        self._root = root
        self._assets: dict[str, tuple[str, str]] | None = None  # name → (digest, text)
        self._lock = threading.Lock()

    def page(self, request_path: str | None) -> HttpResult:
        """``GET /console``: the single page, naming the current asset versions."""
        base = _base_path(request_path)
        assets = self._load()

        def fill(match: re.Match[str]) -> str:
            what, arg = match["what"], match["arg"]
            if what == "config":
                config = {**self._config.to_json(), "base": base}
                return html.escape(json.dumps(config, separators=(",", ":")))
            if arg not in assets:
                raise KeyError(f"index.html names an unknown asset: {arg}")
            stem, ext = arg.rsplit(".", 1)
            return html.escape(f"{base}{stem}.{assets[arg][0]}.{ext}")

        body = _PLACEHOLDER_RE.sub(fill, assets[PAGE][1])
        return HttpResult(body, headers=self._headers("text/html; charset=utf-8", "no-cache"))

    def asset(self, name: str) -> HttpResult:
        """``GET /console/{name}``: ``app.<digest>.js`` (cached a year) or ``app.js`` (revalidated).

        Raises
        ------
        NotFound
            No such asset, or a digest that is not the current one (the page names the current one).
        """
        match = _ASSET_RE.match(name)
        assets = self._load()
        file = f"{match['stem']}{match['ext']}" if match else None
        if file is None or file not in assets or (match["digest"] and match["digest"] != assets[file][0]):
            raise NotFound("No such console file; reload the console.", code="not_found")
        cache = IMMUTABLE if match["digest"] else "no-cache"
        return HttpResult(assets[file][1], headers=self._headers(MEDIA_TYPES[match["ext"]], cache))

    def content_security_policy(self) -> str:
        """Scripts, styles and images from this origin only; API calls to it and to the sign-in domain."""
        connect = ["'self'"]
        if self._config.auth_url:
            parts = urlsplit(self._config.auth_url)
            connect.append(f"{parts.scheme}://{parts.netloc}")
        return "; ".join(
            [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self'",
                f"connect-src {' '.join(connect)}",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
                "require-trusted-types-for 'script'",
                "trusted-types 'none'",
            ]
        )

    def _headers(self, media_type: str, cache: str) -> dict[str, str]:
        return {
            "Content-Type": media_type,
            "Cache-Control": cache,
            "Content-Security-Policy": self.content_security_policy(),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "X-Frame-Options": "DENY",
        }

    def _load(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            if self._assets is None:
                assets = {}
                for path in sorted(self._root.iterdir()):
                    if path.suffix in MEDIA_TYPES or path.name == PAGE:
                        text = path.read_text(encoding="utf-8")
                        assets[path.name] = (hashlib.sha256(text.encode()).hexdigest()[:12], text)
                self._assets = assets
            return self._assets


def _base_path(request_path: str | None) -> str:
    """``/api/console/`` for ``/api/console`` or ``/api/console/``; ``/console/`` when the path is odd or unknown."""
    if request_path and _PATH_RE.match(request_path):
        return request_path.rstrip("/") + "/"
    return "/console/"
