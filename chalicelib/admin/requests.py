"""The request log: every billed request, newest first, read from the ledger a page at a time.

``GET /admin/requests`` answers one page of ledger entries as rows: time, key, person, team,
model, protocol, tokens, cost, latency, status and request id. Nothing of a prompt or an answer
is stored anywhere, so nothing of it is here either. Who sees what:

* a member: the requests of their own keys;
* a team's admins: that team's (what was charged to it: the entries say which team admitted them);
* an admin: everyone's, filtered by key, person, team, model, status and time as they choose.

Where a page comes from (``chalicelib/shared/pages.py`` merges and bounds it):

* one key: that key's partition of the usage table (``scopes.entry_key``);
* one person: each of their keys' partitions, merged (at most ``MAX_KEYS_MERGED`` keys; beyond
  that, the month log below, filtered);
* one team: the team's log, the ``by-team`` index's partition of each month
  (``scopes.team_log_key``), one query a page; a month the team's log does not hold whole
  (entries written before it existed: its month aggregate's ``team_logged`` is short of its
  ``requests``) is read as everyone's below, filtered;
* anything else (everyone): the month log, the ``by-period`` index's partitions
  (``scopes.log_key``), a month at a time, newest month first.

A page reads at most about ``READ_BUDGET`` entries: a filter that matches little (a rare model
over a busy month) answers short pages, each with a cursor to go on from, never one read of
the whole ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import LOG_SHARDS, Ledger
from chalicelib.admin.auth import AdminAuthenticator, Principal, UserDirectory, is_sub
from chalicelib.admin.directory import Directory, Team
from chalicelib.admin.roles import Caller
from chalicelib.keys.store import KEY_PREFIX, KeyRecord, KeyStore, is_key_id
from chalicelib.shared import scopes
from chalicelib.shared.dates import isoformat, parse_day_text, parse_time, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.http import HttpResult
from chalicelib.shared.money import usd
from chalicelib.shared.pages import Source, Tier, decode_position, encode_position, newest_first

QUERY_FIELDS = ("from", "to", "key", "owner", "team", "model", "status", "limit", "cursor")
STATUSES = ("ok", "partial")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
#: Entries one page may read (about 1.2 MB): a bound on every page, whatever the filter.
READ_BUDGET = 2000
#: A person with more keys than this is read from the month log, filtered, not key by key.
MAX_KEYS_MERGED = 100
DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 366
#: The columns of a row, in the order CSV exports write them (console and CLI).
COLUMNS = (
    "time",
    "request_id",
    "key_prefix",
    "key_name",
    "owner_email",
    "owner_sub",
    "team",
    "model",
    "protocol",
    "operation",
    "status",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "latency_ms",
    "capped",
)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}$")
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")
_MONTH_ENDS = "~"  # sorts after every character a request id or timestamp holds


@dataclass(frozen=True)
class Scope:
    """Which requests one page may show and is asked for."""

    first: str  # the earliest time, inclusive (stored form: 2026-11-26T10:30:00Z)
    last: str  # the latest time, inclusive
    key: KeyRecord | None = None
    owner_sub: str | None = None
    team: str | None = None  # a team id
    model: str | None = None
    status: str | None = None

    def keeps(self, item: Mapping[str, Any]) -> bool:
        """True for an entry this page shows (the partitions read may hold others)."""
        return (
            item.get("type") == "entry"
            and self.first <= str(item.get("timestamp", "")) <= self.last
            and (self.owner_sub is None or item.get("owner_sub") == self.owner_sub)
            and (self.key is None or item.get("key_id") == self.key.key_id)
            and (self.model is None or item.get("model") == self.model)
            and (self.status is None or item.get("status") == self.status)
            and (self.team is None or team_of(item) == self.team)
        )


def team_of(item: Mapping[str, Any]) -> str | None:
    """The id of the team an entry was admitted under (None: no team, or an entry from before teams)."""
    team_id = item.get("team_id")
    return team_id if isinstance(team_id, str) and team_id else None


def row_of(item: Mapping[str, Any], key: KeyRecord | None, teams: Mapping[str, Team]) -> dict[str, Any]:
    """One request as the log shows it: a flat row (CSV writes its ``COLUMNS``).

    ``team`` is the name of the team the request was charged to (its id if the team is gone),
    ``team_id`` its id; a team's own key has the team as its owner (``owner_sub`` ``team:<id>``).
    """
    team_id = team_of(item)
    team = teams.get(team_id) if team_id else None
    return {
        "object": "request",
        "time": item["timestamp"],
        "request_id": item["request_id"],
        "key_id": item["key_id"],
        "key_prefix": f"{KEY_PREFIX}-{item['key_id']}",
        "key_name": key.name if key is not None and key.name else None,
        "owner_sub": item.get("owner_sub"),
        "owner_email": key.owner_email if key is not None else None,
        "team": team.name if team is not None else team_id,
        "team_id": team_id,
        "model": item.get("model"),
        "protocol": item.get("protocol") or None,
        "operation": item.get("operation"),
        "status": item.get("status"),
        "input_tokens": int(item.get("input_tokens", 0)),
        "output_tokens": int(item.get("output_tokens", 0)),
        "cache_read_tokens": int(item.get("cache_read_tokens", 0)),
        "cache_write_tokens": int(item.get("cache_write_tokens", 0)),
        "cost_usd": usd(Decimal(item.get("cost", 0))),
        "latency_ms": int(item.get("latency_ms", 0)),
        "capped": bool(item.get("capped", False)),
    }


class RequestLog:
    """``GET /admin/requests`` over injected authentication, keys, ledger and directory."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        keys: KeyStore,
        ledger: Ledger,
        directory: Callable[[], UserDirectory | None],
        teams: Directory,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._authenticator = authenticator
        self._keys = keys
        self._ledger = ledger
        self._table = ledger.table
        self._directory = directory
        self._teams = teams
        self._clock = clock

    def list(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/requests``: a page of billed requests, newest first."""
        caller = Caller(self._authenticator().authenticate(headers), self._teams)
        query = query or {}
        refuse_unknown(query, QUERY_FIELDS)
        scope = self._scope(caller, query)
        limit = _limit(query.get("limit"))
        after = decode_position(query.get("cursor"), _is_position)
        page = newest_first(self._tiers(scope, after), limit=limit, budget=READ_BUDGET, keep=scope.keeps, after=after)
        keys = self._keys.get_many({item["key_id"] for item in page.rows})
        teams = self._teams.teams_by_id({team_of(item) for item in page.rows} - {None})
        return HttpResult(
            {
                "object": "list",
                "data": [row_of(item, keys.get(item["key_id"]), teams) for item in page.rows],
                "has_more": page.after is not None,
                "next_cursor": encode_position(page.after) if page.after is not None else None,
                "from": scope.first,
                "to": scope.last,
                # Where this page's search stopped: a short page with more to come says how far it got.
                "searched_to": page.after[0] if page.after is not None else scope.first,
                # The person narrowed to, as a sub: the next pages name them so, and cost no user lookup.
                "owner": scope.owner_sub,
            }
        )

    # Who may read what

    def _scope(self, caller: Caller, query: Mapping[str, str]) -> Scope:
        principal = caller.principal
        first, last = self._range(query.get("from"), query.get("to"))
        key = self._key(principal, query.get("key"))
        team = self._team(query.get("team"))
        owner = query.get("owner") or None
        mine = owner in (None, "me", principal.sub, principal.email)
        if team is not None:
            caller.require_team_admin(team, "read the team's requests")
        if principal.is_admin:
            owner_sub = None if owner is None else principal.sub if owner == "me" else self._owner_sub(owner)
        elif team is not None:
            # A team admin: the team's requests, or one member's among them.
            owner_sub = None if owner is None else principal.sub if mine else self._owner_sub(owner)
        elif not mine:
            raise errors.PermissionDenied("You can read only your own requests.", param="owner", code="admin_only")
        else:
            owner_sub = principal.sub
        if key is not None and not caller.manages_key(key) and (team is None or key.team_id != team):
            raise errors.PermissionDenied(
                "You can read the requests of your own keys only; this key belongs to someone else.",
                param="key",
                code="not_key_owner",
            )
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise errors.InvalidRequest(f"status must be one of {', '.join(STATUSES)}.", param="status")
        return Scope(
            first=first,
            last=last,
            key=key,
            owner_sub=owner_sub,
            team=team,
            model=_identifier(query.get("model"), "model"),
            status=status,
        )

    def _range(self, first_text: str | None, last_text: str | None) -> tuple[str, str]:
        now = self._clock()
        last = _bound(last_text, "to", end=True) if last_text else isoformat(now)
        first = (
            _bound(first_text, "from", end=False)
            if first_text
            else isoformat(parse_time(last) - timedelta(days=DEFAULT_DAYS))
        )
        if last < first:
            raise errors.InvalidRequest("'to' is before 'from'.", param="to")
        if parse_time(last) - parse_time(first) > timedelta(days=MAX_RANGE_DAYS):
            raise errors.InvalidRequest(f"Ask for at most {MAX_RANGE_DAYS} days at a time.", param="from")
        return first, last

    def _key(self, principal: Principal, text: str | None) -> KeyRecord | None:
        if not text:
            return None
        key_id = text.strip().removeprefix(f"{KEY_PREFIX}-")
        if not is_key_id(key_id):
            raise errors.InvalidRequest(
                "key must be a key id or its prefix (pw-abcdefghijkl), never the secret.", param="key"
            )
        return self._keys.require(key_id)

    def _team(self, ref: str | None) -> str | None:
        """The id of the team named (by id or name), or None."""
        if not ref:
            return None
        if len(ref) > 200 or not ref.isprintable():
            raise errors.InvalidRequest("team must be a team's id or name.", param="team")
        team = self._teams.find_team(ref.strip())
        if team is None:
            raise errors.NotFound(f"No team {ref!r}.", param="team", code="team_not_found")
        return team.team_id

    def _owner_sub(self, who: str) -> str:
        """The sub of the person named: a sub as it is (no Cognito call: a person who is gone keeps
        their requests under it), an e-mail address from the user pool (one ``ListUsers``)."""
        if "@" not in who and is_sub(who.strip()):
            return who.strip()
        directory = self._directory()
        user = directory.find(who.strip()) if directory else None
        if user is not None:
            return user.sub
        raise errors.InvalidRequest(f"No user {who!r} in the user pool.", param="owner", code="unknown_user")

    # Where the page is read from

    def _tiers(self, scope: Scope, after: tuple[str, ...] | None) -> list[Tier]:
        top = scope.last if after is None else min(scope.last, after[0])
        if scope.key is not None:
            return [Tier([self._key_source(scope.key.key_id, scope, after)])]
        if scope.owner_sub is not None and scope.team is None:
            key_ids = self._key_ids(scope.owner_sub)
            if key_ids is not None:
                return [Tier([self._key_source(key_id, scope, after) for key_id in key_ids])]
        months = _months(scope.first[:7], top[:7])
        logged = self._ledger.team_log_months(scope.team, months) if scope.team is not None else set()
        return [
            Tier(
                [self._team_source(month, scope, after)]
                if month in logged
                else [self._log_source(month, shard, scope, after) for shard in range(LOG_SHARDS)],
                floor=(month,),
            )
            for month in months
        ]

    def _key_source(self, key_id: str, scope: Scope, after: tuple[str, ...] | None) -> Source:
        entry = scopes.ENTRY_PREFIX
        upper = f"{entry}{_upper(after)}" if after else f"{entry}{scope.last}#{_MONTH_ENDS}"
        values = {":pk": scopes.entries_pk(key_id), ":lo": f"{entry}{scope.first}", ":hi": upper}
        return Source(
            self._table,
            _filtered({"KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi"}, values, scope, owner=False),
            _position,
            page_size=500,
            key_position=lambda key: scopes.entry_position(key["sk"]),
        )

    def _log_source(self, month: str, shard: int, scope: Scope, after: tuple[str, ...] | None) -> Source:
        upper = _upper(after) if after else f"{scope.last}#{_MONTH_ENDS}"
        values = {":pk": scopes.log_partition(month, shard), ":lo": scope.first, ":hi": upper}
        params = {"IndexName": "by-period", "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk BETWEEN :lo AND :hi"}
        return Source(
            self._table,
            _filtered(params, values, scope, owner=True),
            _position,
            page_size=500,
            key_position=lambda key: tuple(key["gsi1sk"].split("#", 1)),
        )

    def _team_source(self, month: str, scope: Scope, after: tuple[str, ...] | None) -> Source:
        """A team's month from its own log (the by-team index): only its entries are read."""
        assert scope.team is not None
        upper = _upper(after) if after else f"{scope.last}#{_MONTH_ENDS}"
        values = {":pk": scopes.team_log_partition(scope.team, month), ":lo": scope.first, ":hi": upper}
        params = {"IndexName": "by-team", "KeyConditionExpression": "gsi2pk = :pk AND gsi2sk BETWEEN :lo AND :hi"}
        return Source(
            self._table,
            _filtered(params, values, scope, owner=True, team=False),
            _position,
            page_size=500,
            key_position=lambda key: tuple(key["gsi2sk"].split("#", 1)),
        )

    def _key_ids(self, owner_sub: str) -> list[str] | None:
        """The person's key ids (every state), or None when there are too many to read key by key."""
        key_ids: list[str] = []
        cursor = None
        while True:
            page = self._keys.list_keys(owner_sub=owner_sub, limit=100, cursor=cursor)
            key_ids += [record.key_id for record in page.items]
            cursor = page.cursor
            if len(key_ids) > MAX_KEYS_MERGED:
                return None
            if not cursor:
                return key_ids


def _filtered(
    params: dict[str, Any], values: dict[str, Any], scope: Scope, *, owner: bool, team: bool = True
) -> dict[str, Any]:
    """``params`` with a ``FilterExpression`` for the scope's model, status and owner.

    DynamoDB still reads (and charges for) what it drops, so the page's budget counts it; what
    it saves is sending rows nobody asked for (``Scope.keeps`` checks them all again anyway).
    """
    conditions, names = [], {}
    for name, value in (
        ("model", scope.model),
        ("status", scope.status),
        ("owner_sub", scope.owner_sub if owner else None),
        ("team_id", scope.team if team else None),
    ):
        if value is not None:
            conditions.append(f"#{name} = :{name}")
            names[f"#{name}"] = name
            values = {**values, f":{name}": value}
    result = {**params, "ExpressionAttributeValues": values}
    if conditions:
        result.update(FilterExpression=" AND ".join(conditions), ExpressionAttributeNames=names)
    return result


def _position(item: Mapping[str, Any]) -> tuple[str, str]:
    return (str(item["timestamp"]), str(item["request_id"]))


def _is_position(position: tuple[str, ...]) -> bool:
    """A request's (time, request id), or a month (a page that stopped at a month's end)."""
    if len(position) == 1:
        return bool(_MONTH.match(position[0]))
    return len(position) == 2 and bool(_TIME.match(position[0])) and bool(_IDENTIFIER.match(position[1]))


def _upper(after: tuple[str, ...]) -> str:
    """The sort key bound of a page that starts below ``after`` (inclusive: the merge drops ``after`` itself)."""
    return "#".join(after)


def _months(first: str, last: str) -> list[str]:
    """``YYYY-MM`` from ``last`` back to ``first``, newest first."""
    year, month = int(last[:4]), int(last[5:7])
    months = []
    while f"{year:04d}-{month:02d}" >= first:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return months


def _bound(text: str, param: str, *, end: bool) -> str:
    """A day (its first or last second) or a time (to the second, UTC) in the stored form."""
    text = text.strip()
    if "T" not in text:
        day: date = parse_day_text(text, param)
        return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}Z"
    try:
        moment = parse_time(text)
    except ValueError:
        moment = None
    if moment is None or moment.year < 2020:
        raise errors.InvalidRequest(
            f"'{param}' must be a day (2026-11-25) or a time (2026-11-25T10:30:00Z), got {text[:40]!r}.", param=param
        )
    return isoformat(moment)


def _identifier(text: str | None, param: str) -> str | None:
    if not text:
        return None
    if not _IDENTIFIER.match(text):
        raise errors.InvalidRequest(
            f"{param} must be a name of letters, digits and ._:@/+=- (at most 200).", param=param
        )
    return text


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_LIMIT:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}.", param="limit")
    return int(text)
