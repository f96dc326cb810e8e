"""The admin side of accounting: usage reports, owner budgets, the daily report, reconcile.

Routes: ``GET /admin/usage``, ``GET``/``PUT /admin/owners/{owner}/budget``,
``POST /admin/reports/daily``, ``GET /admin/reports/daily/{day}``,
``POST /admin/ledger/reconcile``. Callers are Cognito users (see auth.py):
admins see and manage everything; other users see only their own usage and
budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib import errors
from chalicelib.accounting.ledger import COUNTERS, NO_TEAM, USAGE_GROUPS, Ledger
from chalicelib.accounting.metering import Meter
from chalicelib.accounting.reconcile import parse_lines
from chalicelib.accounting.reports import ReportService, parse_day, render_text
from chalicelib.admin.auth import AdminAuthenticator, Principal, UserDirectory, is_sub
from chalicelib.admin.directory import Directory, Team
from chalicelib.admin.people import PeopleService
from chalicelib.admin.roles import Caller
from chalicelib.keys.audit import Actor, AuditLog, Subject
from chalicelib.keys.store import KeyStore
from chalicelib.shared import scopes
from chalicelib.shared.body import parse_json_body
from chalicelib.shared.dates import parse_day_text, utcnow
from chalicelib.shared.fields import refuse_unknown
from chalicelib.shared.http import HttpResult
from chalicelib.shared.money import parse_money, usd
from chalicelib.shared.usage import UsageEntry

MAX_RANGE_DAYS = 366
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
MAX_RECONCILE_LINES = 10_000
#: The most groups a usage report answered a page at a time (``limit``) describes.
MAX_USAGE_LIMIT = 1000


class AccountingService:
    """Usage and budgets for humans, over injected auth, keys, ledger, meter and reports."""

    def __init__(
        self,
        *,
        authenticator: Callable[[], AdminAuthenticator],
        keys: KeyStore,
        ledger: Ledger,
        meter: Meter,
        reports: Callable[[], ReportService],
        directory: Callable[[], UserDirectory | None],
        max_body_bytes: int,
        teams: Directory,
        people: PeopleService,
        audit: AuditLog,
        clock: Callable[[], datetime] = utcnow,
        price_versions: Callable[[], Mapping[str, list[dict[str, Any]]]] | None = None,
    ) -> None:
        #: Every model's price versions (removed models' too): what explains a bill by price version.
        self._price_versions = price_versions or dict
        self._teams = teams
        self._people = people
        self._audit = audit
        self._authenticator = authenticator
        self._keys = keys
        self._ledger = ledger
        self._meter = meter
        self._reports = reports
        self._directory = directory
        self._max_body_bytes = max_body_bytes
        self._clock = clock

    def usage(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/usage?from=&to=&group_by=key|owner|team|model|day|price[&owner=|&team=]``.

        Admins: everyone's, one owner's or one team's; team admins: their team's; everyone: their own.
        A team's usage is what was charged to it (the entries say which team admitted them).
        """
        caller = self._caller(headers)
        query = query or {}
        refuse_unknown(query, {"from", "to", "group_by", "owner", "team", "limit"})
        today = self._clock().date()
        first = _date(query.get("from"), "from", default=today.replace(day=1))
        last = _date(query.get("to"), "to", default=today)
        if last < first:
            raise errors.InvalidRequest("'to' is before 'from'.", param="to")
        if (last - first).days >= MAX_RANGE_DAYS:
            raise errors.InvalidRequest(f"Ask for at most {MAX_RANGE_DAYS} days at a time.", param="from")
        group_by = query.get("group_by") or "key"
        if group_by not in USAGE_GROUPS:
            raise errors.InvalidRequest(f"group_by must be one of {', '.join(USAGE_GROUPS)}.", param="group_by")
        whose = self._whose(caller, query.get("owner"), query.get("team"))
        limit = _usage_limit(query.get("limit"))
        return HttpResult(self._report(caller.principal, whose, first, last, group_by, limit=limit))

    def spend(self, headers: Mapping[str, str], query: Mapping[str, str] | None) -> HttpResult:
        """``GET /admin/spend?month=YYYY-MM[&owner=]``: a month of one person's spend by day, model and key.

        What "My spend" shows, in one call (one answer about the caller from Cognito, not four):
        the three usage reports of ``/admin/usage`` for the month so far, and the owner's budget
        when the month is the current one.
        """
        caller = self._caller(headers)
        principal = caller.principal
        query = query or {}
        refuse_unknown(query, {"month", "owner"})
        today = self._clock().date()
        month = query.get("month") or today.strftime("%Y-%m")
        first = _date(f"{month}-01", "month", default=None) if _MONTH.fullmatch(month) else None
        if first is None or first > today:
            raise errors.InvalidRequest(f"month must be a month like {today:%Y-%m}, not in the future.", param="month")
        last = min(today, (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1))
        whose = self._whose(caller, query.get("owner") or "me", None)
        reports = {group: self._report(principal, whose, first, last, group) for group in ("day", "model", "key")}
        budget = self._budget_view(whose.owner_sub, principal) if month == today.strftime("%Y-%m") else None
        return HttpResult(
            {
                "object": "spend",
                "month": month,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "owner": whose.owner_sub,
                "owner_email": reports["day"]["scope_email"],
                "total": reports["day"]["total"],
                "by_day": reports["day"]["data"],
                "by_model": reports["model"]["data"],
                "by_key": reports["key"]["data"],
                "budget": budget,
            }
        )

    def _whose(self, caller: Caller, owner: str | None, team_name: str | None) -> _Whose:
        """Whose usage a report counts: everyone's (admins), one team's, or one owner's keys."""
        principal = caller.principal
        if team_name:
            if owner:
                raise errors.InvalidRequest("Ask for one owner's or one team's usage, not both.", param="team")
            team = self._team(team_name)
            caller.require_team_admin(team.team_id, "read the team's usage")
            return _Whose(f"team:{team.team_id}", sorted(team.key_ids), team=team)
        mine = not owner or owner in ("me", principal.sub, principal.email)
        if not mine and not principal.is_admin:
            raise errors.PermissionDenied("You can read only your own usage.", param="owner", code="admin_only")
        if principal.is_admin and not owner:
            return _Whose("all", None)
        owner_sub = principal.sub if mine else self._resolve(owner, reading=True)  # only admins get here
        return _Whose(owner_sub, self._key_ids_of(owner_sub), owner_sub=owner_sub)

    def _report(
        self, principal: Principal, whose: _Whose, first: date, last: date, group_by: str, *, limit: int | None = None
    ) -> dict[str, Any]:
        """A usage report; with ``limit``, only the first groups (by cost; days in order) are described.

        Everyone's whole month by key with a limit reads the keys' costs alone, then the counters
        and labels of the keys shown (``Ledger.top_month_rows``): the view of a thousand keys reads
        a hundred of them, and the month's total from its ``ALL`` aggregate.
        """
        team = whose.team
        today = self._clock().date()
        top = None
        if limit is not None and group_by == "key" and whose.key_ids is None:
            top = self._ledger.top_month_rows(first, last, limit, today=today)
        if top is not None:
            rows, groups, totals = top
        else:
            rows = self._ledger.usage(
                first,
                last,
                group_by,
                key_ids=whose.key_ids,
                team_id=team.team_id if team is not None else None,
                owner_sub=whose.owner_sub,
                today=today,
            )
            groups = len(rows)
            totals = {name: sum(row.get(name, 0) for row in rows) for name in COUNTERS}
            totals["cost"] = sum((row["cost"] for row in rows), Decimal(0))
            rows = rows[:limit] if limit is not None else rows
        if group_by == "owner" and whose.owner_sub is not None:
            for row in rows:
                row["group"] = whose.scope
        records = self._keys.labels(row["group"] for row in rows) if group_by == "key" else {}
        data = self._describe_rows(rows, group_by, principal, records)
        total = {name: int(totals.get(name, 0)) for name in COUNTERS}
        total["cost_usd"] = usd(Decimal(totals.get("cost", 0)))
        answer: dict[str, Any] = {
            "object": "usage",
            "from": first.isoformat(),
            "to": last.isoformat(),
            "group_by": group_by,
            "scope": whose.scope,
            "scope_email": self._email_of(whose.owner_sub, principal) if whose.owner_sub is not None else None,
            "data": data,
            "total": total,
            "groups": groups,
            "has_more": len(data) < groups,
        }
        if team is not None:
            answer["team"] = {"id": team.team_id, "name": team.name}
        return answer

    def owner_budget(self, headers: Mapping[str, str], owner: str) -> HttpResult:
        """``GET /admin/owners/{owner}/budget``: an owner's monthly budget and this month's spend."""
        caller = self._caller(headers)
        sub = self._owner_sub(caller, owner, write=False)
        return HttpResult(self._budget_view(sub, caller.principal))

    def set_owner_budget(self, headers: Mapping[str, str], owner: str, raw_body: bytes | str | None) -> HttpResult:
        """``PUT /admin/owners/{owner}/budget`` ``{"monthly_budget_usd": "25.00" | null}``.

        Admins: anyone's. Team admins: a member's of their team (never their own), up to the team's budget.
        """
        caller = self._caller(headers)
        sub = self._owner_sub(caller, owner, write=True)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes, required=True, exact_numbers=True)
        refuse_unknown(body, {"monthly_budget_usd"})
        if "monthly_budget_usd" not in body:
            raise errors.InvalidRequest(
                'Send {"monthly_budget_usd": "25.00"}, or null to remove the budget.', param="monthly_budget_usd"
            )
        amount = parse_money(body["monthly_budget_usd"])
        person = self._people.find(sub, "owner")
        self._people.check_member_budget(caller, person, amount)
        before = self._meter.budget(scopes.owner(sub), fresh=True)
        self._meter.set_budget(scopes.owner(sub), amount, actor=caller.sub)
        self._audit.record(
            self._audit.new_event(
                Subject("person", sub),
                "budget_set",
                Actor(sub=caller.sub, email=caller.email),
                changes={"monthly_budget_usd": {"from": usd(before), "to": usd(amount)}},
            )
        )
        return HttpResult(self._budget_view(sub, caller.principal))

    def run_report(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/reports/daily`` ``{"day": "YYYY-MM-DD", "force": false}`` (admins): run it now.

        A day is sent once; ``"force": true`` sends a corrected revision (see reports.py).
        """
        self._require_admin(headers)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes, required=False, exact_numbers=True)
        refuse_unknown(body, {"day", "force"})
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise errors.InvalidRequest("'force' must be true or false.", param="force")
        reports = self._reports()
        result = reports.run(parse_day(body.get("day"), today=self._clock().date()), force=force)
        return HttpResult({**result, "notification": render_text(result["report"], revision=result["revision"])})

    def get_report(self, headers: Mapping[str, str], day: str) -> HttpResult:
        """``GET /admin/reports/daily/{day}`` (admins): the stored report of a day."""
        self._require_admin(headers)
        parsed = _date(day, "day", default=None)
        stored = self._reports().stored(parsed)
        return HttpResult({**stored, "notification": render_text(stored["report"], revision=stored["revision"])})

    def reconcile(self, headers: Mapping[str, str], raw_body: bytes | str | None) -> HttpResult:
        """``POST /admin/ledger/reconcile`` ``{"lines": [...]}`` (admins): replay usage that failed to persist.

        Every ``usage_unrecorded`` line is validated (fields, ranges, timestamp,
        money, and that the key exists and belongs to the entry's owner); bad
        ones are listed in ``rejected`` with their line number (1-based, in this
        request) and reason, and nothing of them is written. Other lines are
        counted in ``skipped``.
        """
        self._require_admin(headers)
        body = parse_json_body(raw_body, max_bytes=self._max_body_bytes, required=True, exact_numbers=True)
        refuse_unknown(body, {"lines"})
        lines = body.get("lines")
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise errors.InvalidRequest("'lines' must be an array of log lines (strings).", param="lines")
        if len(lines) > MAX_RECONCILE_LINES:
            raise errors.InvalidRequest(f"Send at most {MAX_RECONCILE_LINES} lines per call.", param="lines")
        parsed = parse_lines(lines, now=self._clock())
        owners: dict[str, str | None] = {}
        held: dict[tuple[str, str], Decimal] = {}
        entries = []
        for number, entry in zip(parsed.numbers, parsed.entries, strict=True):
            if entry.key_id not in owners:
                record = self._keys.get(entry.key_id)
                owners[entry.key_id] = record.owner_sub if record else None
            if owners[entry.key_id] is None:
                parsed.reject(number, f"unknown key '{entry.key_id}'", entry.request_id)
            elif owners[entry.key_id] != entry.owner_sub:
                parsed.reject(
                    number, f"key '{entry.key_id}' does not belong to owner '{entry.owner_sub}'", entry.request_id
                )
            elif entry.team_id and not self._charged_once(entry.key_id, entry.team_id):
                parsed.reject(
                    number, f"key '{entry.key_id}' was never charged to team '{entry.team_id}'", entry.request_id
                )
            elif (refusal := self._overdrawn(entry, held)) is not None:
                parsed.reject(number, refusal, entry.request_id)
            else:
                entries.append(entry)
        failed = [entry.request_id for entry in entries if not self._ledger.record(entry)]
        return HttpResult(
            {
                "object": "reconcile",
                "lines": len(lines),
                "entries": len(entries),
                "recorded": len(entries) - len(failed),
                "failed": failed,
                "rejected": sorted(parsed.rejected, key=lambda r: r["line"]),
                "skipped": parsed.skipped,
                "cost_usd": usd(sum((e.cost for e in entries), Decimal(0))),
            }
        )

    # Helpers

    def _overdrawn(self, entry: UsageEntry, held: dict[tuple[str, str], Decimal]) -> str | None:
        """Why ``entry`` would give back more than admission still holds for it, if it would.

        An entry's reservation is given back when it is aggregated. A line claiming
        more than is held (inflated, or the same request again under another
        timestamp) would push ``committed`` below what was billed, and the budget
        would stop binding. ``held`` carries what this request's earlier lines took.
        """
        claims = [(scopes.Scope.parse(name), amount) for name, amount in entry.reserved.items()]
        month = entry.reservation_month
        for scope, amount in claims:
            if amount <= 0:
                continue
            if (scope, month) not in held:
                held[(scope, month)] = self._ledger.held(scope, month)
            if amount > held[(scope, month)]:
                return (
                    f"it gives back a reservation of ${usd(amount)} on {scope} in {month}, but only "
                    f"${usd(held[(scope, month)])} is held there (replayed already, or not this request's)"
                )
        for scope, amount in claims:
            if amount > 0:
                held[(scope, month)] -= amount
        return None

    def _principal(self, headers: Mapping[str, str]) -> Principal:
        # A read may rely on a few seconds' old answer about its caller; a change never does (auth.py).
        return self._authenticator().authenticate(headers)

    def _charged_once(self, key_id: str, team_id: str) -> bool:
        team = self._teams.team(team_id)
        return team is not None and key_id in team.key_ids

    def _caller(self, headers: Mapping[str, str]) -> Caller:
        return Caller(self._principal(headers), self._teams)

    def _team(self, ref: str) -> Team:
        team = self._teams.find_team(ref.strip())
        if team is None:
            raise errors.NotFound(f"No team {ref!r}.", param="team", code="team_not_found")
        return team

    def _require_admin(self, headers: Mapping[str, str]) -> Principal:
        principal = self._principal(headers)
        if not principal.is_admin:
            raise errors.PermissionDenied("Only admins can do this.", code="admin_only")
        return principal

    def _resolve(self, who: str, *, reading: bool = False) -> str:
        """The sub ``who`` names; when ``reading``, also a sub no user has any more (a deleted user's usage)."""
        directory = self._directory()
        user = directory.find(who) if directory else None
        if user is not None:
            return user.sub
        if reading and "@" not in who and is_sub(who):
            return who
        raise errors.NotFound(f"No user {who!r} in the user pool.", param="owner", code="unknown_user")

    def _owner_sub(self, caller: Caller, owner: str, *, write: bool) -> str:
        principal = caller.principal
        if owner in ("me", principal.sub, principal.email):
            return principal.sub
        if principal.is_admin:
            return self._resolve(owner, reading=not write)
        # A team admin may see and set the budgets of their teams' members (checked against the person).
        sub = self._resolve(owner, reading=False)
        managed = [m.team_id for m in self._teams.memberships_of(sub) if caller.is_team_admin(m.team_id)]
        if not managed:
            raise errors.PermissionDenied(
                "You can see only your own budget, and those of your teams' members as their team admin.",
                param="owner",
                code="admin_only",
            )
        return sub

    def _key_ids_of(self, owner_sub: str) -> list[str]:
        key_ids: list[str] = []
        cursor = None
        while True:
            page = self._keys.list_keys(owner_sub=owner_sub, limit=100, cursor=cursor)
            key_ids.extend(record.key_id for record in page.items)
            cursor = page.cursor
            if not cursor:
                return key_ids

    def _email_of(self, sub: str, principal: Principal) -> str | None:
        """The owner's e-mail, for people reading a report (display only: a failed lookup shows none)."""
        if sub == principal.sub and principal.email:
            return principal.email
        directory = self._directory()
        if directory is None:
            return None
        try:
            return directory.email_of(sub)
        except errors.ServiceUnavailable:
            return None

    def _budget_view(self, sub: str, principal: Principal) -> dict[str, Any]:
        month = self._clock().strftime("%Y-%m")
        budget = self._meter.owner_budget(sub, fresh=True)
        totals = self._ledger.aggregate(scopes.owner(sub), scopes.month_period(month))
        return {
            "object": "owner_budget",
            "owner": sub,
            "owner_email": self._email_of(sub, principal),
            "period": month,
            "monthly_budget_usd": usd(budget),
            "spent_usd": usd(totals["cost"]),
            "remaining_usd": usd(max(Decimal(0), budget - totals["committed"])) if budget is not None else None,
        }

    def _describe_rows(
        self, rows: list[dict[str, Any]], group_by: str, principal: Principal, records: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        names = self._teams.teams_by_id(row["group"] for row in rows) if group_by == "team" else {}
        versions = self._price_versions() if group_by == "price" else {}
        return [self._describe(row, group_by, principal, names, versions, records) for row in rows]

    def _describe(
        self,
        row: dict[str, Any],
        group_by: str,
        principal: Principal,
        teams: dict[str, Team],
        versions: Mapping[str, list[dict[str, Any]]],
        records: Mapping[str, Any],
    ) -> dict[str, Any]:
        counts = {name: int(row.get(name, 0)) for name in COUNTERS}
        out = {"group": row["group"], **counts, "cost_usd": usd(row["cost"])}
        if group_by == "price":
            # "alias#version": the prices that version billed at (exact, as stored), so a bill can be
            # explained after the model's prices changed.
            model, _, number = str(row["group"]).rpartition("#")
            version = int(number) if number.isdigit() else 0
            known = next((v for v in versions.get(model, []) if v.get("version") == version), None)
            out.update(model=model, price_version=version, prices=known)
        if group_by == "owner":
            out["owner_email"] = self._email_of(row["group"], principal)
        if group_by == "key":
            record = records.get(row["group"])
            if record is not None:
                out.update(prefix=record.prefix, name=record.name, owner_email=record.owner_email)
        if group_by == "team":
            team = teams.get(row["group"])
            out["name"] = team.name if team else ("(no team)" if row["group"] == NO_TEAM else None)
        return out


@dataclass(frozen=True)
class _Whose:
    """Whose usage a report counts: ``scope`` (``all``, an owner's sub, ``team:<id>``), their keys
    (None: everyone's), and the team or the owner it is."""

    scope: str
    key_ids: list[str] | None
    team: Team | None = None
    owner_sub: str | None = None


def _usage_limit(text: str | None) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_USAGE_LIMIT:
        raise errors.InvalidRequest(f"limit must be a whole number from 1 to {MAX_USAGE_LIMIT}.", param="limit")
    return int(text)


def _date(text: str | None, param: str, *, default: date | None) -> date:
    if not text:
        if default is None:
            raise errors.InvalidRequest(f"'{param}' is required (YYYY-MM-DD).", param=param)
        return default
    return parse_day_text(text, param)
