from __future__ import annotations

import pytest

from chalicelib import errors
from tests.openai_schema import assert_valid

ALL_ERRORS = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.AppError)]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_renders_a_valid_openai_envelope(cls: type[errors.AppError]) -> None:
    error = cls("something went wrong", param="model")
    body = error.to_body()
    assert_valid("ErrorResponse", body)
    assert body["error"]["message"] == "something went wrong"
    assert 400 <= error.status_code <= 599


def test_rate_limit_carries_retry_after() -> None:
    error = errors.RateLimited("slow down", retry_after=0)
    assert error.headers["Retry-After"] == "1"
    assert errors.QuotaExceeded("spent").to_body()["error"]["type"] == "insufficient_quota"


def test_authentication_failure_asks_for_a_bearer_token() -> None:
    error = errors.AuthenticationFailed("no key")
    assert error.status_code == 401
    assert error.headers["WWW-Authenticate"] == "Bearer"
