"""Retention: monthly acquisition cohorts, repeat-purchase rate and time between orders.

A customer's cohort is the calendar month of their first order; period k is the k-th calendar
month after it (k = 0 is the first month itself). ``customers`` in (cohort, k) counts the
cohort's customers with at least one order in that month; retention = customers / cohort size
(so period 0 is always 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["cohort_counts", "cohort_matrix", "cohort_table", "month_index", "order_gaps",
           "retention_figures", "gap_stats", "GapStats"]


def month_index(when: pd.Series) -> np.ndarray:
    """Year x 12 + month - 1 of each time."""
    return (when.dt.year.to_numpy(np.int64) * 12 + when.dt.month.to_numpy(np.int64) - 1)


def cohort_counts(orders: pd.DataFrame) -> pd.DataFrame:
    """Long cohort table from an order table (customer_id, ordered_at): cohort ("YYYY-MM"),
    period (months since the cohort month), customers, cohort_size, retention. Every period from
    0 to the last month of the data is present for every cohort (0 customers where none)."""
    month = month_index(orders["ordered_at"])
    frame = pd.DataFrame({"customer_id": orders["customer_id"].to_numpy(), "month": month})
    first = frame.groupby("customer_id")["month"].transform("min").to_numpy()
    active = pd.DataFrame({"cohort": first, "period": month - first,
                           "customer_id": frame["customer_id"].to_numpy()}).drop_duplicates()
    counts = active.groupby(["cohort", "period"]).size().rename("customers").reset_index()
    return cohort_table(counts, int(month.max()))


def cohort_table(counts: pd.DataFrame, last_month: int) -> pd.DataFrame:
    """:func:`cohort_counts` from the customers active per (cohort, period) (columns cohort
    and period as month indexes, year x 12 + month - 1, and customers; pairs without a
    customer may be left out) and the last month of the data."""
    counts = counts.set_index(["cohort", "period"])["customers"]
    cohorts = np.unique(counts.index.get_level_values("cohort").to_numpy(np.int64))
    sizes = counts.xs(0, level="period").reindex(cohorts)
    periods = last_month - cohorts + 1
    full = pd.MultiIndex.from_arrays([np.repeat(cohorts, periods),
                                      np.concatenate([np.arange(p) for p in periods])],
                                     names=["cohort", "period"])
    out = counts.reindex(full, fill_value=0).rename("customers").reset_index()
    out["customers"] = out["customers"].astype(np.int64)
    out["cohort_size"] = sizes.reindex(out["cohort"]).to_numpy(np.int64)
    out["retention"] = out["customers"] / out["cohort_size"]
    year, month0 = np.divmod(out["cohort"].to_numpy(np.int64), 12)
    out["cohort"] = [f"{y:04d}-{m + 1:02d}" for y, m in zip(year, month0, strict=True)]
    return out[["cohort", "period", "customers", "cohort_size", "retention"]]


def cohort_matrix(cohorts: pd.DataFrame, value: str = "retention") -> pd.DataFrame:
    """The cohort x period matrix of ``value`` (rows: cohorts, oldest first; NaN after the
    data ends)."""
    return cohorts.pivot(index="cohort", columns="period", values=value).sort_index()


def order_gaps(orders: pd.DataFrame) -> np.ndarray:
    """Days between each order and the same customer's previous order (all customers pooled)."""
    frame = orders[["customer_id", "ordered_at"]].sort_values(["customer_id", "ordered_at"],
                                                              kind="stable")
    same = frame["customer_id"].eq(frame["customer_id"].shift()).to_numpy(bool)
    gaps = frame["ordered_at"].diff().dt.total_seconds().to_numpy(np.float64) / 86_400.0
    return gaps[same]


@dataclass(frozen=True)
class GapStats:
    """The pooled days between consecutive orders of a customer: how many, mean, median."""

    count: int
    mean: float
    median: float


def gap_stats(orders: pd.DataFrame) -> GapStats:
    """The figures of :func:`order_gaps`."""
    gaps = order_gaps(orders)
    return GapStats(len(gaps), float(gaps.mean()) if len(gaps) else float("nan"),
                    float(np.median(gaps)) if len(gaps) else float("nan"))


def retention_figures(gaps: GapStats, customers: pd.DataFrame) -> dict[str, float | int]:
    """Repeat-purchase rate (share of customers with two or more orders), mean and median days
    between consecutive orders (the pooled ``gaps``), and how many customers carry the
    churn-risk flag."""
    n = len(customers)
    repeat = int((customers["orders"] >= 2).sum())
    return {
        "customers": n,
        "repeat_customers": repeat,
        "repeat_purchase_rate": repeat / n if n else 0.0,
        "mean_days_between_orders": gaps.mean if gaps.count else float("nan"),
        "median_days_between_orders": gaps.median if gaps.count else float("nan"),
        "churn_risk_customers": int(customers["churn_risk"].sum()),
    }
