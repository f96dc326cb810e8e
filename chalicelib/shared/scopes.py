"""Scopes, and every storage key built from them: the one place the tables' key strings are written.

A **scope** is what spend is counted against: one API key, the person who owns it, the team it
is charged to, a model, or everything. A request is *admitted under* a list of budget scopes
(``charged``: its key, its owner unless a team owns the key, its team if it has one); each one
with a budget reserves the request's worst case, and the ledger entry records what each
reserved. The aggregator adds each entry to the aggregates of its ``reported`` scopes. Adding a
scope (an organisation, say) is a kind here, and where admission finds its budget.

Storage keys, usage table::

    KEY#<key_id>          REQ#<time>#<request_id>   a ledger entry
    KEY#<key_id>          REL#<ticket_id>           a reservation given back
                          (an entry is also in the request log, by-period: gsi1pk=LOG#<yyyy-mm>#<shard>,
                          gsi1sk=<time>#<request_id>; and, charged to a team, in its team's log,
                          by-team: gsi2pk=TEAMLOG#<team_id>#<yyyy-mm>, gsi2sk=<time>#<request_id>)
    AGG#<scope>           DAY#<yyyy-mm-dd>          a day's aggregate (by-period: gsi1pk=DAY#…, gsi1sk=<scope>)
    AGG#<scope>           MONTH#<yyyy-mm>           a month's aggregate: ``committed``/``billed`` of a budget,
                                                    a key's rate window (by-period: gsi1pk=MONTH#…)
    AGG#OWNER#<sub>       MODELDAY#<day>#<model>    a person's usage of one model that day
    BUDGET#<scope>        CONFIG                    a budget (owner, team)
    STREAM#<shard>        MARK | PLAN#<seq>         the aggregator's position in a shard, its pending plan
    REPORT#<day>          DAILY                     a daily report
    DIRECTORY             PERSON#<sub>              a person (status, keys, last seen)
    DIRECTORY             TEAM#<team_id>            a team (name, budget, keys)
    DIRECTORY             MEMBER#<team_id>#<sub>    a membership, seen from the team (role)
    DIRECTORY             TEAMOF#<sub>#<team_id>    the same membership, seen from the person
    DIRECTORY             TEAMNAME#<name>           a team's name, claimed (names are unique, case aside)

Audit table: ``<subject>`` / ``<time>#<event_id>``, the subject being a scope (``KEY#…``,
``TEAM#…``) or a person (``PERSON#<sub>``).

Scope names are the strings these keys embed (``KEY#abc``, ``OWNER#<sub>``, ``TEAM#t``,
``MODEL#nova-micro``, ``PRICE#nova-micro#2``, ``ALL``); entries written before teams existed (``reserved_key_usd``,
``reserved_owner_usd``) read as reservations on their key's and owner's scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

KEY = "key"
OWNER = "owner"
TEAM = "team"
MODEL = "model"
#: One price version of a model (``<alias>#<version>``): what each version billed, a bill explained.
PRICE = "price"
ALL = "all"
#: Kinds whose month item holds a budget's ``committed``, in the order admission reserves on them.
BUDGET_KINDS = (KEY, OWNER, TEAM)
_PREFIX = {KEY: "KEY", OWNER: "OWNER", TEAM: "TEAM", MODEL: "MODEL", PRICE: "PRICE"}
_KIND = {prefix: kind for kind, prefix in _PREFIX.items()}
#: The owner a team's own key has (``owner_sub``): no Cognito sub contains a colon.
TEAM_OWNER_PREFIX = "team:"
DIRECTORY = "DIRECTORY"


@dataclass(frozen=True, order=True)
class Scope:
    """One thing spend is counted against."""

    kind: str
    id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (*_PREFIX, ALL):
            raise ValueError(f"unknown scope kind {self.kind!r}")
        if (self.kind == ALL) != (self.id == ""):
            raise ValueError("every scope but 'all' names one thing")

    @property
    def name(self) -> str:
        """The scope as stored: ``KEY#<id>``, ``OWNER#<sub>``, ``TEAM#<id>``, ``MODEL#<id>``, ``ALL``,
        ``PRICE#<id>#<version>``."""
        return "ALL" if self.kind == ALL else f"{_PREFIX[self.kind]}#{self.id}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Scope:
        """The scope a stored name stands for.

        Raises
        ------
        ValueError
            Not a scope name.
        """
        if name == "ALL":
            return cls(ALL)
        prefix, sep, ident = name.partition("#")
        if not sep or not ident or prefix not in _KIND:
            raise ValueError(f"not a scope: {name[:80]!r}")
        return cls(_KIND[prefix], ident)

    def aggregate(self, period: str) -> dict[str, str]:
        """The key of this scope's aggregate for ``period`` (``day_period``/``month_period``)."""
        return {"pk": f"AGG#{self.name}", "sk": period}

    def month(self, month: str) -> dict[str, str]:
        """The key of this scope's month aggregate (its budget's ``committed``, a key's rate window)."""
        return self.aggregate(month_period(month))

    @property
    def aggregate_pk(self) -> str:
        return f"AGG#{self.name}"

    @property
    def budget_item(self) -> dict[str, str]:
        """The key of the item holding this scope's monthly budget (owners and teams)."""
        return {"pk": f"BUDGET#{self.name}", "sk": "CONFIG"}


def key(key_id: str) -> Scope:
    return Scope(KEY, key_id)


def owner(sub: str) -> Scope:
    return Scope(OWNER, sub)


def team(team_id: str) -> Scope:
    return Scope(TEAM, team_id)


def model(model_id: str) -> Scope:
    return Scope(MODEL, model_id)


def price(model_id: str, version: int) -> Scope:
    """What one price version of a model billed (``usage --group-by price``)."""
    return Scope(PRICE, f"{model_id}#{version}")


EVERYTHING = Scope(ALL)


def kind_prefix(kind: str) -> str:
    """What the names of every scope of one kind start with (``KEY#``, ``TEAM#``, …)."""
    return f"{_PREFIX[kind]}#"


# -- who pays -------------------------------------------------------------------------------------


def team_owner(team_id: str) -> str:
    """The ``owner_sub`` of a key the team itself owns (it survives every member leaving)."""
    return f"{TEAM_OWNER_PREFIX}{team_id}"


def owning_team(owner_sub: str) -> str | None:
    """The team that owns a key whose owner is ``owner_sub``, or None for a person's key."""
    return owner_sub[len(TEAM_OWNER_PREFIX) :] if owner_sub.startswith(TEAM_OWNER_PREFIX) else None


def charged(key_id: str, owner_sub: str, team_id: str | None) -> list[Scope]:
    """The budget scopes a request of this key is admitted under, in admission order.

    Its key; its owner, unless a team owns the key; the team it is charged to, if any.
    """
    scopes = [key(key_id)]
    if owning_team(owner_sub) is None:
        scopes.append(owner(owner_sub))
    if team_id:
        scopes.append(team(team_id))
    return scopes


def reported(key_id: str, owner_sub: str, team_id: str | None, model_id: str, price_version: int = 0) -> list[Scope]:
    """The scopes whose aggregates (day and month) an entry adds to."""
    return [*charged(key_id, owner_sub, team_id), model(model_id), EVERYTHING, price(model_id, price_version)]


def reservations_of(item: dict[str, Any]) -> dict[Scope, Any]:
    """What a stored entry or release reserved, by scope (as stored: amounts are left as they are).

    New items carry ``reserved`` (scope name → amount); items written before teams existed carry
    ``reserved_key_usd`` and ``reserved_owner_usd``, which are their key's and owner's.
    """
    found: dict[Scope, Any] = {}
    for name, amount in (item.get("reserved") or {}).items():
        found[Scope.parse(str(name))] = amount
    if "reserved_key_usd" in item:
        found.setdefault(key(str(item["key_id"])), item["reserved_key_usd"])
    if "reserved_owner_usd" in item:
        found.setdefault(owner(str(item["owner_sub"])), item["reserved_owner_usd"])
    return found


# -- periods --------------------------------------------------------------------------------------


def day_period(day: date | str) -> str:
    return f"DAY#{day.isoformat() if isinstance(day, date) else day}"


def month_period(month: str) -> str:
    return f"MONTH#{month}"


def model_day_period(day: date | str, model_id: str) -> str:
    """The sort key of a person's usage of one model on one day, beside their ``DAY#`` rows ("My spend"
    by model: one query a month, not every entry of every key)."""
    return f"MODELDAY#{day.isoformat() if isinstance(day, date) else day}#{model_id}"


def model_of_model_day(period: str) -> str:
    return period.split("#", 2)[2]


def period_value(period: str) -> str:
    """``2026-11-26`` of ``DAY#2026-11-26`` (or ``2026-11`` of ``MONTH#2026-11``)."""
    return period.split("#", 1)[1]


# -- ledger items ---------------------------------------------------------------------------------


def entries_pk(key_id: str) -> str:
    """The partition of one key's ledger entries and release records."""
    return f"KEY#{key_id}"


ENTRY_PREFIX = "REQ#"


def entry_key(key_id: str, timestamp: str, request_id: str) -> dict[str, str]:
    return {"pk": entries_pk(key_id), "sk": f"{ENTRY_PREFIX}{timestamp}#{request_id}"}


def entry_range(first: date, last: date) -> tuple[str, str]:
    """The sort keys bounding the entries of the days ``first``..``last`` (inclusive)."""
    return f"{ENTRY_PREFIX}{first}", f"{ENTRY_PREFIX}{last}T99"


def entry_position(sort_key: str) -> tuple[str, str]:
    """``(time, request id)`` of an entry's sort key (``REQ#<time>#<request_id>``)."""
    time, _, request_id = sort_key.removeprefix(ENTRY_PREFIX).partition("#")
    return time, request_id


#: The request log: a month's entries, spread over a few partitions of the by-period index.
LOG_PREFIX = "LOG#"


def log_partition(month: str, shard: int) -> str:
    """One partition of a month's request log (``gsi1pk``)."""
    return f"{LOG_PREFIX}{month}#{shard}"


def log_key(timestamp: str, request_id: str, shard: int) -> dict[str, str]:
    """Where an entry sits in the request log: its month's partition, newest last by time then id."""
    return {"gsi1pk": log_partition(timestamp[:7], shard), "gsi1sk": f"{timestamp}#{request_id}"}


#: A team's request log: its month's entries, in the by-team index (entries from before it are not).
TEAM_LOG_PREFIX = "TEAMLOG#"
#: The counter a team's month aggregate keeps of its entries in the team's log: equal to its
#: ``requests``, every entry of that month is there.
TEAM_LOGGED = "team_logged"


def team_log_partition(team_id: str, month: str) -> str:
    """A team's request log of one month (``gsi2pk``)."""
    return f"{TEAM_LOG_PREFIX}{team_id}#{month}"


def team_log_key(team_id: str, timestamp: str, request_id: str) -> dict[str, str]:
    """Where an entry charged to a team sits in its team's log: newest last by time then id."""
    return {"gsi2pk": team_log_partition(team_id, timestamp[:7]), "gsi2sk": f"{timestamp}#{request_id}"}


def release_key(key_id: str, ticket_id: str) -> dict[str, str]:
    return {"pk": entries_pk(key_id), "sk": f"REL#{ticket_id}"}


def stream_marker(shard: str) -> dict[str, str]:
    return {"pk": f"STREAM#{shard}", "sk": "MARK"}


def stream_plan(shard: str, plan_id: str) -> dict[str, str]:
    return {"pk": f"STREAM#{shard}", "sk": plan_id}


def plan_id(sequence: int) -> str:
    return f"PLAN#{sequence}"


def report_key(day: date | str) -> dict[str, str]:
    return {"pk": f"REPORT#{day}", "sk": "DAILY"}


# -- the directory (people and teams) -------------------------------------------------------------


def person_key(sub: str) -> dict[str, str]:
    return {"pk": DIRECTORY, "sk": f"PERSON#{sub}"}


def team_key(team_id: str) -> dict[str, str]:
    return {"pk": DIRECTORY, "sk": f"TEAM#{team_id}"}


def member_key(team_id: str, sub: str) -> dict[str, str]:
    return {"pk": DIRECTORY, "sk": f"MEMBER#{team_id}#{sub}"}


def membership_key(sub: str, team_id: str) -> dict[str, str]:
    return {"pk": DIRECTORY, "sk": f"TEAMOF#{sub}#{team_id}"}


def team_name_key(name: str) -> dict[str, str]:
    return {"pk": DIRECTORY, "sk": f"TEAMNAME#{name.casefold()}"}


PEOPLE_PREFIX = "PERSON#"
TEAMS_PREFIX = "TEAM#"


def members_prefix(team_id: str) -> str:
    return f"MEMBER#{team_id}#"


def memberships_prefix(sub: str) -> str:
    return f"TEAMOF#{sub}#"


# -- audit subjects -------------------------------------------------------------------------------

#: Kinds of audit subject, and the prefix of each in the audit table.
SUBJECT_PREFIX = {"key": "KEY", "team": "TEAM", "person": "PERSON", "model": "MODEL", "prices": "PRICES"}


def subject(kind: str, ident: str) -> str:
    """The audit table's partition for one subject: ``KEY#<id>``, ``TEAM#<id>``, ``PERSON#<sub>``, ``MODEL#<alias>``,
    ``PRICES#guardrails``.
    """
    return f"{SUBJECT_PREFIX[kind]}#{ident}"


def audit_day(day: date | str) -> str:
    """The audit table's ``by-day`` partition of one UTC day."""
    return day_period(day)


def parse_subject(pk: str) -> tuple[str, str]:
    """``(kind, id)`` of an audit partition.

    Raises
    ------
    ValueError
        Not a subject.
    """
    prefix, _, ident = pk.partition("#")
    for kind, known in SUBJECT_PREFIX.items():
        if prefix == known and ident:
            return kind, ident
    raise ValueError(f"not an audit subject: {pk[:80]!r}")
