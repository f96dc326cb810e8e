"""``ledger reconcile``'s input, validated line by line.

The lines come from CloudWatch Logs exports, pasted or filtered by hand, so
nothing in them is trusted: every ``usage_unrecorded`` line's entry is checked
field by field (types, ranges, a real timestamp, money that is a non-negative
exact number) before anything is written, and a bad line is reported with its
number and the reason instead of failing the whole call or storing garbage.
Lines that are not ``usage_unrecorded`` events (other log lines, blank lines)
are counted as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from chalicelib.accounting.ledger import UNRECORDED_EVENT
from chalicelib.errors import InvalidRequest
from chalicelib.shared import scopes
from chalicelib.shared.body import parse_json
from chalicelib.shared.dates import isoformat
from chalicelib.shared.usage import TokenUsage, UsageEntry

REQUIRED = (
    "request_id",
    "key_id",
    "owner_sub",
    "model",
    "bedrock_model_id",
    "operation",
    "usage",
    "cost",
    "latency_ms",
    "status",
    "timestamp",
)
OPTIONAL = (
    "team_id",
    "reserved",
    # Lines logged before teams existed: what they reserved on their key and owner.
    "reserved_key_usd",
    "reserved_owner_usd",
    "budget_month",
    "rate_window",
    "counted_tokens",
    "capped",
    "usage_cost",
    "protocol",
    "price_version",
    "served_by",
    "served_region",
    "requested_model",
    "guardrail_units",
    "guardrail_usd",
    "guardrail_price_version",
)
STATUSES = ("ok", "partial")
#: Sanity bounds: far above any real request, far below what would break a report.
MAX_USD = Decimal(1_000_000)
MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 24 * 3600 * 1000
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}")
_OPERATION = re.compile(r"[a-z][a-z_]{0,31}")
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # ASCII: "\d" matches "٢"
_COUNTER = re.compile(r"[a-zA-Z]{1,64}Units")


class InvalidEntry(ValueError):
    """An ``usage_unrecorded`` entry that must not be written; the message says why."""


@dataclass
class ParsedLines:
    """What a reconcile request's lines hold."""

    entries: list[UsageEntry] = field(default_factory=list)
    #: The (1-based) line number of each entry in ``entries``.
    numbers: list[int] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def reject(self, line: int, error: str, request_id: Any = None) -> None:
        self.rejected.append(
            {"line": line, "request_id": request_id if isinstance(request_id, str) else None, "error": error}
        )


def parse_lines(lines: list[str], *, now: datetime | None = None) -> ParsedLines:
    """Every ``usage_unrecorded`` entry in ``lines``, validated; bad lines rejected with a reason."""
    now = now or datetime.now(UTC)
    parsed = ParsedLines()
    for number, line in enumerate(lines, start=1):
        try:
            record = parse_json(line)  # the caller's text: bounded like every request body
        except InvalidRequest:
            parsed.skipped += 1
            continue
        if not isinstance(record, dict) or record.get("event") != UNRECORDED_EVENT:
            parsed.skipped += 1
            continue
        data = record.get("entry")
        try:
            entry = parse_entry(data, now=now)
        except InvalidEntry as exc:
            parsed.reject(number, str(exc), data.get("request_id") if isinstance(data, dict) else None)
            continue
        parsed.entries.append(entry)
        parsed.numbers.append(number)
    return parsed


def parse_entry(data: Any, *, now: datetime) -> UsageEntry:
    """A ``UsageEntry`` from the JSON a ``usage_unrecorded`` line carries.

    Raises
    ------
    InvalidEntry
        Anything missing, unknown, of the wrong type, out of range, or inconsistent.
    """
    if not isinstance(data, dict) or not data:
        raise InvalidEntry("'entry' must be a non-empty object")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise InvalidEntry(f"unknown field(s): {', '.join(repr(name)[:60] for name in unknown)}")
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise InvalidEntry(f"missing field(s): {', '.join(missing)}")
    values: dict[str, Any] = {
        name: _identifier(data, name) for name in ("request_id", "key_id", "owner_sub", "model", "bedrock_model_id")
    }
    operation = data["operation"]
    if not isinstance(operation, str) or not _OPERATION.fullmatch(operation):
        raise InvalidEntry("'operation' must be a lower-case word such as 'chat'")
    values["operation"] = operation
    protocol = data.get("protocol", "")
    if protocol != "" and (not isinstance(protocol, str) or not _OPERATION.fullmatch(protocol)):
        raise InvalidEntry("'protocol' must be a lower-case word such as 'openai'")
    values["protocol"] = protocol
    if data["status"] not in STATUSES:
        raise InvalidEntry(f"'status' must be one of {', '.join(STATUSES)}")
    values["status"] = data["status"]
    values["usage"] = _usage(data["usage"])
    values["cost"] = _money(data, "cost")
    values["latency_ms"] = _integer(data, "latency_ms", MAX_LATENCY_MS)
    values["timestamp"] = _timestamp(data["timestamp"], now)
    if data.get("team_id") is not None:
        values["team_id"] = _identifier(data, "team_id")
    values["reserved"] = _reserved(data, values)
    if data.get("budget_month") not in (None, ""):
        month = data["budget_month"]
        if not isinstance(month, str) or not _MONTH.fullmatch(month):
            raise InvalidEntry("'budget_month' must look like 2026-11")
        # Admission reserves in the month it runs; billing follows within the function's time limit
        # (minutes). Any other month would charge (and give back) a budget the request never touched.
        billed = values["timestamp"][:7]
        if month not in (billed, _month_before(billed)):
            raise InvalidEntry(f"'budget_month' {month} must be the month of 'timestamp' ({billed}) or the one before")
        values["budget_month"] = month
    if data.get("rate_window") is not None:
        values["rate_window"] = _integer(data, "rate_window", 2**40)
        values["counted_tokens"] = _integer(data, "counted_tokens", MAX_TOKENS) if "counted_tokens" in data else 0
    capped = data.get("capped", False)
    if not isinstance(capped, bool):
        raise InvalidEntry("'capped' must be true or false")
    if capped:
        if data.get("usage_cost") is None:
            raise InvalidEntry("a capped entry needs 'usage_cost'")
        values["usage_cost"] = _money(data, "usage_cost")
        if values["usage_cost"] < values["cost"]:
            raise InvalidEntry("'usage_cost' of a capped entry cannot be below its 'cost'")
        values["capped"] = True
    elif data.get("usage_cost") is not None:
        raise InvalidEntry("'usage_cost' is only for capped entries")
    for name in ("price_version", "guardrail_price_version"):
        if name in data:
            values[name] = _integer(data, name, 1_000_000)
    for name in ("served_by", "served_region", "requested_model"):
        if data.get(name) not in (None, ""):
            values[name] = _identifier(data, name)
    units = data.get("guardrail_units") or {}
    if not isinstance(units, dict) or not all(
        isinstance(k, str)
        and _COUNTER.fullmatch(k)
        and isinstance(v, int)
        and not isinstance(v, bool)
        and 0 <= v <= MAX_TOKENS
        for k, v in units.items()
    ):
        raise InvalidEntry("'guardrail_units' must map usage counters (e.g. contentPolicyUnits) to whole numbers")
    values["guardrail_units"] = dict(units)
    values["guardrail_usd"] = _money(data, "guardrail_usd") if "guardrail_usd" in data else Decimal(0)
    if values["guardrail_usd"] > (values.get("usage_cost") or values["cost"]):
        raise InvalidEntry("'guardrail_usd' is part of the cost: it cannot be above it")
    return UsageEntry(**values)


def _reserved(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Decimal]:
    """What the entry reserved, by scope: only on the scopes it was admitted under."""
    own = {scope.name for scope in scopes.charged(values["key_id"], values["owner_sub"], values.get("team_id"))}
    reserved: dict[str, Decimal] = {}
    given = data.get("reserved")
    if given is not None:
        if not isinstance(given, dict) or len(given) > len(own):
            raise InvalidEntry("'reserved' must be an object of USD amounts by scope (KEY#…, OWNER#…, TEAM#…)")
        for name in given:
            if name not in own:
                raise InvalidEntry(f"'reserved' names {str(name)[:80]!r}, not a scope this entry was admitted under")
            reserved[name] = _money(given, name)
    legacy = {"reserved_key_usd": scopes.key(values["key_id"]), "reserved_owner_usd": scopes.owner(values["owner_sub"])}
    for field_name, scope in legacy.items():
        if field_name in data:
            if given is not None:
                raise InvalidEntry(f"send either 'reserved' or '{field_name}', not both")
            reserved[scope.name] = _money(data, field_name)
    return {name: amount for name, amount in reserved.items() if amount}


def _month_before(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def _identifier(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidEntry(f"'{name}' must be a non-empty identifier (letters, digits, ._:@/+=-; at most 200)")
    return value


def _integer(data: dict[str, Any], name: str, most: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise InvalidEntry(f"'{name}' must be a whole number from 0 to {most}")
    return value


def _money(data: dict[str, Any], name: str) -> Decimal:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEntry(f"'{name}' must be a USD amount as a string, e.g. \"0.000123\"")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidEntry(f"'{name}' is not a number: {str(value)[:40]!r}") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_USD:
        raise InvalidEntry(f"'{name}' must be from 0 to {MAX_USD} USD")
    if amount.as_tuple().exponent < -20:  # type: ignore[operator]
        raise InvalidEntry(f"'{name}' has more than 20 decimal places")
    return amount


def _usage(value: Any) -> TokenUsage:
    names = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens")
    if not isinstance(value, dict):
        raise InvalidEntry("'usage' must be an object of token counts")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise InvalidEntry(f"unknown usage field(s): {', '.join(repr(name)[:60] for name in unknown)}")
    counts = {}
    for name in names:
        count = value.get(name, 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_TOKENS:
            raise InvalidEntry(f"'usage.{name}' must be a whole number from 0 to {MAX_TOKENS}")
        counts[name] = count
    if counts["cache_write_1h_tokens"] > counts["cache_write_tokens"]:
        raise InvalidEntry("'usage.cache_write_1h_tokens' cannot be more than 'usage.cache_write_tokens'")
    return TokenUsage(**counts)


def _timestamp(value: Any, now: datetime) -> str:
    if not isinstance(value, str):
        raise InvalidEntry("'timestamp' must be an ISO 8601 time such as 2026-11-26T10:30:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEntry(f"'timestamp' is not an ISO 8601 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise InvalidEntry("'timestamp' needs a time zone (Z for UTC)")
    if not EARLIEST <= moment <= now + CLOCK_SKEW:
        raise InvalidEntry(f"'timestamp' {value[:40]!r} is not between 2020 and now")
    stored = isoformat(moment)
    if stored != value:
        raise InvalidEntry(f"'timestamp' must be UTC to the second, as logged (e.g. {stored})")
    return stored
