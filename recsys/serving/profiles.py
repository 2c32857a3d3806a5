"""A customer's profile for a checkout widget: lifecycle stage, RFM segment and value.

Read from the served version's ``analytics/`` tables (``customers.parquet``,
``lifecycle.parquet``) on the first request for that version and kept while it is served
(the last two versions), so that the index need not hold them.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.serving.index import ServingIndex

__all__ = ["profile"]

_VALUE = ("segment", "orders", "revenue", "historical_clv", "predicted_clv", "p_alive",
          "churn_risk", "last_order")
_cache: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
_lock = threading.Lock()


def _read(path: Path, columns: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """customer_id -> the columns of that customer's row (the columns the file has)."""
    if not path.exists():
        return {}
    have = [c for c in columns if c in pq.read_schema(path).names]
    table = pq.read_table(path, columns=["customer_id", *have]).to_pydict()
    rows = zip(*(table[c] for c in have), strict=True) if have else iter(
        () for _ in table["customer_id"])
    return {str(c): dict(zip(have, row, strict=True))
            for c, row in zip(table["customer_id"], rows, strict=True)}


def _profiles(root: str, version: str) -> dict[str, dict[str, Any]]:
    with _lock:
        if (root, version) not in _cache:
            folder = ArtifactStore(root).path(version)
            found = _read(layout.CLV_CUSTOMERS.at(folder), _VALUE)
            for customer, row in _read(layout.LIFECYCLE.at(folder), ("stage",)).items():
                found.setdefault(customer, {}).update(row)
            while len(_cache) >= 2:
                _cache.pop(next(iter(_cache)))
            _cache[(root, version)] = found
        return _cache[(root, version)]


def profile(root: str, index: ServingIndex, customer_id: str) -> dict[str, Any] | None:
    """The customer's stage, segment and value (None: a customer the version does not know);
    fields the version lacks are null."""
    row = _profiles(root, index.version).get(customer_id)
    if row is None:
        return None
    out: dict[str, Any] = {"customer_id": customer_id, "stage": row.get("stage")}
    for name in _VALUE:
        value = row.get(name)
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[name] = value
    out["discount_only"] = customer_id in index.discount_only
    out["model_version"] = index.version
    return out
