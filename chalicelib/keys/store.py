"""API keys: generation, hashing, verification and the key table.

A key looks like ``pw-<key_id>-<secret>``. The key id is the table's partition
key, so verifying a key is one strongly consistent ``GetItem`` followed by a
constant-time comparison of SHA-256 digests. Only the digest is stored: the
secret is shown once, at creation or rotation. Keys carry 238 bits of
randomness, so a fast hash is enough (no password-style stretching needed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from chalicelib.keys import listing
from chalicelib.keys.listing import KeyFilter, KeyListing
from chalicelib.observability import logger
from chalicelib.shared.body import parse_json
from chalicelib.shared.dates import Clock, isoformat, parse_time, utcnow
from chalicelib.shared.dynamodb import plain_client, untyped
from chalicelib.shared.guardrails import Guardrail

KEY_PREFIX = "pw"
#: How fresh ``last_used_at`` is kept (each refresh is one write).
LAST_USED_RESOLUTION = timedelta(minutes=5)
_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 12
_SECRET_LENGTH = 40
_KEY_ID_RE = re.compile(rf"^[a-z0-9]{{{_ID_LENGTH}}}$")
_KEY_RE = re.compile(rf"^{KEY_PREFIX}-([a-z0-9]{{{_ID_LENGTH}}})-([A-Za-z0-9]{{{_SECRET_LENGTH}}})$")

#: Given a key as a write will leave it, extra DynamoDB transaction items to commit atomically
#: with that write (the audit log's event), so an event exists exactly when its change does.
Attach = Callable[["KeyRecord"], Sequence[Mapping[str, Any]]]


def new_key_id() -> str:
    """A new random key id (not secret: it is the key's visible prefix)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, plaintext_key)`` pair from the OS's CSPRNG."""
    key_id = new_key_id()
    return key_id, new_secret_for(key_id)


def new_secret_for(key_id: str) -> str:
    """A fresh plaintext key for an existing key id (used by rotation)."""
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    return f"{KEY_PREFIX}-{key_id}-{secret}"


def hash_key(plaintext: str) -> str:
    """The hex SHA-256 digest stored in place of the key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def is_key_id(text: str) -> bool:
    """True for a string shaped like a key id (12 lowercase letters or digits)."""
    return bool(_KEY_ID_RE.match(text))


def derive_key_id(owner_sub: str, import_id: str) -> str:
    """The key id an import row gets: a function of owner and client id, so re-imports find it."""
    digest = hashlib.sha256(f"pennyworth-import\0{owner_sub}\0{import_id}".encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, index = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[index])
    return "".join(chars)


def key_id_of(plaintext: str) -> str | None:
    """The key id embedded in a well-formed key, or None for anything else."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (case-insensitive): repeated headers, and values joined with commas.

    The edges join a repeated header's values (``chalicelib/shared/http.py: combined_headers``), as
    HTTP allows; neither a bearer token nor a key holds a comma.
    """
    return [part.strip() for k, v in headers.items() if k.lower() == name for part in v.split(",") if part.strip()]


def _one(values: list[str], what: str) -> str | None:
    """The one credential among ``values`` (repeats of it are one); two different ones are refused."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) > 1:
        raise AuthenticationFailed(
            f"The request carries two different credentials in {what}; send one.", code="ambiguous_api_key"
        )
    return distinct[0] if distinct else None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (case-insensitive), if any.

    Raises
    ------
    AuthenticationFailed
        Two different bearer tokens (repeated ``Authorization`` headers): ambiguous, never guessed.
    """
    tokens = []
    for value in header_values(headers, "authorization"):
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            tokens.append(token.strip())
    return _one(tokens, "Authorization")


def api_key_token(headers: Mapping[str, str], *, accept_x_api_key: bool = False) -> str | None:
    """The API key a request carries: its bearer token, or (when accepted) its ``x-api-key`` header.

    Anthropic's clients send ``x-api-key``; Claude Code sends both headers when both of its
    variables are set. Two different keys are never guessed between, except that a value
    that is not shaped like a pennyworth key (another provider's key) gives way to one that is.

    Raises
    ------
    AuthenticationFailed
        Both headers carry different pennyworth-shaped keys (or neither is one), or one header
        name is repeated with two different keys.
    """
    bearer = bearer_token(headers)
    if not accept_x_api_key:
        return bearer
    header_key = _one(header_values(headers, "x-api-key"), "x-api-key")
    if bearer is None or header_key is None or bearer == header_key:
        return bearer or header_key
    ours = [token for token in (header_key, bearer) if key_id_of(token)]
    if len(ours) == 1:
        return ours[0]
    raise AuthenticationFailed(
        "The request carries two different API keys (x-api-key and Authorization: Bearer); send one.",
        code="ambiguous_api_key",
    )


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored, minus nothing: the hash never leaves ``keys.py`` callers' hands."""

    key_id: str
    owner_sub: str
    owner_email: str | None
    name: str
    status: str
    created_at: str
    secret_hash: str
    updated_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    previous_hash: str | None = None
    previous_hash_expires_at: str | None = None
    allowed_models: tuple[str, ...] | None = None
    monthly_budget_usd: Decimal | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    last_used_at: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    import_id: str | None = None
    #: The limits an admin set, ``{field: {"value", "set_by", "set_at"}}``: the owner may tighten
    #: them, never loosen them (``chalicelib/admin/keys.py``). None: a key from before this was
    #: recorded, whose limits count as an admin's.
    admin_limits: dict[str, Any] | None = None
    #: The guardrail every call with this key carries (``{"id", "version"}``): it wins over the model's.
    guardrail: dict[str, str] | None = None
    #: Which fallbacks may serve this key's calls: ``any`` (None), ``same_model`` (another geography or
    #: region of the model asked for, never another model) or ``none`` (exactly the target asked for).
    model_fallback: str | None = None
    version: int = 0  # bumped by every change; conditional writes compare it
    #: The team the key is charged to (its own team, for a team's key): its budget binds the key too.
    team_id: str | None = None
    #: Set while the key's owner is disabled or removed: the key is refused, and comes back when
    #: the owner is enabled again (unless revoked or expired meanwhile).
    owner_disabled: bool = False

    @property
    def prefix(self) -> str:
        """What humans see to recognise the key: everything but the secret."""
        return f"{KEY_PREFIX}-{self.key_id}"

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> KeyRecord:
        """Build from a DynamoDB item (boto3 resource form)."""
        allowed = item.get("allowed_models")
        return cls(
            key_id=item["key_id"],
            owner_sub=item["owner_sub"],
            owner_email=item.get("owner_email"),
            name=item.get("name", ""),
            status=item.get("status", "active"),
            created_at=item["created_at"],
            secret_hash=item["secret_hash"],
            updated_at=item.get("updated_at"),
            expires_at=item.get("expires_at"),
            revoked_at=item.get("revoked_at"),
            previous_hash=item.get("previous_hash"),
            previous_hash_expires_at=item.get("previous_hash_expires_at"),
            allowed_models=tuple(allowed) if allowed is not None else None,
            monthly_budget_usd=item.get("monthly_budget_usd"),
            rpm_limit=_int_or_none(item.get("rpm_limit")),
            tpm_limit=_int_or_none(item.get("tpm_limit")),
            last_used_at=item.get("last_used_at"),
            metadata=dict(item.get("metadata") or {}),
            import_id=item.get("import_id"),
            admin_limits=dict(item["admin_limits"]) if item.get("admin_limits") is not None else None,
            guardrail=dict(item["guardrail"]) if item.get("guardrail") else None,
            model_fallback=item.get("model_fallback"),
            version=int(item.get("version", 0)),
            team_id=item.get("team_id"),
            owner_disabled=bool(item.get("owner_disabled", False)),
        )

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item; absent optional fields are left out, not stored as null."""
        item: dict[str, Any] = {
            "key_id": self.key_id,
            "owner_sub": self.owner_sub,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "secret_hash": self.secret_hash,
            "metadata": dict(self.metadata),
            "version": self.version,
        }
        optional = {
            "owner_email": self.owner_email,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "previous_hash": self.previous_hash,
            "previous_hash_expires_at": self.previous_hash_expires_at,
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
            "monthly_budget_usd": self.monthly_budget_usd,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "last_used_at": self.last_used_at,
            "import_id": self.import_id,
            "admin_limits": self.admin_limits,
            "guardrail": self.guardrail,
            "model_fallback": self.model_fallback,
            "team_id": self.team_id,
            "owner_disabled": True if self.owner_disabled else None,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        item["search"] = listing.search_text(item)  # what a listing's search filters on (listing.py)
        return item

    @property
    def guardrail_config(self) -> Guardrail | None:
        """The key's guardrail, if it has one."""
        if not self.guardrail:
            return None
        return Guardrail(self.guardrail["id"], self.guardrail.get("version", "DRAFT"))

    @property
    def guardrail_imposed(self) -> bool:
        """True when the key's guardrail is an admin's (or its team admin's): it then wins over its team's
        and its model's.

        One the key's owner chose themselves applies only where no admin requires one (it would
        otherwise let anyone swap an admin's guardrail for a looser one of the stack's list). A key
        from before ``admin_limits`` was recorded has unknown provenance: its guardrail counts as imposed.
        """
        if not self.guardrail:
            return False
        if self.admin_limits is None:
            return True
        entry = self.admin_limits.get("guardrail")
        return isinstance(entry, dict) and entry.get("value") == self.guardrail

    def allows_model(self, model_id: str) -> bool:
        """True when the key has no allowlist or the model is on it."""
        return self.allowed_models is None or model_id in self.allowed_models

    def effective_status(self, now: datetime) -> str:
        """``revoked``, ``expired``, ``disabled`` (its owner is) or ``active``: what ``authenticate`` would decide."""
        if self.status == "revoked":
            return "revoked"
        if self.expires_at and parse_time(self.expires_at) <= now:
            return "expired"
        if self.owner_disabled:
            return "disabled"
        return "active"


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


#: Fields an owner or admin may change after creation (``KeyStore.update``), and who set the limits.
UPDATABLE_FIELDS = (
    "name",
    "allowed_models",
    "monthly_budget_usd",
    "rpm_limit",
    "tpm_limit",
    "expires_at",
    "metadata",
    "admin_limits",
    "guardrail",
    "model_fallback",
    "team_id",
)
#: Key states a listing can be narrowed to; ``expired`` is derived from ``expires_at``, ``disabled``
#: from the owner's (``owner_disabled``).
STATUSES = ("active", "expired", "revoked", "disabled")
_BATCH_GET_ITEMS = 100  # DynamoDB's BatchGetItem limit
_LABEL_READERS = 8  # BatchGetItem calls in flight at once when reading many keys' labels


@dataclass(frozen=True)
class KeyLabel:
    """What a report shows of a key: its id, name and owner's e-mail."""

    key_id: str
    name: str
    owner_email: str | None

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}-{self.key_id}"


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``cursor`` fetches the next page (None: there is none)."""

    items: list[Any]
    cursor: str | None


@dataclass(frozen=True)
class ImportOutcome:
    """What ``KeyStore.import_new`` did with one prepared key."""

    record: KeyRecord
    plaintext: str | None  # set only when the key was created by this call
    created: bool


def encode_cursor(last_key: Mapping[str, Any] | None) -> str | None:
    """An opaque page cursor from DynamoDB's ``LastEvaluatedKey``."""
    if not last_key:
        return None
    return base64.urlsafe_b64encode(json.dumps(dict(last_key), sort_keys=True).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, fields: Mapping[str, str | None]) -> dict[str, str] | None:
    """``LastEvaluatedKey`` back from ``encode_cursor``; ``fields`` maps each key name to its required value.

    Raises
    ------
    InvalidRequest
        The cursor is not one this listing produced (edited, or from another listing).
    """
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = parse_json(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, InvalidRequest):
        value = None
    valid = (
        isinstance(value, dict)
        and set(value) == set(fields)
        and all(isinstance(v, str) for v in value.values())
        and all(required is None or value[name] == required for name, required in fields.items())
    )
    if not valid:
        raise InvalidRequest("The cursor is not valid for this listing; start again without it.", param="cursor")
    return value


class KeyStore:
    """The keys table. Takes a boto3 DynamoDB ``Table`` resource (moto in tests).

    ``on_denied(record, reason)`` is called when a request presents a key's
    correct secret but the key is revoked or expired (the audit log records
    these); it must not raise into authentication, so its errors are logged.
    """

    def __init__(
        self,
        table: Any,
        clock: Clock = utcnow,
        on_denied: Callable[[KeyRecord, str], None] | None = None,
    ) -> None:
        self._table = table
        self._clock = clock
        self._on_denied = on_denied

    def create(
        self,
        *,
        owner_sub: str,
        owner_email: str | None = None,
        name: str = "",
        allowed_models: list[str] | None = None,
        monthly_budget_usd: Decimal | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        expires_at: str | None = None,
        metadata: dict[str, str] | None = None,
        admin_limits: dict[str, Any] | None = None,
        team_id: str | None = None,
        key_id: str | None = None,
        attach: Attach | None = None,
        guardrail: dict[str, str] | None = None,
        model_fallback: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """Store a new key and return ``(record, plaintext)``; the plaintext is never stored."""
        record, plaintext = self.prepare(
            key_id=key_id or new_key_id(),
            owner_sub=owner_sub,
            owner_email=owner_email,
            name=name,
            allowed_models=allowed_models,
            monthly_budget_usd=monthly_budget_usd,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            expires_at=expires_at,
            metadata=dict(metadata or {}),
            admin_limits=admin_limits,
            guardrail=guardrail,
            model_fallback=model_fallback,
            team_id=team_id,
        )
        if attach is None:
            self._table.put_item(Item=record.to_item(), ConditionExpression="attribute_not_exists(key_id)")
        else:
            self._transact([self._put_new(record), *attach(record)])
        return record, plaintext

    def _put_new(self, record: KeyRecord) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": record.to_item(),
                "ConditionExpression": "attribute_not_exists(key_id)",
            }
        }

    def _transact(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._table.meta.client.transact_write_items(TransactItems=list(items))

    def get(self, key_id: str) -> KeyRecord | None:
        """One strongly consistent read: a revocation is seen by the very next request."""
        answer = plain_client(self._table).get_item(
            TableName=self._table.name, Key={"key_id": {"S": key_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        return KeyRecord.from_item(untyped(item)) if item else None

    def authenticate(self, headers: Mapping[str, str], *, accept_x_api_key: bool = False) -> KeyRecord:
        """The active key named by the request's bearer token (or ``x-api-key``, when accepted).

        Raises
        ------
        AuthenticationFailed
            No key, two different keys, a malformed or unknown key, a wrong secret, or
            a revoked or expired key. Messages never repeat the key.
        """
        token = api_key_token(headers, accept_x_api_key=accept_x_api_key)
        if token is None:
            how = (
                "'x-api-key: <key>' or 'Authorization: Bearer <key>'"
                if accept_x_api_key
                else "'Authorization: Bearer <key>'"
            )
            raise AuthenticationFailed(f"You didn't provide an API key. Send it as {how}.", code="missing_api_key")
        key_id = key_id_of(token)
        record = self.get(key_id) if key_id else None
        if record is None or not self._secret_matches(record, token):
            raise AuthenticationFailed("Incorrect API key provided.")
        status = record.effective_status(self._clock())
        if status == "revoked":
            self._report_denied(record, status)
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if status == "expired":
            self._report_denied(record, status)
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        if status == "disabled":
            self._report_denied(record, status)
            raise AuthenticationFailed(
                "This API key's owner is disabled; an admin can enable them again (the key works again then).",
                code="owner_disabled",
            )
        self._touch(record)
        return record

    def _touch(self, record: KeyRecord) -> None:
        # last_used_at to the nearest few minutes: at most one write per key per
        # LAST_USED_RESOLUTION, decided from the record just read (no extra read).
        now = self._clock()
        if record.last_used_at and now - parse_time(record.last_used_at) < LAST_USED_RESOLUTION:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._table.update_item(
                Key={"key_id": record.key_id},
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression="attribute_exists(key_id)",
                ExpressionAttributeValues={":now": isoformat(now)},
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not record last use", extra={"key_id": record.key_id, "reason": str(exc)})

    def _report_denied(self, record: KeyRecord, reason: str) -> None:
        if self._on_denied is None:
            return
        try:
            self._on_denied(record, reason)
        except Exception:
            # The caller gets its 401 either way; a missed audit line must not turn it into a 500.
            logger.exception("could not record a denied key use", extra={"key_id": record.key_id})

    def _secret_matches(self, record: KeyRecord, token: str) -> bool:
        digest = hash_key(token)
        if hmac.compare_digest(digest, record.secret_hash):
            return True
        if record.previous_hash and record.previous_hash_expires_at:
            in_grace = parse_time(record.previous_hash_expires_at) > self._clock()
            return in_grace and hmac.compare_digest(digest, record.previous_hash)
        return False

    # Lifecycle: listing, changes, revocation, rotation, bulk import.

    def list_keys(
        self,
        *,
        owner_sub: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        search: str | None = None,
        model: str | None = None,
        budget: int | None = None,
    ) -> Page:
        """A page of keys, newest first: one owner's (``by-owner`` index) or everyone's (``by-status``).

        ``search`` (a piece of the name, key id, owner, import id or metadata, any case) and
        ``model`` (keys that may use it) are applied as the keys are read; a page reads about
        ``budget`` keys at most, so a rare search may answer a short page that has a cursor
        (``chalicelib/keys/listing.py``).

        Raises
        ------
        InvalidRequest
            An unknown status or a cursor from another listing.
        """
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}.", param="status")
        page = KeyListing(self._table, key_names=_index_keys).page(
            owner_sub=owner_sub,
            keep=KeyFilter(status=status, search=search, model=model),
            now=isoformat(self._clock()),
            limit=limit,
            cursor=cursor,
            budget=budget if budget is not None else listing.READ_BUDGET,
        )
        return Page(items=[KeyRecord.from_item(item) for item in page.items], cursor=page.cursor)

    def require(self, key_id: str) -> KeyRecord:
        """The key, or NotFound.

        Raises
        ------
        NotFound
            No key has this id.
        """
        record = self.get(key_id) if is_key_id(key_id) else None
        if record is None:
            raise NotFound(f"No API key with id {key_id!r}.", param="key_id", code="key_not_found")
        return record

    def update(self, current: KeyRecord, changes: Mapping[str, Any], *, attach: Attach | None = None) -> KeyRecord:
        """Apply ``changes`` (``UPDATABLE_FIELDS``; None clears) if the key is still as ``current`` saw it.

        Raises
        ------
        Conflict
            The key is revoked, or changed since ``current`` was read.
        InvalidRequest
            A field that cannot be updated.
        """
        unknown = set(changes) - set(UPDATABLE_FIELDS)
        if unknown:
            raise InvalidRequest(f"'{sorted(unknown)[0]}' cannot be updated.", param=sorted(unknown)[0])
        values = {**_record_values(changes), "updated_at": isoformat(self._clock()), "version": current.version + 1}
        record = replace(current, **values)
        stored = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        # What a search finds follows the name and metadata (and a key stored before ``search``
        # existed gets it at its first edit).
        stored["search"] = listing.search_text(record.to_item())
        self._conditional_update(current, stored, record, attach)
        return record

    def revoke(self, current: KeyRecord, *, attach: Attach | None = None) -> KeyRecord:
        """Revoke the key: the very next request with it is refused (reads are strongly consistent).

        Raises
        ------
        Conflict
            The key is already revoked, or changed since ``current`` was read.
        """
        now = isoformat(self._clock())
        # A rotated-out secret still in its grace period is kept: presented after the revoke, it is
        # recognised and refused as revoked (and its use audited), not taken for a wrong key.
        changes = {"status": "revoked", "revoked_at": now, "updated_at": now, "version": current.version + 1}
        record = replace(current, **changes)
        self._conditional_update(current, changes, record, attach)
        return record

    def rotate(
        self, current: KeyRecord, *, grace_seconds: int = 0, attach: Attach | None = None
    ) -> tuple[KeyRecord, str]:
        """Give the key a new secret; the old one keeps working for ``grace_seconds`` (0: stops now).

        Raises
        ------
        Conflict
            The key is revoked, or changed (e.g. rotated) since ``current`` was read.
        """
        plaintext = new_secret_for(current.key_id)
        now = self._clock()
        changes: dict[str, Any] = {
            "secret_hash": hash_key(plaintext),
            "updated_at": isoformat(now),
            "version": current.version + 1,
        }
        if grace_seconds > 0:
            changes["previous_hash"] = current.secret_hash
            changes["previous_hash_expires_at"] = isoformat(now + timedelta(seconds=grace_seconds))
        else:
            changes["previous_hash"] = None
            changes["previous_hash_expires_at"] = None
        record = replace(current, **changes)
        self._conditional_update(current, changes, record, attach)
        return record, plaintext

    def set_owner_disabled(self, record: KeyRecord, disabled: bool, *, attach: Attach | None = None) -> KeyRecord:
        """Refuse the key while its owner is disabled (``disabled``), or stop refusing it.

        Only the mark changes: a key revoked or expired meanwhile stays so, and an edit based on the
        key as read before is not refused for it (the version is unchanged).
        """
        changed = replace(record, owner_disabled=disabled)
        update: dict[str, Any] = {
            "Key": {"key_id": record.key_id},
            "UpdateExpression": "SET owner_disabled = :true" if disabled else "REMOVE owner_disabled",
            "ConditionExpression": "attribute_exists(key_id)",
        }
        if disabled:
            update["ExpressionAttributeValues"] = {":true": True}
        if attach is None:
            self._table.update_item(**update)
        else:
            self._transact([{"Update": {"TableName": self._table.name, **update}}, *attach(changed)])
        return changed

    def _conditional_update(
        self, current: KeyRecord, changes: Mapping[str, Any], record: KeyRecord, attach: Attach | None
    ) -> None:
        from botocore.exceptions import ClientError

        changes = {**changes, "version": record.version}
        sets = {name: value for name, value in changes.items() if value is not None}
        removes = [name for name, value in changes.items() if value is None]
        names = {f"#{name}": name for name in changes} | {"#status": "status"}
        values: dict[str, Any] = {f":{name}": value for name, value in sets.items()}
        values |= {":revoked": "revoked", ":expected_version": current.version}
        # Optimistic concurrency: the write applies only to the version the caller read, so two
        # admins changing a key at once cannot silently lose one change (keys written before
        # versions existed count as version 0).
        condition = "attribute_exists(key_id) AND #status <> :revoked"
        condition += " AND (#version = :expected_version OR attribute_not_exists(#version))"
        if current.version:
            condition = condition.replace(" OR attribute_not_exists(#version)", "")
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in removes)
        update = {
            "Key": {"key_id": current.key_id},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        try:
            if attach is None:
                self._table.update_item(**update)
            else:
                self._transact([{"Update": {"TableName": self._table.name, **update}}, *attach(record)])
        except ClientError as exc:
            if not _condition_failed(exc, first_item_only=attach is not None):
                raise
            latest = self.get(current.key_id)
            if latest is not None and latest.status == "revoked":
                raise Conflict("This API key is revoked; a revoked key cannot change.", code="key_revoked") from None
            raise Conflict(
                "This API key changed while you were changing it; read it again and retry.", code="key_changed"
            ) from None

    def get_many(self, key_ids: Iterable[str]) -> dict[str, KeyRecord]:
        """The existing keys among ``key_ids``, by id (strongly consistent batch reads)."""
        wanted = sorted(set(key_ids))
        found: dict[str, KeyRecord] = {}
        client = self._table.meta.client
        for start in range(0, len(wanted), _BATCH_GET_ITEMS):
            request = {
                self._table.name: {
                    "Keys": [{"key_id": key_id} for key_id in wanted[start : start + _BATCH_GET_ITEMS]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table.name, []):
                    found[item["key_id"]] = KeyRecord.from_item(item)
                request = response.get("UnprocessedKeys") or None
        return found

    def labels(self, key_ids: Iterable[str]) -> dict[str, KeyLabel]:
        """What a report shows of each existing key among ``key_ids``: its name and owner's e-mail.

        Only those attributes are read (a key item's hash, limits and metadata stay behind), and the
        ``BatchGetItem`` calls of 100 keys each run side by side (at most ``_LABEL_READERS``):
        a month's usage of a thousand keys reads their labels in the time of a few calls.
        """
        wanted = sorted(set(key_ids))
        batches = [wanted[start : start + _BATCH_GET_ITEMS] for start in range(0, len(wanted), _BATCH_GET_ITEMS)]
        if not batches:
            return {}
        client, name = self._table.meta.client, self._table.name

        def read(batch: list[str]) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            request: dict[str, Any] | None = {
                name: {
                    "Keys": [{"key_id": key_id} for key_id in batch],
                    "ProjectionExpression": "key_id, #name, owner_email",
                    "ExpressionAttributeNames": {"#name": "name"},
                }
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                items += response.get("Responses", {}).get(name, [])
                request = response.get("UnprocessedKeys") or None
            return items

        if len(batches) == 1:
            found = read(batches[0])
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(_LABEL_READERS, len(batches))) as pool:
                found = [item for items in pool.map(read, batches) for item in items]
        return {
            item["key_id"]: KeyLabel(item["key_id"], item.get("name") or "", item.get("owner_email")) for item in found
        }

    def prepare(self, *, key_id: str, owner_sub: str, **fields: Any) -> tuple[KeyRecord, str]:
        """A new key record and its plaintext, not yet stored (``import_new`` stores them)."""
        plaintext = new_secret_for(key_id)
        now = isoformat(self._clock())
        allowed = fields.pop("allowed_models", None)
        record = KeyRecord(
            key_id=key_id,
            owner_sub=owner_sub,
            status="active",
            created_at=now,
            updated_at=now,
            secret_hash=hash_key(plaintext),
            allowed_models=tuple(allowed) if allowed is not None else None,
            **{"name": "", "owner_email": None, **fields},
        )
        return record, plaintext

    def import_new(self, prepared: Sequence[tuple[KeyRecord, str]]) -> list[ImportOutcome]:
        """Store prepared keys whose ids are free; an id already taken keeps its stored key.

        One conditional put per key, so each id gets exactly one key whatever
        races (e.g. a retried import running beside the first). Transactions
        would also carry the audit events atomically, but cost twice the write
        capacity and are slow to emulate for thousands of keys.
        """
        return [self._put_one(record, plaintext) for record, plaintext in prepared]

    def _put_one(self, record: KeyRecord, plaintext: str) -> ImportOutcome:
        from botocore.exceptions import ClientError

        try:
            self._table.put_item(Item=record.to_item(), ConditionExpression="attribute_not_exists(key_id)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            existing = self.get(record.key_id)
            if existing is None:  # keys are never deleted, so a failed "absent" check means it exists
                raise Conflict(f"Key id '{record.key_id}' could not be written; retry.", code="key_changed") from None
            return ImportOutcome(existing, None, False)
        return ImportOutcome(record, plaintext, True)


def _index_keys(index: str) -> tuple[str, ...]:
    """The attributes of a ``LastEvaluatedKey`` of the keys table's ``index``."""
    return {"by-owner": ("key_id", "owner_sub", "created_at"), "by-status": ("key_id", "status", "created_at")}[index]


def _condition_failed(exc: Any, *, first_item_only: bool) -> bool:
    """True when a write failed only because its condition on the key item did not hold."""
    error = exc.response.get("Error", {}).get("Code")
    if not first_item_only:
        return error == "ConditionalCheckFailedException"
    reasons = exc.response.get("CancellationReasons") or []
    return (
        error == "TransactionCanceledException" and bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"
    )


def _record_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` in ``KeyRecord`` field types (tuples for lists, "" and {} for cleared name/metadata)."""
    values = dict(changes)
    if "allowed_models" in values and values["allowed_models"] is not None:
        values["allowed_models"] = tuple(values["allowed_models"])
    if "name" in values and values["name"] is None:
        values["name"] = ""
    if "metadata" in values and values["metadata"] is None:
        values["metadata"] = {}
    return values
