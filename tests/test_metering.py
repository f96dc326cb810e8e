"""Admission and billing against moto: rate limits, budgets, reservations, caps, month edges, stalls."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib import errors, wiring
from chalicelib.accounting.ledger import CAPPED_EVENT, UNRECORDED_EVENT, Ledger
from chalicelib.accounting.metering import Meter, Ticket, worst_case_cost
from chalicelib.catalog import load_catalog
from chalicelib.keys.store import KeyStore
from chalicelib.settings import DEFAULT_CATALOG
from chalicelib.shared.dynamodb import clients
from chalicelib.shared.usage import TokenUsage

CATALOG = load_catalog(DEFAULT_CATALOG, region="us-east-1")
NOVA = CATALOG.resolve("nova-micro")
HAIKU = CATALOG.resolve("claude-haiku-4-5")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def meter(usage_table, clock) -> Meter:
    return Meter(Ledger(usage_table), clock=clock)


def make_key(keys_table, owner_sub: str = "owner-1", **limits):
    record, _ = KeyStore(keys_table).create(owner_sub=owner_sub, **limits)
    return record


def bill(meter: Meter, ticket, request_id: str, *, input_tokens=10, output_tokens=20, **more):
    return meter.settle(
        ticket,
        request_id=request_id,
        operation="chat",
        usage=TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens, **more),
        latency_ms=5,
        status="ok",
    )


def calls_made(table) -> list[str]:
    """DynamoDB operations ``table``'s client makes from now on (appended as they happen)."""
    made: list[str] = []
    for client in clients(table):
        client.meta.events.register("before-call.dynamodb", lambda model, **_: made.append(model.name))
    return made


def test_no_limits_means_no_admission_writes(meter, keys_table, usage_table) -> None:
    ticket = meter.admit(make_key(keys_table), NOVA, input_tokens=10, max_output_tokens=None)
    assert ticket.headers == {} and ticket.reserved_key_usd == 0
    assert usage_table.scan()["Items"] == []


def test_round_trips_on_the_request_path(meter, keys_table, usage_table) -> None:
    # GIVEN a key without limits and one with every limit (rpm, tpm, budget, owner budget)
    plain = make_key(keys_table, owner_sub="free-owner")
    limited = make_key(keys_table, rpm_limit=100, tpm_limit=100_000, monthly_budget_usd=Decimal("5"))
    meter.set_owner_budget("owner-1", Decimal("50"), actor="admin")
    for owner in ("owner-1", "free-owner"):
        meter.owner_budget(owner)  # warm the per-process cache, as a warm Lambda has it
    made = calls_made(usage_table)
    # WHEN each is admitted and billed
    bill(meter, meter.admit(plain, NOVA, input_tokens=10, max_output_tokens=20), "plain")
    assert made == ["PutItem"]
    bill(meter, meter.admit(limited, NOVA, input_tokens=10, max_output_tokens=20), "first")  # starts its window
    made.clear()
    bill(meter, meter.admit(limited, NOVA, input_tokens=10, max_output_tokens=20), "limited")
    # THEN the limited key took two updates (sent in parallel) and the one put
    assert sorted(made) == ["PutItem", "UpdateItem", "UpdateItem"] and made[-1] == "PutItem"
    # AND a minute later the same process starts the new window, still in one update
    meter._clock.now += timedelta(seconds=60)
    made.clear()
    meter.admit(limited, NOVA, input_tokens=10, max_output_tokens=20)
    assert sorted(made) == ["UpdateItem", "UpdateItem"]


def test_rpm_limit_refuses_the_extra_request_until_the_next_window(meter, keys_table, clock) -> None:
    key = make_key(keys_table, rpm_limit=3)
    for expected_remaining in (2, 1, 0):
        ticket = meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)
        assert ticket.headers["x-ratelimit-remaining-requests"] == str(expected_remaining)
    with pytest.raises(errors.RateLimited) as caught:
        meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)
    assert caught.value.status_code == 429
    assert caught.value.headers["Retry-After"] == "55"
    assert caught.value.headers["x-ratelimit-limit-requests"] == "3"
    clock.now += timedelta(seconds=60)
    assert meter.admit(key, NOVA, input_tokens=5, max_output_tokens=10)


def test_two_processes_share_the_window(usage_table, keys_table, clock) -> None:
    # GIVEN two warm Lambdas (two meters) serving one key limited to 4 requests a minute
    key = make_key(keys_table, rpm_limit=4)
    first, second = Meter(Ledger(usage_table), clock=clock), Meter(Ledger(usage_table), clock=clock)
    for meter in (first, second, first, second):
        meter.admit(key, NOVA, input_tokens=1, max_output_tokens=1)
    with pytest.raises(errors.RateLimited):
        second.admit(key, NOVA, input_tokens=1, max_output_tokens=1)
    # WHEN the minute turns THEN whichever sees it first starts the new window, the other joins it
    clock.now += timedelta(seconds=60)
    assert second.admit(key, NOVA, input_tokens=1, max_output_tokens=1).headers["x-ratelimit-remaining-requests"] == "3"
    assert first.admit(key, NOVA, input_tokens=1, max_output_tokens=1).headers["x-ratelimit-remaining-requests"] == "2"


def test_tpm_counts_the_estimate_then_the_real_tokens(meter, keys_table, usage_table, drain) -> None:
    key = make_key(keys_table, tpm_limit=100)
    with pytest.raises(errors.RateLimited, match="Request too large"):
        meter.admit(key, NOVA, input_tokens=90, max_output_tokens=20)
    ticket = meter.admit(key, NOVA, input_tokens=40, max_output_tokens=40)  # counts 80
    bill(meter, ticket, "r1", input_tokens=10, output_tokens=10)  # really 20: 60 given back by the aggregator
    drain(usage_table)
    second = meter.admit(key, NOVA, input_tokens=40, max_output_tokens=40)
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"  # 20 + 80 = 100
    with pytest.raises(errors.RateLimited):
        meter.admit(key, NOVA, input_tokens=1, max_output_tokens=None)


def test_tpm_counts_the_models_default_maximum_when_max_tokens_is_left_out(
    meter, keys_table, usage_table, drain
) -> None:
    # GIVEN a key whose minute holds one answer of the model's full length, and a request without max_tokens
    key = make_key(keys_table, tpm_limit=NOVA.max_output_tokens + 100)
    ticket = meter.admit(key, NOVA, input_tokens=10, max_output_tokens=None)
    # THEN it counts the output it may produce, as the budget reservation does: a second one waits
    assert ticket.counted_tokens == 10 + NOVA.max_output_tokens
    with pytest.raises(errors.RateLimited):
        meter.admit(key, NOVA, input_tokens=10, max_output_tokens=None)
    # AND once billed, the window holds what it really used
    bill(meter, ticket, "r1", input_tokens=10, output_tokens=20)
    drain(usage_table)
    assert meter.admit(key, NOVA, input_tokens=10, max_output_tokens=None).counted_tokens == ticket.counted_tokens


def test_a_request_whose_default_maximum_exceeds_the_tpm_limit_is_told_to_set_max_tokens(meter, keys_table) -> None:
    key = make_key(keys_table, tpm_limit=1000)
    with pytest.raises(errors.RateLimited, match="max_tokens") as caught:
        meter.admit(key, NOVA, input_tokens=10, max_output_tokens=None)
    assert caught.value.code == "tokens_exceeded" and str(NOVA.max_output_tokens) in caught.value.message


def test_key_budget_reserves_the_worst_case_and_bills_the_real_cost(meter, keys_table, usage_table, drain) -> None:
    worst = worst_case_cost(NOVA, 100, 100)
    key = make_key(keys_table, monthly_budget_usd=worst * 3)
    tickets = [meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100) for _ in range(3)]
    with pytest.raises(errors.QuotaExceeded) as caught:
        meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    assert caught.value.to_body()["error"]["type"] == "insufficient_quota"
    assert caught.value.status_code == 429
    # Billing the real (smaller) cost frees room; releasing a failed call frees all of it (once aggregated).
    entry = bill(meter, tickets[0], "r1", input_tokens=10, output_tokens=10)
    meter.release(tickets[1])
    with pytest.raises(errors.QuotaExceeded):  # not yet: the swap happens in the aggregator
        meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    drain(usage_table)
    assert meter.admit(key, NOVA, input_tokens=100, max_output_tokens=100)
    status = meter.spend(key)
    assert Decimal(status["budget"]["spent_usd"]) == entry.cost
    assert Decimal(status["budget"]["reserved_usd"]) == worst * 2
    assert Decimal(status["budget"]["remaining_usd"]) == worst * 3 - entry.cost - worst * 2


def test_releasing_twice_or_settling_twice_counts_once(meter, keys_table, usage_table, drain) -> None:
    worst = worst_case_cost(NOVA, 10, 10)
    key = make_key(keys_table, monthly_budget_usd=worst * 10)
    released = meter.admit(key, NOVA, input_tokens=10, max_output_tokens=10)
    meter.release(released)
    meter.release(released)
    billed = meter.admit(key, NOVA, input_tokens=10, max_output_tokens=10)
    assert bill(meter, billed, "once") is bill(meter, billed, "twice")
    meter.release(billed)  # after billing: nothing to give back
    late = meter.admit(key, NOVA, input_tokens=10, max_output_tokens=10)
    meter.release(late)
    bill(meter, late, "after-release", output_tokens=5)  # a caller's mistake: billed, not given back twice
    drain(usage_table)
    month = Ledger(usage_table).aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")
    assert month["requests"] == 2 and month["committed"] == month["cost"] == billed.closed.cost + late.closed.cost


def test_a_request_whose_worst_case_exceeds_the_whole_budget_is_refused_on_a_fresh_month(meter, keys_table) -> None:
    key = make_key(keys_table, monthly_budget_usd=worst_case_cost(NOVA, 10, 10) / 2)
    with pytest.raises(errors.QuotaExceeded):
        meter.admit(key, NOVA, input_tokens=10, max_output_tokens=10)


def test_owner_budget_covers_all_the_owners_keys(meter, keys_table) -> None:
    first, second = make_key(keys_table), make_key(keys_table)
    worst = worst_case_cost(NOVA, 50, 50)
    meter.set_owner_budget("owner-1", worst * 2, actor="admin")
    meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)
    meter.admit(second, NOVA, input_tokens=50, max_output_tokens=50)
    with pytest.raises(errors.QuotaExceeded, match="key owner"):
        meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)
    meter.set_owner_budget("owner-1", None, actor="admin")
    assert meter.admit(first, NOVA, input_tokens=50, max_output_tokens=50)


def test_an_owner_refusal_gives_back_what_the_key_reserved(meter, keys_table, usage_table, drain) -> None:
    # GIVEN a key with its own budget whose owner's budget is spent
    worst = worst_case_cost(NOVA, 50, 50)
    key = make_key(keys_table, monthly_budget_usd=worst * 10, rpm_limit=50)
    meter.set_owner_budget("owner-1", worst, actor="admin")
    meter.admit(make_key(keys_table), NOVA, input_tokens=50, max_output_tokens=50)
    # WHEN the key's request is refused by the owner's budget
    with pytest.raises(errors.QuotaExceeded, match="key owner"):
        meter.admit(key, NOVA, input_tokens=50, max_output_tokens=50)
    # THEN the key's own reservation (made in parallel) is given back
    drain(usage_table)
    assert Ledger(usage_table).aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")["committed"] == 0


def test_a_request_admitted_in_one_month_and_billed_in_the_next_releases_the_month_it_reserved(
    meter, keys_table, usage_table, clock, drain
) -> None:
    # GIVEN a $1 key admitted at the last second of November, its answer streaming past midnight
    key = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    clock.now = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    ticket = meter.admit(key, HAIKU, input_tokens=1000, max_output_tokens=1000)
    clock.now = datetime(2026, 12, 1, 0, 14, 30, tzinfo=UTC)
    entry = bill(meter, ticket, "straddler", input_tokens=100, output_tokens=100)
    drain(usage_table)
    # THEN November's reservation became the cost, and December's committed is untouched (not negative)
    ledger = Ledger(usage_table)
    november = ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")
    december = ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-12")
    assert november["committed"] == entry.cost
    assert december["committed"] == 0
    assert december["cost"] == entry.cost  # spend is reported on the day it was billed
    # AND December's budget is whole: a request costing up to $1 still fits
    cheap = worst_case_cost(HAIKU, 10, 10)
    assert meter.admit(key, HAIKU, input_tokens=10, max_output_tokens=int((Decimal(1) - cheap) / HAIKU.prices.output))


def test_key_status_after_a_straddler_shows_what_admission_checks(meter, keys_table, usage_table, clock, drain) -> None:
    # GIVEN a $1 key admitted at 23:59:59.999 on the last day of the year, billed a millisecond after midnight
    key = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    clock.now = datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    straddler = meter.admit(key, HAIKU, input_tokens=1000, max_output_tokens=1000)
    clock.now = datetime(2027, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    entry = bill(meter, straddler, "straddler", input_tokens=1000, output_tokens=1000)
    drain(usage_table)
    # WHEN January's first own request is in flight
    ticket = meter.admit(key, HAIKU, input_tokens=10, max_output_tokens=10)
    budget = meter.spend(key)["budget"]
    # THEN January's spend shows the straddler (billed in January) but its budget does not pay for it:
    # what is held is this request's reservation, and what is left is exactly what admission checks.
    assert (budget["period"], Decimal(budget["spent_usd"])) == ("2027-01", entry.cost)
    assert Decimal(budget["reserved_usd"]) == ticket.reserved_key_usd
    assert Decimal(budget["remaining_usd"]) == Decimal(1) - ticket.reserved_key_usd
    # AND December's budget paid for it
    assert Ledger(usage_table).aggregate(f"KEY#{key.key_id}", "MONTH#2026-12")["committed"] == entry.cost


def test_a_release_across_the_month_edge_gives_back_the_reserving_month(
    meter, keys_table, usage_table, clock, drain
) -> None:
    key = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    clock.now = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    ticket = meter.admit(key, HAIKU, input_tokens=1000, max_output_tokens=1000)
    clock.now = datetime(2026, 12, 1, 0, 0, 3, tzinfo=UTC)
    meter.release(ticket)
    drain(usage_table)
    ledger = Ledger(usage_table)
    assert ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")["committed"] == 0
    assert ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-12")["committed"] == 0


def test_the_bill_is_capped_at_the_reservation_flagged_logged_and_counted(
    meter, keys_table, usage_table, drain, service_logs
) -> None:
    # GIVEN a $1 key and a model that reports far more usage than admission's worst case
    key = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    ticket = meter.admit(key, HAIKU, input_tokens=100, max_output_tokens=100)
    worst = worst_case_cost(HAIKU, 100, 100)
    entry = bill(meter, ticket, "greedy", input_tokens=100, output_tokens=100, cache_write_tokens=1_000_000)
    # THEN the bill is the reservation, the entry says so, and the real usage cost is kept for audit
    assert entry.cost == worst and entry.capped and entry.usage_cost > worst
    assert ticket.headers["x-pennyworth-cost-usd"] == str(worst.normalize())
    capped = [json.loads(line) for line in service_logs.lines() if CAPPED_EVENT in line]
    assert capped and capped[0]["usage_usd"] == str(entry.usage_cost)
    drain(usage_table)
    month = Ledger(usage_table).aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")
    assert month["cost"] == worst == month["committed"] and month["cost"] <= key.monthly_budget_usd
    assert month["capped_requests"] == 1 and month["capped_usd"] == entry.usage_cost - worst
    stored = Ledger(usage_table).entries_for_key(key.key_id)[0]
    assert stored["capped"] is True and stored["cost"] == worst


@pytest.mark.parametrize("budget", [Decimal("0"), Decimal("0.000001")])
def test_a_zero_reservation_under_a_budget_still_caps_the_bill(meter, keys_table, usage_table, drain, budget) -> None:
    # GIVEN a budgeted key and a request whose worst case is $0 (nothing to bound it: no prompt, no output)
    key = make_key(keys_table, monthly_budget_usd=budget)
    meter.set_owner_budget("owner-1", budget, actor="admin")
    ticket = meter.admit(key, NOVA, input_tokens=0, max_output_tokens=0)
    # WHEN the model bills tokens anyway
    entry = bill(meter, ticket, "free-lunch", input_tokens=1_000, output_tokens=1_000)
    # THEN the bill is what was reserved ($0), flagged, and the budget is not overrun
    assert entry.cost == 0 and entry.capped and entry.usage_cost > 0
    drain(usage_table)
    assert Ledger(usage_table).aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")["committed"] <= budget


def test_without_a_budget_nothing_is_capped(meter, keys_table) -> None:
    ticket = meter.admit(make_key(keys_table), HAIKU, input_tokens=100, max_output_tokens=100)
    entry = bill(meter, ticket, "big", input_tokens=100, output_tokens=100, cache_write_tokens=1_000_000)
    assert not entry.capped and entry.cost > worst_case_cost(HAIKU, 100, 100)


def test_the_worst_case_covers_a_prompt_written_to_the_cache_in_full(meter, keys_table) -> None:
    # GIVEN a prompt whose every token (up to the bound) is billed as a cache write, the dearest input price
    key = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    ticket = meter.admit(key, HAIKU, input_tokens=5000, max_output_tokens=100)
    entry = bill(meter, ticket, "cached", input_tokens=0, output_tokens=100, cache_write_tokens=5000)
    assert HAIKU.prices.cache_write > HAIKU.prices.input
    assert not entry.capped and entry.cost == worst_case_cost(HAIKU, 5000, 100)


def test_worst_case_uses_the_models_maximum_output_when_max_tokens_is_absent() -> None:
    assert worst_case_cost(HAIKU, 0, None) == HAIKU.prices.output * HAIKU.max_output_tokens


def test_concurrent_requests_never_overrun_the_budget(meter, keys_table, usage_table, atomic_moto, drain) -> None:
    # GIVEN a budget for about 10 worst-case requests, and 40 concurrent callers
    worst = worst_case_cost(NOVA, 200, 200)
    key = make_key(keys_table, monthly_budget_usd=worst * 10)

    def call(number: int) -> str:
        try:
            ticket = meter.admit(key, NOVA, input_tokens=200, max_output_tokens=200)
        except errors.QuotaExceeded:
            return "refused"
        bill(meter, ticket, f"r{number}", input_tokens=200, output_tokens=200)
        return "billed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(call, range(40)))
    drain(usage_table)
    # THEN spend never passes the budget, and the ledger agrees with the aggregate
    ledger = Ledger(usage_table)
    entries = ledger.entries_for_key(key.key_id)
    spent = sum((item["cost"] for item in entries), Decimal(0))
    assert outcomes.count("billed") == len(entries) == 10
    assert spent <= key.monthly_budget_usd
    month = ledger.aggregate(f"KEY#{key.key_id}", "MONTH#2026-11")
    assert month["cost"] == spent == month["committed"]


def test_a_zero_left_by_a_release_never_breaks_the_key(meter, keys_table, usage_table, drain) -> None:
    # GIVEN reservations that come back exactly (committed returns to 0 after each)
    key = make_key(keys_table, monthly_budget_usd=Decimal("0.5"))
    sent: list[bytes] = []
    for client in clients(usage_table):
        client.meta.events.register("before-send.dynamodb", lambda request, **_: sent.append(request.body))
    for _ in range(3):
        meter.release(meter.admit(key, HAIKU, input_tokens=7, max_output_tokens=3))
        drain(usage_table)
    # THEN the key still admits, and no number went out in exponent notation
    assert meter.admit(key, HAIKU, input_tokens=7, max_output_tokens=3)
    numbers = [n for body in sent for n in _numbers(json.loads(body or b"{}"))]
    assert numbers and not [n for n in numbers if "E" in n.upper()]


def _numbers(value) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"N"}:
            return [value["N"]]
        return [n for inner in value.values() for n in _numbers(inner)]
    if isinstance(value, list):
        return [n for inner in value for n in _numbers(inner)]
    return []


def test_prompt_bound_counts_bytes_images_tools_and_overhead() -> None:
    from chalicelib.gateway.prompts import IMAGE_TOKEN_BOUND, MESSAGE_OVERHEAD_TOKENS, prompt_input

    # GIVEN text whose characters are several bytes each (a CJK character is 3 UTF-8 bytes)
    messages = [
        {"role": "system", "content": "日本"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    bound = prompt_input((messages, {"tools": tools})).token_bound
    assert bound == 6 + 2 + IMAGE_TOKEN_BOUND + len(json.dumps(tools)) + 2 * MESSAGE_OVERHEAD_TOKENS


@pytest.fixture
def stalled_endpoint():
    """A TCP endpoint that accepts connections and never answers (a stalled DynamoDB)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_stalled_dynamodb_gives_a_503_at_admission_and_usage_unrecorded_at_billing(
    monkeypatch, stalled_endpoint, keys_table, service_logs
) -> None:
    # GIVEN the gateway's own wiring pointed at a DynamoDB that accepts and never answers
    monkeypatch.setenv("PENNYWORTH_AWS_ENDPOINT_URL", stalled_endpoint)
    monkeypatch.setenv("PENNYWORTH_DYNAMODB_TIMEOUT_SECONDS", "0.2")
    monkeypatch.setenv("PENNYWORTH_LEDGER_DEADLINE_SECONDS", "1")
    wiring.reset()
    meter = wiring.meter()
    budgeted = make_key(keys_table, monthly_budget_usd=Decimal("1"))
    # WHEN a budgeted key is admitted THEN it is refused with a 503 within the deadline, not minutes later
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable) as caught:
        meter.admit(budgeted, NOVA, input_tokens=10, max_output_tokens=10)
    assert caught.value.status_code == 503 and time.monotonic() - started < 4
    # WHEN a call admitted before the stall is billed THEN the answer's entry comes back,
    # and the usage_unrecorded line that reconcile replays is written, within the deadline
    ticket = Ticket(key=make_key(keys_table), model=NOVA, month="2026-11")
    started = time.monotonic()
    entry = bill(meter, ticket, "stalled")
    assert time.monotonic() - started < 3
    lines = [json.loads(line) for line in service_logs.lines() if UNRECORDED_EVENT in line]
    assert [line["entry"]["request_id"] for line in lines] == ["stalled"] and entry.cost > 0
