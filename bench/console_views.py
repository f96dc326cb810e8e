"""How long each console view takes over a realistic ledger, on ``make dev``'s stack, and what it asks Cognito.

Seeds a local stack with ``--keys`` keys (1,000) of ``--owners`` people (100) and ``--entries``
ledger entries (100,000) over this month and the last, with the aggregates the real
aggregator builds from them (``Aggregator.apply`` over the entries, as the stream would
deliver them), then opens each console view the way the console's JavaScript does (the
same API calls, in parallel where it runs them in parallel) and times it end to end over
HTTP: the local front, ``chalice local``, moto server.

Two stacks run on the same seeded state, one after the other:

* ``before``: the console's calls as they were before issue 19 (every page of keys loaded
  before search works, four calls for "My spend", …), on moto without the query patch
  (``--skip-patch queries``);
* ``after``: the console's calls now, on ``make dev``'s moto and settings.

Cognito calls are counted by a small proxy in front of moto's Cognito
(``PENNYWORTH_COGNITO_ENDPOINT_URL``): what the gateway really asks, per view.

Prints JSON: per stack and view, the wall time of each run (ms), the median and the slowest,
the API calls and the Cognito calls per view (by operation), and whether the view met the
1 s goal. ``--keys 20 --entries 300 --owners 4 --runs 1`` is the tiny size ``make test`` runs.

Usage: ``python bench/console_views.py [--keys 1000] [--entries 100000] [--owners 100] [--runs 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.server
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
# bench/ first on sys.path would shadow libraries (bench/responses.py is not the `responses` moto imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(_name, "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

GOAL_MS = 1000
REGION = "us-east-1"
#: The share of requests on the one model few use (the request log's "rare filter" view).
RARE_SHARE = 0.002


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Seeding -------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the views need to know about the seeded data."""

    keys: int
    entries: int
    owners: int
    user_sub: str
    admin_sub: str
    a_key_name: str
    a_model: str
    a_team: str
    seconds: float


def seed(state_dir: Path, *, keys: int, entries: int, owners: int, now: datetime, log_dir: Path) -> Seeded:
    """A stack's saved state with the pool, its admin and user (a first ``make dev``), then the data."""
    from local.devstack import AWS_STATE, DevStack, Ports

    started = time.monotonic()
    with DevStack(ports=Ports.free(), log_dir=log_dir, state_dir=state_dir):
        pass  # the first start creates the pool, the admin and the user; stopping saves the state
    stack = json.loads((state_dir / "stack.json").read_text())
    from moto import mock_aws

    from local import moto_patches, moto_state

    moto_patches.apply()
    with mock_aws():
        moto_state.load(state_dir / AWS_STATE)
        seeded = _fill(stack, keys=keys, entries=entries, owners=owners, now=now)
        moto_state.write(state_dir / AWS_STATE, moto_state.snapshot())
    seeded.seconds = round(time.monotonic() - started, 1)
    return seeded


def _fill(stack: dict[str, Any], *, keys: int, entries: int, owners: int, now: datetime) -> Seeded:
    import boto3
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from chalicelib.accounting.aggregator import change_of
    from chalicelib.accounting.ledger import entry_item, new_entry
    from chalicelib.admin.directory import Directory
    from chalicelib.catalog.catalog import load_catalog
    from chalicelib.keys.store import KeyStore
    from chalicelib.settings import get_settings
    from chalicelib.shared import scopes
    from chalicelib.shared.usage import TokenUsage
    from local import bootstrap
    from local.devstack import ADMIN_EMAIL, TABLE_NAMES, USER_EMAIL

    rng = random.Random(19)
    cognito = boto3.client("cognito-idp", region_name=REGION)
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    pool = stack["user_pool_id"]
    subs = {}
    for email in (ADMIN_EMAIL, USER_EMAIL):
        user = cognito.admin_get_user(UserPoolId=pool, Username=email)
        subs[email] = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
    people = [ADMIN_EMAIL, USER_EMAIL]
    for n in range(max(0, owners - 2)):
        email = f"person{n:03d}@example.com"
        subs[email] = bootstrap.create_user(cognito, pool, email, f"Pw1!seed-{n:04d}-password")
        people.append(email)
    catalog = [
        m for m in load_catalog(get_settings().catalog_path, region=get_settings().bedrock_region) if m.mode == "chat"
    ]
    common, rare = catalog[:-1], catalog[-1]
    teams = ["search", "support", "billing", "data", "infra", "mobile", "web", "ml"]
    purposes = ["ci", "laptop", "notebook", "batch", "chatbot", "eval", "agent", "backfill"]
    keys_table = dynamodb.Table(TABLE_NAMES["KeysTable"])
    usage_table = dynamodb.Table(TABLE_NAMES["UsageTable"])
    # Teams: every other key is charged to one (its requests then record the team).
    directory = Directory(usage_table)
    team_ids = {
        name: directory.create_team(name.title(), actor="bench", default_member_budget_usd=None).team_id
        for name in teams
    }
    charged: dict[str, set[str]] = {team_id: set() for team_id in team_ids.values()}
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    first_day = (month_start - timedelta(days=1)).replace(day=1)
    records = []
    for n in range(keys):
        email = people[n % len(people)]
        created = (
            first_day
            - timedelta(days=30)
            + timedelta(seconds=rng.randrange(int((now - first_day).total_seconds()) + 30 * 86400))
        )
        store = KeyStore(keys_table, clock=lambda created=created: created)
        fields: dict[str, Any] = {"name": f"{teams[n % len(teams)]}-{purposes[(n // 8) % len(purposes)]}-{n:04d}"}
        if n % 3 == 0:
            fields["monthly_budget_usd"] = rng.choice([5, 25, 100, 1000])
        if n % 5 == 0:
            fields["allowed_models"] = sorted({rng.choice(catalog).id for _ in range(2)})
        if n % 4 == 0:
            fields["metadata"] = {"team": teams[n % len(teams)], "ticket": f"OPS-{n}"}
        if n % 33 == 0:
            fields["expires_at"] = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        team_id = team_ids[teams[n % len(teams)]] if n % 2 == 0 else None
        record, _ = store.create(owner_sub=subs[email], owner_email=email, team_id=team_id, **fields)
        if team_id:
            charged[team_id].add(record.key_id)
        if n % 20 == 7:
            record = store.revoke(record)
        records.append(record)
    for team_id, key_ids in charged.items():
        if key_ids:
            usage_table.update_item(
                Key=scopes.team_key(team_id),
                UpdateExpression="ADD key_ids :ids",
                ExpressionAttributeValues={":ids": key_ids},
            )
    # Entries: a few busy keys and many quiet ones, over last month and this one up to now.
    weights = [1 / (1 + (n % 97)) for n in range(len(records))]
    serializer = TypeSerializer()
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
    span = int((now - first_day).total_seconds())
    images = []
    progress(f"{len(records)} keys; writing {entries} entries")
    for n, record in enumerate(rng.choices(records, weights=weights, k=entries)):
        allowed = [m for m in common if record.allowed_models is None or m.id in record.allowed_models] or common
        model = rare if rng.random() < RARE_SHARE else rng.choice(allowed)  # one request in 500: the rare model
        usage = TokenUsage(input_tokens=rng.randrange(50, 4000), output_tokens=rng.randrange(10, 1200))
        entry = new_entry(
            request_id=f"{n:08x}{rng.getrandbits(96):024x}",
            key_id=record.key_id,
            owner_sub=record.owner_sub,
            team_id=record.team_id,
            model=model.id,
            bedrock_model_id=model.bedrock_model_id,
            operation="chat",
            usage=usage,
            prices=model.prices,
            latency_ms=rng.randrange(200, 9000),
            status="ok" if rng.random() > 0.03 else "partial",
            at=first_day + timedelta(seconds=rng.randrange(span)),
        )
        typed = {name: serializer.serialize(value) for name, value in entry_item(entry).items()}
        backend.put_item(TABLE_NAMES["UsageTable"], typed)
        images.append(typed)
    # The aggregates the aggregator builds from these entries (its own change_of, summed), written whole:
    # its transactions would take the seeding an hour on moto, and end in the same items.
    progress(f"aggregating {len(images)} entries")
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    deserializer = TypeDeserializer()
    for sequence, image in enumerate(images, start=1):
        for (pk, sk), row in change_of(sequence, deserializer.deserialize({"M": image})).rows.items():
            item = totals.setdefault((pk, sk), {"pk": pk, "sk": sk})
            item.update(row.sets)
            for name, amount in row.adds.items():
                item[name] = item.get(name, 0) + amount
    for item in totals.values():
        backend.put_item(TABLE_NAMES["UsageTable"], {name: serializer.serialize(value) for name, value in item.items()})
    progress(f"{len(totals)} aggregate items")
    # The stack's own aggregator starts from the stream: it must find nothing of the seeding there.
    shard = backend.get_table(TABLE_NAMES["UsageTable"]).stream_shard
    if shard is not None:
        shard.items.clear()
    named = records[len(records) // 2]
    return Seeded(
        keys=keys,
        entries=entries,
        owners=len(people),
        user_sub=subs[USER_EMAIL],
        admin_sub=subs[ADMIN_EMAIL],
        a_key_name=named.name,
        a_model=rare.id,
        a_team=teams[0].title(),
        seconds=0.0,
    )


# --- Counting what the gateway asks Cognito ------------------------------------------------------


class CognitoCounter:
    """An HTTP proxy in front of moto's Cognito that counts operations (``X-Amz-Target``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                with counter._lock:
                    counter.calls[target.rpartition(".")[2] or f"{self.command} {self.path.split('?')[0]}"] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(
                    counter.upstream + self.path, data=body or None, headers=headers, method=self.command
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, reply, kept = answer.status, answer.read(), answer.headers.items()
                except urllib.error.HTTPError as error:
                    status, reply, kept = error.code, error.read(), error.headers.items()
                self.send_response(status)
                for name, value in kept:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def take(self) -> Counter[str]:
        with self._lock:
            taken, self.calls = self.calls, Counter()
        return taken

    def close(self) -> None:
        self._server.shutdown()


# --- The console's calls --------------------------------------------------------------------------


@dataclass
class Api:
    """The admin API as the console calls it: one signed-in user, counting calls."""

    root: str
    token: str
    calls: int = 0
    _local: threading.local = field(default_factory=threading.local)

    def get(self, path: str, **query: Any) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        self.calls += 1
        query = {k: v for k, v in query.items() if v not in (None, "")}
        url = f"{self.root}/{path}" + (f"?{urlencode(query)}" if query else "")
        answer = session.get(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:300]}")
        return answer.json()


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def every_page(api: Api, path: str, query: dict[str, Any], limit: int = 100) -> list[Any]:
    """``PW.api.listAll``: every page of a listing, one after the other."""
    items, cursor = [], None
    while True:
        page = api.get(path, **query, limit=limit, cursor=cursor)
        items += page["data"]
        cursor = page["next_cursor"] if page.get("has_more") else None
        if not cursor:
            return items


def month_range(now: datetime) -> dict[str, str]:
    return {"from": now.strftime("%Y-%m-01"), "to": now.strftime("%Y-%m-%d")}


def views_before(seeded: Seeded, now: datetime) -> dict[str, tuple[str, Callable[[Api], Any]]]:
    """The console's calls before issue 19 (chalicelib/console/static at that commit), by view."""
    month = month_range(now)

    def all_keys(api: Api) -> Any:
        keys, _, _ = parallel(
            lambda: every_page(api, "admin/keys", {}),
            lambda: api.get("admin/models"),
            lambda: api.get("admin/usage", group_by="key", **month),
        )
        return [k for k in keys if seeded.a_key_name in k["name"]]  # search ran in the page, after all that

    def my_keys(api: Api) -> Any:
        return parallel(
            lambda: every_page(api, "admin/keys", {"owner": "me"}),
            lambda: api.get("admin/usage", group_by="key", owner=seeded.user_sub, **month),
        )

    def my_spend(api: Api) -> Any:
        return parallel(
            *(
                lambda g=g: api.get("admin/usage", group_by=g, owner=seeded.user_sub, **month)
                for g in ("day", "model", "key")
            ),
            lambda: api.get("admin/owners/me/budget"),
        )

    def owners(api: Api) -> Any:
        keys = every_page(api, "admin/keys", {})
        subs = sorted({k["owner"]["sub"] for k in keys})
        with ThreadPoolExecutor(max_workers=4) as pool:  # the page asks four at a time
            return list(pool.map(lambda sub: api.get(f"admin/owners/{sub}/budget"), subs))

    def usage(api: Api) -> Any:
        return api.get("admin/usage", group_by="key", **month)

    def audit(api: Api) -> Any:
        return api.get("admin/audit", day=now.strftime("%Y-%m-%d"), limit=100)

    return {
        "all keys: find one key (admin)": ("admin", all_keys),
        "my keys (member)": ("user", my_keys),
        "my spend (member)": ("user", my_spend),
        "owners and budgets (admin)": ("admin", owners),
        "usage by key, this month (admin)": ("admin", usage),
        "audit log, today (admin)": ("admin", audit),
    }


def views_after(seeded: Seeded, now: datetime) -> dict[str, tuple[str, Callable[[Api], Any]]]:
    """The console's calls now (chalicelib/console/static), by view."""
    month = now.strftime("%Y-%m")
    days = {"from": (now - timedelta(days=30)).strftime("%Y-%m-%d"), "to": now.strftime("%Y-%m-%d")}

    def all_keys(api: Api) -> Any:
        return parallel(lambda: api.get("admin/keys", limit=50), lambda: api.get("admin/models"))

    def find_key(api: Api) -> Any:
        found = api.get("admin/keys", q=seeded.a_key_name, limit=50)  # typed into the search box
        assert [k["name"] for k in found["data"]] == [seeded.a_key_name], found["data"]
        return found

    def log(api: Api, **query: Any) -> Any:
        return api.get("admin/requests", limit=50, **days, **query)

    def log_two_pages(api: Api) -> Any:
        first, _ = parallel(lambda: log(api), lambda: api.get("admin/models"))
        return log(api, cursor=first["next_cursor"])

    def log_rare(api: Api) -> Any:
        rows, page = [], log(api, model=seeded.a_model)
        rows += page["data"]
        return rows

    def csv_of_a_person(api: Api) -> Any:
        rows, cursor = [], None
        while True:
            page = api.get("admin/requests", limit=200, owner=seeded.user_sub, cursor=cursor, **days)
            rows += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return rows

    return {
        "all keys: first page (admin)": ("admin", all_keys),
        "all keys: find one key (admin)": ("admin", find_key),
        "my keys (member)": ("user", lambda api: api.get("admin/keys", owner="me", limit=50)),
        "my spend (member)": ("user", lambda api: api.get("admin/spend", month=month)),
        "request log: two pages (admin)": ("admin", log_two_pages),
        "request log: a rare model, first page (admin)": ("admin", log_rare),
        "request log: one person's 30 days as CSV (admin)": ("admin", csv_of_a_person),
        "request log (member)": ("user", lambda api: log(api)),
        "request log: one team, first page (admin)": ("admin", lambda api: log(api, team=seeded.a_team)),
        "usage by team, this month (admin)": (
            "admin",
            lambda api: api.get("admin/usage", group_by="team", **month_range(now)),
        ),
        "usage by key, this month (admin)": (  # the page asks for the 100 costliest keys ("Show all": every one)
            "admin",
            lambda api: api.get("admin/usage", group_by="key", limit=100, **month_range(now)),
        ),
        "audit log, today (admin)": (
            "admin",
            lambda api: api.get("admin/audit", day=now.strftime("%Y-%m-%d"), limit=100),
        ),
    }


# --- Running -----------------------------------------------------------------------------------


def sign_in(info: dict[str, Any], who: str) -> str:
    import boto3

    cognito = boto3.client("cognito-idp", region_name=REGION, endpoint_url=info["aws_endpoint_url"])
    username, password = info[f"{who}_username"], info[f"{who}_password"]
    result = cognito.initiate_auth(
        ClientId=info["cognito"]["client_id"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return result["AuthenticationResult"]["IdToken"]


#: Runs in the source tree being measured (this one, or an older checkout given as --before-source):
#: starts its DevStack on the seeded state, prints the stack's details, stops when stdin closes.
LAUNCH = """
import json, sys
from pathlib import Path
from local.devstack import DevStack, Ports
args = json.loads(sys.argv[1])
stack = DevStack(ports=Ports(**args["ports"]), log_dir=Path(args["logs"]), state_dir=Path(args["state"]),
                 extra_env=args["env"], **args["options"])
try:
    stack.start()
    print(json.dumps(stack.info), flush=True)
    sys.stdin.read()
finally:
    stack.stop()
"""


@dataclass
class RunningStack:
    info: dict[str, Any]


@contextlib.contextmanager
def stack_on(
    source: Path, state_dir: Path, log_dir: Path, *, options: dict[str, Any], env: dict[str, str]
) -> Iterator[tuple[RunningStack, CognitoCounter]]:
    import subprocess

    from local.devstack import Ports

    ports = Ports.free()
    counter = CognitoCounter(f"http://127.0.0.1:{ports.aws}")
    args = {
        "ports": {"api": ports.api, "aws": ports.aws, "bedrock": ports.bedrock},
        "logs": str(log_dir),
        "state": str(state_dir),
        "env": {"PENNYWORTH_COGNITO_ENDPOINT_URL": counter.url, **env},
        "options": options,
    }
    environ = {**os.environ, "PYTHONPATH": str(source)}
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, json.dumps(args)],
        cwd=source,
        env=environ,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = launcher.stdout.readline()
        if not line:
            raise RuntimeError(f"the stack of {source} did not start (logs: {log_dir})")
        yield RunningStack(json.loads(line)), counter
    finally:
        launcher.stdin.close()
        launcher.wait(timeout=60)
        counter.close()


def warm(view: Callable[[Api], Any], api: Api) -> None:
    """Run a view once, untimed: the first call of a process imports and connects, and fetches the
    pool's signing keys, which a moto loading a large state may not answer within the gateway's 5 s
    (a 503 then): try again, up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            view(api)
            return
        except RuntimeError as error:
            if " 503 " not in str(error) or time.monotonic() > deadline:
                raise
            progress(f"warming up: {str(error)[:120]}")
            time.sleep(2)


def measure(
    stack: Any, counter: CognitoCounter, views: dict[str, tuple[str, Callable[[Api], Any]]], runs: int
) -> dict[str, Any]:
    root = stack.info["base_url"].removesuffix("/v1")
    tokens = {who: sign_in(stack.info, who) for who in ("admin", "user")}
    results = {}
    for name, (who, view) in views.items():
        api = Api(root, tokens[who])
        times = []
        try:
            warm(view, api)
            counter.take()
            api.calls = 0
            for _ in range(runs):
                started = time.perf_counter()
                view(api)
                times.append(round((time.perf_counter() - started) * 1000))
        except RuntimeError as error:  # a view the gateway failed: said, and the others still run
            results[name] = {"error": str(error)[:500], "ms": times}
            progress(f"{name}: FAILED {str(error)[:200]}")
            counter.take()
            continue
        cognito = counter.take()
        results[name] = {
            "ms": times,
            "median_ms": statistics.median(times),
            "slowest_ms": max(times),
            "api_calls": api.calls / runs,
            "cognito_calls": round(sum(cognito.values()) / runs, 2),
            "cognito_by_operation": {op: round(n / runs, 2) for op, n in sorted(cognito.items())},
            "within_1s": max(times) <= GOAL_MS,
        }
        print(f"{name}: {times} ms, {results[name]['cognito_calls']} Cognito calls", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("before", "after"), help="run one stack only")
    parser.add_argument(
        "--seed-dir", type=Path, help="keep the seeded state here, and reuse it when it is there (same day only)"
    )
    parser.add_argument(
        "--before-source",
        type=Path,
        help="run 'before' from this source tree (e.g. `git archive <commit>` unpacked): its own code, "
        "its own moto patches, its console's calls; default: this tree without the query patch",
    )
    args = parser.parse_args(argv)
    now = datetime.now(UTC).replace(microsecond=0)
    work = Path(tempfile.mkdtemp(prefix="pennyworth-console-bench-"))
    try:
        seeded_state, logs = (args.seed_dir or work) / "seeded", work / "logs"
        record = seeded_state / "seeded.json"
        if args.seed_dir and record.exists():
            kept = json.loads(record.read_text())
            now, seeded = datetime.fromisoformat(kept.pop("now")), Seeded(**kept)
            progress(f"reusing the seed in {seeded_state} ({seeded.entries} entries, made {now:%Y-%m-%d %H:%M})")
        else:
            progress(f"seeding {args.keys} keys, {args.entries} entries, {args.owners} people")
            seeded = seed(seeded_state, keys=args.keys, entries=args.entries, owners=args.owners, now=now, log_dir=logs)
            record.write_text(json.dumps({**dataclasses.asdict(seeded), "now": now.isoformat()}))
            progress(f"seeded in {seeded.seconds} s")
        this_tree = {"persist": False}
        if args.before_source:
            before = (args.before_source.resolve(), {}, {}, f"{args.before_source} as it is: its code, its moto")
        else:
            options = {**this_tree, "moto_args": ["--skip-patch", "queries"]}
            before = (ROOT, options, {}, "this tree, old calls, moto's queries")
        stacks = {
            "before": (*before, views_before),
            "after": (ROOT, this_tree, {}, "this tree", views_after),
        }
        report: dict[str, Any] = {
            "benchmark": "console_views",
            "keys": seeded.keys,
            "entries": seeded.entries,
            "owners": seeded.owners,
            "runs_per_view": args.runs,
            "goal_ms": GOAL_MS,
            "seed_seconds": seeded.seconds,
            "stacks": {},
        }
        for name, (source, options, env, label, views) in stacks.items():
            if args.only and name != args.only:
                continue
            state = work / name  # a copy each: a stack that saves its state changes only its own
            shutil.copytree(seeded_state, state)
            progress(f"{name}: {label}")
            with stack_on(source, state, logs, options=options, env=env) as (stack, counter):
                report["stacks"][name] = {
                    "source": label,
                    "views": measure(stack, counter, views(seeded, now), args.runs),
                }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
