"""What the served version holds for one customer besides the lists the engine ranks: their
purchases (most recent first) and their rows of the nightly action lists (replenishment,
win-back, high-value), read from the version's ``analytics/`` tables.

The job filtered the lists by the catalog of its run; stock, activity and merchandisers'
blocks can change after it, so ``sellable`` applies the served ones: a replenishment row
for a product now unavailable or blocked is left out, and a win-back offer of one is
emptied (its other offers keep their slots).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from recsys import layout
from recsys.artifacts import ArtifactStore
from recsys.serving.index import ServingIndex

__all__ = ["ACTION_LISTS", "action_rows", "sellable", "purchases"]

ACTION_LISTS = {"replenishment": layout.REPLENISHMENT, "winback": layout.WINBACK,
                "high_value": layout.HIGH_VALUE, "lifecycle_flows": layout.LIFECYCLE_FLOWS}


def action_rows(root: str | Path, index: ServingIndex, name: str,
                customer_id: str | None = None) -> pd.DataFrame | None:
    """The action list ``name`` of the served version (only ``customer_id``'s rows when
    given); None when the version has no such list."""
    path = ACTION_LISTS[name].at(ArtifactStore(root).path(index.version))
    if not path.exists():
        return None
    if customer_id is None:
        return pd.read_parquet(path)
    return pq.read_table(path, filters=[("customer_id", "=", customer_id)]).to_pandas()


def _unsellable(index: ServingIndex, blocked: frozenset[str], ids: pd.Series) -> pd.Series:
    """Per product id: blocked, or not in stock and active in the served catalog."""
    text = ids.astype("string")
    return text.notna() & (text.isin(blocked) | ~text.isin(index.available))


def sellable(table: pd.DataFrame, name: str, index: ServingIndex,
             blocked: frozenset[str]) -> pd.DataFrame:
    """``table`` (the list ``name``) without what cannot be sold now: replenishment rows of an
    unavailable or blocked product dropped, such win-back offers emptied."""
    if name == "replenishment":
        return table[~_unsellable(index, blocked, table["product_id"])].reset_index(drop=True)
    if name == "winback":
        table = table.copy()
        for column in (c for c in table.columns if c.startswith("offer_") and c[6:].isdigit()):
            table[column] = table[column].mask(_unsellable(index, blocked, table[column]))
    return table


def purchases(index: ServingIndex, customer_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The customer's purchased products, last bought first (at most ``limit``): display
    fields, ``orders`` (how many of their orders held it) and ``last_bought`` (a date)."""
    model = index.customer_model
    row = model.customers.get(customer_id) if model is not None else None
    if model is None or row is None:
        return []
    lo, hi = int(model.purchases_indptr[row]), int(model.purchases_indptr[row + 1])
    bought = sorted(zip(model.purchases_day[lo:hi].tolist(),
                        model.purchases_indices[lo:hi].tolist(),
                        model.purchases_orders[lo:hi].tolist(), strict=True), reverse=True)
    return [{**index.describe(index.ids[code]), "orders": orders,
             "last_bought": date(1970, 1, 1) + timedelta(days=day - 1)}
            for day, code, orders in bought[:limit]]
