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
    if known.empty:
        return pd.DataFrame(columns=columns)
    customer = pd.factorize(known["customer_id"])[0]
    product_codes, products = pd.factorize(known["product_id"])
    day = known["ordered_at"].to_numpy("datetime64[D]").astype(np.int64)
    order = np.lexsort((day, product_codes, customer))
    customer, product_codes, day = customer[order], product_codes[order], day[order]
    same = np.r_[False, (customer[1:] == customer[:-1]) & (product_codes[1:] == product_codes[:-1])]
    gap = np.r_[0, np.diff(day)]
    repeat = same & (gap > 0)  # a later day for the same customer and product
    intervals = pd.DataFrame({"product": product_codes[repeat], "gap": gap[repeat]})
    stats = intervals.groupby("product").agg(cycle_days=("gap", "median"),
                                             intervals=("gap", "size"))
    first = ~same  # first line of each (customer, product)
    buyers = np.bincount(product_codes[first], minlength=len(products))
    pair_start = np.flatnonzero(first)
    pair_repeats = np.add.reduceat(repeat.astype(np.int64), pair_start) if len(pair_start) else (
        np.zeros(0, np.int64))
    repeaters = np.bincount(product_codes[pair_start], weights=pair_repeats > 0,
                            minlength=len(products))
    stats["repeat_share"] = repeaters[stats.index] / np.maximum(buyers[stats.index], 1)
    stats = stats[(stats["intervals"] >= min_intervals)
                  & (stats["repeat_share"] >= min_repeat_share)]
    stats.index = pd.Index(np.asarray(products)[stats.index], name="product_id")
    stats["cycle_days"] = stats["cycle_days"].astype(np.float64)
    return stats.reset_index()[columns]
