"""The stored catalog: one DynamoDB item per model, and one item naming the catalog's version.

Table layout (``catalog`` table, see ``infra/template.json``)::

    pk=MODEL     sk=<alias>    one model's document (``chalicelib/catalog/entry.py``), its
                               ``revision``; ``removed_at`` once removed (kept: its price
                               history explains past bills, and its alias may be added again)
    pk=CATALOG   sk=STATE      ``version``: raised by every change; ``seeded_at``
    pk=CATALOG   sk=GUARDRAIL_PRICES  the operator's guardrail price ``versions``
                               (``chalicelib/catalog/guardrail_prices.py``), its ``revision``

Reading the whole catalog is one ``Query`` (every model shares a partition); knowing whether
it changed is one ``GetItem`` of the state item. Every change is one transaction: the
model's item (conditional on the revision read, so two admins cannot overwrite each other),
the state item (conditional on the version read, so names stay unique across models
however many admins change the catalog at once), and whatever the caller attaches (the
audit event), all or nothing.

A new stack's catalog is empty: the first read seeds it from the packaged file
(``seed_documents``), once (``seeded_at`` marks it; an admin who removes every model later
does not get the seed back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chalicelib.catalog.catalog import Catalog
from chalicelib.catalog.entry import CatalogError, ModelEntry, entry_from_document
from chalicelib.catalog.guardrail_prices import versions_of
from chalicelib.errors import Conflict, NotFound
from chalicelib.observability import logger
from chalicelib.shared.dynamodb import error_code

#: Marker of the log line written when a stored model cannot be read (an alarm counts them).
UNREADABLE_EVENT = "catalog_item_unreadable"
MODEL_PK = "MODEL"
STATE_KEY = {"pk": "CATALOG", "sk": "STATE"}
GUARDRAIL_PRICES_KEY = {"pk": "CATALOG", "sk": "GUARDRAIL_PRICES"}
#: DynamoDB's limit on items in one transaction, less the state item.
_SEED_BATCH = 99

Attach = Callable[[Mapping[str, Any] | None], list[dict[str, Any]]]


@dataclass
class Stored:
    """The stored catalog as read: every model document (removed ones too), and the version."""

    version: int
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The guardrail prices item (``versions``, ``revision``), or None when an operator never set any.
    guardrail_prices: dict[str, Any] | None = None

    def live(self) -> dict[str, dict[str, Any]]:
        """The documents of models not removed."""
        return {alias: doc for alias, doc in self.documents.items() if not doc.get("removed_at")}


class CatalogStore:
    """Reads and changes the catalog table. Takes a boto3 DynamoDB ``Table`` resource.

    ``seed`` gives the documents a new stack's catalog starts with (read only when needed).
    """

    def __init__(self, table: Any, *, seed: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._table = table
        self._seed = seed

    @property
    def table_name(self) -> str:
        return self._table.name

    # -- reading ---------------------------------------------------------------------------------

    def version(self) -> int | None:
        """The catalog's version (one consistent ``GetItem``); None when it was never seeded."""
        item = self._table.get_item(Key=STATE_KEY, ConsistentRead=True).get("Item")
        return int(item["version"]) if item else None

    def read(self) -> Stored:
        """Every stored model and the version they were read at, seeding a new stack's catalog first."""
        version = self.version()
        if version is None:
            self.seed()
            version = self.version() or 0
        documents: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": MODEL_PK},
            "ConsistentRead": True,
        }
        while True:
            page = self._table.query(**params)
            for item in page.get("Items", []):
                documents[str(item["sk"])] = _plain(item)
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # Read after the version: a change committed since raises the version, and is read next time.
        prices = self._table.get_item(Key=GUARDRAIL_PRICES_KEY, ConsistentRead=True).get("Item")
        return Stored(version=version, documents=documents, guardrail_prices=_plain(prices) if prices else None)

    def load(self) -> Catalog:
        """The catalog as the request path serves it: every readable, not removed model.

        A model whose item cannot be read is left out and named in ``Catalog.broken`` (it answers
        503), with one ``catalog_item_unreadable`` log line each: the alarm's metric.
        """
        stored = self.read()
        return catalog_of(stored)

    def document(self, alias: str) -> dict[str, Any]:
        """One model's stored document (removed ones too).

        Raises
        ------
        NotFound
            No model was ever stored under ``alias``.
        """
        item = self._table.get_item(Key={"pk": MODEL_PK, "sk": alias}, ConsistentRead=True).get("Item")
        if item is None:
            raise NotFound(f"No model '{alias}' in the catalog.", param="alias", code="model_not_found")
        return _plain(item)

    # -- changing --------------------------------------------------------------------------------

    def put(
        self,
        document: Mapping[str, Any],
        *,
        read_version: int,
        previous: Mapping[str, Any] | None,
        attach: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Store a model's new document (a new model when ``previous`` is None) with what is attached.

        Raises
        ------
        Conflict
            The model or the catalog changed since ``previous`` and ``read_version`` were read.
        """
        revision = int(previous.get("revision", 0)) + 1 if previous is not None else 1
        item = {**dict(document), "pk": MODEL_PK, "sk": document["alias"], "revision": revision}
        condition = _unchanged_since(previous)
        model = {"Put": {"TableName": self._table.name, "Item": item, **condition}}
        self._transact([model, self._bump(read_version), *attach])
        return _plain(item)

    def put_guardrail_prices(
        self, versions: list[dict[str, Any]], *, read_version: int, previous: Mapping[str, Any] | None,
        attach: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:  # fmt: skip
        """Store the guardrail price versions (raising the catalog's version), with what is attached.

        Raises
        ------
        Conflict
            The prices or the catalog changed since ``previous`` and ``read_version`` were read.
        """
        revision = int(previous.get("revision", 0)) + 1 if previous is not None else 1
        item = {**GUARDRAIL_PRICES_KEY, "versions": versions, "revision": revision}
        condition = _unchanged_since(previous)
        put = {"Put": {"TableName": self._table.name, "Item": item, **condition}}
        self._transact([put, self._bump(read_version), *attach])
        return _plain(item)

    def _bump(self, read_version: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": STATE_KEY,
                "UpdateExpression": "ADD version :one",
                "ConditionExpression": "version = :read",
                "ExpressionAttributeValues": {":one": 1, ":read": read_version},
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        try:
            # The table resource's client takes Python values (boto3 serialises them), as KeyStore's does.
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) in ("TransactionCanceledException", "ConditionalCheckFailedException"):
                raise Conflict(
                    "The catalog changed while you were changing it (another admin, or a first start seeding "
                    "it); read it again and retry.",
                    code="catalog_changed",
                ) from None
            raise

    def seed(self) -> None:
        """Store the seed documents, once per stack (a concurrent first start loses quietly)."""
        documents = self._seed() if self._seed is not None else []
        from botocore.exceptions import ClientError

        for start in range(0, len(documents), _SEED_BATCH):
            batch = documents[start : start + _SEED_BATCH]
            puts = [
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": {**doc, "pk": MODEL_PK, "sk": doc["alias"], "revision": 1, "position": start + index},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
                for index, doc in enumerate(batch)
            ]
            with contextlib.suppress(Conflict):  # another function seeded these models first
                self._transact(puts)
        state = {**STATE_KEY, "version": 1, "seeded_models": len(documents)}
        try:
            self._table.put_item(Item=state, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        else:
            logger.info("model catalog seeded", extra={"models": len(documents)})


def catalog_of(stored: Stored) -> Catalog:
    """The served catalog of what was read; unreadable models logged and named as broken."""
    entries: list[ModelEntry] = []
    broken: dict[str, str] = {}
    # Catalog order: the order models were added (the seed file's, then each addition's).
    ordered = sorted(stored.live().items(), key=lambda item: (_position(item[1]), item[0]))
    for alias, document in ordered:
        try:
            entry = entry_from_document(document)
            if entry.id != alias:
                raise CatalogError(f"model {alias!r}: its document says alias {entry.id!r}")
        except CatalogError as exc:
            reason = str(exc)
            logger.error(
                "a catalog model cannot be read; it is out of service until fixed",
                extra={"event": UNREADABLE_EVENT, "model": alias, "reason": reason[:500]},
            )
            for name in (alias, *_names_in(document)):
                broken[name] = reason
            continue
        entries.append(entry)
    taken = {name for entry in entries for name in (entry.id, *entry.aliases, entry.bedrock_model_id) if name}
    return Catalog(
        entries,
        broken={k: v for k, v in broken.items() if k not in taken},
        version=stored.version,
        **_guardrail_prices(stored),
    )


def _guardrail_prices(stored: Stored) -> dict[str, Any]:
    """The operator's guardrail prices; an item that cannot be read is logged and named.

    Calls with a guardrail are then refused (503 ``guardrail_prices_unreadable``) rather than priced
    at LiteLLM's map: an operator who raised the prices would otherwise bill below them unnoticed.
    """
    try:
        return {"guardrail_prices": versions_of((stored.guardrail_prices or {}).get("versions"))}
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        logger.error(
            "the guardrail prices item cannot be read; calls with a guardrail are refused until it is fixed",
            extra={"event": UNREADABLE_EVENT, "model": "guardrail_prices", "reason": str(exc)[:500]},
        )
        return {"guardrail_prices_error": str(exc)[:500] or type(exc).__name__}


def _position(document: Mapping[str, Any]) -> int:
    position = document.get("position")
    return position if isinstance(position, int) and not isinstance(position, bool) else 1 << 30


def next_position(stored: Stored) -> int:
    """Where a model added now goes in catalog order: after every model ever stored."""
    return max((_position(d) for d in stored.documents.values() if _position(d) < 1 << 30), default=-1) + 1


def _names_in(document: Mapping[str, Any]) -> list[str]:
    aliases = document.get("aliases")
    if isinstance(aliases, list):
        return [a for a in aliases if isinstance(a, str)]
    return []


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item without its table keys, numbers as ``int`` where whole (DynamoDB gives Decimals)."""
    return {k: _number(v) for k, v in item.items() if k not in ("pk", "sk")}


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, Mapping):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


def _unchanged_since(previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The condition of a write over ``previous``: the item still absent, or still at its revision."""
    if previous is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "revision = :revision",
        "ExpressionAttributeValues": {":revision": int(previous.get("revision", 0))},
    }
