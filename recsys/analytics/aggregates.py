"""The line-level aggregations of the customer-value job, behind one interface.

The job (recsys.analytics.job) never reads order lines itself: it asks a ``ClvAggregates``
for the per-customer facts (recsys.analytics.facts), the per-(customer, product) table of
the action lists, the repurchase cycles and the pricing sums, then runs the small fits and
the rules on the driver. ``LineAggregates`` makes them with pandas from the canonical lines
in memory (the local engine); ``recsys.spark.clv.SparkClvAggregates`` makes the same tables
on Spark, so that only one row per customer and per (customer, product) reaches the driver.

``customer_products`` columns (``PAIR_COLUMNS``), one row per customer and product bought by
a known customer (up to the observation end): lines, orders (distinct orders), last_ordered_at,
purchase_days (distinct calendar days), last_day (days since 1970-01-01 of the last of them),
gaps (purchase_days - 1) and median_gap (the median of the day gaps between consecutive
purchase days; NaN without a gap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from recsys.analytics.clv import order_table
from recsys.analytics.facts import CustomerFacts, facts_of_order_table
from recsys.analytics.pricing import PriceAggregates, price_aggregates
from recsys.analytics.settings import AnalyticsConfig
from recsys.repurchase import repurchase_cycles
from recsys.vocab import Vocabulary

__all__ = ["ClvAggregates", "LineAggregates", "customer_products", "PAIR_COLUMNS", "PairFilter",
           "BoughtCodes", "bought_codes"]

#: Which rows of the per-(customer, product) table to keep: a boolean per row.
PairFilter = Callable[[pd.DataFrame], np.ndarray]
PAIR_COLUMNS = ("customer_id", "product_id", "lines", "orders", "last_ordered_at",
                "purchase_days", "last_day", "gaps", "median_gap")


class ClvAggregates(Protocol):
    """Where the customer-value job's line-level aggregations are made."""

    def filled_columns(self, columns: Sequence[str]) -> set[str]:
        """Those of ``columns`` the lines have, with a value in at least one line."""

    def customer_facts(self, catalog: pd.DataFrame | None, *,
                       config: AnalyticsConfig) -> CustomerFacts:
        """The facts (recsys.analytics.facts) of the lines' order table
        (recsys.analytics.clv.order_table, with ``config``'s as_of and use_margin)."""

    def customer_products(self, end: pd.Timestamp, *, keep: PairFilter | None = None,
                          columns: Sequence[str] = PAIR_COLUMNS) -> pd.DataFrame:
        """The lines of known customers up to ``end`` per (customer, product): ``columns``
        of PAIR_COLUMNS, of the rows ``keep`` keeps (all without), in no particular order."""

    def bought_codes(self, end: pd.Timestamp, rows: Vocabulary | None = None,
                     items: Vocabulary | None = None) -> BoughtCodes:
        """:func:`bought_codes` of the (customer, product) pairs up to ``end``."""

    def repurchase_cycles(self, end: pd.Timestamp) -> pd.DataFrame:
        """recsys.repurchase.repurchase_cycles of the lines of known customers up to ``end``."""

    def price_aggregates(self, catalog: pd.DataFrame | None,
                         segments: pd.DataFrame) -> PriceAggregates:
        """recsys.analytics.pricing.price_aggregates of the lines."""


class LineAggregates:
    """The aggregations made with pandas from canonical order lines in memory."""

    def __init__(self, orders: pd.DataFrame) -> None:
        self.orders = orders

    def filled_columns(self, columns: Sequence[str]) -> set[str]:
        return {c for c in columns if c in self.orders.columns and self.orders[c].notna().any()}

    def customer_facts(self, catalog: pd.DataFrame | None, *,
                       config: AnalyticsConfig) -> CustomerFacts:
        as_of = pd.Timestamp(config.as_of) if config.as_of is not None else None
        return facts_of_order_table(order_table(self.orders, catalog, as_of=as_of,
                                                use_margin=config.use_margin), config)

    def _known(self, end: pd.Timestamp) -> pd.DataFrame:
        orders = self.orders
        return orders[orders["customer_id"].notna() & (orders["ordered_at"] <= end)]

    def customer_products(self, end: pd.Timestamp, *, keep: PairFilter | None = None,
                          columns: Sequence[str] = PAIR_COLUMNS) -> pd.DataFrame:
        table = customer_products(self._known(end))
        if keep is not None:
            table = table[keep(table)].reset_index(drop=True)
        return table[list(columns)]

    def bought_codes(self, end: pd.Timestamp, rows: Vocabulary | None = None,
                     items: Vocabulary | None = None) -> BoughtCodes:
        return bought_codes(self.customer_products(
            end, columns=("customer_id", "product_id", "lines")), rows, items)

    def repurchase_cycles(self, end: pd.Timestamp) -> pd.DataFrame:
        return repurchase_cycles(self._known(end))

    def price_aggregates(self, catalog: pd.DataFrame | None,
                         segments: pd.DataFrame) -> PriceAggregates:
        return price_aggregates(self.orders, catalog, segments)


@dataclass(frozen=True)
class BoughtCodes:
    """The bought (customer, product) pairs as codes: per pair its row in ``rows`` and its
    product's code in ``items`` (-1 where the vocabulary lacks it) and its order lines."""

    rows: Vocabulary
    items: Vocabulary
    row: np.ndarray
    item: np.ndarray
    lines: np.ndarray


def bought_codes(pairs: pd.DataFrame, rows: Vocabulary | None = None,
                 items: Vocabulary | None = None) -> BoughtCodes:
    """The pairs (customer_id, product_id, lines) as codes of ``rows`` and ``items``, by
    default the pairs' customers and products, sorted."""
    if rows is None:
        rows = Vocabulary.from_ids(pairs["customer_id"].astype(str), sort=True)
    if items is None:
        items = Vocabulary.from_ids(pairs["product_id"].astype(str), sort=True)
    return BoughtCodes(rows=rows, items=items,
                       row=rows.lookup(pairs["customer_id"].astype(str), on_unknown="mask"),
                       item=items.lookup(pairs["product_id"].astype(str), on_unknown="mask"),
                       lines=pairs["lines"].to_numpy(np.int64))


def customer_products(lines: pd.DataFrame) -> pd.DataFrame:
    """PAIR_COLUMNS of dated lines of known customers (the caller filters them), sorted by
    customer and product."""
    keys = ["customer_id", "product_id"]
    frame = lines[[*keys, "order_id", "ordered_at"]]
    pairs = frame.groupby(keys, sort=True, observed=True).agg(
        lines=("order_id", "size"), orders=("order_id", "nunique"),
        last_ordered_at=("ordered_at", "max"))
    days = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(),
                         "product_id": frame["product_id"].to_numpy(),
                         "day": frame["ordered_at"].to_numpy("datetime64[D]").astype(np.int64)})
    days = days.drop_duplicates().sort_values([*keys, "day"], kind="stable")
    same = (days["customer_id"].eq(days["customer_id"].shift())
            & days["product_id"].eq(days["product_id"].shift())).to_numpy(bool)
    days["gap"] = np.where(same, days["day"].diff().to_numpy(), np.nan)
    per = days.groupby(keys, sort=True, observed=True).agg(
        purchase_days=("day", "size"), last_day=("day", "max"), median_gap=("gap", "median"))
    out = pairs.join(per).reset_index()
    out["gaps"] = out["purchase_days"] - 1
    for column in ("lines", "orders", "purchase_days", "last_day", "gaps"):
        out[column] = out[column].astype(np.int64)
    out["median_gap"] = out["median_gap"].astype(np.float64)
    return out[list(PAIR_COLUMNS)]
