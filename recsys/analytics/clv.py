"""Orders per customer and historical customer lifetime value.

Definitions (time in days; a year is 365.25 days; ``end`` = the observation end, by default
the last order in the data):

- order value: sum of quantity x unit price over the order's lines (catalog price where the
  line has none); profit: the same x the product's margin (a share of the price, 0..1). Both
  are rounded to ``VALUE_DECIMALS`` decimals (a millionth of the currency unit): engines that
  sum an order's lines in another order (pandas, Spark) then hand the model fits the same
  numbers, which the fits would otherwise carry from the last bit into the sixth digit.
- tenure_days = end - first order; active_days = last order - first order;
  recency_days = end - last order.
- average_order_value (AOV) = revenue / orders.
- purchase_frequency = orders per year of observation = orders / max(tenure, min_observation)
  x 365.25 (the floor keeps a customer seen for one day from counting as 365 orders a year).
- expected lifetime L (years): ``lifetime_years`` when configured; otherwise estimated from
  the data by :func:`estimate_lifetime_years` (annual churn from two consecutive windows).
- historical CLV = AOV x purchase_frequency x L; the margin-adjusted CLV uses the average
  profit per order instead of the AOV.
- expected days between orders: the customer's own mean gap when they ordered twice or more,
  else the median of those means over repeat customers. Churn risk: recency_days > factor x
  that gap (the customer is past their expected next purchase).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.analytics.settings import AnalyticsConfig
from recsys.contract import require_columns
from recsys.errors import InputError

__all__ = [
    "DAYS_PER_YEAR",
    "OrderTable",
    "LineUse",
    "order_table",
    "historical_clv",
    "estimate_lifetime_years",
    "LifetimeEstimate",
    "customer_table",
    "customer_table_of_totals",
    "customer_totals",
    "lifetime_of_windows",
    "window_flags",
    "summary_lines",
    "round_values",
    "VALUE_DECIMALS",
]

DAYS_PER_YEAR = 365.25
VALUE_DECIMALS = 6
_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class LineUse:
    """The observation end and how the order lines were used."""

    end: pd.Timestamp
    lines_used: int
    lines_without_customer: int
    lines_after_end: int
    margin_known: bool
    margin_coverage: float  # share of revenue from products with a known margin


@dataclass(frozen=True)
class OrderTable(LineUse):
    """One row per order of a known customer (columns order_id, customer_id, ordered_at,
    revenue, profit; profit is NaN when margins are unknown), the observation end, and how the
    order lines were used."""

    orders: pd.DataFrame


def order_table(orders: pd.DataFrame, catalog: pd.DataFrame | None = None, *,
                as_of: pd.Timestamp | None = None, use_margin: bool = True) -> OrderTable:
    """Aggregate canonical order lines into orders of known customers (see the module doc).

    Lines without a customer (guest checkouts) are left out; so are lines after ``as_of``.
    A product without a known margin gets the revenue-weighted mean margin of those with one.
    """
    require_columns(orders, ["customer_id", "ordered_at"], table="orders",
                    feature="customer analytics (clv)")
    price = _line_prices(orders, catalog)
    known = orders["customer_id"].notna().to_numpy() & orders["ordered_at"].notna().to_numpy()
    without_customer = int((~orders["customer_id"].notna().to_numpy()).sum())
    when = orders["ordered_at"]
    end = pd.Timestamp(as_of) if as_of is not None else when[known].max()
    if pd.isna(end):
        raise InputError("orders: no order line has both a customer_id and an ordered_at; "
                         "customer analytics needs registered customers with order dates")
    if end.tzinfo is not None:  # canonical timestamps are naive UTC
        end = end.tz_convert("UTC").tz_localize(None)
    after = known & (when > end).to_numpy()
    known &= ~after
    if not known.any():
        raise InputError(f"orders: no order of a known customer on or before {end}")
    quantity = (orders["quantity"].to_numpy(np.float64, na_value=1.0) if "quantity" in orders
                else np.ones(len(orders)))
    revenue = quantity * price
    margin, margin_known, coverage = _line_margins(orders, catalog, revenue, known, use_margin)
    lines = pd.DataFrame({
        "order_id": orders["order_id"].to_numpy()[known],
        "customer_id": orders["customer_id"].to_numpy()[known],
        "ordered_at": when.to_numpy()[known],
        "revenue": revenue[known],
        "profit": (revenue * margin)[known],
    })
    table = (lines.groupby("order_id", sort=False)
             .agg(customer_id=("customer_id", "first"), ordered_at=("ordered_at", "min"),
                  revenue=("revenue", "sum"), profit=("profit", "sum"))
             .reset_index())
    table = round_values(table, margin_known)
    table = table.sort_values(["customer_id", "ordered_at", "order_id"], kind="stable")
    return OrderTable(orders=table.reset_index(drop=True), end=pd.Timestamp(end),
                      lines_used=int(known.sum()), lines_without_customer=without_customer,
                      lines_after_end=int(after.sum()), margin_known=margin_known,
                      margin_coverage=coverage)


def round_values(table: pd.DataFrame, margin_known: bool) -> pd.DataFrame:
    """The order table's revenue and profit rounded to ``VALUE_DECIMALS`` (profit NaN when
    margins are unknown)."""
    table["revenue"] = np.round(table["revenue"].to_numpy(np.float64), VALUE_DECIMALS)
    table["profit"] = (np.round(table["profit"].to_numpy(np.float64), VALUE_DECIMALS)
                       if margin_known else np.nan)
    return table


def _line_prices(orders: pd.DataFrame, catalog: pd.DataFrame | None) -> np.ndarray:
    price = (orders["unit_price"].to_numpy(np.float64, na_value=np.nan, copy=True)
             if "unit_price" in orders else np.full(len(orders), np.nan))
    missing = np.isnan(price)
    if missing.any() and catalog is not None and "price" in catalog:
        listed = catalog.set_index("product_id")["price"]
        fill = listed.reindex(orders["product_id"].to_numpy()[missing]).to_numpy(
            np.float64, na_value=np.nan)
        price[missing] = fill
        missing = np.isnan(price)
    if missing.all():
        raise InputError("orders: customer value needs prices, but no order line has a "
                         "unit_price and the catalog gives none; map unit_price in the "
                         "orders source or price in the catalog")
    price[missing] = 0.0  # a line without any price adds nothing to the order value
    return price


def _line_margins(orders: pd.DataFrame, catalog: pd.DataFrame | None, revenue: np.ndarray,
                  used: np.ndarray, use_margin: bool) -> tuple[np.ndarray, bool, float]:
    ones = np.ones(len(orders))
    if not use_margin or catalog is None or "margin" not in catalog or \
            catalog["margin"].isna().all():
        return ones, False, 0.0
    listed = catalog.set_index("product_id")["margin"]
    margin = listed.reindex(orders["product_id"].to_numpy()).to_numpy(np.float64,
                                                                       na_value=np.nan)
    has = ~np.isnan(margin) & used
    total = float(revenue[used].sum())
    covered = float(revenue[has].sum())
    if covered <= 0:
        return ones, False, 0.0
    mean_margin = float((margin[has] * revenue[has]).sum() / covered)
    margin = np.where(np.isnan(margin), mean_margin, margin)
    return margin, True, covered / total if total > 0 else 0.0


def historical_clv(average_order_value: float | np.ndarray, purchases_per_year: float | np.ndarray,
                   lifetime_years: float | np.ndarray) -> float | np.ndarray:
    """Historical CLV = average order value x purchases per year x expected lifetime in years
    (e.g. 50 x 3 x 5 = 750)."""
    return np.multiply(np.multiply(average_order_value, purchases_per_year), lifetime_years)


@dataclass(frozen=True)
class LifetimeEstimate:
    """Expected customer lifetime in years and how it was obtained."""

    years: float
    method: str  # "configured", "estimated", "capped" or "fallback"
    window_churn: float | None = None  # q: share of the earlier window's customers lost
    annual_retention: float | None = None
    window_customers: int = 0

    def figures(self) -> dict[str, object]:
        return {"lifetime_years": round(self.years, 4), "lifetime_method": self.method,
                "window_churn": None if self.window_churn is None else round(self.window_churn, 4),
                "annual_retention": None if self.annual_retention is None
                else round(self.annual_retention, 4),
                "lifetime_window_customers": self.window_customers}


def estimate_lifetime_years(orders: pd.DataFrame, end: pd.Timestamp, *, window_days: int,
                            fallback_years: float, max_years: float) -> LifetimeEstimate:
    """Expected lifetime from churn between two consecutive windows of ``window_days``.

    Customers who ordered in (end - 2w, end - w] and did not order in (end - w, end] are lost:
    q = lost / customers of the earlier window. With that churn per window, annual retention is
    rho = (1 - q)^(365.25 / w), and a customer who stays each year with probability rho has an
    expected lifetime of 1 / (1 - rho) years (geometric), capped at ``max_years``. Data shorter
    than two windows (or an empty earlier window) gives ``fallback_years``.
    """
    flags = window_flags(orders, end, window_days)
    return lifetime_of_windows(orders["ordered_at"].min(), end, flags["in_earlier_window"],
                               flags["in_last_window"], window_days=window_days,
                               fallback_years=fallback_years, max_years=max_years)


def window_flags(orders: pd.DataFrame, end: pd.Timestamp, window_days: int) -> pd.DataFrame:
    """Per customer (index, sorted) of the orders up to ``end``: in_earlier_window (an order in
    (end - 2w, end - w]) and in_last_window (one in (end - w, end])."""
    when = orders["ordered_at"]
    w = pd.Timedelta(days=window_days)
    frame = pd.DataFrame({"customer_id": orders["customer_id"].to_numpy(),
                          "in_earlier_window": ((when > end - 2 * w) & (when <= end - w)).to_numpy(),
                          "in_last_window": ((when > end - w) & (when <= end)).to_numpy()})
    return frame.groupby("customer_id", sort=True).any()


def lifetime_of_windows(first_order: pd.Timestamp, end: pd.Timestamp, in_earlier: pd.Series,
                        in_last: pd.Series, *, window_days: int, fallback_years: float,
                        max_years: float) -> LifetimeEstimate:
    """:func:`estimate_lifetime_years` from the first order of all and, per customer, whether
    they ordered in the earlier and in the last window (:func:`window_flags`)."""
    if first_order > end - 2 * pd.Timedelta(days=window_days):
        return LifetimeEstimate(fallback_years, "fallback")
    earlier = in_earlier.to_numpy(bool)
    if not earlier.any():
        return LifetimeEstimate(fallback_years, "fallback")
    kept = int((earlier & in_last.to_numpy(bool)).sum())
    q = 1.0 - kept / int(earlier.sum())
    rho = (1.0 - q) ** (DAYS_PER_YEAR / window_days)
    if rho >= 1.0 - 1.0 / max_years:  # 1 / (1 - rho) >= max_years
        return LifetimeEstimate(max_years, "capped", q, rho, int(earlier.sum()))
    return LifetimeEstimate(1.0 / (1.0 - rho), "estimated", q, rho, int(earlier.sum()))


def customer_totals(orders: pd.DataFrame) -> pd.DataFrame:
    """Per customer (index, sorted) of an order table: orders, first_order, last_order,
    revenue, profit."""
    return orders.groupby("customer_id", sort=True).agg(
        orders=("order_id", "size"), first_order=("ordered_at", "min"),
        last_order=("ordered_at", "max"), revenue=("revenue", "sum"), profit=("profit", "sum"))


def customer_table(table: OrderTable, config: AnalyticsConfig,
                   lifetime: LifetimeEstimate) -> pd.DataFrame:
    """One row per customer: order counts, dates, tenure, AOV, frequency, historical CLV,
    expected days between orders and the churn-risk flag (see the module docstring)."""
    return customer_table_of_totals(customer_totals(table.orders), table.end, config, lifetime,
                                    margin_known=table.margin_known)


def customer_table_of_totals(totals: pd.DataFrame, end: pd.Timestamp, config: AnalyticsConfig,
                             lifetime: LifetimeEstimate, *, margin_known: bool) -> pd.DataFrame:
    """:func:`customer_table` from the per-customer totals (:func:`customer_totals`)."""
    out = totals[["orders", "first_order", "last_order", "revenue", "profit"]].copy()
    if not margin_known:
        out["profit"] = np.nan
    n = out["orders"].to_numpy(np.float64)
    first = out["first_order"].to_numpy()
    last = out["last_order"].to_numpy()
    tenure = (np.datetime64(end) - first) / _DAY
    active = (last - first) / _DAY
    recency = (np.datetime64(end) - last) / _DAY
    out["tenure_days"] = tenure
    out["active_days"] = active
    out["recency_days"] = recency
    out["average_order_value"] = out["revenue"].to_numpy() / n
    out["purchase_frequency"] = n / np.maximum(tenure, config.min_observation_days) * DAYS_PER_YEAR
    out["expected_lifetime_years"] = lifetime.years
    out["historical_clv"] = historical_clv(out["average_order_value"].to_numpy(),
                                           out["purchase_frequency"].to_numpy(), lifetime.years)
    out["historical_clv_margin"] = historical_clv(out["profit"].to_numpy() / n,
                                                  out["purchase_frequency"].to_numpy(),
                                                  lifetime.years)
    repeat = n >= 2
    gap = np.full(len(out), np.nan)
    gap[repeat] = active[repeat] / (n[repeat] - 1)
    out["mean_days_between_orders"] = gap
    typical = float(np.median(gap[repeat])) if repeat.any() else np.nan
    # At least a day: two orders within minutes must not make every later day "overdue".
    expected = np.maximum(np.where(repeat, gap, typical), 1.0)
    out["expected_days_between_orders"] = expected
    due = pd.Series(last) + pd.to_timedelta(np.round(expected * 86_400.0), unit="s")
    out["next_order_due"] = due.to_numpy()
    out["churn_risk"] = recency > config.churn_risk_factor * expected  # NaN (no gap): False
    return out.rename_axis("customer_id").reset_index()


_SHARES = ("margin_revenue_coverage", "window_churn", "annual_retention",
           "repeat_purchase_rate", "annual_discount_rate")


def summary_lines(figures: dict[str, object]) -> list[str]:
    """The CLV job's figures as ``name: value`` lines for a terminal: money and other floats
    with thousands separators and 2 decimals, shares as percentages, counts as integers,
    missing values as "n/a"; nested figures (model parameters, segments) are left to the
    report, notes come last."""
    lines = []
    for key, value in figures.items():
        if isinstance(value, dict | list):
            continue
        if value is None:
            text = "n/a"
        elif isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value)
        elif key in _SHARES:
            text = f"{value:.1%}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = f"{value:,.2f}"
        lines.append(f"{key}: {text}")
    notes = figures.get("notes")
    lines += [f"note: {note}" for note in notes] if isinstance(notes, list) else []
    return lines
