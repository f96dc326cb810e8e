"""The ledger at DynamoDB's real limits: today's design and the stream design, same model, same run.

Drives the real ``Meter``/``Ledger`` (admit → settle or release, budgets, rate
limits) and, for the stream design, the real ``Aggregator`` behind a simulated
event source mapping, with many concurrent requests at an offered load, under
``local/dynamo_model.py`` (transaction conflicts, per-item write throttling,
per-partition read limits, consumed capacity, latency) in virtual time
(``local/simclock.py``). "Today" is ``bench/baseline_v1.py``, the design of
commit da4004c, run with the SDK configuration it had (botocore's default
retries, in virtual time).

Scenarios (``--scenario``, default all):

* ``many-keys``: 1,000 req/s over 1,000 keys of 100 owners, no limits.
* ``hot-key``: 300 req/s on one key with a monthly budget that runs out during the run.
* ``owner-mix``: 1,000 req/s over 1,000 keys of 50 owners (Zipf: the biggest owner sends
  about a fifth), 40% of owners and 20% of keys with budgets sized to run out, 20% of keys
  with rpm/tpm limits.
* ``team-mix``: 1,000 req/s over 1,000 keys of 200 people in 10 teams (Zipf: the biggest team
  sends about a third, ~340 req/s on its month item), every person with a budget (as the default
  gives everyone), every team with one sized to run out, a fifth of the keys the teams' own; 20%
  of keys with their own budget. Each request reserves on its key (when budgeted), its owner and
  its team: three conditional updates in parallel. Stream design only (the old one had no teams).
* ``hot-team``: 1,000 req/s from 1,000 keys all charged to one team with a budget that lasts the
  run: the team's month item takes one write per admission, at DynamoDB's ~1,000 writes a second
  per item.

Each request: a prompt bound of 200–3,000 tokens, ``max_tokens`` 256–1,024, Bedrock answering
in 0.3–3 s with 50–100% of the prompt and 10–100% of ``max_tokens``; 2% fail (release).

Reported per design: achieved throughput; conflicts, throttles and retries; entries lost
(a caller was told a cost the ledger does not have), unrecorded (logged for reconcile),
double-counted and aggregates ≠ entries (after the aggregator caught up); budget overruns;
write units per billed request (request path, aggregator, index); the busiest item's writes
in one second; DynamoDB calls on the request path per request (a key without limits, a key
with every limit) and their virtual time; how far the aggregates trailed the entries.

Usage: ``python bench/ledger_scale.py [--short] [--seconds N] [--hold-ms 5] [--scenario NAME] [--rate N]``
prints JSON. ``--short`` is the quick mode ``tests/test_ledger_scale.py`` runs in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

# bench/ first on sys.path would shadow libraries (bench/responses.py is not the `responses` moto imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)

TABLES = {
    "KeysTable": "pennyworth-local-keys",
    "UsageTable": "pennyworth-local-usage",
    "AuditTable": "pennyworth-local-audit",
    "CatalogTable": "pennyworth-local-catalog",
}
START = datetime(2026, 11, 10, 12, 0, 0, tzinfo=UTC)  # mid-month: no month edge in the run
#: The aggregator's event source as infra/template.json configures it (batching window, batch size).
_SOURCE = json.loads((Path(__file__).resolve().parent.parent / "infra" / "template.json").read_text())["Resources"][
    "LedgerAggregator"
]["Properties"]["Events"]["LedgerAggregatorDynamodbEventSource"]["Properties"]
BATCH_WINDOW_SECONDS = float(_SOURCE["MaximumBatchingWindowInSeconds"])
MAX_BATCH = int(_SOURCE["BatchSize"])
RETRY_DELAY_SECONDS = 1.0  # Lambda's pause before retrying a failed batch
INSTANCES = 64  # warm Lambda instances (each has its own meter and caches)


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float  # offered requests per second
    keys: int
    owners: int
    zipf_owners: bool = False
    owner_budget_share: float = 0.0
    key_budget_share: float = 0.0
    limits_share: float = 0.0
    budget_fraction: float = 0.7  # a budget covers this share of what its traffic would cost
    teams: int = 0  # people are spread over this many teams (Zipf), their keys charged to them
    team_owned_share: float = 0.0  # keys the teams own themselves
    person_budgets: bool = False  # every person has a budget (as the default budget gives everyone)
    #: Only the stream design knows teams.
    designs: tuple[str, ...] = ("today", "stream")


SCENARIOS = {
    "many-keys": Scenario("many-keys", rate=1000, keys=1000, owners=100),
    "hot-key": Scenario("hot-key", rate=300, keys=1, owners=1, key_budget_share=1.0),
    "owner-mix": Scenario(
        "owner-mix",
        rate=1000,
        keys=1000,
        owners=50,
        zipf_owners=True,
        owner_budget_share=0.4,
        key_budget_share=0.2,
        limits_share=0.2,
    ),
    "team-mix": Scenario(
        "team-mix",
        rate=1000,
        keys=1000,
        owners=200,
        teams=10,
        team_owned_share=0.2,
        key_budget_share=0.2,
        person_budgets=True,
        budget_fraction=1.2,  # the biggest team's runs out during the run (worst cases are reserved first)
        designs=("stream",),
    ),
    # A budget that lasts the run: every admission writes the team's month item.
    "hot-team": Scenario(
        "hot-team", rate=1000, keys=1000, owners=100, teams=1, budget_fraction=4.0, designs=("stream",)
    ),
}


@dataclass
class Outcome:
    """One request, as the caller saw it."""

    key_id: str
    kind: str  # plain | limited | every-limit (the key's limits)
    admitted: bool = False
    refusal: str | None = None
    settled_cost: Decimal | None = None
    request_id: str | None = None
    released: bool = False
    admit_seconds: float = 0.0
    settle_seconds: float = 0.0
    admit_calls: int = 0
    settle_calls: int = 0
    calls: int = 0


@dataclass
class Result:
    design: str
    scenario: str
    offered_per_second: float
    seconds: float
    requests: int = 0
    achieved_per_second: float = 0.0
    billed: int = 0
    refused_budget: int = 0
    refused_rate: int = 0
    admission_errors: int = 0
    released: int = 0
    conflicts: int = 0
    throttles: int = 0
    retries: int = 0
    entries_lost: int = 0
    entries_unrecorded: int = 0
    double_counted: int = 0
    aggregates_not_equal_entries: int = 0
    budget_overruns: int = 0
    worst_overrun_usd: str = "0"
    reservations_left_held_usd: str = "0"
    write_units_per_request: float = 0.0
    write_units_breakdown: dict[str, float] = field(default_factory=dict)
    busiest_item: str = ""
    busiest_item_writes_per_second: int = 0
    team_budget_overruns: int = 0
    team_aggregates_not_equal_entries: int = 0
    request_path: dict[str, Any] = field(default_factory=dict)
    aggregation_delay_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


class _Counter(logging.Handler):
    """Counts the ledger's usage_unrecorded lines."""

    def __init__(self) -> None:
        super().__init__()
        self.unrecorded = 0
        self.unreleased = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "usage could not be stored" in message:
            self.unrecorded += 1
        elif "reservation not released" in message:
            self.unreleased += 1


def run(
    design: str, scenario: Scenario, *, seconds: float, hold_seconds: float, seed: int, window: float | None = None
) -> Result:
    """One design under one scenario, in a fresh moto."""
    import boto3
    from moto import mock_aws

    from chalicelib.accounting.aggregator import Aggregator, wanted
    from chalicelib.catalog import load_catalog
    from chalicelib.observability import logger
    from chalicelib.settings import DEFAULT_CATALOG
    from chalicelib.shared.dynamodb import Attempts, clients
    from chalicelib.shared.dynamodb import resource as dynamodb_resource
    from local import bootstrap, moto_patches
    from local.dynamo_model import ContentionModel, virtual_botocore_sleeps
    from local.simclock import Sim

    moto_patches.apply()
    rng = random.Random(seed)
    model_entry = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve("nova-micro")
    started = time.monotonic()
    result = Result(design, scenario.name, scenario.rate, seconds)
    counter = _Counter()
    # The service logger's lines would be thousands; the counter reads them instead of stdout.
    std = logger._logger  # Powertools' Logger wraps a standard logger
    saved = list(std.handlers)
    std.handlers = [counter]
    try:
        with mock_aws():
            # The model keeps its own stream (with shards); moto's would only cost time.
            bootstrap.create_tables(boto3.client("dynamodb", region_name="us-east-1"), TABLES, streams=False)
            sim = Sim()
            # Simulated thread → (what it is doing, the request it works for): capacity and calls are
            # attributed to the request path or the aggregator, and counted per request.
            phase: dict[int, tuple[str, Outcome | None]] = {}

            def tag() -> str:
                return phase.get(threading.get_ident(), ("setup", None))[0]

            def on_call(_operation: str) -> None:
                outcome = phase.get(threading.get_ident(), ("setup", None))[1]
                if outcome is not None:
                    outcome.calls += 1

            def parallel(calls: list[Any]) -> list[Any]:
                here = phase.get(threading.get_ident())

                def inherit(call: Any) -> Any:
                    def run() -> Any:
                        if here:
                            phase[threading.get_ident()] = here
                        return call()

                    return run

                return sim.parallel([inherit(call) for call in calls])

            model = ContentionModel(sim, hold_seconds=hold_seconds, tag=tag, on_call=on_call)
            keys, owner_budgets, team_budgets = _population(scenario, rng, model_entry, seconds)
            epoch = START.timestamp()

            def clock() -> datetime:
                return START + timedelta(seconds=sim.now())

            def timer() -> float:
                return epoch + sim.now()

            if design == "today":
                from bench import baseline_v1 as today

                today.SLEEP = sim.sleep
                resource = boto3.resource("dynamodb", region_name="us-east-1")  # the SDK defaults of da4004c
                table = resource.Table(TABLES["UsageTable"])
                meters = [today.Meter(today.Ledger(table), clock=clock) for _ in range(INSTANCES)]
            else:
                from chalicelib.accounting.ledger import Ledger
                from chalicelib.accounting.metering import Meter

                resource = dynamodb_resource(region="us-east-1", endpoint_url=None, timeout_seconds=2, attempts=1)
                table = resource.Table(TABLES["UsageTable"])
                meters = [
                    Meter(
                        Ledger(table, attempts=Attempts(timer=timer, sleep=sim.sleep, rng=random.Random(seed + n))),
                        clock=clock,
                        parallel=parallel,
                        monotonic=sim.now,
                    )
                    for n in range(INSTANCES)
                ]
            for owner, budget in owner_budgets.items():
                meters[0].set_owner_budget(owner, budget, actor="bench")
            for team, budget in team_budgets.items():
                meters[0].set_budget(_team_scope(team), budget, actor="bench")
            # Warm instances: each has read the owners' budgets (the issue counted round trips so).
            # Both meters cache them as (when read, budget); never stale here.
            for meter in meters:
                if design == "stream":
                    from chalicelib.shared import scopes

                    meter._budgets.update(
                        {scopes.owner(key.owner_sub): (sim.now(), owner_budgets.get(key.owner_sub)) for key in keys}
                    )
                    meter._budgets.update({scopes.team(t): (sim.now(), b) for t, b in team_budgets.items()})
                else:
                    fresh = time.monotonic() + 1e9
                    meter._owner_budgets.update(
                        {key.owner_sub: (fresh, owner_budgets.get(key.owner_sub)) for key in keys}
                    )
            model.install(*clients(resource))
            outcomes: list[Outcome] = []

            def request(n: int, key: Any) -> None:
                meter = meters[n % INSTANCES]
                outcome = Outcome(key.key_id, _kind(key, owner_budgets, team_budgets))
                outcomes.append(outcome)
                bound = rng.randint(200, 3000)
                max_tokens = rng.choice([256, 512, 1024])
                phase[threading.get_ident()] = ("request", outcome)
                begun = sim.now()
                try:
                    ticket = meter.admit(key, model_entry, input_tokens=bound, max_output_tokens=max_tokens)
                except Exception as exc:  # noqa: BLE001 - refusals and failures are outcomes here
                    outcome.refusal = _refusal(exc)
                    return
                finally:
                    outcome.admit_seconds = sim.now() - begun
                    outcome.admit_calls = outcome.calls
                outcome.admitted = True
                answer = rng.uniform(0.3, 3.0)
                fails = rng.random() < 0.02
                usage = _usage(bound, max_tokens, rng)
                sim.spawn(lambda: settle(meter, ticket, outcome, usage, fails, n), at=sim.now() + answer, name="settle")

            def settle(meter: Any, ticket: Any, outcome: Outcome, usage: Any, fails: bool, n: int) -> None:
                phase[threading.get_ident()] = ("request", outcome)
                begun = sim.now()
                try:
                    if fails:
                        meter.release(ticket)
                        outcome.released = True
                    else:
                        entry = meter.settle(
                            ticket,
                            request_id=f"r{n}",
                            operation="chat",
                            usage=usage,
                            latency_ms=100,
                            status="ok",
                        )
                        outcome.settled_cost = entry.cost
                        outcome.request_id = entry.request_id
                except Exception as exc:  # noqa: BLE001 - e.g. the baseline's unhandled conflicts
                    outcome.refusal = f"settle: {_refusal(exc)}"
                finally:
                    outcome.settle_seconds = sim.now() - begun
                    outcome.settle_calls = outcome.calls - outcome.admit_calls

            # Open-loop arrivals (Poisson) over the run: each request a simulated thread at its moment.
            chooser = _key_chooser(keys, scenario, rng)
            moment, n = 0.0, 0
            while True:
                moment += rng.expovariate(scenario.rate)
                if moment >= seconds:
                    break
                key = chooser()
                sim.spawn(lambda n=n, key=key: request(n, key), at=moment, name="request")
                n += 1
            result.requests = n

            delays: list[float] = []
            if design == "stream":
                aggregator = Aggregator(table, attempts=Attempts(timer=timer, sleep=sim.sleep, rng=random.Random(seed)))
                _event_source(
                    sim,
                    model,
                    aggregator,
                    wanted,
                    phase,
                    delays,
                    horizon=seconds,
                    window=window or BATCH_WINDOW_SECONDS,
                )
            with virtual_botocore_sleeps(sim):
                sim.run()
            if sim.errors:  # a bug in the benchmark or the code under test, not an outcome
                name, error = sim.errors[0]
                raise RuntimeError(f"{len(sim.errors)} simulated tasks failed, first {name}: {error!r}") from error
            # Everything is done (requests, settles, the aggregator drained): measure.
            result.wall_seconds = round(time.monotonic() - started, 1)
            _measure(result, model, outcomes, keys, owner_budgets, counter, delays, sim, meters, design)
            _measure_teams(result, keys, team_budgets)
    finally:
        std.handlers = saved
    return result


def _event_source(
    sim: Any,
    model: Any,
    aggregator: Any,
    wanted: Any,
    phase: dict[int, Any],
    delays: list[float],
    *,
    horizon: float,
    window: float,
) -> None:
    """Lambda's event source mapping, per shard: a batch every window, one in flight, retried until applied."""

    def shard_loop(shard: str) -> None:
        phase[threading.get_ident()] = ("aggregator", None)
        position = 0
        while True:
            sim.sleep(window)
            pending = [r for r in model.stream[position:] if r.shard == shard]
            end = len(model.stream)
            batch = [r for r in pending if wanted(r.event)][:MAX_BATCH]
            if batch and len(batch) < len([r for r in pending if wanted(r.event)]):
                end = model.stream.index(batch[-1]) + 1  # the rest waits for the next batch
            if not batch and sim.now() > horizon + 10 and not _busy(sim):
                return
            while batch:
                try:
                    aggregator.handle({"Records": [r.event for r in batch], "shardId": shard})
                    for record in batch:
                        delays.append(sim.now() - record.at)
                    break
                except Exception:  # noqa: BLE001 - Lambda retries the same batch
                    sim.sleep(RETRY_DELAY_SECONDS)
            position = end

    for number in range(model.shards):
        sim.spawn(lambda number=number: shard_loop(f"shardId-{number:04d}"), name=f"esm-{number}")


def _busy(sim: Any) -> bool:
    # Anything else still scheduled (settles in flight) keeps the event source polling.
    return any(task.name not in ("esm-0", "esm-1", "esm-2", "esm-3") for _, _, task in sim._queue)


def _population(
    scenario: Scenario, rng: random.Random, model_entry: Any, seconds: float
) -> tuple[list[Any], dict[str, Decimal], dict[str, Decimal]]:
    from chalicelib.keys.store import KeyRecord
    from chalicelib.shared import scopes

    owners = [f"owner-{n:03d}" for n in range(scenario.owners)]
    teams = [f"team{n:08d}" for n in range(scenario.teams)]
    # Traffic shares: by owner (Zipf when asked), or by team (Zipf over teams, even within one).
    if scenario.teams:
        team_of = {owner: teams[n % scenario.teams] for n, owner in enumerate(owners)}
        team_weight = {team: 1 / (n + 1) for n, team in enumerate(teams)}
        members = defaultdict(int)
        for team in team_of.values():
            members[team] += 1
        weights = [team_weight[team_of[o]] / members[team_of[o]] for o in owners]
    else:
        team_of = {}
        weights = [1 / (n + 1) for n in range(scenario.owners)] if scenario.zipf_owners else [1.0] * scenario.owners
    total = sum(weights)
    share = {owner: weight / total for owner, weight in zip(owners, weights, strict=True)}
    mean_cost = Decimal("1600") * model_entry.prices.input + Decimal("300") * model_entry.prices.output
    keys = []
    owner_of = [owners[n % scenario.owners] for n in range(scenario.keys)]
    keys_per_owner = defaultdict(int)
    for owner in owner_of:
        keys_per_owner[owner] += 1
    for n in range(scenario.keys):
        owner = owner_of[n]
        expected = Decimal(str(scenario.rate * seconds * share[owner] / keys_per_owner[owner])) * mean_cost
        budget = None
        if rng.random() < scenario.key_budget_share:
            budget = (expected * Decimal(str(scenario.budget_fraction))).quantize(Decimal("0.000001"))
        limited = rng.random() < scenario.limits_share
        team = team_of.get(owner)
        team_owned = team is not None and rng.random() < scenario.team_owned_share
        keys.append(
            KeyRecord(
                key_id=f"key{n:04d}",
                owner_sub=scopes.team_owner(team) if team_owned and team else owner,
                owner_email=None,
                name="",
                status="active",
                created_at="2026-01-01T00:00:00Z",
                secret_hash="not-a-secret",  # noqa: S106 - keys are never authenticated here
                monthly_budget_usd=budget,
                rpm_limit=6000 if limited else None,
                tpm_limit=20_000_000 if limited else None,
                team_id=team,
            )
        )
    owner_budgets = {}
    for owner in owners:
        expected = Decimal(str(scenario.rate * seconds * share[owner])) * mean_cost
        if scenario.person_budgets:
            # Everyone has one, as the default budget gives everyone; roomier than the team's.
            owner_budgets[owner] = (expected * 2).quantize(Decimal("0.000001"))
        elif rng.random() < scenario.owner_budget_share or (scenario.owner_budget_share and owner == owners[0]):
            owner_budgets[owner] = (expected * Decimal(str(scenario.budget_fraction))).quantize(Decimal("0.000001"))
    team_budgets = {}
    for team in teams:
        expected = sum((Decimal(str(scenario.rate * seconds * share[o])) for o in owners if team_of[o] == team),
                       Decimal(0)) * mean_cost  # fmt: skip
        team_budgets[team] = (expected * Decimal(str(scenario.budget_fraction))).quantize(Decimal("0.000001"))
    return keys, owner_budgets, team_budgets


def _team_scope(team: str) -> Any:
    from chalicelib.shared import scopes

    return scopes.team(team)


def _key_chooser(keys: list[Any], scenario: Scenario, rng: random.Random) -> Any:
    by_owner: dict[str, list[Any]] = defaultdict(list)
    for key in keys:
        by_owner[key.owner_sub].append(key)
    owners = sorted(by_owner)
    weights = [1 / (n + 1) for n in range(len(owners))] if scenario.zipf_owners else [1.0] * len(owners)
    return lambda: rng.choice(by_owner[rng.choices(owners, weights)[0]])


def _kind(key: Any, owner_budgets: dict[str, Decimal], team_budgets: dict[str, Decimal] | None = None) -> str:
    limits = [key.monthly_budget_usd is not None, bool(key.rpm_limit or key.tpm_limit), key.owner_sub in owner_budgets]
    if key.team_id is not None:
        limits.append(key.team_id in (team_budgets or {}))
    return "every-limit" if all(limits) else "plain" if not any(limits) else "some-limits"


def _usage(bound: int, max_tokens: int, rng: random.Random) -> Any:
    from chalicelib.shared.usage import TokenUsage

    return TokenUsage(
        input_tokens=int(bound * rng.uniform(0.5, 1.0)), output_tokens=int(max_tokens * rng.uniform(0.1, 1.0))
    )


def _refusal(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if code in ("insufficient_quota", "rate_limit_exceeded", "tokens_exceeded"):
        return code
    return f"error: {type(exc).__name__}"


def _calls(model: Any) -> int:
    return sum(model.stats.calls.values())


def _measure(
    result: Result,
    model: Any,
    outcomes: list[Outcome],
    keys: list[Any],
    owner_budgets: dict[str, Decimal],
    counter: _Counter,
    delays: list[float],
    sim: Any,
    meters: list[Any],
    design: str,
) -> None:
    import boto3

    from chalicelib.accounting.ledger import query_all

    # A plain client (the model is not on it): the stored truth.
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLES["UsageTable"])
    items = _scan(table)
    entries = {item["request_id"]: item for item in items if str(item["sk"]).startswith("REQ#")}
    aggregates = {(item["pk"], item["sk"]): item for item in items if str(item["pk"]).startswith("AGG#")}
    del query_all  # (scan above reads everything once)
    duration = max(sim.now(), result.seconds)
    result.achieved_per_second = round(sum(1 for o in outcomes if o.admitted or o.refusal) / result.seconds, 1)
    result.billed = sum(1 for o in outcomes if o.settled_cost is not None)
    result.refused_budget = sum(1 for o in outcomes if o.refusal == "insufficient_quota")
    result.refused_rate = sum(1 for o in outcomes if o.refusal in ("rate_limit_exceeded", "tokens_exceeded"))
    result.admission_errors = sum(1 for o in outcomes if o.refusal and o.refusal.startswith("error"))
    result.released = sum(1 for o in outcomes if o.released)
    result.conflicts = model.stats.conflicts
    result.throttles = model.stats.throttles
    # Every conflict or throttle was either retried or the last straw of an operation that failed.
    failures = result.admission_errors + sum(1 for o in outcomes if o.refusal and o.refusal.startswith("settle"))
    result.entries_unrecorded = counter.unrecorded
    result.retries = max(0, result.conflicts + result.throttles - failures - counter.unrecorded - counter.unreleased)
    told = {o.request_id: o.settled_cost for o in outcomes if o.settled_cost is not None}
    result.entries_lost = sum(1 for request_id in told if request_id not in entries)
    # Aggregates against the entries: per key month, and the whole deployment.
    month = START.strftime("MONTH#%Y-%m")
    by_key: dict[str, list[Any]] = defaultdict(list)
    for entry in entries.values():
        by_key[entry["key_id"]].append(entry)
    for key in keys:
        mine = by_key.get(key.key_id, [])
        row = aggregates.get((f"AGG#KEY#{key.key_id}", month), {})
        counted, stored = int(row.get("requests", 0)), len(mine)
        if counted > stored:
            result.double_counted += counted - stored
        if counted != stored or Decimal(row.get("cost", 0)) != sum((Decimal(e["cost"]) for e in mine), Decimal(0)):
            result.aggregates_not_equal_entries += 1
    everything = aggregates.get(("AGG#ALL", month), {})
    if int(everything.get("requests", 0)) != len(entries):
        result.aggregates_not_equal_entries += 1
    # Budgets: what the ledger holds against each budget.
    worst = Decimal(0)
    spend_owner: dict[str, Decimal] = defaultdict(Decimal)
    owner_of = {key.key_id: key.owner_sub for key in keys}
    for key in keys:
        spent = sum((Decimal(e["cost"]) for e in by_key.get(key.key_id, [])), Decimal(0))
        spend_owner[owner_of[key.key_id]] += spent
        if key.monthly_budget_usd is not None and spent > key.monthly_budget_usd:
            result.budget_overruns += 1
            worst = max(worst, spent - key.monthly_budget_usd)
    for owner, budget in owner_budgets.items():
        if spend_owner[owner] > budget:
            result.budget_overruns += 1
            worst = max(worst, spend_owner[owner] - budget)
    result.worst_overrun_usd = str(worst)
    held = Decimal(0)
    for (pk, sk), row in aggregates.items():
        if sk == month and (pk.startswith("AGG#KEY#") or pk.startswith("AGG#OWNER#")):
            held += Decimal(row.get("committed", 0)) - Decimal(row.get("cost", 0))
    result.reservations_left_held_usd = str(held)
    units = dict(model.stats.units_by_tag)
    total_write = sum(v for k, v in units.items() if not k.endswith(" read") and not k.startswith("setup"))
    result.write_units_per_request = round(total_write / max(1, result.billed), 2)
    result.write_units_breakdown = {
        k: round(v / max(1, result.billed), 2) for k, v in sorted(units.items()) if not k.startswith("setup")
    }
    result.busiest_item, result.busiest_item_writes_per_second = model.stats.busiest_item()
    for kind in ("plain", "some-limits", "every-limit"):
        mine = [o for o in outcomes if o.kind == kind and o.settled_cost is not None]
        if mine:
            result.request_path[kind] = {
                "requests": len(mine),
                "calls_per_request": round(statistics.fmean(o.admit_calls + o.settle_calls for o in mine), 2),
                "admit_calls": round(statistics.fmean(o.admit_calls for o in mine), 2),
                "settle_calls": round(statistics.fmean(o.settle_calls for o in mine), 2),
                "dynamodb_ms_p50": round(1000 * statistics.median(o.admit_seconds + o.settle_seconds for o in mine), 1),
                "dynamodb_ms_max": round(1000 * max(o.admit_seconds + o.settle_seconds for o in mine), 1),
            }
    if delays:
        ordered = sorted(delays)
        result.aggregation_delay_seconds = {
            "p50": round(ordered[len(ordered) // 2], 2),
            "p99": round(ordered[int(len(ordered) * 0.99)], 2),
            "max": round(ordered[-1], 2),
        }
    del duration, meters, design


def _measure_teams(result: Result, keys: list[Any], team_budgets: dict[str, Decimal]) -> None:
    """Each team's spend (its entries: the team that admitted them) against its budget and its aggregate."""
    import boto3

    if not team_budgets:
        return
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(TABLES["UsageTable"])
    items = _scan(table)
    month = START.strftime("MONTH#%Y-%m")
    spent: dict[str, Decimal] = defaultdict(Decimal)
    counted: dict[str, int] = defaultdict(int)
    for item in items:
        if str(item["sk"]).startswith("REQ#") and item.get("team_id"):
            spent[item["team_id"]] += Decimal(item["cost"])
            counted[item["team_id"]] += 1
    aggregates = {item["pk"]: item for item in items if item["sk"] == month and str(item["pk"]).startswith("AGG#TEAM#")}
    for team, budget in team_budgets.items():
        if spent[team] > budget:
            result.team_budget_overruns += 1
            result.budget_overruns += 1
        row = aggregates.get(f"AGG#TEAM#{team}", {})
        if int(row.get("requests", 0)) != counted[team] or Decimal(row.get("cost", 0)) != spent[team]:
            result.team_aggregates_not_equal_entries += 1
            result.aggregates_not_equal_entries += 1
        held = Decimal(row.get("committed", 0)) - Decimal(row.get("cost", 0))
        result.reservations_left_held_usd = str(Decimal(result.reservations_left_held_usd) + held)


def _scan(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append", help="default: all")
    parser.add_argument("--seconds", type=float, help="virtual seconds of offered load (default 5; with --short, 2)")
    parser.add_argument("--hold-ms", type=float, default=5.0, help="how long a transaction holds its items")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--batch-window",
        type=float,
        help=f"the event source's batching window (default {BATCH_WINDOW_SECONDS} s, the template's)",
    )
    parser.add_argument("--short", action="store_true", help="a quick run: a fifth of the load (and keys), for 2 s")
    parser.add_argument("--design", choices=("today", "stream"), action="append", help="default: both")
    parser.add_argument("--rate", type=float, help="offered requests per second, for every scenario run")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 2.0 if args.short else 5.0
    report: dict[str, Any] = {
        "model": {"hold_ms": args.hold_ms, "item_wcu_per_second": 1000, "seconds": seconds},
        "runs": [],
    }
    for name in args.scenario or list(SCENARIOS):
        scenario = SCENARIOS[name]
        if args.short:
            scenario = Scenario(**{**asdict(scenario), "rate": scenario.rate / 5, "keys": max(1, scenario.keys // 5)})
        if args.rate:
            scenario = Scenario(**{**asdict(scenario), "rate": args.rate})
        for design in args.design or scenario.designs:
            if design not in scenario.designs:
                continue
            outcome = run(
                design,
                scenario,
                seconds=seconds,
                hold_seconds=args.hold_ms / 1000,
                seed=args.seed,
                window=args.batch_window,
            )
            report["runs"].append(asdict(outcome))
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
