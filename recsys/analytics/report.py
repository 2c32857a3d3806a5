"""`recsys report`: one self-contained HTML page of customer value and measured outcomes.

Sections: summary; cohort retention heatmap; CLV distribution; RFM segments; price and
discount sensitivity (:mod:`recsys.analytics.pricing`); repurchase cycles (from :mod:`recsys.repurchase`); recommendation outcomes (:mod:`recsys.analytics.
report_outcomes`: per placement and arm, or exposure group when no experiment ran, order value
with and without recommendations, per-arm uplift with intervals); definitions.
Charts are matplotlib ``Figure`` objects (no pyplot) inlined as SVG, text drawn as paths:
no scripts, external CSS, fonts or links, so the file opens offline.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.analytics.job import ClvResult, compute_clv
from recsys.analytics.outcomes import Outcomes, load_events, measure_outcomes
from recsys.analytics.pricing import price_sensitivity
from recsys.analytics.report_html import days, dl, figure, money, share, table
from recsys.analytics.report_outcomes import outcome_sections
from recsys.analytics.rfm import SEGMENTS
from recsys.analytics.settings import AnalyticsConfig, PricingConfig
from recsys.charts import REPORT_CSS, chart_style, inline_svg
from recsys.errors import InputError
from recsys.ingest import load_table
from recsys.repurchase import repurchase_cycles

__all__ = ["build_report", "render_report"]

_CSS = REPORT_CSS + """table{margin:.5rem 0}p.note{color:#8a4b00}th.num{text-align:right}
h3{font-size:1.05rem;margin-top:1.2rem}
"""
_SEGMENT_LABELS = {"champions": "Champions", "loyal": "Loyal", "potential": "Potential",
                   "at_risk": "At risk", "hibernating": "Hibernating", "lost": "Lost"}


def build_report(data_dir: Path | str, out_path: Path | str, *,
                 events: pd.DataFrame | str | None = None,
                 config: AnalyticsConfig | None = None, ab_test: bool = False) -> Path:
    """Compute customer value from the canonical tables in ``data_dir`` (orders.parquet,
    optional catalog.parquet) and write the HTML report to ``out_path``.

    ``events``: the stored recommendation events as a DataFrame, or a SQLAlchemy URL of the
    database holding ``recsys_events``; None uses ``data_dir/events.parquet`` when it holds
    impression or click events with a request_id, and leaves the outcomes section out
    otherwise. ``ab_test``: whether the API ran the experiment (``[serving] ab_test``); when
    it did not, outcomes compare exposure groups (observational), never arms."""
    config = config or AnalyticsConfig()
    out = Path(out_path)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"cannot write the report to {out}: give a file name in an existing "
                         "folder")
    orders = load_table(data_dir, "orders")
    assert orders is not None
    catalog = load_table(data_dir, "catalog", required=False)
    result = compute_clv(orders, catalog, config=config)
    if isinstance(events, str):
        events = load_events(events)
    elif events is None:
        events = load_table(data_dir, "events", required=False)
    outcomes = None
    if events is not None and _has_recommendation_events(events):
        outcomes = measure_outcomes(events, config.experiment, experiment=ab_test)
    cycles = repurchase_cycles(orders)
    text = render_report(result, outcomes, cycles, config=config,
                         pricing=price_sensitivity(orders, catalog, result.segments,
                                                   config.pricing))
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _has_recommendation_events(events: pd.DataFrame) -> bool:
    if "event_type" not in events or "request_id" not in events:
        return False
    rec = events["event_type"].isin(["impression", "click"]) & events["request_id"].notna()
    return bool(rec.any())


def render_report(result: ClvResult, outcomes: Outcomes | None, cycles: pd.DataFrame | None,
                  *, config: AnalyticsConfig, title: str = "Customer value and "
                  "recommendation outcomes",
                  pricing: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> str:
    """The report as one HTML string (``pricing``: ``price_sensitivity``'s tables)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>", _summary(result)]
    parts += [f'<p class="note">{esc(n)}</p>' for n in result.figures.get("notes", [])]
    parts += ["<h2>Cohort retention</h2>",
              figure(_cohort_svg(result.cohorts),
                     "Share of each monthly cohort (customers by month of first order) who "
                     "ordered again k months later; month 0 is 100% by definition.",
                     "cohort retention")]
    parts += ["<h2>Customer lifetime value</h2>", _clv_text(result, config),
              figure(_clv_svg(result.customers),
                     "Customers by historical and predicted CLV (the top 1% lies beyond the "
                     "right edge and is counted in the last bar).", "CLV distribution")]
    parts += ["<h2>RFM segments</h2>", figure(_segments_svg(result.rfm_segments),
                                               "Share of customers and of revenue per segment.",
                                               "RFM segments"),
              _segments_table(result.rfm_segments)]
    if pricing is not None:
        parts += ["<h2>Price and discount sensitivity</h2>", _pricing_table(*pricing, config.pricing)]
    parts += ["<h2>Repurchase cycles</h2>", _cycles_table(cycles)]
    parts += ["<h2>Recommendation outcomes</h2>"]
    if outcomes is None:
        parts.append("<p>No recommendation events (impressions or clicks with a request_id) "
                     "were given, so no outcomes are measured. Pass the events database "
                     "(recsys_events) to include them.</p>")
    else:
        parts += outcome_sections(outcomes, config)
    parts += ["<h2>Definitions</h2>", _definitions(config), "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ text parts

def _summary(result: ClvResult) -> str:
    f = result.figures
    items = [("Observation end", str(f["observation_end"])),
             ("Customers", f"{f['customers']:,}"), ("Orders", f"{f['orders']:,}"),
             ("Revenue", money(f["revenue"])),
             ("Repeat-purchase rate", share(f["repeat_purchase_rate"])),
             ("Mean / median days between orders",
              f"{days(f['mean_days_between_orders'])} / "
              f"{days(f['median_days_between_orders'])}"),
             ("Customers at churn risk", f"{f['churn_risk_customers']:,}"),
             ("Expected lifetime", f"{f['lifetime_years']:.2f} years ({f['lifetime_method']})"),
             ("Order lines without a customer (left out)",
              f"{f['order_lines_without_customer']:,}")]
    if f["margins_known"]:
        items.append(("Revenue with a known margin", share(f["margin_revenue_coverage"])))
    return dl(items)


def _clv_text(result: ClvResult, config: AnalyticsConfig) -> str:
    f = result.figures
    items = [("Historical CLV, total / mean", f"{money(f['historical_clv_total'])} / "
                                              f"{money(f['historical_clv_mean'])}"),
             (f"Predicted CLV ({config.horizon_months} months, "
              f"{config.annual_discount_rate:.0%} a year discount), total / mean",
              f"{money(f['predicted_clv_total'])} / {money(f['predicted_clv_mean'])}")]
    if result.bgnbd is not None:
        b = result.bgnbd
        items.append(("BG/NBD (weeks)", f"r = {b.r:.4g}, alpha = {b.alpha:.4g}, a = {b.a:.4g}, "
                                        f"b = {b.b:.4g}"))
    if result.gamma_gamma is not None:
        g = result.gamma_gamma
        items.append(("Gamma-Gamma", f"p = {g.p:.4g}, q = {g.q:.4g}, gamma = {g.gamma:.4g}"))
    return dl(items)


def _segments_table(segments: pd.DataFrame) -> str:
    rows = [[_SEGMENT_LABELS.get(s.segment, s.segment), f"{int(s.customers):,}",
             share(s.customer_share), money(s.revenue), share(s.revenue_share),
             money(getattr(s, "mean_predicted_clv", float("nan")))]
            for s in segments.itertuples(index=False)]  # six segments
    return table(["segment", "customers", "share", "revenue", "revenue share",
                  "mean predicted CLV"], rows)


def _pricing_table(by_segment: pd.DataFrame, by_customer: pd.DataFrame,
                   rule: PricingConfig) -> str:
    rows = [[_SEGMENT_LABELS.get(s.segment, s.segment), f"{int(s.lines):,}", money(s.revenue),
             "-" if pd.isna(s.discount_revenue_share) else share(s.discount_revenue_share),
             money(s.median_unit_price), share(s.low_band_share), share(s.mid_band_share),
             share(s.high_band_share)]
            for s in by_segment[by_segment["category"] == "*"].itertuples(index=False)]
    known = by_segment["discount_revenue_share"].notna().any()
    note = (f"{int(by_customer['discount_only'].sum()):,} customers bought only on discount "
            f"({rule.discount_only_min_orders} orders or more, at least "
            f"{rule.discount_only_share:.0%} of their lines discounted): upsell offers them "
            "nothing pricier."
            if known else "The orders carry no list_price or discount, so the share bought on "
            "discount is unknown.")
    return (f"<p>Per segment, all categories (per category in price_sensitivity.parquet). A "
            f"line's band is its price against its category's terciles. {html.escape(note)}"
            "</p>" + table(["segment", "lines", "revenue", "on discount", "median price",
                            "low band", "mid band", "high band"], rows))


def _cycles_table(cycles: pd.DataFrame | None, top: int = 15) -> str:
    if cycles is None or cycles.empty:
        return "<p>No product is re-bought often enough to estimate a repurchase cycle.</p>"
    shown = cycles.sort_values(["intervals", "product_id"], ascending=[False, True]).head(top)
    rows = [[str(c.product_id), f"{c.cycle_days:.0f}", f"{int(c.intervals):,}",
             share(c.repeat_share)] for c in shown.itertuples(index=False)]
    return (f"<p>Median days between purchases of the same product by the same customer: the "
            f"{len(shown)} products with the most evidence (of {len(cycles):,} with a cycle)."
            "</p>" + table(["product", "cycle (days)", "intervals", "repeat share"], rows))


def _definitions(config: AnalyticsConfig) -> str:
    lifetime = (f"configured: {config.lifetime_years:g} years" if config.lifetime_years else
                f"estimated: q = share of customers who ordered in the {config.churn_window_days}"
                " days before the last window and not in the last one; annual retention "
                f"rho = (1 - q)^(365.25 / {config.churn_window_days}); lifetime = 1 / (1 - rho),"
                f" at most {config.max_lifetime_years:g} years")
    items = [
        ("Historical CLV", "average order value x purchase frequency (orders per year of "
                           "tenure) x expected lifetime; margin-adjusted with profit per order"),
        ("Expected lifetime", lifetime),
        ("Predicted CLV", "BG/NBD expected purchases per month x Gamma-Gamma expected order "
                          f"value, discounted monthly over {config.horizon_months} months"),
        ("P(alive)", "BG/NBD probability that the customer has not dropped out"),
        ("Churn risk", f"days since the last order > {config.churn_risk_factor:g} x the "
                       "expected days between orders (own mean gap; the median of repeat "
                       "customers for one-order customers)"),
        ("RFM", "quintile scores 1-5 (5 best); segments on R and FM = (F + M) / 2 rounded"),
        ("Attribution", "a purchase or add-to-cart of a product clicked in a recommendation "
                        "list by the same session or customer at most "
                        f"{config.experiment.attribution_window_hours:g} hours before; the "
                        "latest such click gets it"),
        ("Attach rate", "orders with at least one attributed line / all orders of the arm"),
    ]
    return dl(items)


# ---------------------------------------------------------------------------------- charts

def _cohort_svg(cohorts: pd.DataFrame, max_cohorts: int = 24) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    from recsys.analytics.retention import cohort_matrix

    if cohorts.empty:
        return None
    matrix = cohort_matrix(cohorts).tail(max_cohorts)
    values = matrix.to_numpy(np.float64)
    with chart_style("cohorts"):
        fig = Figure(figsize=(min(2 + 0.5 * values.shape[1], 12),
                              min(1.5 + 0.32 * values.shape[0], 10)))
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0,
                          vmax=max(float(np.nanmax(values[:, 1:])) if values.shape[1] > 1
                                   else 1.0, 1e-9), aspect="auto")
        fig.colorbar(image, ax=ax, label="retention", format=PercentFormatter(xmax=1))
        ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns])
        ax.set_yticks(range(values.shape[0]), [str(c) for c in matrix.index])
        ax.set_xlabel("months since first order")
        ax.set_ylabel("cohort (month of first order)")
        if values.size <= 400:
            for (i, j), v in np.ndenumerate(values):  # at most 400 cells
                if np.isfinite(v) and j > 0:
                    ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=6,
                            color="white" if v > 0.6 * np.nanmax(values[:, 1:]) else "#223")
        return inline_svg(fig, "cohorts")


def _clv_svg(customers: pd.DataFrame) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    if customers.empty:
        return None
    with chart_style("clv"):
        fig = Figure(figsize=(10, 3.6))
        for k, (column, label) in enumerate((("historical_clv", "historical CLV"),
                                             ("predicted_clv", "predicted CLV"))):
            ax = fig.add_subplot(1, 2, k + 1)
            v = customers[column].to_numpy(np.float64)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                continue
            top = float(np.quantile(v, 0.99)) or float(v.max()) or 1.0
            ax.hist(np.clip(v, None, top), bins=40, color="#3b6ea8")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            ax.set_xlabel(label)
            ax.set_ylabel("customers")
            ax.grid(alpha=0.3)
        return inline_svg(fig, "clv")


def _segments_svg(segments: pd.DataFrame) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    if segments["customers"].sum() == 0:
        return None
    order = segments.set_index("segment").reindex(list(SEGMENTS))
    y = np.arange(len(order))
    with chart_style("segments"):
        fig = Figure(figsize=(8, 3.4))
        ax = fig.add_subplot()
        ax.barh(y - 0.2, order["customer_share"], height=0.4, label="customers",
                color="#3b6ea8")
        ax.barh(y + 0.2, order["revenue_share"], height=0.4, label="revenue", color="#e07a1f")
        ax.set_yticks(y, [_SEGMENT_LABELS[s] for s in order.index])
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.legend(loc="lower right")
        ax.grid(axis="x", alpha=0.3)
        return inline_svg(fig, "segments")
