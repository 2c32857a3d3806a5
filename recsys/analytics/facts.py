"""What the customer-value job needs of the orders: one row per customer, the cohort counts
and the pooled gaps between orders.

The job (recsys.analytics.job) reads no order after this: the customer table, the BTYD fits,
the lifetime estimate and the lifecycle stages are made from the per-customer facts. Both
engines make the facts with :func:`customer_facts`: the local engine from its whole order
table, the Spark engine (recsys.spark.clv) on its executors, once per group of customers, so
that one row per customer reaches the driver, not one per order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from recsys.analytics.btyd import btyd_summary
from recsys.analytics.clv import LineUse, OrderTable, customer_totals, window_flags
from recsys.analytics.lifecycle import INPUT_COLUMNS, lifecycle_inputs
from recsys.analytics.retention import GapStats, cohort_counts, gap_stats
from recsys.analytics.settings import AnalyticsConfig

__all__ = ["CustomerFacts", "FACT_COLUMNS", "WEEK", "customer_facts", "facts_of_order_table"]

WEEK = 7.0  # the BTYD time unit, in days
#: Per customer: the totals (recsys.analytics.clv.customer_totals), the BTYD inputs in weeks
#: (recsys.analytics.btyd.btyd_summary), the lifecycle inputs
#: (recsys.analytics.lifecycle.lifecycle_inputs) and the lifetime windows
#: (recsys.analytics.clv.window_flags).
FACT_COLUMNS = ("customer_id", "orders", "first_order", "last_order", "revenue", "profit",
                "frequency", "recency_weeks", "T_weeks", "monetary_value", *INPUT_COLUMNS,
                "in_earlier_window", "in_last_window")


@dataclass(frozen=True)
class CustomerFacts:
    """The per-customer facts (``FACT_COLUMNS``, sorted by customer_id), the cohort table
    (recsys.analytics.retention.cohort_counts), the pooled gaps and how the lines were used."""

    customers: pd.DataFrame
    cohorts: pd.DataFrame
    gaps: GapStats
    use: LineUse

    @property
    def end(self) -> pd.Timestamp:
        return self.use.end

    @property
    def margin_known(self) -> bool:
        return self.use.margin_known

    def figures(self) -> dict[str, object]:
        use = self.use
        return {"orders": int(self.customers["orders"].sum()),
                "customers": len(self.customers), "order_lines_used": use.lines_used,
                "order_lines_without_customer": use.lines_without_customer,
                "order_lines_after_as_of": use.lines_after_end,
                "observation_end": use.end.isoformat(), "margins_known": use.margin_known,
                "margin_revenue_coverage": round(use.margin_coverage, 4)}


def customer_facts(orders: pd.DataFrame, end: pd.Timestamp,
                   config: AnalyticsConfig) -> pd.DataFrame:
    """``FACT_COLUMNS`` of an order table (order_id, customer_id, ordered_at, revenue, profit)
    that holds every order of its customers up to ``end``, sorted by customer_id."""
    totals = customer_totals(orders)
    summary = btyd_summary(orders, end, time_unit_days=WEEK).set_index("customer_id")
    inputs = lifecycle_inputs(orders, totals.index, end, config.lifecycle.trend_window_days)
    flags = window_flags(orders, end, config.churn_window_days)
    out = totals.rename_axis("customer_id").reset_index()
    out["frequency"] = summary["frequency"].reindex(totals.index).to_numpy(np.float64)
    out["recency_weeks"] = summary["recency"].reindex(totals.index).to_numpy(np.float64)
    out["T_weeks"] = summary["T"].reindex(totals.index).to_numpy(np.float64)
    out["monetary_value"] = summary["monetary_value"].reindex(totals.index).to_numpy(np.float64)
    for column in INPUT_COLUMNS:
        out[column] = inputs[column].to_numpy(np.float64)
    for column in ("in_earlier_window", "in_last_window"):
        out[column] = flags[column].reindex(totals.index).to_numpy(bool)
    out["orders"] = out["orders"].astype(np.int64)
    return out[list(FACT_COLUMNS)]


def facts_of_order_table(table: OrderTable, config: AnalyticsConfig) -> CustomerFacts:
    """The facts of the local engine's order table (recsys.analytics.clv.order_table)."""
    return CustomerFacts(
        customers=customer_facts(table.orders, table.end, config),
        cohorts=cohort_counts(table.orders),
        gaps=gap_stats(table.orders),
        use=LineUse(**{f.name: getattr(table, f.name) for f in fields(LineUse)}))
