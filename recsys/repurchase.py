"""Repurchase cycles: the median number of days between purchases of the same product by the
same customer, for products with enough evidence. The customer endpoint uses them to offer
consumables that are due instead of excluding everything bought before."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["repurchase_cycles", "cycles_of_sorted"]

COLUMNS = ["product_id", "cycle_days", "intervals", "repeat_share"]
MIN_INTERVALS, MIN_REPEAT_SHARE = 5, 0.3  # the defaults of repurchase_cycles


def repurchase_cycles(orders: pd.DataFrame, *, min_intervals: int = MIN_INTERVALS,
                      min_repeat_share: float = MIN_REPEAT_SHARE) -> pd.DataFrame:
    """Columns: product_id, cycle_days (median interval), intervals (evidence), repeat_share
    (customers who bought it again / customers who bought it). Products with fewer than
    ``min_intervals`` intervals or a lower repeat share are left out."""
    if "customer_id" not in orders or "ordered_at" not in orders:
        return pd.DataFrame(columns=COLUMNS)
    known = orders[orders["customer_id"].notna() & orders["ordered_at"].notna()]
    customer = pd.factorize(known["customer_id"])[0]
    product, products = pd.factorize(known["product_id"])
    day = known["ordered_at"].to_numpy("datetime64[D]").astype(np.int64)
    order = np.lexsort((day, product, customer))
    return cycles_of_sorted(customer[order], product[order], day[order], np.asarray(products),
                            min_intervals=min_intervals, min_repeat_share=min_repeat_share)


def cycles_of_sorted(customer: np.ndarray, product: np.ndarray, day: np.ndarray,
                     products: np.ndarray, *, min_intervals: int,
                     min_repeat_share: float) -> pd.DataFrame:
    """``repurchase_cycles`` from integer-coded lines sorted by customer, product and day
    (``products``: the id of each product code)."""
    if not len(customer):
        return pd.DataFrame(columns=COLUMNS)
    same = np.r_[False, (customer[1:] == customer[:-1]) & (product[1:] == product[:-1])]
    gap = np.r_[0, np.diff(day)]
    repeat = same & (gap > 0)  # a later day for the same customer and product
    intervals = pd.DataFrame({"product": product[repeat], "gap": gap[repeat]})
    stats = intervals.groupby("product").agg(cycle_days=("gap", "median"),
                                             intervals=("gap", "size"))
    first = ~same  # first line of each (customer, product)
    buyers = np.bincount(product[first], minlength=len(products))
    pair_start = np.flatnonzero(first)
    pair_repeats = np.add.reduceat(repeat.astype(np.int64), pair_start)
    repeaters = np.bincount(product[pair_start], weights=pair_repeats > 0,
                            minlength=len(products))
    stats["repeat_share"] = repeaters[stats.index] / np.maximum(buyers[stats.index], 1)
    stats = stats[(stats["intervals"] >= min_intervals)
                  & (stats["repeat_share"] >= min_repeat_share)]
    stats.index = pd.Index(products[stats.index], name="product_id")
    stats["cycle_days"] = stats["cycle_days"].astype(np.float64)
    return stats.reset_index()[COLUMNS]
