"""The web console: static assets served by the API itself under ``/console``."""

from chalicelib.console.site import ConsoleConfig, ConsoleSite

__all__ = ["ConsoleConfig", "ConsoleSite"]
