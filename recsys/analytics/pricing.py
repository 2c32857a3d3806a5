"""Price and discount sensitivity: which price bands and discounts each segment buys.

A line is bought on discount when its ``discount`` is above 0 or its ``unit_price`` is below
its ``list_price`` (both optional order columns). A line's price band is its unit price
against the terciles of its category's line prices (low, mid, high). Written by the
customer_value job:

- ``price_sensitivity.parquet``: per RFM segment and category (``*`` = all categories): lines,
  revenue, the share of revenue bought on discount (NaN without discount data), the median
  unit price and the share of revenue in each price band;
- ``discount_customers.parquet``: per customer, orders, revenue, the share of revenue bought on
  discount and ``discount_only``: at least ``[analytics.pricing] discount_only_min_orders``
  orders and at least ``discount_only_share`` of their lines on discount (defaults: two
  orders, every line); the upsell list offers such a customer nothing pricier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.analytics.settings import PricingConfig

__all__ = ["BANDS", "on_discount", "price_sensitivity", "price_aggregates", "price_tables",
           "PriceAggregates"]

BANDS = ("low", "mid", "high")
ALL = "*"


def on_discount(orders: pd.DataFrame) -> np.ndarray | None:
    """Per line: bought on discount; None when the orders carry no discount data."""
    has_discount = "discount" in orders and orders["discount"].notna().any()
    has_list = ("list_price" in orders and "unit_price" in orders
                and orders["list_price"].notna().any())
    if not (has_discount or has_list):
        return None
    flag = np.zeros(len(orders), dtype=bool)
    if has_discount:
        flag |= orders["discount"].to_numpy(np.float64, na_value=0.0) > 0
    if has_list:
        listed = orders["list_price"].to_numpy(np.float64, na_value=np.nan)
        paid = orders["unit_price"].to_numpy(np.float64, na_value=np.nan)
        flag |= paid < listed  # NaN compares False
    return flag


def _bands(category: pd.Series, price: np.ndarray) -> np.ndarray:
    """low / mid / high against the terciles of the category's line prices."""
    frame = pd.DataFrame({"category": category.to_numpy(), "price": price})
    grouped = frame.groupby("category", sort=False)["price"]
    low = grouped.transform(lambda p: p.quantile(1 / 3)).to_numpy()
    high = grouped.transform(lambda p: p.quantile(2 / 3)).to_numpy()
    return np.where(price <= low, "low", np.where(price <= high, "mid", "high"))


@dataclass(frozen=True)
class PriceAggregates:
    """The sums behind the pricing tables (made by pandas here, or on Spark by
    recsys.spark.clv). ``by_category`` (keys segment, category) and ``by_segment`` (key
    segment): lines, revenue, discount_revenue, median_unit_price and the revenue of each
    price band (columns ``BANDS``); ``customers``: customer_id, orders, revenue,
    discount_revenue, lines, discounted_lines; ``known``: the orders carry discount data."""

    by_category: pd.DataFrame
    by_segment: pd.DataFrame
    customers: pd.DataFrame
    known: bool


def price_sensitivity(orders: pd.DataFrame, catalog: pd.DataFrame | None,
                      segments: pd.DataFrame, config: PricingConfig | None = None
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per segment and category, per customer) tables of the module doc. ``segments``:
    customer_id, segment; ``orders``: canonical lines (prices from ``unit_price``, else the
    catalog's ``price``; lines without a price or a known customer are left out); ``config``:
    the discount-only thresholds (default: ``[analytics.pricing]``'s defaults)."""
    return price_tables(price_aggregates(orders, catalog, segments), config)


def price_aggregates(orders: pd.DataFrame, catalog: pd.DataFrame | None,
                     segments: pd.DataFrame) -> PriceAggregates:
    """The sums of :func:`price_sensitivity`'s tables, from canonical lines."""
    price = (orders["unit_price"].to_numpy(np.float64, na_value=np.nan, copy=True)
             if "unit_price" in orders else np.full(len(orders), np.nan))
    if catalog is not None and "price" in catalog:
        listed = catalog.set_index("product_id")["price"].reindex(orders["product_id"])
        price = np.where(np.isnan(price), listed.to_numpy(np.float64, na_value=np.nan), price)
    quantity = (orders["quantity"].to_numpy(np.float64, na_value=1.0) if "quantity" in orders
                else np.ones(len(orders)))
    discounted = on_discount(orders)
    category = (catalog.set_index("product_id")["category"].reindex(orders["product_id"])
                if catalog is not None and "category" in catalog
                else pd.Series(pd.NA, index=orders.index)).astype("string").fillna("(none)")
    lines = pd.DataFrame({
        "customer_id": orders["customer_id"].to_numpy() if "customer_id" in orders else None,
        "order_id": orders["order_id"].to_numpy(), "category": category.to_numpy(),
        "price": price, "revenue": price * quantity,
        "discounted": discounted if discounted is not None else False})
    lines = lines[lines["customer_id"].notna() & ~np.isnan(price)].reset_index(drop=True)
    lines["band"] = _bands(lines["category"], lines["price"].to_numpy())
    lines["discount_revenue"] = lines["revenue"].where(lines["discounted"], 0.0)
    lines = lines.merge(segments[["customer_id", "segment"]], on="customer_id", how="left")
    lines["segment"] = lines["segment"].fillna("(none)")
    customers = lines.groupby("customer_id", sort=True).agg(
        orders=("order_id", "nunique"), revenue=("revenue", "sum"),
        discount_revenue=("discount_revenue", "sum"), lines=("order_id", "size"),
        discounted_lines=("discounted", "sum")).reset_index()
    return PriceAggregates(by_category=_sums(lines, ["segment", "category"]),
                           by_segment=_sums(lines, ["segment"]), customers=customers,
                           known=discounted is not None)


def _sums(lines: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = lines.groupby(keys, sort=True).agg(
        lines=("revenue", "size"), revenue=("revenue", "sum"),
        discount_revenue=("discount_revenue", "sum"),
        median_unit_price=("price", "median")).reset_index()
    by_band = lines.pivot_table(index=keys, columns="band", values="revenue", aggfunc="sum",
                                fill_value=0.0).reindex(columns=list(BANDS), fill_value=0.0)
    return out.merge(by_band.reset_index(), on=keys, how="left")


def price_tables(sums: PriceAggregates, config: PricingConfig | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`price_sensitivity`'s tables from their sums (rows sorted by their keys)."""
    config = config or PricingConfig()
    known = sums.known
    per_segment = pd.concat([_summary(sums.by_category, ["segment", "category"], known),
                             _summary(sums.by_segment.assign(category=ALL),
                                      ["segment", "category"], known)], ignore_index=True)
    customers = sums.customers.sort_values("customer_id", kind="stable").reset_index(drop=True)
    customers["discount_revenue_share"] = _share(customers["discount_revenue"],
                                                 customers["revenue"], known)
    # whole lines: the share times the lines, rounded up (0.7 x 10 is 7 lines, not 7.0000001)
    needed = np.ceil(np.round(config.discount_only_share * customers["lines"].to_numpy(), 9))
    customers["discount_only"] = known & (
        customers["orders"] >= config.discount_only_min_orders) & (
        customers["discounted_lines"].to_numpy() >= needed)
    customers["customer_id"] = customers["customer_id"].astype("string")
    customers["orders"] = customers["orders"].astype("int64")
    return per_segment, customers[["customer_id", "orders", "revenue", "discount_revenue_share",
                                   "discount_only"]]


def _share(part: pd.Series, whole: pd.Series, known: bool) -> pd.Series:
    if not known:
        return pd.Series(np.nan, index=part.index)
    return (part / whole.where(whole > 0)).astype("float64")


def _summary(sums: pd.DataFrame, keys: list[str], known: bool) -> pd.DataFrame:
    out = sums.sort_values(keys, kind="stable").reset_index(drop=True)
    out["discount_revenue_share"] = _share(out["discount_revenue"], out["revenue"], known)
    for band in BANDS:
        out[f"{band}_band_share"] = (out[band] / out["revenue"].where(out["revenue"] > 0)
                                     ).astype("float64")
    out["lines"] = out["lines"].astype("int64")
    for key in keys:
        out[key] = out[key].astype("string")
    return out[[*keys, "lines", "revenue", "discount_revenue_share", "median_unit_price",
                *(f"{b}_band_share" for b in BANDS)]]
