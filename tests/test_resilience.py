"""The upstream seam's rules, with a fake clock: retries, backoff, fallbacks, cooldowns, the deadline.

``Resilience.run`` walks a ``CallPolicy`` with a ``start`` function that makes one attempt. Here
``start`` is a script of outcomes per target, failures are shaped like LiteLLM's exceptions
(``status_code``, ``litellm_response_headers``), and time only passes when the loop sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from chalicelib import errors
from chalicelib.catalog.catalog import load_catalog
from chalicelib.conversation.events import Event, TextDelta
from chalicelib.gateway import CallPolicy, Resilience, Target
from chalicelib.gateway.resilience import (
    DEFAULT_COOLDOWN_SECONDS,
    MIN_ATTEMPT_SECONDS,
    RETRY_COST,
    UNUSABLE_COOLDOWN_SECONDS,
    Cooldowns,
    RetryQuota,
    classify,
)
from chalicelib.settings import DEFAULT_CATALOG

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
HAIKU = Target(CATALOG.resolve("claude-haiku-4-5"), "us-east-1")
GLOBAL = Target(CATALOG.resolve("claude-haiku-4-5-global"), "us-east-1")
SONNET = Target(CATALOG.resolve("claude-sonnet-4-5"), "us-west-2")


class RateLimitError(Exception):
    """Shaped like LiteLLM's: Bedrock's status and response headers."""

    def __init__(self, message: str = "Too many requests", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = 429
        self.litellm_response_headers = {"x-amzn-errortype": "ThrottlingException:x", **(headers or {})}


class APIConnectionError(Exception):
    def __init__(self, message: str = "BedrockException - [Errno 104] Connection reset by peer") -> None:
        super().__init__(message)
        self.status_code = 500


class BadRequestError(Exception):
    def __init__(self, message: str = '{"message": "Input is too long for requested model."}') -> None:
        super().__init__(message)
        self.status_code = 400


class NotFoundError(Exception):
    def __init__(self) -> None:
        super().__init__('{"message": "The provided model identifier is invalid."}')
        self.status_code = 404


class Clock:
    """Time that passes only when the code sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """``start`` for the loop: each target's outcomes in order (an exception, or "ok")."""

    def __init__(self, **outcomes: list[Any]) -> None:
        self.outcomes = {name: list(items) for name, items in outcomes.items()}
        self.calls: list[str] = []
        self.timeouts: list[float] = []

    def __call__(self, target: Target, timeout: float) -> Iterator[Event]:
        name = target.model.id
        self.calls.append(name)
        self.timeouts.append(timeout)
        outcome = self.outcomes[name].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return iter([TextDelta(f"from {name}")])


def loop(clock: Clock, *, jitter: float = 1.0, quota: RetryQuota | None = None) -> Resilience:
    return Resilience(
        clock=clock, sleep=clock.sleep, jitter=lambda: jitter, cooldowns=Cooldowns(clock=clock), quota=quota
    )


def policy(*targets: Target) -> CallPolicy:
    return CallPolicy(tuple(targets))


def test_a_throttled_target_hands_over_to_the_next_at_once_and_cools_down() -> None:
    # GIVEN a primary that throttles and a fallback that answers
    clock = Clock()
    resilience = loop(clock)
    script = Script(**{"claude-haiku-4-5": [RateLimitError()], "claude-haiku-4-5-global": ["ok", "ok"]})
    # WHEN a call is made
    served = resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    # THEN the fallback serves it without waiting, and says so
    assert served.target == GLOBAL and served.fell_back
    assert list(served.events) == [TextDelta("from claude-haiku-4-5-global")]
    assert clock.sleeps == []
    assert [a.outcome for a in served.attempts] == ["throttled", "served"]
    # AND the primary cools down for the default time (Bedrock's Converse gives no hint)
    assert resilience.cooldowns.left(HAIKU) == pytest.approx(DEFAULT_COOLDOWN_SECONDS)
    # WHEN the next call comes during the cooldown THEN it goes straight to the fallback
    again = resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    assert again.target == GLOBAL and script.calls == ["claude-haiku-4-5", "claude-haiku-4-5-global"] * 1 + [
        "claude-haiku-4-5-global"
    ]
    # AND once the cooldown is over, the primary is tried first again
    clock.now += DEFAULT_COOLDOWN_SECONDS + 0.01
    script.outcomes["claude-haiku-4-5"] = ["ok"]
    assert resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script).target == HAIKU


def test_the_cooldown_is_the_time_the_upstream_suggests() -> None:
    clock = Clock()
    resilience = loop(clock)
    script = Script(
        **{"claude-haiku-4-5": [RateLimitError(headers={"retry-after": "7"})], "claude-haiku-4-5-global": ["ok"]}
    )
    resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    assert resilience.cooldowns.left(HAIKU) == pytest.approx(7)
    # botocore's millisecond header too
    other = Script(**{"claude-sonnet-4-5": [RateLimitError(headers={"x-amz-retry-after": "1500"})]})
    other.outcomes["claude-haiku-4-5-global"] = ["ok"]
    resilience.run(policy(SONNET, GLOBAL), clock.now + 60, other)
    assert resilience.cooldowns.left(SONNET) == pytest.approx(1.5)


def test_a_connection_reset_before_any_byte_is_retried_with_standard_backoff() -> None:
    # GIVEN a target whose connection is reset twice, then answers
    clock = Clock()
    resilience = loop(clock, jitter=1.0)
    script = Script(**{"claude-haiku-4-5": [APIConnectionError(), APIConnectionError(), "ok"]})
    served = resilience.run(policy(HAIKU), clock.now + 60, script)
    # THEN it is retried on the same target, after 0-50 ms then 0-100 ms (jitter 1.0: the most)
    assert served.target == HAIKU and script.calls == ["claude-haiku-4-5"] * 3
    assert clock.sleeps == pytest.approx([0.05, 0.1])


def test_after_its_attempts_a_failing_target_hands_over_to_the_next() -> None:
    clock = Clock()
    resilience = loop(clock, jitter=0.5)
    resets = [APIConnectionError() for _ in range(3)]
    script = Script(**{"claude-haiku-4-5": resets, "claude-haiku-4-5-global": ["ok"]})
    served = resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    assert served.target == GLOBAL
    assert script.calls == ["claude-haiku-4-5"] * 3 + ["claude-haiku-4-5-global"]
    assert clock.sleeps == pytest.approx([0.025, 0.05])


def test_a_retry_that_would_outlive_the_deadline_is_not_started() -> None:
    # GIVEN a throttle with no fallback, whose retry would wait past the deadline
    clock = Clock()
    resilience = loop(clock, jitter=1.0)
    script = Script(**{"claude-haiku-4-5": [RateLimitError(headers={"retry-after": "3"}), "ok"]})
    # WHEN only 3.5 s are left (a 3 s wait leaves less than an attempt's minimum)
    with pytest.raises(errors.RateLimited) as caught:
        resilience.run(policy(HAIKU), clock.now + 3 + MIN_ATTEMPT_SECONDS - 0.5, script)
    # THEN nothing waited, no second attempt was made, and the caller learns when to come back
    assert clock.sleeps == [] and script.calls == ["claude-haiku-4-5"]
    assert caught.value.headers["Retry-After"] == "3"
    # AND with time enough, the same throttle is retried after the suggested wait
    clock2 = Clock()
    script2 = Script(**{"claude-haiku-4-5": [RateLimitError(headers={"retry-after": "3"}), "ok"]})
    assert loop(clock2).run(policy(HAIKU), clock2.now + 30, script2).target == HAIKU
    assert clock2.sleeps == [3.0]


def test_each_attempt_waits_at_most_until_the_deadline() -> None:
    clock = Clock()
    script = Script(**{"claude-haiku-4-5": [APIConnectionError(), "ok"]})
    loop(clock).run(policy(HAIKU), clock.now + 20, script)
    assert script.timeouts[0] == pytest.approx(20)
    assert script.timeouts[1] == pytest.approx(20 - clock.sleeps[0])


def test_a_caller_error_on_the_model_asked_for_ends_the_call_at_once() -> None:
    clock = Clock()
    script = Script(**{"claude-haiku-4-5": [BadRequestError()], "claude-haiku-4-5-global": ["ok"]})
    with pytest.raises(errors.InvalidRequest):
        loop(clock).run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    assert script.calls == ["claude-haiku-4-5"]


def test_a_misconfigured_fallback_never_turns_a_good_request_into_a_failure() -> None:
    # GIVEN a fallback Bedrock does not offer (404) and one that refuses the request (4xx)
    clock = Clock()
    resilience = loop(clock)
    script = Script(
        **{
            "claude-haiku-4-5": [RateLimitError(), "ok"],
            "claude-sonnet-4-5": [NotFoundError()],
            "claude-haiku-4-5-global": [BadRequestError()],
        }
    )
    # WHEN the primary is throttled THEN the caller gets the primary's 429, not the fallbacks' errors
    with pytest.raises(errors.RateLimited):
        resilience.run(policy(HAIKU, SONNET, GLOBAL), clock.now + 60, script)
    # AND the unusable fallback is left alone for a while
    assert resilience.cooldowns.left(SONNET) == pytest.approx(UNUSABLE_COOLDOWN_SECONDS)


def test_every_target_throttled_is_a_429_with_the_soonest_retry() -> None:
    clock = Clock()
    resilience = loop(clock)
    script = Script(
        **{
            "claude-haiku-4-5": [RateLimitError(headers={"retry-after": "9"})],
            "claude-haiku-4-5-global": [RateLimitError(headers={"retry-after": "4"})] * 3,
        }
    )
    with pytest.raises(errors.RateLimited) as caught:
        resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script)
    # The last target is retried (with no other left), the throttle backoff honouring the hint
    assert script.calls == ["claude-haiku-4-5"] + ["claude-haiku-4-5-global"] * 3
    assert caught.value.status_code == 429 and int(caught.value.headers["Retry-After"]) >= 1


def test_cooling_targets_are_still_tried_when_nothing_else_is_left() -> None:
    clock = Clock()
    resilience = loop(clock)
    resilience.cooldowns.cool(HAIKU, 30)
    resilience.cooldowns.cool(GLOBAL, 10)
    script = Script(**{"claude-haiku-4-5-global": ["ok"]})
    # The soonest to come back is tried first
    assert resilience.run(policy(HAIKU, GLOBAL), clock.now + 60, script).target == GLOBAL


def test_the_retry_quota_stops_a_retry_storm_and_refills_on_success() -> None:
    clock = Clock()
    quota = RetryQuota(capacity=RETRY_COST)
    resilience = loop(clock, quota=quota)
    script = Script(**{"claude-haiku-4-5": [APIConnectionError(), APIConnectionError(), "ok"]})
    # One retry's worth of quota: the second retry is not made
    with pytest.raises(errors.UpstreamError):
        resilience.run(policy(HAIKU), clock.now + 60, script)
    assert script.calls == ["claude-haiku-4-5"] * 2 and quota.available == 0
    # A success after a retry gives back what the retry took
    script.outcomes["claude-haiku-4-5"] = ["ok"]
    resilience.run(policy(HAIKU), clock.now + 60, script)
    assert quota.available == 1  # a first-try success gives back one


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RateLimitError(), "throttled"),
        (RateLimitError("The model is not ready", {"x-amzn-errortype": "ModelNotReadyException:x"}), "transient"),
        (APIConnectionError(), "transient"),
        (APIConnectionError("Server disconnected without sending a response."), "transient"),
        (type("ServiceUnavailableError", (Exception,), {"status_code": 503})("unavailable"), "transient"),
        (type("InternalServerError", (Exception,), {"status_code": 500})("boom"), "transient"),
        (type("Timeout", (Exception,), {"status_code": 408})("Timeout error occurred."), "final"),
        (BadRequestError(), "final"),
        (BadRequestError('{"message": "The guardrail identifier or version does not exist."}'), "final"),
        (type("PermissionDeniedError", (Exception,), {"status_code": 403})("denied"), "unusable"),
        (NotFoundError(), "unusable"),
    ],
)
def test_what_each_failure_means(error: Exception, kind: str) -> None:
    assert classify(error, target_is_fallback=False).kind == kind


def test_a_guardrail_that_does_not_exist_fails_closed_even_on_a_fallback() -> None:
    guardrail_error = BadRequestError('{"message": "The guardrail identifier or version provided does not exist."}')
    assert classify(guardrail_error, target_is_fallback=True).kind == "final"
    # while another 4xx from a fallback only skips that fallback
    assert classify(BadRequestError(), target_is_fallback=True).kind == "unusable"


def test_a_target_in_another_region_cools_down_apart() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock=clock)
    west = replace(HAIKU, region="us-west-2")
    cooldowns.cool(HAIKU, 5)
    assert cooldowns.left(HAIKU) == 5 and cooldowns.left(west) == 0
