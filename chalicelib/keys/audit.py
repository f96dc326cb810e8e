"""The audit log: append-only events (who did what to which key, team or person, when, what changed).

Table layout (``audit`` table, see ``infra/template.json``)::

    pk=<subject>           sk=<time>#<event_id>      one event
    GSI ``by-day``: gsi1pk=DAY#<yyyy-mm-dd>, gsi1sk=<time>#<event_id>

The subject is a key (``KEY#<key_id>``), a team (``TEAM#<id>``), a person (``PERSON#<sub>``) or a
catalog model (``MODEL#<alias>``):
``chalicelib/shared/scopes.py: subject`` builds it, the one place that knows the form. Each kind
of subject has its own actions (``ACTIONS``).

Times have microsecond precision so events of one key sort in the order they
happened. Events are written with a conditional put and never updated or
deleted. They never carry a secret or a hash: ``changes`` holds only the
fields an admin can see in a key's metadata.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from chalicelib.keys.store import KeyRecord, Page, decode_cursor, encode_cursor
from chalicelib.shared import scopes
from chalicelib.shared.dates import Clock, utcnow

#: Actions an event can record, by the kind of its subject.
SUBJECT_ACTIONS = {
    "key": (
        "created", "imported", "updated", "rotated", "revoked", "revoked_use", "expired_use",
        # Its owner was disabled or removed (the key is refused), or enabled again; a use meanwhile.
        "owner_disabled", "owner_enabled", "disabled_use",
    ),
    "team": ("created", "updated", "deleted", "member_added", "member_removed", "role_changed", "budget_set"),
    "model": ("added", "updated", "removed", "tested"),
    # The stack's guardrail prices (chalicelib/catalog/guardrail_prices.py): a new version set.
    "prices": ("set",),
    "person": ("invited", "appeared", "disabled", "enabled", "removed", "budget_set", "admin_granted", "admin_revoked"),
}  # fmt: skip
#: A key's actions (the first subject the log had).
ACTIONS = SUBJECT_ACTIONS["key"]
#: Fields an event's ``changes`` may mention (never ``secret_hash`` or ``previous_hash``).
AUDITED_FIELDS = (
    "owner_sub",
    "owner_email",
    "name",
    "status",
    "allowed_models",
    "monthly_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "expires_at",
    "revoked_at",
    "metadata",
    "import_id",
    "guardrail",
    "model_fallback",
    "team_id",
)


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a signed-in user, or (``kind="api_key"``) whoever presented a key."""

    sub: str | None
    email: str | None = None
    kind: str = "user"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "sub": self.sub, "email": self.email}


@dataclass(frozen=True)
class Subject:
    """What an event is about: a key, a team, a person, a catalog model or the stack's guardrail prices."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if self.kind not in SUBJECT_ACTIONS:
            raise ValueError(f"unknown audit subject kind {self.kind!r}")

    @property
    def pk(self) -> str:
        return scopes.subject(self.kind, self.id)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id}


@dataclass(frozen=True)
class AuditEvent:
    """One audit event, as stored and as the admin API shows it."""

    event_id: str
    subject: Subject
    action: str
    at: str
    actor: Actor
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key_id(self) -> str | None:
        """The key the event is about, for a key's event."""
        return self.subject.id if self.subject.kind == "key" else None

    def _fields(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "subject": self.subject.to_dict(),
            "action": self.action,
            "at": self.at,
            "actor": self.actor.to_dict(),
            "changes": self.changes,
            "details": self.details,
        }

    def to_item(self) -> dict[str, Any]:
        sort_key = f"{self.at}#{self.event_id}"
        item = {
            "pk": self.subject.pk,
            "sk": sort_key,
            "gsi1pk": scopes.audit_day(self.at[:10]),
            "gsi1sk": sort_key,
            "event_id": self.event_id,
            **self._fields(),
        }
        if item["key_id"] is None:
            del item["key_id"]  # only a key's events carry it (and always have)
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> AuditEvent:
        actor = item.get("actor") or {}
        kind, ident = scopes.parse_subject(item["pk"])
        return cls(
            event_id=item["event_id"],
            subject=Subject(kind, ident),
            action=item["action"],
            at=item["at"],
            actor=Actor(sub=actor.get("sub"), email=actor.get("email"), kind=actor.get("kind", "user")),
            changes=_from_table(item.get("changes") or {}),
            details=_from_table(item.get("details") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API form: plain JSON values."""
        return {"object": "audit_event", "id": self.event_id, **self._fields()}


def audit_time(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``: sorts in the order events happened."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def diff(before: KeyRecord | None, after: KeyRecord) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for every audited field that differs."""
    changes: dict[str, dict[str, Any]] = {}
    for name in AUDITED_FIELDS:
        old = _value(before, name) if before is not None else None
        new = _value(after, name)
        if old != new:
            changes[name] = {"from": old, "to": new}
    return changes


def changes_between(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, fields: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for each of ``fields`` that differs between two documents."""
    changes: dict[str, dict[str, Any]] = {}
    for name in fields:
        old = _plain((before or {}).get(name))
        new = _plain((after or {}).get(name))
        if old != new:
            changes[name] = {"from": old, "to": new}
    return changes


def _value(record: KeyRecord, name: str) -> Any:
    value = getattr(record, name)
    if name == "metadata" and not value:
        return None
    return _plain(value)


def _plain(value: Any) -> Any:
    """JSON-safe copy: Decimals become exact strings (DynamoDB gives numbers back as Decimal)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def _from_table(value: Any) -> Any:
    """Undo DynamoDB's numbers-as-Decimal: events store money as strings, so numbers are integers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, Mapping):
        return {str(k): _from_table(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_table(v) for v in value]
    return value


class AuditLog:
    """Writes and reads the audit table. Takes a boto3 DynamoDB ``Table`` resource."""

    def __init__(self, table: Any, clock: Clock = utcnow) -> None:
        self._table = table
        self._clock = clock

    def new_event(
        self,
        subject: str | Subject,
        action: str,
        actor: Actor,
        *,
        changes: Mapping[str, Mapping[str, Any]] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An event about ``subject`` (a ``Subject``, or a key's id) stamped now, with a fresh id (not yet stored)."""
        subject = subject if isinstance(subject, Subject) else Subject("key", subject)
        if action not in SUBJECT_ACTIONS[subject.kind]:
            raise ValueError(f"unknown audit action {action!r} for a {subject.kind}")
        leaked = {"secret_hash", "previous_hash", "secret"} & (set(changes or {}) | set(details or {}))
        if leaked:
            raise ValueError(f"audit events never carry secrets: {sorted(leaked)}")
        return AuditEvent(
            event_id=uuid.uuid4().hex,
            subject=subject,
            action=action,
            at=audit_time(self._clock()),
            actor=actor,
            changes=_plain(dict(changes or {})),
            details=_plain(dict(details or {})),
        )

    def put_item(self, event: AuditEvent) -> dict[str, Any]:
        """The event as a conditional ``Put`` of a DynamoDB transaction (committed with its key's change)."""
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": event.to_item(),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def record(self, event: AuditEvent) -> AuditEvent:
        """Append one event; the conditional put makes overwriting an event impossible."""
        self._table.put_item(Item=event.to_item(), ConditionExpression="attribute_not_exists(pk)")
        return event

    def record_many(self, events: Iterable[AuditEvent]) -> None:
        """Append many events, 25 per batch write (bulk import).

        Batch writes cannot be conditional; each event id is a fresh UUID4, so
        no batch write can land on an existing event.
        """
        with self._table.batch_writer() as batch:
            for event in events:
                batch.put_item(Item=event.to_item())

    def for_key(self, key_id: str, *, limit: int = 100, cursor: str | None = None) -> Page:
        """A page of one key's events, oldest first.

        Raises
        ------
        InvalidRequest
            A cursor from another listing.
        """
        return self.for_subject(Subject("key", key_id), limit=limit, cursor=cursor)

    def for_subject(self, subject: Subject, *, limit: int = 100, cursor: str | None = None) -> Page:
        """A page of one key's, team's, person's or model's events, oldest first.

        Raises
        ------
        InvalidRequest
            A cursor from another listing.
        """
        start = decode_cursor(cursor, {"pk": subject.pk, "sk": None})
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": subject.pk},
            "Limit": limit,
            "ConsistentRead": True,
        }
        return self._page(params, start)

    def for_day(self, day: date, *, limit: int = 100, cursor: str | None = None) -> Page:
        """A page of every subject's events of one UTC day, oldest first.

        Raises
        ------
        InvalidRequest
            A cursor from another listing.
        """
        partition = scopes.audit_day(day)
        start = decode_cursor(cursor, {"pk": None, "sk": None, "gsi1pk": partition, "gsi1sk": None})
        params: dict[str, Any] = {
            "IndexName": "by-day",
            "KeyConditionExpression": "gsi1pk = :day",
            "ExpressionAttributeValues": {":day": partition},
            "Limit": limit,
        }
        return self._page(params, start)

    def _page(self, params: dict[str, Any], start: dict[str, str] | None) -> Page:
        if start:
            params["ExclusiveStartKey"] = start
        response = self._table.query(**params)
        events = [AuditEvent.from_item(item) for item in response.get("Items", [])]
        return Page(items=events, cursor=encode_cursor(response.get("LastEvaluatedKey")))


class DeniedUseRecorder:
    """Records uses of revoked or expired keys, at most once per key and reason per interval.

    Called from ``KeyStore.authenticate`` only after the secret matched, so
    only a key's holder can cause these writes, and the per-process interval
    keeps a client retrying in a loop from turning into a write per request.
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        interval_seconds: float = 60.0,
        max_tracked: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._interval = interval_seconds
        self._max_tracked = max_tracked
        self._monotonic = monotonic
        self._last: dict[tuple[str, str], float] = {}

    def __call__(self, record: KeyRecord, reason: str) -> None:
        now = self._monotonic()
        marker = (record.key_id, reason)
        last = self._last.get(marker)
        if last is not None and now - last < self._interval:
            return
        if len(self._last) >= self._max_tracked:
            self._last.clear()  # a crude bound on memory; at worst a few extra events get written
        self._last[marker] = now
        action = {"revoked": "revoked_use", "expired": "expired_use"}.get(reason, "disabled_use")
        details: dict[str, Any] = {"reason": reason}
        if reason == "expired":
            details["expires_at"] = record.expires_at
        elif reason == "revoked":
            details["revoked_at"] = record.revoked_at
        self._audit.record(
            self._audit.new_event(record.key_id, action, Actor(sub=None, kind="api_key"), details=details)
        )
