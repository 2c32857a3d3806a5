"""The purchase history behind ``purchases.npz``: the order lines of known customers as
integer codes (``PurchaseLines``) and one row per bought (customer, product) with its last
day and distinct orders (``PurchaseHistory``; the Spark engine aggregates it on the
executors, ``recsys.spark.history``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.vocab import Vocabulary

__all__ = ["PurchaseLines", "PurchaseHistory"]


@dataclass(frozen=True)
class PurchaseLines:
    """The order lines of known customers, integer-coded once and sorted by customer,
    product, day and order: the purchase history and the repurchase cycles both read them."""

    customer: np.ndarray
    product: np.ndarray
    day: np.ndarray  # days since the epoch + 1; 1 where the date is unknown
    order: np.ndarray
    dated: np.ndarray  # the line has a date

    @classmethod
    def of(cls, orders: pd.DataFrame, customers: Vocabulary, items: Vocabulary) -> PurchaseLines:
        known = orders["customer_id"].notna().to_numpy()
        customer = customers.lookup(orders["customer_id"][known], on_unknown="mask")
        product = items.lookup(orders["product_id"][known], on_unknown="mask")
        if "ordered_at" in orders:
            stamps = orders["ordered_at"][known]
            dated = stamps.notna().to_numpy()
            day = np.where(dated, stamps.to_numpy("datetime64[D]").astype(np.int64) + 1, 1)
        else:
            dated = np.zeros(len(customer), dtype=bool)
            day = np.ones(len(customer), dtype=np.int64)
        order = pd.factorize(orders["order_id"][known])[0]
        keep = (customer >= 0) & (product >= 0)
        customer, product, day, order, dated = (customer[keep], product[keep], day[keep],
                                                order[keep], dated[keep])
        # two int64 keys sort faster than four: (customer, product) and (day, order)
        pair = customer * len(items) + product
        when = (day - day.min(initial=0)) * (order.max(initial=0) + 1) + order
        sort = np.lexsort((when, pair))
        return cls(customer=customer[sort], product=product[sort], day=day[sort],
                   order=order[sort], dated=dated[sort])


@dataclass(frozen=True)
class PurchaseHistory:
    """One row per bought (customer, product), sorted by customer then product: the summary
    ``purchases.npz`` stores (the Spark engine aggregates it on the executors)."""

    customer: np.ndarray  # customer codes (int64)
    product: np.ndarray  # product codes (int64)
    last_day: np.ndarray  # days since the epoch + 1 of the last purchase; 1: no date known
    orders: np.ndarray  # distinct orders that held the product (int32)

    @classmethod
    def of_sorted(cls, lines: PurchaseLines) -> PurchaseHistory:
        """The summary of the sorted purchase lines: the last day is the last line's (they
        are sorted by day); an order counts once however many lines and days it spans."""
        rows, cols, order = lines.customer, lines.product, lines.order
        new_pair = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]
        new_run = new_pair | np.r_[True, order[1:] != order[:-1]]
        starts = np.flatnonzero(new_pair)
        # a pair's lines are sorted by (day, order): an order on one day is one run of lines
        n_orders = (np.add.reduceat(new_run.astype(np.int64), starts) if len(starts)
                    else np.zeros(0, np.int64))
        n_codes = int(order.max(initial=-1)) + 1
        first_day, last_day = np.full(n_codes, np.iinfo(np.int64).max), np.zeros(n_codes, np.int64)
        np.minimum.at(first_day, order, lines.day)
        np.maximum.at(last_day, order, lines.day)
        spans = new_run & (first_day[order] != last_day[order])  # runs of orders on 2+ days
        if spans.any():  # such an order makes a run per day: count it once per pair
            rank = (np.cumsum(new_pair) - 1)[spans]
            distinct = np.unique(rank * n_codes + order[spans]) // n_codes
            n_orders -= (np.bincount(rank, minlength=len(starts))
                         - np.bincount(distinct, minlength=len(starts)))
        last = np.r_[starts[1:], len(rows)] - 1
        return cls(customer=rows[starts], product=cols[starts], last_day=lines.day[last],
                   orders=n_orders.astype(np.int32))
