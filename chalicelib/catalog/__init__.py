"""The model catalog: data an admin owns, in DynamoDB, served from a snapshot per warm function.

``entry`` is the one schema of a model (what an admin sends, what is stored, what the request
path reads), ``prices`` the full price model (tiers, cache TTLs) and its versions, ``catalog``
the snapshot's lookups (and the packaged seed file), ``store`` the table, ``live`` the
snapshot kept fresh within 30 s without a round trip per request.
"""

from chalicelib.catalog.catalog import Catalog, load_catalog, names_of, seed_documents
from chalicelib.catalog.entry import CatalogError, ModelEntry, Rules
from chalicelib.catalog.live import MAX_AGE_SECONDS, LiveCatalog
from chalicelib.catalog.prices import PriceVersion
from chalicelib.catalog.store import CatalogStore

__all__ = [
    "MAX_AGE_SECONDS",
    "Catalog",
    "CatalogError",
    "CatalogStore",
    "LiveCatalog",
    "ModelEntry",
    "PriceVersion",
    "Rules",
    "load_catalog",
    "names_of",
    "seed_documents",
]
