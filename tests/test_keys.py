from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.errors import AuthenticationFailed
from chalicelib.keys.store import KeyStore, bearer_token, generate_key, hash_key, key_id_of, new_secret_for
from chalicelib.shared.dates import isoformat


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_generated_keys_are_unique_well_formed_and_carry_their_id() -> None:
    # GIVEN many fresh keys
    pairs = [generate_key() for _ in range(200)]
    # THEN each embeds its id, parses back, and none repeat
    assert len({key for _, key in pairs}) == 200
    for key_id, key in pairs:
        assert key.startswith(f"pw-{key_id}-")
        assert key_id_of(key) == key_id


@pytest.mark.parametrize(
    "token", ["", "pw-", "sk-abc", "pw-short-secret", "pw-abcdefghijkl-" + "x" * 39, "pw-ABCDEFGHIJKL-" + "x" * 40]
)
def test_malformed_keys_have_no_id(token: str) -> None:
    assert key_id_of(token) is None


def test_hash_is_sha256_hex_and_not_the_key() -> None:
    _, key = generate_key()
    digest = hash_key(key)
    assert len(digest) == 64 and key not in digest and digest == hash_key(key)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "abc"),
        ({"authorization": "bearer   abc  "}, "abc"),
        ({"Authorization": "Basic abc"}, None),
        ({"Authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_bearer_token(headers: dict[str, str], expected: str | None) -> None:
    assert bearer_token(headers) == expected


def test_create_stores_only_the_hash(keys_table) -> None:
    store = KeyStore(keys_table)
    record, key = store.create(owner_sub="user-1", owner_email="a@example.com", name="laptop")
    item = keys_table.get_item(Key={"key_id": record.key_id})["Item"]
    assert key not in str(item)
    assert item["secret_hash"] == hash_key(key)
    assert record.prefix == f"pw-{record.key_id}"


def test_authenticate_accepts_the_key_and_rejects_everything_else(keys_table) -> None:
    store = KeyStore(keys_table)
    record, key = store.create(owner_sub="user-1")
    assert store.authenticate({"Authorization": f"Bearer {key}"}).key_id == record.key_id

    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    for headers, code in [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer nonsense"}, "invalid_api_key"),
        ({"Authorization": f"Bearer {wrong_secret}"}, "invalid_api_key"),
        ({"Authorization": f"Bearer {generate_key()[1]}"}, "invalid_api_key"),
    ]:
        with pytest.raises(AuthenticationFailed) as caught:
            store.authenticate(headers)
        assert caught.value.code == code
        assert key not in caught.value.message


def test_revoked_and_expired_keys_are_refused(keys_table) -> None:
    clock = FakeClock()
    store = KeyStore(keys_table, clock=clock)
    record, key = store.create(owner_sub="u", expires_at=isoformat(clock.now + timedelta(hours=1)))
    headers = {"Authorization": f"Bearer {key}"}
    assert store.authenticate(headers)

    clock.now += timedelta(hours=1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        store.authenticate(headers)

    revoked, revoked_key = store.create(owner_sub="u")
    keys_table.update_item(
        Key={"key_id": revoked.key_id},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": "revoked"},
    )
    with pytest.raises(AuthenticationFailed, match="revoked"):
        store.authenticate({"Authorization": f"Bearer {revoked_key}"})


def test_previous_secret_works_only_inside_its_grace_period(keys_table) -> None:
    clock = FakeClock()
    store = KeyStore(keys_table, clock=clock)
    record, old_key = store.create(owner_sub="u")
    new_key = new_secret_for(record.key_id)
    # A rotation as stored: the new hash is current, the old one is in grace for 10 minutes.
    keys_table.update_item(
        Key={"key_id": record.key_id},
        UpdateExpression="SET secret_hash = :new, previous_hash = :old, previous_hash_expires_at = :until",
        ExpressionAttributeValues={
            ":new": hash_key(new_key),
            ":old": hash_key(old_key),
            ":until": isoformat(clock.now + timedelta(minutes=10)),
        },
    )
    for key in (old_key, new_key):
        assert store.authenticate({"Authorization": f"Bearer {key}"}).key_id == record.key_id
    clock.now += timedelta(minutes=10)
    with pytest.raises(AuthenticationFailed):
        store.authenticate({"Authorization": f"Bearer {old_key}"})
    assert store.authenticate({"Authorization": f"Bearer {new_key}"}).key_id == record.key_id


def test_last_used_is_kept_to_within_five_minutes_with_few_writes(keys_table) -> None:
    clock = FakeClock()
    store = KeyStore(keys_table, clock=clock)
    record, key = store.create(owner_sub="u")
    headers = {"Authorization": f"Bearer {key}"}
    store.authenticate(headers)
    assert store.get(record.key_id).last_used_at == isoformat(clock.now)
    clock.now += timedelta(minutes=4)
    store.authenticate(headers)  # within the resolution: no write
    assert store.get(record.key_id).last_used_at == isoformat(clock.now - timedelta(minutes=4))
    clock.now += timedelta(minutes=2)
    store.authenticate(headers)
    assert store.get(record.key_id).last_used_at == isoformat(clock.now)


def test_every_keys_listing_is_newest_first_across_pages(keys_table) -> None:
    # GIVEN keys of several owners created a minute apart (DynamoDB's scan order is by hash)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    created = []
    for minute in range(23):
        store = KeyStore(keys_table, clock=lambda minute=minute: start + timedelta(minutes=minute))
        record, _ = store.create(owner_sub=f"owner-{minute % 3}", name=f"k{minute}")
        created.append(record.key_id)
    store = KeyStore(keys_table, clock=lambda: start + timedelta(days=1))
    # WHEN an admin lists every key, five at a time
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_keys(limit=5, cursor=cursor)
        seen += [record.key_id for record in page.items]
        cursor = page.cursor
        if cursor is None:
            break
    # THEN the keys come newest first, each once
    assert seen == created[::-1]


def test_the_newest_first_listing_filters_by_status(keys_table) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    store = KeyStore(keys_table, clock=lambda: start)
    old, _ = store.create(owner_sub="a", name="old", expires_at="2026-11-01T00:00:01Z")
    later = KeyStore(keys_table, clock=lambda: start + timedelta(hours=1))
    revoked = later.revoke(later.create(owner_sub="b", name="gone")[0])
    active, _ = KeyStore(keys_table, clock=lambda: start + timedelta(hours=2)).create(owner_sub="a", name="live")
    now = KeyStore(keys_table, clock=lambda: start + timedelta(days=1))
    assert [r.key_id for r in now.list_keys(status="active").items] == [active.key_id]
    assert [r.key_id for r in now.list_keys(status="expired").items] == [old.key_id]
    assert [r.key_id for r in now.list_keys(status="revoked").items] == [revoked.key_id]
    assert [r.key_id for r in now.list_keys().items] == [active.key_id, revoked.key_id, old.key_id]
