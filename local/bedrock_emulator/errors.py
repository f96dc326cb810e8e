"""Bedrock Runtime error types with the status codes of botocore's service model."""

from __future__ import annotations

from collections.abc import Mapping

# Status codes from botocore/data/bedrock-runtime/2023-09-30/service-2.json, plus the
# two authentication failures AWS answers before the request reaches Bedrock itself.
ERROR_STATUS: Mapping[str, int] = {
    "AccessDeniedException": 403,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelStreamErrorException": 424,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403,
    "UnknownOperationException": 404,
}

# Real Bedrock suffixes the error name in x-amzn-ErrorType with this namespace;
# botocore keeps only the part before the first colon.
ERROR_TYPE_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


class BedrockError(Exception):
    """A Bedrock error answer: name, HTTP status, message and extra body fields."""

    def __init__(self, name: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: object) -> None:
        super().__init__(message)
        self.name = name
        self.status = ERROR_STATUS[name]
        self.message = message
        self.extra = dict(extra)
        #: Response headers besides Bedrock's own (a throttle's Retry-After, when asked for).
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        """JSON body Bedrock sends: the message plus any modelled extra members."""
        return {"message": self.message, **self.extra}

    def error_type_header(self) -> str:
        """Value of the x-amzn-ErrorType response header."""
        return f"{self.name}:{ERROR_TYPE_NAMESPACE}"


def validation(message: str) -> BedrockError:
    """A ValidationException (HTTP 400)."""
    return BedrockError("ValidationException", message)


def malformed(detail: str) -> BedrockError:
    """The InvokeModel schema failure Bedrock reports as 'Malformed input request'."""
    return validation(f"Malformed input request: {detail}, please reformat your input and try again.")
