"""Lifecycle stage per customer, and the flow of customers between stages from one run to the
next.

Gaps are in days; ``expected`` is the customer's expected days between orders (their own mean
gap, the median of repeat customers for one-time buyers; see recsys.analytics.clv);
``recency`` = days since the last order; ``w`` = ``trend_window_days``. The spend trend is
``ratio`` = the revenue of the last window (end - w, end] / the customer's usual revenue per
window before it (revenue before end - w, over the days observed before end - w, at least w,
times w); it is only defined for a customer who spent before the window. The first rule that
holds names the stage:

============  ===========================================================================
new           first order at most ``new_days`` ago, or one order only and recency <=
              expected (still within their first cycle)
churned       recency > ``churned_factor`` x expected
at_risk       recency > ``at_risk_factor`` x expected
reactivated   the last order came after a gap > ``churned_factor`` x the gap expected before
              it (the mean of the earlier gaps; the repeat customers' median after one order)
declining     a warning before recency crosses a threshold: ratio < ``spend_drop`` (falling
              spend), or recency > expected (the gap now open is longer than usual: the next
              order is past due)
growing       ratio >= ``spend_growth``
stable        everything else
============  ===========================================================================

On Online Retail II the closed-gap trend (last gap longer than the earlier ones) did not
foretell a lost customer, and the spend of the last window against the window just before
was noisier than against the customer's whole history (benchmarks/actions_bench.py).

The flow table counts customers per (from_stage, to_stage) between the previous artifact's
stage table and this one; ``none`` stands for "not in that run" (first run, new customers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.analytics.settings import LifecycleConfig

__all__ = ["STAGES", "lifecycle_stages", "lifecycle_inputs", "stages_of_inputs", "stage_flows",
           "STAGE_COLUMNS", "INPUT_COLUMNS"]

STAGES: tuple[str, ...] = ("new", "growing", "stable", "declining", "at_risk", "churned",
                           "reactivated")
STAGE_COLUMNS = ("customer_id", "stage", "recency_days", "expected_days_between_orders",
                 "last_gap_days", "earlier_gap_days", "spend_recent", "spend_usual")
INPUT_COLUMNS = ("last_gap_days", "earlier_gap_days", "spend_recent", "spend_before")
_DAY = np.timedelta64(1, "D")
NONE = "none"


def lifecycle_stages(orders: pd.DataFrame, customers: pd.DataFrame, end: pd.Timestamp,
                     config: LifecycleConfig) -> pd.DataFrame:
    """One row per customer of ``customers`` (same order), columns ``STAGE_COLUMNS``.

    ``orders``: one row per order (customer_id, ordered_at, revenue), as
    recsys.analytics.clv.order_table gives; ``customers``: customer_id, orders, first_order,
    tenure_days, recency_days, mean_days_between_orders, expected_days_between_orders
    (recsys.analytics.clv.customer_table).
    """
    inputs = lifecycle_inputs(orders, pd.Index(customers["customer_id"]), end,
                              config.trend_window_days)
    return stages_of_inputs(inputs, customers, end, config)


def lifecycle_inputs(orders: pd.DataFrame, ids: pd.Index, end: pd.Timestamp,
                     trend_window_days: int) -> pd.DataFrame:
    """What the stages need of the orders, per customer of ``ids`` (same order):
    ``INPUT_COLUMNS`` (the last gap, the mean of the gaps before it with three orders or more,
    the spend in the last ``trend_window_days`` and before them)."""
    code = ids.get_indexer(orders["customer_id"])
    if (code < 0).any():
        raise ValueError("lifecycle: orders hold customers the customer table does not")
    when = orders["ordered_at"].to_numpy("datetime64[ns]")
    sort = np.lexsort((when, code))
    code, when = code[sort], when[sort]
    revenue = orders["revenue"].to_numpy(np.float64)[sort]
    n_customers = len(ids)
    same = np.r_[False, code[1:] == code[:-1]]
    gap = np.where(same, np.r_[0.0, np.diff(when) / _DAY], 0.0)
    n = np.bincount(code, minlength=n_customers)
    last_row = np.r_[np.flatnonzero(~same)[1:], len(code)] - 1
    last_gap = np.full(n_customers, np.nan)
    last_gap[code[last_row]] = gap[last_row]
    last_gap[n < 2] = np.nan
    gap_sum = np.bincount(code, weights=gap, minlength=n_customers)
    earlier_gap = np.full(n_customers, np.nan)
    three = n >= 3
    earlier_gap[three] = (gap_sum[three] - last_gap[three]) / (n[three] - 2)
    end64 = np.datetime64(pd.Timestamp(end))
    recent_rows = when > end64 - np.timedelta64(trend_window_days, "D")
    return pd.DataFrame({
        "last_gap_days": last_gap, "earlier_gap_days": earlier_gap,
        "spend_recent": np.bincount(code, weights=revenue * recent_rows, minlength=n_customers),
        "spend_before": np.bincount(code, weights=revenue * ~recent_rows,
                                    minlength=n_customers)})


def stages_of_inputs(inputs: pd.DataFrame, customers: pd.DataFrame, end: pd.Timestamp,
                     config: LifecycleConfig) -> pd.DataFrame:
    """:func:`lifecycle_stages` from the per-customer inputs (:func:`lifecycle_inputs`, in
    the row order of ``customers``)."""
    last_gap = inputs["last_gap_days"].to_numpy(np.float64)
    earlier_gap = inputs["earlier_gap_days"].to_numpy(np.float64)
    recent = inputs["spend_recent"].to_numpy(np.float64)
    before = inputs["spend_before"].to_numpy(np.float64)
    n = customers["orders"].to_numpy(np.int64)
    repeat, three = n >= 2, n >= 3
    end64 = np.datetime64(pd.Timestamp(end))
    window = np.timedelta64(config.trend_window_days, "D")
    first = customers["first_order"].to_numpy("datetime64[ns]")
    observed = np.maximum((end64 - window - first) / _DAY, config.trend_window_days)
    usual = before / observed * config.trend_window_days  # revenue per window before it

    recency = customers["recency_days"].to_numpy(np.float64)
    expected = customers["expected_days_between_orders"].to_numpy(np.float64)
    tenure = customers["tenure_days"].to_numpy(np.float64)
    means = customers["mean_days_between_orders"].to_numpy(np.float64)
    typical = float(np.nanmedian(means)) if np.isfinite(means).any() else np.nan
    expected_before_last = np.maximum(np.where(three, earlier_gap, typical), 1.0)
    with np.errstate(invalid="ignore"):
        reactivated = repeat & (last_gap > config.churned_factor * expected_before_last)
    spend_down = (usual > 0) & (recent < config.spend_drop * usual)
    spend_up = (usual > 0) & (recent >= config.spend_growth * usual)
    conditions = [
        (tenure <= config.new_days) | (~repeat & (recency <= expected)),
        recency > config.churned_factor * expected,
        recency > config.at_risk_factor * expected,
        reactivated,
        spend_down | (recency > expected),
        spend_up,
    ]
    stage = np.select(conditions, ["new", "churned", "at_risk", "reactivated", "declining",
                                   "growing"], default="stable")
    table = pd.DataFrame({
        "customer_id": customers["customer_id"].to_numpy(), "stage": stage.astype(object),
        "recency_days": recency, "expected_days_between_orders": expected,
        "last_gap_days": last_gap, "earlier_gap_days": earlier_gap, "spend_recent": recent,
        "spend_usual": usual})
    return table[list(STAGE_COLUMNS)]


def stage_flows(previous: pd.DataFrame | None, current: pd.DataFrame) -> pd.DataFrame:
    """Customers per (from_stage, to_stage), both tables with customer_id and stage; a
    customer in only one of them moves from or to ``none``. Columns from_stage, to_stage,
    customers (int64), in stage order."""
    now = current[["customer_id", "stage"]]
    if previous is None:
        before = pd.DataFrame({"customer_id": pd.Series([], dtype=now["customer_id"].dtype),
                               "stage": pd.Series([], dtype=object)})
    else:
        before = previous[["customer_id", "stage"]]
    pairs = before.merge(now, on="customer_id", how="outer", suffixes=("_from", "_to"),
                         validate="one_to_one")
    pairs = pairs.fillna({"stage_from": NONE, "stage_to": NONE})
    flows = (pairs.groupby(["stage_from", "stage_to"]).size().rename("customers").reset_index()
             .rename(columns={"stage_from": "from_stage", "stage_to": "to_stage"}))
    rank = {s: i for i, s in enumerate((NONE, *STAGES))}
    order = np.lexsort((flows["to_stage"].map(rank).fillna(len(rank)).to_numpy(),
                        flows["from_stage"].map(rank).fillna(len(rank)).to_numpy()))
    flows = flows.iloc[order].reset_index(drop=True)
    flows["customers"] = flows["customers"].astype(np.int64)
    return flows
