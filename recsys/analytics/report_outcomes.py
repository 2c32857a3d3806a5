"""The "Recommendation outcomes" section of `recsys report`: per placement and arm (or, without
an experiment, per exposure group, labelled observational), order value with and without a
recommended product, and the uplift of each arm over the control (experiments only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.analytics.outcomes import METRICS, Outcomes
from recsys.analytics.report_html import dl, figure, interval, table
from recsys.analytics.settings import AnalyticsConfig
from recsys.charts import chart_style, inline_svg

__all__ = ["METRIC_LABELS", "outcome_sections"]

METRIC_LABELS = {"click_through_rate": "Click-through rate", "add_to_cart_rate":
                 "Add-to-cart rate", "attach_rate": "Attach rate",
                 "attributed_revenue": "Attributed revenue",
                 "attributed_revenue_per_order": "Attributed revenue per order",
                 "revenue_per_unit": "Revenue per unit", "order_value": "Order value",
                 "order_value_with_rec": "Order value, with a recommended product",
                 "order_value_without_rec": "Order value, without"}
_GROUPS = [("Engagement", ("click_through_rate", "add_to_cart_rate", "attach_rate")),
           ("Revenue", ("attributed_revenue", "attributed_revenue_per_order",
                        "order_value_with_rec", "order_value_without_rec"))]
_PER_ARM = ("revenue_per_unit", "order_value")  # the same for every placement


def _design(outcomes: Outcomes, config: AnalyticsConfig) -> tuple[str, str]:
    f = outcomes.figures
    if outcomes.observational:
        return ("Design", "observational, no experiment (ab_test = false): customers shown "
                          "recommendations vs customers not shown any. The groups differ in "
                          "more than the recommendations (who browses more sees more lists), "
                          "so their difference is no measure of what recommendations earn; "
                          "turn on ab_test for that.")
    return ("Arms", ", ".join(f["arms"]) + f" (control: {config.experiment.control_arm}, "
                                          "best sellers)")


def _rows(frame: pd.DataFrame, metrics: tuple[str, ...], lead: list[str]) -> list[list[str]]:
    """Table rows with at least one metric that can be computed (no empty rows)."""
    rows = []
    for d in (r._asdict() for r in frame.itertuples(index=False)):
        cells = [interval(d[m], d[f"{m}_low"], d[f"{m}_high"], METRICS[m][1] == "money")
                 for m in metrics]
        if any(cells):
            rows.append([*[str(d[c]) for c in lead], *cells])
    return rows


def outcome_sections(outcomes: Outcomes, config: AnalyticsConfig) -> list[str]:
    """The section's HTML parts, in order."""
    exp = config.experiment
    f = outcomes.figures
    arm = "group" if outcomes.observational else "arm"
    parts = [dl([_design(outcomes, config), ("Units", f"{f['units']:,}"),
                 ("Responses shown", f"{f['responses']:,}"),
                 ("Clicks", f"{f['click_events']:,}"), ("Orders", f"{f['orders']:,}"),
                 ("Purchase lines attributed", f"{f['attributed_purchase_lines']:,} of "
                  f"{f['purchase_lines']:,}"),
                 ("Attribution", f"last click on the product within "
                  f"{exp.attribution_window_hours:g} h, same session or customer")])]
    wide = outcomes.table()
    wide = wide.assign(impressions=wide["impressions"].fillna(0).astype(int).map("{:,}".format))
    level = f"{exp.confidence:.0%}"
    parts.append(f"<p>Per placement and {arm}, with {level} bootstrap intervals (resampling "
                 "units).</p>")
    for name, metrics in _GROUPS:
        parts += [f"<h3>{name}</h3>",
                  table(["placement", arm, "impressions", *[METRIC_LABELS[m] for m in metrics]],
                        _rows(wide, metrics, ["placement", "arm", "impressions"]),
                        numeric_from=2)]
    whole = wide[wide["placement"] == "all"]
    whole = whole.assign(orders=whole["orders"].fillna(0).astype(int).map("{:,}".format))
    title = "Orders per group (observational)" if outcomes.observational else "Orders per arm"
    parts += [f"<h3>{title}</h3>",
              table([arm, "orders", *[METRIC_LABELS[m] for m in _PER_ARM]],
                    _rows(whole, _PER_ARM, ["arm", "orders"]))]
    parts.append(figure(_order_value_svg(outcomes),
                        f"Mean order value of orders with and without a recommended product, "
                        f"per {arm}, with {level} intervals (all placements).", "order value"))
    if outcomes.observational:
        parts.append("<p>No uplift is computed: that needs an experiment (ab_test = true), "
                     "which randomises who is shown recommendations.</p>")
        return parts
    uplift = outcomes.uplift[np.isfinite(outcomes.uplift["uplift"].to_numpy(np.float64))]
    if not uplift.empty:
        parts.append(figure(_uplift_svg(uplift, outcomes.control_arm),
                            f"Relative uplift of each arm over the control "
                            f"({exp.control_arm}), all placements, with {level} intervals; "
                            "an interval that crosses 0 is not a clear difference.", "uplift"))
        rows = [[str(u.placement), str(u.arm), METRIC_LABELS[u.metric],
                 interval(u.uplift, u.low, u.high, False)]
                for u in uplift.itertuples(index=False)]
        parts.append(table(["placement", "arm", "metric", "uplift"], rows, numeric_from=3))
    return parts


def _order_value_svg(outcomes: Outcomes) -> str | None:
    """Bars per arm (group) for orders with and without a recommended product; a bar whose
    mean cannot be computed is left out, not drawn as 0."""
    from matplotlib.figure import Figure

    m = outcomes.metrics
    m = m[(m["placement"] == "all")
          & m["metric"].isin(["order_value_with_rec", "order_value_without_rec"])]
    if m.empty or not np.isfinite(m["estimate"].to_numpy(np.float64)).any():
        return None
    arms = [a for a in outcomes.figures["arms"] if a in set(m["arm"])]
    x = np.arange(len(arms))
    with chart_style("order-value"):
        fig = Figure(figsize=(7, 3.4))
        ax = fig.add_subplot()
        for k, (metric, label, color) in enumerate((
                ("order_value_with_rec", "with a recommended product", "#e07a1f"),
                ("order_value_without_rec", "without", "#3b6ea8"))):
            rows = m[m["metric"] == metric].set_index("arm").reindex(arms)
            est = rows["estimate"].to_numpy(np.float64)
            ok = np.isfinite(est)
            err = np.vstack([est - rows["low"].to_numpy(np.float64),
                             rows["high"].to_numpy(np.float64) - est])[:, ok]
            ax.bar(x[ok] + (k - 0.5) * 0.38, est[ok], width=0.38, label=label, color=color,
                   yerr=np.nan_to_num(err), capsize=4)
        ax.set_xticks(x, arms)
        ax.set_ylabel("mean order value")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
        ax.grid(axis="y", alpha=0.3)
        return inline_svg(fig, "order-value")


def _uplift_svg(uplift: pd.DataFrame, control_arm: str) -> str | None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    u = uplift[uplift["placement"] == "all"]
    if u.empty:
        return None
    labels = [f"{METRIC_LABELS[r.metric]} ({r.arm})" for r in u.itertuples(index=False)]
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
        ax.set_xlabel(f"uplift over {control_arm}")
        ax.grid(axis="x", alpha=0.3)
        return inline_svg(fig, "uplift")
