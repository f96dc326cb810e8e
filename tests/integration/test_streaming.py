"""Streaming through the running stack: text arrives as it is generated, long answers finish, cut streams bill.

The emulator paces its ConverseStream (``#emulator:chunk_delay``), so these
tests can see when each piece left: a buffered gateway would deliver every
delta at once, at the end.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from tests.integration import stack_data
from tests.integration.stack_data import entries

pytestmark = pytest.mark.integration

#: 30 output tokens in 10 pieces, 0.4 s apart: about 5 s from first to last.
PACED = "Tell me a story #emulator:tokens=30 #emulator:chunk_delay=0.4"


def new_key(stack) -> tuple[str, str]:
    return stack_data.new_key(stack, "stream-owner", name="streaming")


def sse_lines(stack, plaintext: str, prompt: str):
    """The raw lines of a streamed chat completion, read off the wire as they arrive."""
    body = {"model": "nova-micro", "messages": [{"role": "user", "content": prompt}], "stream": True}
    with httpx.stream(
        "POST",
        f"{stack.api_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {plaintext}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield from response.iter_lines()


def assert_paced(arrivals: list[float], total: float) -> None:
    """The first piece came well before the last: the answer was streamed, not buffered.

    (A buffered gateway delivers every piece within milliseconds of the end.)
    """
    assert len(arrivals) >= 5, arrivals
    assert arrivals[-1] - arrivals[0] > 2.5, arrivals  # the emulator's pacing survives the trip
    assert total - arrivals[0] > 2.5, (arrivals[0], total)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert sum(gap > 0.2 for gap in gaps) >= len(gaps) // 2, gaps  # pieces arrive paced, not in bursts


def test_openai_sdk_sees_text_as_it_is_generated(stack) -> None:
    from openai import OpenAI

    key_id, plaintext = new_key(stack)
    client = OpenAI(base_url=f"{stack.api_url}/v1", api_key=plaintext, max_retries=0, timeout=60)
    started = time.monotonic()
    arrivals, text, usage = [], [], None
    for chunk in client.chat.completions.create(
        model="nova-micro",
        messages=[{"role": "user", "content": PACED}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    total = time.monotonic() - started
    assert_paced(arrivals, total)
    assert usage is not None and usage.completion_tokens == 30
    # The cost rides in the usage chunk (headers left before it was known) and equals the ledger's.
    [entry] = entries(stack, key_id, 1)
    assert Decimal(usage.model_extra["cost_usd"]) == entry["cost"] > 0
    assert entry["status"] == "ok" and entry["output_tokens"] == 30


def test_langchain_streams_as_it_is_generated(stack) -> None:
    from langchain_openai import ChatOpenAI

    _, plaintext = new_key(stack)
    llm = ChatOpenAI(model="nova-micro", base_url=f"{stack.api_url}/v1", api_key=plaintext, max_retries=0)
    started = time.monotonic()
    arrivals = [time.monotonic() - started for chunk in llm.stream(PACED) if chunk.content]
    assert_paced(arrivals, time.monotonic() - started)


def test_raw_sse_bytes_leave_one_event_at_a_time(stack) -> None:
    # The wire itself, without an SDK's buffering: each SSE event is flushed on its own.
    _, plaintext = new_key(stack)
    started = time.monotonic()
    arrivals = []
    for line in sse_lines(stack, plaintext, PACED):
        if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
            arrivals.append(time.monotonic() - started)
    assert_paced(arrivals, time.monotonic() - started)


def test_answers_longer_than_api_gateways_29_seconds_complete(stack) -> None:
    # A 40 s stream (8 pauses of 5 s) and a 35 s non-streamed answer, side by side.
    from openai import OpenAI

    key_id, plaintext = new_key(stack)
    client = OpenAI(base_url=f"{stack.api_url}/v1", api_key=plaintext, max_retries=0, timeout=120)

    def streamed() -> tuple[float, str]:
        started = time.monotonic()
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="nova-micro",
                messages=[{"role": "user", "content": "long #emulator:tokens=15 #emulator:chunk_delay=5"}],
                stream=True,
            )
            if c.choices
        ]
        return time.monotonic() - started, "".join(pieces)

    def whole() -> tuple[float, str]:
        started = time.monotonic()
        reply = client.chat.completions.create(
            model="nova-micro", messages=[{"role": "user", "content": "slow #emulator:sleep=35"}]
        )
        return time.monotonic() - started, reply.choices[0].message.content

    with ThreadPoolExecutor(max_workers=2) as pool:
        stream_future, whole_future = pool.submit(streamed), pool.submit(whole)
        (stream_seconds, stream_text), (whole_seconds, whole_text) = stream_future.result(), whole_future.result()
    assert stream_seconds > 39 and len(stream_text.split()) == 15
    assert whole_seconds > 34 and whole_text.startswith("You said")
    assert sorted(e["status"] for e in entries(stack, key_id, 2)) == ["ok", "ok"]


def test_a_client_that_hangs_up_is_billed_for_what_was_generated(stack) -> None:
    key_id, plaintext = new_key(stack)
    received = []
    lines = sse_lines(stack, plaintext, "Tell me everything #emulator:tokens=60 #emulator:chunk_delay=0.5")
    for line in lines:
        if line.startswith("data: {"):
            received.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        if len(received) >= 4:
            break  # hang up after a few pieces; the rest would take ~8 s more
    lines.close()  # closes the connection
    # The gateway notices at its next write, stops the upstream and bills the produced part.
    deadline = time.monotonic() + 15
    while not (billed := entries(stack, key_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    [entry] = billed
    assert entry["status"] == "partial"
    assert 0 < entry["output_tokens"] < 60 and entry["input_tokens"] > 0
    assert entry["cost"] > 0
