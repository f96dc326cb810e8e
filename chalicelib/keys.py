"""API keys: generation, hashing, verification and the key table.

A key looks like ``pw-<key_id>-<secret>``. The key id is the table's partition
key, so verifying a key is one strongly consistent ``GetItem`` followed by a
constant-time comparison of SHA-256 digests. Only the digest is stored: the
secret is shown once, at creation or rotation. Keys carry 238 bits of
randomness, so a fast hash is enough (no password-style stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chalicelib.errors import AuthenticationFailed

KEY_PREFIX = "pw"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 12
_SECRET_LENGTH = 40
_KEY_RE = re.compile(rf"^{KEY_PREFIX}-([a-z0-9]{{{_ID_LENGTH}}})-([A-Za-z0-9]{{{_SECRET_LENGTH}}})$")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, second precision: the stored time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Inverse of ``isoformat`` (also accepts any ISO 8601 string with an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def generate_key() -> tuple[str, str]:
    """A new ``(key_id, plaintext_key)`` pair from the OS's CSPRNG."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    return key_id, new_secret_for(key_id)


def new_secret_for(key_id: str) -> str:
    """A fresh plaintext key for an existing key id (used by rotation)."""
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    return f"{KEY_PREFIX}-{key_id}-{secret}"


def hash_key(plaintext: str) -> str:
    """The hex SHA-256 digest stored in place of the key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def key_id_of(plaintext: str) -> str | None:
    """The key id embedded in a well-formed key, or None for anything else."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (case-insensitive), if any."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


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
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        return item

    def allows_model(self, model_id: str) -> bool:
        """True when the key has no allowlist or the model is on it."""
        return self.allowed_models is None or model_id in self.allowed_models


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


class KeyStore:
    """The keys table. Takes a boto3 DynamoDB ``Table`` resource (moto in tests)."""

    def __init__(self, table: Any, clock: Clock = utcnow) -> None:
        self._table = table
        self._clock = clock

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
        key_id: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """Store a new key and return ``(record, plaintext)``; the plaintext is never stored."""
        if key_id is None:
            key_id, plaintext = generate_key()
        else:
            plaintext = new_secret_for(key_id)
        now = isoformat(self._clock())
        record = KeyRecord(
            key_id=key_id,
            owner_sub=owner_sub,
            owner_email=owner_email,
            name=name,
            status="active",
            created_at=now,
            updated_at=now,
            secret_hash=hash_key(plaintext),
            allowed_models=tuple(allowed_models) if allowed_models is not None else None,
            monthly_budget_usd=monthly_budget_usd,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            expires_at=expires_at,
            metadata=dict(metadata or {}),
        )
        self._table.put_item(Item=record.to_item(), ConditionExpression="attribute_not_exists(key_id)")
        return record, plaintext

    def get(self, key_id: str) -> KeyRecord | None:
        """One strongly consistent read: a revocation is seen by the very next request."""
        item = self._table.get_item(Key={"key_id": key_id}, ConsistentRead=True).get("Item")
        return KeyRecord.from_item(item) if item else None

    def authenticate(self, headers: Mapping[str, str]) -> KeyRecord:
        """The active key named by the request's bearer token.

        Raises
        ------
        AuthenticationFailed
            No bearer token, a malformed or unknown key, a wrong secret, or a
            revoked or expired key. Messages never repeat the key.
        """
        token = bearer_token(headers)
        if token is None:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
                code="missing_api_key",
            )
        key_id = key_id_of(token)
        record = self.get(key_id) if key_id else None
        if record is None or not self._secret_matches(record, token):
            raise AuthenticationFailed("Incorrect API key provided.")
        now = self._clock()
        if record.status == "revoked":
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if record.expires_at and parse_time(record.expires_at) <= now:
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return record

    def _secret_matches(self, record: KeyRecord, token: str) -> bool:
        digest = hash_key(token)
        if hmac.compare_digest(digest, record.secret_hash):
            return True
        if record.previous_hash and record.previous_hash_expires_at:
            in_grace = parse_time(record.previous_hash_expires_at) > self._clock()
            return in_grace and hmac.compare_digest(digest, record.previous_hash)
        return False
