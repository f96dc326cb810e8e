"""Keys listed on the server: search, filters, paging, a bound per page, and this month's spend."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.accounting.ledger import Ledger
from chalicelib.keys import listing
from chalicelib.keys.store import KeyRecord, KeyStore
from chalicelib.shared.dates import isoformat
from chalicelib.shared.money import usd
from tests.admin_fixtures import Api
from tests.cognito_helpers import User
from tests.factories import usage_entry

START = datetime(2026, 11, 1, tzinfo=UTC)


def listed(api: Api, **query: Any) -> Any:
    return api.call("get", "/admin/keys?" + urlencode(query))


def every_key(api: Api, **query: Any) -> tuple[list[dict[str, Any]], int]:
    keys, cursor, pages = [], None, 0
    while True:
        answer = listed(api, **query, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.json_body
        pages += 1
        keys += answer.json_body["data"]
        cursor = answer.json_body["next_cursor"]
        if not cursor:
            return keys, pages


def test_search_finds_a_key_by_name_prefix_owner_or_metadata_in_any_case(
    as_admin: Api, as_alice: Api, alice: User
) -> None:
    for n in range(12):
        as_admin.call("post", "/admin/keys", {"name": f"filler {n}", "metadata": {"team": "ops"}})
    wanted = as_alice.call("post", "/admin/keys", {"name": "Billing Batch", "metadata": {"ticket": "FIN-42"}}).json_body
    for search in ("billing batch", "BATCH", wanted["prefix"], wanted["key_id"][3:9], "alice@EXAMPLE.com", "fin-42"):
        keys, _ = every_key(as_admin, q=search, limit=5)
        assert [k["key_id"] for k in keys] == [wanted["key_id"]], search
    # A member's search runs over their own keys only
    assert every_key(as_alice, q="filler")[0] == []
    assert len(every_key(as_admin, q="ops", limit=5)[0]) == 12


def test_filters_by_state_and_model_combine_with_search(as_admin: Api) -> None:
    nova = as_admin.call("post", "/admin/keys", {"name": "svc nova", "allowed_models": ["nova-micro"]}).json_body
    claude = as_admin.call(
        "post", "/admin/keys", {"name": "svc claude", "allowed_models": ["claude-haiku-4-5"]}
    ).json_body
    anything = as_admin.call("post", "/admin/keys", {"name": "svc any"}).json_body
    as_admin.call("post", f"/admin/keys/{anything['key_id']}/revoke", {})
    ids = lambda **q: {k["key_id"] for k in every_key(as_admin, q="svc", **q)[0]}  # noqa: E731
    assert ids(model="nova-micro") == {nova["key_id"], anything["key_id"]}  # no allowlist: every model
    assert ids(model="nova-micro", status="active") == {nova["key_id"]}
    assert ids(status="revoked") == {anything["key_id"]}
    assert ids() == {nova["key_id"], claude["key_id"], anything["key_id"]}
    refused = listed(as_admin, model="gpt-5")
    assert refused.status_code == 400 and refused.json_body["error"]["param"] == "model"
    assert listed(as_admin, q="x" * 201).json_body["error"]["param"] == "q"


def test_keys_made_in_the_same_second_page_once_each(keys_table: Any) -> None:
    # GIVEN 40 keys imported in the same second, active and revoked
    store = KeyStore(keys_table, clock=lambda: START)
    made = []
    for n in range(40):
        record, _ = store.create(owner_sub=f"o{n % 2}", name=f"k{n}")
        made.append(store.revoke(record).key_id if n % 3 == 0 else record.key_id)
    for owner in (None, "o1"):
        seen, cursor = [], None
        while True:
            page = store.list_keys(owner_sub=owner, limit=7, cursor=cursor)
            seen += [r.key_id for r in page.items]
            cursor = page.cursor
            if cursor is None:
                break
        expected = [k for n, k in enumerate(made) if owner is None or f"o{n % 2}" == owner]
        assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_a_state_read_to_its_end_is_not_read_again_while_the_other_goes_on(keys_table: Any) -> None:
    # GIVEN three revoked keys newer than ten active ones: the revoked partition ends on page two
    revoked, active = [], []
    for n in range(13):
        store = KeyStore(keys_table, clock=lambda n=n: START + timedelta(minutes=n))
        record, _ = store.create(owner_sub="o", name=f"k{n}")
        (revoked if n >= 10 else active).append(store.revoke(record).key_id if n >= 10 else record.key_id)
    store = KeyStore(keys_table, clock=lambda: START + timedelta(hours=1))
    seen, cursor, pages = [], None, 0
    while pages < 20:  # a bound, so a cursor that goes round fails here instead of hanging
        page = store.list_keys(limit=2, cursor=cursor)
        seen, cursor, pages = seen + [r.key_id for r in page.items], page.cursor, pages + 1
        if cursor is None:
            break
    # THEN every key once, newest first, in seven pages: the finished state is not listed again
    assert seen == revoked[::-1] + active[::-1] and pages == 7


@pytest.mark.parametrize("seed", range(6))
def test_every_listing_pages_each_key_once_newest_first(keys_table: Any, seed: int) -> None:
    # GIVEN keys of two owners made in a few distinct minutes (so many share one), some revoked,
    # some expired, some with a name a search finds
    rng = random.Random(seed)
    now = START + timedelta(hours=1)
    for n in range(rng.randint(8, 30)):
        made_at = START + timedelta(minutes=rng.randint(0, 3))
        store = KeyStore(keys_table, clock=lambda made_at=made_at: made_at)
        expires = isoformat(START + timedelta(minutes=30)) if rng.random() < 0.2 else None
        record, _ = store.create(owner_sub=f"o{rng.randint(0, 1)}", name=rng.choice(["alpha", "beta"]) + str(n),
                                 expires_at=expires)  # fmt: skip
        if rng.random() < 0.35:
            store.revoke(record)
    store = KeyStore(keys_table, clock=lambda: now)
    everything = [KeyRecord.from_item(item) for item in keys_table.scan()["Items"]]
    newest_first = sorted(everything, key=lambda r: (r.created_at, r.key_id), reverse=True)
    for _ in range(10):
        owner = rng.choice([None, "o1"])
        status = rng.choice([None, "active", "revoked", "expired"])
        search = rng.choice([None, "ALP"])
        limit, budget = rng.choice([1, 2, 3, 7]), rng.choice([None, 3, 5])
        # WHEN the listing is paged to its end
        seen, cursor, pages = [], None, 0
        while pages < 300:  # a bound: a cursor that goes round fails here instead of hanging
            page = store.list_keys(owner_sub=owner, status=status, search=search, limit=limit, cursor=cursor,
                                   budget=budget)  # fmt: skip
            assert len(page.items) <= limit
            seen, cursor, pages = seen + [r.key_id for r in page.items], page.cursor, pages + 1
            if cursor is None:
                break
        # THEN every key it keeps, once each, newest first
        expected = [
            r.key_id
            for r in newest_first
            if (owner is None or r.owner_sub == owner)
            and (status is None or r.effective_status(now) == status)
            # A search looks in the key id too (listing.search_text): a random id may hold "alp".
            and (search is None or "alp" in f"{r.name} {r.key_id}".casefold())
        ]
        assert seen == expected, (owner, status, search, limit, budget)


def test_a_rare_search_reads_a_bounded_page_and_goes_on(keys_table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "READ_BUDGET", 25)
    store = KeyStore(keys_table, clock=lambda: START)
    for n in range(120):
        KeyStore(keys_table, clock=lambda n=n: START + timedelta(minutes=n)).create(owner_sub="o", name=f"k{n}")
    needle, _ = KeyStore(keys_table, clock=lambda: START - timedelta(days=1)).create(owner_sub="o", name="needle")
    first = store.list_keys(search="needle", limit=10)
    assert first.items == [] and first.cursor is not None  # stopped after about 25 keys, said where
    found, cursor, pages = [], first.cursor, 1
    while cursor:
        page = store.list_keys(search="needle", limit=10, cursor=cursor)
        found += page.items
        cursor, pages = page.cursor, pages + 1
    assert [r.key_id for r in found] == [needle.key_id] and pages >= 4


def test_a_cursor_of_another_listing_is_refused(as_alice: Api, as_bob: Api, as_admin: Api) -> None:
    for n in range(3):
        as_bob.call("post", "/admin/keys", {"name": f"bob {n}"})
    bobs = listed(as_bob, limit=1).json_body["next_cursor"]
    # Alice cannot read bob's keys by replaying his cursor in her own listing
    assert listed(as_alice, limit=1, cursor=bobs).json_body["error"]["param"] == "cursor"
    # Nor does a by-owner cursor fit the listing of every key
    assert listed(as_admin, limit=1, cursor=bobs).json_body["error"]["param"] == "cursor"


def test_each_listed_key_carries_this_months_spend(as_alice: Api, usage_table: Any) -> None:
    used = as_alice.call("post", "/admin/keys", {"name": "used"}).json_body
    idle = as_alice.call("post", "/admin/keys", {"name": "idle"}).json_body
    now = datetime.now(UTC)
    entry = usage_entry(request_id="r1", key_id=used["key_id"], owner_sub=used["owner"]["sub"], at=now)
    Ledger(usage_table).record(entry)
    from local.stream_aggregator import drain

    drain(usage_table)
    views = {k["key_id"]: k["month"] for k in listed(as_alice).json_body["data"]}
    assert views[used["key_id"]] == {"period": now.strftime("%Y-%m"), "spent_usd": usd(entry.cost)}
    assert views[idle["key_id"]]["spent_usd"] == "0"


def test_search_is_filtered_by_dynamodb_on_the_stored_text_and_follows_renames(keys_table: Any) -> None:
    # GIVEN keys stored with their search text, and one stored before it existed (no ``search``)
    store = KeyStore(keys_table, clock=lambda: START)
    for n in range(30):
        store.create(owner_sub="o", name=f"filler {n}")
    wanted, _ = store.create(owner_sub="o", name="Ｂilling ﬁle", metadata={"Ticket": "FIN-42"})
    assert keys_table.get_item(Key={"key_id": wanted.key_id})["Item"]["search"] == listing.search_text(wanted.to_item())
    old, _ = store.create(owner_sub="o", name="Legacy Billing")
    keys_table.update_item(
        Key={"key_id": old.key_id}, UpdateExpression="REMOVE #s", ExpressionAttributeNames={"#s": "search"}
    )
    # THEN a search (NFKC, any case) finds both, and DynamoDB sends back only those two (and no filler)
    sent: list[int] = []
    query = keys_table.query

    def counting(**params: Any) -> Any:
        response = query(**params)
        sent.append(len(response["Items"]))
        return response

    keys_table.query = counting
    try:
        found = store.list_keys(search="BILLING", limit=10)
    finally:
        del keys_table.query
    assert {r.key_id for r in found.items} == {wanted.key_id, old.key_id} and sum(sent) == 2
    assert [r.key_id for r in store.list_keys(search="file", limit=10).items] == [wanted.key_id]
    assert [r.key_id for r in store.list_keys(search="ticket=fin-42", limit=10).items] == [wanted.key_id]
    # WHEN the keys are renamed: the stored text follows (the old key gets one at its edit)
    store.update(store.require(wanted.key_id), {"name": "payroll"})
    store.update(store.require(old.key_id), {"name": "legacy payroll"})
    assert "search" in keys_table.get_item(Key={"key_id": old.key_id})["Item"]
    assert store.list_keys(search="billing", limit=10).items == []
    assert {r.key_id for r in store.list_keys(search="PAYROLL", limit=10).items} == {wanted.key_id, old.key_id}


def test_a_search_that_matches_nothing_still_moves_on_page_by_page(
    keys_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN more keys than a page reads, none matching
    monkeypatch.setattr(listing, "READ_BUDGET", 10)
    for n in range(45):
        KeyStore(keys_table, clock=lambda n=n: START + timedelta(minutes=n)).create(owner_sub="o", name=f"k{n}")
    store = KeyStore(keys_table, clock=lambda: START)
    # THEN each page reads on from where the last one looked, and the listing ends
    cursor, pages = store.list_keys(search="nothing", limit=5).cursor, 1
    while cursor:
        page = store.list_keys(search="nothing", limit=5, cursor=cursor)
        assert page.items == []
        cursor, pages = page.cursor, pages + 1
        assert pages < 20
    assert pages >= 3


def test_a_search_reads_on_through_its_budget_when_dynamodb_sends_back_nothing(keys_table: Any) -> None:
    # GIVEN the one key that matches is the oldest of more keys than one query reads (500)
    needle, _ = KeyStore(keys_table, clock=lambda: START - timedelta(days=1)).create(owner_sub="o", name="needle")
    for n in range(620):
        KeyStore(keys_table, clock=lambda n=n: START + timedelta(seconds=n)).create(owner_sub="o", name=f"k{n}")
    # THEN the first page finds it: queries that sent back nothing did not end the page early
    page = KeyStore(keys_table, clock=lambda: START).list_keys(search="needle", limit=50)
    assert [r.key_id for r in page.items] == [needle.key_id] and page.cursor is None
