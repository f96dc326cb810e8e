"""What can go wrong in the CLI, as exceptions the root group turns into ``click.ClickException``.

Commands raise these (or let ``cli.client`` raise them); only ``cli.main``
knows about exit codes. Each message says what to do next.
"""

from __future__ import annotations

from typing import Any


class CliError(Exception):
    """A failure to report to the user (exit code 1)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ConfigError(CliError):
    """The profile or config file is missing something or is malformed."""


class NotLoggedIn(CliError):
    """No cached session for this profile."""


class SessionExpired(CliError):
    """The cached session can no longer be refreshed."""


class NetworkError(CliError):
    """The gateway or Cognito could not be reached."""


class ApiError(CliError):
    """The gateway answered with an OpenAI-style error envelope."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.code = error.get("code")
        self.param = error.get("param")
        self.api_message = str(error.get("message") or f"HTTP {status}")
        message, hint = _describe(status, self.code, self.param, self.api_message)
        super().__init__(message, hint)


def _describe(status: int, code: str | None, param: str | None, message: str) -> tuple[str, str | None]:
    if status == 401 and code == "token_expired":
        return "Your session has expired.", "Log in again: pennyworth login"
    if status == 401:
        return f"The gateway refused your sign-in: {message}", "Log in again: pennyworth login"
    if status == 403:
        return f"Permission denied: {message}", "Admins are members of the Cognito 'admins' group."
    if status == 400:
        field = f" ({param})" if param else ""
        return f"Invalid request{field}: {message}", None
    if status in (404, 409, 413):
        return message, None
    return f"The gateway failed (HTTP {status}): {message}", "Retry in a moment; if it persists, check the logs."
