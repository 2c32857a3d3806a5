"""The CLV job: customer table with historical and predicted CLV, RFM segments, cohorts, and the
per-customer segment table that the serving layer loads. Run by `recsys clv` and `recsys run`.

Writes into ``out_dir``:

- ``customers.parquet``: one row per customer (see :func:`compute_clv` for the columns)
- ``rfm_segments.parquet``: per segment, customers and revenue with their shares
- ``cohorts.parquet``: monthly cohorts, long form (cohort, period, customers, cohort_size,
  retention)
- ``customer_segments.parquet``: customer_id, segment, churn_risk, predicted_clv, p_alive
  (for business rules, e.g. at-risk customers get replenishment and best sellers first)
- ``clv_report.json``: the figures returned (model parameters, lifetime, totals)
- ``price_sensitivity.parquet``, ``discount_customers.parquet``: recsys.analytics.pricing
- lifecycle stages and flows, recommendations and the action lists (replenishment, win-back,
  high-value): ``ACTION_FILES`` of recsys.analytics.actions
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import layout
from recsys.analytics import btyd
from recsys.analytics.actions import ACTION_FILES, ROW_GROUP_ROWS, write_action_lists
from recsys.analytics.aggregates import ClvAggregates, LineAggregates
from recsys.analytics.clv import (
    DAYS_PER_YEAR,
    LifetimeEstimate,
    customer_table_of_totals,
    lifetime_of_windows,
    order_table,
)
from recsys.analytics.facts import WEEK, CustomerFacts, facts_of_order_table
from recsys.analytics.lifecycle import INPUT_COLUMNS, stages_of_inputs
from recsys.analytics.pricing import price_tables
from recsys.analytics.retention import retention_figures
from recsys.analytics.rfm import rfm_table, segment_summary
from recsys.analytics.settings import AnalyticsConfig
from recsys.artifacts import save_parquet
from recsys.errors import InputError
from recsys.progress import timed_step

__all__ = ["AnalyticsConfig", "ClvResult", "clv_inputs_missing", "compute_clv", "customer_value",
           "run_clv_job", "SEGMENT_COLUMNS", "OUTPUT_FILES"]

log = logging.getLogger(__name__)

#: Columns of ``customer_segments.parquet``, the table the serving layer loads.
SEGMENT_COLUMNS = ("customer_id", "segment", "churn_risk", "predicted_clv", "p_alive")
OUTPUT_FILES = tuple(f.name for f in (layout.CLV_CUSTOMERS, layout.RFM_SEGMENTS, layout.COHORTS,
                                        layout.CUSTOMER_SEGMENTS, layout.CLV_REPORT,
                                        layout.PRICE_SENSITIVITY, layout.DISCOUNT_CUSTOMERS)
                    ) + ACTION_FILES
_PREDICTED = ("p_alive", "expected_purchases", "expected_order_value", "predicted_clv",
              "predicted_clv_margin")


@dataclass
class ClvResult:
    """Everything the job writes, in memory (the report draws from it)."""

    facts: CustomerFacts
    customers: pd.DataFrame
    stages: pd.DataFrame  # recsys.analytics.lifecycle.STAGE_COLUMNS, in the customers' order
    rfm_segments: pd.DataFrame
    cohorts: pd.DataFrame
    lifetime: LifetimeEstimate
    bgnbd: btyd.BGNBD | None
    gamma_gamma: btyd.GammaGamma | None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def segments(self) -> pd.DataFrame:
        """The serving table: customer_id, segment, churn_risk, predicted_clv, p_alive."""
        return self.customers[list(SEGMENT_COLUMNS)]


def clv_inputs_missing(orders: pd.DataFrame | ClvAggregates,
                       catalog: pd.DataFrame | None = None) -> str | None:
    """Why customer value cannot be computed from these tables, or None when it can: the
    pipeline skips the job (and says why) instead of failing a shop without customer ids.
    ``orders``: the canonical lines, or their aggregations (which say which columns hold a
    value: on Spark, without the lines on the driver)."""
    source = LineAggregates(orders) if isinstance(orders, pd.DataFrame) else orders
    filled = source.filled_columns(("customer_id", "ordered_at", "unit_price"))
    for column in ("customer_id", "ordered_at"):
        if column not in filled:
            return f"orders have no {column}"
    if "unit_price" not in filled and (catalog is None or "price" not in catalog.columns
                                       or catalog["price"].isna().all()):
        return "neither orders (unit_price) nor the catalog (price) give prices"
    return None


def compute_clv(orders: pd.DataFrame, catalog: pd.DataFrame | None, *,
                config: AnalyticsConfig) -> ClvResult:
    """Customer value from canonical orders (and the catalog's prices and margins):
    :func:`customer_value` of the facts of their order table."""
    as_of = pd.Timestamp(config.as_of) if config.as_of is not None else None
    table = order_table(orders, catalog, as_of=as_of, use_margin=config.use_margin)
    return customer_value(facts_of_order_table(table, config), config=config)


def customer_value(facts: CustomerFacts, *, config: AnalyticsConfig) -> ClvResult:
    """Customer value from the per-customer facts (recsys.analytics.facts).

    ``customers`` columns: customer_id, orders, first_order, last_order, revenue, profit,
    tenure_days, active_days, recency_days, average_order_value, purchase_frequency (orders
    per year), expected_lifetime_years, historical_clv, historical_clv_margin,
    mean_days_between_orders, expected_days_between_orders, next_order_due, churn_risk;
    BTYD inputs frequency, recency_weeks, T_weeks, monetary_value; p_alive,
    expected_purchases (over the horizon), expected_order_value, predicted_clv,
    predicted_clv_margin; RFM r, f, m, fm, rfm_score, segment. Profit columns are NaN when
    margins are unknown.
    """
    known = facts.customers
    if config.lifetime_years is not None:
        lifetime = LifetimeEstimate(config.lifetime_years, "configured")
    else:
        lifetime = lifetime_of_windows(known["first_order"].min(), facts.end,
                                       known["in_earlier_window"], known["in_last_window"],
                                       window_days=config.churn_window_days,
                                       fallback_years=config.fallback_lifetime_years,
                                       max_years=config.max_lifetime_years)
    customers = customer_table_of_totals(known.set_index("customer_id"), facts.end, config,
                                         lifetime, margin_known=facts.margin_known)
    stages = stages_of_inputs(known[list(INPUT_COLUMNS)], customers, facts.end, config.lifecycle)
    customers = customers.merge(known[["customer_id", "frequency", "recency_weeks", "T_weeks",
                                       "monetary_value"]],
                                on="customer_id", how="left", validate="one_to_one")
    bgnbd, gg, notes, status = _predict(customers, config, facts.margin_known)
    rfm = rfm_table(customers, monetary="profit" if config.rfm.monetary == "profit"
                    and facts.margin_known else "revenue",
                    frequency="orders" if config.rfm.frequency == "orders"
                    else "purchase_frequency")
    customers = customers.merge(rfm, on="customer_id", how="left", validate="one_to_one")
    segments = segment_summary(rfm, customers["revenue"], customers["predicted_clv"])
    cohorts = facts.cohorts
    figures: dict[str, Any] = {
        **facts.figures(), **lifetime.figures(),
        **retention_figures(facts.gaps, customers),
        "revenue": float(customers["revenue"].sum()),
        "historical_clv_total": float(customers["historical_clv"].sum()),
        "historical_clv_mean": float(customers["historical_clv"].mean()),
        "predicted_clv_status": status,  # NaN sums (withheld predictions) become null
        "predicted_clv_total": float(customers["predicted_clv"].sum(min_count=1)),
        "predicted_clv_mean": float(customers["predicted_clv"].mean()),
        "horizon_months": config.horizon_months,
        "annual_discount_rate": config.annual_discount_rate,
        "bgnbd": None if bgnbd is None else bgnbd.figures(),
        "gamma_gamma": None if gg is None else gg.figures(),
        "segments": dict(zip(segments["segment"], segments["customers"].astype(int),
                             strict=True)),
        "cohorts": int(cohorts["cohort"].nunique()),
        "notes": notes,
    }
    if facts.margin_known:
        figures["predicted_clv_margin_total"] = float(
            customers["predicted_clv_margin"].sum(min_count=1))
    return ClvResult(facts=facts, customers=customers, stages=stages, rfm_segments=segments,
                     cohorts=cohorts,
                     lifetime=lifetime, bgnbd=bgnbd, gamma_gamma=gg, figures=_clean(figures))


def _predict(customers: pd.DataFrame, config: AnalyticsConfig, margin_known: bool,
             ) -> tuple[btyd.BGNBD | None, btyd.GammaGamma | None, list[str], str]:
    """Adds p_alive, expected_purchases, expected_order_value, predicted_clv(_margin) and
    returns the models, notes and the predictions' status: "ok", "not fitted" (no repeat
    buyer, predicted CLV 0) or "failed: <broken invariants>" (the columns are then NaN)."""
    notes: list[str] = []
    x = customers["frequency"].to_numpy(np.float64)
    tx = customers["recency_weeks"].to_numpy(np.float64)
    t = customers["T_weeks"].to_numpy(np.float64)
    m = customers["monetary_value"].to_numpy(np.float64)
    period = DAYS_PER_YEAR / 12 / WEEK  # one month in weeks
    monthly_rate = (1.0 + config.annual_discount_rate) ** (1 / 12) - 1.0
    bgnbd: btyd.BGNBD | None = None
    gg: btyd.GammaGamma | None = None
    if (x > 0).any():
        bgnbd = btyd.fit_bgnbd(x, tx, t, penalizer=config.penalizer)
        if not bgnbd.converged:
            notes.append("BG/NBD fit did not converge cleanly (a parameter at its bound); "
                         "try a small penalizer")
    else:
        notes.append("no customer bought on two different days: BG/NBD not fitted, "
                     "predicted CLV is 0")
    try:
        gg = btyd.fit_gamma_gamma(x, m, penalizer=config.penalizer)
        if gg.q <= 1:
            notes.append(f"Gamma-Gamma q = {gg.q:.3g} <= 1 (spend too heavy-tailed): "
                         "expected order value is the customer's own average instead")
            gg = None
    except InputError as exc:
        notes.append(f"Gamma-Gamma not fitted ({exc}); expected order value is the customer's "
                     "own average")
    if gg is not None:
        value = btyd.expected_order_value(gg, x, m)
        repeat = x > 0  # a constant frequency or spend has no correlation to report
        varies = repeat.sum() > 2 and np.ptp(x[repeat]) > 0 and np.ptp(m[repeat]) > 0
        spend_corr = float(np.corrcoef(x[repeat], m[repeat])[0, 1]) if varies else 0.0
        if abs(spend_corr) > 0.3:
            notes.append(f"frequency and spend correlate ({spend_corr:.2f}): Gamma-Gamma "
                         "assumes they are independent")
    else:
        value = customers["average_order_value"].to_numpy(np.float64)
    if bgnbd is not None:
        customers["p_alive"] = btyd.p_alive(bgnbd, x, tx, t)
        customers["expected_purchases"] = btyd.expected_purchases(
            bgnbd, config.horizon_months * period, x, tx, t)
        clv = btyd.discounted_clv(bgnbd, value, x, tx, t, periods=config.horizon_months,
                                  period_length=period, discount_rate=monthly_rate)
    else:
        customers["p_alive"] = np.where(x > 0, 1.0, 0.0)
        customers["expected_purchases"] = 0.0
        clv = np.zeros(len(customers))
    customers["expected_order_value"] = value
    customers["predicted_clv"] = clv
    share = (customers["profit"] / customers["revenue"]).where(customers["revenue"] > 0)
    customers["predicted_clv_margin"] = clv * share.to_numpy(np.float64) if margin_known \
        else np.nan
    problems = btyd.prediction_problems(bgnbd, gg, config.horizon_months * period, customers)
    if problems:
        # Broken numbers are withheld (NaN), not published as if they were fine.
        log.error("customer value: predictions break their invariants and are withheld: %s",
                  "; ".join(problems))
        customers[list(_PREDICTED)] = np.nan
        notes.append("predicted CLV withheld: its numbers break the model's invariants")
        return bgnbd, gg, notes, "failed: " + "; ".join(problems)
    return bgnbd, gg, notes, "ok" if bgnbd is not None else "not fitted"


def _clean(value: Any) -> Any:
    """JSON-safe figures: numpy scalars as Python numbers, NaN and infinity as None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_clv_job(orders: pd.DataFrame | ClvAggregates, catalog: pd.DataFrame | None,
                out_dir: Path | str, *, config: AnalyticsConfig, previous: Path | None = None,
                model_dir: Path | None = None) -> dict[str, Any]:
    """Compute customer value and write the job's files into ``out_dir`` (module docstring);
    returns the figures for the manifest (JSON-safe). ``orders``: the canonical lines, or
    their aggregations made elsewhere (``ClvAggregates``, e.g. on Spark by
    recsys.spark.clv); ``previous``: the previous artifact's analytics folder (lifecycle
    flows); ``model_dir``: the models job's output (ALS factors and repurchase cycles for the
    action lists; without it, best sellers and cycles from the lines)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aggregates = LineAggregates(orders) if isinstance(orders, pd.DataFrame) else orders
    with timed_step(log, "customer value: the facts per customer"):
        facts = aggregates.customer_facts(catalog, config=config)
    with timed_step(log, f"customer value: fits ({len(facts.customers):,} customers)"):
        result = customer_value(facts, config=config)
    with timed_step(log, "customer value: lifecycle and action lists"):
        result.figures["actions"] = write_action_lists(
            result.customers, result.stages, aggregates, catalog, facts.end, out,
            config=config, previous=previous, model_dir=model_dir)
    save_parquet(result.customers, out / layout.CLV_CUSTOMERS.name, row_group_size=ROW_GROUP_ROWS)
    save_parquet(result.rfm_segments, out / layout.RFM_SEGMENTS.name)
    save_parquet(result.cohorts, out / layout.COHORTS.name)
    save_parquet(result.segments, out / layout.CUSTOMER_SEGMENTS.name)
    with timed_step(log, "customer value: price sensitivity"):
        by_segment, by_customer = price_tables(
            aggregates.price_aggregates(catalog, result.segments), config.pricing)
    save_parquet(by_segment, out / layout.PRICE_SENSITIVITY.name)
    save_parquet(by_customer, out / layout.DISCOUNT_CUSTOMERS.name)
    result.figures["discount_only_customers"] = int(by_customer["discount_only"].sum())
    tmp = out / f"{layout.CLV_REPORT.name}.tmp"
    tmp.write_text(json.dumps(result.figures, indent=2, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, out / layout.CLV_REPORT.name)
    total = result.figures["predicted_clv_total"]
    log.info("clv: %s customers, lifetime %.2f years (%s), predicted CLV total %s (%s)",
             result.figures["customers"], result.lifetime.years, result.lifetime.method,
             f"{total:,.2f}" if isinstance(total, int | float) else total,
             result.figures["predicted_clv_status"])
    return result.figures
