"""`recsys report`: one self-contained HTML page of customer value and measured outcomes.

Sections: summary; cohort retention heatmap; CLV distribution; RFM segments; repurchase
cycles (from :mod:`recsys.repurchase`); recommendation outcomes per placement and arm, order
value with and without recommendations and per-arm uplift with intervals; definitions.
Charts are matplotlib ``Figure`` objects (no pyplot) inlined as SVG, text drawn as paths:
no scripts, external CSS, fonts or links, so the file opens offline.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.analytics.job import ClvResult, compute_clv
from recsys.analytics.outcomes import METRICS, Outcomes, load_events, measure_outcomes
from recsys.analytics.rfm import SEGMENTS
from recsys.analytics.settings import AnalyticsConfig
from recsys.charts import REPORT_CSS, chart_style, inline_svg
from recsys.errors import InputError
from recsys.ingest import load_table
from recsys.repurchase import repurchase_cycles

__all__ = ["build_report", "render_report"]

_CSS = REPORT_CSS + """table{margin:.5rem 0}p.note{color:#8a4b00}
h3{font-size:1.05rem;margin-top:1.2rem}
"""
_SEGMENT_LABELS = {"champions": "Champions", "loyal": "Loyal", "potential": "Potential",
                   "at_risk": "At risk", "hibernating": "Hibernating", "lost": "Lost"}
_METRIC_LABELS = {"click_through_rate": "Click-through rate", "add_to_cart_rate":
                  "Add-to-cart rate", "attach_rate": "Attach rate",
                  "attributed_revenue": "Attributed revenue",
                  "attributed_revenue_per_order": "Attributed revenue per order",
                  "revenue_per_unit": "Revenue per unit", "order_value": "Order value",
                  "order_value_with_rec": "Order value, with a recommended product",
                  "order_value_without_rec": "Order value, without"}


def build_report(data_dir: Path | str, out_path: Path | str, *,
                 events: pd.DataFrame | str | None = None,
                 config: AnalyticsConfig | None = None) -> Path:
    """Compute customer value from the canonical tables in ``data_dir`` (orders.parquet,
    optional catalog.parquet) and write the HTML report to ``out_path``.

    ``events``: the stored recommendation events as a DataFrame, or a SQLAlchemy URL of the
    database holding ``recsys_events``; None uses ``data_dir/events.parquet`` when it holds
    impression or click events with a request_id, and leaves the outcomes section out
    otherwise."""
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
        outcomes = measure_outcomes(events, config.experiment)
    cycles = repurchase_cycles(orders)
    text = render_report(result, outcomes, cycles, config=config)
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
                  "recommendation outcomes") -> str:
    """The report as one HTML string."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(title)}</h1>", _summary(result)]
    parts += [f'<p class="note">{esc(n)}</p>' for n in result.figures.get("notes", [])]
    parts += ["<h2>Cohort retention</h2>",
              _figure(_cohort_svg(result.cohorts),
                      "Share of each monthly cohort (customers by month of first order) who "
                      "ordered again k months later; month 0 is 100% by definition.")]
    parts += ["<h2>Customer lifetime value</h2>", _clv_text(result, config),
              _figure(_clv_svg(result.customers),
                      "Customers by historical and predicted CLV (the top 1% lies beyond the "
                      "right edge and is counted in the last bar).")]
    parts += ["<h2>RFM segments</h2>", _figure(_segments_svg(result.rfm_segments),
                                                "Share of customers and of revenue per segment."),
              _segments_table(result.rfm_segments)]
    parts += ["<h2>Repurchase cycles</h2>", _cycles_table(cycles)]
    parts += ["<h2>Recommendation outcomes</h2>"]
    if outcomes is None:
        parts.append("<p>No recommendation events (impressions or clicks with a request_id) "
                     "were given, so no outcomes are measured. Pass the events database "
                     "(recsys_events) to include them.</p>")
    else:
        parts += _outcome_sections(outcomes, config)
    parts += ["<h2>Definitions</h2>", _definitions(config), "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ text parts

def _money(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:,.2f}"


def _share(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.1%}"


def _days(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f}"


def _dl(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f'<dl class="summary">{rows}</dl>'


def _summary(result: ClvResult) -> str:
    f = result.figures
    items = [("Observation end", str(f["observation_end"])),
             ("Customers", f"{f['customers']:,}"), ("Orders", f"{f['orders']:,}"),
             ("Revenue", _money(f["revenue"])),
             ("Repeat-purchase rate", _share(f["repeat_purchase_rate"])),
             ("Mean / median days between orders",
              f"{_days(f['mean_days_between_orders'])} / "
              f"{_days(f['median_days_between_orders'])}"),
             ("Customers at churn risk", f"{f['churn_risk_customers']:,}"),
             ("Expected lifetime", f"{f['lifetime_years']:.2f} years ({f['lifetime_method']})"),
             ("Order lines without a customer (left out)",
              f"{f['order_lines_without_customer']:,}")]
    if f["margins_known"]:
        items.append(("Revenue with a known margin", _share(f["margin_revenue_coverage"])))
    return _dl(items)


def _clv_text(result: ClvResult, config: AnalyticsConfig) -> str:
    f = result.figures
    items = [("Historical CLV, total / mean", f"{_money(f['historical_clv_total'])} / "
                                              f"{_money(f['historical_clv_mean'])}"),
             (f"Predicted CLV ({config.horizon_months} months, "
              f"{config.annual_discount_rate:.0%} a year discount), total / mean",
              f"{_money(f['predicted_clv_total'])} / {_money(f['predicted_clv_mean'])}")]
    if result.bgnbd is not None:
        b = result.bgnbd
        items.append(("BG/NBD (weeks)", f"r = {b.r:.4g}, alpha = {b.alpha:.4g}, a = {b.a:.4g}, "
                                        f"b = {b.b:.4g}"))
    if result.gamma_gamma is not None:
        g = result.gamma_gamma
        items.append(("Gamma-Gamma", f"p = {g.p:.4g}, q = {g.q:.4g}, gamma = {g.gamma:.4g}"))
    return _dl(items)


def _table(head: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if j >= numeric_from
                         else f"<td>{html.escape(c)}</td>" for j, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _segments_table(segments: pd.DataFrame) -> str:
    rows = [[_SEGMENT_LABELS.get(s.segment, s.segment), f"{int(s.customers):,}",
             _share(s.customer_share), _money(s.revenue), _share(s.revenue_share),
             _money(getattr(s, "mean_predicted_clv", float("nan")))]
            for s in segments.itertuples(index=False)]  # six segments
    return _table(["segment", "customers", "share", "revenue", "revenue share",
                   "mean predicted CLV"], rows)


def _cycles_table(cycles: pd.DataFrame | None, top: int = 15) -> str:
    if cycles is None or cycles.empty:
        return "<p>No product is re-bought often enough to estimate a repurchase cycle.</p>"
    shown = cycles.sort_values(["intervals", "product_id"], ascending=[False, True]).head(top)
    rows = [[str(c.product_id), f"{c.cycle_days:.0f}", f"{int(c.intervals):,}",
             _share(c.repeat_share)] for c in shown.itertuples(index=False)]
    return (f"<p>Median days between purchases of the same product by the same customer: the "
            f"{len(shown)} products with the most evidence (of {len(cycles):,} with a cycle)."
            "</p>" + _table(["product", "cycle (days)", "intervals", "repeat share"], rows))


def _interval(est: float, low: float, high: float, money: bool) -> str:
    fmt = _money if money else _share
    if not math.isfinite(est):
        return ""
    return f"{fmt(est)} [{fmt(low)}, {fmt(high)}]"


def _outcome_sections(outcomes: Outcomes, config: AnalyticsConfig) -> list[str]:
    exp = config.experiment
    f = outcomes.figures
    parts = [_dl([("Arms", ", ".join(f["arms"]) + f" (control: {exp.control_arm}, best "
                   "sellers)"), ("Units", f"{f['units']:,}"),
                  ("Responses shown", f"{f['responses']:,}"),
                  ("Clicks", f"{f['click_events']:,}"), ("Orders", f"{f['orders']:,}"),
                  ("Purchase lines attributed", f"{f['attributed_purchase_lines']:,} of "
                   f"{f['purchase_lines']:,}"),
                  ("Attribution", f"last click on the product within "
                   f"{exp.attribution_window_hours:g} h, same session or customer")])]
    table = outcomes.table()
    level = f"{config.experiment.confidence:.0%}"
    per_arm = ("revenue_per_unit", "order_value")  # the same for every placement
    groups = [("Engagement", ("click_through_rate", "add_to_cart_rate", "attach_rate")),
              ("Revenue", ("attributed_revenue", "attributed_revenue_per_order",
                           "order_value_with_rec", "order_value_without_rec"))]
    parts.append(f"<p>Per placement and arm, with {level} bootstrap intervals (resampling "
                 "units).</p>")
    for name, metrics in groups:
        rows = [[str(d["placement"]), str(d["arm"]), f"{int(d['impressions']):,}",
                 *[_interval(d[m], d[f"{m}_low"], d[f"{m}_high"], METRICS[m][1] == "money")
                   for m in metrics]]
                for d in (r._asdict() for r in table.itertuples(index=False))]
        parts += [f"<h3>{name}</h3>",
                  _table(["placement", "arm", "impressions",
                          *[_METRIC_LABELS[m] for m in metrics]], rows, numeric_from=2)]
    whole = table[table["placement"] == "all"]
    rows = [[str(d["arm"]), f"{int(d['orders']):,}",
             *[_interval(d[m], d[f"{m}_low"], d[f"{m}_high"], True) for m in per_arm]]
            for d in (r._asdict() for r in whole.itertuples(index=False))]
    parts += ["<h3>Orders per arm</h3>",
              _table(["arm", "orders", *[_METRIC_LABELS[m] for m in per_arm]], rows)]
    parts.append(_figure(_order_value_svg(outcomes),
                         f"Mean order value of orders with and without a recommended product, "
                         f"per arm, with {level} intervals (all placements)."))
    if not outcomes.uplift.empty:
        parts.append(_figure(_uplift_svg(outcomes),
                             f"Relative uplift of each arm over the control "
                             f"({exp.control_arm}), all placements, with {level} intervals; "
                             "an interval that crosses 0 is not a clear difference."))
        rows = [[str(u.placement), str(u.arm), _METRIC_LABELS[u.metric],
                 _interval(u.uplift, u.low, u.high, False)]
                for u in outcomes.uplift.itertuples(index=False)]
        parts.append(_table(["placement", "arm", "metric", "uplift"], rows, numeric_from=3))
    return parts


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
    return _dl(items)


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return "<p>Not enough data to draw this chart.</p>"
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


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


def _order_value_svg(outcomes: Outcomes) -> str | None:
    from matplotlib.figure import Figure

    m = outcomes.metrics
    m = m[(m["placement"] == "all")
          & m["metric"].isin(["order_value_with_rec", "order_value_without_rec"])]
    if m.empty or not np.isfinite(m["estimate"]).any():
        return None
    arms = sorted(m["arm"].unique())
    x = np.arange(len(arms))
    with chart_style("order-value"):
        fig = Figure(figsize=(7, 3.4))
        ax = fig.add_subplot()
        for k, (metric, label, color) in enumerate((
                ("order_value_with_rec", "with a recommended product", "#e07a1f"),
                ("order_value_without_rec", "without", "#3b6ea8"))):
            rows = m[m["metric"] == metric].set_index("arm").reindex(arms)
            est = rows["estimate"].to_numpy(np.float64)
            err = np.vstack([est - rows["low"].to_numpy(np.float64),
                             rows["high"].to_numpy(np.float64) - est])
            ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(est), width=0.38, label=label,
                   color=color, yerr=np.nan_to_num(err), capsize=4)
        ax.set_xticks(x, arms)
        ax.set_ylabel("mean order value")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        return inline_svg(fig, "order-value")


def _uplift_svg(outcomes: Outcomes) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    u = outcomes.uplift[outcomes.uplift["placement"] == "all"]
    u = u[np.isfinite(u["uplift"].to_numpy(np.float64))]
    if u.empty:
        return None
    labels = [f"{_METRIC_LABELS[r.metric]} ({r.arm})" for r in u.itertuples(index=False)]
    y = np.arange(len(u))
    est = u["uplift"].to_numpy(np.float64)
    low = u["low"].to_numpy(np.float64)
    high = u["high"].to_numpy(np.float64)
    with chart_style("uplift"):
        fig = Figure(figsize=(8, 1 + 0.35 * len(u)))
        ax = fig.add_subplot()
        ax.errorbar(est, y, xerr=np.nan_to_num(np.vstack([est - low, high - est])), fmt="o",
                    color="#3b6ea8", capsize=3)
        ax.axvline(0.0, color="#888", linewidth=1)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set_xlabel(f"uplift over {outcomes.control_arm}")
        ax.grid(axis="x", alpha=0.3)
        return inline_svg(fig, "uplift")
