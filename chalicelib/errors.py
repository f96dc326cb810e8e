"""Every error the gateway reports to a caller, and the OpenAI envelope it travels in.

Domain modules raise these; ``app.py`` turns them into HTTP responses in one
place, the MCP endpoint into JSON-RPC errors, the CLI into click errors.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every caller-facing error; carries the HTTP status and OpenAI fields."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = dict(headers or {})
        #: What the request log line should say about the failed request (key id, model, …).
        self.context: dict[str, Any] = {}

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error envelope: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(AppError):
    """The request is malformed or names something invalid."""

    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(AppError):
    """The API key or token is missing, unknown, revoked or expired."""

    status_code = 401
    error_type = "invalid_request_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str, **kwargs: Any) -> None:
        headers = {"WWW-Authenticate": "Bearer", **(kwargs.pop("headers", None) or {})}
        super().__init__(message, headers=headers, **kwargs)


class PermissionDenied(AppError):
    """The caller is known but may not do this."""

    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class NotFound(AppError):
    """The named model or resource does not exist."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class UnknownRoute(NotFound):
    """No route has this path (API Gateway's and the local stack's answer, in our envelope)."""

    default_code = "unknown_url"


class MethodNotAllowed(AppError):
    """The route exists but not for this HTTP method."""

    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class Conflict(AppError):
    """The resource already exists or changed under the caller."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLarge(AppError):
    """The request body is over the configured limit."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(AppError):
    """Too many requests or tokens; retry after the advertised delay."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int | None = None, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, int(retry_after)))
        super().__init__(message, headers=headers, **kwargs)


class QuotaExceeded(RateLimited):
    """The key's or owner's budget is spent."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class UpstreamError(AppError):
    """Bedrock failed or answered something unusable."""

    status_code = 502
    error_type = "api_error"
    default_code = "upstream_error"


class ServiceUnavailable(AppError):
    """A dependency of the gateway is unavailable; retry later."""

    status_code = 503
    error_type = "api_error"
    default_code = "service_unavailable"


class UpstreamTimeout(AppError):
    """Bedrock did not answer within the gateway's deadline."""

    status_code = 504
    error_type = "api_error"
    default_code = "upstream_timeout"


class InternalError(AppError):
    """A bug or misconfiguration in the gateway itself; details are in the log."""

    status_code = 500
    error_type = "api_error"
    default_code = "internal_error"
