"""The request log (GET /admin/requests): who sees what, filters, paging, bounds, and what entries record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.accounting.ledger import Ledger
from chalicelib.admin import requests as request_log
from chalicelib.keys.store import KeyStore
from chalicelib.shared.money import usd
from chalicelib.shared.usage import TokenUsage
from tests.admin_fixtures import Api
from tests.cognito_helpers import User
from tests.factories import usage_entry

NOW = datetime.now(UTC).replace(microsecond=0)


def bill(usage_table: Any, key: dict[str, Any], n: int, *, at: datetime, **fields: Any) -> None:
    """``n`` billed requests on ``key`` (the admin API's view of it), one second apart going back from ``at``."""
    ledger = Ledger(usage_table)
    for i in range(n):
        ledger.record(
            usage_entry(
                request_id=f"{key['key_id']}-{at:%m%d%H%M%S}-{i:04d}",
                key_id=key["key_id"],
                owner_sub=key["owner"]["sub"],
                at=at - timedelta(seconds=i),
                **fields,
            )
        )


def page(api: Api, **query: Any) -> Any:
    from urllib.parse import urlencode

    response = api.call("get", "/admin/requests" + (f"?{urlencode(query)}" if query else ""))
    return response


def every_row(api: Api, **query: Any) -> list[dict[str, Any]]:
    rows, cursor = [], None
    for _ in range(100):
        answer = page(api, **query, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.json_body
        rows += answer.json_body["data"]
        cursor = answer.json_body["next_cursor"]
        if not cursor:
            return rows
    raise AssertionError("the log never ended")


@pytest.fixture
def keys(as_admin: Api, as_alice: Api, as_bob: Api) -> dict[str, dict[str, Any]]:
    return {
        "alice": as_alice.call("post", "/admin/keys", {"name": "alice laptop"}).json_body,
        "alice2": as_alice.call("post", "/admin/keys", {"name": '=HYPERLINK("x")'}).json_body,
        "bob": as_bob.call("post", "/admin/keys", {"name": "bob ci"}).json_body,
        "admin": as_admin.call("post", "/admin/keys", {"name": "admin's"}).json_body,
    }


def test_members_see_their_own_requests_and_admins_everyones(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, as_alice: Api, as_bob: Api, alice: User
) -> None:
    # GIVEN requests on alice's two keys, bob's and the admin's
    bill(usage_table, keys["alice"], 3, at=NOW - timedelta(minutes=5))
    bill(usage_table, keys["alice2"], 2, at=NOW - timedelta(minutes=4))
    bill(usage_table, keys["bob"], 4, at=NOW - timedelta(minutes=3))
    bill(usage_table, keys["admin"], 1, at=NOW - timedelta(minutes=2))
    # THEN alice sees her five, newest first, with her keys' names and her e-mail
    mine = every_row(as_alice)
    assert [r["key_id"] for r in mine] == [keys["alice2"]["key_id"]] * 2 + [keys["alice"]["key_id"]] * 3
    assert {r["owner_email"] for r in mine} == {alice.email}
    assert {r["key_name"] for r in mine} == {"alice laptop", '=HYPERLINK("x")'}
    assert [r["time"] for r in mine] == sorted((r["time"] for r in mine), reverse=True)
    # AND the admin sees all ten, and can narrow them to one person or one key
    assert len(every_row(as_admin)) == 10
    assert {r["key_id"] for r in every_row(as_admin, owner=alice.email)} == {
        keys["alice"]["key_id"],
        keys["alice2"]["key_id"],
    }
    assert len(every_row(as_admin, key=keys["bob"]["prefix"])) == 4
    # AND a member cannot read anyone else's: not by person, not by key, not by a team they do not run
    assert as_admin.call("post", "/admin/teams", {"name": "Search"}).status_code == 201
    as_admin.call("post", "/admin/teams/search/members", {"person": alice.email})
    for query, code in (({"owner": "bob@example.com"}, "admin_only"), ({"key": keys["bob"]["key_id"]}, "not_key_owner"),
                        ({"team": "search"}, "team_admin_only")):  # fmt: skip
        refused = page(as_alice, **query)
        assert refused.status_code == 403 and refused.json_body["error"]["code"] == code, query
    assert len(every_row(as_bob, owner="me")) == 4


def test_a_row_carries_what_was_billed_and_nothing_of_the_prompt(
    usage_table: Any, keys: dict[str, Any], as_alice: Api
) -> None:
    usage = TokenUsage(input_tokens=1234, output_tokens=56, cache_read_tokens=7, cache_write_tokens=8)
    bill(usage_table, keys["alice"], 1, at=NOW - timedelta(minutes=1), usage=usage, latency_ms=987,
         status="partial", protocol="anthropic", model="nova-micro")  # fmt: skip
    [row] = every_row(as_alice)
    entry = Ledger(usage_table).entries_for_key(keys["alice"]["key_id"])[0]
    assert row == {
        "object": "request",
        "time": entry["timestamp"],
        "request_id": entry["request_id"],
        "key_id": keys["alice"]["key_id"],
        "key_prefix": keys["alice"]["prefix"],
        "key_name": "alice laptop",
        "owner_sub": keys["alice"]["owner"]["sub"],
        "owner_email": "alice@example.com",
        "team": None,
        "team_id": None,
        "model": "nova-micro",
        "protocol": "anthropic",
        "operation": "chat",
        "status": "partial",
        "input_tokens": 1234,
        "output_tokens": 56,
        "cache_read_tokens": 7,
        "cache_write_tokens": 8,
        "cost_usd": usd(Decimal(entry["cost"])),
        "latency_ms": 987,
        "capped": False,
    }
    assert set(request_log.COLUMNS) <= set(row)


def test_filters_by_model_status_time_and_team(usage_table: Any, keys: dict[str, Any], as_admin: Api) -> None:
    bill(usage_table, keys["alice"], 5, at=NOW - timedelta(hours=1), model="nova-micro")
    bill(usage_table, keys["bob"], 3, at=NOW - timedelta(hours=2), model="claude-haiku-4-5", status="partial")
    bill(usage_table, keys["bob"], 2, at=NOW - timedelta(days=3), model="claude-haiku-4-5")
    # A request admitted under a team: the entry records the team, and the row names it
    team = as_admin.call("post", "/admin/teams", {"name": "Search"}).json_body
    bill(usage_table, keys["admin"], 1, at=NOW - timedelta(minutes=1), team_id=team["id"])
    for ref in ("Search", "search", team["id"]):
        [row] = every_row(as_admin, team=ref)
        assert (row["key_id"], row["team"], row["team_id"]) == (keys["admin"]["key_id"], "Search", team["id"])
    assert page(as_admin, team="nobody").json_body["error"]["code"] == "team_not_found"
    assert len(every_row(as_admin, model="claude-haiku-4-5")) == 5
    assert len(every_row(as_admin, model="claude-haiku-4-5", status="partial")) == 3
    day = (NOW - timedelta(days=3)).date().isoformat()
    assert len(every_row(as_admin, **{"from": day, "to": day})) == 2
    since = (NOW - timedelta(hours=1, minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(every_row(as_admin, **{"from": since})) == 6  # alice's five and the team's one


def test_pages_cover_every_request_once_across_months_newest_first(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, as_alice: Api
) -> None:
    # GIVEN 130 requests over two months, on two keys of alice's
    month_start = NOW.replace(day=1, hour=0, minute=0, second=0)
    bill(usage_table, keys["alice"], 70, at=month_start + timedelta(seconds=30))  # straddles the month's start
    bill(usage_table, keys["alice2"], 60, at=NOW - timedelta(seconds=5))
    since = (month_start - timedelta(days=2)).date().isoformat()
    for api in (as_admin, as_alice):  # the month log, and alice's keys merged
        rows, cursor, pages = [], None, 0
        while True:
            answer = page(api, limit=50, **{"from": since}, **({"cursor": cursor} if cursor else {})).json_body
            pages += 1
            rows += answer["data"]
            cursor = answer["next_cursor"]
            if not cursor:
                break
        assert len(rows) == 130 and len({r["request_id"] for r in rows}) == 130
        assert [(r["time"], r["request_id"]) for r in rows] == sorted(
            ((r["time"], r["request_id"]) for r in rows), reverse=True
        )
        assert pages == 3


def test_a_rare_filter_answers_short_bounded_pages(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 200 requests of which one used a rare model, and pages that may read 40 entries
    monkeypatch.setattr(request_log, "READ_BUDGET", 40)
    bill(usage_table, keys["bob"], 100, at=NOW - timedelta(minutes=10))
    bill(usage_table, keys["alice"], 1, at=NOW - timedelta(minutes=30), model="claude-haiku-4-5")
    bill(usage_table, keys["bob"], 99, at=NOW - timedelta(minutes=50))
    first = page(as_admin, model="claude-haiku-4-5", limit=5).json_body
    # THEN the first page stops early, empty, saying how far it searched, with more to come
    assert first["data"] == [] and first["has_more"] and first["searched_to"] < NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    # AND following the cursor finds the one request
    assert [r["model"] for r in every_row(as_admin, model="claude-haiku-4-5", limit=5)] == ["claude-haiku-4-5"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"status": "failed"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"cursor": "eyJub3QiOiAiYSBwb3NpdGlvbiJ9"}, "cursor"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "to"),
        ({"from": "2024-01-01", "to": "2026-11-01"}, "from"),
        ({"key": "pw-abcdefghijkl-" + "S" * 40}, "key"),
        ({"model": "nova micro; drop"}, "model"),
        ({"team": "\u202eevil"}, "team"),
        ({"group_by": "key"}, "group_by"),
    ],
)
def test_bad_queries_are_refused_by_name(as_admin: Api, query: dict[str, str], param: str) -> None:
    answer = page(as_admin, **query)
    assert answer.status_code == 400, answer.json_body
    assert answer.json_body["error"]["param"] == param
    assert "S" * 40 not in json.dumps(answer.json_body)  # a secret pasted as a key is never echoed


def test_an_unknown_key_is_404_and_an_unknown_person_400(as_admin: Api) -> None:
    assert page(as_admin, key="pw-abcdefghijkl").status_code == 404
    assert page(as_admin, owner="nobody@example.com").json_body["error"]["code"] == "unknown_user"


def test_every_protocol_records_itself_on_the_entry(client: Any, keys_table: Any, usage_table: Any) -> None:
    from tests.stream_client import StreamClient

    record, secret = KeyStore(keys_table).create(owner_sub="owner-1", name="protocols")
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    chat = {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}]}
    StreamClient().post("/v1/chat/completions", headers=headers, body=json.dumps(chat))
    StreamClient().post("/v1/responses", headers=headers, body=json.dumps({"model": "nova-micro", "input": "hi"}))
    messages = {"model": "nova-micro", "max_tokens": 20, "messages": chat["messages"]}
    StreamClient().post("/v1/messages", headers=headers, body=json.dumps(messages))
    client.http.post(
        "/v1/embeddings", headers=headers, body=json.dumps({"model": "titan-embed-text-v2", "input": "hi"})
    )
    entries = Ledger(usage_table).entries_for_key(record.key_id)
    assert sorted(e["protocol"] for e in entries) == ["anthropic", "openai", "openai", "responses"]
    assert {e["operation"] for e in entries} == {"chat", "embedding"}
    # Every entry is in the month's request log (the by-period index), under its shard
    for entry in entries:
        assert entry["gsi1pk"].startswith(f"LOG#{entry['timestamp'][:7]}#")
        assert entry["gsi1sk"] == f"{entry['timestamp']}#{entry['request_id']}"


def test_reconcile_replays_an_entry_with_its_protocol_and_refuses_a_bad_one() -> None:
    from chalicelib.accounting.reconcile import InvalidEntry, parse_entry

    data = usage_entry(protocol="mcp").to_json()
    now = datetime(2026, 11, 27, tzinfo=UTC)
    assert parse_entry(data, now=now).protocol == "mcp"
    assert parse_entry({k: v for k, v in data.items() if k != "protocol"}, now=now).protocol == ""
    with pytest.raises(InvalidEntry, match="protocol"):
        parse_entry({**data, "protocol": "Open AI\u202e"}, now=now)


def test_a_page_that_stops_at_a_months_end_goes_on_from_the_month_before(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN requests this month and last, and pages that read so little they stop between the months
    monkeypatch.setattr(request_log, "READ_BUDGET", 1)
    month_start = NOW.replace(day=1, hour=0, minute=0, second=0)
    bill(usage_table, keys["bob"], 6, at=NOW - timedelta(seconds=10))
    bill(usage_table, keys["bob"], 5, at=month_start - timedelta(hours=1))
    since = (month_start - timedelta(days=3)).date().isoformat()
    cursors = []
    rows, cursor = [], None
    while True:
        answer = page(as_admin, limit=3, **{"from": since}, **({"cursor": cursor} if cursor else {})).json_body
        rows += answer["data"]
        cursor = answer["next_cursor"]
        if not cursor:
            break
        cursors.append(cursor)
    assert len(rows) == 11 and len({r["request_id"] for r in rows}) == 11


def test_a_team_admin_reads_the_teams_requests_and_a_member_only_their_own(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, as_alice: Api, as_bob: Api, alice: User, bob: User
) -> None:
    # GIVEN a team run by bob, with alice a member whose key is charged to it
    team = as_admin.call("post", "/admin/teams", {"name": "Search"}).json_body
    as_admin.call("post", "/admin/teams/search/members", {"person": bob.email, "role": "admin"})
    as_admin.call("post", "/admin/teams/search/members", {"person": alice.email})
    charged = as_alice.call("post", "/admin/keys", {"name": "charged", "team": team["id"]}).json_body
    bill(usage_table, charged, 3, at=NOW - timedelta(minutes=2), team_id=team["id"])
    bill(usage_table, keys["alice"], 2, at=NOW - timedelta(minutes=1))  # alice's own, charged to no team
    # THEN bob, the team's admin, reads the team's three (and only with team=), with the team named
    rows = every_row(as_bob, team="Search")
    assert [r["team"] for r in rows] == ["Search"] * 3 and {r["owner_email"] for r in rows} == {alice.email}
    assert every_row(as_bob, team="Search", key=charged["prefix"]) == rows
    assert every_row(as_bob) == []  # his own: none
    assert page(as_bob, key=keys["alice"]["prefix"]).json_body["error"]["code"] == "not_key_owner"
    # AND alice, a member, reads her own five, not the team's as such
    assert len(every_row(as_alice)) == 5
    assert page(as_alice, team="Search").json_body["error"]["code"] == "team_admin_only"


def aggregate_everything(usage_table: Any) -> None:
    """The aggregates the aggregator builds from every entry in the table (its own ``change_of``)."""
    from chalicelib.accounting.aggregator import change_of

    items = usage_table.scan()["Items"]
    for sequence, item in enumerate((i for i in items if i.get("type") == "entry"), start=1):
        for (pk, sk), row in change_of(sequence, item).rows.items():
            names = {f"#a{n}": name for n, name in enumerate(row.adds)} | {f"#s{n}": k for n, k in enumerate(row.sets)}
            values = {f":a{n}": v for n, v in enumerate(row.adds.values())}
            values |= {f":s{n}": v for n, v in enumerate(row.sets.values())}
            expression = "ADD " + ", ".join(f"#a{n} :a{n}" for n in range(len(row.adds)))
            if row.sets:
                expression += " SET " + ", ".join(f"#s{n} = :s{n}" for n in range(len(row.sets)))
            usage_table.update_item(
                Key={"pk": pk, "sk": sk},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )


def test_a_teams_page_is_read_from_its_own_log_and_entries_from_before_it_still_show(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a team's two requests from before the team's log existed (no by-team attributes), three
    # since, and others' requests of no team, all aggregated
    team = as_admin.call("post", "/admin/teams", {"name": "Search"}).json_body
    bill(usage_table, keys["admin"], 2, at=NOW - timedelta(minutes=10), team_id=team["id"])
    for item in usage_table.scan()["Items"]:
        if item.get("type") == "entry":
            assert item["gsi2pk"] == f"TEAMLOG#{team['id']}#{NOW:%Y-%m}"
            usage_table.update_item(Key={"pk": item["pk"], "sk": item["sk"]}, UpdateExpression="REMOVE gsi2pk, gsi2sk")
    bill(usage_table, keys["admin"], 3, at=NOW - timedelta(minutes=5), team_id=team["id"])
    bill(usage_table, keys["bob"], 4, at=NOW - timedelta(minutes=4))
    aggregate_everything(usage_table)
    ledger = Ledger(usage_table)
    month = f"{NOW:%Y-%m}"
    # THEN the month is not whole in the team's log (3 of 5), and the page reads everyone's month,
    # filtered: all five show, newest first
    assert ledger.team_log_months(team["id"], [month]) == set()
    team_reads: list[str] = []
    original = request_log.RequestLog._team_source
    monkeypatch.setattr(
        request_log.RequestLog,
        "_team_source",
        lambda self, m, *args: team_reads.append(m) or original(self, m, *args),
    )
    rows = every_row(as_admin, team=team["id"])
    assert len(rows) == 5 and [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
    assert month not in team_reads  # (a month before, with nothing of the team's, is read from its log)
    # WHEN the old entries are in the team's log too (as the aggregator counts them)
    for item in usage_table.scan()["Items"]:
        if item.get("type") == "entry" and item.get("team_id") and "gsi2pk" not in item:
            usage_table.update_item(
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET gsi2pk = :pk, gsi2sk = :sk",
                ExpressionAttributeValues={
                    ":pk": f"TEAMLOG#{team['id']}#{month}",
                    ":sk": f"{item['timestamp']}#{item['request_id']}",
                },
            )
            usage_table.update_item(
                Key={"pk": f"AGG#TEAM#{team['id']}", "sk": f"MONTH#{month}"},
                UpdateExpression="ADD team_logged :one",
                ExpressionAttributeValues={":one": 1},
            )
    # THEN the month is read from the team's log alone, with the same rows, page by page
    assert ledger.team_log_months(team["id"], [month]) == {month}
    assert every_row(as_admin, team=team["id"], limit=2) == rows
    assert month in team_reads
    # AND filters still apply there (a member's own among the team's)
    assert every_row(as_admin, team=team["id"], status="partial") == []


def test_a_persons_pages_name_them_by_sub_and_ask_the_user_pool_at_most_once(
    usage_table: Any, keys: dict[str, Any], as_admin: Api, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN alice's requests, and every user-pool lookup counted
    from chalicelib.admin.auth import UserDirectory

    bill(usage_table, keys["alice"], 5, at=NOW - timedelta(minutes=5))
    finds: list[str] = []
    original = UserDirectory.find
    monkeypatch.setattr(UserDirectory, "find", lambda self, who: finds.append(who) or original(self, who))
    # WHEN an admin asks by e-mail: one lookup, and the answer names her by sub
    first = page(as_admin, owner=alice.email, limit=2).json_body
    assert finds == [alice.email] and first["owner"] == alice.sub
    # THEN the next pages, by sub, look nobody up, and cover the rest
    rows, cursor = first["data"], first["next_cursor"]
    while cursor:
        answer = page(as_admin, owner=first["owner"], cursor=cursor, limit=2).json_body
        rows, cursor = rows + answer["data"], answer["next_cursor"]
    assert finds == [alice.email] and len(rows) == 5
    assert page(as_admin).json_body["owner"] is None
