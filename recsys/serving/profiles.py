"""A customer's profile for a checkout widget: lifecycle stage, RFM segment and value.

Read from the served version's ``analytics/`` tables (``customers.parquet``,
``lifecycle.parquet``) on the first request for that version and kept while it is served
(the last two versions), so that the index need not hold them.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.serving.index import ServingIndex

__all__ = ["profile"]

_VALUE = ("segment", "orders", "revenue", "historical_clv", "predicted_clv", "p_alive",
          "churn_risk", "last_order")
_cache: dict[tuple[str, str], pd.DataFrame] = {}
_lock = threading.Lock()


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The columns the file has, indexed by customer_id (empty without the file)."""
    if not path.exists():
        return pd.DataFrame(index=pd.Index([], dtype=object, name="customer_id"))
    have = [c for c in columns if c in pq.read_schema(path).names]
    frame = pq.read_table(path, columns=["customer_id", *have]).to_pandas()
    return frame.set_index(frame["customer_id"].astype(str)).drop(columns="customer_id")


def _profiles(root: str, version: str) -> pd.DataFrame:
    """One row per customer of the version (a frame, not a dict per customer: millions of
    customers stay a few columns)."""
    with _lock:
        if (root, version) not in _cache:
            folder = ArtifactStore(root).path(version)
            found = _read(layout.CLV_CUSTOMERS.at(folder), _VALUE).join(
                _read(layout.LIFECYCLE.at(folder), ("stage",)), how="outer")
            while len(_cache) >= 2:
                _cache.pop(next(iter(_cache)))
            _cache[(root, version)] = found
        return _cache[(root, version)]


def profile(root: str, index: ServingIndex, customer_id: str) -> dict[str, Any] | None:
    """The customer's stage, segment and value (None: a customer the version does not know);
    fields the version lacks are null."""
    table = _profiles(root, index.version)
    if customer_id not in table.index:
        return None
    row = table.loc[customer_id]
    out: dict[str, Any] = {"customer_id": customer_id}
    for name in ("stage", *_VALUE):
        value = row.get(name)
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            value = None
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "item"):  # numpy scalars as plain JSON values
            value = value.item()
        out[name] = value
    out["discount_only"] = customer_id in index.discount_only
    out["model_version"] = index.version
    return out
