"""Repurchase cycles: the median number of days between purchases of the same product by the
same customer, for products with enough evidence. The customer endpoint uses them to offer
consumables that are due instead of excluding everything bought before."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["repurchase_cycles"]


def repurchase_cycles(orders: pd.DataFrame, *, min_intervals: int = 5,
                      min_repeat_share: float = 0.3) -> pd.DataFrame:
    """Columns: product_id, cycle_days (median interval), intervals (evidence), repeat_share
    (customers who bought it again / customers who bought it). Products with fewer than
    ``min_intervals`` intervals or a lower repeat share are left out."""
    columns = ["product_id", "cycle_days", "intervals", "repeat_share"]
    if "customer_id" not in orders or "ordered_at" not in orders:
        return pd.DataFrame(columns=columns)
    known = orders[orders["customer_id"].notna() & orders["ordered_at"].notna()]
    days = (known[["customer_id", "product_id"]]
            .assign(day=known["ordered_at"].dt.floor("D"))
            .drop_duplicates()
            .sort_values(["customer_id", "product_id", "day"], kind="stable"))
    same = (days["customer_id"].eq(days["customer_id"].shift())
            & days["product_id"].eq(days["product_id"].shift())).fillna(False).to_numpy(bool)
    gaps = days["day"].diff().dt.days.to_numpy(dtype=np.float64)
    intervals = pd.DataFrame({"product_id": days["product_id"].to_numpy()[same],
                              "gap": gaps[same]})
    stats = intervals.groupby("product_id").agg(cycle_days=("gap", "median"),
                                                intervals=("gap", "size"))
    buyers = days.groupby("product_id")["customer_id"].nunique()
    repeaters = days[same].groupby("product_id")["customer_id"].nunique()
    stats["repeat_share"] = (repeaters / buyers).reindex(stats.index).fillna(0.0)
    stats = stats[(stats["intervals"] >= min_intervals)
                  & (stats["repeat_share"] >= min_repeat_share)]
    return stats.reset_index()[columns]
